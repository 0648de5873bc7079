"""Handlers of linear-algebra ATen ops (inverse, solve, pseudo-inverse) and of reductions
over axes (sum, mean, max)."""

from __future__ import annotations

from typing import Any

import torch

from mimoc.compiler.frontend.diagnostics import unsupported
from mimoc.compiler.frontend.state import Handler

aten = torch.ops.aten


def _inverse(imp, node):
    return imp.emit("Inverse", [imp.value(node.args[0], node)], None, node)


def _solve(imp, node):
    if not imp.arg(node, 2, "left", True):
        raise unsupported(node, "linalg.solve(left=False)")
    a, b = imp.value(node.args[0], node), imp.value(node.args[1], node)
    if imp.builder.type_of(b).rank == 1 or (imp.builder.type_of(b).rank
                                            == imp.builder.type_of(a).rank - 1):
        raise unsupported(node, "linalg.solve with a vector right-hand side; "
                                "give B as a matrix [..., n, k]")
    return imp.emit("Solve", [a, b], None, node)


def _pinv(imp, node):
    tolerances = [a for a in node.args[1:3] if a is not None]
    if tolerances or node.kwargs.get("hermitian") or (len(node.args) > 3 and node.args[3]):
        raise unsupported(node, "pinv with explicit tolerances or hermitian=True")
    return imp.emit("Pinv", [imp.value(node.args[0], node)], None, node)


def _reduce(op: str) -> Handler:
    def handle(imp, node):
        x = imp.value(node.args[0], node)
        rank = imp.builder.type_of(x).rank
        dims = imp.arg(node, 1, "dim", None)
        if node.target in (aten.sum.default, aten.mean.default):
            dims = None
        keepdim = bool(imp.arg(node, 2, "keepdim", False))
        axes = tuple(sorted(int(d) % rank for d in dims)) if dims else ()
        if imp.arg(node, 3, "dtype", None) not in (None, node.meta["val"].dtype):
            raise unsupported(node, "reductions with a dtype cast")
        return imp.emit(op, [x], {"axes": axes, "keepdim": keepdim}, node)
    return handle


HANDLERS: dict[Any, Handler] = {
    aten.linalg_inv.default: _inverse,
    aten.inverse.default: _inverse,
    aten.linalg_solve.default: _solve,
    aten.linalg_pinv.atol_rtol_tensor: _pinv,
    aten.sum.dim_IntList: _reduce("ReduceSum"),
    aten.sum.default: _reduce("ReduceSum"),
    aten.mean.dim: _reduce("ReduceMean"),
    aten.mean.default: _reduce("ReduceMean"),
    aten.amax.default: _reduce("ReduceMax"),
}
