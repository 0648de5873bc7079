"""The verifier: structural and type checks run after the frontend and after every pass.

Checks, per node: the op exists; operands are defined earlier (SSA, topological order);
names are unique; arity, attributes and const-only operands match the schema; the stored
type equals the type recomputed from the operands (shape, dtype, rate); ``Const`` nodes
have a tensor of their type; ``Input`` nodes are slot or symbol rate. Per graph: outputs
exist, no constant without its node.

Example::

    >>> verify(graph)            # raises IRError listing every problem found
"""

from __future__ import annotations

from mimoc.compiler import ops
from mimoc.compiler.dims import fmt_shape
from mimoc.compiler.ir import Graph, IRError, Node, Rate, TensorType, dtype_name


def _fmt(t: TensorType) -> str:
    return f"{t.dtype}{fmt_shape(t.shape)} @{t.rate}"


def _check_node(node: Node, graph: Graph, seen: dict[str, TensorType]) -> str | None:
    if node.op not in ops.OPS:
        return f"unknown op {node.op!r}"
    schema = ops.OPS[node.op]
    missing = [i for i in node.inputs if i not in seen]
    if missing:
        return "uses undefined or later-defined value(s) " + ", ".join(f"%{m}" for m in missing)
    if node.op == "Input":
        return "an Input must be slot or symbol rate" if node.rate == Rate.CONST else None
    if node.op == "Const":
        tensor = graph.constants.get(node.name)
        if tensor is None:
            return "Const without a tensor in graph.constants"
        if tuple(tensor.shape) != node.shape or dtype_name(tensor.dtype) != node.type.dtype:
            return (f"Const tensor {list(tensor.shape)} {tensor.dtype} does not match "
                    f"{_fmt(node.type)}")
        return None if node.rate == Rate.CONST else "a Const must be const rate"
    if node.op == "Fill":
        ops.check_attrs(schema, node.attrs)
        if node.shape != tuple(node.attrs["shape"]) or node.rate != Rate.CONST:
            return "Fill type does not match its shape attribute or is not const rate"
        return None
    expected = ops.infer_type(node.op, [seen[i] for i in node.inputs], node.attrs)
    expected = TensorType(expected.shape, expected.dtype, expected.rate, node.type.quant)
    if expected != node.type:
        return f"stored type {_fmt(node.type)} but operands give {_fmt(expected)}"
    return None


def problems(graph: Graph) -> list[str]:
    """Every problem found, one line each (empty: the graph is well formed)."""
    out: list[str] = []
    seen: dict[str, TensorType] = {}
    for node in graph.nodes:
        if node.name in seen:
            out.append(f"%{node.name}: defined twice")
            continue
        try:
            issue = _check_node(node, graph, seen)
        except IRError as e:
            issue = str(e)
        if issue:
            where = f" ({node.scope})" if node.scope else ""
            out.append(f"%{node.name} = {node.op}{where}: {issue}")
        seen[node.name] = node.type
    for o in graph.outputs:
        if o not in seen:
            out.append(f"graph output %{o} is not defined")
    if not graph.outputs:
        out.append("graph has no outputs")
    for name in graph.constants:
        if name not in seen or graph.node(name).op != "Const":
            out.append(f"constant {name!r} has no Const node")
    return out


def verify(graph: Graph, *, after: str | None = None) -> Graph:
    """Raise :class:`IRError` listing the problems; return the graph when it is well formed."""
    found = problems(graph)
    if found:
        stage = f" after pass {after!r}" if after else ""
        shown = "\n  ".join(found[:20]) + (f"\n  ... {len(found) - 20} more" if len(found) > 20
                                           else "")
        raise IRError(f"IR verification failed{stage} ({len(found)} problem(s)):\n  {shown}")
    return graph
