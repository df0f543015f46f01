"""Conv2d: a 2-D convolution, its forward and both gradients as convolutions.

What a convolution computes, as "Deep Learning from Scratch" (common/layers.py,
Convolution) teaches it: cut the input into patches, one row of C·kH·kW inputs per output
position (im2col; `torch.nn.functional.unfold`), and apply one Linear layer to every patch,
y = patches Wᵀ + b. The gradients are then Linear's, summed over the patches: dL/dW = gᵀ
patches, and dL/dpatches = g W folded back onto the input (col2im; `fold`).
`conv2d_by_im2col` below is that, written out; a test checks it against `conv2d`.

Training does not pay for the patches (C·kH·kW values per output position, kept for the
backward: kH·kW times the input's memory). The same three sums are convolutions
themselves, which torch runs as single kernels without materialising patches:

- forward:   y = W ⋆ x + b, a correlation (`conv2d`);
- dL/dx:     the *transposed* convolution of g with the same W (`conv_transpose2d`): each
             output position sends g·W back to the patch it read, col2im(g W) in one call;
- dL/dW:     the correlation of the input with g, summed over the batch: dL/dW[o, c, i, j]
             = Σₙ Σ_{h,w} g[n, o, h, w] x[n, c, s·h + d·i, s·w + d·j]. That is `conv2d` with
             the batch as channels: x with N and C swapped is a batch of C images of N
             channels, and g with N and O swapped is O kernels of N channels; stride and
             dilation trade places (`weight_gradient`; a first layer with few inputs per
             patch uses im2col's gᵀ patches, faster there and no larger than g).

So the layer keeps its input for the backward, as torch.nn does, and nothing else; as the
first layer of a network (`backward_params`) it skips dL/dx, which data does not need.
"""

from __future__ import annotations

from typing import Annotated

import torch
from torch import Tensor
from torch.nn.functional import conv2d, conv_transpose2d, linear, unfold

from minidl_cli.nn import init
from minidl_cli.nn.module import Module, Parameter, show_shape
from minidl_cli.registry import Range, register

Size2 = int | tuple[int, int]  # one size for both axes, or (height, width), as torch.nn takes
# the weight gradient sums the batch in slices of at most this many images and input values
SLICE_IMAGES, SLICE_VALUES = 64, 2**19


def pair(value: Size2, name: str, minimum: int = 1) -> tuple[int, int]:
    """(h, w) of an int or a pair; ValueError naming the argument when a size is too small."""
    h, w = (value, value) if isinstance(value, int) else tuple(value)
    if min(h, w) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return h, w


