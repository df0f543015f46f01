"""Construct the model, loss, optimizer and scheduler of a resolved config, via the registry.

One generic path for every component: look the `type` up, pass the other keys as keyword
arguments, plus the arguments the builder injects (a layer's `in_features`, `in_channels`,
`num_features` or `normalized_shape`, the optimizer's parameters, the scheduler's
optimizer). The model is built by passing a shape, not data, through its layers once: each
built-in layer says what shape it outputs (`output_shape`); a layer without that (a
plugin) is probed with a batch of two, forward and backward, so that a wrong shape is a
build error naming it rather than a crash in the layer after it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from minidl_cli import registry
from minidl_cli.nn import Loss, Module, Sequential
from minidl_cli.nn.module import show_shape
from minidl_cli.optim import LRScheduler, Optimizer

# What the builder injects, read off the incoming shape (without the batch dimension),
# and what a message calls that size.
INFERRED: dict[str, tuple[Callable[[tuple[int, ...]], int], str]] = {
    "in_features": (lambda shape: shape[-1], "features"),
    "in_channels": (lambda shape: shape[0], "channels"),
    "num_features": (lambda shape: shape[0], "features"),  # batch norm: the channels
    "normalized_shape": (lambda shape: shape[-1], "features"),  # layer norm: the last axis
}


def _split(cfg: dict | str) -> tuple[str, dict[str, Any]]:
    """(type, options) of a component given as {type: ..., options...} or a bare name."""
    if isinstance(cfg, str):
        return cfg, {}
    options = dict(cfg)
    return options.pop("type"), options


def injected_sizes(entry: registry.Entry, shape: tuple[int, ...]) -> dict[str, int]:
    """The sizes the builder passes layer `entry` for inputs of `shape` (batch dim excluded)."""
    return {arg: read(shape) for arg, (read, _) in INFERRED.items()
            if registry.accepts(entry, arg)}


def build_layers(model_cfg: list[dict | str],
                 input_shape: tuple[int, ...] | int) -> tuple[Sequential, list[tuple[int, ...]]]:
    """The network and its shapes: shapes[i] enters model[i], shapes[-1] leaves the network.

    Shapes leave out the batch dimension: (d,) for features, (C, H, W) for images; an int
    d means (d,). Layers are constructed in order, each exactly once, so torch's global RNG
    is consumed as by constructing them by hand. Errors are ValueError("model[i]...: ...").
    """
    shapes = [(input_shape,) if isinstance(input_shape, int) else tuple(input_shape)]
    layers = []
    for i, cfg in enumerate(model_cfg):
        name, options = _split(cfg)
        entry = registry.lookup("layer", name)
        for arg, size in injected_sizes(entry, shapes[-1]).items():
            given = options.get(arg)
            if given is not None and given != size:
                unit = INFERRED[arg][1]
                source = "the data has" if i == 0 else f"model[{i - 1}] outputs"
                raise ValueError(f"model[{i}].{arg}: is {given} but {source} {size} {unit}; "
                                 f"remove it (it is inferred) or set it to {size}")
            options[arg] = size
        try:
            layer = entry.target(**options)
        except (ValueError, TypeError) as e:
            raise ValueError(_name_option(f"model[{i}]", str(e), options)) from None
        except Exception as e:  # a plugin's bug, or a size beyond memory
            raise ValueError(f"model[{i}]: {type(e).__name__}: {e}") from None
        shapes.append(_output_shape(i, entry.name, layer, shapes[-1]))
        layers.append(layer)
    return Sequential(*layers), shapes


def _name_option(where: str, message: str, options: dict[str, Any]) -> str:
    """A constructor's error about one of its options ("stride must be >= 1, got 0") as
    "model[i].stride: must be >= 1, got 0"; other errors as "model[i]: message"."""
    for arg in sorted(options, key=len, reverse=True):
        if message.startswith(f"{arg} "):
            return f"{where}.{arg}: {message[len(arg) + 1:]}"
    return f"{where}: {message}"


def _output_shape(i: int, name: str, layer: Module, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape `layer` outputs for inputs of `shape`, as it declares it or as probed."""
    declared = getattr(layer, "output_shape", None)
    if declared is None:
        return _probe(i, name, layer, shape)
    try:
        out = declared(shape)
    except ValueError as e:  # the reason reads after the layer's name
        raise ValueError(f"model[{i}]: {name} {e}") from None
    except Exception as e:  # a plugin's output_shape
        raise ValueError(f"model[{i}]: {name}.output_shape{show_shape(shape)} fails: "
                         f"{type(e).__name__}: {e}") from None
    if not (isinstance(out, tuple) and out and all(isinstance(n, int) and n > 0 for n in out)):
        raise ValueError(f"model[{i}]: {name}.output_shape returned {out!r}; it must return "
                         "the output's shape without the batch, a tuple of sizes >= 1")
    return out


def _probe(i: int, name: str, layer: Module, shape: tuple[int, ...]) -> tuple[int, ...]:
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
            if not isinstance(out, torch.Tensor) or out.dim() < 2 or out.shape[0] != 2:
                got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise ValueError(f"model[{i}]: {name} turns a batch of shape {batch} into "
                                 f"{got}; a layer must keep the batch dimension first")
            grad = layer.backward(torch.ones_like(out))
        except ValueError as e:
            if str(e).startswith(f"model[{i}]"):
                raise
            raise ValueError(f"model[{i}]: {name} fails on inputs of shape "
                             f"{show_shape(shape)}: {e}") from None
        except Exception as e:  # any layer, plugins too: report with its index
            raise ValueError(f"model[{i}]: {name} fails on inputs of shape "
                             f"{show_shape(shape)}: {type(e).__name__}: {e}") from None
        finally:
            layer.train(was_training)
            layer.load_state_dict(state)
            for p, g in zip(params, grads, strict=True):
                p.grad.copy_(g)
    got = tuple(grad.shape) if isinstance(grad, torch.Tensor) else type(grad).__name__
    if got != batch:
        raise ValueError(f"model[{i}]: {name}.backward returned shape {got} for a batch of "
                         f"shape {batch}; it must return dL/dx, shaped like the input")
    return tuple(out.shape[1:])


def build_model(model_cfg: list[dict | str], input_shape: tuple[int, ...] | int) -> Sequential:
    """The Sequential network of `model_cfg` for inputs of `input_shape` (no batch dim)."""
    return build_layers(model_cfg, input_shape)[0]


def infer_shapes(model_cfg: list[dict | str],
                 input_shape: tuple[int, ...] | int) -> list[tuple[int, ...]]:
    """shapes[i] enters model[i]; shapes[-1] leaves the network. RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        return build_layers(model_cfg, input_shape)[1]


def build_loss(loss_cfg: dict | str) -> Loss:
    name, options = _split(loss_cfg)
    return registry.build("loss", name, **options)


def build_optimizer(opt_cfg: dict | str, params) -> Optimizer:
    name, options = _split(opt_cfg)
    return registry.build("optimizer", name, list(params), **options)


def build_scheduler(sched_cfg: dict | str | None, optimizer: Optimizer,
                    epochs: int | None = None) -> LRScheduler | None:
    """The scheduler; its epoch_options left null (cosine's T_max) become `epochs`."""
    if sched_cfg is None:
        return None
    name, options = _split(sched_cfg)
    target = registry.lookup("scheduler", name).target
    for key in getattr(target, "epoch_options", ()):
        if options.get(key) is None and epochs is not None:
            options[key] = epochs
    return registry.build("scheduler", name, optimizer, **options)
