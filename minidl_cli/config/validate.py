"""Per-key checks: each section validated into plain values, one problem line per mistake.

Component options are read from the registry (constructor signatures), so a plugin's
layer is validated like a built-in one; unknown keys get a did-you-mean.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from minidl_cli import registry
from minidl_cli.config.errors import ConfigError
from minidl_cli.config.hints import (
    Mismatch,
    convert,
    describe_hint,
    in_range,
    is_plain,
    literal_choices,
    plain,
)
from minidl_cli.config.plugins import import_plugins
from minidl_cli.config.yaml_io import show_value
from minidl_cli.registry import Option, Range

SEED_LIMIT = 2**63  # torch.manual_seed takes up to 64 bits


SECTIONS = ("data", "loss", "optimizer", "scheduler", "train")  # a misplaced key's homes


class Checker:
    """Validates sections into plain values, appending one line per problem to `problems`."""

    def __init__(self, problems: list[str], base: Path,
                 home_of: Callable[[str], str | None] | None = None):
        """`home_of(key)`: where a key misplaced in a section belongs ("" for the top level,
        a section's name, or None), offered with the override that puts it there."""
        self.problems, self.base, self.home_of = problems, base, home_of

    def name(self, value: Any) -> str | None:
        if not isinstance(value, str) or not value.strip() or value in (".", ".."):
            self.problems.append(f"name: must be a non-empty string, got {show_value(value)}")
        elif re.search(r"[/\\\x00]", value):
            self.problems.append(
                f"name: {value!r} is used in a directory name; leave out '/' and '\\'"
            )
        return value

    def seed(self, value: Any) -> int | None:
        if value is None:
            return secrets.randbelow(2**31)  # drawn once, then recorded in the config
        try:
            value = convert(int, value, self.base)  # 1e3 is 1000, as for every integer option
        except Mismatch:
            pass
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < SEED_LIMIT:
            self.problems.append(
                f"seed: must be an integer from 0 to 2**63 - 1, or null to draw "
                f"one, got {show_value(value)}"
            )
        return value

    def runs_dir(self, value: Any) -> str:
        if not isinstance(value, str) or not value:
            self.problems.append(f"runs_dir: must be a directory path, got {show_value(value)}")
        return value

    def plugins(self, value: Any) -> list[str]:
        """Import each plugin so it registers; a module found in the config's folder or the
        current directory is recorded by its absolute path (config/plugins.py)."""
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(m, str) and m for m in value):
            self.problems.append(
                "plugins: must be a list of module names such as [my_layers], "
                f"got {show_value(value)}"
            )
            return []
        try:
            return import_plugins(value, self.base)
        except ConfigError as e:
            self.problems.extend(e.problems)
            return list(value)

    def model(self, value: Any) -> list[dict] | None:
        if value is None:
            return None
        return self.layers("model", value)

    def layers(self, path: str, value: Any) -> list[dict] | None:
        """A list of layer configs (the model, or a block's nested model) at `path`."""
        if not isinstance(value, list) or not value:
            self.problems.append(
                f"{path}: must be a non-empty list of layers such as "
                f"[{{type: linear, out_features: 2}}], got {show_value(value)}"
            )
            return None
        for i, item in enumerate(value):
            if item is None:
                self.problems.append(
                    f"{path}[{i}]: empty; write a layer name or a mapping with a 'type' key"
                )
        return [self.component(f"{path}[{i}]", "layer", item) for i, item in enumerate(value)]

    def nested(self, path: str, option: Option, value: Any) -> Any:
        """An option holding layer configs: a list of them, or (branches) a list of lists."""
        if value is None and not option.required and option.default is None:
            return None
        if registry.nesting(option.type) != "branches":
            return self.layers(path, value)
        if not isinstance(value, list) or not value:
            self.problems.append(
                f"{path}: must be a non-empty list of layer lists such as "
                f"[[{{type: linear, out_features: 8}}], [identity]], got {show_value(value)}"
            )
            return value
        return [self.layers(f"{path}[{k}]", branch) for k, branch in enumerate(value)]

    def component(self, path: str, kind: str, value: Any, extra: list[Option] = ()) -> dict | None:
        """{type: canonical name, every option} from a bare name or a mapping with `type`."""
        if value is None:
            return None  # a missing required section is reported once, by the caller
        if isinstance(value, str):
            value = {"type": value}
        if not isinstance(value, dict):
            self.problems.append(
                f"{path}: must be a {kind} name or a mapping with a 'type' key, "
                f"got {show_value(value)}"
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
        # shared options (`extra`) the component refuses (a later check says why, e.g. the
        # text data set's standardize): a saved config's default passes, no hint offers them
        refused = tuple(getattr(entry.target, "refused_options", ()))
        return {"type": entry.name, **self.options(path, options, given, unlisted=refused)}

    def _home_hint(self, path: str, key: str) -> str:
        """'; it is an option of train: …' for a section's key that belongs elsewhere."""
        home = self.home_of(key) if self.home_of and path in SECTIONS else None
        if home is None or home == path:
            return ""
        if home == "":
            return f"; it is a top-level key: put it at the top (as an override: {key}=VALUE)"
        return (f"; it is an option of {home}: put it under {home}: "
                f"(as an override: {home}.{key}=VALUE)")

    def options(self, path: str, options: list[Option], given: dict,
                checked_elsewhere: tuple[str, ...] = (), unlisted: tuple[str, ...] = ()) -> dict:
        """Each option checked and converted, defaults filled, unknown keys reported.

        `checked_elsewhere`: further names of this section (checked by the caller), offered
        as suggestions for a misspelt key; `unlisted`: names checked here but never offered.
        """
        known = [o.name for o in options] + list(checked_elsewhere)
        offered = [name for name in known if name not in unlisted]
        for key in given:
            if key not in known:
                near, home = registry.suggest(str(key), offered), self._home_hint(path, str(key))
                hint = near + home if home else near or (
                    f" (options: {', '.join(offered)})" if offered else " (it takes no options)"
                )
                self.problems.append(f"{path}.{key}: unknown option{hint}")
        out = {}
        for option in options:
            if option.name in given:
                out[option.name] = self.value(f"{path}.{option.name}", option, given[option.name])
            elif option.required:
                self.problems.append(
                    f"{path}.{option.name}: required option missing "
                    f"({describe_hint(option.type, option.range)})"
                )
            elif is_plain(option.default):
                out[option.name] = plain(option.default)
        return out

    def value(self, path: str, option: Option, value: Any) -> Any:
        if registry.nesting(option.type) is not None:
            return self.nested(path, option, value)
        try:
            converted = convert(option.type, value, self.base)
            ok = in_range(converted, option.range)
        except Mismatch:
            ok = False
        if ok:
            return converted
        hint = ""
        if isinstance(value, str):
            words = [c for c in literal_choices(option.type) if isinstance(c, str)]
            hint = registry.suggest(value, words)
        self.problems.append(
            f"{path}: must be {describe_hint(option.type, option.range)}, "
            f"got {show_value(value)}{hint}"
        )
        return value


def _user_options(entry: registry.Entry) -> list[Option]:
    """The options a user may set: a layer's inferred sizes (in_features, in_channels, …)
    too, null by default, checked against the inferred ones and recorded by the resolver."""
    if entry.kind == "layer":
        inferred = entry.inferred
        return [Option(o.name, int | None, None, Range(ge=1)) if o.name in inferred else o
                for o in entry.options(injected=True)]
    return entry.options()
