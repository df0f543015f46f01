"""Plugin modules: found like a config's data files, recorded so a run finds them again.

A `plugins:` entry is a module name (`my_layers`, `pkg.layers`) or the path of a Python
file or package folder (`./my_layers.py`, relative to the config file, as data paths are).
A name is looked up in the installed packages, then in the config's folder and the current
directory. The resolved config keeps an installed module's name, and turns a module found
in a folder into its absolute path, so a run's config.yaml imports the same file from any
working directory, and a copy of it in another folder still does.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path


def resolve_plugin(entry: str, base: Path) -> str:
    """Import the plugin `entry` (a name or a path relative to `base`); what to record:
    its name when it is installed, else the absolute path of its file or package folder.

    Raises ImportError (or whatever the module raises) when it cannot be imported.
    """
    if _is_path(entry):
        path = Path(os.path.abspath(base / Path(entry).expanduser()))
        import_path(path)
        return str(path)
    extra = [p for p in dict.fromkeys([str(base), os.getcwd()]) if p not in sys.path]
    sys.path.extend(extra)
    try:
        module = importlib.import_module(entry)
    finally:
        for path in extra:
            sys.path.remove(path)
    top = sys.modules[entry.split(".")[0]]
    origin = getattr(top, "__file__", None)
    if not origin:  # a namespace package or a built-in module: its name finds it
        return entry
    top_path = Path(origin).parent if Path(origin).name == "__init__.py" else Path(origin)
    if str(top_path.parent) not in extra:
        return entry  # installed, or on PYTHONPATH: the name finds it anywhere
    found = getattr(module, "__file__", None) or origin
    return str(Path(found).parent if Path(found).name == "__init__.py" else Path(found))


def import_plugins(entries: list[str], base: Path) -> list[str]:
    """minidl's one plugin loader: import every entry (a name, or a path relative to `base`;
    a resolved config's absolute paths too) so that it registers its components; returns
    what to record for each (resolve_plugin).

    Raises ConfigError with one line per entry that cannot be imported.
    """
    from minidl_cli.config.errors import ConfigError

    resolved, problems = [], []
    for i, entry in enumerate(entries):
        try:
            resolved.append(resolve_plugin(entry, base))
        except Exception as e:  # user code: any failure is a problem line
            problems.append(
                f"plugins[{i}]: cannot import {entry!r}: {type(e).__name__}: {e} (a plugin is "
                "a module importable from the config's directory, the current directory or "
                "the installed packages, or the path of a .py file)")
            resolved.append(entry)
    if problems:
        raise ConfigError(problems)
    return resolved


def import_path(path: Path) -> None:
    """Import the module whose file (`x.py`) or package folder is `path`, under its dotted
    name (the packages above it included); ImportError when there is none."""
    if path.is_dir() and not (path / "__init__.py").is_file():
        raise ImportError(f"{path} is a folder without __init__.py, not a Python package")
    if not path.is_dir() and (path.suffix != ".py" or not path.is_file()):
        raise ImportError(f"no Python file {path}")
    root, name = path.parent, path.stem if path.suffix == ".py" else path.name
    while (root / "__init__.py").is_file():
        root, name = root.parent, f"{root.name}.{name}"
    added = str(root) not in sys.path
    if added:
        sys.path.insert(0, str(root))
    try:
        importlib.import_module(name)
    finally:
        if added:
            sys.path.remove(str(root))


def _is_path(entry: str) -> bool:
    return entry.endswith(".py") or "/" in entry or os.sep in entry or entry.startswith("~")
