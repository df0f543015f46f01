"""Construct the model, loss, optimizer and scheduler of a resolved config, via the registry.

One generic path for every component: look the `type` up, pass the other keys as keyword
arguments, plus what the builder supplies (a layer's sizes read off its input, as the layer
declares in `inferred`; the optimizer's parameters, the scheduler's optimizer). The model
is built by passing a shape, not data, through its layers once: each built-in layer says
what shape it outputs (`output_shape`); a layer without that (a plugin) is probed with a
batch of two, forward and backward, so that a wrong shape is a build error naming it
rather than a crash in the layer after it. An option holding a list of layer configs (a
block's `body`) is built the same way, for the block's input, its errors naming the path
(`model[3].body[1]: ...`).
"""

from __future__ import annotations

from typing import Any

import torch

from minidl_cli import registry
from minidl_cli.nn import Loss, Sequential
from minidl_cli.nn.module import Module, output_shape_of, show_shape
from minidl_cli.optim import LRScheduler, Optimizer


def _split(cfg: dict | str) -> tuple[str, dict[str, Any]]:
    """(type, options) of a component given as {type: ..., options...} or a bare name."""
    if isinstance(cfg, str):
        return cfg, {}
    options = dict(cfg)
    return options.pop("type"), options


def injected_sizes(entry: registry.Entry, shape: tuple[int, ...],
                   data: dict[str, int] | None = None) -> dict[str, int]:
    """The sizes the builder passes layer `entry` for inputs of `shape` (batch dim excluded),
    read off the axes the layer declares (batch first: -1 the last, 1 the channels), or off
    the data set when it declares a name (an embedding's "vocabulary_size", from `data`; a
    recorded config already holds it, so without `data` the config's value stands)."""
    full = (None, *shape)
    sizes = {}
    for arg, axis in entry.inferred.items():
        if isinstance(axis, str):
            if data is not None and axis in data:
                sizes[arg] = data[axis]
            continue
        if not -len(full) <= axis < len(full) or full[axis] is None:
            raise ValueError(f"{entry.name} reads {arg} off axis {axis} of its input, which "
                             f"is {show_shape(shape)}")
        sizes[arg] = full[axis]
    return sizes


def _unit(entry: registry.Entry, arg: str, shape: tuple[int, ...]) -> str:
    """What a message calls an inferred size: 'features' on the last axis, else 'channels'."""
    if isinstance(entry.inferred[arg], str):  # read off the data set
        return entry.inferred[arg].replace("_size", "").replace("_", " ") + " entries"
    axis = entry.inferred[arg] % (len(shape) + 1)
    return "features" if axis == len(shape) else "channels"


def build_layers(model_cfg: list[dict | str], input_shape: tuple[int, ...] | int,
                 path: str = "model", record: bool = False,
                 seen: list | None = None, data: dict[str, int] | None = None,
                 ids: bool | None = None) -> tuple[Sequential, list[tuple[int, ...]]]:
    """The network and its shapes: shapes[i] enters model[i], shapes[-1] leaves the network.

    Shapes leave out the batch dimension: (d,) for features, (C, H, W) for images; an int
    d means (d,). Layers are constructed in order, each exactly once (a block after the
    layers of its nested lists), so torch's global RNG is consumed as by constructing them
    by hand. `path` names the list in errors, ValueError("model[i]...: ..."); `record`
    writes each inferred size into the (dict) layer configs that have its key, at every depth;
    `seen` (a list) gets (path, layer, input shape) of every layer built, at every depth;
    `data` holds the sizes a layer may read off the data set ({"vocabulary_size": V});
    `ids`: whether the input is token ids (None unknown; True when `data` has a vocabulary;
    False for float features, which no embedding may take):
    they must reach an embedding before any float layer, and only ids may reach one.
    """
    model, shapes, _ = _build(model_cfg, input_shape, path, record, seen, data, ids)
    return model, shapes


