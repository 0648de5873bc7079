"""What an op schema is: operands, attributes, shape rule, reference semantics, FLOP rule.

The IR's op table (:mod:`.ops`) and the targets' own ops (``CrossbarMVM``) are built from
these types; :func:`fail` is how a shape rule rejects its operands.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from mimoc.compiler.dims import Shape
from mimoc.compiler.ir import Attrs, IRError, TensorType

REQUIRED = object()


@dataclass(frozen=True)
class Operand:
    """``const``: the operand must be const-rate (trained weights); ``variadic``: 1..n."""

    name: str
    const: bool = False
    optional: bool = False
    variadic: bool = False


@dataclass(frozen=True)
class Attr:
    name: str
    kinds: tuple[type, ...]
    default: Any = REQUIRED

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


ShapeRule = Callable[[Sequence[TensorType], Attrs], Shape]
Executor = Callable[[Sequence[torch.Tensor], Attrs, Mapping[str, int]], torch.Tensor]
FlopRule = Callable[[Sequence[tuple[int, ...]], Attrs, tuple[int, ...]], int]


def _no_flops(shapes: Sequence[tuple[int, ...]], attrs: Attrs, out: tuple[int, ...]) -> int:
    return 0


@dataclass(frozen=True)
class OpSchema:
    name: str
    doc: str
    operands: tuple[Operand, ...]
    shape: ShapeRule
    execute: Executor
    attrs: tuple[Attr, ...] = ()
    flops: FlopRule = _no_flops
    result_dtype: str | None = None  # None: the widest operand dtype
    source: bool = False  # Input/Const/Fill: no operands, type given by the node

    @property
    def operand_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.operands)

    def arity(self) -> tuple[int, int | None]:
        """(min, max) operand count; max ``None`` for variadic."""
        lo = sum(1 for o in self.operands if not o.optional and not o.variadic)
        lo += sum(1 for o in self.operands if o.variadic)
        hi = None if any(o.variadic for o in self.operands) else len(self.operands)
        return lo, hi

    def operand(self, index: int) -> Operand:
        if index < len(self.operands):
            return self.operands[index]
        return self.operands[-1]  # variadic tail

    def with_defaults(self, attrs: Mapping[str, Any]) -> Attrs:
        values = {a.name: a.default for a in self.attrs if not a.required}
        values.update(attrs)
        return Attrs(values)


def fail(message: str) -> None:
    raise IRError(message)

