"""GroupNorm (Wu & He, 2018): layer normalisation within groups of channels, independent of
the batch, so it behaves alike in training and eval mode and with batches of one."""

from __future__ import annotations

from typing import Annotated

import torch
from torch import Tensor

from minidl_cli.nn.module import Module, Parameter, show_shape
from minidl_cli.nn.normalization import normalize, normalize_backward
from minidl_cli.registry import Range, register


@register("layer", "group_norm")
class GroupNorm(Module):
    """Group normalisation (torch.nn.GroupNorm): y = γ x̂ + β, x̂ over groups of channels.

    x̂ is normalised over each group of C / num_groups channels (and all their positions)
    of each input; γ, β per channel.

    Shape: (N, num_channels, *) -> same. Raises ValueError when num_groups does not divide
    num_channels.
    """

    inferred = {"num_channels": 1}  # the channels: input.shape[1]

    def __init__(self, num_groups: Annotated[int, Range(ge=1)], num_channels: int,
                 eps: Annotated[float, Range(gt=0)] = 1e-5, affine: bool = True):
        if num_groups < 1 or num_channels % num_groups:
            raise ValueError(f"num_groups must divide the {num_channels} channels, got "
                             f"{num_groups}")
        self.num_groups, self.num_channels, self.eps = num_groups, num_channels, eps
        self.weight = Parameter(torch.ones(num_channels)) if affine else None  # γ
        self.bias = Parameter(torch.zeros(num_channels)) if affine else None  # β
        self._cache: tuple | None = None

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if input_shape[0] != self.num_channels:
            raise ValueError(f"needs (N, {self.num_channels}, *), got {show_shape(input_shape)}")
        return input_shape

    def forward(self, x: Tensor) -> Tensor:
        groups = x.reshape(x.shape[0], self.num_groups, -1)  # (N, G, C/G · positions)
        _, _, xc, std, xn = normalize(groups, (-1,), self.eps)  # x̂ per input and group
        xn = xn.view(x.shape)
        self._cache = (xc, std, xn)
        if self.weight is None:
            return xn
        channel = (1, -1) + (1,) * (x.dim() - 2)  # a per-channel vector against x
        return xn * self.weight.data.view(channel) + self.bias.data.view(channel)

    def backward(self, grad_output: Tensor) -> Tensor:
        xc, std, xn = self._cache
        g = grad_output
        if self.weight is not None:
            dims = (0, *range(2, g.dim()))  # every axis but the channels
            self.weight.grad += (g * xn).sum(dims)  # dL/dγ = Σ g x̂
            self.bias.grad += g.sum(dims)  # dL/dβ = Σ g
            g = g * self.weight.data.view((1, -1) + (1,) * (g.dim() - 2))  # dL/dx̂ = γ g
        # back through x̂ = (x − μ) / √(σ² + ε), μ and σ² over each group's m values
        grad = normalize_backward(g.reshape(xc.shape), xc, std, (-1,), xc.shape[-1])
        return grad.view(grad_output.shape)

    def torch_twin(self) -> torch.nn.Module:
        return torch.nn.GroupNorm(self.num_groups, self.num_channels, self.eps,
                                  affine=self.weight is not None)

    def extra_repr(self) -> str:
        return (f"{self.num_groups}, {self.num_channels}, eps={self.eps}, "
                f"affine={self.weight is not None}")