def _build(model_cfg: list[dict | str], input_shape: tuple[int, ...] | int, path: str,
           record: bool, seen: list | None, data: dict[str, int] | None,
           ids: bool | None) -> tuple[Sequential, list[tuple[int, ...]], bool | None]:
    """build_layers, and whether the network outputs token ids (None: unknown)."""
    shapes = [(input_shape,) if isinstance(input_shape, int) else tuple(input_shape)]
    if ids is None and path == "model" and data and "vocabulary_size" in data:
        ids = True  # a text data set's inputs
    origin = "the data" if path == "model" else f"{path}'s input"  # of token ids
    layers = []
    for i, cfg in enumerate(model_cfg):
        where = f"{path}[{i}]"
        name, options = _split(cfg)
        entry = registry.lookup("layer", name)
        source = (f"{path}[{i - 1}] outputs" if i else
                  "the data has" if path == "model" else f"the input of {path} has")
        if ids is False and (getattr(entry.target, "token_ids", None) == "take"
                             or "vocabulary_size" in entry.inferred.values()):  # an embedding
            if i == 0 and path == "model":
                raise ValueError(f"{where}: {entry.name} takes token ids, but the data gives "
                                 f"float features {show_shape(shapes[-1])} (token ids come "
                                 "from a text data set, data.type: text; the numbers of a "
                                 "table or an .npz file are features, integers too); remove it")
            raise ValueError(f"{where}: {entry.name} takes token ids, but "
                             f"{f'{path}[{i - 1}]' if i else origin} gives floats "
                             f"{show_shape(shapes[-1])}; remove it (one embedding, first, "
                             "turns the token ids into vectors)")
        for arg, size in _inferred_options(entry, options, shapes[-1], where, source,
                                           data).items():
            options[arg] = size
            if record and isinstance(cfg, dict) and arg in cfg:
                cfg[arg] = size  # the config describes the run: inferred sizes recorded
        paths = _build_nested(entry, options, shapes[-1], where, record, seen, data, ids)
        layer = _construct(entry, options, where)
        if ids:
            ids = _still_ids(layer, shapes[-1], f"{where}: {entry.name}", origin,
                             [(at, (shapes[-1] if got is None else got), out)
                              for at, got, out in _resolve(paths)])
        try:
            shapes.append(output_shape_of(layer, shapes[-1], entry.name))
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        layers.append(layer)
        if seen is not None:
            seen.append((where, layer, shapes[-2]))
    return Sequential(*layers), shapes, ids


# A path of a block given token ids: (its name, its output shape or None for the block's
# input itself, whether it outputs token ids); a lazy path (a repeat's body) as a list
# that its first build fills.
_Path = tuple[str, "tuple[int, ...] | None", "bool | None"]


def _resolve(paths: list) -> list[_Path]:
    """The block's paths, the lazy ones (lists filled when the block built its copies)
    replaced by what their first build found."""
    return [item for path in paths for item in (path if isinstance(path, list) else [path])]


def _still_ids(layer: Module, shape: tuple[int, ...], what: str, origin: str,
               paths: list[_Path]) -> bool:
    """Whether `layer`, given token ids of `shape`, outputs token ids, as it declares
    (`token_ids`, Module): True when it passes them on (a flatten), False when it takes them
    (an embedding; an undeclared layer that refuses floats with a TypeError, as a plugin
    embedding does); a block by its `paths` (the nested lists it holds). Else a ValueError:
    `what` computes with numbers, and `origin` gives it token ids."""
    kind = getattr(layer, "token_ids", None)
    if kind == "pass":
        return True
    if kind == "take":
        return False
    if kind == "chain" and paths:
        return bool(paths[-1][2])
    if kind in ("join", "add") and paths:
        given = [(at, out) for at, out, is_ids in paths if is_ids]
        if kind == "join" and given and len(given) < len(paths):
            at, out = given[0]
            return _refuse(f"{what} joins token ids {show_shape(out)} int64 from {at} to "
                           f"floats from its other branches, and the layer after it would "
                           f"take the ids as numbers; begin {at} with an embedding too, e.g. "
                           "{type: embedding, embedding_dim: 16}, or remove it")
        if kind == "add" and given:
            at, out = given[0]
            source = f"from {at}" if at != "its input" else "(its input: no shortcut)"
            return _refuse(f"{what} adds token ids {show_shape(out)} int64 {source} as "
                           f"numbers; begin its body and a shortcut with an embedding, or "
                           "put the embedding before it, e.g. "
                           "{type: embedding, embedding_dim: 16}")
        return bool(given)
    if kind is None and _refuses_floats(layer, shape):
        return False
    raise ValueError(f"{what} takes float features, but {origin} gives token ids "
                     f"{show_shape(shape)} int64; put an embedding first, e.g. "
                     "{type: embedding, embedding_dim: 16}")


def _refuse(message: str) -> bool:
    raise ValueError(message)


def _refuses_floats(layer: Module, shape: tuple[int, ...]) -> bool:
    """Whether `layer` (an undeclared one: a plugin) takes token ids of `shape` and outputs
    floats, but refuses floats with a TypeError, as an embedding does (probed in eval mode)."""
    was_training = layer.training
    layer.eval()
    try:
        out = _probe(layer, torch.zeros((2, *shape), dtype=torch.int64))
        return (isinstance(out, torch.Tensor) and out.is_floating_point()
                and _probe(layer, torch.zeros(2, *shape)) is TypeError)
    finally:
        layer.train(was_training)


def _probe(layer: Module, x: torch.Tensor) -> torch.Tensor | type | None:
    """layer.forward(x) with torch's RNG untouched; the exception's type if it raises."""
    with torch.random.fork_rng(devices=[]):
        try:
            return layer.forward(x)
        except Exception as e:
            return type(e)


