"""Text form of the IR.

One line per computed value, in order::

    graph detector(%H: f32[B,16,8] @slot, %y: f32[B,S,16] @symbol) -> (%x_hat)
      %linear: f32[B,S,32] @symbol = Linear(%cat, W=fc1.weight[32x48], b=fc1.bias[32])  # fc1
      ...
      return %x_hat

``Const`` nodes are not printed as lines: a const operand prints inline as
``operand_name=const_name[shape]`` and a scalar as its value. A header line counts the
constants and their parameters.
"""

from __future__ import annotations

import re

from mimoc.compiler import ops
from mimoc.compiler.dims import Sym, fmt_shape
from mimoc.compiler.ir import Graph, Node, TensorType


def format_type(t: TensorType) -> str:
    quant = f" q{t.quant}" if t.quant else ""
    return f"{t.dtype}{fmt_shape(t.shape)}{quant} @{t.rate}"


def _format_attr(value) -> str:
    if isinstance(value, tuple):
        inner = ",".join(_format_attr(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, Sym):
        return str(value)
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value) if isinstance(value, str) else str(value)


def _operand(graph: Graph, node: Node, index: int, name: str) -> str:
    producer = graph.node(name) if name in graph else None
    if producer is None or producer.op != "Const":
        return f"%{name}"
    tensor = graph.constants.get(name)
    if tensor is not None and tensor.numel() == 1 and tensor.dim() <= 1:
        literal = re.search(r"_c(_\d+)?$", name) is not None  # a number written in forward()
        text = f"{tensor.item():g}" if literal else f"{name}({tensor.item():g})"
    else:
        text = f"{name}[{'x'.join(str(d) for d in producer.shape)}]"
    schema = ops.OPS.get(node.op)
    label = schema.operand(index).name if schema and schema.operands else None
    return f"{label}={text}" if label and ops.OPS[node.op].operand(index).const else text


def format_node(graph: Graph, node: Node) -> str:
    args = [_operand(graph, node, i, name) for i, name in enumerate(node.inputs)]
    args += [f"{k}={_format_attr(v)}" for k, v in node.attrs.items()]
    scope = f"  # {node.scope}" if node.scope else ""
    return f"%{node.name}: {format_type(node.type)} = {node.op}({', '.join(args)}){scope}"


def format_graph(graph: Graph) -> str:
    inputs = ", ".join(f"%{n.name}: {format_type(n.type)}" for n in graph.inputs)
    outputs = ", ".join(f"%{o}" for o in graph.outputs)
    lines = [f"graph {graph.name}({inputs}) -> ({outputs})"]
    consts = [n for n in graph.nodes if n.op == "Const"]
    params = sum(int(graph.constants[n.name].numel()) for n in consts if n.name in graph.constants)
    lines.append(f"  # {len(consts)} constants, {params} parameters")
    for node in graph.nodes:
        if node.op not in ("Input", "Const"):
            lines.append("  " + format_node(graph, node))
    lines.append(f"  return {outputs}")
    return "\n".join(lines) + "\n"


def _json_value(value):
    if isinstance(value, tuple | list):
        return [_json_value(v) for v in value]
    if isinstance(value, Sym):
        return str(value)
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)


def format_graph_json(graph: Graph, sizes: dict[str, int] | None = None) -> dict:
    """The graph as JSON-ready data: inputs, outputs and one entry per computed node
    (``name, op, inputs, attrs, shape, dtype, rate, scope, flops``) with FLOPs at ``sizes``
    (default ``B=1, S=1``: per symbol / per slot), and the totals per rate."""
    from mimoc.compiler.flops import count_flops

    flops = count_flops(graph, sizes)
    consts = [n for n in graph.nodes if n.op == "Const"]

    def typed(node: Node) -> dict:
        return {"name": node.name, "shape": _json_value(node.shape), "dtype": node.type.dtype,
                "rate": str(node.rate)}

    nodes = []
    for node in graph.nodes:
        if node.op in ("Input", "Const"):
            continue
        entry = typed(node)
        entry.update(op=node.op, inputs=list(node.inputs),
                     attrs={k: _json_value(v) for k, v in node.attrs.items()},
                     scope=node.scope, flops=flops.by_node.get(node.name, 0))
        if node.type.quant is not None:
            entry["quant"] = str(node.type.quant)
        nodes.append(entry)
    return {
        "name": graph.name,
        "inputs": [typed(n) for n in graph.inputs],
        "outputs": list(graph.outputs),
        "constants": [typed(n) for n in consts],
        "parameters": sum(int(graph.constants[n.name].numel()) for n in consts
                          if n.name in graph.constants),
        "nodes": nodes,
        "flops": {"per_symbol": flops.per_symbol, "per_slot": flops.per_slot},
    }
