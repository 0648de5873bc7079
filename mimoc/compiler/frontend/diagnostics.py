"""The frontend's errors and where they point: the user's source line and module.

An op the frontend cannot translate is reported as :class:`UnsupportedOpError` naming the
ATen op, the innermost user frame of its stack trace (``file:line (code)``) and the module
path it came from, so the user can find the line to change.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import fx

from mimoc.errors import MimocError


class UnsupportedOpError(MimocError):
    """The model uses an operation the compiler cannot translate."""


class FrontendError(MimocError):
    """The model cannot be traced (export failed, wrong interface)."""


def source_location(node: fx.Node) -> str:
    """``file:line (code)`` of the innermost user frame in the node's stack trace."""
    trace = node.meta.get("stack_trace") or ""
    lines = trace.strip().splitlines()
    torch_dir = os.path.dirname(torch.__file__)
    best = ""
    for i, line in enumerate(lines):
        line = line.strip()
        if line.startswith("File ") and torch_dir not in line:
            parts = line.split('"')
            if len(parts) >= 3:
                lineno = line.split("line ")[-1].split(",")[0]
                code = lines[i + 1].strip() if i + 1 < len(lines) else ""
                best = f"{parts[1]}:{lineno}" + (f" ({code})" if code else "")
    return best or "unknown location"


def module_scope(node: fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    paths = [v[0] for v in stack.values() if isinstance(v, tuple) and v and v[0]]
    return paths[-1] if paths else ""


def op_name(target: Any) -> str:
    if isinstance(target, torch._ops.OpOverload):
        return f"aten.{target._schema.name.split('::')[-1]}.{target._overloadname}"
    return getattr(target, "__name__", str(target))


def unsupported(node: fx.Node, why: str) -> UnsupportedOpError:
    """The error for ``node``: its op, its source line and module, and ``why``."""
    scope = module_scope(node)
    where = source_location(node) + (f" in module {scope}" if scope else "")
    return UnsupportedOpError(f"{op_name(node.target)} at {where}: {why}")
