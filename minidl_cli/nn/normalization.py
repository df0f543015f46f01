"""BatchNorm1d, BatchNorm2d and LayerNorm: x̂ = (x − μ) / √(σ² + ε), y = γ x̂ + β.

Batch norm (Ioffe & Szegedy, 2015) takes μ, σ² per channel over the batch (and positions)
in training and keeps running averages of them, used in eval mode; layer norm (Ba et al.,
2016) takes them per input over its last dimension. Both backward passes walk back through
the forward one intermediate at a time, as "Deep Learning from Scratch" (common/layers.py,
BatchNormalization) does.
"""

from __future__ import annotations

from typing import Annotated

import torch
from torch import Tensor

from minidl_cli.nn.module import Module, Parameter, show_shape
from minidl_cli.registry import Range, register


def normalize(x: Tensor, dims: tuple[int, ...],
              eps: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(μ, σ², x_c, std, x̂) of x normalised over `dims` (kept as size-1 axes): μ = mean(x),
    x_c = x − μ, σ² = mean(x_c²), std = √(σ² + ε), x̂ = x_c / std.

    σ² is the biased variance, as both papers and torch.nn normalise with.
    """
    mean = x.mean(dims, keepdim=True)
    xc = x - mean
    var = (xc * xc).mean(dims, keepdim=True)
    std = torch.sqrt(var + eps)
    return mean, var, xc, std, xc / std


def normalize_backward(g: Tensor, xc: Tensor, std: Tensor, dims: tuple[int, ...],
                       m: int) -> Tensor:
    """dL/dx from g = dL/dx̂, back through x̂ = x_c / std, std = √(var + ε), var = mean(x_c²),
    x_c = x − μ, μ = mean(x), each mean over `dims` (m values)."""
    dxc = g / std  # x̂ = x_c / std, through its numerator
    dstd = -(g * xc).sum(dims, keepdim=True) / (std * std)  # ∂x̂/∂std = −x_c / std²
    dvar = 0.5 * dstd / std  # std = √(var + ε)
    dxc = dxc + xc * (2.0 / m * dvar)  # var = Σ x_c² / m
    dmu = -dxc.sum(dims, keepdim=True)  # x_c = x − μ
    return dxc + dmu / m  # μ = Σ x / m


def channel_dot(a: Tensor, b: Tensor) -> Tensor:
    """Σ a·b per channel, over the batch and every position, without forming a·b.

    Shape: a, b (N, C, L) -> (C,). One dot product of length L per (n, c) (a batched
    matrix product of 1×L rows and L×1 columns), then the sum over n.
    """
    n, c, length = a.shape
    if length == 1:  # (N, C): a product and a sum beat N·C dot products of length one
        return (a * b).sum((0, 2))
    return torch.bmm(a.reshape(n * c, 1, length), b.reshape(n * c, length, 1)).view(n, c).sum(0)


class _BatchNorm(Module):
    """Per-channel normalisation over the batch; running statistics as buffers.

    Forward and backward are written per channel, with sums over the batch and positions
    (m values), so that each is a few passes over x:
      μ = Σx / m, σ² = Σx² / m − μ² (the biased variance, as the paper and torch.nn
      normalise with), y = γ x̂ + β = x · γ/std + (β − μ γ/std), std = √(σ² + ε);
      dL/dβ = Σg, dL/dγ = Σ g x̂ = (Σ g x − μ Σg) / std, and, summing the paper's three
      paths to x (through x̂, σ² and μ) into one line,
      dL/dx = γ/std · (g − Σg/m − x̂ · Σ g x̂ / m) = a g + b x + c per channel.
    LayerNorm below keeps the step-by-step walk back (`normalize_backward`).
    """

    ranks: tuple[int, ...] = ()  # input ranks accepted, without the batch dimension
    layout = ""
    fixes: dict[int, str] = {}  # a wrong input rank -> what to do instead
    inferred = {"num_features": 1}  # as torch.nn.LazyBatchNorm: num_features = input.shape[1]
    twin: type[torch.nn.Module]  # the torch.nn class: the same arguments and state-dict keys

    def __init__(self, num_features: int, eps: Annotated[float, Range(gt=0)] = 1e-5,
                 momentum: Annotated[float | None, Range(ge=0, le=1)] = 0.1,
                 affine: bool = True):
        if num_features < 1:
            raise ValueError(f"{type(self).__name__} needs num_features >= 1, got {num_features}")
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = Parameter(torch.ones(num_features)) if affine else None  # γ
        self.bias = Parameter(torch.zeros(num_features)) if affine else None  # β
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        self._cache: tuple | None = None

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) not in self.ranks or input_shape[0] != self.num_features:
            fix = self.fixes.get(len(input_shape), "")
            layout = self.layout if fix else self.layout.replace("C", str(self.num_features))
            raise ValueError(f"needs {layout}, got {show_shape(input_shape)}{fix}")
        return input_shape

    def forward(self, x: Tensor) -> Tensor:
        channel = (1, -1) + (1,) * (x.dim() - 2)  # a per-channel vector against x
        if self.training:
            x3 = x.reshape(x.shape[0], x.shape[1], -1)  # (N, C, positions)
            m = x3.shape[0] * x3.shape[2]
            if m < 2:
                raise ValueError(f"{type(self).__name__} needs more than one value per channel "
                                 f"in training, got input of shape {tuple(x.shape)}")
            mean = x3.sum(2).sum(0) / m  # μ = Σx / m
            var = (channel_dot(x3, x3) / m - mean * mean).clamp_min_(0)  # σ² = Σx²/m − μ²
            if bool((var < 1e-3 * mean * mean).any()):  # μ² ≫ σ²: the difference lost digits
                var = (x3 - mean.view(1, -1, 1)).square().mean((0, 2))  # σ² = Σ(x − μ)² / m
            self._update_running_stats(mean, var * (m / (m - 1)))
        else:  # a fixed affine map: x̂ = (x − running mean) / √(running var + ε)
            m, mean, var = None, self.running_mean, self.running_var
        invstd = torch.rsqrt(var + self.eps)  # 1 / std
        scale = invstd if self.weight is None else self.weight.data * invstd  # γ / std
        shift = -mean * scale if self.bias is None else self.bias.data - mean * scale
        self._cache = (x, mean, invstd, m)
        return torch.addcmul(shift.view(channel), x, scale.view(channel))  # y = γ x̂ + β

    def _update_running_stats(self, mean: Tensor, unbiased_var: Tensor) -> None:
        """r ← (1 − momentum) r + momentum · batch value, as torch.nn (the variance unbiased,
        σ² m / (m − 1));
        momentum None: the cumulative average over the batches seen."""
        self.num_batches_tracked.add_(1)
        momentum = self.momentum
        if momentum is None:
            momentum = 1.0 / self.num_batches_tracked.item()
        self.running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
        self.running_var.mul_(1 - momentum).add_(unbiased_var, alpha=momentum)

    def backward(self, grad_output: Tensor) -> Tensor:
        x, mean, invstd, m = self._cache
        g = grad_output
        channel = (1, -1) + (1,) * (x.dim() - 2)
        a = invstd if self.weight is None else self.weight.data * invstd  # γ / std
        if self.weight is not None or m is not None:
            g3, x3 = (t.reshape(t.shape[0], t.shape[1], -1) for t in (g, x))
            g_sum = g3.sum(2).sum(0)  # Σg
            g_xhat = (channel_dot(g3, x3) - mean * g_sum) * invstd  # Σ g x̂ = Σ g (x − μ) / std
        if self.weight is not None:
            self.weight.grad += g_xhat  # dL/dγ = Σ g x̂
            self.bias.grad += g_sum  # dL/dβ = Σ g
        if m is None:  # eval mode: μ and std are constants
            return g * a.view(channel)  # dL/dx = g γ / std
        # dL/dx = γ/std (g − Σg/m − x̂ Σ g x̂ / m), with x̂ = (x − μ)/std: a g + b x + c
        b = -a * invstd * g_xhat / m
        c = -a * g_sum / m - mean * b
        return torch.addcmul(c.view(channel), x, b.view(channel)).addcmul_(g, a.view(channel))

    def torch_twin(self) -> torch.nn.Module:
        return self.twin(self.num_features, self.eps, self.momentum,
                         affine=self.weight is not None)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.weight is not None}")


@register("layer", "batch_norm1d")
class BatchNorm1d(_BatchNorm):
    """Batch normalisation of features (torch.nn.BatchNorm1d): y = γ x̂ + β, x̂ per feature.

    Training uses the batch's mean and biased variance and updates running_mean and
    running_var (unbiased) with `momentum`; eval mode uses the running ones.
    Shape: (N, C) or (N, C, L) -> same. Raises ValueError for a batch of one in training.
    """

    ranks = (1, 2)
    layout = "(N, C) or (N, C, L)"
    twin = torch.nn.BatchNorm1d
    fixes = {3: "; use batch_norm2d for images (N, C, H, W)"}


@register("layer", "batch_norm2d")
class BatchNorm2d(_BatchNorm):
    """Batch normalisation of image channels (torch.nn.BatchNorm2d): y = γ x̂ + β per channel.

    x̂ over the batch and every position; running statistics as BatchNorm1d.

    Shape: (N, C, H, W) -> same. Raises ValueError for one value per channel in training.
    """

    ranks = (3,)
    layout = "(N, C, H, W)"
    twin = torch.nn.BatchNorm2d
    fixes = {1: "; use batch_norm1d after a flatten, or move it before the flatten",
             2: "; use batch_norm1d for (N, C, L)"}


@register("layer", "layer_norm")
class LayerNorm(Module):
    """Layer normalisation over the last dimension (torch.nn.LayerNorm): y = γ x̂ + β.

    x̂ = (x − mean) / √(var + ε) over each input's last dimension; no running statistics.

    Shape: (N, *, normalized_shape) -> same.
    """

    inferred = {"normalized_shape": -1}  # the last axis: input.shape[-1]

    def __init__(self, normalized_shape: int, eps: Annotated[float, Range(gt=0)] = 1e-5,
                 elementwise_affine: bool = True, bias: bool = True):
        if normalized_shape < 1:
            raise ValueError(f"LayerNorm needs normalized_shape >= 1, got {normalized_shape}")
        self.normalized_shape, self.eps = normalized_shape, eps
        affine = elementwise_affine
        self.weight = Parameter(torch.ones(normalized_shape)) if affine else None  # γ
        self.bias = Parameter(torch.zeros(normalized_shape)) if affine and bias else None  # β
        self._cache: tuple | None = None

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if input_shape[-1:] != (self.normalized_shape,):
            raise ValueError(f"needs (N, ..., {self.normalized_shape}), "
                             f"got {show_shape(input_shape)}")
        return input_shape

    def forward(self, x: Tensor) -> Tensor:
        _, _, xc, std, xn = normalize(x, (-1,), self.eps)
        self._cache = (xc, std, xn)
        out = xn if self.weight is None else xn * self.weight.data
        return out if self.bias is None else out + self.bias.data

    def backward(self, grad_output: Tensor) -> Tensor:
        xc, std, xn = self._cache
        g = grad_output
        positions = tuple(range(g.dim() - 1))  # γ and β are shared by every leading index
        if self.bias is not None:
            self.bias.grad += g.sum(positions)  # dL/dβ = Σ g
        if self.weight is not None:
            self.weight.grad += (g * xn).sum(positions)  # dL/dγ = Σ g x̂
            g = g * self.weight.data  # dL/dx̂ = γ g
        return normalize_backward(g, xc, std, (-1,), self.normalized_shape)

    def torch_twin(self) -> torch.nn.Module:
        return torch.nn.LayerNorm(self.normalized_shape, self.eps,
                                  elementwise_affine=self.weight is not None,
                                  bias=self.bias is not None)

    def extra_repr(self) -> str:
        return (f"({self.normalized_shape},), eps={self.eps}, "
                f"elementwise_affine={self.weight is not None}")
