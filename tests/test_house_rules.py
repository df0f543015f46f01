"""The shape of the code itself (the package and its benchmarks), read with ast: small
classes and functions, and no module reading another module's private (underscored) names.

A name used by two modules is public (no underscore, a docstring), or it moves to the module
that owns the idea. A module may read its own private names on any object (Module reads
`_named_state` of its children, which are Modules too).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "minidl_cli"
MAX_CLASS_LINES = 200  # a class must be shorter: from its `class` line to its last line
MAX_FUNCTION_LINES = 50  # likewise for a function, from `def` to its last line
# Private names of other libraries read on purpose, each with the reason:
FOREIGN = {
    "_exit": "os._exit is public (documented), a child's way out without the teardown",
    "_run_exitfuncs": "atexit has no public call that runs the handlers (cli.exit_now)",
}


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def sizes(tree: ast.Module) -> list[tuple[str, str, int]]:
    """(kind, name, lines) of every class and function, nested ones included."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            found.append(("class", node.name, node.end_lineno - node.lineno + 1))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found.append(("function", node.name, node.end_lineno - node.lineno + 1))
    return found


def defined_private_names(tree: ast.Module) -> set[str]:
    """The private names a module defines: functions, classes, assignments (module level,
    class level, and attributes of any object: `self._x = ...`), parameters of its own."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)  # setattr(self, "_x", ...), vars(self)["_x"]
    return {n for n in names if is_private(n)}


def imported_modules(tree: ast.Module) -> set[str]:
    """The names under which a module holds minidl's modules (`from minidl_cli import
    sweeps`, `import minidl_cli.seeds as groups`)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("minidl_cli"):
            names |= {a.asname or a.name for a in node.names
                      if (PACKAGE / (node.module or "").removeprefix("minidl_cli")
                          .replace(".", "/").lstrip("/") / a.name).with_suffix(".py").exists()
                      or (PACKAGE / a.name).is_dir()}
        elif isinstance(node, ast.Import):
            names |= {a.asname for a in node.names
                      if a.name.startswith("minidl_cli") and a.asname}
    return names


def private_reads(tree: ast.Module) -> list[tuple[int, str, bool]]:
    """(line, name, surely another module's) of each private name a module takes from
    elsewhere: imported (`from m import _x`) or read off one of minidl's modules (`m._x`),
    surely another's; or read as an attribute of anything but self / cls (`other._x`,
    getattr(obj, "_x")), another's unless the module defines the name itself."""
    held = imported_modules(tree)
    reads = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            reads += [(node.lineno, a.name, True) for a in node.names if is_private(a.name)]
        elif isinstance(node, ast.Attribute) and is_private(node.attr):
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                module = isinstance(owner, ast.Name) and owner.id in held
                reads.append((node.lineno, node.attr, module))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "hasattr", "setattr", "delattr")
              and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
              and isinstance(node.args[1].value, str) and is_private(node.args[1].value)):
            owner = node.args[0]
            if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                reads.append((node.lineno, node.args[1].value, False))
    return reads


@pytest.mark.parametrize("path", [*modules(), *sorted((ROOT / "benchmarks").rglob("*.py"))],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_classes_and_functions_are_small(path):
    too_long = [f"{kind} {name}: {lines} lines" for kind, name, lines in sizes(parse(path))
                if lines >= (MAX_CLASS_LINES if kind == "class" else MAX_FUNCTION_LINES)]
    assert not too_long, (f"{path.relative_to(ROOT)}: split into named steps (classes under "
                          f"{MAX_CLASS_LINES} lines, functions under {MAX_FUNCTION_LINES}): "
                          + "; ".join(too_long))


def test_no_module_reads_another_modules_private_names():
    """Over the package, its tests and its benchmarks."""
    paths = [*modules(), *sorted((ROOT / "tests").rglob("*.py")),
             *sorted((ROOT / "benchmarks").rglob("*.py"))]
    trees = {path: parse(path) for path in paths}
    problems = []
    for path, tree in trees.items():
        own = defined_private_names(tree)
        for line, name, surely in private_reads(tree):
            if surely or not (name in own or name in FOREIGN):
                problems.append(f"{path.relative_to(ROOT)}:{line} reads {name}")
    assert not problems, ("make the name public (no underscore, a docstring) or move the "
                          "code to the module that owns it:\n" + "\n".join(problems))


def test_nothing_cites_the_specification_the_repository_does_not_contain():
    """The code, tests and docs explain themselves: no whole word naming that document
    (`grep -rnw` of it over minidl_cli, tests, README.md and docs prints nothing)."""
    import re

    word = re.compile(r"\b" + "SP" + r"EC\b")  # spelt apart, so this file does not cite it
    paths = [ROOT / "README.md", *[p for folder in ("minidl_cli", "tests", "docs")
                                   for p in sorted((ROOT / folder).rglob("*"))
                                   if p.is_file() and p.suffix in (".py", ".md", ".yaml")]]
    cited = [f"{p.relative_to(ROOT)}:{n}" for p in paths
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
             if word.search(line)]
    assert not cited, "explain instead of citing it: " + ", ".join(cited)


def test_the_rules_see_a_long_function_and_a_private_read():
    """The checks above find what they look for (a rule that sees nothing passes too)."""
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    tree = ast.parse(f"def long():\n{body}\n")
    assert sizes(tree) == [("function", "long", MAX_FUNCTION_LINES + 1)]
    tree = ast.parse("from minidl_cli.sweeps import _x\nfrom minidl_cli import sweeps\n"
                     "sweeps._y()\nself._z\ngetattr(run, '_w')\n")
    assert sorted((name, surely) for _, name, surely in private_reads(tree)) == [
        ("_w", False), ("_x", True), ("_y", True)]
    assert defined_private_names(ast.parse("def _f(): pass\nself._g = 1\n")) == {"_f", "_g"}
