"""The handler table: ATen op -> handler, one handler per op family.

Each family module declares its own ``HANDLERS`` table; :data:`HANDLERS` is their union,
assembled here and nowhere else (no registration as a side effect of importing). A
target appears in exactly one family (a test checks it). To support a new ATen op, add
its handler to the family it belongs to.
"""

from __future__ import annotations

from typing import Any

import torch

from mimoc.compiler.frontend.diagnostics import op_name
from mimoc.compiler.frontend.handlers import (
    constructors,
    elementwise,
    layers,
    linalg,
    shape,
    structural,
)
from mimoc.compiler.frontend.state import Handler

#: family name -> its table
FAMILIES: dict[str, dict[Any, Handler]] = {
    "layers": layers.HANDLERS,
    "linalg": linalg.HANDLERS,
    "elementwise": elementwise.HANDLERS,
    "shape": shape.HANDLERS,
    "constructors": constructors.HANDLERS,
    "structural": structural.HANDLERS,
}

HANDLERS: dict[Any, Handler] = {
    target: handler for table in FAMILIES.values() for target, handler in table.items()}


def supported_ops() -> list[str]:
    """The ATen op families the frontend translates (for error messages and docs)."""
    overloads = [t for t in HANDLERS if isinstance(t, torch._ops.OpOverload)]
    return sorted({op_name(t).rsplit(".", 1)[0] for t in overloads})
