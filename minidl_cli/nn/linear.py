"""Linear (fully connected) layer and Identity."""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from torch import Tensor
from torch.nn.functional import linear

from minidl_cli.nn import init as nn_init
from minidl_cli.nn.module import Module, Parameter, same_shape, show_shape
from minidl_cli.registry import Range, register

Init = Literal["xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal",
               "torch_default"]


def init_weight(out_features: int, in_features: int, init: str) -> Tensor:
    """A fresh (out, in) weight drawn from torch's global RNG by torch.nn.init's function of
    that name (nn/init.py) with its defaults: kaiming_* is He et al.'s ReLU-gain scheme
    (a = 0), not torch.nn.Linear's own default (a = √5)."""
    if init not in Init.__args__:
        raise ValueError(f"unknown init {init!r}; expected one of {', '.join(Init.__args__)}")
    return getattr(nn_init, f"{init}_")(torch.empty(out_features, in_features))


@register("layer", "linear")
class Linear(Module):
    """y = x Wᵀ + b, with W of shape (out_features, in_features) as in torch.nn.Linear.

    Shape: (N, *, in_features) -> (N, *, out_features), as torch.nn.Linear: every leading
    index (a sequence's time steps) shares W and b. `init` names W's torch.nn.init scheme
    (b = 0), or is "torch_default": torch.nn.Linear's own (W and b from U(±1/√in_features),
    the same draws after the same seed). The builder refuses images
    (N, C, H, W): a linear layer there is almost always a missing flatten.
    """

    inferred = {"in_features": -1}  # as torch.nn.LazyLinear: in_features = input.shape[-1]

    def __init__(self, in_features: int, out_features: Annotated[int, Range(ge=1)],
                 bias: bool = True,
                 init: Init = "xavier_uniform"):
        if in_features < 1 or out_features < 1:
            raise ValueError(
                f"Linear needs in_features and out_features >= 1, got {in_features}, {out_features}"
            )
        self.in_features, self.out_features = in_features, out_features
        self.init = init
        if init == "torch_default":  # as torch.nn.Linear: W, then b, from U(±1/√in_features)
            self.weight = Parameter(torch.empty(out_features, in_features))
            self.bias = Parameter(torch.empty(out_features)) if bias else None
            nn_init.torch_default_(self.weight.data, self.bias.data if bias else None)
        else:  # the named scheme for W, and b = 0
            self.weight = Parameter(init_weight(out_features, in_features, init))
            self.bias = Parameter(torch.zeros(out_features)) if bias else None
        self._input: Tensor | None = None
        self._ones: Tensor | None = None  # see _ones_like_rows

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) > 2:
            raise ValueError(f"needs (N, F), got {show_shape(input_shape)}; add a flatten")
        if input_shape[-1] != self.in_features:
            raise ValueError(f"needs (N, {self.in_features}), got {show_shape(input_shape)}")
        return (*input_shape[:-1], self.out_features)

    def forward(self, x: Tensor) -> Tensor:
        self._input = x
        bias = self.bias
        # x Wᵀ + b as one fused call (addmm(b, x, Wᵀ) inside, without a Python-side transpose)
        return linear(x, self.weight.data, None if bias is None else bias.data)

    def backward(self, grad_output: Tensor) -> Tensor:
        self.backward_params(grad_output)
        if grad_output.dim() != 2:  # (N, *, out): position by position
            return grad_output.matmul(self.weight.data)  # dL/dx = g W
        return grad_output.mm(self.weight.data)  # dL/dx = g W

    def backward_params(self, grad_output: Tensor) -> None:
        """The parameter gradients alone (a network's first layer: its input is data)."""
        if grad_output.dim() != 2:  # (N, *, out): every position is one more row
            return self._backward_rows(grad_output)
        g_t = grad_output.t()
        self.weight.grad.addmm_(g_t, self._input)  # dL/dW += gᵀ x
        if self.bias is not None:
            self.bias.grad.addmv_(g_t, self._ones_like_rows(grad_output))  # dL/db += gᵀ 1 = Σₙ g

    def _ones_like_rows(self, g: Tensor) -> Tensor:
        """(N,) ones, kept between steps: Σₙ g as gᵀ·1 is one BLAS call where g.sum(0) and an
        add are two (about 7% of the reference step in benchmarks/bench_step.py)."""
        ones = self._ones
        if (ones is None or ones.shape[0] != g.shape[0] or ones.dtype != g.dtype
                or ones.device != g.device):
            ones = self._ones = g.new_ones(g.shape[0])
        return ones

    def _backward_rows(self, grad_output: Tensor) -> None:
        """The parameter gradients for (N, *, F): the rows of all positions, each a row of
        (N·T, F)."""
        g = grad_output.reshape(-1, self.out_features)
        self.weight.grad.addmm_(g.t(), self._input.reshape(-1, self.in_features))  # += gᵀ x
        if self.bias is not None:
            self.bias.grad += g.sum(0)  # dL/db += Σ over every row and position of g

    def torch_twin(self) -> torch.nn.Module:
        return torch.nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


@register("layer", "identity")
class Identity(Module):
    """y = x. Shape: any -> same."""

    output_shape = same_shape
    token_ids = "pass"  # token ids come out as they went in

    def forward(self, x: Tensor) -> Tensor:
        return x

    def backward(self, grad_output: Tensor) -> Tensor:
        return grad_output

    def torch_twin(self) -> torch.nn.Module:
        return torch.nn.Identity()
