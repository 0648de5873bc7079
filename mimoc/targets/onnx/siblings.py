"""Fuse sibling Gemms: Gemms that read the same input with constant weights become one.

DetNet's blocks feed one hidden vector to two layers (``fc2``: the estimate's update,
``fc3``: the carried state). At the batch of one slot (M = 14 rows) each Gemm is far
from the CPU's GEMM rate, and a wider one (N = 64 + 128) packs its panels better and
pays one call instead of two, so the emitted model computes both in one ``Gemm`` over
the weights concatenated along N and a ``Split`` of its output (the same sums: each
output column is the same dot product; the outputs are bit-identical).

Only Gemms of the default domain with ``alpha = beta = 1``, ``transA = 0``, the same
``transB``, initializer weights and 1-D (or absent) initializer biases are fused; the
rest of the model is left as it is.

Example::

    >>> model = fuse_sibling_gemms(model)
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import helper, numpy_helper


def node_attributes(node: onnx.NodeProto) -> dict[str, float | int]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _fusable(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> bool:
    attrs = node_attributes(node)
    if node.op_type != "Gemm" or node.domain not in ("", "ai.onnx") \
            or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0 \
            or attrs.get("transA", 0) != 0 or len(node.input) < 2:
        return False
    weight = inits.get(node.input[1])
    bias = inits.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    return weight is not None and len(weight.dims) == 2 and (
        len(node.input) < 3 or not node.input[2] or (bias is not None and len(bias.dims) == 1))


def fuse_sibling_gemms(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with every group of fusable Gemms sharing input A replaced by one Gemm and
    a Split (see the module docstring); the model itself when there is none."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    groups: dict[tuple[str, int], list[int]] = defaultdict(list)
    for i, node in enumerate(graph.node):
        if _fusable(node, inits):
            groups[node.input[0], int(node_attributes(node).get("transB", 0))].append(i)
    groups = {k: v for k, v in groups.items() if len(v) > 1}
    if not groups:
        return model
    replaced: dict[int, list[onnx.NodeProto]] = {}
    dropped: set[int] = set()
    new_inits: list[onnx.TensorProto] = []
    for (source, trans_b), members in groups.items():
        nodes = [graph.node[i] for i in members]
        weights = [numpy_helper.to_array(inits[n.input[1]]) for n in nodes]
        widths = [w.shape[0] if trans_b else w.shape[1] for w in weights]
        biases = [numpy_helper.to_array(inits[n.input[2]]) if len(n.input) > 2 and n.input[2]
                  else np.zeros(width, dtype=np.float32) for n, width in zip(nodes, widths,
                                                                             strict=True)]
        if any(b.shape != (width,) for b, width in zip(biases, widths, strict=True)):
            continue  # a broadcast bias: left alone
        name = "+".join(n.input[1] for n in nodes)
        new_inits += [numpy_helper.from_array(np.concatenate(weights, axis=0 if trans_b else 1),
                                              f"{name}.fused"),
                      numpy_helper.from_array(np.concatenate(biases), f"{name}.fused_bias"),
                      numpy_helper.from_array(np.array(widths, dtype=np.int64),
                                              f"{name}.widths")]
        fused = f"{nodes[0].output[0]}.fused"
        # node names keep mimoc's "scope/value/Op" form, the scopes of all members joined
        scope = "+".join(dict.fromkeys(n.name.split("/")[0] for n in nodes))
        value = nodes[0].name.split("/")[1] if nodes[0].name.count("/") >= 2 else fused
        gemm = helper.make_node("Gemm", [source, f"{name}.fused", f"{name}.fused_bias"],
                                [fused], name=f"{scope}/{value}/Gemm", transB=trans_b)
        split = helper.make_node("Split", [fused, f"{name}.widths"],
                                 [n.output[0] for n in nodes], name=f"{scope}/{value}/Split",
                                 axis=-1)
        # at the first member: the shared input and the weights exist there, and nodes
        # before the later members may read the first member's output
        replaced[members[0]] = [gemm, split]
        dropped.update(members)
    if not replaced:
        return model
    used = {name for i in dropped for name in graph.node[i].input[1:]}
    nodes = []
    for i, node in enumerate(graph.node):
        if i in replaced:
            nodes += replaced[i]
        elif i not in dropped:
            nodes.append(node)
    still_read = {name for node in nodes for name in node.input}
    kept = [t for t in graph.initializer if t.name not in used or t.name in still_read]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept + new_inits)
    return model
