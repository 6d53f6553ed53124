"""The package's floors: no import cycle among its modules; the lower floors (models, memory, dialogue,
learning) never import the upper ones (evaluation, serving); the shared data sets (`ilearn.data`) import no floor.

Imports are read with `ast` from every module's source, the ones inside functions included: a lazy import still
ties two modules together. Imports under `if TYPE_CHECKING:` never run, so they make no cycle; they still count
as a floor's dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "ilearn"
LOWER = ("models", "memory", "dialogue", "learning")
UPPER = ("evaluation", "serving")


def module_files(root: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (a package by its __init__.py)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _type_checking_only(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_names(source: str, module: str, *, is_package: bool = False,
                   type_checking: bool = True) -> set[str]:
    """Every dotted name `source` imports, at any depth (functions, classes, try blocks); `from a import b` gives
    both `a` and `a.b` (b may be a module). Relative imports are resolved against `module`."""
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if not type_checking and _type_checking_only(node):
            for child in node.orelse:  # only the `else:` branch of `if TYPE_CHECKING:` runs
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return names


def import_graph(*, type_checking: bool = False, root: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (a name that is not a module counts as its nearest module)."""
    files = module_files(root)

    def owner(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for module, path in files.items():
        found = imported_names(path.read_text(), module, is_package=path.name == "__init__.py",
                               type_checking=type_checking)
        graph[module] = {m for m in map(owner, found) if m is not None and m != module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as [a, b, ..., a], or None (depth-first search, iterative)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    for start in sorted(graph):
        if start in state:
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def floor(module: str) -> str:
    """The subpackage a module belongs to ('' for top-level modules such as ilearn.config)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()) else ""


def test_the_reader_sees_imports_inside_functions_and_relative_ones():
    source = ("import os\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ilearn.serving import app\n"
              "def f():\n    from ilearn.evaluation.metrics import contains_answer\n"
              "class C:\n    def g(self):\n        from . import parts\n")
    found = imported_names(source, "ilearn.learning.gate")
    assert {"os", "ilearn.evaluation.metrics", "ilearn.evaluation.metrics.contains_answer", "ilearn.learning.parts",
            "ilearn.serving.app"} <= found
    assert "ilearn.serving.app" not in imported_names(source, "ilearn.learning.gate", type_checking=False)


def test_find_cycle_finds_one_and_only_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycle_in_the_package():
    graph = import_graph()
    assert len(graph) > 50 and "ilearn.learning.recipes" in graph
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("lower", LOWER)
def test_lower_floors_never_import_upper_ones(lower):
    graph = import_graph(type_checking=True)
    bad = sorted(f"{m} -> {d}" for m, deps in graph.items() if floor(m) == lower
                 for d in deps if floor(d) in UPPER)
    assert not bad, f"{lower}/ imports an upper floor: " + "; ".join(bad)


def test_the_shared_data_sets_import_no_floor():
    graph = import_graph(type_checking=True)
    bad = sorted(f"{m} -> {d}" for m, deps in graph.items() if floor(m) == "data" for d in deps
                 if floor(d) not in ("", "data"))
    assert not bad, "ilearn.data imports a floor: " + "; ".join(bad)


def test_test_modules_have_unique_names():
    """pytest imports test modules by their base name (rootdir mode): two files of one name stop collection."""
    names = [p.name for p in Path(__file__).parent.rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
