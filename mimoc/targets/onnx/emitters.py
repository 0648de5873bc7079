"""IR op -> ONNX nodes: one table, :data:`EMITTERS`, with one entry per IR op.

Each entry (:class:`OpEmitter`) has a function ``emit(ctx, node, layout) -> value name``
that appends the ONNX nodes computing ``node`` to the :class:`~.context.EmitContext` and
returns the ONNX value holding the result (``None``: no value yet, as for a ``Const``,
stored as an initializer when an emitter first reads it), and the rule that decides the
node's layout before emission (:mod:`.layout`: ``plain``, or ``row_wise`` for ``Linear``,
elementwise ops and ``Concat``, which then run on rows ``[B*S, n]``). Ops that run in
both layouts have one emitter that reads its operands with ``ctx.operand(name, layout)``
and names its result with ``ctx.result(node, layout)``. Quantized layers and input
quantizers go through :mod:`.quantized`. Semantics follow the op schemas in
:mod:`mimoc.compiler.ops` (torch semantics); the non-obvious translations:

- ``Linear(x, W, b)`` -> ``Gemm(x, W, b, transB=1)`` on rows or a 2-D ``x``; otherwise
  ``MatMul(x, W^T) + b`` with ``W^T`` stored transposed at compile time;
- ``Gram(a)`` -> ``MatMul(Transpose(a), a)``; ``Solve(A, B)`` -> ``MatMul(Inverse(A), B)``;
  ``Pinv(a)`` -> ``Inverse(a^T a) a^T`` (tall) or ``a^T Inverse(a a^T)`` (wide): exact for
  full-rank matrices, which channel matrices are with probability one; ``Inverse`` is
  onnxruntime's ``com.microsoft.Inverse`` (docs/design.md section 5);
- symbolic shapes (``Reshape``, ``Expand``, ``Fill``) are computed from the inputs' shapes
  (``Shape`` + arithmetic, once per graph), or a constant shape with one ``-1``;
- ``Const`` weights become initializers when an emitter first reads them (a weight only
  used transposed is stored only transposed);
- ``BatchNorm`` (normally folded by canonicalize) becomes one ``Mul`` and one ``Add`` with
  folded constants.

Example::

    >>> out = EMITTERS["Relu"].emit(ctx, node, Layout.PLAIN)   # appends Relu(x)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from onnx import numpy_helper

from mimoc.compiler.ir import Node
from mimoc.targets.onnx.context import (
    MS_DOMAIN,
    NUMPY_DTYPES,
    EmitContext,
    EmitError,
    value_info,
)
from mimoc.targets.onnx.layout import Layout, LayoutRule, plain, row_wise
from mimoc.targets.onnx.quantized import emit_conv as emit_quantized_conv
from mimoc.targets.onnx.quantized import emit_fake_quant, fake_quant_layout
from mimoc.targets.onnx.quantized import emit_linear as emit_quantized_linear

Emitter = Callable[[EmitContext, Node], str | None]  # an op emitted in its IR layout only
LayoutEmitter = Callable[[EmitContext, Node, Layout], str | None]
INT64_MAX = 2 ** 63 - 1


@dataclass(frozen=True)
class OpEmitter:
    """How one IR op is emitted: ``emit(ctx, node, layout)`` and the rule that picks
    ``layout`` for each node before emission (:mod:`.layout`)."""

    emit: LayoutEmitter
    layout: LayoutRule = plain


def in_ir_layout(emit: Emitter) -> OpEmitter:
    """An op that only runs in its IR layout (the plan gives it ``Layout.PLAIN``)."""
    return OpEmitter(lambda ctx, node, layout: emit(ctx, node))


def by_rows(emit: LayoutEmitter) -> OpEmitter:
    """An op that runs row by row: on rows where the plan says so (:func:`.layout.row_wise`)."""
    return OpEmitter(emit, row_wise)


def _in(ctx: EmitContext, node: Node, i: int = 0) -> str:
    return ctx.value(node.inputs[i])


def _const_tensor(ctx: EmitContext, name: str) -> torch.Tensor:
    return ctx.graph.constants[name]


def _out(ctx: EmitContext, node: Node) -> str:
    """The ONNX name of the node's result: its IR name."""
    return node.name


# ---------------------------------------------------------------- sources

def _input(ctx: EmitContext, node: Node) -> str:
    ctx.inputs.append(value_info(node.name, node))
    return node.name


def _const(ctx: EmitContext, node: Node) -> None:
    return None  # an initializer once an emitter reads it (ctx.value)


