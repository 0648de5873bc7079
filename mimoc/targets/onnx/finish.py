"""Finishing touches of the ONNX models: readable slot-state names, fixed dims for
execution providers that need static shapes, shape inference and ``metadata_props``.

- :func:`state_names`: the slot state gets names that say what it is (``HtH`` for the
  Gram matrix of ``H``, ``Ht`` for its transpose, ``<layer>.slot`` for a layer's
  slot-rate part) instead of the name of the op that made it (``mul``, ``transpose_1``);
- :func:`parse_static_shapes`: ``"B=1,S=14"`` or ``{"B": 1, "S": 14}`` -> a checked dict;
- :func:`finish_model`: fixes those dims in the graph inputs and outputs, runs ONNX
  shape inference (so viewers show every intermediate shape: ``value_info``) and
  writes the model's ``metadata_props`` in sorted order (byte-reproducible).

Example::

    >>> rename = state_names(graph, stages.state)         # {"mul": "HtH_scaled"}
    >>> finish_model(model, {"mimoc.stage": "slot"}, {"B": 1, "S": 14})
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import onnx

from mimoc.compiler.ir import Graph, Node
from mimoc.errors import UsageError

#: dims --static-shapes may fix: batch, symbols per slot, RE-MIMO's user count
STATIC_DIMS = ("B", "S", "U")
_MAX_DIM = 1 << 20  # far beyond any batch or slot; keeps a typo from allocating gigabytes
# ops that keep what a value means (a scale, a reshape): the name looks through them
_SAME_MEANING = {"Mul": "_scaled", "Div": "_scaled", "Unsqueeze": "", "Reshape": "",
                 "Squeeze": "", "Identity": ""}


def parse_static_shapes(spec: Any) -> dict[str, int] | None:
    """``spec`` (``"B=1,S=14"``, a mapping, or ``None``) as ``{dim: size}`` in the order
    of :data:`STATIC_DIMS`; a one-line UsageError for anything else."""
    if spec is None:
        return None
    example = "give e.g. --static-shapes B=1,S=14"
    if isinstance(spec, str):
        pairs: list[tuple[str, Any]] = []
        for part in (p.strip() for p in spec.split(",")):
            name, eq, value = part.partition("=")
            if not eq or not name.strip() or not value.strip():
                raise UsageError(f"--static-shapes: {part!r} is not DIM=SIZE; {example}")
            try:
                size: Any = int(value.strip())
            except ValueError:
                raise UsageError(f"--static-shapes: size {value.strip()!r} of {name.strip()} "
                                 f"is not an integer; {example}") from None
            pairs.append((name.strip(), size))
    elif isinstance(spec, Mapping):
        pairs = list(spec.items())
    else:
        raise UsageError(f"static_shapes must be a string such as 'B=1,S=14' or a dict such "
                         f"as {{'B': 1, 'S': 14}}, got {type(spec).__name__}")
    if not pairs:
        raise UsageError(f"--static-shapes is empty; {example}")
    fixed: dict[str, int] = {}
    for name, size in pairs:
        if name not in STATIC_DIMS:
            raise UsageError(f"--static-shapes: unknown dim {name!r}; the dims are "
                             f"{', '.join(STATIC_DIMS)}")
        if name in fixed:
            raise UsageError(f"--static-shapes: {name} is given twice")
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= _MAX_DIM:
            raise UsageError(f"--static-shapes: {name} must be a positive integer (at most "
                             f"{_MAX_DIM}), got {size!r}")
        fixed[name] = size
    return {d: fixed[d] for d in STATIC_DIMS if d in fixed}


def fixed_dim(dim: int | str, static: Mapping[str, int] | None) -> int | str:
    """``dim`` (an int or a ``dim_param`` such as ``B``, ``2*U``) with the fixed dims
    substituted: an int when every factor is known, else unchanged."""
    if isinstance(dim, int) or not static:
        return dim
    factors = [f.strip() for f in dim.split("*")]
    values = [int(f) if f.isdigit() else static.get(f) for f in factors]
    return dim if any(v is None for v in values) else math.prod(values)


def state_names(graph: Graph, state: Sequence[str]) -> dict[str, str]:
    """``{old: new}`` for the slot-state values whose names say only which op made them.

    Graph inputs keep their names (``H``). A value that is, up to scales and reshapes,
    the Gram matrix of an input ``X`` is ``XtX`` (``XtX_scaled`` if scaled), its
    transpose ``Xt``; a value of a layer (module scope) is ``<scope>.slot``; anything
    else ``state_<op>``. Names stay unique (``_1``, ``_2``, ... if taken)."""
    taken = {n.name for n in graph.nodes}
    rename: dict[str, str] = {}
    for name in state:
        node = graph.node(name)
        if node.op == "Input":
            continue
        wanted = _meaning(graph, node)
        new = wanted
        k = 1
        while new in taken and new != name:
            new = f"{wanted}_{k}"
            k += 1
        if new != name:
            rename[name] = new
            taken.add(new)
    return rename


def _meaning(graph: Graph, node: Node) -> str:
    suffix = ""
    base = node
    while base.op in _SAME_MEANING and base.inputs:
        operands = [graph.node(i) for i in base.inputs]
        computed = [o for o in operands if o.op != "Const"]
        if len(computed) != 1 or (base.op in ("Mul", "Div") and len(operands) != 2):
            break
        suffix = suffix or _SAME_MEANING[base.op]
        base = computed[0]
    source = graph.node(base.inputs[0]) if base.inputs else None
    if source is not None and source.op == "Input":
        if base.op == "Gram":
            return f"{source.name}t{source.name}{suffix}"
        if base.op == "Transpose" and _swaps_last_two(base) and not suffix:
            return f"{source.name}t"
    if node.scope:
        return f"{node.scope}.slot"
    return f"state_{node.op.lower()}"


def _swaps_last_two(node: Node) -> bool:
    perm = tuple(node.attrs.get("perm") or ())
    n = len(perm)
    return n >= 2 and perm == tuple(range(n - 2)) + (n - 1, n - 2)


def _fix_value_dims(values: Sequence[onnx.ValueInfoProto],
                    static: Mapping[str, int]) -> None:
    for value in values:
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param"):
                size = fixed_dim(dim.dim_param, static)
                if isinstance(size, int):
                    dim.dim_value = size  # (clears the dim_param: a oneof)


def finish_model(model: onnx.ModelProto, metadata: Mapping[str, str],
                 static: Mapping[str, int] | None = None) -> onnx.ModelProto:
    """``model`` with ``static`` dims fixed, shapes inferred (``value_info``) and
    ``metadata`` as its ``metadata_props`` (sorted by key)."""
    if static:
        _fix_value_dims(list(model.graph.input) + list(model.graph.output), static)
    # strict: an op whose shape ONNX cannot infer is a bug of the emitter, not the user's
    model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True,
                                              data_prop=True)
    del model.metadata_props[:]
    for key in sorted(metadata):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(metadata[key])
    return model
