"""Blocks: networks that are more than a stack. Residual, Concat and Repeat hold layers.

Where a tensor fans out to several paths, its gradient is the sum of theirs (the chain
rule over every path, as llm.c's residual_backward: `dinp1 += dout; dinp2 += dout`): a
residual block's input goes through its body and its shortcut, a concat's input through
every branch. Their layer lists are options of type `Layers`: in a config, lists of layer
configs, built for the block's input. torch.nn has no residual or concat module; their
twins (TorchResidual, TorchConcat) are the few lines below, with torch.nn's state-dict keys.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import torch
from torch import Tensor

from minidl_cli.nn.conv1d import Conv1d
from minidl_cli.nn.module import Module, Sequential, output_shape_of, show_shape
from minidl_cli.registry import LayerFactory, Layers, Range, register


def _sequential(layers: Module | list[Module] | tuple[Module, ...]) -> Module:
    """A list of modules as one Sequential; a module as it is."""
    return Sequential(*layers) if isinstance(layers, (list, tuple)) else layers


@register("layer", "residual")
class Residual(Module):
    """y = body(x) + shortcut(x), the shortcut the identity by default (He et al., 2016).

    `body` and `shortcut` are modules (or lists of them, made Sequential); keys
    `body.1.weight`, `shortcut.0.weight`. Shape: x -> body's output shape, which must equal
    the shortcut's (else a ValueError from output_shape proposing a shortcut).
    """

    token_ids = "add"  # ids may come in only if body and shortcut turn them into floats

    def __init__(self, body: Layers, shortcut: Layers | None = None):
        self.body = _sequential(body)
        self.shortcut = None if shortcut is None else _sequential(shortcut)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        out = output_shape_of(self.body, input_shape, "body")
        passed = (input_shape if self.shortcut is None
                  else output_shape_of(self.shortcut, input_shape, "shortcut"))
        if out != passed:
            which = ("its input (no shortcut: the identity)" if self.shortcut is None
                     else "its shortcut's output")
            raise ValueError(f"adds its body's output {show_shape(out)} to {which} "
                             f"{show_shape(passed)}, and the shapes differ; "
                             f"{_propose_shortcut(input_shape, out, self.body)}")
        return out

    def forward(self, x: Tensor) -> Tensor:
        self._ids = not x.is_floating_point()  # token ids: no gradient to return
        out = self.body.forward(x)  # body first, as in the twin: random draws in one order
        skip = x if self.shortcut is None else self.shortcut.forward(x)
        return out + skip  # y = body(x) + shortcut(x)

    def backward(self, grad_output: Tensor) -> Tensor | None:
        g = grad_output  # dL/dbody(x) = dL/dshortcut(x) = g: a sum passes g to both terms
        grad_skip = g if self.shortcut is None else self.shortcut.backward(g)
        # x fans out to body and shortcut: dL/dx = body.backward(g) + shortcut.backward(g)
        return _fan_in([self.body.backward(g), grad_skip], self._ids)

    def torch_twin(self) -> torch.nn.Module | None:
        body = self.body.torch_twin()
        shortcut = None if self.shortcut is None else self.shortcut.torch_twin()
        if body is None or (self.shortcut is not None and shortcut is None):
            return None
        return TorchResidual(body, shortcut)


def _fan_in(grads: list[Tensor | None], ids: bool) -> Tensor | None:
    """dL/dx of an input x that fanned out to several paths: the sum of their gradients
    (the chain rule over every path). None when x is token ids (integers have no gradient;
    each path's backward has still been run, for its parameters' gradients)."""
    if ids:
        return None
    total = grads[0]
    for grad in grads[1:]:
        total = total + grad
    return total


def _propose_shortcut(input_shape: tuple[int, ...], out: tuple[int, ...],
                      body: Module | None = None) -> str:
    """A shortcut turning `input_shape` into `out`: a linear layer on the last axis, or a
    1×1 convolution (conv2d for (C, H, W), conv1d for (C, L) when `body` holds a conv1d)."""
    conv1d = len(out) == 2 and any(isinstance(m, Conv1d) for _, m in
                                   (body.named_modules() if body is not None else ()))
    if len(out) == len(input_shape) and (len(out) == 3 or conv1d):
        stride = {-(-h // o) for h, o in zip(input_shape[1:], out[1:], strict=True)}
        step = stride.pop() if len(stride) == 1 else 0
        if step and all(-(-h // step) == o for h, o in zip(input_shape[1:], out[1:],
                                                           strict=True)):
            stride_text = f", stride: {step}" if step > 1 else ""
            return (f"set shortcut: [{{type: conv{len(out) - 1}d, out_channels: {out[0]}, "
                    f"kernel_size: 1{stride_text}}}]")
    if len(out) == len(input_shape) and out[:-1] == input_shape[:-1]:  # (F,), (T, F)
        return f"set shortcut: [{{type: linear, out_features: {out[-1]}}}]"
    return "set a shortcut that outputs the body's shape"


class TorchResidual(torch.nn.Module):
    """torch.nn twin of Residual: y = body(x) + shortcut(x) (identity when None)."""

    def __init__(self, body: torch.nn.Module, shortcut: torch.nn.Module | None = None):
        super().__init__()
        self.body, self.shortcut = body, shortcut

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + (x if self.shortcut is None else self.shortcut(x))


@register("layer", "concat")
class Concat(Module):
    """The branches' outputs side by side on `dim` (torch.cat), each branch fed the input.

    `branches` is a list of modules (or of lists of them); keys `branches.0.2.weight`.
    `dim` counts the batch as 0, as torch.cat: 1 joins features or channels. Shape: x ->
    the branches' output shape, their sizes on `dim` added; the other sizes must agree.
    """

    token_ids = "join"  # ids from every branch stay ids; ids beside floats are refused

    def __init__(self, branches: list[Layers], dim: int = 1):
        if not branches:
            raise ValueError("branches must hold at least one list of layers")
        self.branches = [_sequential(b) for b in branches]
        self.dim = dim
        self._sizes: list[int] = []

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        outs = [output_shape_of(b, input_shape, f"branches[{k}]")
                for k, b in enumerate(self.branches)]
        rank = len(outs[0]) + 1
        if not -rank < self.dim < rank or self.dim % rank == 0:
            raise ValueError(f"has dim={self.dim}, but its branches output "
                             f"{show_shape(outs[0])}: use a dim from 1 to {rank - 1} (0 is "
                             "the batch)")
        axis = self.dim % rank - 1  # without the batch
        for k, out in enumerate(outs):
            if len(out) != len(outs[0]) or any(a != b for i, (a, b) in enumerate(
                    zip(out, outs[0], strict=True)) if i != axis):
                raise ValueError(f"joins its branches on dim {self.dim}, but branches[0] "
                                 f"outputs {show_shape(outs[0])} and branches[{k}] "
                                 f"{show_shape(out)}: they may differ on dim {self.dim} only")
        return (*outs[0][:axis], sum(out[axis] for out in outs), *outs[0][axis + 1:])

    def forward(self, x: Tensor) -> Tensor:
        self._ids = not x.is_floating_point()  # token ids: no gradient to return
        outs = [branch.forward(x) for branch in self.branches]
        self._sizes = [out.shape[self.dim] for out in outs]
        return torch.cat(outs, self.dim)  # y = [branch₁(x), branch₂(x), ...] on dim

    def backward(self, grad_output: Tensor) -> Tensor | None:
        # gₖ: the slice of g that branch k produced; x fans out to every branch, so
        # dL/dx = Σₖ branchₖ.backward(gₖ)
        slices = grad_output.split(self._sizes, self.dim)
        return _fan_in([branch.backward(g) for branch, g in
                       zip(self.branches, slices, strict=True)], self._ids)

    def torch_twin(self) -> torch.nn.Module | None:
        twins = [branch.torch_twin() for branch in self.branches]
        return None if any(t is None for t in twins) else TorchConcat(twins, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class TorchConcat(torch.nn.Module):
    """torch.nn twin of Concat: torch.cat of the branches' outputs on `dim`."""

    def __init__(self, branches: list[torch.nn.Module], dim: int = 1):
        super().__init__()
        self.branches, self.dim = torch.nn.ModuleList(branches), dim

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([branch(x) for branch in self.branches], self.dim)


