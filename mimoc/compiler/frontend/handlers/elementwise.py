"""Handlers of elementwise ATen ops: activations, broadcasting arithmetic, clamps."""

from __future__ import annotations

from typing import Any

import torch

from mimoc.compiler.frontend.state import Handler

aten = torch.ops.aten


def _unary(op: str) -> Handler:
    return lambda imp, node: imp.emit(op, [imp.value(node.args[0], node)], None, node)


def _binary(op: str) -> Handler:
    def handle(imp, node):
        alpha = node.kwargs.get("alpha", 1)
        a, b = imp.value(node.args[0], node), imp.value(node.args[1], node)
        if alpha != 1:
            b = imp.emit("Mul", [b, imp.scalar(float(alpha), node)], None, node, "_alpha")
        return imp.emit(op, [a, b], None, node)
    return handle


def _rsub(imp, node):  # rsub(x, other, alpha) = other - alpha * x
    x, other = imp.value(node.args[0], node), imp.value(node.args[1], node)
    alpha = node.kwargs.get("alpha", 1)
    if alpha != 1:
        x = imp.emit("Mul", [x, imp.scalar(float(alpha), node)], None, node, "_alpha")
    return imp.emit("Sub", [other, x], None, node)


def _pow(imp, node):
    x, exponent = node.args[0], node.args[1]
    if exponent == 2:
        return imp.emit("Square", [imp.value(x, node)], None, node)
    if exponent == 0.5:
        return imp.emit("Sqrt", [imp.value(x, node)], None, node)
    if exponent == 1:
        return imp.value(x, node)
    return imp.emit("Pow", [imp.value(x, node), imp.value(exponent, node)], None, node)


def _clip(imp, node):
    lo = imp.arg(node, 1, "min")
    hi = imp.arg(node, 2, "max")
    if node.target == aten.clamp_min.default:
        lo, hi = node.args[1], None
    elif node.target == aten.clamp_max.default:
        lo, hi = None, node.args[1]
    elif node.target == aten.hardtanh.default:
        lo, hi = imp.arg(node, 1, "min_val", -1.0), imp.arg(node, 2, "max_val", 1.0)
    attrs = {"min": None if lo is None else float(lo), "max": None if hi is None else float(hi)}
    return imp.emit("Clip", [imp.value(node.args[0], node)], attrs, node)


def _gelu(imp, node):
    return imp.emit("Gelu", [imp.value(node.args[0], node)],
                    {"approximate": node.kwargs.get("approximate", "none")}, node)


HANDLERS: dict[Any, Handler] = {
    aten.relu.default: _unary("Relu"),
    aten.tanh.default: _unary("Tanh"),
    aten.sigmoid.default: _unary("Sigmoid"),
    aten.abs.default: _unary("Abs"),
    aten.neg.default: _unary("Neg"),
    aten.sqrt.default: _unary("Sqrt"),
    aten.rsqrt.default: _unary("Rsqrt"),
    aten.square.default: _unary("Square"),
    aten.exp.default: _unary("Exp"),
    aten.log.default: _unary("Log"),
    aten.reciprocal.default: _unary("Reciprocal"),
    aten.sign.default: _unary("Sign"),
    aten.sin.default: _unary("Sin"),
    aten.cos.default: _unary("Cos"),
    aten.gelu.default: _gelu,
    aten.hardtanh.default: _clip,
    aten.clamp.default: _clip,
    aten.clamp_min.default: _clip,
    aten.clamp_max.default: _clip,
    aten.add.Tensor: _binary("Add"),
    aten.add.Scalar: _binary("Add"),
    aten.sub.Tensor: _binary("Sub"),
    aten.sub.Scalar: _binary("Sub"),
    aten.rsub.Scalar: _rsub,
    aten.mul.Tensor: _binary("Mul"),
    aten.mul.Scalar: _binary("Mul"),
    aten.div.Tensor: _binary("Div"),
    aten.div.Scalar: _binary("Div"),
    aten.pow.Tensor_Scalar: _pow,
    aten.pow.Tensor_Tensor: _binary("Pow"),
    aten.maximum.default: _binary("Maximum"),
    aten.minimum.default: _binary("Minimum"),
}
