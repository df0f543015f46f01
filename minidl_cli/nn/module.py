"""Module, Parameter and Sequential: the bookkeeping every layer inherits.

A Module computes `forward(x)` and `backward(grad_output) -> grad_input` with plain
tensor operations; `backward` *adds* parameter gradients into `Parameter.grad`, so
fan-out and gradient accumulation are correct (as in micrograd and torch).

Non-learned state (BatchNorm's running statistics) lives in *buffers*, as in torch.nn:
`register_buffer(name, tensor)` makes it an attribute that `state_dict`,
`load_state_dict` and `to()` include under the layer's prefix, and that `parameters()`
never returns, so no optimizer sees it.

Sub-modules are found by walking attributes, lists and tuples alike (as tinygrad's
get_state_dict does): a module kept in `self.branches = [a, b]` is child `branches.0`, so
no list of layers can drop out of the parameters, the state dict, `to()` or `train()`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

import torch
from torch import Tensor


class Parameter:
    """A learnable tensor and the gradient accumulated for it (same shape)."""

    def __init__(self, data: Tensor):
        self.data = data
        self.grad = torch.zeros_like(data)

    @property
    def shape(self) -> torch.Size:
        return self.data.shape

    def __repr__(self) -> str:
        return f"Parameter(shape={tuple(self.data.shape)}, dtype={self.data.dtype})"


def show_shape(input_shape: tuple[int, ...]) -> str:
    """A batch of inputs of `input_shape` as messages write it: (16, 4, 4) -> '(N, 16, 4, 4)'."""
    return "(" + ", ".join(["N", *map(str, input_shape)]) + ")"


EVAL_VALUES = 2**20  # values of a row's input or output per slice of forward_in_slices


def forward_in_slices(module: Module, x: Tensor, values: int = EVAL_VALUES,
                      row_outputs: int | None = None) -> Tensor:
    """module(x) for many rows, a slice of rows at a time. Every layer keeps what its
    backward would need, so one call on a whole split holds all of it at once (a GPT's
    attention weights and hidden layers for every window: tens of GB); slices of about
    `values` values of the larger of a row's input and output hold a bounded amount.
    Small data is one slice, the very call module(x). `row_outputs`, the values one row's
    output holds, spares a one-row call that measures it (the trainer knows it).

    Shape: x (n, ...) -> module(x)'s (n, ...).
    """
    n = len(x)
    if n == 0:  # no rows: none out, shaped by one row of zeros (attention cannot reshape 0)
        return module(x.new_zeros(1, *x.shape[1:]))[:0]
    if row_outputs is None:
        row_outputs = module(x[:1]).numel()
    rows = max(1, values // max(x[:1].numel(), row_outputs, 1))
    if rows >= n:
        return module(x)
    return torch.cat([module(x[start:start + rows]) for start in range(0, n, rows)])


def output_shape_of(layer: Module, input_shape: tuple[int, ...], name: str) -> tuple[int, ...]:
    """The shape `layer` outputs for inputs of `input_shape` (both without the batch), as it
    declares (`output_shape`) or, for a layer without that (a plugin), as probed with a
    batch of two, forward and backward. ValueError whose message starts with `name`."""
    declared = getattr(layer, "output_shape", None)
    if declared is None:
        return _probe(layer, input_shape, name)
    try:
        out = declared(input_shape)
    except ValueError as e:  # the reason reads after the layer's name
        raise ValueError(f"{name} {e}") from None
    except Exception as e:  # a plugin's output_shape
        raise ValueError(f"{name}.output_shape{show_shape(input_shape)} fails: "
                         f"{type(e).__name__}: {e}") from None
    if not (isinstance(out, tuple) and out and all(isinstance(n, int) and n > 0 for n in out)):
        raise ValueError(f"{name}.output_shape returned {out!r}; it must return the output's "
                         "shape without the batch, a tuple of sizes >= 1")
    return out


def _probe(layer: Module, shape: tuple[int, ...], name: str) -> tuple[int, ...]:
    """Run a batch of two through `layer`, forward and backward, in eval mode; its output's
    shape. RNG, parameters, gradients, buffers and the train/eval mode are left as found."""
    batch = (2, *shape)
    params = layer.parameters()
    dtype = params[0].data.dtype if params else torch.float64
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    grads = [p.grad.clone() for p in params]
    was_training = layer.training
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        try:
            out = layer.eval().forward(torch.zeros(batch, dtype=dtype))
            if not isinstance(out, Tensor) or out.dim() < 2 or out.shape[0] != 2:
                got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
                raise _Wrong(f"{name} turns a batch of shape {batch} into {got}; a layer must "
                             "keep the batch dimension first")
            grad = layer.backward(torch.ones_like(out))
        except _Wrong as e:
            raise ValueError(str(e)) from None
        except Exception as e:  # any layer, plugins too: report with its name
            text = str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"
            raise ValueError(f"{name} fails on inputs of shape {show_shape(shape)}: "
                             f"{text}") from None
        finally:
            layer.train(was_training)
            layer.load_state_dict(state)
            for p, g in zip(params, grads, strict=True):
                p.grad.copy_(g)
    got = tuple(grad.shape) if isinstance(grad, Tensor) else type(grad).__name__
    if got != batch:
        raise ValueError(f"{name}.backward returned shape {got} for a batch of shape {batch}; "
                         "it must return dL/dx, shaped like the input")
    return tuple(out.shape[1:])


class _Wrong(Exception):
    """A probed layer's own mistake, reported as it is."""


