"""Flatten: the bridge from images (N, C, H, W) to the (N, features) that Linear takes."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from minidl_cli.nn.module import Module, show_shape
from minidl_cli.registry import register


@register("layer", "flatten")
class Flatten(Module):
    """Merge dimensions start_dim..end_dim into one, as torch.nn.Flatten (dim 0 is the batch).

    Shape: (N, C, H, W) -> (N, C·H·W) with the defaults. Raises ValueError (from
    output_shape) when the dimensions would include the batch or do not exist.
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        self.start_dim, self.end_dim = start_dim, end_dim
        self._input_shape: tuple[int, ...] = ()

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        rank = len(input_shape) + 1  # with the batch dimension
        start = self.start_dim % rank if -rank <= self.start_dim < rank else None
        end = self.end_dim % rank if -rank <= self.end_dim < rank else None
        if start is None or end is None or start == 0 or start > end:
            raise ValueError(f"cannot flatten dimensions {self.start_dim}..{self.end_dim} of "
                             f"{show_shape(input_shape)} and keep the batch (dimension 0)")
        merged = math.prod(input_shape[start - 1:end])
        return (*input_shape[:start - 1], merged, *input_shape[end:])

    def forward(self, x: Tensor) -> Tensor:
        self._input_shape = x.shape
        return x.flatten(self.start_dim, self.end_dim)

    def backward(self, grad_output: Tensor) -> Tensor:
        return grad_output.reshape(self._input_shape)  # dL/dx: the same numbers, x's shape

    def torch_twin(self) -> torch.nn.Module:
        return torch.nn.Flatten(self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
