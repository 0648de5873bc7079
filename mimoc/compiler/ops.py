"""Op schemas, as data: operands, attributes, shape rule, reference semantics, FLOP rule.

Every IR op is one :class:`OpSchema` in :data:`OPS`. The verifier, the type inference
(:func:`infer_type`), the interpreter, the FLOP counter and the docs all read these
schemas; adding an op is adding one entry (see docs/compiler.md). Targets add their own
ops (``CrossbarMVM``, ``Quantize``) with :func:`register` from their own module. The
schema types live in :mod:`.ops_schema` (re-exported here); ``FakeQuant`` and its
arithmetic in :mod:`.ops_quant`.

Semantics follow torch (broadcasting, ``matmul`` batching, NCHW convolution). Shapes may
hold symbolic dims (:mod:`.dims`). FLOPs follow docs/design.md: 2 x multiply-accumulates of the
matrix ops; biases, activations, normalisations and other elementwise work count 0. The
linear-algebra ops use standard dense estimates (documented per op).

Example::

    >>> OPS["Linear"].operand_names
    ('x', 'W', 'b')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from math import prod
from typing import Any

import torch
import torch.nn.functional as F

from mimoc.compiler import dims as D
from mimoc.compiler.dims import Dim, Shape
from mimoc.compiler.ir import Attrs, IRError, Rate, TensorType
from mimoc.compiler.ops_quant import FAKE_QUANT
from mimoc.compiler.ops_schema import REQUIRED as REQUIRED  # the schema types, re-exported
from mimoc.compiler.ops_schema import Attr, Operand, OpSchema, fail
from mimoc.compiler.ops_schema import Executor as Executor
from mimoc.compiler.ops_schema import FlopRule as FlopRule
from mimoc.compiler.ops_schema import ShapeRule as ShapeRule


def _axis(axis: int, rank: int, op: str) -> int:
    if not -rank <= axis < max(rank, 1):
        fail(f"{op}: axis {axis} out of range for rank {rank}")
    return axis % rank if rank else 0


# ---------------------------------------------------------------- shape rules

def _same(types, attrs):
    return types[0].shape


def _broadcast(types, attrs):
    shape: Shape = ()
    for t in types:
        out = D.broadcast(shape, t.shape)
        if out is None:
            fail(f"shapes {', '.join(D.fmt_shape(t.shape) for t in types)} do not broadcast")
        shape = out
    return shape


def _linear_shape(types, attrs):
    x, w = types[0].shape, types[1].shape
    if len(w) != 2 or not x or x[-1] != w[1]:
        fail(f"Linear: input {D.fmt_shape(x)} does not match weight {D.fmt_shape(w)}")
    if len(types) > 2 and types[2].shape != (w[0],):
        fail(f"Linear: bias {D.fmt_shape(types[2].shape)} does not match {w[0]} outputs")
    return x[:-1] + (w[0],)


def _matmul_shape(types, attrs):
    a, b = types[0].shape, types[1].shape
    if len(a) < 2 or len(b) < 2 or a[-1] != b[-2]:
        fail(f"MatMul: {D.fmt_shape(a)} @ {D.fmt_shape(b)} do not match")
    batch = D.broadcast(a[:-2], b[:-2])
    if batch is None:
        fail(f"MatMul: batch dims of {D.fmt_shape(a)} and {D.fmt_shape(b)} do not broadcast")
    return batch + (a[-2], b[-1])


def _gram_shape(types, attrs):
    a = types[0].shape
    if len(a) < 2:
        fail(f"Gram: needs a matrix, got {D.fmt_shape(a)}")
    return a[:-2] + (a[-1], a[-1])


def _conv_out(size: Dim, k: int, stride: int, pad: int, dil: int) -> int:
    if not isinstance(size, int):
        fail("Conv2d: spatial dims must be static")
    return (size + 2 * pad - dil * (k - 1) - 1) // stride + 1


def _conv_shape(types, attrs):
    x, w = types[0].shape, types[1].shape
    g = attrs["groups"]
    if len(x) != 4 or len(w) != 4 or x[1] != w[1] * g:
        fail(f"Conv2d: input {D.fmt_shape(x)} does not match weight {D.fmt_shape(w)}, groups={g}")
    if len(types) > 2 and types[2].shape != (w[0],):
        fail(f"Conv2d: bias {D.fmt_shape(types[2].shape)} does not match {w[0]} channels")
    (sh, sw), (ph, pw), (dh, dw) = attrs["stride"], attrs["padding"], attrs["dilation"]
    return (x[0], w[0], _conv_out(x[2], w[2], sh, ph, dh), _conv_out(x[3], w[3], sw, pw, dw))


def _batchnorm_shape(types, attrs):
    x = types[0].shape
    axis = _axis(attrs["axis"], len(x), "BatchNorm")
    for t in types[1:]:
        if t.shape != (x[axis],):
            fail(f"BatchNorm: parameter {D.fmt_shape(t.shape)} does not match {x[axis]} channels")
    return x


def _layernorm_shape(types, attrs):
    x, k = types[0].shape, attrs["ndim"]
    if not 1 <= k <= len(x):
        fail(f"LayerNorm: cannot normalise {k} trailing dims of {D.fmt_shape(x)}")
    for t in types[1:]:
        if t.shape != x[-k:]:
            fail(f"LayerNorm: parameter {D.fmt_shape(t.shape)} does not match "
                 f"{D.fmt_shape(x[-k:])}")
    return x


def _axis_checked(types, attrs):
    _axis(attrs["axis"], types[0].rank, "axis")
    return types[0].shape


def _concat_shape(types, attrs):
    first = types[0].shape
    axis = _axis(attrs["axis"], len(first), "Concat")
    total: Dim = 0
    for t in types:
        s = t.shape
        if len(s) != len(first) or any(s[i] != first[i] for i in range(len(s)) if i != axis):
            fail(f"Concat: {D.fmt_shape(s)} does not match {D.fmt_shape(first)} off axis {axis}")
        if not isinstance(s[axis], int) or not isinstance(total, int):
            fail("Concat: the concatenation axis must be static")
        total += s[axis]
    return first[:axis] + (total,) + first[axis + 1:]


def _reshape_shape(types, attrs):
    x, shape = types[0].shape, tuple(attrs["shape"])
    if D.numel(x) != D.numel(shape):
        fail(f"Reshape: {D.fmt_shape(x)} has a different size than {D.fmt_shape(shape)}")
    return shape


def _transpose_shape(types, attrs):
    x, perm = types[0].shape, tuple(attrs["perm"])
    if sorted(perm) != list(range(len(x))):
        fail(f"Transpose: perm {perm} is not a permutation of rank {len(x)}")
    return tuple(x[p] for p in perm)


def _slice_range(size: Dim, start: int, end: int | None, step: int) -> Dim:
    """Length of ``x[start:end:step]``; ``end None`` is the end of the axis."""
    if step < 1:
        fail("Slice: step must be positive")
    if end is None and start == 0 and step == 1:
        return size
    if not isinstance(size, int):
        fail("Slice: a partial slice needs a static axis")
    return len(range(size)[start:end:step])


def _slice_shape(types, attrs):
    x = types[0].shape
    axis = _axis(attrs["axis"], len(x), "Slice")
    n = _slice_range(x[axis], attrs["start"], attrs["end"], attrs["step"])
    return x[:axis] + (n,) + x[axis + 1:]


def _select_shape(types, attrs):
    x = types[0].shape
    axis = _axis(attrs["axis"], len(x), "Select")
    if not isinstance(x[axis], int) or not -x[axis] <= attrs["index"] < x[axis]:
        fail(f"Select: index {attrs['index']} out of range for {D.fmt_shape(x)} axis {axis}")
    return x[:axis] + x[axis + 1:]


def _unsqueeze_shape(types, attrs):
    x = types[0].shape
    axis = _axis(attrs["axis"], len(x) + 1, "Unsqueeze")
    return x[:axis] + (1,) + x[axis:]


def _squeeze_shape(types, attrs):
    x = types[0].shape
    axis = _axis(attrs["axis"], len(x), "Squeeze")
    if x[axis] != 1:
        fail(f"Squeeze: axis {axis} of {D.fmt_shape(x)} is not 1")
    return x[:axis] + x[axis + 1:]


def _expand_shape(types, attrs):
    x, shape = types[0].shape, tuple(attrs["shape"])
    if len(shape) < len(x) or D.broadcast(x, shape) != shape:
        fail(f"Expand: {D.fmt_shape(x)} does not expand to {D.fmt_shape(shape)}")
    return shape


def _tile_shape(types, attrs):
    x, reps = types[0].shape, tuple(attrs["repeats"])
    if len(reps) < len(x):
        fail(f"Tile: {len(reps)} repeats for rank {len(x)}")
    x = (1,) * (len(reps) - len(x)) + x
    return tuple(D.mul(d, r) for d, r in zip(x, reps, strict=True))


def _reduce_shape(types, attrs):
    x = types[0].shape
    axes = {_axis(a, len(x), "Reduce") for a in attrs["axes"]} if attrs["axes"] else set(
        range(len(x)))
    if attrs["keepdim"]:
        return tuple(1 if i in axes else d for i, d in enumerate(x))
    return tuple(d for i, d in enumerate(x) if i not in axes)


def _square_matrix(op):
    def rule(types, attrs):
        a = types[0].shape
        if len(a) < 2 or a[-1] != a[-2] or not isinstance(a[-1], int):
            fail(f"{op}: needs static square matrices, got {D.fmt_shape(a)}")
        return a
    return rule


def _solve_shape(types, attrs):
    a, b = types[0].shape, types[1].shape
    _square_matrix("Solve")(types[:1], attrs)
    if len(b) < 2 or b[-2] != a[-1]:
        fail(f"Solve: right-hand side {D.fmt_shape(b)} does not match {D.fmt_shape(a)}")
    batch = D.broadcast(a[:-2], b[:-2])
    if batch is None:
        fail(f"Solve: batch dims of {D.fmt_shape(a)} and {D.fmt_shape(b)} do not broadcast")
    return batch + b[-2:]


def _pinv_shape(types, attrs):
    a = types[0].shape
    if len(a) < 2 or not D.is_static(a[-2:]):
        fail(f"Pinv: needs static matrices, got {D.fmt_shape(a)}")
    return a[:-2] + (a[-1], a[-2])


# ---------------------------------------------------------------- FLOP rules
# FLOP rules see concrete shapes (symbolic dims already evaluated by the counter).

def _linear_flops(shapes, attrs, out):
    return 2 * prod(shapes[0]) * shapes[1][0]


def _matmul_flops(shapes, attrs, out):
    return 2 * prod(out) * shapes[0][-1]


def _gram_flops(shapes, attrs, out):
    return 2 * prod(out) * shapes[0][-2]


def _conv_flops(shapes, attrs, out):
    w = shapes[1]
    return 2 * prod(out) * w[1] * w[2] * w[3]


def _inverse_flops(shapes, attrs, out):
    return prod(out[:-2]) * 2 * out[-1] ** 3  # LU, then n triangular solve pairs


def _solve_flops(shapes, attrs, out):
    n, k = shapes[0][-1], out[-1]
    return prod(out[:-2]) * ((2 * n ** 3) // 3 + 2 * n * n * k)  # LU + forward/back solves


def _pinv_flops(shapes, attrs, out):
    m, n = shapes[0][-2], shapes[0][-1]
    r = min(m, n)
    return prod(out[:-2]) * (4 * m * n * r + 2 * r ** 3)  # normal-equations estimate


# ---------------------------------------------------------------- executors

def _ew(fn):
    return lambda args, attrs, sizes: fn(*args)


def _shape_of(attrs_shape, sizes):
    return D.evaluate_shape(attrs_shape, sizes)


def _conv_exec(args, attrs, sizes):
    x, w = args[0], args[1]
    b = args[2] if len(args) > 2 else None
    return F.conv2d(x, w, b, attrs["stride"], attrs["padding"], attrs["dilation"],
                    attrs["groups"])


def _batchnorm_exec(args, attrs, sizes):
    x, scale, bias, mean, var = args
    axis = attrs["axis"] % x.dim()
    view = [1] * x.dim()
    view[axis] = -1
    inv = scale / torch.sqrt(var + attrs["eps"])
    return (x - mean.reshape(view)) * inv.reshape(view) + bias.reshape(view)


def _layernorm_exec(args, attrs, sizes):
    x = args[0]
    k = attrs["ndim"]
    w = args[1] if len(args) > 1 else None
    b = args[2] if len(args) > 2 else None
    return F.layer_norm(x, x.shape[-k:], w, b, attrs["eps"])


def _slice_exec(args, attrs, sizes):
    x = args[0]
    index = [slice(None)] * x.dim()
    index[attrs["axis"]] = slice(attrs["start"], attrs["end"], attrs["step"])
    return x[tuple(index)]


def _reduce_exec(fn):
    def run(args, attrs, sizes):
        x = args[0]
        axes = tuple(attrs["axes"]) or tuple(range(x.dim()))
        return fn(x, dim=axes, keepdim=attrs["keepdim"])
    return run


def _reduce_max(x, dim, keepdim):
    return torch.amax(x, dim=dim, keepdim=keepdim)


def _source_exec(args, attrs, sizes):  # pragma: no cover - the interpreter binds sources
    raise IRError("source ops are bound by the interpreter, not executed")


def _fill_exec(args, attrs, sizes):
    return torch.full(_shape_of(attrs["shape"], sizes), attrs["value"], dtype=torch.float32)


# ---------------------------------------------------------------- the table

_INT = (int,)
_FLOAT = (float, int)
_TUPLE = (tuple,)
_OPT_INT = (int, type(None))
X = (Operand("x"),)
AB = (Operand("a"), Operand("b"))


def _unary(name, fn, doc):
    return OpSchema(name, doc, X, _same, _ew(fn))


def _binary(name, fn, doc):
    return OpSchema(name, doc, AB, _broadcast, _ew(fn))


_REDUCE_ATTRS = (Attr("axes", _TUPLE, ()), Attr("keepdim", (bool,), False))

_SCHEMAS: list[OpSchema] = [
    # sources
    OpSchema("Input", "graph input (H: slot rate, y: symbol rate)", (), _same, _source_exec,
             source=True),
    OpSchema("Const", "compile-time tensor, stored in Graph.constants[name]", (), _same,
             _source_exec, source=True),
    OpSchema("Fill", "tensor of `shape` filled with `value` (zeros, ones, full)", (), _same,
             _fill_exec, (Attr("value", _FLOAT), Attr("shape", _TUPLE)), source=True),
    # matrix ops
    OpSchema("Linear", "y = x W^T + b, W [out, in] const", (
        Operand("x"), Operand("W", const=True), Operand("b", const=True, optional=True)),
        _linear_shape, lambda a, at, s: F.linear(*a), flops=_linear_flops),
    OpSchema("MatMul", "a @ b with torch.matmul batching; both operands values (e.g. y @ H)",
             AB, _matmul_shape, _ew(torch.matmul), flops=_matmul_flops),
    OpSchema("Gram", "a^T a over the last two dims ([.., m, n] -> [.., n, n]), e.g. H^T H",
             (Operand("a"),), _gram_shape,
             _ew(lambda a: a.transpose(-1, -2) @ a), flops=_gram_flops),
    OpSchema("Conv2d", "NCHW convolution, W [O, C/groups, kh, kw] const", (
        Operand("x"), Operand("W", const=True), Operand("b", const=True, optional=True)),
        _conv_shape, _conv_exec, (
            Attr("stride", _TUPLE, (1, 1)), Attr("padding", _TUPLE, (0, 0)),
            Attr("dilation", _TUPLE, (1, 1)), Attr("groups", _INT, 1)), flops=_conv_flops),
    OpSchema("Inverse", "batched matrix inverse (estimate 2n^3 FLOPs)", (Operand("a"),),
             _square_matrix("Inverse"), _ew(torch.linalg.inv), flops=_inverse_flops),
    OpSchema("Solve", "A^-1 B for square A (estimate 2n^3/3 + 2n^2k FLOPs)",
             (Operand("A"), Operand("B")), _solve_shape, _ew(torch.linalg.solve),
             flops=_solve_flops),
    OpSchema("Pinv", "Moore-Penrose pseudo-inverse (estimate 4mnr + 2r^3 FLOPs)",
             (Operand("a"),), _pinv_shape, _ew(torch.linalg.pinv), flops=_pinv_flops),
    # normalisation
    OpSchema("BatchNorm", "(x - mean) / sqrt(var + eps) * scale + bias along `axis`", (
        Operand("x"), Operand("scale", const=True), Operand("bias", const=True),
        Operand("mean", const=True), Operand("var", const=True)),
        _batchnorm_shape, _batchnorm_exec, (Attr("eps", _FLOAT), Attr("axis", _INT, 1))),
    OpSchema("LayerNorm", "normalise the `ndim` trailing dims, then * weight + bias", (
        Operand("x"), Operand("weight", const=True, optional=True),
        Operand("bias", const=True, optional=True)),
        _layernorm_shape, _layernorm_exec, (Attr("ndim", _INT, 1), Attr("eps", _FLOAT, 1e-5))),
    OpSchema("Softmax", "softmax along `axis`", X, _axis_checked,
             lambda a, at, s: torch.softmax(a[0], at["axis"]), (Attr("axis", _INT),)),
    OpSchema("LogSoftmax", "log-softmax along `axis`", X, _axis_checked,
             lambda a, at, s: torch.log_softmax(a[0], at["axis"]), (Attr("axis", _INT),)),
    # elementwise
    _unary("Relu", torch.relu, "max(x, 0)"),
    _unary("Tanh", torch.tanh, "tanh(x)"),
    _unary("Sigmoid", torch.sigmoid, "1 / (1 + exp(-x))"),
    _unary("Abs", torch.abs, "|x|"),
    _unary("Neg", torch.neg, "-x"),
    _unary("Sqrt", torch.sqrt, "sqrt(x)"),
    _unary("Rsqrt", torch.rsqrt, "1 / sqrt(x)"),
    _unary("Square", torch.square, "x^2"),
    _unary("Exp", torch.exp, "exp(x)"),
    _unary("Log", torch.log, "log(x)"),
    _unary("Reciprocal", torch.reciprocal, "1 / x"),
    _unary("Sign", torch.sign, "sign(x)"),
    _unary("Sin", torch.sin, "sin(x)"),
    _unary("Cos", torch.cos, "cos(x)"),
    OpSchema("Gelu", "Gaussian error linear unit (`approximate`: none or tanh)", X, _same,
             lambda a, at, s: F.gelu(a[0], approximate=at["approximate"]),
             (Attr("approximate", (str,), "none"),)),
    OpSchema("Clip", "min(max(x, min), max); hardtanh, clamp", X, _same,
             lambda a, at, s: torch.clamp(a[0], at["min"], at["max"]),
             (Attr("min", (float, int, type(None)), None),
              Attr("max", (float, int, type(None)), None))),
    # quantization (:mod:`.ops_quant`)
    FAKE_QUANT,
    _binary("Add", torch.add, "a + b (broadcasting)"),
    _binary("Sub", torch.sub, "a - b"),
    _binary("Mul", torch.mul, "a * b"),
    _binary("Div", torch.div, "a / b"),
    _binary("Pow", torch.pow, "a ** b"),
    _binary("Maximum", torch.maximum, "max(a, b)"),
    _binary("Minimum", torch.minimum, "min(a, b)"),
    # layout
    OpSchema("Concat", "concatenate along `axis`", (Operand("x", variadic=True),),
             _concat_shape, lambda a, at, s: torch.cat(list(a), at["axis"]),
             (Attr("axis", _INT),)),
    OpSchema("Reshape", "view as `shape` (symbolic dims allowed)", X, _reshape_shape,
             lambda a, at, s: a[0].reshape(_shape_of(at["shape"], s)), (Attr("shape", _TUPLE),)),
    OpSchema("Transpose", "permute dims by `perm`", X, _transpose_shape,
             lambda a, at, s: a[0].permute(at["perm"]), (Attr("perm", _TUPLE),)),
    OpSchema("Slice", "x[start:end:step] along `axis` (end None: to the end)", X, _slice_shape,
             _slice_exec, (Attr("axis", _INT), Attr("start", _INT, 0), Attr("end", _OPT_INT, None),
                           Attr("step", _INT, 1))),
    OpSchema("Select", "x[index] along `axis` (drops the axis)", X, _select_shape,
             lambda a, at, s: a[0].select(at["axis"], at["index"]),
             (Attr("axis", _INT), Attr("index", _INT))),
    OpSchema("Unsqueeze", "insert a dim of size 1 at `axis`", X, _unsqueeze_shape,
             lambda a, at, s: a[0].unsqueeze(at["axis"]), (Attr("axis", _INT),)),
    OpSchema("Squeeze", "drop the size-1 dim `axis`", X, _squeeze_shape,
             lambda a, at, s: a[0].squeeze(at["axis"]), (Attr("axis", _INT),)),
    OpSchema("Expand", "broadcast to `shape`", X, _expand_shape,
             lambda a, at, s: a[0].expand(_shape_of(at["shape"], s)), (Attr("shape", _TUPLE),)),
    OpSchema("Tile", "repeat `repeats` times per dim (torch.Tensor.repeat)", X, _tile_shape,
             lambda a, at, s: a[0].repeat(at["repeats"]), (Attr("repeats", _TUPLE),)),
    # reductions
    OpSchema("ReduceSum", "sum over `axes` (empty: all)", X, _reduce_shape,
             _reduce_exec(torch.sum), _REDUCE_ATTRS),
    OpSchema("ReduceMean", "mean over `axes` (empty: all)", X, _reduce_shape,
             _reduce_exec(torch.mean), _REDUCE_ATTRS),
    OpSchema("ReduceMax", "max over `axes` (empty: all)", X, _reduce_shape,
             _reduce_exec(_reduce_max), _REDUCE_ATTRS),
]

OPS: dict[str, OpSchema] = {s.name: s for s in _SCHEMAS}
ELEMENTWISE_UNARY = frozenset(
    s.name for s in _SCHEMAS if s.operands == X and s.shape is _same and not s.attrs)
ELEMENTWISE_BINARY = frozenset(s.name for s in _SCHEMAS if s.operands == AB
                               and s.shape is _broadcast)


def register(schema: OpSchema) -> OpSchema:
    """Add a target-level op (e.g. ``CrossbarMVM``); names must be new."""
    if schema.name in OPS:
        raise IRError(f"op {schema.name!r} is already defined")
    OPS[schema.name] = schema
    return schema


def schema(op: str) -> OpSchema:
    try:
        return OPS[op]
    except KeyError:
        raise IRError(f"unknown op {op!r}; known ops: {', '.join(sorted(OPS))}") from None


def _dtype(types: Sequence[TensorType]) -> str:
    names = [t.dtype for t in types]
    return "f64" if "f64" in names else (names[0] if names else "f32")


def check_attrs(s: OpSchema, attrs: Mapping[str, Any]) -> None:
    known = {a.name: a for a in s.attrs}
    unknown = sorted(set(attrs) - set(known))
    if unknown:
        fail(f"{s.name}: unknown attribute(s) {', '.join(unknown)}")
    for a in s.attrs:
        if a.name not in attrs:
            if a.required:
                fail(f"{s.name}: missing attribute {a.name!r}")
            continue
        value = attrs[a.name]
        if not isinstance(value, a.kinds) or (isinstance(value, bool) and bool not in a.kinds
                                                and a.kinds in (_INT, _FLOAT)):
            fail(f"{s.name}: attribute {a.name}={value!r} has the wrong type")


def infer_type(op: str, operand_types: Sequence[TensorType], attrs: Attrs) -> TensorType:
    """Type of ``op(operands, attrs)``: shape rule, widest dtype, highest operand rate."""
    s = schema(op)
    if s.source:
        fail(f"{op} is a source op; its type is given, not inferred")
    lo, hi = s.arity()
    if len(operand_types) < lo or (hi is not None and len(operand_types) > hi):
        most = hi if hi is not None else "n"
        fail(f"{op}: takes {lo}..{most} operands, got {len(operand_types)}")
    check_attrs(s, attrs)
    for i, t in enumerate(operand_types):
        if s.operand(i).const and t.rate != Rate.CONST:
            fail(f"{op}: operand {s.operand(i).name!r} must be const, got a {t.rate} value")
    shape = s.shape(operand_types, attrs)
    rate = max((t.rate for t in operand_types), default=Rate.CONST)
    return TensorType(tuple(shape), s.result_dtype or _dtype(operand_types), rate)


def flops(op: str, operand_shapes: Sequence[tuple[int, ...]], attrs: Attrs,
          out: tuple[int, ...]) -> int:
    """FLOPs of one op instance at concrete shapes (2 x MACs, docs/design.md)."""
    return int(schema(op).flops(operand_shapes, attrs, out))


def static_size(shape: Shape) -> int:
    return prod(d for d in shape if isinstance(d, int))
