"""Fold residual scales: ``s' = P + c s`` chains run without their ``Mul`` nodes.

DetNet's blocks mix their estimates as ``x_{k+1} = P_k + a x_k`` (``a = 0.9``; ``P_k``
the block's clipped update, ``v`` likewise), one ``Mul`` per state and block. Each
state is read only by linear consumers (the next block's ``fc1`` through a ``Concat``,
the ``H^T H x`` MatMul) and by the next mixing step, so the model can carry
``S_k = s_k / G_k`` instead, with ``G_k = a_1 ... a_k`` the product of the chain's
residual factors:

    S_k = P_k / G_k + S_{k-1}

The ``1/G_k`` goes into the weights and bias of the Gemm that makes ``P_k`` (through
a ``Clip``, whose bounds scale too, and a ``Split``: per output column), and ``G_k``
into the ``fc1`` weight columns that read ``S_k`` (through ``Reshape`` / ``MatMul`` /
``Concat``, all linear). A reader that cannot absorb the scale (the graph output) gets
one ``Mul``. On a 30-block DetNet this removes 58 of 388 nodes; at batch 1 a CPU spends
about a microsecond per node whatever its size. Exact in real arithmetic; in fp32 the
results change by rounding only (the scales are not powers of two).

Only chains with positive scalar factors and ``P_k`` made by a Gemm with initializer
weights (optionally through ``Split``, ``Clip`` with constant bounds, or a scalar
``Mul``) are rewritten; anything else is left as it is.

Example::

    >>> model = fold_residual_scales(model)
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import helper, numpy_helper

from mimoc.targets.onnx.siblings import node_attributes


class _Graph:
    """Indexes of one ONNX graph and the scale edits planned on it."""

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        graph = model.graph
        self.inits = {t.name: t for t in graph.initializer}
        self.producer = {o: n for n in graph.node for o in n.output}
        self.readers: dict[str, list[tuple[onnx.NodeProto, int]]] = defaultdict(list)
        for n in graph.node:
            for i, name in enumerate(n.input):
                self.readers[name].append((n, i))
        self.outputs = {o.name for o in graph.output}
        inferred = onnx.shape_inference.infer_shapes(model)
        self.widths: dict[str, int] = {}
        for v in list(inferred.graph.value_info) + list(inferred.graph.input):
            dims = v.type.tensor_type.shape.dim
            if len(dims) == 2 and dims[1].HasField("dim_value"):
                self.widths[v.name] = dims[1].dim_value
        # per Gemm (by output name): scale of its input columns (K) and output columns (N)
        self.k_scale: dict[str, np.ndarray] = {}
        self.n_scale: dict[str, np.ndarray] = {}
        self.new_consts: dict[tuple[str, int], float] = {}  # (node output, input) -> value
        self.unscale: dict[tuple[str, int], float] = {}  # edges that get a Mul by the factor

    def scalar(self, name: str) -> float | None:
        tensor = self.inits.get(name)
        if tensor is None:
            return None
        array = numpy_helper.to_array(tensor)
        if array.size != 1 or array.dtype != np.float32:
            return None
        return float(array.reshape(()))

    def only_reader(self, value: str, node: onnx.NodeProto) -> bool:
        return value not in self.outputs and [r for r, _ in self.readers[value]] == [node]

    def gemm_weight(self, gemm: onnx.NodeProto) -> np.ndarray | None:
        """The (N, K) weight of a Gemm with an initializer B and transA = 0, else None."""
        if gemm.op_type != "Gemm" or gemm.domain not in ("", "ai.onnx") \
                or node_attributes(gemm).get("transA", 0) or gemm.input[1] not in self.inits:
            return None
        w = numpy_helper.to_array(self.inits[gemm.input[1]])
        if w.ndim != 2 or w.dtype != np.float32:
            return None
        return w if node_attributes(gemm).get("transB", 0) else w.T

    def bias_ok(self, gemm: onnx.NodeProto, n: int) -> bool:
        if len(gemm.input) < 3 or not gemm.input[2]:
            return True
        bias = self.inits.get(gemm.input[2])
        return bias is not None and tuple(bias.dims) == (n,)

    def _scale(self, table: dict, gemm: onnx.NodeProto, size: int, lo: int, hi: int,
               factor: float) -> None:
        scale = table.setdefault(gemm.output[0], np.ones(size))
        scale[lo:hi] *= factor

    # -- the value a chain adds (P_k) is scaled by `factor` where it is made -------------

    def push_down(self, value: str, reader: onnx.NodeProto, factor: float,
                  commit: bool) -> bool:
        node = self.producer.get(value)
        if node is None or not self.only_reader(value, reader):
            return False
        if node.op_type == "Clip" and len(node.input) == 3 and all(
                self.scalar(b) is not None for b in node.input[1:]):
            if not self.push_down(node.input[0], node, factor, commit):
                return False
            if commit:
                for i in (1, 2):
                    self.new_consts[node.output[0], i] = self.scalar(node.input[i]) * factor
            return True
        if node.op_type == "Mul" and self.scalar(node.input[1]) is not None:
            if commit:
                self.new_consts[node.output[0], 1] = self.scalar(node.input[1]) * factor
            return True
        if node.op_type == "Split" and node_attributes(node).get("axis", 0) in (-1, 1) \
                and len(node.input) == 2 and node.input[1] in self.inits:
            gemm = self.producer.get(node.input[0])
            weight = None if gemm is None else self.gemm_weight(gemm)
            if weight is None or not self.only_reader(node.input[0], node) \
                    or not self.bias_ok(gemm, weight.shape[0]):
                return False
            sizes = numpy_helper.to_array(self.inits[node.input[1]]).tolist()
            index = list(node.output).index(value)
            lo = sum(sizes[:index])
            if commit:
                self._scale(self.n_scale, gemm, weight.shape[0], lo, lo + sizes[index], factor)
            return True
        weight = self.gemm_weight(node)
        if weight is not None and self.bias_ok(node, weight.shape[0]):
            if commit:
                self._scale(self.n_scale, node, weight.shape[0], 0, weight.shape[0], factor)
            return True
        return False

    # -- the readers of a rescaled state take the scale back (`factor` = G_k) ----------------

    def pull_up(self, value: str, factor: float, skip: set[int]) -> None:
        if value in self.outputs:
            self.unscale[value, -1] = factor
        for reader, index in self.readers[value]:
            if id(reader) not in skip:
                self._pull_edge(reader, index, factor, skip)

    def _pull_edge(self, node: onnx.NodeProto, index: int, factor: float,
                   skip: set[int]) -> None:
        op = node.op_type
        if op == "Mul" and self.scalar(node.input[1 - index]) is not None:
            key = (node.output[0], 1 - index)
            self.new_consts[key] = self.new_consts.get(
                key, self.scalar(node.input[1 - index])) * factor
            return
        if (op == "Reshape" and index == 0) or op == "MatMul":  # linear in that operand
            self.pull_up(node.output[0], factor, skip)
            return
        if op == "Gemm" and index == 0:
            weight = self.gemm_weight(node)
            if weight is not None:
                self._scale(self.k_scale, node, weight.shape[1], 0, weight.shape[1], factor)
                return
        if op == "Concat" and node_attributes(node).get("axis", 0) in (-1, 1) \
                and all(name in self.widths for name in node.input) \
                and node.output[0] not in self.outputs:
            gemms = [r for r, i in self.readers[node.output[0]]]
            if all(i == 0 and self.gemm_weight(r) is not None
                   for r, i in self.readers[node.output[0]]):
                lo = sum(self.widths[name] for name in node.input[:index])
                hi = lo + self.widths[node.input[index]]
                for gemm in gemms:
                    k = self.gemm_weight(gemm).shape[1]
                    self._scale(self.k_scale, gemm, k, lo, hi, factor)
                return
        self.unscale[node.output[0], index] = factor  # anything else: one Mul on that edge


def _links(g: _Graph) -> list[tuple[onnx.NodeProto, onnx.NodeProto, str, str, float]]:
    """``(add, mul, p, q, c)`` for every ``Add(P, Mul(q, c))``, in graph order, whose Mul
    is read by that Add only and whose ``c`` is a positive float scalar."""
    found = []
    for node in g.model.graph.node:
        if node.op_type != "Add" or len(node.input) != 2:
            continue
        for j in (0, 1):
            mul = g.producer.get(node.input[j])
            if mul is None or mul.op_type != "Mul" or not g.only_reader(mul.output[0], node):
                continue
            c = g.scalar(mul.input[1])
            if c is not None and c > 0 and mul.input[0] != node.input[1 - j]:
                found.append((node, mul, node.input[1 - j], mul.input[0], c))
                break
    return found


def fold_residual_scales(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with its residual chains rescaled (see the module docstring); the model
    itself when it has none."""
    g = _Graph(model)
    scale: dict[str, float] = {}  # rescaled state -> G_k
    rewritten: list[tuple[onnx.NodeProto, onnx.NodeProto, str, str]] = []
    skip: dict[str, set[int]] = {}
    for add, mul, p, q, c in _links(g):
        total = c * scale.get(q, 1.0)
        if g.push_down(p, add, 1.0 / total, commit=False):
            g.push_down(p, add, 1.0 / total, commit=True)
            scale[add.output[0]] = total
            rewritten.append((add, mul, p, q))
            skip.setdefault(q, set()).add(id(mul))
    if not rewritten:
        return model
    for value, factor in scale.items():
        g.pull_up(value, factor, skip.get(value, set()))
    return _apply(g, rewritten)


