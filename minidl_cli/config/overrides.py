"""KEY=VALUE overrides: dotted keys, list indices, YAML values, applied to a raw config."""

from __future__ import annotations

import copy
import re
from typing import Any

from minidl_cli.config.errors import ConfigError
from minidl_cli.config.yaml_io import parse_yaml, show_value

_COMPONENTS = ("data", "loss", "optimizer", "scheduler")  # sections that may be a bare name


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """A copy of `raw` with each `KEY=VALUE` applied (dotted keys, list indices, YAML values)."""
    config = copy.deepcopy(raw)
    problems = []
    for override in overrides:
        try:
            _apply(config, override)
        except ConfigError as e:
            problems += e.problems
    if problems:
        raise ConfigError(problems)
    return config


def _apply(config: dict, override: str) -> None:
    def fail(what: str) -> ConfigError:
        return ConfigError([f"override {override!r}: {what}"])

    key, sep, text = override.partition("=")
    key = re.sub(r"\[(\d+)\]", r".\1", key.strip())  # model[6].x, as errors print it
    if not sep:
        raise fail("expected KEY=VALUE, e.g. optimizer.lr=0.01")
    if not key:
        raise fail("the key is empty; expected KEY=VALUE, e.g. optimizer.lr=0.01")
    parts = key.split(".")
    if "" in parts:
        raise fail(f"the key {key!r} has an empty part; write dotted keys like train.epochs")
    try:
        value = parse_yaml(text, None)
    except ConfigError as e:
        raise fail(e.problems[0]) from None
    node: Any = config
    for depth, part in enumerate(parts):
        where = _path(parts[:depth]) or "the config"
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit():
                raise fail(f"{where} is a list; index it with a number 0..{len(node) - 1}")
            if int(part) >= len(node):
                raise fail(
                    f"index {part} is out of range; {where} has {len(node)} items "
                    f"(0..{len(node) - 1})"
                )
            index: int | str = int(part)
        elif isinstance(node, dict):
            index = part
        else:
            raise fail(f"{where} is {show_value(node)}, not a mapping or a list")
        if last:
            node[index] = value
            break
        child = node[index] if isinstance(node, list) else node.get(index)
        # a layer given by name, in the model or a block's nested list, becomes a mapping
        in_component = (depth == 0 and part in _COMPONENTS) or (
            parts[0] == "model" and isinstance(node, list))
        if child is None:
            child = node[index] = {}
        elif isinstance(child, str) and in_component:  # `relu` -> {type: relu} to set an option
            child = node[index] = {"type": child}
        node = child


def _path(parts: list[str]) -> str:
    """'model[6].out_features' from ['model', '6', 'out_features']."""
    return "".join(
        f"[{p}]" if p.isdigit() and i else (f".{p}" if i else p) for i, p in enumerate(parts)
    )
