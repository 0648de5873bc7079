"""Layout planning: which values the ONNX target emits as rows ``[B*S, n]``, decided first.

A detector's symbol stage is a chain of dense layers applied to every symbol vector:
values of shape ``[B, S, n]`` (``B`` channel realisations, ``S`` symbols). Emitted as
3-D ``MatMul`` + ``Add``, onnxruntime runs the bias as a separate kernel (it fuses
``MatMul + Add`` into ``Gemm`` only for 2-D operands), and a detector has one bias per
layer. So those layers are emitted on the same data seen as rows, ``[B*S, n]``
(:attr:`Layout.ROWS`):

- ``Linear(x, W, b)`` -> ``Gemm(x_rows, W, b, transB=1)`` (one kernel; onnxruntime also
  fuses a following ``Relu`` into it);
- elementwise ops (unary, binary with operands of the same leading dims or constants of
  rank <= 1, ``Clip``, ``Gelu``...) and a ``Concat`` along the last axis stay on rows.

A value is converted between layouts only where an op needs the other one (a ``Reshape``,
which onnxruntime runs without copying): at the stage entry (``y``, ``H^T y``), around
ops that mix symbols with per-channel matrices (DetNet's ``x @ H^T H``, a batched
``MatMul``), and at the stage exit (``x_hat``).

:func:`plan_layouts` walks the graph in order before anything is emitted and gives every
node its layout, by the rule its op's emitter declares (:data:`.emitters.EMITTERS`):
:func:`plain`, :func:`row_wise`, or the input quantizers' rule in :mod:`.quantized`. A
row-wise elementwise op or ``Concat`` goes on rows when one of its operands already has a
row form at that point, so no conversion is added: a value has one once it was emitted on
rows, or read by a node emitted on rows (the emitter reshapes it then, once).

Example::

    >>> plan = plan_layouts(graph, "fp32", {"Linear": row_wise, "Relu": row_wise})
    >>> plan.layout("blocks.0.fc1")
    <Layout.ROWS: 'rows'>
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import Enum

from mimoc.compiler.ir import Graph, Node


class Layout(Enum):
    PLAIN = "plain"  # the IR shape
    ROWS = "rows"  # [-1, n]: the leading dims flattened


class LayoutPlan:
    """The layout of every node, decided in graph order (see the module docstring)."""

    def __init__(self, graph: Graph, lowering: str):
        self.graph = graph
        self.lowering = lowering
        self._layouts: dict[str, Layout] = {}
        self._row_form: set[str] = set()  # values with a row form at this point of emission

    def layout(self, name: str) -> Layout:
        return self._layouts.get(name, Layout.PLAIN)

    def has_rows(self, name: str) -> bool:
        """Whether ``name`` has a row form when the next node is emitted."""
        return name in self._row_form

    def decide(self, node: Node, layout: Layout) -> None:
        self._layouts[node.name] = layout
        if layout is Layout.ROWS:
            self._row_form.add(node.name)
            self._row_form.update(name for name in row_operands(node)
                                  if len(self.graph.node(name).shape) > 1)


LayoutRule = Callable[[LayoutPlan, Node], Layout]


def row_operands(node: Node) -> tuple[str, ...]:
    """The inputs that carry rows (a Linear's weight and bias are parameters)."""
    return node.inputs[:1] if node.op == "Linear" else node.inputs


def row_width(node: Node) -> int | None:
    """``n`` when ``node`` is ``[..., n]`` with rank >= 3 and a static last dim, else None."""
    shape = node.shape
    if len(shape) < 3 or not isinstance(shape[-1], int):
        return None
    return shape[-1]


def plain(plan: LayoutPlan, node: Node) -> Layout:
    """Ops that only run in their IR layout."""
    return Layout.PLAIN


def row_wise(plan: LayoutPlan, node: Node) -> Layout:
    """Linear, elementwise ops and Concat: on rows when their operands fit.

    A Linear on a rank >= 3 input always is (that is the point: a Gemm with the bias).
    An elementwise op or Concat is when one of its operands already has a row form (so no
    conversion is added) and every operand either has the node's leading dims or is a
    broadcast scalar / vector (rank <= 1), which broadcasts the same way over rows.
    """
    if row_width(node) is None:
        return Layout.PLAIN
    lead = node.shape[:-1]
    for name in row_operands(node):
        shape = plan.graph.node(name).shape
        if len(shape) <= 1 and node.op not in ("Linear", "Concat"):
            continue
        if len(shape) != len(node.shape) or tuple(shape[:-1]) != tuple(lead) \
                or not isinstance(shape[-1], int):
            return Layout.PLAIN
    if node.op == "Concat":
        rank = len(node.shape)
        if node.attrs["axis"] % rank != rank - 1:
            return Layout.PLAIN
    if node.op == "Linear" or any(plan.has_rows(name) for name in row_operands(node)):
        return Layout.ROWS
    return Layout.PLAIN


def plan_layouts(graph: Graph, lowering: str, rules: Mapping[str, LayoutRule]) -> LayoutPlan:
    """Every node's layout, by ``rules[node.op]`` (:func:`plain` for ops not in it)."""
    plan = LayoutPlan(graph, lowering)
    for node in graph.nodes:
        plan.decide(node, rules.get(node.op, plain)(plan, node))
    return plan
