"""Handlers of layer ATen ops: linear maps and matrix products, 2-D convolution, batch and
layer normalisation, softmax."""

from __future__ import annotations

from typing import Any

import torch

from mimoc.compiler.frontend.diagnostics import module_scope, unsupported
from mimoc.compiler.frontend.state import Handler

aten = torch.ops.aten


def _linear(imp, node):
    inputs = [imp.value(a, node) for a in node.args[:3] if a is not None]
    return imp.emit("Linear", inputs, None, node)


def _matmul(imp, node):
    a, b = imp.value(node.args[0], node), imp.value(node.args[1], node)
    ra, rb = imp.builder.type_of(a).rank, imp.builder.type_of(b).rank
    if ra == 1 and rb == 1:
        raise unsupported(node, "dot products of two vectors are not supported; "
                                "use a matrix operand")
    if ra == 1:
        a = imp.emit("Unsqueeze", [a], {"axis": 0}, node, "_row")
        out = imp.emit("MatMul", [a, b], None, node, "_mm")
        return imp.emit("Squeeze", [out], {"axis": -2 % (imp.builder.type_of(out).rank)}, node)
    if rb == 1:
        b = imp.emit("Unsqueeze", [b], {"axis": 1}, node, "_col")
        out = imp.emit("MatMul", [a, b], None, node, "_mm")
        return imp.emit("Squeeze", [out], {"axis": imp.builder.type_of(out).rank - 1}, node)
    return imp.emit("MatMul", [a, b], None, node)


def _addmm(imp, node):
    if node.kwargs.get("beta", 1) != 1 or node.kwargs.get("alpha", 1) != 1:
        raise unsupported(node, "addmm with beta/alpha other than 1")
    bias, a, b = (imp.value(x, node) for x in node.args[:3])
    out = imp.emit("MatMul", [a, b], None, node, "_mm")
    return imp.emit("Add", [out, bias], None, node)


def _pair(v: Any) -> tuple[int, int]:
    v = tuple(v) if isinstance(v, list | tuple) else (v,)
    return (int(v[0]), int(v[-1]))


def _conv2d(imp, node):
    x, w = imp.value(node.args[0], node), imp.value(node.args[1], node)
    if imp.builder.type_of(x).rank != 4:
        raise unsupported(node, "only batched 4-D (NCHW) conv2d input is supported")
    bias = imp.arg(node, 2, "bias")
    padding = imp.arg(node, 4, "padding", 0)
    if isinstance(padding, str):
        raise unsupported(node, f"padding={padding!r}; give explicit integer padding")
    if node.target == aten.convolution.default:
        if node.args[6] or any(node.args[7]):
            raise unsupported(node, "transposed convolution is not supported")
        groups = node.args[8]
    else:
        groups = imp.arg(node, 6, "groups", 1)
    attrs = {"stride": _pair(imp.arg(node, 3, "stride", 1)), "padding": _pair(padding),
             "dilation": _pair(imp.arg(node, 5, "dilation", 1)), "groups": int(groups)}
    if len(_pair(imp.arg(node, 3, "stride", 1))) != 2:
        raise unsupported(node, "conv2d stride must be an int or a pair")
    inputs = [x, w] + ([imp.value(bias, node)] if bias is not None else [])
    return imp.emit("Conv2d", inputs, attrs, node)


def _batch_norm(imp, node):
    if node.target == aten.batch_norm.default:
        x, w, b, mean, var, training, _, eps = node.args[:8]
        if training:
            raise unsupported(node, "BatchNorm in training mode; call model.eval()")
    else:  # _native_batch_norm_legit_no_training(x, w, b, mean, var, momentum, eps)
        x, w, b, mean, var, _, eps = node.args[:7]
    xv = imp.value(x, node)
    channels = imp.builder.type_of(xv).shape[1]
    scale = imp.value(w, node) if w is not None else imp.builder.const(
        f"{node.name}_scale", torch.ones(channels), module_scope(node))
    shift = imp.value(b, node) if b is not None else imp.builder.const(
        f"{node.name}_shift", torch.zeros(channels), module_scope(node))
    out = imp.emit("BatchNorm", [xv, scale, shift, imp.value(mean, node), imp.value(var, node)],
                   {"eps": float(eps), "axis": 1}, node)
    return (out, None, None) if node.target != aten.batch_norm.default else out


def _layer_norm(imp, node):
    x, shape = node.args[0], node.args[1]
    w, b = imp.arg(node, 2, "weight"), imp.arg(node, 3, "bias")
    eps = imp.arg(node, 4, "eps", 1e-5)
    if w is None and b is not None:
        raise unsupported(node, "layer_norm with a bias but no weight")
    inputs = [imp.value(x, node)] + [imp.value(t, node) for t in (w, b) if t is not None]
    out = imp.emit("LayerNorm", inputs, {"ndim": len(shape), "eps": float(eps)}, node)
    return (out, None, None) if node.target == aten.native_layer_norm.default else out


def _softmax(op: str) -> Handler:
    def handle(imp, node):
        x = imp.value(node.args[0], node)
        axis = int(node.args[1]) % imp.builder.type_of(x).rank
        return imp.emit(op, [x], {"axis": axis}, node)
    return handle


HANDLERS: dict[Any, Handler] = {
    aten.linear.default: _linear,
    aten.matmul.default: _matmul,
    aten.bmm.default: _matmul,
    aten.mm.default: _matmul,
    aten.addmm.default: _addmm,
    aten.conv2d.default: _conv2d,
    aten.convolution.default: _conv2d,
    aten.batch_norm.default: _batch_norm,
    aten._native_batch_norm_legit_no_training.default: _batch_norm,
    aten.layer_norm.default: _layer_norm,
    aten.native_layer_norm.default: _layer_norm,
    aten.softmax.int: _softmax("Softmax"),
    aten._softmax.default: _softmax("Softmax"),
    aten.log_softmax.int: _softmax("LogSoftmax"),
    aten._log_softmax.default: _softmax("LogSoftmax"),
}
