"""Quantized lowerings of the ONNX target: ``w4``, ``w4a4``, ``int8``, ``w4-int8``
(docs/design.md section 5).

The quantize pass (:mod:`mimoc.compiler.passes.quantize`) leaves, per quantized layer, a
weight ``Const`` ``W_q = q * s`` (``TensorType.quant``: bits, per-output-channel steps
``s``) and a ``FakeQuant`` node on the layer's input. A lowering decides what onnxruntime
runs for them:

=========  ==========================================  =====================================
lowering   quantized ``Linear``                        ``FakeQuant`` (the layer's input)
=========  ==========================================  =====================================
``w4``     ``com.microsoft.MatMulNBits`` (bits 4,      not emitted: the kernel quantizes its
           ``accuracy_level=4``)                       input to int8 per block itself (fast,
                                                       *not* bit-faithful to A4)
``w4a4``   ``MatMulNBits`` (``accuracy_level=0``:      emulated in-graph: ``step = alpha *
           fp32 arithmetic on the 4-bit weights)       sqrt(mean(x^2) + eps)`` (or ``alpha``),
                                                       ``Mul(Clip(Round(Div(x, step))), step)``
``int8``   8-bit input: ``QuantizeLinear`` (uint8) +   static 8-bit: the ``QuantizeLinear``;
           ``com.microsoft.MatMulIntegerToFloat``;     otherwise emulated as for ``w4a4``
           else ``DynamicQuantizeMatMul``; int8 codes
``w4-int8`` 4-bit codes in int8 containers (``-7..7``):    the recipe's quantizer computes the
           ``com.microsoft.MatMulIntegerToFloat``      codes in-graph (exact, as ``w4a4``)
           (u8 x s8, int32 sums), scaled per row by    and hands them to the kernel as
           the input step (dynamic inputs)             ``uint8`` (code + zero point)
=========  ==========================================  =====================================

``w4-int8`` runs KAQ's 4-bit levels through onnxruntime's int8 GEMMs (VNNI on x86, SDOT on
Arm), which are faster than MatMulNBits' 4-bit kernels at a detector's sizes (issue 20:
DetNet 32x64 int8 1101 us vs w4 2862 us); it is faithful to the recipe (integer sums of
the codes, exact) and keeps int8 weight bytes (``w4`` stays for the smallest artifact).
Its small codes cannot saturate the u8s8 kernels' 16-bit sums without VNNI (``2 * 255 *
7 < 2^15``), so it needs no session config.

MatMulNBits packing: codes ``q`` in ``-7..7`` (any ``b <= 4``) are stored as unsigned 4-bit
``q + 8`` with the default zero point 8 (no zero-point tensor), two per byte (low nibble
first) along ``K``, in blocks of ``block_size`` (16/32/64/128, chosen per layer for the
fewest bytes, ties to the larger block); the per-channel step is repeated per block; a
``K`` that is not a multiple of the block is padded with code 8 (weight 0), or, by default
(``Lowering.k_split``), cut into two power-of-two pieces where padding wastes > 10%
(smaller, slower).
The kernel's dequantized weight ``(u - 8) * s`` is exactly the IR's ``W_q``.

``Conv2d`` layers (SDNet): ``int8`` with a static 8-bit input runs ``ConvInteger`` (uint8
input and weight codes, int32 sums, exact) and rescales per output channel by
``x_step * s_w[o]``; ``QLinearConv`` is not used because it needs an output scale the
recipe does not have. ``w4`` / ``w4a4`` convolutions stay fp32 ``Conv`` holding the
quantized values ``W_q`` (onnxruntime has no 4-bit convolution); their ``FakeQuant`` inputs
are emulated (``w4a4``) or dropped (``w4``). The manifest lists what each layer got
(``layers`` of :func:`.emit.emit_model`).

int8 notes: ``QuantizeLinear`` to uint8 with zero point 128 (signed, after a ``Clip`` to
``+-127 step``: spec's narrow grid) or 0 (unsigned) holds spec's codes exactly. On x86
without VNNI the u8s8 kernels saturate their 16-bit intermediate sums (measured: a tiny
DetNet's int8 outputs off by half their range, 1.4% of hard decisions flipped); the
manifest asks the runtime for ``session.x64quantprecision = 1`` (U8U8 kernels,
:data:`INT8_SESSION_CONFIG`), which :mod:`mimoc.runtime.onnx_runner` applies there.

Example::

    >>> ctx = EmitContext(graph, lowering="w4")
    >>> out = emit_linear(ctx, node, Layout.ROWS)   # MatMulNBits on rows (None: not quantized)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx
import torch

from mimoc.compiler.ir import Node, Quant
from mimoc.compiler.passes.quantize import codes as weight_codes
from mimoc.targets.onnx.context import LOWERINGS, MS_DOMAIN, EmitContext, Lowering
from mimoc.targets.onnx.layout import Layout, LayoutPlan

BLOCK_SIZES = (16, 32, 64, 128)
INT8_SESSION_CONFIG = {"session.x64quantprecision": "1"}
EPS = 1e-12  # mimoc.quant.spec.EPS


def weight_quant(ctx: EmitContext, name: str) -> Quant | None:
    node = ctx.graph.node(name)
    return node.type.quant if node.op == "Const" else None


def block_size(k: int) -> int:
    """The block with the fewest bytes per row (``ceil(K/b) * (b/2 + 4)``); ties: larger."""
    return min(BLOCK_SIZES, key=lambda b: (math.ceil(k / b) * (b // 2 + 4), -b))


def _row_bytes(k: int, block: int) -> int:
    return math.ceil(k / block) * (block // 2 + 4)


def k_segments(k: int, split: bool = True) -> list[tuple[int, int, int]]:
    """How a layer's ``K`` inputs are cut for MatMulNBits: ``[(start, size, block)]``.

    One segment with the cheapest block (:func:`block_size`) unless ``split`` (the
    lowering's ``k_split``, on by default: :class:`~.context.Lowering` says why) and cutting
    ``K`` into power-of-two pieces saves at least 10% of the bytes and needs only two
    pieces: e.g.
    DetNet 8x16's ``fc1``, K = 80: one kernel costs 60 bytes per row (5 blocks of 16, or 3
    of 32 with 16 padded codes), the pieces 64 + 16 (blocks 64 and 16) 36 + 12 = 48. The
    partial products are summed (one ``Add``; the input is cut with ``Slice``).
    """
    single = [(0, k, block_size(k))]
    if not split:
        return single
    pieces, start = [], 0
    if k >= 128:
        size = (k // 128) * 128
        pieces.append((0, size, 128))
        start = size
    rest = k - start
    for size in (64, 32, 16):
        if rest >= size:
            pieces.append((start, size, size))
            start, rest = start + size, rest - size
    if rest:  # fewer than 16 left: the last piece takes them, padded to its block
        s0, size, block = pieces[-1] if pieces else (0, 0, 16)
        pieces[-1:] = [(s0, size + rest, block)]
    cost = sum(_row_bytes(size, block) for _, size, block in pieces)
    if len(pieces) == 2 and cost <= 0.9 * _row_bytes(k, single[0][2]):
        return pieces
    return single


def pack_4bit(q: torch.Tensor, scale: torch.Tensor, block: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """Codes ``q [N, K]`` (``-8 < q < 8``) and steps ``scale [N]`` -> MatMulNBits ``B``
    ``uint8 [N, ceil(K/block), block/2]`` and ``scales float32 [N, ceil(K/block)]``."""
    n, k = q.shape
    blocks = math.ceil(k / block)
    u = np.full((n, blocks * block), 8, dtype=np.uint8)
    u[:, :k] = (q + 8).numpy().astype(np.uint8)
    u = u.reshape(n, blocks, block)
    packed = (u[..., 0::2] | (u[..., 1::2] << 4)).astype(np.uint8)
    scales = np.repeat(scale.numpy().astype(np.float32)[:, None], blocks, axis=1)
    return np.ascontiguousarray(packed), np.ascontiguousarray(scales)


def _record(ctx: EmitContext, node: Node, **entry: Any) -> None:
    layer = ctx.layer_lowerings.setdefault(node.scope or node.name, {})
    layer.update(entry)
    source = ctx.graph.node(node.inputs[0])
    if source.op == "FakeQuant" and "input" not in layer:  # shared by cse with another layer
        shared = ctx.layer_lowerings.get(source.scope or source.name, {}).get("input")
        if shared:
            layer["input"] = shared


def _scale(quant: Quant) -> torch.Tensor:
    return torch.tensor(quant.scale, dtype=torch.float32)


def emit_linear(ctx: EmitContext, node: Node, layout: Layout) -> str | None:
    """A quantized ``Linear`` on a 2-D input (rows, or a 2-D value in the IR layout);
    ``None``: not quantized here (the caller emits fp32)."""
    quant = weight_quant(ctx, node.inputs[1])
    if quant is None or ctx.lowering == "fp32":
        return None
    out = ctx.result(node, layout)

    def rows() -> str:  # emitted only where a kernel reads the fp32 input
        return ctx.operand(node.inputs[0], layout)

    w = ctx.graph.constants[node.inputs[1]]
    q = weight_codes(w, quant)
    n, k = w.shape
    bias = [ctx.value(node.inputs[2])] if len(node.inputs) > 2 else []
    base = node.inputs[1]
    if ctx.lowering in ("w4", "w4a4") and quant.bits <= 4:
        level = ctx.lowering.matmul_accuracy
        segments = k_segments(k, ctx.lowering.k_split)
        x = rows()
        partials = []
        for i, (start, size, block) in enumerate(segments):
            packed, scales = pack_4bit(q[:, start:start + size], _scale(quant), block)
            suffix = "" if len(segments) == 1 else f".k{start}"
            part = x if len(segments) == 1 else ctx.node(
                "Slice", [x, ctx.int64([start], "starts"), ctx.int64([start + size], "ends"),
                          ctx.int64([1], "axes")], node=node)
            inputs = [part, ctx.initializer(f"{base}{suffix}.nbits", packed),
                      ctx.initializer(f"{base}{suffix}.nbits_scales", scales)]
            if bias and i == 0:
                inputs += ["", "", bias[0]]
            partials.append(ctx.node("MatMulNBits", inputs, node=node,
                                     output=out if len(segments) == 1 else None,
                                     domain=MS_DOMAIN, K=size, N=n, bits=4, block_size=block,
                                     accuracy_level=level))
        blocks = " + ".join(f"K {size} block {block}" for _, size, block in segments)
        _record(ctx, node, weights=f"MatMulNBits 4-bit, {blocks}", accuracy_level=level, K=k,
                N=n, op="Linear")
        if ctx.lowering == "w4":
            ctx.layer_lowerings[node.scope or node.name].setdefault(
                "input", "int8 per block inside MatMulNBits (the recipe's input quantizer is "
                "not applied: not bit-faithful)")
        if len(partials) == 1:
            return partials[0]
        total = partials[0]
        for i, part in enumerate(partials[1:]):
            total = ctx.node("Add", [total, part], node=node,
                             output=out if i == len(partials) - 2 else None)
        return total
    if ctx.lowering == "int8" and quant.bits <= 8:
        wq = ctx.initializer(f"{base}.int8_T", q.t().contiguous().numpy().astype(np.int8))
        ws = ctx.initializer(f"{base}.int8_scale", _scale(quant).numpy())
        wz = ctx.initializer(f"{base}.int8_zero", np.zeros(n, dtype=np.int8))
        source = ctx.int8_inputs.get(node.inputs[0])
        if source is not None:  # QuantizeLinear(x) of a static 8-bit FakeQuant
            xq, xs, xz = source
            _record(ctx, node, weights="int8 per channel", kernel="MatMulIntegerToFloat",
                    op="Linear")
            return ctx.node("MatMulIntegerToFloat", [xq, wq, xs, ws, xz, wz, *bias], node=node,
                            output=out, domain=MS_DOMAIN)
        _record(ctx, node, weights="int8 per channel", kernel="DynamicQuantizeMatMul "
                "(input quantized to uint8 at run time)", op="Linear")
        return ctx.node("DynamicQuantizeMatMul", [rows(), wq, ws, wz, *bias], node=node,
                        output=out, domain=MS_DOMAIN)
    if ctx.lowering == "w4-int8" and quant.bits <= 8:
        return _linear_int8_codes(ctx, node, q, _scale(quant), bias, out, rows)
    _record(ctx, node, weights=f"fp32 ({quant.bits}-bit values; the {ctx.lowering} lowering "
            "has no kernel for this width)", op="Linear")
    return None


def _linear_int8_codes(ctx: EmitContext, node: Node, q: torch.Tensor, scale: torch.Tensor,
                       bias: list[str], out: str, rows) -> str:
    """``w4-int8``: ``MatMulIntegerToFloat`` of the input codes (uint8) and the weight codes
    (int8 containers): exact int32 sums scaled by ``step * s``; a dynamic (per-row) step
    multiplies after the kernel, whose ``a_scale`` is per tensor."""
    base = node.inputs[1]
    wq = ctx.initializer(f"{base}.int8_T", q.t().contiguous().numpy().astype(np.int8))
    ws = ctx.initializer(f"{base}.int8_scale", scale.numpy())
    source = ctx.int8_inputs.get(node.inputs[0])
    if source is None:  # no input quantizer: the kernel quantizes the input to uint8 itself
        _record(ctx, node, weights="4-bit codes in int8", kernel="DynamicQuantizeMatMul "
                "(input quantized to uint8 at run time)", op="Linear")
        return ctx.node("DynamicQuantizeMatMul", [rows(), wq, ws, "", *bias], node=node,
                        output=out, domain=MS_DOMAIN)
    xq, step, zero = source
    per_row = ctx.graph.node(node.inputs[0]).attrs["mode"] != "static"
    _record(ctx, node, weights="4-bit codes in int8", op="Linear", kernel=(
        "MatMulIntegerToFloat (u8 x s8, int32 sums)" + (" x per-row step" if per_row else "")))
    if not per_row:
        return ctx.node("MatMulIntegerToFloat", [xq, wq, step, ws, zero, "", *bias],
                        node=node, output=out, domain=MS_DOMAIN)
    sums = ctx.node("MatMulIntegerToFloat", [xq, wq, ctx.scalar(1.0), ws, zero], node=node,
                    domain=MS_DOMAIN)
    scaled = ctx.node("Mul", [sums, step], node=node, output=None if bias else out)
    return ctx.node("Add", [scaled, bias[0]], node=node, output=out) if bias else scaled


def emit_conv(ctx: EmitContext, node: Node) -> str | None:
    """A quantized ``Conv2d``: ``int8`` with a static 8-bit input as ``ConvInteger`` (uint8
    codes, int32 sums) rescaled per channel; otherwise ``None`` (the caller emits an fp32
    ``Conv`` holding the quantized values) and the manifest says so."""
    quant = weight_quant(ctx, node.inputs[1])
    if quant is None or ctx.lowering == "fp32":
        return None
    source = ctx.int8_inputs.get(node.inputs[0])
    if ctx.lowering != "int8" or quant.bits > 8 or source is None:
        _record(ctx, node, op="Conv2d", weights=f"fp32 Conv holding the {quant.bits}-bit "
                "values (onnxruntime has no 4-bit convolution; QLinearConv needs an output "
                "scale the recipe does not have)")
        return None
    xq, x_step, x_zero = source
    w = ctx.graph.constants[node.inputs[1]]
    base = node.inputs[1]
    # uint8 codes + 128: onnxruntime's ConvInteger takes one zero point per tensor and its
    # uint8 x int8 path is several times slower than uint8 x uint8 (measured, 8x8x3x3)
    codes = (weight_codes(w, quant) + 128).numpy().astype(np.uint8)
    wq = ctx.initializer(f"{base}.u8", codes)
    wz = ctx.initializer("u8.zero128", np.asarray(128, dtype=np.uint8))
    (ph, pw) = node.attrs["padding"]
    acc = ctx.node("ConvInteger", [xq, wq, x_zero, wz], node=node,
                   kernel_shape=list(w.shape[2:]), pads=[ph, pw, ph, pw],
                   strides=list(node.attrs["stride"]), dilations=list(node.attrs["dilation"]),
                   group=node.attrs["groups"])
    real = ctx.node("Cast", [acc], node=node, to=onnx.TensorProto.FLOAT)
    alpha = ctx.graph.node(node.inputs[0]).attrs["alpha"]
    rescale = ctx.initializer(f"{base}.u8_rescale",
                              (_scale(quant).double() * float(alpha)).float().reshape(
                                  1, -1, 1, 1).numpy())
    bias = len(node.inputs) > 2
    out = ctx.node("Mul", [real, rescale], node=node, output=None if bias else node.name)
    if bias:
        shift = ctx.initializer(f"{node.inputs[2]}.nchw",
                                ctx.graph.constants[node.inputs[2]].float().reshape(
                                    1, -1, 1, 1).numpy())
        out = ctx.node("Add", [out, shift], node=node, output=node.name)
    _record(ctx, node, op="Conv2d", weights="int8 per channel (uint8 codes + 128)",
            kernel="ConvInteger (int32 sums) + per-channel rescale")
    return out


def _emulate(ctx: EmitContext, node: Node, x: str, axes: list[int]) -> str:
    """``Mul(Clip(Round(Div(x, step)), lo, hi), step)`` with the step of the node."""
    from mimoc.quant.spec import int_range

    a = node.attrs
    lo, hi = int_range(a["bits"], a["signed"])
    step = _step(ctx, node, x, axes)
    codes = ctx.node("Round", [ctx.node("Div", [x, step], node=node)], node=node)
    clipped = ctx.node("Clip", [codes, ctx.scalar(float(lo)), ctx.scalar(float(hi))], node=node)
    return ctx.node("Mul", [clipped, step], node=node, output=ctx.fresh(f"{node.name}.q"))


def fake_quant_layout(plan: LayoutPlan, node: Node) -> Layout:
    """An input quantizer over the last axis (a Linear's input) runs on rows; where it is
    not emitted (``fp32``, ``w4``: the value passes through) it keeps its source's layout."""
    if node.attrs["feature_dims"] != 1 or len(node.shape) < 2:
        return Layout.PLAIN
    if plan.lowering in ("fp32", "w4") and not plan.has_rows(node.inputs[0]):
        return Layout.PLAIN
    return Layout.ROWS


def emit_fake_quant(ctx: EmitContext, node: Node, layout: Layout) -> str | None:
    """``FakeQuant`` per the lowering; ``None`` when only integer kernels read it (int8:
    they take the ``QuantizeLinear`` codes from ``ctx.int8_inputs``)."""
    a = node.attrs
    source = node.inputs[0]
    scope = node.scope or node.name
    act = f"{a['bits']}-bit {a['mode']}"
    if ctx.lowering in ("fp32", "w4"):
        # w4: the MatMulNBits kernel quantizes its input (int8 per block) itself
        passed = ctx.operand(source, layout)
        if ctx.lowering == "w4":
            conv = a["feature_dims"] > 1
            ctx.layer_lowerings.setdefault(scope, {})["input"] = (
                f"fp32 (recipe: {act}; not emulated)" if conv else
                f"int8 per block inside MatMulNBits (recipe: {act}; not bit-faithful)")
        return passed
    rows = layout is Layout.ROWS
    x = ctx.operand(source, layout)
    axes = [-1] if rows else list(range(-a["feature_dims"], 0))
    readers = ctx.users.get(node.name, [])
    kernel_op = "Linear" if rows else "Conv2d"  # the integer kernels that read codes

    def integer_reader(r: Node) -> bool:
        return r.op == kernel_op and r.inputs[0] == node.name and \
            weight_quant(ctx, r.inputs[1]) is not None
    if ctx.lowering == "int8" and a["mode"] == "static" and a["bits"] == 8 and (
            rows or any(integer_reader(r) for r in readers)):
        scale = ctx.scalar(float(a["alpha"]))
        zero = ctx.initializer(f"u8.zero{128 if a['signed'] else 0}",
                               np.asarray(128 if a["signed"] else 0, dtype=np.uint8))
        if a["signed"]:  # spec's narrow grid: clamp at -127 steps (uint8 would give -128)
            limit = 127 * float(a["alpha"])
            x = ctx.node("Clip", [x, ctx.scalar(-limit), ctx.scalar(limit)], node=node)
        xq = ctx.node("QuantizeLinear", [x, scale, zero], node=node)
        ctx.int8_inputs[node.name] = (xq, scale, zero)
        real = None
        if node.name in ctx.graph.outputs or not all(integer_reader(r) for r in readers):
            real = ctx.node("DequantizeLinear", [xq, scale, zero], node=node,
                            output=ctx.result(node, layout))
        ctx.layer_lowerings.setdefault(scope, {})["input"] = (
            "QuantizeLinear uint8 (static 8-bit step, exact)")
        return real
    if ctx.lowering == "w4-int8" and rows and a["bits"] <= 8:
        return _integer_codes(ctx, node, x, layout, readers, integer_reader)
    out = _emulate(ctx, node, x, axes)
    ctx.layer_lowerings.setdefault(scope, {})["input"] = f"{act}, emulated in-graph (faithful)"
    return out


def _integer_codes(ctx: EmitContext, node: Node, x: str, layout: Layout, readers: list,
                   integer_reader) -> str | None:
    """``w4-int8``: the quantizer's codes as ``uint8`` (code + zero point) for the integer
    kernels (``ctx.int8_inputs``: codes, step, zero point); the real values only where
    another reader needs them."""
    from mimoc.quant.spec import int_range

    a = node.attrs
    lo, hi = int_range(a["bits"], a["signed"])
    zero_point = -lo if a["signed"] else 0  # unsigned codes start at 0
    step = _step(ctx, node, x, [-1])
    codes = ctx.node("Clip", [ctx.node("Round", [ctx.node("Div", [x, step], node=node)],
                                       node=node),
                              ctx.scalar(float(lo)), ctx.scalar(float(hi))], node=node)
    shifted = ctx.node("Add", [codes, ctx.scalar(float(zero_point))], node=node) \
        if zero_point else codes
    xq = ctx.node("Cast", [shifted], node=node, to=onnx.TensorProto.UINT8)
    zero = ctx.initializer(f"u8.zero{zero_point}", np.asarray(zero_point, dtype=np.uint8))
    ctx.int8_inputs[node.name] = (xq, step, zero)
    ctx.layer_lowerings.setdefault(node.scope or node.name, {})["input"] = (
        f"{a['bits']}-bit {a['mode']} codes in-graph, uint8 + {zero_point} (exact)")
    if node.name in ctx.graph.outputs or not all(integer_reader(r) for r in readers):
        return ctx.node("Mul", [codes, step], node=node, output=ctx.result(node, layout))
    return None


def _step(ctx: EmitContext, node: Node, x: str, axes: list[int]) -> str:
    """The quantizer's step: ``alpha`` (static) or ``alpha * sqrt(mean(x^2) + eps)``."""
    a = node.attrs
    if a["mode"] == "static":
        return ctx.scalar(float(a["alpha"]))
    square = ctx.node("Mul", [x, x], node=node)
    mean = ctx.node("ReduceMean", [square, ctx.int64(axes, "axes")], node=node, keepdims=1)
    root = ctx.node("Sqrt", [ctx.node("Add", [mean, ctx.scalar(EPS)], node=node)], node=node)
    return ctx.node("Mul", [root, ctx.scalar(float(a["alpha"]))], node=node)


def session_config(lowering: str) -> dict[str, str]:
    """onnxruntime session config entries the artifact asks for (see the module docstring)."""
    return dict(INT8_SESSION_CONFIG) if lowering == "int8" else {}


__all__ = ["BLOCK_SIZES", "INT8_SESSION_CONFIG", "LOWERINGS", "Lowering", "block_size",
           "emit_conv", "emit_fake_quant", "emit_linear", "fake_quant_layout", "k_segments",
           "pack_4bit", "session_config", "weight_quant"]
