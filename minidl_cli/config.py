"""Configuration: load YAML, apply KEY=VALUE overrides, validate, resolve.

`load_config(path, overrides)` returns the *resolved* config: every section complete,
every default filled in, the seed drawn when absent, component names canonical and each
layer's `in_features` inferred, so the dict describes the run by itself and
`resolve(load_yaml(dump_yaml(c)))` gives `c` back. Every problem found is reported at
once, one line each, as `key.path: what is wrong (how to fix)`, in a `ConfigError`.

Component options are never listed here: they are read from the registry (constructor
signatures), so a plugin's layer is validated like a built-in one. No torch at import.
"""

from __future__ import annotations

import copy
import inspect
import math
import os
import re
import secrets
import sys
import types
import typing
from pathlib import Path, PurePath
from typing import Any, Literal

import yaml

from minidl_cli import registry
from minidl_cli.registry import Option, Range


class ConfigError(ValueError):
    """Every problem found, one line each: `key.path: what is wrong (how to fix)`."""

    def __init__(self, problems: list[str]):
        # one line each: a torch error's C++ stack trace must not reach the user
        self.problems = [(str(p).splitlines() or [""])[0] for p in problems]
        super().__init__("\n".join(self.problems))


# ------------------------------------------------------------------ YAML 1.2, safely


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


def _parse(text: str, source: str | None) -> Any:
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
    raw = _parse(text, str(path))
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
                f"...), got {_kind(raw)}"
            ]
        )
    return raw


