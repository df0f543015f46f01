"""Element-wise activations and Softmax. Each caches what its backward needs.

Shape: any -> same (Softmax normalises along `dim`).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.functional import elu, leaky_relu

from minidl_cli.nn.module import Module
from minidl_cli.registry import register

# The fused backward kernels autograd itself runs, bound once: `torch.ops.aten.X` resolves
# an overload on every call, `.default` names the one we want.
_threshold_backward = torch.ops.aten.threshold_backward.default
_tanh_backward = torch.ops.aten.tanh_backward.default
_sigmoid_backward = torch.ops.aten.sigmoid_backward.default
_leaky_relu_backward = torch.ops.aten.leaky_relu_backward.default
_elu_backward = torch.ops.aten.elu_backward.default
_softmax_backward = torch.ops.aten._softmax_backward_data.default


@register("layer", "relu")
class ReLU(Module):
    """y = max(x, 0)."""

    def forward(self, x: Tensor) -> Tensor:
        self._output = out = torch.relu(x)
        return out

    def backward(self, grad_output: Tensor) -> Tensor:
        # dL/dx = g · 1[y > 0], fused into one kernel as autograd does
        return _threshold_backward(grad_output, self._output, 0)


@register("layer", "leaky_relu")
class LeakyReLU(Module):
    """y = x if x > 0 else negative_slope · x."""

    def __init__(self, negative_slope: float = 0.01):
        self.negative_slope = negative_slope

    def forward(self, x: Tensor) -> Tensor:
        self._input = x
        return leaky_relu(x, self.negative_slope)

    def backward(self, grad_output: Tensor) -> Tensor:
        # dL/dx = g if x > 0 else negative_slope · g, in one kernel
        return _leaky_relu_backward(grad_output, self._input, self.negative_slope, False)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


@register("layer", "elu")
class ELU(Module):
    """y = x if x > 0 else alpha · (eˣ − 1)."""

    def __init__(self, alpha: float = 1.0):
        self.alpha = alpha

    def forward(self, x: Tensor) -> Tensor:
        self._input = x
        return elu(x, self.alpha)

    def backward(self, grad_output: Tensor) -> Tensor:
        # dL/dx = g if x > 0 else g · alpha · eˣ, in one kernel (from x, as autograd does)
        return _elu_backward(grad_output, self.alpha, 1.0, 1.0, False, self._input)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


@register("layer", "tanh")
class Tanh(Module):
    """y = tanh(x)."""

    def forward(self, x: Tensor) -> Tensor:
        self._output = out = torch.tanh(x)
        return out

    def backward(self, grad_output: Tensor) -> Tensor:
        # dL/dx = g · (1 − y²), fused into one kernel
        return _tanh_backward(grad_output, self._output)


@register("layer", "sigmoid")
class Sigmoid(Module):
    """y = 1 / (1 + e⁻ˣ)."""

    def forward(self, x: Tensor) -> Tensor:
        self._output = out = torch.sigmoid(x)
        return out

    def backward(self, grad_output: Tensor) -> Tensor:
        # dL/dx = g · y · (1 − y), fused into one kernel
        return _sigmoid_backward(grad_output, self._output)


@register("layer", "softmax")
class Softmax(Module):
    """yᵢ = e^{xᵢ} / Σⱼ e^{xⱼ} along `dim`."""

    def __init__(self, dim: int = -1):
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        self._output = out = torch.softmax(x, self.dim)
        return out

    def backward(self, grad_output: Tensor) -> Tensor:
        # the full Jacobian-vector product J g, J = diag(s) − s sᵀ: s ⊙ (g − ⟨g, s⟩), fused
        s = self._output
        return _softmax_backward(grad_output, s, self.dim, s.dtype)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
