"""quantize: apply a quantization recipe (:mod:`mimoc.quant.spec`) to the IR.

For each ``Linear`` / ``Conv2d`` whose scope (module path, ``blocks.3.fc1``) is a layer of
the recipe::

    Linear(x, W, b)  ->  Linear(FakeQuant(x), W_q, b)      W_q = q * s_w[o]  (Const, quant set)
    Conv2d(x, W, b)  ->  Conv2d(FakeQuant(x), W_q, b)

- the weight becomes a ``Const`` holding ``W_q = clamp(round(W / s), -(2^(b-1)-1),
  2^(b-1)-1) * s`` (:func:`~mimoc.quant.spec.fake_quant_weight`) with
  ``TensorType.quant = Quant(bits, axis=0, scale=s)``, so the integer codes come back
  exactly as ``round(W_q / s)`` for the low-bit lowerings;
- the input gets a ``FakeQuant`` node (the recipe's activation quantizer: dynamic step
  ``alpha * RMS(x)`` over the features, or static ``alpha``), whose reference executor
  calls :func:`~mimoc.quant.spec.fake_quant_act`: the IR interpreter computes what
  :class:`mimoc.quant.QuantizedDetector` computes;
- a difference-coded ``Linear`` (recipe ``difference = (t, r, n)``, spec) gets its input
  ``x' = Concat(x[:t], x[t:t+n] - x[r:r+n], x[t+n:])`` (the slices are the producing
  ``Concat``'s own operands when its pieces line up, as in DetNet's block input) and the
  weight ``W'_q`` of ``W' = W`` with columns ``r:r+n`` increased by columns ``t:t+n``;
- a ``BatchNorm`` reading a quantized ``Conv2d`` (SDNet) is folded here, per output channel:
  ``BN(conv(x, q s) + b) = conv(x, q * (s g)) + (b - mean) g + beta`` with
  ``g = gamma / sqrt(var + eps)``, so the folded weight is still ``q`` on a per-channel grid
  of step ``|s g|`` (codes ``sign(g) q``).

Order: run it on the imported graph, *before* ``canonicalize`` (which would fold the
BatchNorm into unquantized weights) and before ``split-linear`` / ``hoist-conv-rows``
(declared: :attr:`Quantize.must_precede`, checked by the pipeline; a graph that such
passes already rewrote in an earlier pipeline is refused by the pass itself).
``split-linear`` leaves a layer with an activation quantizer alone (its input is a
``FakeQuant``, not the ``Concat`` it splits); ``hoist-conv-rows`` hoists through a static
``FakeQuant`` (elementwise) but stops at a dynamic one (a statistic of the whole image); a
weight-only layer they split keeps its per-row scales.
``prune`` / ``remove-layers`` must run before ``quantize`` only if the recipe was made for
the pruned model (the scale count must match the layer's outputs).

The pass carries its recipe: ``Quantize(recipe)``; ``PASSES["quantize"]`` (no recipe)
explains how to give one. The report lists every layer (weight bits, activation
quantizer) and the recipe layers that are not in the graph.

Example::

    >>> result = run_pipeline(graph, [Quantize(recipe), "canonicalize", "split-channel"])
    >>> result.records[0].notes[-1]
    'quantized 9 layers (kaq, 4-bit weights, 4-bit dynamic activations)'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from mimoc.compiler.ir import Graph, Node, Quant
from mimoc.compiler.passes.base import FunctionPass, Pass, PassOutcome
from mimoc.compiler.rewrite import Rewriter, rebuild
from mimoc.errors import UsageError

NAME = "quantize"
LAYER_OPS = ("Linear", "Conv2d")
FEATURE_DIMS = {"Linear": 1, "Conv2d": 3}  # spec: last dim for Linear, (C, H, W) for Conv2d
SPLIT_SUFFIXES = (".cols", ".band", ".slot", ".pruned", ".scaled")


def weight_quant(scale: torch.Tensor, bits: int) -> Quant:
    """The ``Quant`` of a weight with per-output-channel steps ``scale [out]``."""
    return Quant(bits, True, 0, tuple(float(s) for s in scale.float()))


def codes(weight: torch.Tensor, quant: Quant) -> torch.Tensor:
    """Integer codes ``round(W_q / s)`` (int64) of a quantized weight ``W_q`` along ``axis``."""
    s = torch.tensor(quant.scale, dtype=torch.float64)
    view = [1] * weight.dim()
    view[quant.axis or 0] = -1
    return torch.round(weight.double() / s.reshape(view)).to(torch.int64)


def _pieces(rw: Rewriter, x: str, start: int, end: int, like: Node) -> list[str]:
    """Values whose last-axis concatenation is ``x[..., start:end]``: operands of ``x``'s
    producing last-axis ``Concat`` when the range covers whole operands, else a ``Slice``."""
    producer = rw.producer(x)
    rank = len(producer.type.shape)
    if producer.op == "Concat" and producer.attrs["axis"] % rank == rank - 1:
        covered, offset = [], 0
        for operand in producer.inputs:
            width = rw.type(operand).shape[-1]
            if start <= offset and offset + width <= end:
                covered.append(operand)
            elif offset < end and offset + width > start:  # cut through an operand
                covered = None
                break
            offset += width
        if covered:
            return covered
    return [rw.make("Slice", [x], {"axis": rank - 1, "start": start, "end": end, "step": 1},
                    like=like, suffix=f"_in{start}_{end}")]


def _segment(rw: Rewriter, x: str, start: int, end: int, like: Node) -> str:
    """``x[..., start:end]`` as one value (the pieces of :func:`_pieces`, concatenated)."""
    parts = _pieces(rw, x, start, end, like)
    if len(parts) == 1:
        return parts[0]
    return rw.make("Concat", parts, {"axis": len(rw.type(x).shape) - 1}, like=like,
                   suffix=f"_in{start}_{end}")


def difference_coded(rw: Rewriter, x: str, difference: tuple[int, int, int],
                     like: Node) -> str:
    """``x'`` of spec's difference coding, built from IR ops."""
    t, r, n = difference
    width = rw.type(x).shape[-1]
    coded = rw.make("Sub", [_segment(rw, x, t, t + n, like), _segment(rw, x, r, r + n, like)],
                    like=like, suffix="_diff")
    parts = _pieces(rw, x, 0, t, like) if t > 0 else []
    parts.append(coded)
    if t + n < width:
        parts += _pieces(rw, x, t + n, width, like)
    return rw.make("Concat", parts, {"axis": len(rw.type(x).shape) - 1}, like=like,
                   suffix="_coded")


def _bn_reader(graph: Graph, conv: Node) -> Node | None:
    users = graph.users().get(conv.name, [])
    if len(users) == 1 and users[0].op == "BatchNorm" and users[0].attrs["axis"] % 4 == 1 \
            and conv.name not in graph.outputs:
        return users[0]
    return None


class _Quantizer:
    def __init__(self, graph: Graph, recipe: Any):
        self.graph = graph
        self.recipe = recipe
        self.users = graph.users()
        self.layers: list[dict[str, Any]] = []
        self.folded: dict[str, str] = {}  # BatchNorm name -> the folded conv value
        self.seen: set[str] = set()

    def check(self, node: Node) -> None:
        w = node.inputs[1]
        if w.endswith(".bn_folded"):
            raise UsageError(f"layer {node.scope}: its BatchNorm was folded before quantize; "
                             "run quantize before canonicalize (--passes quantize,canonicalize,"
                             "...)")
        if w.endswith(SPLIT_SUFFIXES) or node.scope in self.seen:
            raise UsageError(f"layer {node.scope} was split or rewritten before quantize; run "
                             "quantize first (--passes quantize,canonicalize,split-channel,...)")
        lq = self.recipe.layers[node.scope]
        out = self.graph.node(w).shape[0]
        if lq.difference is not None:
            from mimoc.quant.spec import valid_difference

            width = self.graph.node(w).shape[1]
            if node.op != "Linear" or not valid_difference(lq.difference, width):
                raise UsageError(f"layer {node.scope}: the recipe's difference coding "
                                 f"{list(lq.difference)} does not fit this {node.op} with "
                                 f"{width} inputs")
        if lq.weight_scale.numel() != out:
            raise UsageError(f"layer {node.scope} has {out} outputs but the recipe has "
                             f"{lq.weight_scale.numel()} weight scales; quantize the model as "
                             "compiled (prune / remove-layers before 'mimoc quantize')")

    def __call__(self, node: Node, rw: Rewriter) -> str | None:
        if node.op == "BatchNorm" and node.name in self.folded:
            return self.folded[node.name]
        if node.op not in LAYER_OPS or node.scope not in self.recipe.layers:
            return None
        self.check(node)
        self.seen.add(node.scope)
        from mimoc.quant.spec import difference_weight, fake_quant_weight

        lq = self.recipe.layers[node.scope]
        weight = rw.constants[node.inputs[1]]
        scale = lq.weight_scale.to(weight.dtype)
        w_q = fake_quant_weight(difference_weight(weight, lq.difference), scale,
                                lq.weight_bits)
        bias = rw.constants[node.inputs[2]] if len(node.inputs) > 2 else None
        bn = _bn_reader(self.graph, node) if node.op == "Conv2d" else None
        if bn is not None:
            gamma, beta, mean, var = (rw.constants[i].double() for i in bn.inputs[1:])
            g = gamma / torch.sqrt(var + bn.attrs["eps"])
            w_q = (w_q.double() * g.reshape(-1, 1, 1, 1)).to(weight.dtype)
            b = torch.zeros_like(mean) if bias is None else bias.double()
            bias = ((b - mean) * g + beta).to(weight.dtype)
            scale = (scale.double() * g.abs()).to(weight.dtype)
        x = node.inputs[0]
        if lq.difference is not None:
            x = difference_coded(rw, x, lq.difference, node)
        act = lq.act
        if act is not None:
            attrs = {"bits": act.bits, "signed": act.signed, "mode": act.mode,
                     "alpha": float(act.alpha), "feature_dims": FEATURE_DIMS[node.op]}
            x = rw.make("FakeQuant", [x], attrs, like=node, suffix="_act_q")
        w_name = rw.new_const(f"{node.inputs[1]}.q{lq.weight_bits}", w_q, node.scope,
                              weight_quant(scale, lq.weight_bits))
        inputs = [x, w_name]
        if bias is not None:
            inputs.append(node.inputs[2] if bn is None else
                          rw.new_const(f"{node.scope}.bn_folded_bias", bias, node.scope))
        out = rw.make(node.op, inputs, node.attrs, like=node, suffix="_q")
        if bn is not None:
            self.folded[bn.name] = out
        self.layers.append({
            "scope": node.scope, "op": node.op, "weight_bits": lq.weight_bits,
            "weight_shape": list(weight.shape), "batchnorm_folded": bn is not None,
            "difference": None if lq.difference is None else list(lq.difference),
            "act": None if act is None else {"bits": act.bits, "mode": act.mode,
                                             "alpha": float(act.alpha), "signed": act.signed}})
        return out


def _describe(layer: dict[str, Any]) -> str:
    act = layer["act"]
    a = "fp32 input" if act is None else (f"{act['bits']}-bit {act['mode']} activations "
                                          f"(alpha {act['alpha']:.4g})")
    fold = ", BatchNorm folded per channel" if layer["batchnorm_folded"] else ""
    diff = layer["difference"]
    coded = "" if diff is None else (f", input difference-coded (x[{diff[0]}:{diff[0] + diff[2]}]"
                                     f" - x[{diff[1]}:{diff[1] + diff[2]}])")
    return (f"{layer['scope']}: {layer['op']} {layer['weight_bits']}-bit weights, {a}{fold}"
            f"{coded}")


def apply_recipe(graph: Graph, recipe: Any) -> PassOutcome:
    """The quantized graph and the report (see the module docstring)."""
    quantizer = _Quantizer(graph, recipe)
    out = rebuild(graph, quantizer)
    missing = sorted(set(recipe.layers) - quantizer.seen)
    notes = [_describe(layer) for layer in quantizer.layers]
    if missing:
        notes.append(f"recipe layers not in the graph (left as they are): {', '.join(missing)}")
    acts = {(a["bits"], a["mode"]) for a in (ly["act"] for ly in quantizer.layers) if a}
    act_text = ", ".join(f"{b}-bit {m}" for b, m in sorted(acts)) or "no"
    wbits = sorted({ly["weight_bits"] for ly in quantizer.layers})
    notes.append(f"quantized {len(quantizer.layers)} layers ({recipe.method}, "
                 f"{'/'.join(map(str, wbits)) or '-'}-bit weights, {act_text} activations)")
    details = {"method": recipe.method, "bits": recipe.bits, "layers": quantizer.layers,
               "missing": missing}
    return PassOutcome(out, tuple(notes), details)


# a recipe holds tensors: passes compare by identity (eq=False), not by their recipes
@dataclass(frozen=True, eq=False)
class Quantize(Pass):
    """``quantize`` with one :class:`~mimoc.quant.spec.QuantRecipe` (``None``: the
    registered pass, which asks for a recipe)."""

    recipe: Any = None

    name = NAME
    exact = False
    must_precede = ("canonicalize", "hoist-conv-rows", "split-linear")

    @property
    def doc(self) -> str:
        if self.recipe is None:
            return ("apply a quantization recipe (--quant): 4-bit / int8 weights, FakeQuant "
                    "inputs")
        return f"apply the {self.recipe.method} recipe ({self.recipe.bits}-bit)"

    def run(self, graph: Graph) -> PassOutcome:
        if self.recipe is None:
            raise UsageError("the quantize pass needs a recipe: compile with --quant METHOD "
                             "(or a checkpoint saved by 'mimoc quantize')")
        return apply_recipe(graph, self.recipe)


def drop_input_quant(graph: Graph) -> Graph:
    """``FakeQuant(x) -> x``: for the ``w4`` lowering, whose MatMulNBits kernel quantizes
    its input itself (int8 per block); exact splits (``split-linear``, ``hoist-conv-rows``)
    can then run on the quantized layers, whose weights keep their per-row scales."""
    def replace(node: Node, rw: Rewriter) -> str | None:
        return node.inputs[0] if node.op == "FakeQuant" else None
    return rebuild(graph, replace)


DROP_INPUT_QUANT = FunctionPass(
    "drop-input-quant", drop_input_quant,
    "remove the activation quantizers (w4: the kernel quantizes inputs)", exact=False,
    must_follow=(NAME,))

PASS = Quantize()
