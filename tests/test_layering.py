"""The package's layers import only downward, without circles, in modules of at most 600
lines (docs/design.md section 1). Imports are read with ``ast``, function-level ones
included, so a lazy import cannot hide an upward arrow."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "mimoc"
MAX_LINES = 600

#: bottom to top; a module may import from its own layer and the layers below it
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("mimoc", "mimoc.errors", "mimoc.progress", "mimoc.fileio", "mimoc.validation",
              "mimoc.tables", "mimoc.number_lists")),
    ("hardware", ("mimoc.hardware",)),
    ("simulation", ("mimoc.sim",)),
    ("models", ("mimoc.detectors", "mimoc.quant")),
    ("compiler", ("mimoc.compiler",)),
    ("targets", ("mimoc.targets",)),
    ("driver", ("mimoc.driver",)),
    ("runtime", ("mimoc.runtime",)),
    ("studies", ("mimoc.studies",)),
    ("interface", ("mimoc.api", "mimoc.cli", "mimoc.commands", "mimoc.__main__")),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    best, length = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > length:
                best, length = index, len(prefix)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, known: set[str]) -> set[str]:
    """The mimoc modules ``path`` imports (``from a import b`` counts ``a.b`` when that is
    a module, else ``a``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("mimoc")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.startswith("mimoc"):
            subs = {f"{node.module}.{a.name}" for a in node.names} & known
            found |= subs or {node.module}
    return found & known


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(path, set(mods)) - {name} for name, path in mods.items()}


def test_every_module_is_in_a_layer():
    for name in modules():
        layer_of(name)


def test_no_module_imports_upward():
    upward = [f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})"
              for a, targets in sorted(import_graph().items()) for b in sorted(targets)
              if layer_of(b) > layer_of(a)]
    assert not upward, "\n".join(upward)


def test_no_import_circles():
    graph = import_graph()
    # A package's __init__ importing its own submodules is how packages re-export; a circle
    # through an __init__ and its own submodule is not a dependency circle.
    for name in graph:
        graph[name] = {t for t in graph[name] if not (t.startswith(name + ".") or
                                                      name.startswith(t + "."))}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not circles, circles


def test_modules_are_small():
    big = {name: n for name, path in modules().items()
           if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not big, big