def output_size(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    """Positions of a window sliding over `size` inputs: ⌊(size + 2p − d(k − 1) − 1) / s⌋ + 1."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def window_output_shape(input_shape: tuple[int, ...], kernel: tuple[int, int],
                        stride: tuple[int, int], padding: tuple[int, int],
                        dilation: tuple[int, int] = (1, 1)) -> tuple[int, int]:
    """(H', W') of a sliding window over (C, H, W); ValueError when it does not fit."""
    if len(input_shape) != 3:
        fix = "; move it before the flatten" if len(input_shape) == 1 else ""
        raise ValueError(f"needs (N, C, H, W), got {show_shape(input_shape)}{fix}")
    _, h, w = input_shape
    out = tuple(output_size(*args) for args in zip((h, w), kernel, stride, padding, dilation,
                                                   strict=True))
    if min(out) < 1:
        padded = f"{h + 2 * padding[0]}×{w + 2 * padding[1]}"
        span = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True))
        raise ValueError(f"has a {span[0]}×{span[1]} window, larger than its "
                         f"{'padded ' if any(padding) else ''}input {padded}; "
                         "use a smaller kernel_size or more padding")
    return out


def conv2d_by_im2col(x: Tensor, weight: Tensor, bias: Tensor | None = None,
                     stride: Size2 = 1, padding: Size2 = 0) -> Tensor:
    """A convolution as a Linear layer on every patch (the teaching version; `conv2d` is the
    same function, without materialising the patches).

    Shape: x (N, C, H, W), weight (O, C, kH, kW) -> (N, O, H', W').
    """
    n, _, h, w = x.shape
    out_channels, _, kh, kw = weight.shape
    stride, padding = pair(stride, "stride"), pair(padding, "padding", minimum=0)
    h_out, w_out = (output_size(*a) for a in zip((h, w), (kh, kw), stride, padding, strict=True))
    cols = unfold(x, (kh, kw), padding=padding, stride=stride)  # im2col: (N, C·kH·kW, H'·W')
    patches = cols.mT.reshape(n * h_out * w_out, -1)  # one row per output position
    out = linear(patches, weight.reshape(out_channels, -1), bias)  # y = patches Wᵀ + b
    return out.view(n, h_out, w_out, out_channels).permute(0, 3, 1, 2)


def transposed_output_padding(input_size: tuple[int, ...], grad_size: tuple[int, ...],
                              kernel: tuple[int, ...], stride: tuple[int, ...],
                              padding: tuple[int, ...],
                              dilation: tuple[int, ...]) -> tuple[int, ...]:
    """The rows (columns) a strided window never reached: a transposed convolution of the
    output gives (H' − 1)s − 2p + d(k − 1) + 1 rows, and the input had H; the rest is
    `output_padding` (less than the stride)."""
    return tuple(size - ((out - 1) * s - 2 * p + d * (k - 1) + 1) for size, out, k, s, p, d
                 in zip(input_size, grad_size, kernel, stride, padding, dilation, strict=True))


def weight_gradient(x: Tensor, g: Tensor, kernel: tuple[int, int], stride: tuple[int, int],
                    padding: tuple[int, int], dilation: tuple[int, int],
                    groups: int) -> Tensor:
    """dL/dW[o, c, i, j] = Σₙ Σ_{h,w} g[n, o, h, w] x[n, c, s·h + d·i, s·w + d·j]: the
    correlation of the input with the output gradient, summed over the batch.

    With few inputs per patch (C·kH·kW no more than O: a first layer on images) the
    patches are no larger than g, and the weight gradient is Linear's, Σₙ gₙ patchesₙᵀ,
    over them (im2col). Otherwise it is a `conv2d` with the batch as the channels being
    summed over (`correlate_over_batch`), the batch taken in slices of at most SLICE_IMAGES
    images and about SLICE_VALUES input values: the copies that swap batch and channels
    stay in the CPU's cache, and oneDNN's kernel runs faster on 64 channels than on 256
    (LeNet-5's layers, measured by benchmarks/bench_conv.py).
    Shape: x (N, C, H, W), g (N, O, H', W') -> (O, C/groups, kH, kW).
    """
    n, channels = x.shape[:2]
    out_channels = g.shape[1]
    if groups == 1 and channels * kernel[0] * kernel[1] <= out_channels:
        patches = unfold(x, kernel, dilation, padding, stride)  # im2col: (N, C·kH·kW, H'·W')
        grad = torch.bmm(g.flatten(2), patches.mT).sum(0)  # dL/dW = Σₙ gₙ patchesₙᵀ
        return grad.view(out_channels, channels, *kernel)
    step = max(1, min(SLICE_IMAGES, SLICE_VALUES // x[0].numel()))  # images per slice
    grad = correlate_over_batch(x[:step], g[:step], stride, padding, dilation, groups)
    for start in range(step, n, step):  # Σₙ over the slices
        grad += correlate_over_batch(x[start:start + step], g[start:start + step], stride,
                                     padding, dilation, groups)
    return grad[:, :, :kernel[0], :kernel[1]]


def correlate_over_batch(x: Tensor, g: Tensor, stride: tuple[int, int],
                         padding: tuple[int, int], dilation: tuple[int, int],
                         groups: int) -> Tensor:
    """Σₙ x[n] ⋆ g[n] per (o, c) as one `conv2d`: x with batch and channels swapped is
    C/groups images of groups·N channels (channel (group, n)); g with batch and channels
    swapped is O kernels of N channels, group by group: each kernel o slides over its
    group's N channels of every image c and sums them, which is the sum over n. Kernel
    positions i, j step by the dilation d, and within a position h, w step by the stride
    s: so stride and dilation swap roles. A stride that leaves a remainder gives more than
    kH × kW positions (the caller keeps the first kH × kW).
    Shape: x (N, C, H, W), g (N, O, H', W') -> (O, C/groups, ≥ kH, ≥ kW).
    """
    n, channels, h, w = x.shape
    per_group = channels // groups
    if groups == 1:
        images = x.transpose(0, 1)  # (C, N, H, W): a view
    else:  # (C/groups, groups·N, H, W): image c of each group, its N inputs as channels
        images = x.view(n, groups, per_group, h, w).permute(2, 1, 0, 3, 4)
        images = images.reshape(per_group, groups * n, h, w)
    grad = conv2d(images, g.transpose(0, 1), None, dilation, padding, stride, groups)
    return grad.transpose(0, 1)  # (C/groups, O, …) -> (O, C/groups, …)


@register("layer", "conv2d")
class Conv2d(Module):
    """2-D convolution (cross-correlation, as torch.nn.Conv2d): y = W ⋆ x + b.

    Weight (out_channels, in_channels / groups, kH, kW), bias (out_channels,), initialised as
    torch.nn does. Each output position is a Linear layer applied to the patch under the
    kernel (see the module docstring for im2col and why the gradients are convolutions).
    `dilation` spaces the kernel's taps; `groups` splits the channels into that many
    independent convolutions.
    Shape: (N, in_channels, H, W) -> (N, out_channels, H', W'),
    H' = ⌊(H + 2p − d(kH − 1) − 1) / s⌋ + 1. Raises ValueError for sizes below 1, negative
    padding, or channels that groups does not divide.
    """

    inferred = {"in_channels": 1}  # as torch.nn.LazyConv2d: in_channels = input.shape[1]

    def __init__(self, in_channels: int, out_channels: Annotated[int, Range(ge=1)],
                 kernel_size: Size2, stride: Size2 = 1, padding: Size2 = 0,
                 dilation: Size2 = 1, groups: Annotated[int, Range(ge=1)] = 1,
                 bias: bool = True):
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"Conv2d needs in_channels and out_channels >= 1, "
                             f"got {in_channels}, {out_channels}")
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d groups={groups} must divide in_channels ({in_channels}) "
                             f"and out_channels ({out_channels}); use a divisor of both")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride, "stride")
        self.padding = pair(padding, "padding", minimum=0)
        self.dilation = pair(dilation, "dilation")
        self.groups = groups
        self.weight = Parameter(torch.empty(out_channels, in_channels // groups,
                                            *self.kernel_size))
        self.bias = Parameter(torch.empty(out_channels)) if bias else None
        init.torch_default_(self.weight.data, self.bias.data if bias else None)  # as torch.nn
        self._input: Tensor | None = None

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        out = window_output_shape(input_shape, self.kernel_size, self.stride, self.padding,
                                  self.dilation)
        if input_shape[0] != self.in_channels:
            raise ValueError(f"needs {self.in_channels} input channels, got "
                             f"{show_shape(input_shape)}")
        return (self.out_channels, *out)

    def forward(self, x: Tensor) -> Tensor:
        self._input = x  # all the backward needs (besides W)
        bias = None if self.bias is None else self.bias.data
        # y = W ⋆ x + b: every patch times W, one kernel call (no patches kept)
        return conv2d(x, self.weight.data, bias, self.stride, self.padding, self.dilation,
                      self.groups)

    def backward(self, grad_output: Tensor) -> Tensor:
        self.backward_params(grad_output)
        g = grad_output
        extra = transposed_output_padding(self._input.shape[2:], g.shape[2:],
                                          self.kernel_size, self.stride, self.padding,
                                          self.dilation)
        # dL/dx = Wᵀ ⋆ g: the transposed convolution of g with the same W (col2im(g W))
        return conv_transpose2d(g, self.weight.data, None, self.stride, self.padding, extra,
                                self.groups, self.dilation)

    def backward_params(self, grad_output: Tensor) -> None:
        g = grad_output
        if self.bias is not None:
            self.bias.grad += g.sum((0, 2, 3))  # dL/db = Σ g over the batch and positions
        # dL/dW = x ⋆ g: the input correlated with the output gradient, summed over the batch
        self.weight.grad += weight_gradient(self._input, g, self.kernel_size, self.stride,
                                            self.padding, self.dilation, self.groups)

    def torch_twin(self) -> torch.nn.Module:
        return torch.nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size,
                               self.stride, self.padding, self.dilation, self.groups,
                               bias=self.bias is not None)

    def extra_repr(self) -> str:
        text = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}")
        if any(self.padding):
            text += f", padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        return text + ("" if self.bias is not None else ", bias=False")
