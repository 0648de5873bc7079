"""Row layout: per-symbol layers on flattened rows ``[B*S, n]`` (Gemm with the bias fused).

A detector's symbol stage is a chain of dense layers applied to every symbol vector:
values of shape ``[B, S, n]`` (``B`` channel realisations, ``S`` symbols). Emitted as
3-D ``MatMul`` + ``Add``, onnxruntime runs the bias as a separate kernel (it fuses
``MatMul + Add`` into ``Gemm`` only for 2-D operands), and a detector has one bias per
layer. This module emits those layers on the same data seen as rows, ``[B*S, n]``:

- ``Linear(x, W, b)`` -> ``Gemm(x_rows, W, b, transB=1)`` (one kernel; onnxruntime also
  fuses a following ``Relu`` into it);
- elementwise ops (unary, binary with operands of the same leading dims or constants of
  rank <= 1, ``Clip``, ``Gelu``...) and a ``Concat`` along the last axis stay on rows.

A value is converted between layouts only where an op needs the other one (a ``Reshape``,
which onnxruntime runs without copying): at the stage entry (``y``, ``H^T y``), around
ops that mix symbols with per-channel matrices (DetNet's ``x @ H^T H``, a batched
``MatMul``), and at the stage exit (``x_hat``). :class:`~.context.EmitContext` keeps both
forms of a value (``value`` for the IR layout, ``rows`` for the row layout) and emits
the conversion once, on first use.

Example::

    >>> if is_row_node(ctx, node):
    ...     ctx.flat[node.name] = emit_rows(ctx, node)      # [B*S, n] value name
"""

from __future__ import annotations

from collections.abc import Callable

from mimoc.compiler.ir import Node
from mimoc.targets.onnx.context import EmitContext
from mimoc.targets.onnx.quantized import emit_linear as emit_quantized_linear

UNARY = {"Relu": "Relu", "Tanh": "Tanh", "Sigmoid": "Sigmoid", "Abs": "Abs", "Neg": "Neg",
         "Sqrt": "Sqrt", "Exp": "Exp", "Log": "Log", "Reciprocal": "Reciprocal",
         "Sign": "Sign", "Sin": "Sin", "Cos": "Cos"}
BINARY = {"Add": "Add", "Sub": "Sub", "Mul": "Mul", "Div": "Div", "Pow": "Pow",
          "Maximum": "Max", "Minimum": "Min"}
#: Ops that run row by row: Linear, elementwise, Concat along the last axis.
ROW_OPS = {"Linear", "Concat", "Clip", "Gelu", "Rsqrt", "Square", *UNARY, *BINARY}


def row_width(node: Node) -> int | None:
    """``n`` when ``node`` is ``[..., n]`` with rank >= 3 and a static last dim, else None."""
    shape = node.shape
    if len(shape) < 3 or not isinstance(shape[-1], int):
        return None
    return shape[-1]


def _operands(node: Node) -> tuple[str, ...]:
    """The inputs that carry rows (a Linear's weight and bias are parameters)."""
    return node.inputs[:1] if node.op == "Linear" else node.inputs


def is_row_node(ctx: EmitContext, node: Node) -> bool:
    """Whether ``node`` is emitted in row layout.

    A Linear on a rank >= 3 input always is (that is the point: a Gemm with the bias).
    An elementwise op or Concat is when one of its operands is already in row layout (so
    no conversion is added) and every operand either has the node's leading dims or is a
    broadcast scalar / vector (rank <= 1), which broadcasts the same way over rows.
    """
    if node.op not in ROW_OPS or row_width(node) is None:
        return False
    lead = node.shape[:-1]
    for name in _operands(node):
        shape = ctx.graph.node(name).shape
        if len(shape) <= 1 and node.op not in ("Linear", "Concat"):
            continue
        if len(shape) != len(node.shape) or tuple(shape[:-1]) != tuple(lead) \
                or not isinstance(shape[-1], int):
            return False
    if node.op == "Concat":
        rank = len(node.shape)
        if node.attrs["axis"] % rank != rank - 1:
            return False
    if node.op == "Linear":
        return True
    return any(name in ctx.flat for name in _operands(node))


def _operand(ctx: EmitContext, name: str) -> str:
    """Row-layout value of an operand (a scalar / vector operand as it is)."""
    if len(ctx.graph.node(name).shape) <= 1:
        return ctx.value(name)
    return ctx.rows(name)


def _rows_name(ctx: EmitContext, node: Node) -> str:
    return ctx.fresh(f"{node.name}.rows")


def _linear(ctx: EmitContext, node: Node) -> str:
    quantized = emit_quantized_linear(ctx, node, lambda: ctx.rows(node.inputs[0]))
    if quantized is not None:  # a quantized weight under a w4 / w4a4 / int8 lowering
        return quantized
    inputs = [ctx.rows(node.inputs[0]), ctx.value(node.inputs[1])]
    if len(node.inputs) > 2:
        inputs.append(ctx.value(node.inputs[2]))
    return ctx.node("Gemm", inputs, node=node, output=_rows_name(ctx, node), transB=1)


def _concat(ctx: EmitContext, node: Node) -> str:
    return ctx.node("Concat", [ctx.rows(i) for i in node.inputs], node=node,
                    output=_rows_name(ctx, node), axis=1)


def _unary(ctx: EmitContext, node: Node) -> str:
    return ctx.node(UNARY[node.op], [ctx.rows(node.inputs[0])], node=node,
                    output=_rows_name(ctx, node))


def _binary(ctx: EmitContext, node: Node) -> str:
    inputs = [_operand(ctx, name) for name in node.inputs]
    return ctx.node(BINARY[node.op], inputs, node=node, output=_rows_name(ctx, node))


def _clip(ctx: EmitContext, node: Node) -> str:
    lo, hi = node.attrs["min"], node.attrs["max"]
    dtype = node.type.dtype
    inputs = [ctx.rows(node.inputs[0]), "" if lo is None else ctx.scalar(lo, dtype),
              "" if hi is None else ctx.scalar(hi, dtype)]
    while inputs[-1] == "":
        inputs.pop()
    return ctx.node("Clip", inputs, node=node, output=_rows_name(ctx, node))


def _gelu(ctx: EmitContext, node: Node) -> str:
    return ctx.node("Gelu", [ctx.rows(node.inputs[0])], node=node,
                    output=_rows_name(ctx, node), approximate=node.attrs["approximate"])


def _rsqrt(ctx: EmitContext, node: Node) -> str:
    root = ctx.node("Sqrt", [ctx.rows(node.inputs[0])], node=node)
    return ctx.node("Reciprocal", [root], node=node, output=_rows_name(ctx, node))


def _square(ctx: EmitContext, node: Node) -> str:
    x = ctx.rows(node.inputs[0])
    return ctx.node("Mul", [x, x], node=node, output=_rows_name(ctx, node))


RowEmitter = Callable[[EmitContext, Node], str]
ROW_EMITTERS: dict[str, RowEmitter] = {
    "Linear": _linear,
    "Concat": _concat,
    "Clip": _clip,
    "Gelu": _gelu,
    "Rsqrt": _rsqrt,
    "Square": _square,
    **{op: _unary for op in UNARY},
    **{op: _binary for op in BINARY},
}


def emit_rows(ctx: EmitContext, node: Node) -> str:
    """Emit ``node`` in row layout; returns the ``[rows, n]`` value's name."""
    return ROW_EMITTERS[node.op](ctx, node)
