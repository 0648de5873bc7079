"""The lowered program as JSON (``schedule.json["program"]``) and back.

Each node is ``{"name", "op", "inputs", "attrs", "shape", "dtype", "rate", "scope"}``;
shapes hold ints and symbolic dims as strings (``"B*S"``); attribute values that are
symbolic dims are tagged ``{"dim": "B*S"}`` and tuples are lists. Constant tensors live in
``arrays.npz`` under ``const/<name>``. :func:`program_from_json` rebuilds the graph and runs
the verifier, so a damaged schedule is refused instead of mis-executed.

Example::

    >>> graph2 = program_from_json(program_to_json(graph), constants)
    >>> [n.op for n in graph2.nodes] == [n.op for n in graph.nodes]
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from mimoc.compiler.dims import Sym
from mimoc.compiler.ir import Attrs, Graph, Node, Rate, TensorType
from mimoc.compiler.verify import verify
from mimoc.errors import ModelFileError


def _dim_out(d: Any) -> Any:
    return d if isinstance(d, int) else str(d)


def parse_dim(text: Any) -> Any:
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    if not isinstance(text, str) or not text:
        raise ModelFileError(f"bad dimension {text!r} in the schedule's program")
    coeff, names = 1, []
    for part in text.split("*"):
        if part.isdigit():
            coeff *= int(part)
        elif part.isidentifier():
            names.append(part)
        else:
            raise ModelFileError(f"bad dimension {text!r} in the schedule's program")
    return Sym(coeff, tuple(sorted(names))) if names else coeff


def _attr_out(v: Any) -> Any:
    if isinstance(v, tuple | list):
        return [_attr_out(x) for x in v]
    if isinstance(v, Sym):
        return {"dim": str(v)}
    return v


def _attr_in(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_attr_in(x) for x in v)
    if isinstance(v, dict):
        if set(v) != {"dim"}:
            raise ModelFileError(f"bad attribute value {v!r} in the schedule's program")
        return parse_dim(v["dim"])
    return v


def program_to_json(graph: Graph) -> dict[str, Any]:
    nodes = [{"name": n.name, "op": n.op, "inputs": list(n.inputs),
              "attrs": {k: _attr_out(v) for k, v in n.attrs.items()},
              "shape": [_dim_out(d) for d in n.shape], "dtype": n.type.dtype,
              "rate": str(n.rate), "scope": n.scope} for n in graph.nodes]
    return {"name": graph.name, "outputs": list(graph.outputs),
            "dim_sizes": dict(graph.dim_sizes), "nodes": nodes}


def program_from_json(data: Mapping[str, Any], constants: Mapping[str, torch.Tensor]) -> Graph:
    try:
        nodes = tuple(Node(e["name"], e["op"], tuple(e["inputs"]),
                           Attrs({k: _attr_in(v) for k, v in e["attrs"].items()}),
                           TensorType(tuple(parse_dim(d) for d in e["shape"]), e["dtype"],
                                      Rate.parse(e["rate"])), e.get("scope", ""))
                      for e in data["nodes"])
        consts = {n.name: constants[n.name] for n in nodes if n.op == "Const"}
        graph = Graph(nodes, tuple(data["outputs"]), consts, data.get("name", "detector"),
                      dict(data.get("dim_sizes", {})))
    except (KeyError, TypeError, AttributeError) as err:
        raise ModelFileError(f"the schedule's program is damaged ({type(err).__name__}: "
                             f"{err}); compile the artifact again") from None
    from mimoc.targets.crossbar import xops  # noqa: F401  (the verifier needs the ops)

    try:
        return verify(graph, after="loading the crossbar schedule")
    except Exception as err:
        lines = str(err).splitlines()
        first = lines[1].strip() if len(lines) > 1 else lines[0]
        raise ModelFileError(f"the schedule's program does not verify ({first}); compile "
                             "the artifact again") from None