@register("layer", "repeat")
class Repeat(Sequential):
    """`times` copies of `body` in sequence, each with its own parameters.

    A stack of transformer blocks, say: a Sequential of Sequentials, keys `0.1.weight` for
    the first copy's second layer. `body` makes one fresh copy per call (in a config: a list of
    layer configs). Shape: x -> x; the body must keep its input's shape when times > 1.
    Backward is Sequential's: the copies' backward passes in reverse.
    """

    def __init__(self, times: Annotated[int, Range(ge=1)], body: LayerFactory):
        if times < 1:
            raise ValueError(f"times must be >= 1, got {times}")
        if isinstance(body, Module) or not callable(body):
            raise TypeError("body must be a function making one copy, e.g. "
                            "lambda: Sequential(Linear(8, 8), ReLU()), so that each copy has "
                            f"its own parameters; got {type(body).__name__}")
        make: Callable[[], Module] = body
        super().__init__(*(_sequential(make()) for _ in range(times)))

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        out = output_shape_of(self[0], input_shape, "body")
        if out != input_shape and len(self) > 1:
            raise ValueError(f"needs a body that keeps its input's shape, so that each copy "
                             f"can follow the one before, but it turns {show_shape(input_shape)}"
                             f" into {show_shape(out)}; move the layer that resizes before "
                             "the repeat")
        return out

    def extra_repr(self) -> str:
        return f"times={len(self)}"
