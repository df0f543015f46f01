"""MaxPool2d and AvgPool2d: a window slides over each channel ("Deep Learning from Scratch",
common/layers.py, Pooling)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.functional import avg_pool2d, fold, max_pool2d, pad

from minidl_cli.nn.conv import Size2, pair, window_output_shape
from minidl_cli.nn.module import Module
from minidl_cli.registry import register


class _Pool2d(Module):
    """The window's size, stride and padding, torch.nn's arguments, and the shape it gives."""

    def __init__(self, kernel_size: Size2, stride: Size2 | None = None, padding: Size2 = 0):
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else pair(stride, "stride")
        self.padding = pair(padding, "padding", minimum=0)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size, strict=True)):
            raise ValueError(f"padding must be at most half of kernel_size, got padding "
                             f"{padding} for kernel_size {kernel_size}")
        self._input_shape: tuple[int, ...] = ()

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        out = window_output_shape(input_shape, self.kernel_size, self.stride, self.padding)
        return (input_shape[0], *out)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


@register("layer", "max_pool2d")
class MaxPool2d(_Pool2d):
    """The largest value in each window, per channel (torch.nn.MaxPool2d; padding is −∞).

    Shape: (N, C, H, W) -> (N, C, H', W'), H' = ⌊(H + 2p − kH) / s⌋ + 1; stride defaults
    to kernel_size. Raises ValueError for sizes below 1 or padding above kernel_size / 2.
    """

    def torch_twin(self) -> torch.nn.Module:
        return torch.nn.MaxPool2d(self.kernel_size, self.stride, self.padding)

    def forward(self, x: Tensor) -> Tensor:
        self._input_shape = x.shape
        out, self._argmax = max_pool2d(x, self.kernel_size, self.stride, self.padding,
                                       return_indices=True)  # argmax: index into H·W per window
        return out

    def backward(self, grad_output: Tensor) -> Tensor:
        n, c, h, w = self._input_shape
        grad_input = grad_output.new_zeros(n, c, h * w)
        # dL/dx: each window's gradient goes to its maximum (the argmax kept by forward),
        # scattered into the flattened H·W map and added where overlapping windows share one
        grad_input.scatter_add_(2, self._argmax.flatten(2), grad_output.flatten(2))
        return grad_input.view(n, c, h, w)


@register("layer", "avg_pool2d")
class AvgPool2d(_Pool2d):
    """The mean of each window, per channel (torch.nn.AvgPool2d; padding counts as zeros).

    Shape: (N, C, H, W) -> (N, C, H', W'), H' = ⌊(H + 2p − kH) / s⌋ + 1; stride defaults
    to kernel_size. Raises ValueError for sizes below 1 or padding above kernel_size / 2.
    """

    def torch_twin(self) -> torch.nn.Module:
        return torch.nn.AvgPool2d(self.kernel_size, self.stride, self.padding)

    def forward(self, x: Tensor) -> Tensor:
        self._input_shape = x.shape
        return avg_pool2d(x, self.kernel_size, self.stride, self.padding)

    def backward(self, grad_output: Tensor) -> Tensor:
        n, c, h, w = self._input_shape
        k = self.kernel_size[0] * self.kernel_size[1]
        # Average pooling is a linear map y = P x (each output the mean of its window), so
        # dL/dx = Pᵀ g, its transpose: each output's gradient is shared equally among the k
        # inputs of its window (g / k each), and every input sums the shares of the windows
        # it is in (padding counts as k's zeros). col2im (`fold`) does exactly that sum.
        if self.stride == self.kernel_size and not any(self.padding):
            # windows side by side: each input is in one window (or none, past the last)
            (kh, kw), (h_out, w_out) = self.kernel_size, grad_output.shape[2:]
            share = (grad_output / k)[:, :, :, None, :, None].expand(n, c, h_out, kh, w_out, kw)
            share = share.reshape(n, c, h_out * kh, w_out * kw)
            if (h, w) == share.shape[2:]:
                return share
            return pad(share, (0, w - w_out * kw, 0, h - h_out * kh))  # rows no window read: 0
        g = grad_output.flatten(2)  # (N, C, H'·W'): one gradient per window
        share = (g / k).unsqueeze(2).expand(n, c, k, g.shape[2])  # each of a window's k inputs
        return fold(share.reshape(n, c * k, -1), (h, w), self.kernel_size,
                    padding=self.padding, stride=self.stride)
