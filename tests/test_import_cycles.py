"""No import cycles inside the compiler and the simulator, counting function-level imports
too (a lazy import hides a cycle from Python, not from the design)."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: packages kept free of cycles among their own modules
PACKAGES = ("mimoc.compiler", "mimoc.sim")


def module_files() -> dict[str, Path]:
    files = {}
    for path in (ROOT / "mimoc").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The mimoc modules ``name`` imports anywhere in its body (absolute imports only:
    the project writes no relative ones)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            targets = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # "from a.b import name": module a.b
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle_inside(package):
    files = module_files()
    inside = {name for name in files if name == package or name.startswith(package + ".")}
    graph = {name: imports_of(name, files[name], set(files)) & inside for name in inside}
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as err:
        pytest.fail(f"import cycle in {package}: {' -> '.join(err.args[1])}")
