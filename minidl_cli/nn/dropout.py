"""Inverted dropout: active only in train() mode."""

from __future__ import annotations

from typing import Annotated

import torch
from torch import Tensor

from minidl_cli.nn.module import Module, same_shape
from minidl_cli.registry import Range, register


@register("layer", "dropout")
class Dropout(Module):
    """Zero each element with probability p in training, scale the rest by 1/(1−p).

    Shape: any -> same. In eval() mode it is the identity.
    """

    output_shape = same_shape

    def __init__(self, p: Annotated[float, Range(ge=0, lt=1)] = 0.5):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability p must be between 0 and 1, got {p}")
        self.p = p
        self._mask: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            self._mask = None
            return x
        keep = torch.rand_like(x) >= self.p
        self._mask = keep.to(x.dtype) / (1.0 - self.p) if self.p < 1.0 else keep.to(x.dtype)
        return x * self._mask

    def backward(self, grad_output: Tensor) -> Tensor:
        return grad_output if self._mask is None else grad_output * self._mask  # dL/dx = g · m

    def torch_twin(self) -> torch.nn.Module:
        return DropoutTwin(self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class DropoutTwin(torch.nn.Dropout):
    """torch.nn.Dropout whose mask comes from the same draws as minidl's Dropout (keep where
    a uniform draw is >= p), so both drop the same elements from the same RNG state and the
    oracle can compare them in training; in eval mode the identity, as torch.nn.Dropout."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = (torch.rand_like(x) >= self.p).to(x.dtype)
        return x * keep / (1.0 - self.p) if self.p < 1.0 else x * keep
