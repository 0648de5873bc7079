"""canonicalize: fold BatchNorm into the layer before it, fold constants, drop identities.

Exact up to floating-point rounding. Rules (each ``before -> after``):

- ``BatchNorm(Conv2d(x, W, b)) -> Conv2d(x, W*s, (b-mean)*s + beta)``, ``s = gamma/sqrt(var+eps)``
- ``BatchNorm(Linear(x, W, b)) -> Linear(x, W*s, (b-mean)*s + beta)`` (channels last, rank 2)
- ``BatchNorm(x) -> Add(Mul(x, s), t)`` (any other BatchNorm)
- ``op(Const...) -> Const`` when every operand is constant and the shape is static
- ``op(Fill v) -> Fill op(v)`` for unary elementwise ops
- ``Mul/MatMul/Linear-free(x, 0) -> Fill 0``, ``Add(x, 0)``, ``Mul(x, 1)``, ... ``-> x``
- ``Reshape(x) -> x`` to the same shape, ``Reshape(Reshape(x)) -> Reshape(x)``
- ``Transpose(x, identity) -> x``, ``Transpose(Transpose(x)) -> Transpose(x)``
- ``Mul(Mul(x, c1), c2) -> Mul(x, c1*c2)`` for scalar constants
- ``Expand(x) -> x`` to the same shape, ``Neg(Neg(x)) -> x``, ``Squeeze(Unsqueeze(x)) -> x``

Example::

    >>> graph = canonicalize.run(graph)
"""

from __future__ import annotations

import torch

from mimoc.compiler import ops
from mimoc.compiler.dims import is_static
from mimoc.compiler.ir import Graph, Node
from mimoc.compiler.passes.base import FunctionPass
from mimoc.compiler.rewrite import Rewriter, rewrite, rule

NAME = "canonicalize"
FOLD_LIMIT = 1 << 20  # never materialise a folded constant larger than this many elements


