"""split-channel: separate the work done once per channel (slot) from the per-symbol work.

Steps (docs/design.md section 3):

1. rate inference: every value's rate is recomputed from the inputs (``H`` slot,
   ``y`` symbol, weights const; a node takes the highest rate of its operands);
2. de-duplication (:mod:`.cse`) of work repeated across blocks: ``H^T``, ``H^T H`` once
   per slot, ``H^T y`` once per symbol;
3. algebraic rewrites that move work from the symbol rate to the slot rate (:data:`RULES`),
   each applied only when it lowers the per-symbol FLOPs;
4. hoisting: the node order becomes const and slot nodes first, then symbol nodes, so the
   slot stage is a prefix of the graph; :func:`mimoc.compiler.stages.split_stages` cuts
   the graph there into a slot graph (``H`` -> slot state) and a symbol graph
   (``y``, slot state -> ``x_hat``).

Partial hoisting of the channel-only rows of SDNet's convolutions is the separate pass
:mod:`.conv_rows` (``hoist-conv-rows``), run after this one.

Example::

    >>> before = count_flops(graph).per_symbol
    >>> graph = split_channel.run(graph)
    >>> count_flops(graph).per_symbol < before
    True
"""

from __future__ import annotations

from mimoc.compiler import ops
from mimoc.compiler.ir import Graph, Node, TensorType
from mimoc.compiler.passes import cse
from mimoc.compiler.passes.base import FunctionPass
from mimoc.compiler.rewrite import Rewriter, rewrite, rule
from mimoc.compiler.stages import slot_stage

NAME = "split-channel"


def infer_rates(graph: Graph) -> Graph:
    """Recompute every computed node's type (and so its rate) from its operands."""
    types: dict[str, TensorType] = {}
    nodes: list[Node] = []
    for node in graph.nodes:
        if not ops.OPS[node.op].source:
            t = ops.infer_type(node.op, [types[i] for i in node.inputs], node.attrs)
            t = TensorType(t.shape, t.dtype, t.rate, node.type.quant)
            if t != node.type:
                node = node.replace(type=t)
        types[node.name] = node.type
        nodes.append(node)
    return graph.replace(nodes=tuple(nodes))


def _transposed(name: str, rw: Rewriter) -> str | None:
    """``A`` when ``name`` is ``Transpose(A)`` swapping the last two dims, else None."""
    node = rw.producer(name)
    if node.op != "Transpose":
        return None
    rank = node.type.rank
    swap = tuple(range(rank - 2)) + (rank - 1, rank - 2)
    return node.inputs[0] if rank >= 2 and tuple(node.attrs["perm"]) == swap else None


def _matrix_dims(name: str, rw: Rewriter) -> tuple[int, int] | None:
    m, n = rw.type(name).shape[-2:]
    return (m, n) if isinstance(m, int) and isinstance(n, int) else None


@rule("gram", {"MatMul"}, "MatMul(Transpose(A), A) -> Gram(A)")
def gram(node, rw):
    a, b = node.inputs
    if _transposed(a, rw) != b or _matrix_dims(b, rw) is None:
        return None
    return rw.make("Gram", [b], like=node, suffix="_gram")


def _gram_product(node: Node, rw: Rewriter, x: str, inner: Node, a: str, row: bool) -> str | None:
    dims = _matrix_dims(a, rw)
    if dims is None or rw.type(a).rate >= rw.type(x).rate:
        return None
    m, n = dims
    saved_inner = 2 * m * n if rw.single_use(inner.name) else 0  # per row of x, 2 x MACs
    if 2 * n * n >= 2 * m * n + saved_inner:
        return None
    g = rw.make("Gram", [a], like=node, suffix="_gram")
    return rw.make("MatMul", [x, g] if row else [g, x], like=node, suffix="_hoisted")


@rule("gram-row", {"MatMul"}, "MatMul(MatMul(x, Transpose(A)), A) -> MatMul(x, Gram(A))")
def gram_row(node, rw):
    left, a = node.inputs
    inner = rw.producer(left)
    if inner.op != "MatMul" or _transposed(inner.inputs[1], rw) != a:
        return None
    return _gram_product(node, rw, inner.inputs[0], inner, a, row=True)


@rule("gram-col", {"MatMul"}, "MatMul(Transpose(A), MatMul(A, X)) -> MatMul(Gram(A), X)")
def gram_col(node, rw):
    at, right = node.inputs
    inner = rw.producer(right)
    a = _transposed(at, rw)
    if a is None or inner.op != "MatMul" or inner.inputs[0] != a:
        return None
    return _gram_product(node, rw, inner.inputs[1], inner, a, row=False)


@rule("solve-inverse", {"Solve"}, "Solve(A@slot, B@symbol) -> MatMul(Inverse(A), B)")
def solve_inverse(node, rw):
    a, b = node.inputs
    if rw.type(a).rate >= rw.type(b).rate:
        return None
    inverse = rw.make("Inverse", [a], like=node, suffix="_inverse")
    return rw.make("MatMul", [inverse, b], like=node, suffix="_hoisted")


RULES = (gram, gram_row, gram_col, solve_inverse)


def hoist(graph: Graph) -> Graph:
    """Stable reorder: the slot stage (:func:`~mimoc.compiler.stages.slot_stage`) first."""
    early = slot_stage(graph)
    first = [n for n in graph.nodes if n.name in early]
    rest = [n for n in graph.nodes if n.name not in early]
    return graph.replace(nodes=tuple(first + rest))


def run(graph: Graph) -> Graph:
    graph = cse.run(infer_rates(graph))
    graph = cse.run(rewrite(graph, RULES))
    return hoist(graph)


PASS = FunctionPass(NAME, run, "rate inference, dedup of slot work, hoisting into a slot stage")
