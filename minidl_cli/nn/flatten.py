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

    token_ids = "pass"  # token ids come out as ids, only their shape changed

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


@register("layer", "unflatten")
class Unflatten(Module):
    """Split the features of (N, F) into `unflattened_size`, as torch.nn.Unflatten(1, …).

    A table's columns become a signal (N, C, L) for conv1d, a sequence (N, T, F) for a
    recurrent layer, or an image (N, C, H, W).

    Shape: (N, F) -> (N, *unflattened_size), with prod(unflattened_size) = F. Raises
    ValueError (from output_shape) when the sizes do not multiply to F.
    """

    token_ids = "pass"  # token ids come out as ids, only their shape changed

    def __init__(self, unflattened_size: list[int]):
        sizes = tuple(unflattened_size)
        if not sizes or any(isinstance(s, bool) or not isinstance(s, int) or s < 1
                            for s in sizes):
            raise ValueError(f"unflattened_size must be a list of integers >= 1, "
                             f"got {unflattened_size!r}")
        self.unflattened_size = sizes

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) != 1 or input_shape[0] != math.prod(self.unflattened_size):
            raise ValueError(f"cannot unflatten {show_shape(input_shape)} into "
                             f"{show_shape(self.unflattened_size)}: it needs (N, "
                             f"{math.prod(self.unflattened_size)})")
        return self.unflattened_size

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(x.size(0), *self.unflattened_size)

    def backward(self, grad_output: Tensor) -> Tensor:
        return grad_output.reshape(grad_output.size(0), -1)  # the same numbers, x's shape

    def torch_twin(self) -> torch.nn.Module:
        return torch.nn.Unflatten(1, self.unflattened_size)

    def extra_repr(self) -> str:
        return f"1, {self.unflattened_size}"
