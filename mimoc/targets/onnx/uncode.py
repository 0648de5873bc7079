"""Undo, in the ``fp32`` lowering, what only the input quantizers needed.

The ``fp32`` lowering of a quantized model runs the quantized weights in fp32 GEMMs and
applies no input quantizer. Two forms the quantize pass gave the graph for those
quantizers then cost work for nothing; on the 8x16 example (20 blocks) the quantized
model's fp32 graph had 282 nodes against the float model's 222, and was measurably
slower at B = 64 (issue 20):

- **Difference coding** (:func:`undo_difference_coding`). DetNet's block input
  ``[H^T y, x, H^T H x, v]`` is coded as ``[H^T y - H^T H x, x, H^T H x, v]`` with
  weights ``W'`` (:mod:`mimoc.quant.spec`), so that the 4-bit grid sees the small
  difference. In fp32 that costs a ``Sub`` and a ``Reshape`` per block and keeps the
  state ``x`` read by the ``Sub``, which the residual fold (:mod:`.residual`) cannot
  rescale. The pass feeds ``a`` instead of ``a - b`` to the ``Concat`` and moves the
  ``- b`` into the weights of the Gemms that read it (``t``: the coded columns, ``r``:
  the columns that hold ``b`` in the same ``Concat``)::

      W'[:, t] (a - b) + W'[:, r] b  =  W'[:, t] a + (W'[:, r] - W'[:, t]) b

  Rewritten only where the ``Sub`` is read by that ``Concat`` alone (through an optional
  row ``Reshape``), ``a`` is not broadcast by it, ``b`` is another input of the same
  ``Concat`` (reshaped alike), and the ``Concat`` joins along its last axis and is read
  only by Gemms with initializer weights.
- **Zero parts** (:func:`drop_zero_parts`). The first block reads ``[H^T y, 0, 0, 0]``.
  The IR pass ``split-linear`` drops the zero columns of a float model, but not in front
  of an input quantizer, whose dynamic step ``alpha * RMS(x)`` counts the zeros. In fp32
  the columns read by a ``ConstantOfShape`` of zeros go (a ``Concat`` along its last
  axis, read by Gemms directly or through one row ``Reshape``): 2.5 % of the 8x16
  example's FLOPs.

Both are exact in real arithmetic (fp32 results change by rounding only); anything
else is left as it is.

Example::

    >>> model = undo_difference_coding(drop_zero_parts(model))
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from mimoc.targets.onnx.siblings import node_attributes


@dataclass
class _Edit:
    concat: onnx.NodeProto
    coded: int  # the Concat input that holds a - b
    plain: int  # the Concat input that holds b
    reshape: onnx.NodeProto | None  # the row Reshape between the Sub and the Concat
    sub: onnx.NodeProto


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int | str, ...]]:
    """Inferred shapes whose every dim is a number or a named symbol (``data_prop``: the
    emitted ``Reshape`` targets are built from ``Shape`` nodes, and only propagating
    their values keeps ``B`` and ``S`` named through them)."""
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    shapes = {}
    for v in list(inferred.graph.value_info) + list(inferred.graph.input):
        dims = tuple(d.dim_value if d.HasField("dim_value") else d.dim_param or None
                     for d in v.type.tensor_type.shape.dim)
        if v.type.tensor_type.HasField("shape") and None not in dims:
            shapes[v.name] = dims
    return shapes


def _row_widths(shapes: dict[str, tuple[int | str, ...]]) -> dict[str, int]:
    return {name: dims[1] for name, dims in shapes.items()
            if len(dims) == 2 and isinstance(dims[1], int)}


def _gemm_weight(gemm: onnx.NodeProto, inits) -> np.ndarray | None:
    """The (N, K) fp32 weight of a plain Gemm (``transA = 0``, ``alpha = 1``) or None."""
    attrs = node_attributes(gemm)
    if gemm.op_type != "Gemm" or gemm.domain not in ("", "ai.onnx") or attrs.get("transA", 0) \
            or attrs.get("alpha", 1.0) != 1.0 or gemm.input[1] not in inits:
        return None
    w = numpy_helper.to_array(inits[gemm.input[1]])
    if w.ndim != 2 or w.dtype != np.float32:
        return None
    return w if attrs.get("transB", 0) else w.T


def _index(graph: onnx.GraphProto):
    """``(initializers, producer of each value, (reader, input index) of each value, graph
    output names)`` of ``graph``."""
    inits = {t.name: t for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    readers: dict[str, list[tuple[onnx.NodeProto, int]]] = defaultdict(list)
    for n in graph.node:
        for i, name in enumerate(n.input):
            readers[name].append((n, i))
    return inits, producer, readers, {o.name for o in graph.output}


def _find(model: onnx.ModelProto, index) -> tuple[list[_Edit], dict[str, int]]:
    """The rewritable codings (``index``: :func:`_index` of the model's graph), and the
    row widths of the values they concatenate."""
    inits, producer, readers, outputs = index

    def only_reader(value: str, node: onnx.NodeProto) -> bool:
        return value not in outputs and [r for r, _ in readers[value]] == [node]

    shapes = _shapes(model)
    widths = _row_widths(shapes)
    edits = []
    for concat in model.graph.node:
        if concat.op_type != "Concat" or node_attributes(concat).get("axis") not in (-1, 1) \
                or concat.output[0] in outputs or not readers[concat.output[0]] \
                or any(i != 0 or _gemm_weight(r, inits) is None
                       for r, i in readers[concat.output[0]]):
            continue
        for index, name in enumerate(concat.input):
            reshape = producer.get(name)
            if reshape is not None and reshape.op_type == "Reshape":
                sub = producer.get(reshape.input[0])
                value = reshape.input[0]
                if not only_reader(name, concat):
                    continue
            else:
                sub, value, reshape = reshape, name, None
            if sub is None or sub.op_type != "Sub" or not only_reader(
                    value, reshape if reshape is not None else concat):
                continue
            a, b = sub.input
            if a not in shapes or shapes[a] != shapes.get(value):  # a - b must not broadcast a
                continue
            for j, other in enumerate(concat.input):
                made = producer.get(other)
                same = other == b if reshape is None else (
                    made is not None and made.op_type == "Reshape"
                    and list(made.input) == [b, reshape.input[1]])
                if j != index and same:
                    if name in widths and widths.get(other) == widths[name] \
                            and all(n in widths for n in concat.input):
                        edits.append(_Edit(concat, index, j, reshape, sub))
                    break
    return edits, widths


def undo_difference_coding(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with its difference-coded Gemm inputs uncoded (module docstring); the
    model itself when it has none."""
    graph = model.graph
    inits, _, readers, outputs = index = _index(graph)
    edits, widths = _find(model, index)
    if not edits:
        return model
    for e in edits:
        offsets = np.cumsum([0] + [widths[n] for n in e.concat.input])
        t, r, n = offsets[e.coded], offsets[e.plain], widths[e.concat.input[e.coded]]
        for gemm, _ in readers[e.concat.output[0]]:
            w = _gemm_weight(gemm, inits).astype(np.float64)
            w[:, r:r + n] -= w[:, t:t + n]
            if not node_attributes(gemm).get("transB", 0):
                w = w.T
            name = f"{gemm.input[1]}.uncoded.{gemm.output[0]}"
            inits[name] = numpy_helper.from_array(w.astype(np.float32), name)
            gemm.input[1] = name
        if e.reshape is not None:  # the Sub is left unread, and goes
            e.reshape.input[0] = e.sub.input[0]
        else:
            e.concat.input[e.coded] = e.sub.input[0]
    nodes = _merge_same_reshapes(list(graph.node), outputs)
    del graph.node[:]
    graph.node.extend(nodes)
    _keep_live(graph, inits)
    return model


def _merge_same_reshapes(nodes: list[onnx.NodeProto], outputs: set[str]) -> list[onnx.NodeProto]:
    """One ``Reshape`` per (data, shape) pair: the uncoded blocks all reshape ``H^T y``."""
    first: dict[tuple[str, ...], str] = {}
    rename: dict[str, str] = {}
    kept = []
    for node in nodes:
        node.input[:] = [rename.get(i, i) for i in node.input]
        if node.op_type == "Reshape" and node.output[0] not in outputs:
            key = tuple(node.input) + tuple(sorted(node_attributes(node).items()))
            if key in first:
                rename[node.output[0]] = first[key]
                continue
            first[key] = node.output[0]
        kept.append(node)
    return kept


# -- zero parts ------------------------------------------------------------------------

def _is_zero_fill(node: onnx.NodeProto | None) -> bool:
    if node is None or node.op_type != "ConstantOfShape" or node.domain not in ("", "ai.onnx"):
        return False
    value = node_attributes(node).get("value")  # absent: a float 0
    return value is None or not numpy_helper.to_array(value).any()


def drop_zero_parts(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` without the Gemm columns that read constant zeros (module docstring);
    the model itself when it has none."""
    graph = model.graph
    inits, producer, readers, outputs = _index(graph)
    shapes = None
    changed = False
    for concat in graph.node:
        if concat.op_type != "Concat" or concat.output[0] in outputs or not any(
                _is_zero_fill(producer.get(name)) for name in concat.input):
            continue
        shapes = shapes if shapes is not None else _shapes(model)
        rank = len(shapes.get(concat.output[0], ()))
        widths = [shapes.get(name, (None,))[-1] for name in concat.input]
        if rank == 0 or node_attributes(concat).get("axis", 0) % rank != rank - 1 \
                or not all(isinstance(w, int) for w in widths):
            continue
        rows = _row_reader(concat, rank, sum(widths), inits, readers, outputs)
        gemms = readers[rows.output[0] if rows is not None else concat.output[0]]
        if (rows is None and rank != 2) or not gemms or any(
                i != 0 or _gemm_weight(g, inits) is None for g, i in gemms):
            continue
        keep = [i for i, name in enumerate(concat.input)
                if not _is_zero_fill(producer.get(name))]
        if not keep:
            continue
        offsets = np.cumsum([0] + widths)
        columns = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in keep])
        for gemm, _ in gemms:
            w = _gemm_weight(gemm, inits)[:, columns]
            if not node_attributes(gemm).get("transB", 0):
                w = w.T
            name = f"{gemm.input[1]}.nonzero.{gemm.output[0]}"
            inits[name] = numpy_helper.from_array(np.ascontiguousarray(w), name)
            gemm.input[1] = name
        concat.input[:] = [concat.input[i] for i in keep]
        if len(keep) == 1:  # its readers take the one part left, and the Concat goes
            for reader, index in readers[concat.output[0]]:
                reader.input[index] = concat.input[0]
        if rows is not None:
            target = np.array([-1, len(columns)], np.int64)
            name = f"i64.m1_{len(columns)}"  # the emitter's name for that shape
            if name in inits and not np.array_equal(numpy_helper.to_array(inits[name]), target):
                name += ".rows"
            inits.setdefault(name, numpy_helper.from_array(target, name))
            rows.input[1] = name
        changed = True
    if not changed:
        return model
    _keep_live(graph, inits)
    return model


def _row_reader(concat, rank, width, inits, readers, outputs) -> onnx.NodeProto | None:
    """The one ``Reshape`` to rows ``[-1, width]`` that reads ``concat`` (rank > 2), or None."""
    users = readers[concat.output[0]]
    if rank == 2 or len(users) != 1:
        return None
    reshape, index = users[0]
    if reshape.op_type != "Reshape" or index != 0 or reshape.output[0] in outputs \
            or reshape.input[1] not in inits:
        return None
    target = numpy_helper.to_array(inits[reshape.input[1]])
    return reshape if target.tolist() == [-1, width] else None


def _keep_live(graph: onnx.GraphProto, inits: dict[str, onnx.TensorProto]) -> None:
    """Drop the nodes and initializers nothing reads any more (in place)."""
    live = {o.name for o in graph.output}
    kept = []
    for node in reversed(graph.node):
        if any(o in live for o in node.output):
            kept.append(node)
            live.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    del graph.initializer[:]
    graph.initializer.extend(t for name, t in inits.items() if name in live)
