"""Bilinear: a quadratic form of the input per output, yₖ = xᵀ Aₖ x + bₖ."""

from __future__ import annotations

import math
from typing import Annotated

import torch
from torch import Tensor
from torch.nn.functional import bilinear

from minidl_cli.nn.module import Module, Parameter, show_shape
from minidl_cli.registry import Range, register


@register("layer", "bilinear")
class Bilinear(Module):
    """yₖ = xᵀ Aₖ x + bₖ: torch.nn.Bilinear(in, in, out) applied to the input with itself.

    Weight A (out_features, in_features, in_features) and bias (out_features,), both
    U(±1/√in_features) as torch.nn.Bilinear initialises them, so that torch.nn.Bilinear(
    in_features, in_features, out_features) loads the state dict.
    Shape: (N, in_features) -> (N, out_features).
    """

    inferred = {"in_features": -1}  # input.shape[-1]

    def __init__(self, in_features: int, out_features: Annotated[int, Range(ge=1)],
                 bias: bool = True):
        if in_features < 1 or out_features < 1:
            raise ValueError(f"Bilinear needs in_features and out_features >= 1, "
                             f"got {in_features}, {out_features}")
        self.in_features, self.out_features = in_features, out_features
        bound = 1 / math.sqrt(in_features)
        shape = (out_features, in_features, in_features)
        self.weight = Parameter(torch.empty(shape).uniform_(-bound, bound))
        self.bias = Parameter(torch.empty(out_features).uniform_(-bound, bound)) if bias else None
        self._input: Tensor | None = None

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if input_shape != (self.in_features,):
            fix = "; add a flatten" if len(input_shape) > 1 else ""
            raise ValueError(f"needs (N, {self.in_features}), got {show_shape(input_shape)}{fix}")
        return (self.out_features,)

    def forward(self, x: Tensor) -> Tensor:
        self._input = x
        return bilinear(x, x, self.weight.data, None if self.bias is None else self.bias.data)

    def backward(self, grad_output: Tensor) -> Tensor:
        x, g, a = self._input, grad_output, self.weight.data
        self.weight.grad += torch.einsum("nk,ni,nj->kij", g, x, x)  # dL/dAₖ = Σₙ gₙₖ xₙ xₙᵀ
        if self.bias is not None:
            self.bias.grad += g.sum(0)  # dL/db = Σₙ g
        return torch.einsum("nk,kij,nj->ni", g, a + a.mT, x)  # dL/dx = Σₖ gₖ (Aₖ + Aₖᵀ) x

    def torch_twin(self) -> torch.nn.Module:
        return SelfBilinear(self.in_features, self.in_features, self.out_features,
                            bias=self.bias is not None)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class SelfBilinear(torch.nn.Bilinear):
    """torch.nn.Bilinear(in, in, out) applied to its input with itself: minidl's Bilinear."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x, x)
