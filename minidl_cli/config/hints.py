"""Values against type hints: convert, range-check, and say in words what a hint expects."""

from __future__ import annotations

import inspect
import math
import os
import types
import typing
from pathlib import Path, PurePath
from typing import Any, Literal

from minidl_cli import registry
from minidl_cli.registry import Range


class Mismatch(Exception):
    """A value that does not fit a type hint."""


def convert(hint: Any, value: Any, base: Path) -> Any:
    """`value` as the type `hint` asks (1e3 -> 1000 for int, paths made absolute), or Mismatch."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        return convert(args[0], value, base)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arm in args:
            try:
                return convert(arm, value, base)
            except Mismatch:
                pass
        raise Mismatch
    if hint is Any:
        return value
    if origin is Literal:
        if any(type(value) is type(choice) and value == choice for choice in args):
            return value
        raise Mismatch
    if origin in (tuple, list) and isinstance(value, (list, tuple)):
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise Mismatch
            return [convert(a, v, base) for a, v in zip(args, value, strict=True)]
        element = args[0] if args else Any
        return [convert(element, v, base) for v in value]
    if hint is int and isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not value.is_integer():
            raise Mismatch
        return int(value)
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # an integer beyond float's range
            raise Mismatch from None
    if inspect.isclass(hint) and issubclass(hint, PurePath) and isinstance(value, str) and value:
        return os.path.abspath(base / Path(value).expanduser())  # relative to the config file
    if hint in (int, float) or origin in (tuple, list):
        raise Mismatch
    if inspect.isclass(hint):
        if isinstance(value, hint):
            return value
        raise Mismatch
    return value  # a hint we cannot check (e.g. a plugin's Callable): accept


def in_range(value: Any, bound: Range | None) -> bool:
    """Whether a number lies in `bound` (no bound, or a value that is not a number: True)."""
    if bound is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return True
    if isinstance(value, float) and not math.isfinite(value):
        return False  # .inf passes `> 0`, but no bounded option means it
    return value in bound


def literal_choices(hint: Any) -> list[Any]:
    """The Literal choices anywhere in a hint (for did-you-mean)."""
    if typing.get_origin(hint) is Literal:
        return list(typing.get_args(hint))
    return [c for arm in typing.get_args(hint) for c in literal_choices(arm)]


_PLURAL = {int: "integers", float: "numbers", str: "strings", bool: "booleans"}


def describe_hint(hint: Any, bound: Range | None = None) -> str:
    """What a value must be, in words: 'an integer >= 1', "one of 'cpu', 'cuda'", ..."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        return describe_hint(args[0], bound)
    if origin in (typing.Union, types.UnionType):
        text = " or ".join(describe_hint(a, bound) for a in args if a is not type(None))
        return text + " or null" if type(None) in args else text
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if hint in (registry.Layers, registry.LayerFactory):
        return "a list of layers such as [{type: linear, out_features: 8}, relu]"
    if registry.nesting(hint) == "branches":
        return "a list of layer lists such as [[{type: linear, out_features: 8}], [identity]]"
    if origin in (tuple, list):
        elements = [a for a in args if a is not Ellipsis] or [Any]
        plural = _PLURAL.get(elements[0], f"{registry.type_name(elements[0])} values")
        if origin is tuple and args[-1:] != (Ellipsis,) and len(set(elements)) == 1:
            return f"a list of {len(elements)} {plural}"
        if origin is tuple and args[-1:] != (Ellipsis,):
            return f"a list [{', '.join(registry.type_name(a) for a in elements)}]"
        return f"a list of {plural}"
    words = {
        int: "an integer",
        float: "a number",
        bool: "true or false",
        str: "a string",
        type(None): "null",
        Any: "any value",
    }
    if inspect.isclass(hint) and issubclass(hint, PurePath):
        text = "a file path (relative to the config file)"
    else:
        text = words.get(hint, registry.type_name(hint))
    return f"{text} {bound}" if bound and hint in (int, float) else text


def is_plain(value: Any) -> bool:
    """Whether a default can be written to YAML (plugin defaults might not be)."""
    if value is None or isinstance(value, (bool, int, float, str, PurePath)):
        return True
    if isinstance(value, (list, tuple)):
        return all(is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_plain(v) for k, v in value.items())
    return False


def plain(value: Any) -> Any:
    """A default as YAML-friendly data: tuples become lists, paths strings."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return str(value) if isinstance(value, PurePath) else value
