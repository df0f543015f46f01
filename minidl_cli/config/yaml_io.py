"""YAML 1.2, safely: the loader, the dumper, error positions, values shown as YAML.

`_Loader` is a SafeLoader with YAML 1.2 core-schema scalars (`1e-3` is a float, `010` is
ten, `yes` stays a string), duplicate keys refused and every object tag refused; parse
errors become `source:LINE:COL: ...` lines in a ConfigError. `_Dumper` quotes every string
a YAML 1.1 or 1.2 reader would take for another type, so `dump_yaml` round-trips.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from minidl_cli.config.errors import ConfigError


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema scalars, duplicate keys refused, no object tags."""

    def construct_undefined(self, node: yaml.Node) -> Any:
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        raise yaml.constructor.ConstructorError(
            None,
            None,
            f"the tag {tag!r} is not allowed: a config holds only plain data "
            "(mappings, lists, strings, numbers, true/false, null)",
            node.start_mark,
        )

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, yaml.Mark] = {}
            for key, _ in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    if key.value in seen:
                        raise yaml.constructor.ConstructorError(
                            None,
                            None,
                            f"duplicate key {key.value!r} (first set on line "
                            f"{seen[key.value].line + 1}); keep only one",
                            key.start_mark,
                        )
                    seen[key.value] = key.start_mark
        return super().construct_mapping(node, deep=deep)


class _Dumper(yaml.SafeDumper):
    """SafeDumper that quotes every string a YAML 1.1 or 1.2 reader would take for another type."""


def _construct_int(loader: _Loader, node: yaml.Node) -> int:
    text = loader.construct_scalar(node)
    sign, digits = (-1, text[1:]) if text[:1] == "-" else (1, text.lstrip("+"))
    base = {"0x": 16, "0o": 8}.get(digits[:2].lower(), 10)  # YAML 1.2: 010 is ten
    return sign * int(digits[2:] if base != 10 else digits, base)


# YAML 1.2 core schema: 1e-3 and 1e6 are floats, yes/no/on/off and dates stay strings.
_CORE_SCHEMA = [
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", list("-+0123456789")),
    (
        "float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        list("-+0123456789."),
    ),
    ("merge", r"^(?:<<)$", ["<"]),
]
_Loader.yaml_implicit_resolvers = {}
for _tag, _pattern, _first in _CORE_SCHEMA:
    for _cls in (_Loader, _Dumper):  # the dumper keeps 1.1's too: `yes` stays a quoted string
        _cls.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(_pattern), _first)
_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Loader.add_constructor(None, _Loader.construct_undefined)  # every other tag: refused


class _FlowDict(dict):
    """A mapping dumped on one line: each layer of `model`."""


def _represent_list(dumper: _Dumper, data: list) -> yaml.Node:
    flat = all(not isinstance(v, (list, dict)) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flat and bool(data))


_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(
    _FlowDict, lambda d, data: d.represent_mapping("tag:yaml.org,2002:map", data, flow_style=True)
)


def parse_yaml(text: str, source: str | None) -> Any:
    """Parse YAML text with _Loader; syntax and tag errors become `source:LINE:COL: ...`.

    With source None (an override's value) the place is `column N`.
    """
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader: plain data only
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        if source is None:
            where = f"bad YAML at column {mark.column + 1}" if mark else "bad YAML"
        else:
            where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise ConfigError([f"{where}: {_phrase(e)}"]) from None
    except yaml.reader.ReaderError as e:
        raise ConfigError(
            [f"{source or 'bad YAML'}: {e.reason} at character {e.position + 1}"]
        ) from None
    except yaml.YAMLError as e:
        raise ConfigError([f"{source or 'bad YAML'}: {str(e).splitlines()[0]}"]) from None
    except RecursionError:
        raise ConfigError([f"{source or 'bad YAML'}: nested too deeply"]) from None


def _phrase(e: yaml.MarkedYAMLError) -> str:
    """PyYAML's problem and its context as one phrase."""
    if not (e.problem and e.context):
        return e.problem or e.context or "invalid YAML"
    if e.problem.startswith("but "):  # "expected a single document ..., but found another"
        return f"{e.context}, {e.problem}"
    return f"{e.problem} ({e.context})"


def load_yaml(path: Path) -> dict:
    """The top-level mapping of a YAML file, safely loaded (YAML 1.2 numbers)."""
    path = Path(path)
    if path.is_dir():
        hint = (
            "; to continue a run use `minidl train --resume DIR`"
            if (path / "config.yaml").is_file()
            else ""
        )
        raise ConfigError([f"{path}: is a directory, not a config file; pass a YAML file{hint}"])
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"config file not found: {path} (check the path)"]) from None
    except UnicodeDecodeError as e:
        raise ConfigError([f"{path}: not UTF-8 text ({e.reason} at byte {e.start})"]) from None
    except OSError as e:
        raise ConfigError([f"{path}: cannot read the file ({e.strerror})"]) from None
    raw = parse_yaml(text, str(path))
    if raw is None:
        raise ConfigError(
            [
                f"{path}: the file is empty; a config is a mapping with at least "
                "data, model, loss and optimizer"
            ]
        )
    if not isinstance(raw, dict):
        raise ConfigError(
            [
                f"{path}: the top level must be a mapping of keys (data:, model:, "
                f"...), got {kind_of(raw)}"
            ]
        )
    return raw


def dump_yaml(config: dict) -> str:
    """YAML text of a config (one line per layer) that load_yaml reads back identically."""
    config = dict(config)
    if isinstance(config.get("model"), list):
        config["model"] = [_FlowDict(m) if isinstance(m, dict) else m for m in config["model"]]
    return yaml.dump(config, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def show_value(value: Any) -> str:
    """A value as the user wrote it in YAML: null, true, 'text', -1, [1, 2]."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    text = repr(value) if not isinstance(value, (list, dict)) else _flow(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _flow(value: Any) -> str:
    """A list or mapping as one line of YAML flow style: [1, 2], {type: relu}."""
    return yaml.dump(value, Dumper=_Dumper, default_flow_style=True, width=10**6).strip()


def kind_of(value: Any) -> str:
    """What a value is, for "got ..." in a message: 'a list', 'a mapping', 'a string', or the
    value itself as YAML (null, 3)."""
    return {list: "a list", str: "a string", dict: "a mapping"}.get(type(value), show_value(value))
