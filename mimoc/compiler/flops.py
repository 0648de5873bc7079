"""FLOP counting on the IR, split by rate (docs/design.md: FLOPs = 2 x MACs).

Counts are for concrete sizes of the symbolic dims, by default one channel and one
symbol (``B=1, S=1``): then the symbol-rate total is the per-symbol cost and the
slot-rate total the per-slot (once per channel) cost.

Example::

    >>> report = count_flops(graph)
    >>> report.per_symbol, report.per_slot
    (5248, 1024)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mimoc.compiler import ops
from mimoc.compiler.dims import evaluate_shape
from mimoc.compiler.ir import Graph, Rate


@dataclass(frozen=True)
class FlopReport:
    by_rate: dict[Rate, int]
    by_node: dict[str, int] = field(default_factory=dict)

    @property
    def per_symbol(self) -> int:
        return self.by_rate.get(Rate.SYMBOL, 0)

    @property
    def per_slot(self) -> int:
        return self.by_rate.get(Rate.SLOT, 0)

    @property
    def total(self) -> int:
        return sum(self.by_rate.values())

    def summary(self) -> str:
        return (f"per-symbol {self.per_symbol} FLOPs, per-slot {self.per_slot} FLOPs, "
                f"const {self.by_rate.get(Rate.CONST, 0)} FLOPs")


def count_flops(graph: Graph, sizes: Mapping[str, int] | None = None) -> FlopReport:
    """FLOPs per node and per rate at ``sizes``.

    Defaults: ``B=1, S=1`` and ``graph.dim_sizes`` for other dims (RE-MIMO's ``U``).
    """
    sizes = {"B": 1, "S": 1, **graph.dim_sizes, **(sizes or {})}
    by_rate = {r: 0 for r in Rate}
    by_node: dict[str, int] = {}
    shapes = {n.name: n.shape for n in graph.nodes}
    for node in graph.nodes:
        if ops.OPS[node.op].source:
            continue
        operand_shapes = [evaluate_shape(shapes[i], sizes) for i in node.inputs]
        count = ops.flops(node.op, operand_shapes, node.attrs, evaluate_shape(node.shape, sizes))
        if count:
            by_node[node.name] = count
            by_rate[node.rate] += count
    return FlopReport(by_rate, by_node)
