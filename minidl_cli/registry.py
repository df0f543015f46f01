"""The registry: every layer, loss, optimizer, scheduler and dataset under a snake_case name.

A component's options are its constructor's (or factory's) keyword arguments, read with
`inspect`, so validation, `minidl build` and `minidl list` share one source of truth:

    @register("layer", "swish")
    class Swish(Module): ...

Names match case-insensitively; torch class names are registered as aliases.

How to add a layer: write one new file in minidl_cli/nn/ (nn/__init__.py imports every file
there) with a Module subclass under `@register("layer", "name")`; its constructor's
arguments are its config options. Beside its maths it says what the builder needs:
`inferred = {"num_channels": 1}` maps each argument read off the input's shape to the axis
it is read from, batch first as in torch (-1: the last axis, as LazyLinear's in_features;
1: the channels, as LazyConv2d's in_channels); `output_shape(input_shape)` gives the output
shape (both without the batch); `torch_twin()` returns the torch.nn module computing the
same function with the same state-dict keys (fresh weights), which `to_torch()` loads and
the oracle checks against. An option annotated `Layers` (or `list[Layers]`, or
`LayerFactory`) holds layer configs, a nested model: validated, sized and built like
`model:`. A layer that token ids (a text data set's int64 inputs) may reach declares
what it does with them: `token_ids = "pass"` (it only reshapes them, as flatten) or
"take" (it looks them up, as embedding); see Module.token_ids. Then add its case to
tests/test_oracle.py. nn/group_norm.py is an example.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import inspect
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

KINDS = ("layer", "loss", "optimizer", "scheduler", "dataset")

# What the builder passes every component of a kind (never a user option): an optimizer
# its parameters, a scheduler its optimizer, a data set its seeded generator. A layer's
# sizes read off its input are its own declaration (`inferred`, see Entry.inferred).
SUPPLIED = {"optimizer": ("params",), "scheduler": ("optimizer",), "dataset": ("generator",)}

_REQUIRED = inspect.Parameter.empty


@dataclass(frozen=True)
class Range:
    """A numeric bound on an option, declared with `Annotated[float, Range(gt=0)]`."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None

    def __contains__(self, value: float) -> bool:
        return ((self.gt is None or value > self.gt) and (self.ge is None or value >= self.ge)
                and (self.lt is None or value < self.lt) and (self.le is None or value <= self.le))

    def __str__(self) -> str:
        bounds = [(">", self.gt), (">=", self.ge), ("<", self.lt), ("<=", self.le)]
        return " and ".join(f"{op} {bound:g}" for op, bound in bounds if bound is not None)


@dataclass(frozen=True)
class Option:
    """One user-settable option of a component: its name, type, default and range."""

    name: str
    type: Any  # a type hint: int, float, bool, str, Literal[...], tuple[float, float], X | None
    default: Any = _REQUIRED
    range: Range | None = None

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    def describe(self) -> str:
        bound = f" {self.range}" if self.range else ""
        default = "required" if self.required else f"default {self.default!r}"
        return f"{self.name}: {type_name(self.type)}{bound} ({default})"


def _option(parameter: inspect.Parameter, hint: Any) -> Option:
    """Split `Annotated[T, Range(...)]` into the type T and its range."""
    bound = None
    if typing.get_origin(hint) is typing.Annotated:
        hint, *extras = typing.get_args(hint)
        bound = next((e for e in extras if isinstance(e, Range)), None)
    return Option(parameter.name, hint, parameter.default, bound)


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    target: Callable
    aliases: tuple[str, ...] = ()

    @property
    def inferred(self) -> dict[str, int]:
        """A layer's constructor arguments read off its input's shape, with the axis each
        is read from (batch first: -1 the last axis, 1 the channels), as the layer declares
        in its `inferred` class attribute; {} for other kinds."""
        if self.kind != "layer":
            return {}
        accepted = inspect.signature(self.target).parameters
        declared = getattr(self.target, "inferred", None) or {}
        return {arg: axis for arg, axis in declared.items() if arg in accepted}

    def options(self, *, injected: bool = False) -> list[Option]:
        """The user options: constructor arguments minus those the builder supplies (the
        kind's, and a layer's inferred sizes unless `injected`)."""
        function = self.target.__init__ if inspect.isclass(self.target) else self.target
        hints = typing.get_type_hints(function, include_extras=True)
        supplied = set(SUPPLIED.get(self.kind, ())) | (set() if injected else set(self.inferred))
        return [
            _option(p, hints.get(p.name, Any))
            for p in inspect.signature(self.target).parameters.values()
            if p.name not in supplied and p.name != "self"
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    @property
    def summary(self) -> str:
        doc = inspect.getdoc(self.target) or ""
        return doc.splitlines()[0] if doc else ""


_entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}  # kind -> name -> entry
_lookup: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}  # kind -> lowercase alias -> name


