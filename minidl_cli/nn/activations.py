"""Element-wise activations and Softmax. Each caches what its backward needs.

Every backward is its derivative written out, one line of maths, with the formula beside
it (g is the incoming gradient dL/dy, y the cached output, x the cached input).

Shape: any -> same (Softmax normalises along `dim`).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.functional import elu, leaky_relu

from minidl_cli.nn.module import Module, same_shape, show_shape
from minidl_cli.registry import register


@register("layer", "relu")
class ReLU(Module):
    """y = max(x, 0)."""

    output_shape = same_shape

    def forward(self, x: Tensor) -> Tensor:
        self._output = out = torch.relu(x)
        return out

    def backward(self, grad_output: Tensor) -> Tensor:
        # dL/dx = g · 1[y > 0]; y ≥ 0, so 1[y > 0] = sign(y) (0 at the kink, as torch)
        return self._output.sign().mul_(grad_output)

    def torch_twin(self) -> torch.nn.Module:
        return torch.nn.ReLU()


@register("layer", "leaky_relu")
class LeakyReLU(Module):
    """y = x if x > 0 else negative_slope · x."""

    output_shape = same_shape

    def __init__(self, negative_slope: float = 0.01):
        self.negative_slope = negative_slope

    def forward(self, x: Tensor) -> Tensor:
        self._input = x
        return leaky_relu(x, self.negative_slope)

    def backward(self, grad_output: Tensor) -> Tensor:
        g = grad_output
        return torch.where(self._input > 0, g, g * self.negative_slope)  # dL/dx = g or slope·g

    def torch_twin(self) -> torch.nn.Module:
        return torch.nn.LeakyReLU(self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


@register("layer", "elu")
class ELU(Module):
    """y = x if x > 0 else alpha · (eˣ − 1)."""

    output_shape = same_shape

    def __init__(self, alpha: float = 1.0):
        self.alpha = alpha

    def forward(self, x: Tensor) -> Tensor:
        self._input = x
        self._output = out = elu(x, self.alpha)
        return out

    def backward(self, grad_output: Tensor) -> Tensor:
        g = grad_output
        # dL/dx = g if x > 0 else g · alpha · eˣ = g · (y + alpha)
        return torch.where(self._input > 0, g, g * (self._output + self.alpha))

    def torch_twin(self) -> torch.nn.Module:
        return torch.nn.ELU(self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


@register("layer", "tanh")
class Tanh(Module):
    """y = tanh(x)."""

    output_shape = same_shape

    def forward(self, x: Tensor) -> Tensor:
        self._output = out = torch.tanh(x)
        return out

    def backward(self, grad_output: Tensor) -> Tensor:
        g, y = grad_output, self._output
        return torch.addcmul(g, g, y.square(), value=-1)  # dL/dx = g (1 − y²) = g − g · y²

    def torch_twin(self) -> torch.nn.Module:
        return torch.nn.Tanh()


@register("layer", "sigmoid")
class Sigmoid(Module):
    """y = 1 / (1 + e⁻ˣ)."""

    output_shape = same_shape

    def forward(self, x: Tensor) -> Tensor:
        self._output = out = torch.sigmoid(x)
        return out

    def backward(self, grad_output: Tensor) -> Tensor:
        y = self._output
        gy = grad_output * y
        return torch.addcmul(gy, gy, y, value=-1)  # dL/dx = g · y (1 − y) = g y − g y · y

    def torch_twin(self) -> torch.nn.Module:
        return torch.nn.Sigmoid()


@register("layer", "softmax")
class Softmax(Module):
    """yᵢ = e^{xᵢ} / Σⱼ e^{xⱼ} along `dim`."""

    def __init__(self, dim: int = -1):
        self.dim = dim

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        rank = len(input_shape) + 1  # with the batch dimension
        if not -rank <= self.dim < rank:
            raise ValueError(f"has dim={self.dim}, but its input {show_shape(input_shape)} "
                             f"has dimensions 0..{rank - 1}")
        return input_shape

    def forward(self, x: Tensor) -> Tensor:
        self._output = out = torch.softmax(x, self.dim)
        return out

    def backward(self, grad_output: Tensor) -> Tensor:
        s = self._output
        gs = grad_output * s
        # the full Jacobian-vector product J g, J = diag(s) − s sᵀ: s ⊙ (g − Σⱼ gⱼ sⱼ)
        return torch.addcmul(gs, s, gs.sum(self.dim, keepdim=True), value=-1)

    def torch_twin(self) -> torch.nn.Module:
        return torch.nn.Softmax(self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
