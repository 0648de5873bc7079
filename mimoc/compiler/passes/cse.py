"""cse: common-subexpression elimination (all IR ops are pure).

Two nodes with the same op, operands and attributes compute the same value; the later one
is replaced by the earlier. Small constants with equal contents are merged first, so
repeated literals (``0.9`` in every block's residual mix) become one value and the nodes
that read them can merge too. This is what de-duplicates slot work repeated across
blocks (DetNet's per-block ``H^T`` / ``H^T H``) and symbol work such as ``H^T y``.

Example::

    >>> graph = cse.run(graph)
"""

from __future__ import annotations

from typing import Any

from mimoc.compiler.ir import Graph, Node
from mimoc.compiler.passes.base import FunctionPass

NAME = "cse"
MERGE_CONST_LIMIT = 64  # compare constants with at most this many elements


def _const_key(graph: Graph, node: Node) -> Any:
    tensor = graph.constants[node.name]
    if tensor.numel() > MERGE_CONST_LIMIT:
        return None
    return ("Const", node.type, tuple(tensor.reshape(-1).tolist()))


def run(graph: Graph) -> Graph:
    seen: dict[Any, str] = {}
    rename: dict[str, str] = {}
    nodes: list[Node] = []
    for node in graph.nodes:
        if any(i in rename for i in node.inputs):
            node = node.replace(inputs=[rename.get(i, i) for i in node.inputs])
        if node.op == "Input":
            key = None
        elif node.op == "Const":
            key = _const_key(graph, node)
        else:
            key = (node.op, node.inputs, node.attrs, node.type)
        if key is not None and key in seen:
            rename[node.name] = seen[key]
            continue
        if key is not None:
            seen[key] = node.name
        nodes.append(node)
    if not rename:
        return graph
    outputs = tuple(rename.get(o, o) for o in graph.outputs)
    out = graph.replace(nodes=tuple(nodes), outputs=outputs).pruned()
    return out.with_output_names(graph.outputs)


PASS = FunctionPass(NAME, run,
                    "merge nodes that compute the same value (pure ops, equal constants)")
