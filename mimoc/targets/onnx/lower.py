"""onnx-fuse: target lowering for onnxruntime, fewer and cheaper elementwise nodes.

A detector's per-symbol stage is hundreds of tiny nodes; on a CPU each costs a kernel
launch (about a microsecond) whatever its size, so the node count, not the FLOPs, sets the
latency of small models. These rules shorten elementwise chains; they are exact in real
arithmetic and change fp32 results only by rounding (verified by the differential tests):

- ``soft-sign-clip``: DetNet's soft sign
  ``-1 + Relu(u + t)/t - Relu(u - t)/t -> Clip(u * (1/t), -1, 1)`` for a constant ``t > 0``
  (9 nodes -> 2);
- ``scale-clip``: ``Mul(Clip(x, lo, hi), c) -> Clip(Mul(x, c), c*lo, c*hi)`` for a scalar
  ``c > 0`` (the Clip read once);
- ``scale-into-linear``: ``Mul(Linear(x, W, b), c) -> Linear(x, c*W, c*b)`` for a scalar
  constant ``c`` (the Linear read once): the scale costs nothing at run time;
- ``div-by-constant``: ``Div(x, c) -> Mul(x, 1/c)`` for a scalar constant ``c``, so the
  two rules above see it.

Example::

    >>> graph = lower.run(graph)     # or through run_pipeline(graph, [..., lower.PASS])
"""

from __future__ import annotations

from dataclasses import replace

import torch

from mimoc.compiler.ir import Graph, Node
from mimoc.compiler.passes.base import FunctionPass
from mimoc.compiler.rewrite import Rewriter, rewrite, rule

NAME = "onnx-fuse"


def _scalar(rw: Rewriter, name: str) -> float | None:
    """The value of a scalar (one-element) constant, else None."""
    tensor = rw.const(name)
    if tensor is None or tensor.numel() != 1:
        return None
    return float(tensor.reshape(()))


def _operand_scalar(node: Node, rw: Rewriter) -> tuple[str, float] | None:
    """``(x, c)`` for a binary node with one scalar-constant operand ``c``."""
    a, b = node.inputs
    cb = _scalar(rw, b)
    if cb is not None and rw.type(b).rank <= rw.type(a).rank:
        return a, cb
    if node.op in ("Mul", "Add"):  # commutative
        ca = _scalar(rw, a)
        if ca is not None and rw.type(a).rank <= rw.type(b).rank:
            return b, ca
    return None


def _read_once(rw: Rewriter, name: str) -> bool:
    """``name`` has exactly one reader. Values made during this sweep have no count yet and
    answer False (the next sweep sees them), so two readers never both fold one value."""
    return rw.use_counts.get(name) == 1


def _is(rw: Rewriter, name: str, op: str) -> Node | None:
    node = rw.producer(name)
    return node if node.op == op else None


def _relu_of(rw: Rewriter, name: str, op: str, t: float) -> str | None:
    """``u`` when ``name`` is ``Relu(op(u, t))`` (op Add or Sub with the constant ``t``)."""
    relu = _is(rw, name, "Relu")
    inner = relu and _is(rw, relu.inputs[0], op)
    if inner is None:
        return None
    found = _operand_scalar(inner, rw)
    if found is None or found[0] != inner.inputs[0] or abs(found[1] - t) > 1e-7 * abs(t):
        return None
    return found[0]


def _scaled_relu(rw: Rewriter, name: str, op: str) -> tuple[str, float] | None:
    """``(u, t)`` when ``name`` is ``Relu(op(u, t)) / t`` (or ``* (1/t)``)."""
    node = rw.producer(name)
    if node.op not in ("Div", "Mul"):
        return None
    found = _operand_scalar(node, rw)
    if found is None:
        return None
    inner, c = found
    t = c if node.op == "Div" else (1.0 / c if c else 0.0)
    if not t > 0:
        return None
    u = _relu_of(rw, inner, op, t)
    return (u, t) if u is not None else None


