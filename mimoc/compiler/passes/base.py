"""What every pass is: a name, a pure ``run(graph) -> graph`` and a one-line summary."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mimoc.compiler.ir import Graph


@dataclass(frozen=True)
class Pass:
    name: str
    run: Callable[[Graph], Graph]
    doc: str
    exact: bool = True  # False for lossy passes (prune with threshold, remove-layers, quantize)

    def __call__(self, graph: Graph) -> Graph:
        return self.run(graph)