def _fill(ctx: EmitContext, node: Node) -> str:
    shape, value = node.attrs["shape"], node.attrs["value"]
    if all(isinstance(d, int) for d in shape):
        return ctx.initializer(node.name, np.full(shape, value,
                                                  dtype=NUMPY_DTYPES[node.type.dtype]))
    fill = np.asarray([value], dtype=NUMPY_DTYPES[node.type.dtype])
    return ctx.node("ConstantOfShape", [ctx.shape(shape)], node=node, output=_out(ctx, node),
                    value=numpy_helper.from_array(fill, "value"))


# ---------------------------------------------------------------- matrix ops

def _linear(ctx: EmitContext, node: Node, layout: Layout) -> str:
    x_name, w_name = node.inputs[:2]
    two_d = layout is Layout.ROWS or len(ctx.graph.node(x_name).shape) == 2
    if two_d:
        quantized = emit_quantized_linear(ctx, node, layout)
        if quantized is not None:  # a quantized weight under a w4 / w4a4 / int8 lowering
            return quantized
    if layout is Layout.ROWS:
        inputs = [ctx.rows(x_name), ctx.value(w_name)] + [ctx.value(b) for b in node.inputs[2:]]
        return ctx.node("Gemm", inputs, node=node, output=ctx.result(node, layout), transB=1)
    # IR layout: the bias is read before the weight (the initializers' order is in the bytes)
    x = ctx.value(x_name)
    bias = _in(ctx, node, 2) if len(node.inputs) > 2 else None
    if two_d:
        inputs = [x, ctx.value(w_name)] + ([bias] if bias else [])
        return ctx.node("Gemm", inputs, node=node, output=_out(ctx, node), transB=1)
    wt = ctx.initializer(f"{w_name}.T", _const_tensor(ctx, w_name).t().contiguous())
    if bias is None:
        return ctx.node("MatMul", [x, wt], node=node, output=_out(ctx, node))
    product = ctx.node("MatMul", [x, wt], node=node)
    return ctx.node("Add", [product, bias], node=node, output=_out(ctx, node))


def _swap_last(rank: int) -> list[int]:
    return list(range(rank - 2)) + [rank - 1, rank - 2]


def _transposed(ctx: EmitContext, node: Node, value: str, rank: int) -> str:
    return ctx.node("Transpose", [value], node=node, perm=_swap_last(rank))


def _gram(ctx: EmitContext, node: Node) -> str:
    a = _in(ctx, node)
    at = _transposed(ctx, node, a, len(node.shape))
    return ctx.node("MatMul", [at, a], node=node, output=_out(ctx, node))


def _inverse(ctx: EmitContext, node: Node) -> str:
    return ctx.node("Inverse", [_in(ctx, node)], node=node, output=_out(ctx, node),
                    domain=MS_DOMAIN)


def _solve(ctx: EmitContext, node: Node) -> str:
    inverse = ctx.node("Inverse", [_in(ctx, node, 0)], node=node, domain=MS_DOMAIN)
    return ctx.node("MatMul", [inverse, _in(ctx, node, 1)], node=node, output=_out(ctx, node))


def _pinv(ctx: EmitContext, node: Node) -> str:
    a = _in(ctx, node)
    rank = len(node.shape)
    m, n = ctx.graph.node(node.inputs[0]).shape[-2:]
    at = _transposed(ctx, node, a, rank)
    if m >= n:  # (a^T a)^-1 a^T
        gram = ctx.node("MatMul", [at, a], node=node)
        inverse = ctx.node("Inverse", [gram], node=node, domain=MS_DOMAIN)
        return ctx.node("MatMul", [inverse, at], node=node, output=_out(ctx, node))
    outer = ctx.node("MatMul", [a, at], node=node)  # a^T (a a^T)^-1
    inverse = ctx.node("Inverse", [outer], node=node, domain=MS_DOMAIN)
    return ctx.node("MatMul", [at, inverse], node=node, output=_out(ctx, node))


def _conv2d(ctx: EmitContext, node: Node) -> str:
    quantized = emit_quantized_conv(ctx, node)
    if quantized is not None:  # int8 with a static 8-bit input: ConvInteger
        return quantized
    (ph, pw) = node.attrs["padding"]
    weight = ctx.graph.node(node.inputs[1]).shape
    inputs = [ctx.value(i) for i in node.inputs]
    return ctx.node("Conv", inputs, node=node, output=_out(ctx, node),
                    kernel_shape=list(weight[2:]), pads=[ph, pw, ph, pw],
                    strides=list(node.attrs["stride"]), dilations=list(node.attrs["dilation"]),
                    group=node.attrs["groups"])


# ---------------------------------------------------------------- normalisation