def _inferred_options(entry: registry.Entry, options: dict[str, Any], shape: tuple[int, ...],
                      where: str, source: str, data: dict[str, int] | None) -> dict[str, int]:
    """The sizes layer `entry` reads off its input `shape` (and the data set), each checked
    against the one `options` gives, if any: ValueError naming both and the fix; `source`
    says where the input comes from ('model[2] outputs'). A size the layer declares a
    minimum (`inferred_minimum`: argument -> what a message calls it, as a positional
    embedding's max_len, 'positions') may be set larger, and the given one is kept."""
    try:
        sizes = injected_sizes(entry, shape, data)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    minimum = getattr(entry.target, "inferred_minimum", None) or {}
    for arg, size in sizes.items():
        given = options.get(arg)
        if arg in minimum and given is not None:
            if isinstance(given, int) and given < size:
                raise ValueError(f"{where}.{arg}: is {given} but {source} {size} "
                                 f"{minimum[arg]}; remove it (it is inferred) or set it to "
                                 f"{size} or more")
            sizes[arg] = given  # a larger table than the input needs stands
        elif given is not None and given != size:
            raise ValueError(f"{where}.{arg}: is {given} but {source} {size} "
                             f"{_unit(entry, arg, shape)}; remove it (it is "
                             f"inferred) or set it to {size}")
    return sizes


def _construct(entry: registry.Entry, options: dict[str, Any], where: str) -> Module:
    """The layer `entry` with `options`; its constructor's errors (and a plugin's bugs) as
    ValueError naming `where` and the option."""
    try:
        return entry.target(**options)
    except (ValueError, TypeError) as e:
        if str(e).startswith(f"{where}."):  # a nested list's copy, built by the block
            raise ValueError(str(e)) from None
        raise ValueError(_name_option(where, str(e), options)) from None
    except Exception as e:  # a plugin's bug, or a size beyond memory
        if isinstance(e, MemoryError) or "can't allocate memory" in str(e):
            raise ValueError(_beyond_memory(where, options)) from None
        raise ValueError(f"{where}: {type(e).__name__}: {e}") from None


def _beyond_memory(where: str, options: dict[str, Any]) -> str:
    """The one line for a layer whose parameters do not fit in memory, naming its largest
    size option (a positional_embedding's max_len of 10^14 asked for 12.8 PB)."""
    sizes = {k: v for k, v in options.items() if isinstance(v, int) and not isinstance(v, bool)}
    largest = max(sizes, key=sizes.get, default=None)
    fix = f"make {where}.{largest} ({sizes[largest]}) smaller" if largest else "make it smaller"
    return f"{where}: its parameters do not fit in this machine's memory; {fix}"


def _build_nested(entry: registry.Entry, options: dict[str, Any], shape: tuple[int, ...],
                  where: str, record: bool, seen: list | None,
                  data: dict[str, int] | None = None, ids: bool | None = None) -> list:
    """Replace each option holding layer configs by what the constructor takes: a Sequential
    (Layers), a list of them (list[Layers]) or a function making fresh copies (LayerFactory),
    each built for the block's input `shape`. Returns the block's paths (_Path, in order; a
    factory's as a list its first copy fills); an optional Layers left out is the identity
    (a residual's shortcut), the path ('its input', None, ids)."""
    paths: list = []
    for option in entry.options():
        nesting, value = registry.nesting(option.type), options.get(option.name)
        if nesting is None:
            continue
        at = f"{where}.{option.name}"
        if value is None:
            if nesting == "layers":
                paths.append(("its input", None, ids))
            continue
        if nesting == "layers":
            options[option.name], shapes, out_ids = _build(value, shape, at, record, seen,
                                                           data, ids)
            paths.append((at, shapes[-1], out_ids))
        elif nesting == "branches":
            built = []
            for k, branch in enumerate(value):
                module, shapes, out_ids = _build(branch, shape, f"{at}[{k}]", record, seen,
                                                 data, ids)
                built.append(module)
                paths.append((f"{at}[{k}]", shapes[-1], out_ids))
            options[option.name] = built
        else:
            found: list = []
            paths.append(found)
            options[option.name] = _copies(value, shape, at, record, seen, data, ids, found)
    return paths


def _copies(cfg: list, shape: tuple[int, ...], where: str, record: bool, seen: list | None,
            data: dict[str, int] | None = None, ids: bool | None = None,
            found: list | None = None):
    """A function building a fresh Sequential of `cfg` for `shape` at each call (the first
    call records the inferred sizes, and puts its _Path into `found`)."""
    calls = []

    def build_copy() -> Sequential:
        calls.append(None)
        module, shapes, out_ids = _build(cfg, shape, where, record and len(calls) == 1, seen,
                                         data, ids)
        if found is not None and len(calls) == 1:
            found.append((where, shapes[-1], out_ids))
        return module

    return build_copy


def _name_option(where: str, message: str, options: dict[str, Any]) -> str:
    """A constructor's error about one of its options ("stride must be >= 1, got 0") as
    "model[i].stride: must be >= 1, got 0"; other errors as "model[i]: message"."""
    for arg in sorted(options, key=len, reverse=True):
        if message.startswith(f"{arg} "):
            return f"{where}.{arg}: {message[len(arg) + 1:]}"
    return f"{where}: {message}"


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
