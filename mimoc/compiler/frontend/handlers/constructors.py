"""Handlers of tensor constructors: ``zeros`` / ``ones`` / ``full`` (and their ``_like`` and
``new_`` forms) become ``Fill`` nodes of possibly symbolic shape, which the passes
propagate; ``eye`` becomes a constant."""

from __future__ import annotations

from typing import Any

import torch

from mimoc.compiler.frontend.diagnostics import module_scope, unsupported
from mimoc.compiler.frontend.state import Handler

aten = torch.ops.aten


def _fill(value: float | None) -> Handler:
    def handle(imp, node):
        val = node.meta["val"]
        if not val.dtype.is_floating_point:
            raise unsupported(node, f"creates a {val.dtype} tensor; use float tensors")
        v = value
        if v is None:  # full / full_like / new_full
            target = node.target
            v = node.args[2] if target == aten.new_full.default else node.args[1]
        return imp.builder.fill(float(v), imp.shape(node), name=node.name,
                                scope=module_scope(node))
    return handle


def _eye(imp, node):
    val = node.meta["val"]
    if not all(isinstance(d, int) for d in val.shape):
        raise unsupported(node, "an identity matrix of dynamic size")
    return imp.builder.const(node.name, torch.eye(*val.shape, dtype=val.dtype),
                             module_scope(node))


HANDLERS: dict[Any, Handler] = {
    aten.zeros.default: _fill(0.0),
    aten.zeros_like.default: _fill(0.0),
    aten.new_zeros.default: _fill(0.0),
    aten.ones.default: _fill(1.0),
    aten.ones_like.default: _fill(1.0),
    aten.new_ones.default: _fill(1.0),
    aten.full.default: _fill(None),
    aten.full_like.default: _fill(None),
    aten.new_full.default: _fill(None),
    aten.eye.default: _eye,
}