def dump_yaml(config: dict) -> str:
    """YAML text of a config (one line per layer) that load_yaml reads back identically."""
    config = dict(config)
    if isinstance(config.get("model"), list):
        config["model"] = [_FlowDict(m) if isinstance(m, dict) else m for m in config["model"]]
    return yaml.dump(config, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


# ------------------------------------------------------------------ overrides

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
        value = _parse(text, None)
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
            raise fail(f"{where} is {_show(node)}, not a mapping or a list")
        if last:
            node[index] = value
            break
        child = node[index] if isinstance(node, list) else node.get(index)
        in_component = (depth == 0 and part in _COMPONENTS) or (depth == 1 and parts[0] == "model")
        if child is None:
            child = node[index] = {}
        elif isinstance(child, str) and in_component:  # `relu` -> {type: relu} to set an option
            child = node[index] = {"type": child}
        node = child


# ------------------------------------------------------------------ the schema

# Training defaults: those of the reference experiment (SPEC §1).
TRAIN_OPTIONS = [
    Option("epochs", int, 500, Range(ge=1)),
    Option("batch_size", int, 100, Range(ge=1)),
    Option("shuffle", bool, True),  # reshuffle the training set every epoch
    Option("device", Literal["cpu", "cuda", "auto"], "cpu"),  # auto: cuda when available
    Option("dtype", Literal["float32", "float64"], "float32"),
    Option("checkpoint_every", int, 0, Range(ge=0)),  # 0: only checkpoints/last.pt
    Option("val_fraction", float, 0.0, Range(ge=0, lt=1)),  # held out of the training set
]
STANDARDIZE = Option("standardize", bool, False)  # z-score with training-set statistics
TOP_LEVEL = (
    "name",
    "seed",
    "plugins",
    "data",
    "model",
    "loss",
    "optimizer",
    "scheduler",
    "train",
    "runs_dir",
)
REQUIRED = {
    "data": "a mapping such as {type: disk, n_train: 1000}",
    "model": "a list of layers such as [{type: linear, out_features: 2}]",
    "loss": "a loss such as mse or {type: cross_entropy}",
    "optimizer": "an optimizer such as {type: sgd, lr: 0.1}",
}
SEED_LIMIT = 2**63  # torch.manual_seed takes up to 64 bits


def resolve(raw: dict, config_path: Path | None = None) -> dict:
    """The validated, complete config; ConfigError listing every problem."""
    if not isinstance(raw, dict):
        raise ConfigError(
            [f"config: must be a mapping of keys (data:, model:, ...), got {_kind(raw)}"]
        )
    base = Path(config_path).parent.absolute() if config_path is not None else Path.cwd()
    problems: list[str] = []
    for key in raw:
        if key not in TOP_LEVEL:
            hint = (
                registry.suggest(str(key), list(TOP_LEVEL)) or f" (known: {', '.join(TOP_LEVEL)})"
            )
            problems.append(f"{key}: unknown top-level key{hint}")
    for key, what in REQUIRED.items():
        if raw.get(key) is None:
            problems.append(f"{key}: missing; it is required ({what})")
    check = _Checker(problems, base)
    config = {
        "name": check.name(_given(raw, "name", Path(config_path).stem if config_path else "run")),
        "seed": check.seed(raw.get("seed")),
        "plugins": check.plugins(raw.get("plugins")),
    }
    for section in ("data", "loss", "optimizer"):
        extra = [STANDARDIZE] if section == "data" else []
        kind = "dataset" if section == "data" else section
        config[section] = check.component(section, kind, raw.get(section), extra)
    config["model"] = check.model(raw.get("model"))
    config["scheduler"] = check.component("scheduler", "scheduler", raw.get("scheduler"))
    train = raw.get("train")
    if train is not None and not isinstance(train, dict):
        problems.append(f"train: must be a mapping of options, got {_kind(train)}")
        train = None
    config["train"] = check.options("train", TRAIN_OPTIONS, train or {})
    config["runs_dir"] = check.runs_dir(_given(raw, "runs_dir", "runs"))
    if problems:
        raise ConfigError(problems)
    config = {key: config[key] for key in TOP_LEVEL}
    scheduler = config["scheduler"]
    if scheduler is not None and "T_max" in scheduler and scheduler["T_max"] is None:
        scheduler["T_max"] = config["train"]["epochs"]  # one cosine half-period per run
    _check_against_data(config, problems)
    if problems:
        raise ConfigError(problems)
    return config


def load_config(path: Path, overrides: list[str] = ()) -> dict:
    """Load, override, validate and resolve the config file at `path`."""
    return resolve(apply_overrides(load_yaml(path), list(overrides)), Path(path))


def _given(raw: dict, key: str, default: Any) -> Any:
    """raw[key], or the default when it is absent or null."""
    return default if raw.get(key) is None else raw[key]


def _check_against_data(config: dict, problems: list[str]) -> None:
    """Build the data set and, without touching torch's RNG, the components: shape checks."""
    import torch

    from minidl_cli import build
    from minidl_cli.data import make_dataset, split_validation

    data = config["data"]
    try:
        options = {k: v for k, v in data.items() if k not in ("type", STANDARDIZE.name)}
        dataset = make_dataset(data["type"], options, config["seed"])
    except (ValueError, OSError) as e:
        problems.append(f"data: {e}")
        return
    except Exception as e:  # a plugin's data set, or sizes beyond memory
        problems.append(f"data: {type(e).__name__}: {e}")
        return
    train = config["train"]
    try:
        dataset, _, _ = split_validation(dataset, train["val_fraction"], torch.Generator())
        n_train = len(dataset.x_train)
        if train["batch_size"] > n_train:
            problems.append(
                f"train.batch_size: {train['batch_size']} is larger than the training "
                f"set ({n_train} points); set it to {n_train} or less"
            )
    except ValueError as e:
        problems.append(f"train.val_fraction: {e}")
    with torch.random.fork_rng(devices=[]):
        try:
            model, widths = build.build_layers(config["model"], dataset.num_features)
        except ValueError as e:
            problems.append(str(e))
            model = None
        try:
            build.build_loss(config["loss"])
        except (ValueError, TypeError) as e:
            problems.append(f"loss: {e}")
        if model is not None:
            _check_output(config["model"], widths, dataset.num_classes, problems)
            for layer, width in zip(config["model"], widths, strict=False):
                if "in_features" in layer:
                    layer["in_features"] = width
            _check_training(config, model, problems)


def _check_output(
    model: list[dict], widths: list[int], num_classes: int, problems: list[str]
) -> None:
    """The network must output one value per class; blame the last layer that sets a width."""
    if widths[-1] == num_classes:
        return
    what = f"the network outputs {widths[-1]} values but the data has {num_classes} classes"
    setters = [
        i for i in range(len(model)) if widths[i + 1] != widths[i] or "out_features" in model[i]
    ]
    if setters and "out_features" in model[setters[-1]]:
        problems.append(f"model[{setters[-1]}].out_features: {what}; set it to {num_classes}")
    elif setters:
        problems.append(f"model[{setters[-1]}]: {what}; make it output {num_classes} values")
    else:
        problems.append(f"model: {what}; end it with {{type: linear, out_features: {num_classes}}}")


def _check_training(config: dict, model: Any, problems: list[str]) -> None:
    """Construct the optimizer and scheduler once, so their own checks run before training."""
    from minidl_cli import build

    if not model.parameters():
        problems.append(
            "model: the network has no parameters to train; add a layer with "
            "weights such as {type: linear, out_features: 2}"
        )
        return
    try:
        optimizer = build.build_optimizer(config["optimizer"], model.parameters())
    except (ValueError, TypeError) as e:
        problems.append(f"optimizer: {e}")
        return
    try:
        build.build_scheduler(config["scheduler"], optimizer)
    except (ValueError, TypeError) as e:
        problems.append(f"scheduler: {e}")


# ------------------------------------------------------------------ per-key checks


class _Checker:
    """Validates sections into plain values, appending one line per problem to `problems`."""

    def __init__(self, problems: list[str], base: Path):
        self.problems, self.base = problems, base

    def name(self, value: Any) -> str | None:
        if not isinstance(value, str) or not value.strip() or value in (".", ".."):
            self.problems.append(f"name: must be a non-empty string, got {_show(value)}")
        elif re.search(r"[/\\\x00]", value):
            self.problems.append(
                f"name: {value!r} is used in a directory name; leave out '/' and '\\'"
            )
        return value

    def seed(self, value: Any) -> int | None:
        if value is None:
            return secrets.randbelow(2**31)  # drawn once, then recorded in the config
        try:
            value = _convert(int, value, self.base)  # 1e3 is 1000, as for every integer option
        except _Mismatch:
            pass
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < SEED_LIMIT:
            self.problems.append(
                f"seed: must be an integer from 0 to 2**63 - 1, or null to draw "
                f"one, got {_show(value)}"
            )
        return value

    def runs_dir(self, value: Any) -> str:
        if not isinstance(value, str) or not value:
            self.problems.append(f"runs_dir: must be a directory path, got {_show(value)}")
        return value

    def plugins(self, value: Any) -> list[str]:
        """Import each plugin module (from the cwd or the config's folder too) so it registers."""
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(m, str) and m for m in value):
            self.problems.append(
                f"plugins: must be a list of module names such as [my_layers], got {_show(value)}"
            )
            return []
        extra = [p for p in dict.fromkeys([str(self.base), os.getcwd()]) if p not in sys.path]
        sys.path.extend(extra)
        try:
            for i, module in enumerate(value):
                try:
                    registry.import_plugins([module])
                except Exception as e:  # user code: any failure is a problem line
                    self.problems.append(
                        f"plugins[{i}]: cannot import {module!r}: {type(e).__name__}: {e} (a "
                        "plugin is a module importable from the current directory, the "
                        "config's directory or the installed packages)"
                    )
        finally:
            for path in extra:
                sys.path.remove(path)
        return value

    def model(self, value: Any) -> list[dict] | None:
        if value is None:
            return None
        if not isinstance(value, list) or not value:
            self.problems.append(
                f"model: must be a non-empty list of layers such as "
                f"[{{type: linear, out_features: 2}}], got {_show(value)}"
            )
            return None
        for i, item in enumerate(value):
            if item is None:
                self.problems.append(
                    f"model[{i}]: empty; write a layer name or a mapping with a 'type' key"
                )
        return [self.component(f"model[{i}]", "layer", item) for i, item in enumerate(value)]

    def component(self, path: str, kind: str, value: Any, extra: list[Option] = ()) -> dict | None:
        """{type: canonical name, every option} from a bare name or a mapping with `type`."""
        if value is None:
            return None  # a missing required section is reported once, by the caller
        if isinstance(value, str):
            value = {"type": value}
        if not isinstance(value, dict):
            self.problems.append(
                f"{path}: must be a {kind} name or a mapping with a 'type' key, got {_show(value)}"
            )
            return None
        if "type" not in value:
            known = ", ".join(registry.names(kind))
            self.problems.append(f"{path}.type: missing; name the {kind} (one of: {known})")
            return None
        try:
            entry = registry.lookup(kind, value["type"])
            options = _user_options(entry) + list(extra)
        except ValueError as e:
            self.problems.append(f"{path}.type: {e}")
            return None
        except Exception as e:  # a plugin whose signature cannot be read
            self.problems.append(
                f"{path}.type: cannot read the options of {kind} "
                f"{value['type']!r}: {type(e).__name__}: {e}"
            )
            return None
        given = {k: v for k, v in value.items() if k != "type"}
        return {"type": entry.name, **self.options(path, options, given)}

    def options(self, path: str, options: list[Option], given: dict) -> dict:
        """Each option checked and converted, defaults filled, unknown keys reported."""
        known = [o.name for o in options]
        for key in given:
            if key not in known:
                hint = registry.suggest(str(key), known) or (
                    f" (options: {', '.join(known)})" if known else " (it takes no options)"
                )
                self.problems.append(f"{path}.{key}: unknown option{hint}")
        out = {}
        for option in options:
            if option.name in given:
                out[option.name] = self.value(f"{path}.{option.name}", option, given[option.name])
            elif option.required:
                self.problems.append(
                    f"{path}.{option.name}: required option missing "
                    f"({_expect(option.type, option.range)})"
                )
            elif _is_plain(option.default):
                out[option.name] = _plain(option.default)
        return out

    def value(self, path: str, option: Option, value: Any) -> Any:
        try:
            converted = _convert(option.type, value, self.base)
            ok = _in_range(converted, option.range)
        except _Mismatch:
            ok = False
        if ok:
            return converted
        hint = ""
        if isinstance(value, str):
            hint = registry.suggest(value, [c for c in _choices(option.type) if isinstance(c, str)])
        self.problems.append(
            f"{path}: must be {_expect(option.type, option.range)}, got {_show(value)}{hint}"
        )
        return value