def _batchnorm(ctx: EmitContext, node: Node) -> str:
    scale, bias, mean, var = (_const_tensor(ctx, i).double() for i in node.inputs[1:])
    inv = scale / torch.sqrt(var + node.attrs["eps"])
    rank = len(node.shape)
    axis = node.attrs["axis"] % rank
    view = [1] * (rank - axis)
    view[0] = -1
    mul = ctx.initializer(f"{node.name}.scale", inv.float().reshape(view))
    add = ctx.initializer(f"{node.name}.shift", (bias - mean * inv).float().reshape(view))
    scaled = ctx.node("Mul", [_in(ctx, node), mul], node=node)
    return ctx.node("Add", [scaled, add], node=node, output=_out(ctx, node))


def _layernorm(ctx: EmitContext, node: Node) -> str:
    k = node.attrs["ndim"]
    normalized = node.shape[-k:]
    if not all(isinstance(d, int) for d in normalized):
        raise EmitError(f"LayerNorm over a symbolic dim ({node.name}) is not supported")
    weight = ctx.value(node.inputs[1]) if len(node.inputs) > 1 else ctx.initializer(
        f"{node.name}.ones", np.ones(normalized, dtype=np.float32))
    inputs = [_in(ctx, node), weight] + ([ctx.value(node.inputs[2])]
                                         if len(node.inputs) > 2 else [])
    return ctx.node("LayerNormalization", inputs, node=node, output=_out(ctx, node), axis=-k,
                    epsilon=float(node.attrs["eps"]))


def _softmax(op_type: str) -> Emitter:
    def emit(ctx: EmitContext, node: Node) -> str:
        return ctx.node(op_type, [_in(ctx, node)], node=node, output=_out(ctx, node),
                        axis=node.attrs["axis"])
    return emit


# ---------------------------------------------------------------- elementwise

def _same_op(op_type: str) -> LayoutEmitter:
    def emit(ctx: EmitContext, node: Node, layout: Layout) -> str:
        inputs = [ctx.operand(i, layout) for i in node.inputs]
        return ctx.node(op_type, inputs, node=node, output=ctx.result(node, layout))
    return emit


def _rsqrt(ctx: EmitContext, node: Node, layout: Layout) -> str:
    root = ctx.node("Sqrt", [ctx.operand(node.inputs[0], layout)], node=node)
    return ctx.node("Reciprocal", [root], node=node, output=ctx.result(node, layout))


def _square(ctx: EmitContext, node: Node, layout: Layout) -> str:
    x = ctx.operand(node.inputs[0], layout)
    return ctx.node("Mul", [x, x], node=node, output=ctx.result(node, layout))


def _gelu(ctx: EmitContext, node: Node, layout: Layout) -> str:
    return ctx.node("Gelu", [ctx.operand(node.inputs[0], layout)], node=node,
                    output=ctx.result(node, layout), approximate=node.attrs["approximate"])


def _clip(ctx: EmitContext, node: Node, layout: Layout) -> str:
    lo, hi = node.attrs["min"], node.attrs["max"]
    dtype = node.type.dtype
    inputs = [ctx.operand(node.inputs[0], layout), "" if lo is None else ctx.scalar(lo, dtype),
              "" if hi is None else ctx.scalar(hi, dtype)]
    while inputs[-1] == "":
        inputs.pop()
    return ctx.node("Clip", inputs, node=node, output=ctx.result(node, layout))


# ---------------------------------------------------------------- layout

def _concat(ctx: EmitContext, node: Node, layout: Layout) -> str:
    axis = 1 if layout is Layout.ROWS else node.attrs["axis"]  # rows: the last axis only
    return ctx.node("Concat", [ctx.operand(i, layout) for i in node.inputs], node=node,
                    output=ctx.result(node, layout), axis=axis)


def _reshape(ctx: EmitContext, node: Node) -> str:
    shape = ctx.shape(node.attrs["shape"], wildcard=True)
    source = ctx.any_layout(node.inputs[0])  # rows or not: the element order is the same
    return ctx.node("Reshape", [source, shape], node=node, output=_out(ctx, node))


def _transpose(ctx: EmitContext, node: Node) -> str:
    return ctx.node("Transpose", [_in(ctx, node)], node=node, output=_out(ctx, node),
                    perm=list(node.attrs["perm"]))


def _slice(ctx: EmitContext, node: Node) -> str:
    a = node.attrs
    end = INT64_MAX if a["end"] is None else a["end"]
    inputs = [_in(ctx, node), ctx.int64([a["start"]], "start"), ctx.int64([end], "end"),
              ctx.int64([a["axis"]], "axes"), ctx.int64([a["step"]], "steps")]
    return ctx.node("Slice", inputs, node=node, output=_out(ctx, node))


def _select(ctx: EmitContext, node: Node) -> str:
    index = ctx.initializer(f"i64.scalar_{node.attrs['index']}".replace("-", "m"),
                            np.asarray(node.attrs["index"], dtype=np.int64))
    return ctx.node("Gather", [_in(ctx, node), index], node=node, output=_out(ctx, node),
                    axis=node.attrs["axis"])


