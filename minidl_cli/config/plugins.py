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
import traceback
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
            problems.append(_import_problem(f"plugins[{i}]", entry, base, e))
            resolved.append(entry)
    if problems:
        raise ConfigError(problems)
    return resolved


def _import_problem(where: str, entry: str, base: Path, error: Exception) -> str:
    """The problem line of a plugin that did not import: not found (where a plugin is looked
    for), or found and failing in its own code (the error, and the file and line)."""
    if _is_path(entry):
        path = Path(os.path.abspath(base / Path(entry).expanduser()))
        found = (path.is_file() and path.suffix == ".py") or (path / "__init__.py").is_file()
    else:
        missing = getattr(error, "name", None) if isinstance(error, ModuleNotFoundError) else None
        found = not (missing and f"{entry}.".startswith(f"{missing}."))
    if not found:
        return (f"{where}: cannot import {entry!r}: {type(error).__name__}: {error} (a plugin "
                "is a module importable from the config's directory, the current directory "
                "or the installed packages, or the path of a .py file)")
    if isinstance(error, SyntaxError) and error.filename:
        line = f" ({error.filename}, line {error.lineno})"
    else:
        frames = traceback.extract_tb(error.__traceback__)
        line = f" ({frames[-1].filename}, line {frames[-1].lineno})" if frames else ""
    return (f"{where}: {entry!r} was found, but importing it failed: "
            f"{type(error).__name__}: {error}{line}; fix that error in the plugin")


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