def _const(rw: Rewriter, like: Node, value: float) -> str:
    dtype = torch.float64 if like.type.dtype == "f64" else torch.float32
    return rw.new_const(f"{like.name}_c", torch.tensor(value, dtype=dtype), like.scope)


@rule("soft-sign-clip", {"Sub"}, "-1 + Relu(u + t)/t - Relu(u - t)/t -> Clip(u * (1/t), -1, 1)")
def soft_sign_clip(node, rw):
    upper = _is(rw, node.inputs[0], "Add")
    lower = _scaled_relu(rw, node.inputs[1], "Sub")
    if upper is None or lower is None:
        return None
    found = _operand_scalar(upper, rw)
    if found is None or found[1] != -1.0:
        return None
    rising = _scaled_relu(rw, found[0], "Add")
    if rising is None or rising[0] != lower[0] or abs(rising[1] - lower[1]) > 1e-7 * lower[1]:
        return None
    u, t = lower
    scaled = rw.make("Mul", [u, _const(rw, node, 1.0 / t)], like=node, suffix="_scaled")
    return rw.make("Clip", [scaled], {"min": -1.0, "max": 1.0}, like=node, suffix="_clip")


@rule("scale-clip", {"Mul"}, "Mul(Clip(x, lo, hi), c) -> Clip(Mul(x, c), c*lo, c*hi), c > 0")
def scale_clip(node, rw):
    found = _operand_scalar(node, rw)
    if found is None or not found[1] > 0:
        return None
    clip = _is(rw, found[0], "Clip")
    if clip is None or not _read_once(rw, clip.name):
        return None
    c = found[1]
    lo, hi = clip.attrs["min"], clip.attrs["max"]
    scaled = rw.make("Mul", [clip.inputs[0], _const(rw, node, c)], like=node, suffix="_scaled")
    return rw.make("Clip", [scaled], {"min": None if lo is None else c * lo,
                                      "max": None if hi is None else c * hi},
                   like=node, suffix="_clip")


@rule("scale-into-linear", {"Mul"}, "Mul(Linear(x, W, b), c) -> Linear(x, c*W, c*b)")
def scale_into_linear(node, rw):
    found = _operand_scalar(node, rw)
    if found is None:
        return None
    linear = _is(rw, found[0], "Linear")
    if linear is None or not _read_once(rw, linear.name) or node.shape != linear.shape:
        return None
    c = found[1]
    weight = rw.const(linear.inputs[1])
    quant = rw.type(linear.inputs[1]).quant
    if quant is not None:  # q * s * c = (sign(c) q) * (s |c|): the codes keep their grid
        if c == 0:
            return None
        quant = replace(quant, scale=tuple(float(torch.tensor(s * abs(c), dtype=torch.float32))
                                           for s in quant.scale))
    scaled = [rw.new_const(f"{linear.inputs[1]}.scaled", (weight.double() * c).to(weight.dtype),
                           linear.scope, quant)]
    if len(linear.inputs) > 2:
        bias = rw.const(linear.inputs[2])
        scaled.append(rw.new_const(f"{linear.inputs[2]}.scaled",
                                   (bias.double() * c).to(bias.dtype), linear.scope))
    return rw.make("Linear", [linear.inputs[0], *scaled], linear.attrs, like=linear,
                   suffix="_scaled")


@rule("div-by-constant", {"Div"}, "Div(x, c) -> Mul(x, 1/c) for a scalar constant c")
def div_by_constant(node, rw):
    c = _scalar(rw, node.inputs[1])
    if c is None or c == 0 or rw.type(node.inputs[1]).rank > rw.type(node.inputs[0]).rank:
        return None
    return rw.make("Mul", [node.inputs[0], _const(rw, node, 1.0 / c)], like=node, suffix="_mul")


RULES = [soft_sign_clip, scale_clip, scale_into_linear, div_by_constant]


def run(graph: Graph) -> Graph:
    return rewrite(graph, RULES)


PASS = FunctionPass(NAME, run, "fuse elementwise chains for onnxruntime (soft sign -> Clip, scales "
                    "into Linear weights)")
