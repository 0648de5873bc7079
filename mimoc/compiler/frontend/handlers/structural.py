"""Handlers of ops that compute nothing in an inference graph: copies and aliases, dropout
in eval mode, same-dtype casts, runtime assertions; and of the shape arithmetic
(``sym_size``, ``*``, ``//``) and tuple unpacking (``getitem``) that torch.export records,
which are evaluated symbolically and add no IR nodes."""

from __future__ import annotations

import operator
from typing import Any

import torch

from mimoc.compiler.frontend.diagnostics import unsupported
from mimoc.compiler.frontend.state import Handler, passthrough

aten = torch.ops.aten


def _dropout(imp, node):
    if imp.arg(node, 2, "train", False):
        raise unsupported(node, "dropout in training mode; call model.eval()")
    return passthrough(imp, node)


def _to_copy(imp, node):
    dtype = node.kwargs.get("dtype")
    src = node.args[0].meta["val"].dtype
    if dtype is not None and dtype != src:
        raise unsupported(node, f"casts {src} to {dtype}; mimoc graphs stay in one "
                                "float dtype")
    return passthrough(imp, node)


def _no_value(imp, node):
    """Runtime assertions torch.export records (dtype/shape checks): nothing to compute."""
    return None


def _sym(imp, node):
    return imp.dim(node)


def _getitem(imp, node):
    source = imp.env[node.args[0]]
    out = source[node.args[1]]
    if out is None:
        raise unsupported(node, "uses an auxiliary output (statistics) of a norm layer")
    return out


HANDLERS: dict[Any, Handler] = {
    # no-ops in an inference graph
    aten.clone.default: passthrough,
    aten.alias.default: passthrough,
    aten.contiguous.default: passthrough,
    aten.detach.default: passthrough,
    aten.detach_.default: passthrough,
    aten.lift_fresh_copy.default: passthrough,
    aten.dropout.default: _dropout,
    aten._to_copy.default: _to_copy,
    aten.to.dtype: _to_copy,
    aten._assert_tensor_metadata.default: _no_value,
    # shape arithmetic (evaluated symbolically, no IR nodes)
    aten.sym_size.int: _sym,
    operator.mul: _sym,
    operator.floordiv: _sym,
    operator.getitem: _getitem,
}
