"""1-D convolution and pooling over signals (N, C, L), as torch.nn.Conv1d, MaxPool1d and
AvgPool1d: the 2-D layers' maths along one axis (see conv.py and pooling.py for why each
gradient is the convolution it is).
"""

from __future__ import annotations

from typing import Annotated

import torch
from torch import Tensor
from torch.nn.functional import avg_pool1d, conv1d, conv_transpose1d, fold, max_pool1d

from minidl_cli.nn import init
from minidl_cli.nn.conv import output_size, transposed_output_padding, weight_gradient
from minidl_cli.nn.module import Module, Parameter, show_shape
from minidl_cli.registry import Range, register


def window_length(input_shape: tuple[int, ...], kernel: int, stride: int, padding: int,
                  dilation: int = 1) -> int:
    """L' of a window sliding over (C, L); ValueError when the input is not a signal or the
    window does not fit."""
    if len(input_shape) != 2:
        fix = ("; unflatten the features first ({type: unflatten, unflattened_size: [1, "
               f"{input_shape[0]}]}})") if len(input_shape) == 1 else ""
        raise ValueError(f"needs (N, C, L), got {show_shape(input_shape)}{fix}")
    out = output_size(input_shape[1], kernel, stride, padding, dilation)
    if out < 1:
        raise ValueError(f"has a window of {dilation * (kernel - 1) + 1}, longer than its "
                         f"{'padded ' if padding else ''}input of {input_shape[1] + 2 * padding}; "
                         "use a smaller kernel_size or more padding")
    return out


