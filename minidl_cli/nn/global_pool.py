"""GlobalAvgPool: the mean of each channel over every position (Lin et al., 2014, "Network
in Network"), the bridge from a convnet's feature maps to a classifier without a flatten."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from minidl_cli.nn.module import Module, show_shape
from minidl_cli.registry import register


@register("layer", "global_avg_pool")
class GlobalAvgPool(Module):
    """y[n, c] = mean of x[n, c, ...] over every axis after the channels.

    Shape: (N, C, L), (N, C, H, W) or (N, C, D, H, W) -> (N, C). Its torch.nn twin is
    AdaptiveAvgPool1d/2d/3d(1) for the input's rank, then Flatten.
    """

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) not in (2, 3, 4):
            raise ValueError(f"needs (N, C, L), (N, C, H, W) or (N, C, D, H, W), got "
                             f"{show_shape(input_shape)}")
        return input_shape[:1]

    def forward(self, x: Tensor) -> Tensor:
        self._input_shape = x.shape
        return x.mean(tuple(range(2, x.dim())))  # y = Σ x over the m positions / m

    def backward(self, grad_output: Tensor) -> Tensor:
        shape = self._input_shape
        m = math.prod(shape[2:])
        # dL/dx = g / m at every position of its channel
        return (grad_output / m).view(*shape[:2], *[1] * (len(shape) - 2)).expand(shape)

    def torch_twin(self) -> torch.nn.Module:
        return TorchGlobalAvgPool()


class TorchGlobalAvgPool(torch.nn.Module):
    """torch.nn twin of GlobalAvgPool: AdaptiveAvgPool{1,2,3}d(1) by the input's rank, then
    Flatten (torch.nn has no one module for every rank)."""

    pools = {3: torch.nn.AdaptiveAvgPool1d, 4: torch.nn.AdaptiveAvgPool2d,
             5: torch.nn.AdaptiveAvgPool3d}

    def forward(self, x: Tensor) -> Tensor:
        return torch.nn.Flatten()(self.pools[x.dim()](1)(x))
