"""Construct the model, loss, optimizer and scheduler of a resolved config, via the registry.

One generic path for every component: look the `type` up, pass the other keys as keyword
arguments, plus the arguments the builder injects (a layer's `in_features`, the
optimizer's parameters, the scheduler's optimizer). A layer's output width is learnt by
running a dummy batch through it in eval mode, so plugin layers need no shape metadata.
"""

from __future__ import annotations

from typing import Any

import torch

from minidl_cli import registry
from minidl_cli.nn import Loss, Module, Sequential
from minidl_cli.optim import LRScheduler, Optimizer


def _split(cfg: dict | str) -> tuple[str, dict[str, Any]]:
    """(type, options) of a component given as {type: ..., options...} or a bare name."""
    if isinstance(cfg, str):
        return cfg, {}
    options = dict(cfg)
    return options.pop("type"), options


def build_layers(model_cfg: list[dict | str], in_features: int) -> tuple[Sequential, list[int]]:
    """The network and its widths: widths[i] enters model[i], widths[-1] leaves the network.

    Layers are constructed in order, each exactly once, so torch's global RNG is consumed
    as by constructing them by hand. Errors are ValueError("model[i]...: ...").
    """
    layers, widths = [], [in_features]
    for i, cfg in enumerate(model_cfg):
        name, options = _split(cfg)
        entry = registry.lookup("layer", name)
        if registry.accepts(entry, "in_features"):
            given = options.get("in_features")
            if given is not None and given != widths[-1]:
                source = "the data has" if i == 0 else f"model[{i - 1}] outputs"
                raise ValueError(
                    f"model[{i}].in_features: is {given} but {source} {widths[-1]} features; "
                    f"remove it (it is inferred) or set it to {widths[-1]}"
                )
            options["in_features"] = widths[-1]
        try:
            layer = entry.target(**options)
        except (ValueError, TypeError) as e:
            raise ValueError(f"model[{i}]: {e}") from None
        except Exception as e:  # a plugin's bug, or a size beyond memory
            raise ValueError(f"model[{i}]: {type(e).__name__}: {e}") from None
        widths.append(_output_width(i, entry.name, layer, widths[-1]))
        layers.append(layer)
    return Sequential(*layers), widths


def _output_width(i: int, name: str, layer: Module, width: int) -> int:
    """The feature count `layer` outputs for inputs of `width` features (RNG left untouched)."""
    params = layer.parameters()
    dtype = params[0].data.dtype if params else torch.float64
    was_training = layer.training
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        try:
            out = layer.eval().forward(torch.zeros(2, width, dtype=dtype))
        except Exception as e:  # any layer, plugins too: report with its index
            raise ValueError(
                f"model[{i}]: {name} fails on inputs of {width} features: {type(e).__name__}: {e}"
            ) from None
        finally:
            layer.train(was_training)
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"model[{i}]: {name} turns a batch of shape (2, {width}) into {shape}; "
            "a layer must map (N, features) to (N, features')"
        )
    return out.shape[1]


def build_model(model_cfg: list[dict | str], in_features: int) -> Sequential:
    """The Sequential network of `model_cfg` for inputs of `in_features` features."""
    return build_layers(model_cfg, in_features)[0]


def infer_widths(model_cfg: list[dict | str], in_features: int) -> list[int]:
    """widths[i] = features entering model[i]; widths[-1] = network output. RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        return build_layers(model_cfg, in_features)[1]


def build_loss(loss_cfg: dict | str) -> Loss:
    name, options = _split(loss_cfg)
    return registry.build("loss", name, **options)


def build_optimizer(opt_cfg: dict | str, params) -> Optimizer:
    name, options = _split(opt_cfg)
    return registry.build("optimizer", name, list(params), **options)


def build_scheduler(sched_cfg: dict | str | None, optimizer: Optimizer) -> LRScheduler | None:
    if sched_cfg is None:
        return None
    name, options = _split(sched_cfg)
    return registry.build("scheduler", name, optimizer, **options)