def _apply(g: _Graph, rewritten) -> onnx.ModelProto:
    graph = g.model.graph
    dropped = {id(mul) for _, mul, _, _ in rewritten}
    new_inits: list[onnx.TensorProto] = []

    def const(name: str, value: np.ndarray) -> str:
        new_inits.append(numpy_helper.from_array(value.astype(np.float32), name))
        return name

    def unique(name: str, owner: str) -> str:  # a weight shared by two Gemms: two copies
        return f"{name}.{owner}" if any(t.name == name for t in new_inits) else name

    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        if id(node) in dropped:
            continue
        out = node.output[0]
        for (owner, index), factor in g.unscale.items():
            if owner == out and index >= 0:  # this reader gets its operand times G_k
                scaled = f"{node.input[index]}.unscaled.{out}"
                nodes.append(helper.make_node("Mul", [node.input[index], const(
                    f"{scaled}.c", np.array(factor))], [scaled], name=f"{node.name}.unscale"))
                node.input[index] = scaled
        for (owner, index), value in g.new_consts.items():
            if owner == out:
                node.input[index] = const(f"{out}.rescaled.{index}", np.array(value))
        if out in g.k_scale or out in g.n_scale:
            weight = g.gemm_weight(node).astype(np.float64)
            n, k = weight.shape
            weight = weight * g.n_scale.get(out, np.ones(n))[:, None] \
                * g.k_scale.get(out, np.ones(k))[None, :]
            if not node_attributes(node).get("transB", 0):
                weight = weight.T
            node.input[1] = const(unique(f"{node.input[1]}.rescaled", out), weight)
            if len(node.input) > 2 and node.input[2] and out in g.n_scale:
                bias = numpy_helper.to_array(g.inits[node.input[2]]).astype(np.float64)
                node.input[2] = const(unique(f"{node.input[2]}.rescaled", out),
                                      bias * g.n_scale[out])
        nodes.append(node)
    for add, mul, _p, q in rewritten:  # S_k = P_k / G_k + S_{k-1}
        add.input[list(add.input).index(mul.output[0])] = q
    for (value, index), factor in g.unscale.items():
        if index == -1:  # a graph output: computed under a new name, then scaled back
            inner = f"{value}.rescaled"
            for node in nodes:
                node.output[:] = [inner if o == value else o for o in node.output]
                node.input[:] = [inner if i == value else i for i in node.input]
            position = next(i for i, n in enumerate(nodes) if inner in n.output)
            nodes.insert(position + 1, helper.make_node(
                "Mul", [inner, const(f"{value}.scale", np.array(factor))], [value],
                name=f"graph/{value}/Mul"))
    still_read = {name for node in nodes for name in node.input}
    kept = [t for t in graph.initializer if t.name in still_read]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept + [t for t in new_inits if t.name in still_read])
    return g.model