def _positive(name: str, value: int, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


@register("layer", "conv1d")
class Conv1d(Module):
    """1-D convolution (cross-correlation, as torch.nn.Conv1d): y = W ⋆ x + b.

    Weight (out_channels, in_channels / groups, k), bias (out_channels,), initialised as
    torch.nn does. y[n, o, l] = b[o] + Σ_c Σ_i W[o, c, i] x[n, c, s·l + d·i − p].
    Shape: (N, in_channels, L) -> (N, out_channels, L'), L' = ⌊(L + 2p − d(k − 1) − 1) / s⌋ + 1.
    Raises ValueError for sizes below 1, negative padding, or channels that groups does
    not divide.
    """

    inferred = {"in_channels": 1}  # as torch.nn.LazyConv1d: in_channels = input.shape[1]

    def __init__(self, in_channels: int, out_channels: Annotated[int, Range(ge=1)],
                 kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1,
                 groups: Annotated[int, Range(ge=1)] = 1, bias: bool = True):
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"Conv1d needs in_channels and out_channels >= 1, "
                             f"got {in_channels}, {out_channels}")
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv1d groups={groups} must divide in_channels ({in_channels}) "
                             f"and out_channels ({out_channels}); use a divisor of both")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _positive("kernel_size", kernel_size)
        self.stride = _positive("stride", stride)
        self.padding = _positive("padding", padding, minimum=0)
        self.dilation = _positive("dilation", dilation)
        self.weight = Parameter(torch.empty(out_channels, in_channels // groups, kernel_size))
        self.bias = Parameter(torch.empty(out_channels)) if bias else None
        init.torch_default_(self.weight.data, self.bias.data if bias else None)  # as torch.nn
        self._input: Tensor | None = None

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        out = window_length(input_shape, self.kernel_size, self.stride, self.padding,
                            self.dilation)
        if input_shape[0] != self.in_channels:
            raise ValueError(f"needs {self.in_channels} input channels, got "
                             f"{show_shape(input_shape)}")
        return (self.out_channels, out)

    def forward(self, x: Tensor) -> Tensor:
        self._input = x  # all the backward needs (besides W)
        bias = None if self.bias is None else self.bias.data
        return conv1d(x, self.weight.data, bias, self.stride, self.padding, self.dilation,
                      self.groups)  # y = W ⋆ x + b

    def backward(self, grad_output: Tensor) -> Tensor:
        self.backward_params(grad_output)
        g = grad_output
        (extra,) = transposed_output_padding(self._input.shape[2:], g.shape[2:],
                                             (self.kernel_size,), (self.stride,),
                                             (self.padding,), (self.dilation,))
        # dL/dx = Wᵀ ⋆ g: the transposed convolution of g with the same W
        return conv_transpose1d(g, self.weight.data, None, self.stride, self.padding, extra,
                                self.groups, self.dilation)

    def backward_params(self, grad_output: Tensor) -> None:
        g = grad_output
        if self.bias is not None:
            self.bias.grad += g.sum((0, 2))  # dL/db = Σ g over the batch and positions
        # dL/dW = x ⋆ g, the input correlated with the output gradient: the 2-D layer's
        # weight gradient on signals of height 1
        grad = weight_gradient(self._input.unsqueeze(2), g.unsqueeze(2), (1, self.kernel_size),
                               (1, self.stride), (0, self.padding), (1, self.dilation),
                               self.groups)
        self.weight.grad += grad.squeeze(2)

    def torch_twin(self) -> torch.nn.Module:
        return torch.nn.Conv1d(self.in_channels, self.out_channels, self.kernel_size,
                               self.stride, self.padding, self.dilation, self.groups,
                               bias=self.bias is not None)

    def extra_repr(self) -> str:
        text = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}")
        if self.padding:
            text += f", padding={self.padding}"
        if self.dilation != 1:
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        return text + ("" if self.bias is not None else ", bias=False")


class _Pool1d(Module):
    """The window's size, stride and padding, torch.nn's arguments, and the shape it gives."""

    def __init__(self, kernel_size: int, stride: int | None = None, padding: int = 0):
        self.kernel_size = _positive("kernel_size", kernel_size)
        self.stride = self.kernel_size if stride is None else _positive("stride", stride)
        self.padding = _positive("padding", padding, minimum=0)
        if 2 * self.padding > self.kernel_size:
            raise ValueError(f"padding must be at most half of kernel_size, got padding "
                             f"{padding} for kernel_size {kernel_size}")
        self._input_shape: tuple[int, ...] = ()

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (input_shape[0], window_length(input_shape, self.kernel_size, self.stride,
                                              self.padding))

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


@register("layer", "max_pool1d")
class MaxPool1d(_Pool1d):
    """The largest value in each window, per channel (torch.nn.MaxPool1d; padding is −∞).

    Shape: (N, C, L) -> (N, C, L'), L' = ⌊(L + 2p − k) / s⌋ + 1; stride defaults to
    kernel_size. Raises ValueError for sizes below 1 or padding above kernel_size / 2.
    """

    def torch_twin(self) -> torch.nn.Module:
        return torch.nn.MaxPool1d(self.kernel_size, self.stride, self.padding)

    def forward(self, x: Tensor) -> Tensor:
        self._input_shape = x.shape
        out, self._argmax = max_pool1d(x, self.kernel_size, self.stride, self.padding,
                                       return_indices=True)  # argmax: index into L per window
        return out

    def backward(self, grad_output: Tensor) -> Tensor:
        # dL/dx: each window's gradient goes to its maximum, added where windows share one
        grad_input = grad_output.new_zeros(self._input_shape)
        return grad_input.scatter_add_(2, self._argmax, grad_output)


@register("layer", "avg_pool1d")
class AvgPool1d(_Pool1d):
    """The mean of each window, per channel (torch.nn.AvgPool1d; padding counts as zeros).

    Shape: (N, C, L) -> (N, C, L'), L' = ⌊(L + 2p − k) / s⌋ + 1; stride defaults to
    kernel_size. Raises ValueError for sizes below 1 or padding above kernel_size / 2.
    """

    def torch_twin(self) -> torch.nn.Module:
        return torch.nn.AvgPool1d(self.kernel_size, self.stride, self.padding)

    def forward(self, x: Tensor) -> Tensor:
        self._input_shape = x.shape
        return avg_pool1d(x, self.kernel_size, self.stride, self.padding)

    def backward(self, grad_output: Tensor) -> Tensor:
        n, c, length = self._input_shape
        k = self.kernel_size
        # y = P x is linear, so dL/dx = Pᵀ g: each output's gradient shared equally among the
        # k inputs of its window (g / k each), summed over the windows an input is in:
        # col2im (`fold`) on a signal of height 1
        share = (grad_output / k).unsqueeze(2).expand(n, c, k, grad_output.shape[2])
        out = fold(share.reshape(n, c * k, -1), (1, length), (1, k), padding=(0, self.padding),
                   stride=(1, self.stride))
        return out.view(n, c, length)
