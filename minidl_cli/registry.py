"""The registry: every layer, loss, optimizer, scheduler and dataset under a snake_case name.

A component's options are its constructor's (or factory's) keyword arguments, read with
`inspect`, so validation, `minidl build` and `minidl list` share one source of truth:

    @register("layer", "swish")
    class Swish(Module): ...

Names match case-insensitively; torch class names are registered as aliases.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

KINDS = ("layer", "loss", "optimizer", "scheduler", "dataset")

# Arguments a builder supplies itself: they are never user options.
INJECTED = {
    "layer": ("in_features", "in_channels", "num_features", "normalized_shape"),  # from shapes
    "loss": (),
    "optimizer": ("params",),
    "scheduler": ("optimizer",),
    "dataset": ("generator",),
}

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

    def options(self, *, injected: bool = False) -> list[Option]:
        """The user options: constructor arguments minus those the builder injects."""
        function = self.target.__init__ if inspect.isclass(self.target) else self.target
        hints = typing.get_type_hints(function, include_extras=True)
        return [
            _option(p, hints.get(p.name, Any))
            for p in inspect.signature(self.target).parameters.values()
            if (injected or p.name not in INJECTED[self.kind]) and p.name != "self"
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


def accepts(entry: Entry, argument: str) -> bool:
    """Whether the component's constructor takes `argument` (e.g. an injected in_features)."""
    return argument in inspect.signature(entry.target).parameters


def type_name(hint: Any) -> str:
    """A short human name for a type hint: 'int', 'float | None', "'mean' | 'sum'"."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin in (tuple, list):
        return f"{origin.__name__}[{', '.join(type_name(a) for a in args if a is not Ellipsis)}]"
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", str(hint))


def import_plugins(modules: list[str]) -> None:
    """Import the user's plugin modules; they register components as a side effect."""
    for module in modules:
        importlib.import_module(module)