def same_shape(self: Module, input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """`output_shape` of a layer whose output has its input's shape: `output_shape = same_shape`."""
    return input_shape


class Module:
    """Base class: subclasses write `forward` and `backward`; this class does the rest.

    A layer may also say what it does to shapes, so a model is built by passing a shape
    (not data) through it: `output_shape(input_shape) -> tuple`, both without the batch
    dimension, raising ValueError with a reason that reads after the layer's name
    ("needs (N, F), got (N, 16, 4, 4); add a flatten"). Layers without it are probed with
    a batch of two.
    """

    training: bool = True
    # Constructor arguments the builder reads off the input's shape: argument -> axis, batch
    # first as in torch (-1: the last axis, 1: the channels). A layer declares its own; this
    # default gives a plugin torch.nn's names for them, as torch's Lazy modules infer them.
    inferred: dict[str, int] = {"in_features": -1, "in_channels": 1, "num_features": 1,
                                "normalized_shape": -1}

    # What the layer does with int64 token ids (a text data set's inputs), which the builder
    # checks before training: "pass" hands them on as ids, only their shape changed (flatten,
    # identity); "take" looks them up and outputs floats (embedding); "join" puts its paths'
    # outputs side by side (concat: all ids, or all floats); "add" adds its paths' outputs,
    # which must be floats (residual); "chain" runs its body in order (repeat). None: it
    # computes with its input as numbers, and ids before it are refused (a layer that refuses
    # floats with a TypeError, as a plugin embedding does, is taken to "take" them).
    token_ids: str | None = None

    def torch_twin(self) -> torch.nn.Module | None:
        """The torch.nn module computing the same function with the same state-dict keys
        (fresh weights), or None when torch.nn has none: `to_torch()` loads it, and the
        oracle checks against it. A layer overrides this beside its maths."""
        return None

    def to_torch(self) -> torch.nn.Module:
        """This module as torch.nn: its twin, with this module's state dict, dtype, device
        and train/eval mode. ValueError naming the first sub-module without a twin."""
        twin = self.torch_twin()
        if twin is None:
            name, lacking = next(((n, m) for n, m in self.named_modules()
                                  if not list(m.named_children()) and m.torch_twin() is None),
                                 ("", self))
            where = f" (module {name})" if name else ""
            raise ValueError(f"{type(lacking).__name__}{where} has no torch.nn twin; give its "
                             "class a torch_twin() method returning the torch.nn module")
        tensors = [p.data for p in self.parameters()] + self.buffers()
        floating = next((t for t in tensors if t.is_floating_point()), None)
        if floating is not None:
            twin = twin.to(device=floating.device, dtype=floating.dtype)
        twin.load_state_dict(self.state_dict())
        return twin.train(self.training)

    def forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement forward")

    def backward(self, grad_output: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement backward")

    def backward_params(self, grad_output: Tensor) -> None:
        """`backward` without dL/dx: only the parameter gradients are added. For the first
        layer of a network, whose input is data (autograd skips it too: data does not
        require grad). Layers whose input gradient is work of its own (Conv2d) override it."""
        self.backward(grad_output)

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # --- structure: parameters and children are found by walking attributes (tinygrad) ---

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """Modules held as attributes, or in a list or tuple attribute ('branches.0')."""
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value
            elif isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    if isinstance(item, Module):
                        yield f"{name}.{i}", item

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """This module ('') and every module below it, by state-dict prefix ('3.body.1')."""
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                yield prefix + name, value
        for name, child in self.named_children():
            yield from child.named_parameters(f"{prefix}{name}.")

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def register_buffer(self, name: str, tensor: Tensor) -> None:
        """Keep `tensor` as attribute `name`: saved and moved with the module, never trained."""
        if not isinstance(tensor, Tensor):
            raise TypeError(f"buffer {name!r} must be a Tensor, got {type(tensor).__name__}")
        names = self.__dict__.setdefault("_buffer_names", [])
        if name not in names:
            names.append(name)
        setattr(self, name, tensor)

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
        for name in vars(self).get("_buffer_names", ()):
            yield prefix + name, getattr(self, name)
        for name, child in self.named_children():
            yield from child.named_buffers(f"{prefix}{name}.")

    def buffers(self) -> list[Tensor]:
        return [b for _, b in self.named_buffers()]

    def param(self) -> list[tuple[Tensor, Tensor]]:
        """The course API: [(data, grad)] for every parameter."""
        return [(p.data, p.grad) for p in self.parameters()]

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad.zero_()

    def train(self, mode: bool = True) -> Module:
        self.training = mode
        for _, child in self.named_children():
            child.train(mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def to(self, device: torch.device | str | torch.dtype | None = None,
           dtype: torch.dtype | None = None):
        """Move every parameter, gradient and buffer in place; returns self.

        Called as torch.nn's is: `to(device)`, `to(torch.float64)`, `to(device, dtype)`.
        `dtype` casts floating-point tensors only, as in torch.nn (an int64 counter stays one).
        """
        if isinstance(device, torch.dtype):  # net.to(torch.float64)
            if dtype is not None:
                raise TypeError("Module.to() got two dtypes; pass to(device, dtype)")
            device, dtype = None, device
        for p in self.parameters():
            p.data = p.data.to(device=device, dtype=dtype)
            p.grad = p.grad.to(device=device, dtype=dtype)
        for _, module in self.named_modules():
            for name in vars(module).get("_buffer_names", ()):
                buffer = getattr(module, name)
                cast = dtype if buffer.is_floating_point() else None
                setattr(module, name, buffer.to(device=device, dtype=cast))
        return self

    # --- state dicts: torch.nn's keys and shapes ---

    def _named_state(self, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
        """Each module's parameters, then its buffers, then its children: torch.nn's order."""
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                yield prefix + name, value.data
        for name in vars(self).get("_buffer_names", ()):
            yield prefix + name, getattr(self, name)
        for name, child in self.named_children():
            yield from child._named_state(f"{prefix}{name}.")

    def state_dict(self) -> OrderedDict[str, Tensor]:
        """Parameters and buffers by torch.nn's keys ('0.weight', '1.running_mean', …)."""
        return OrderedDict(self._named_state())

    def load_state_dict(self, state_dict: dict[str, Tensor], strict: bool = True) -> None:
        """Copy tensors into the parameters and buffers (each keeps its own dtype);
        ValueError on missing, unexpected or misshapen keys."""
        own = dict(self._named_state())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            raise ValueError(
                f"state dict does not match {type(self).__name__}: "
                f"missing keys {missing}, unexpected keys {unexpected}"
            )
        for name, tensor in own.items():
            if name not in state_dict:
                continue
            value = state_dict[name]
            if not isinstance(value, Tensor) or value.shape != tensor.shape:
                shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise ValueError(
                    f"state dict entry {name!r} has shape {shape}, "
                    f"the model expects {tuple(tensor.shape)}"
                )
            tensor.copy_(value)

    # --- repr, as torch.nn prints it ---

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        children = list(self.named_children())
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        return f"{type(self).__name__}(\n" + _children_repr(children) + "\n)"


def _children_repr(children: list[tuple[str, Module]]) -> str:
    """A module's children as torch.nn prints them, one '  (name): ...' per attribute; the
    modules of a list attribute ('branches.0', 'branches.1') as one ModuleList."""
    groups: dict[str, list[tuple[str, Module]]] = {}  # 'branches.0' under 'branches'
    for name, child in children:
        head, _, index = name.partition(".")
        groups.setdefault(head, []).append((index, child))
    lines = []
    for head, members in groups.items():
        if members[0][0]:  # modules in a list, printed as torch.nn prints a ModuleList
            inner = "\n".join(f"  ({i}): " + repr(c).replace("\n", "\n  ")
                              for i, c in members)
            text = f"ModuleList(\n{inner}\n)"
        else:
            text = repr(members[0][1])
        lines.append(f"  ({head}): " + text.replace("\n", "\n  "))
    return "\n".join(lines)


class Sequential(Module):
    """Modules applied in order; backward runs them in reverse. Keys '0.weight', '2.bias', …

    The layers are fixed at construction, and so are their forward and backward methods:
    Sequential binds them once, because on a small network looking a method up for every
    layer on every step costs about as much as a layer's own bookkeeping.
    """

    token_ids = "chain"

    def __init__(self, *modules: Module):
        for module in modules:
            if not isinstance(module, Module):
                raise TypeError(f"Sequential takes Modules, got {type(module).__name__}")
        self.layers = tuple(modules)
        self._forwards = tuple(module.forward for module in self.layers)
        self._backwards = tuple(module.backward for module in reversed(self.layers))

    def named_children(self) -> Iterator[tuple[str, Module]]:
        for i, module in enumerate(self.layers):
            yield str(i), module

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        for i, module in enumerate(self.layers):
            input_shape = output_shape_of(module, input_shape, f"[{i}] {type(module).__name__}")
        return input_shape

    def torch_twin(self) -> torch.nn.Module | None:
        twins = [module.torch_twin() for module in self.layers]
        return None if any(t is None for t in twins) else torch.nn.Sequential(*twins)

    def __getitem__(self, i: int) -> Module:
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Module]:
        return iter(self.layers)

    def forward(self, x: Tensor) -> Tensor:
        for forward in self._forwards:
            x = forward(x)
        return x

    def backward(self, grad_output: Tensor) -> Tensor | None:
        for backward in self._backwards:
            grad_output = backward(grad_output)
            if grad_output is None:  # an embedding's token ids: no gradient flows further
                return None  # back (the layers before it only reshape the ids)
        return grad_output

    def backward_params(self, grad_output: Tensor) -> None:
        for backward in self._backwards[:-1]:
            grad_output = backward(grad_output)
            if grad_output is None:  # token ids before an embedding: nothing to learn there
                return
        if self.layers:
            self.layers[0].backward_params(grad_output)  # the input's gradient is not needed