def register(kind: str, name: str, *, aliases: tuple[str, ...] = ()) -> Callable:
    """Class or function decorator: register `target` as component `name` of `kind`."""
    if kind not in KINDS:
        raise ValueError(f"unknown component kind {kind!r}; expected one of {', '.join(KINDS)}")

    def decorator(target: Callable) -> Callable:
        keys = {name.lower(), *(a.lower() for a in aliases)}
        if inspect.isclass(target):
            keys.add(target.__name__.lower())
        for key in keys:
            owner = _lookup[kind].get(key)
            if owner is not None and owner != name:
                raise ValueError(f"{kind} name {key!r} is already registered to {owner!r}")
        _entries[kind][name] = Entry(kind, name, target, tuple(sorted(keys - {name.lower()})))
        for key in keys:
            _lookup[kind][key] = name
        return target

    return decorator


def unregister(kind: str, name: str) -> None:
    """Forget component `name` of `kind` and its aliases, as if its module had never been
    imported (a plugin a test loads again, as a new process would)."""
    _entries[kind].pop(name, None)
    for key in [k for k, owner in _lookup[kind].items() if owner == name]:
        del _lookup[kind][key]


@contextlib.contextmanager
def restored() -> Iterator[None]:
    """Put the registry back as it was at the start of the block: what was registered
    inside it (plugins, a test's layers) is forgotten, what was replaced comes back."""
    entries = {kind: dict(table) for kind, table in _entries.items()}
    lookup = {kind: dict(table) for kind, table in _lookup.items()}
    try:
        yield
    finally:
        for kind in KINDS:
            _entries[kind], _lookup[kind] = entries[kind], lookup[kind]


def load_builtins() -> None:
    """Import the modules whose decorators fill the registry."""
    for module in ("minidl_cli.nn", "minidl_cli.optim", "minidl_cli.data"):
        importlib.import_module(module)


def entries(kind: str) -> list[Entry]:
    load_builtins()
    return sorted(_entries[kind].values(), key=lambda e: e.name)


def names(kind: str) -> list[str]:
    return [e.name for e in entries(kind)]


def suggest(word: str, candidates: list[str]) -> str:
    """' (did you mean 'x'?)' for the closest candidate, or ''."""
    close = difflib.get_close_matches(str(word).lower(), candidates, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def lookup(kind: str, name: str) -> Entry:
    """The entry for `name` (any case, or a torch alias); ValueError naming close matches."""
    load_builtins()
    key = str(name).lower()
    if key not in _lookup[kind]:
        known = sorted(_lookup[kind])
        hint = suggest(key, known) or f" (known: {', '.join(sorted(_entries[kind]))})"
        raise ValueError(f"unknown {kind} {name!r}{hint}")
    return _entries[kind][_lookup[kind][key]]


def build(kind: str, name: str, *args: Any, **options: Any) -> Any:
    """Construct component `name` of `kind`; positional args are the injected ones."""
    return lookup(kind, name).target(*args, **options)


class Layers(list):
    """The type of an option holding a list of layer configs: a nested model (a residual
    block's `body`). It is validated, sized and built like `model:`, for the block's input
    shape; the constructor gets the built Sequential. `list[Layers]` is several (a concat's
    `branches`), each built for the block's input."""


class LayerFactory(list):
    """The type of an option holding a list of layer configs of which the constructor makes
    copies (a repeat's `body`): it gets a function that builds a fresh Sequential, with its
    own parameters, for the block's input shape at each call."""


def nesting(hint: Any) -> str | None:
    """How an option's type hint holds layers: 'layers' (Layers), 'branches'
    (list[Layers]), 'factory' (LayerFactory), or None; `| None` is looked through."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        return nesting(args[0])
    if origin in (typing.Union, types.UnionType):
        found = {nesting(a) for a in args if a is not type(None)} - {None}
        return found.pop() if len(found) == 1 else None
    if hint is Layers:
        return "layers"
    if hint is LayerFactory:
        return "factory"
    if origin in (list, tuple) and args and args[0] is Layers:
        return "branches"
    return None


def type_name(hint: Any) -> str:
    """A short human name for a type hint: 'int', 'float | None', "'mean' | 'sum'"."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if hint in (Layers, LayerFactory):
        return "layers"
    if origin in (tuple, list):
        return f"{origin.__name__}[{', '.join(type_name(a) for a in args if a is not Ellipsis)}]"
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", str(hint))