def _bn_scale_shift(bn: Node, rw: Rewriter) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``s, t`` with ``BatchNorm(x) = x*s + t`` per channel, or None if params are not consts."""
    params = [rw.const(i) for i in bn.inputs[1:]]
    if any(p is None for p in params):
        return None
    gamma, beta, mean, var = (p.double() for p in params)
    scale = gamma / torch.sqrt(var + bn.attrs["eps"])
    return scale, beta - mean * scale


def _folded(rw: Rewriter, layer: Node, bn: Node, scale, shift, weight_view) -> str:
    dtype = rw.const(layer.inputs[1]).dtype
    w = rw.const(layer.inputs[1]).double() * scale.reshape(weight_view)
    b = rw.const(layer.inputs[2]).double() if len(layer.inputs) > 2 else torch.zeros_like(shift)
    b = b * scale + shift
    w_name = rw.new_const(f"{layer.inputs[1]}.bn_folded", w.to(dtype), layer.scope)
    b_name = rw.new_const(f"{bn.scope or bn.name}.bn_folded_bias", b.to(dtype), layer.scope)
    return rw.make(layer.op, [layer.inputs[0], w_name, b_name], layer.attrs, like=layer,
                   suffix="_bn")


@rule("fold-batchnorm-conv", {"BatchNorm"},
      "BatchNorm(Conv2d(x, W, b)) -> Conv2d(x, W*s, (b-mean)*s + beta)")
def fold_batchnorm_conv(node, rw):
    conv = rw.producer(node.inputs[0])
    st = _bn_scale_shift(node, rw)
    if conv.op != "Conv2d" or node.attrs["axis"] != 1 or not rw.single_use(conv.name) or not st:
        return None
    return _folded(rw, conv, node, *st, weight_view=(-1, 1, 1, 1))


@rule("fold-batchnorm-linear", {"BatchNorm"},
      "BatchNorm(Linear(x, W, b)) -> Linear(x, W*s, (b-mean)*s + beta)")
def fold_batchnorm_linear(node, rw):
    lin = rw.producer(node.inputs[0])
    st = _bn_scale_shift(node, rw)
    if (lin.op != "Linear" or lin.type.rank != 2 or node.attrs["axis"] != 1
            or not rw.single_use(lin.name) or not st):
        return None
    return _folded(rw, lin, node, *st, weight_view=(-1, 1))


@rule("batchnorm-to-affine", {"BatchNorm"}, "BatchNorm(x) -> Add(Mul(x, s), t)")
def batchnorm_to_affine(node, rw):
    st = _bn_scale_shift(node, rw)
    if st is None:
        return None
    rank, axis = node.type.rank, node.attrs["axis"] % node.type.rank
    view = [1] * (rank - axis)
    view[0] = -1
    dtype = rw.const(node.inputs[1]).dtype
    s = rw.new_const(f"{node.scope or node.name}.bn_scale", st[0].reshape(view).to(dtype),
                     node.scope)
    t = rw.new_const(f"{node.scope or node.name}.bn_shift", st[1].reshape(view).to(dtype),
                     node.scope)
    scaled = rw.make("Mul", [node.inputs[0], s], like=node, suffix="_scale")
    return rw.make("Add", [scaled, t], like=node, suffix="_shift")


@rule("fold-constants", None, "op(Const, ...) -> Const")
def fold_constants(node, rw):
    schema = ops.OPS[node.op]
    if schema.source or not node.inputs or not is_static(node.shape):
        return None
    if any(rw.const(i) is None for i in node.inputs):
        return None
    size = 1
    for d in node.shape:
        size *= d
    if size > FOLD_LIMIT:
        return None
    args = [rw.const(i) for i in node.inputs]
    value = schema.execute(args, node.attrs, {})
    return rw.new_const(f"{node.name}_folded", value.to(args[0].dtype), node.scope)


@rule("fold-fill-unary", ops.ELEMENTWISE_UNARY, "op(Fill v) -> Fill op(v)")
def fold_fill_unary(node, rw):
    if rw.producer(node.inputs[0]).op != "Fill":
        return None
    value = rw.uniform_value(node.inputs[0])
    out = ops.OPS[node.op].execute([torch.tensor(value, dtype=torch.float64)], node.attrs, {})
    return rw.fill(float(out), node)


def _same_shape(node: Node, rw: Rewriter, name: str) -> bool:
    t = rw.type(name)
    return t.shape == node.shape and t.dtype == node.type.dtype


@rule("zero-product", {"Mul", "MatMul", "Gram"}, "Mul(x, 0) / MatMul(0, x) -> Fill 0")
def zero_product(node, rw):
    if any(rw.uniform_value(i) == 0.0 for i in node.inputs):
        return rw.fill(0.0, node)
    return None


@rule("neutral-operand", {"Add", "Sub", "Mul", "Div"},
      "Add(x, 0), Add(0, x), Sub(x, 0), Mul(x, 1), Mul(1, x), Div(x, 1) -> x")
def neutral_operand(node, rw):
    a, b = node.inputs
    neutral = 0.0 if node.op in ("Add", "Sub") else 1.0
    if rw.uniform_value(b) == neutral and _same_shape(node, rw, a):
        return a
    if node.op in ("Add", "Mul") and rw.uniform_value(a) == neutral and _same_shape(node, rw, b):
        return b
    return None


@rule("identity-layout", {"Reshape", "Expand", "Transpose"},
      "Reshape(x)/Expand(x) to x's own shape, Transpose(x, identity) -> x")
def identity_layout(node, rw):
    x = node.inputs[0]
    if node.op == "Transpose":
        return x if tuple(node.attrs["perm"]) == tuple(range(node.type.rank)) else None
    return x if _same_shape(node, rw, x) else None


@rule("reshape-chain", {"Reshape"}, "Reshape(Reshape(x)) -> Reshape(x)")
def reshape_chain(node, rw):
    inner = rw.producer(node.inputs[0])
    if inner.op != "Reshape":
        return None
    return rw.make("Reshape", [inner.inputs[0]], node.attrs, like=node, suffix="_merged")


@rule("transpose-chain", {"Transpose"}, "Transpose(Transpose(x, p), q) -> Transpose(x, p[q])")
def transpose_chain(node, rw):
    inner = rw.producer(node.inputs[0])
    if inner.op != "Transpose":
        return None
    p, q = inner.attrs["perm"], node.attrs["perm"]
    return rw.make("Transpose", [inner.inputs[0]], {"perm": tuple(p[i] for i in q)}, like=node,
                   suffix="_merged")


@rule("scale-chain", {"Mul"}, "Mul(Mul(x, c1), c2) -> Mul(x, c1*c2) for scalar constants")
def scale_chain(node, rw):
    x, c2 = node.inputs
    inner = rw.producer(x)
    t2 = rw.const(c2)
    if inner.op != "Mul" or t2 is None or t2.numel() != 1 or not rw.single_use(inner.name):
        return None
    t1 = rw.const(inner.inputs[1])
    if t1 is None or t1.numel() != 1 or t1.dim() > 0 or t2.dim() > 0:
        return None
    c = rw.new_const(f"{node.name}_c", (t1.double() * t2.double()).to(t2.dtype), node.scope)
    return rw.make("Mul", [inner.inputs[0], c], like=node, suffix="_merged")


@rule("double-neg", {"Neg"}, "Neg(Neg(x)) -> x")
def double_neg(node, rw):
    inner = rw.producer(node.inputs[0])
    return inner.inputs[0] if inner.op == "Neg" else None


@rule("squeeze-unsqueeze", {"Squeeze"}, "Squeeze(Unsqueeze(x, a), a) -> x")
def squeeze_unsqueeze(node, rw):
    inner = rw.producer(node.inputs[0])
    if inner.op == "Unsqueeze" and inner.attrs["axis"] == node.attrs["axis"]:
        return inner.inputs[0]
    return None


RULES = (
    fold_batchnorm_conv, fold_batchnorm_linear, batchnorm_to_affine,
    fold_constants, fold_fill_unary, zero_product, neutral_operand,
    identity_layout, reshape_chain, transpose_chain, scale_chain, double_neg,
    squeeze_unsqueeze,
)


def run(graph: Graph) -> Graph:
    """Apply :data:`RULES` to a fixpoint."""
    return rewrite(graph, RULES)



PASS = FunctionPass(NAME, run, "fold BatchNorm into Conv/Linear, fold constants, remove identities")
