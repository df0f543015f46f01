"""Conv2d: a 2-D convolution as im2col and matrix products ("Deep Learning from Scratch",
common/layers.py, Convolution). `unfold` is im2col, `fold` is col2im: a convolution is a
Linear layer applied to every patch of its input."""

from __future__ import annotations

from typing import Annotated

import torch
from torch import Tensor
from torch.nn.functional import fold, linear, unfold

from minidl_cli.nn import init
from minidl_cli.nn.module import Module, Parameter, show_shape
from minidl_cli.registry import Range, register

Size2 = int | tuple[int, int]  # one size for both axes, or (height, width), as torch.nn takes


def pair(value: Size2, name: str, minimum: int = 1) -> tuple[int, int]:
    """(h, w) of an int or a pair; ValueError naming the argument when a size is too small."""
    h, w = (value, value) if isinstance(value, int) else tuple(value)
    if min(h, w) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return h, w


def output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Positions of a window sliding over `size` inputs: ⌊(size + 2p − k) / s⌋ + 1."""
    return (size + 2 * padding - kernel) // stride + 1


def window_output_shape(input_shape: tuple[int, ...], kernel: tuple[int, int],
                        stride: tuple[int, int], padding: tuple[int, int]) -> tuple[int, int]:
    """(H', W') of a sliding window over (C, H, W); ValueError when it does not fit."""
    if len(input_shape) != 3:
        fix = "; move it before the flatten" if len(input_shape) == 1 else ""
        raise ValueError(f"needs (N, C, H, W), got {show_shape(input_shape)}{fix}")
    _, h, w = input_shape
    out = tuple(output_size(*args) for args in zip((h, w), kernel, stride, padding, strict=True))
    if min(out) < 1:
        padded = f"{h + 2 * padding[0]}×{w + 2 * padding[1]}"
        raise ValueError(f"has a {kernel[0]}×{kernel[1]} window, larger than its "
                         f"{'padded ' if any(padding) else ''}input {padded}; "
                         "use a smaller kernel_size or more padding")
    return out


@register("layer", "conv2d")
class Conv2d(Module):
    """2-D convolution (cross-correlation, as torch.nn.Conv2d): y = W ⋆ x + b.

    Weight (out_channels, in_channels, kH, kW), bias (out_channels,), initialised as torch.nn
    does. Forward cuts x into patches, one row of C·kH·kW inputs per output position (im2col),
    and applies one Linear layer to every patch: y = patches Wᵀ + b. The gradients are then
    Linear's, summed over the patches, and the input gradient goes back through col2im.
    Shape: (N, in_channels, H, W) -> (N, out_channels, H', W'), H' = ⌊(H + 2p − kH) / s⌋ + 1;
    the output is channels-last in memory, as torch.nn's for channels_last inputs (use
    reshape or flatten on it, not view). Raises ValueError for sizes below 1 or negative
    padding.
    """

    inferred = {"in_channels": 1}  # as torch.nn.LazyConv2d: in_channels = input.shape[1]

    def __init__(self, in_channels: int, out_channels: Annotated[int, Range(ge=1)],
                 kernel_size: Size2, stride: Size2 = 1, padding: Size2 = 0, bias: bool = True):
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"Conv2d needs in_channels and out_channels >= 1, "
                             f"got {in_channels}, {out_channels}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride, "stride")
        self.padding = pair(padding, "padding", minimum=0)
        self.weight = Parameter(torch.empty(out_channels, in_channels, *self.kernel_size))
        self.bias = Parameter(torch.empty(out_channels)) if bias else None
        init.torch_default_(self.weight.data, self.bias.data if bias else None)  # as torch.nn
        self._patches: Tensor | None = None
        self._input_size: tuple[int, int] = (0, 0)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        out = window_output_shape(input_shape, self.kernel_size, self.stride, self.padding)
        if input_shape[0] != self.in_channels:
            raise ValueError(f"needs {self.in_channels} input channels, got "
                             f"{show_shape(input_shape)}")
        return (self.out_channels, *out)

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        h_out, w_out = (output_size(*a) for a in zip((h, w), self.kernel_size, self.stride,
                                                     self.padding, strict=True))
        self._input_size = (h, w)
        # im2col: (N, C·kH·kW, H'·W') columns, as rows: (N·H'·W', C·kH·kW), one per patch
        cols = unfold(x, self.kernel_size, padding=self.padding, stride=self.stride)
        self._patches = cols.mT.reshape(n * h_out * w_out, -1)
        weight = self.weight.data.view(self.out_channels, -1)
        bias = None if self.bias is None else self.bias.data
        out = linear(self._patches, weight, bias)  # y = patches Wᵀ + b: one row per patch
        # (N, H', W', out) viewed as (N, out, H', W'): channels last in memory, no copy
        return out.view(n, h_out, w_out, self.out_channels).permute(0, 3, 1, 2)

    def backward(self, grad_output: Tensor) -> Tensor:
        n = grad_output.shape[0]
        g = grad_output.permute(0, 2, 3, 1).reshape(-1, self.out_channels)  # a row per patch
        weight = self.weight.data.view(self.out_channels, -1)
        # dL/dW = gᵀ patches: Linear's weight gradient, summed over every patch of every input
        self.weight.grad.view_as(weight).addmm_(g.t(), self._patches)
        if self.bias is not None:
            self.bias.grad += g.sum(0)  # dL/db = Σ g over every patch
        grad_patches = g.mm(weight)  # dL/dpatches = g W
        # dL/dx = col2im(dL/dpatches): each patch's gradient added back where im2col took it
        return fold(grad_patches.view(n, -1, weight.shape[1]).mT, self._input_size,
                    self.kernel_size, padding=self.padding, stride=self.stride)

    def torch_twin(self) -> torch.nn.Module:
        return torch.nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size,
                               self.stride, self.padding, bias=self.bias is not None)

    def extra_repr(self) -> str:
        text = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}")
        if any(self.padding):
            text += f", padding={self.padding}"
        return text + ("" if self.bias is not None else ", bias=False")