def _unsqueeze(ctx: EmitContext, node: Node) -> str:
    axes = ctx.int64([node.attrs["axis"]], "axes")
    return ctx.node("Unsqueeze", [_in(ctx, node), axes], node=node, output=_out(ctx, node))


def _squeeze(ctx: EmitContext, node: Node) -> str:
    axes = ctx.int64([node.attrs["axis"]], "axes")
    return ctx.node("Squeeze", [_in(ctx, node), axes], node=node, output=_out(ctx, node))


def _expand(ctx: EmitContext, node: Node) -> str:
    source = ctx.graph.node(node.inputs[0]).shape
    target = tuple(node.attrs["shape"])
    padded = (1,) * (len(target) - len(source)) + tuple(source)
    # Expand broadcasts input and shape: a dim the input already has may be given as 1,
    # so only the dims that really grow need their (possibly symbolic) size.
    wanted = [1 if have == want else want for have, want in zip(padded, target, strict=True)]
    return ctx.node("Expand", [_in(ctx, node), ctx.shape(wanted)], node=node,
                    output=_out(ctx, node))


def _tile(ctx: EmitContext, node: Node) -> str:
    reps = tuple(node.attrs["repeats"])
    x = _in(ctx, node)
    rank = len(ctx.graph.node(node.inputs[0]).shape)
    if len(reps) > rank:
        x = ctx.node("Reshape", [x, ctx.shape((1,) * (len(reps) - rank)
                                              + tuple(ctx.graph.node(node.inputs[0]).shape),
                                              wildcard=True)], node=node)
    return ctx.node("Tile", [x, ctx.shape(reps)], node=node, output=_out(ctx, node))


def _reduce(op_type: str) -> Emitter:
    def emit(ctx: EmitContext, node: Node) -> str:
        axes = list(node.attrs["axes"])
        inputs = [_in(ctx, node)] + ([ctx.int64(axes, "axes")] if axes else [])
        return ctx.node(op_type, inputs, node=node, output=_out(ctx, node),
                        keepdims=int(bool(node.attrs["keepdim"])))
    return emit


UNARY = ("Relu", "Tanh", "Sigmoid", "Abs", "Neg", "Sqrt", "Exp", "Log", "Reciprocal", "Sign",
         "Sin", "Cos")
BINARY = {"Add": "Add", "Sub": "Sub", "Mul": "Mul", "Div": "Div", "Pow": "Pow",
          "Maximum": "Max", "Minimum": "Min"}

EMITTERS: dict[str, OpEmitter] = {
    "Input": in_ir_layout(_input),
    "Const": in_ir_layout(_const),
    "FakeQuant": OpEmitter(emit_fake_quant, fake_quant_layout),
    "Fill": in_ir_layout(_fill),
    "Linear": by_rows(_linear),
    "MatMul": OpEmitter(_same_op("MatMul")),  # batched: plain (rows would mix matrices)
    "Gram": in_ir_layout(_gram),
    "Conv2d": in_ir_layout(_conv2d),
    "Inverse": in_ir_layout(_inverse),
    "Solve": in_ir_layout(_solve),
    "Pinv": in_ir_layout(_pinv),
    "BatchNorm": in_ir_layout(_batchnorm),
    "LayerNorm": in_ir_layout(_layernorm),
    "Softmax": in_ir_layout(_softmax("Softmax")),
    "LogSoftmax": in_ir_layout(_softmax("LogSoftmax")),
    **{op: by_rows(_same_op(op)) for op in UNARY},
    "Rsqrt": by_rows(_rsqrt),
    "Square": by_rows(_square),
    "Gelu": by_rows(_gelu),
    "Clip": by_rows(_clip),
    **{op: by_rows(_same_op(onnx_op)) for op, onnx_op in BINARY.items()},
    "Concat": by_rows(_concat),
    "Reshape": in_ir_layout(_reshape),
    "Transpose": in_ir_layout(_transpose),
    "Slice": in_ir_layout(_slice),
    "Select": in_ir_layout(_select),
    "Unsqueeze": in_ir_layout(_unsqueeze),
    "Squeeze": in_ir_layout(_squeeze),
    "Expand": in_ir_layout(_expand),
    "Tile": in_ir_layout(_tile),
    "ReduceSum": in_ir_layout(_reduce("ReduceSum")),
    "ReduceMean": in_ir_layout(_reduce("ReduceMean")),
    "ReduceMax": in_ir_layout(_reduce("ReduceMax")),
}

#: The layout rule of every op, for :func:`.layout.plan_layouts`.
LAYOUT_RULES: dict[str, LayoutRule] = {op: entry.layout for op, entry in EMITTERS.items()}