def _user_options(entry: registry.Entry) -> list[Option]:
    """The options a user may set: a layer's in_features too (checked against the inferred one)."""
    if entry.kind == "layer" and registry.accepts(entry, "in_features"):
        return [
            Option("in_features", int | None, None, Range(ge=1)) if o.name == "in_features" else o
            for o in entry.options(injected=True)
            if o.name == "in_features" or o.name not in registry.INJECTED[entry.kind]
        ]
    return entry.options()


# ------------------------------------------------------------------ values against type hints


class _Mismatch(Exception):
    """A value that does not fit a type hint."""


def _convert(hint: Any, value: Any, base: Path) -> Any:
    """`value` as the type `hint` asks (1e3 -> 1000 for int, paths made absolute), or _Mismatch."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        return _convert(args[0], value, base)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arm in args:
            try:
                return _convert(arm, value, base)
            except _Mismatch:
                pass
        raise _Mismatch
    if hint is Any:
        return value
    if origin is Literal:
        if any(type(value) is type(choice) and value == choice for choice in args):
            return value
        raise _Mismatch
    if origin in (tuple, list) and isinstance(value, (list, tuple)):
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise _Mismatch
            return [_convert(a, v, base) for a, v in zip(args, value, strict=True)]
        element = args[0] if args else Any
        return [_convert(element, v, base) for v in value]
    if hint is int and isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not value.is_integer():
            raise _Mismatch
        return int(value)
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # an integer beyond float's range
            raise _Mismatch from None
    if inspect.isclass(hint) and issubclass(hint, PurePath) and isinstance(value, str) and value:
        return os.path.abspath(base / Path(value).expanduser())  # relative to the config file
    if hint in (int, float) or origin in (tuple, list):
        raise _Mismatch
    if inspect.isclass(hint):
        if isinstance(value, hint):
            return value
        raise _Mismatch
    return value  # a hint we cannot check (e.g. a plugin's Callable): accept


def _in_range(value: Any, bound: Range | None) -> bool:
    if bound is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return True
    if isinstance(value, float) and not math.isfinite(value):
        return False  # .inf passes `> 0`, but no bounded option means it
    return value in bound


def _choices(hint: Any) -> list[Any]:
    """The Literal choices anywhere in a hint (for did-you-mean)."""
    if typing.get_origin(hint) is Literal:
        return list(typing.get_args(hint))
    return [c for arm in typing.get_args(hint) for c in _choices(arm)]


_PLURAL = {int: "integers", float: "numbers", str: "strings", bool: "booleans"}


def _expect(hint: Any, bound: Range | None = None) -> str:
    """What a value must be, in words: 'an integer >= 1', "one of 'cpu', 'cuda'", ..."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        return _expect(args[0], bound)
    if origin in (typing.Union, types.UnionType):
        text = " or ".join(_expect(a, bound) for a in args if a is not type(None))
        return text + " or null" if type(None) in args else text
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
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


def _is_plain(value: Any) -> bool:
    """Whether a default can be written to YAML (plugin defaults might not be)."""
    if value is None or isinstance(value, (bool, int, float, str, PurePath)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


def _plain(value: Any) -> Any:
    """A default as YAML-friendly data: tuples become lists, paths strings."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return str(value) if isinstance(value, PurePath) else value


def _show(value: Any) -> str:
    """A value as the user wrote it in YAML: null, true, 'text', -1, [1, 2]."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    text = repr(value) if not isinstance(value, (list, dict)) else _flow(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _flow(value: Any) -> str:
    return yaml.dump(value, Dumper=_Dumper, default_flow_style=True, width=10**6).strip()


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string", dict: "a mapping"}.get(type(value), _show(value))


def _path(parts: list[str]) -> str:
    """'model[6].out_features' from ['model', '6', 'out_features']."""
    return "".join(
        f"[{p}]" if p.isdigit() and i else (f".{p}" if i else p) for i, p in enumerate(parts)
    )
