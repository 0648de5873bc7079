"""The IR's quantization op, ``FakeQuant``, and the arithmetic that defines it.

``FakeQuant`` quantizes an activation on a symmetric (``signed``: ``-(2^(b-1)-1) ..
2^(b-1)-1``) or unsigned (``0 .. 2^b-1``) integer grid of ``bits`` bits::

    step = alpha * sqrt(mean(x^2) + EPS)  over the last `feature_dims` dims   (dynamic)
    step = alpha                                                             (static)
    x_q  = clamp(round(x / step), lo, hi) * step

The IR owns this definition so that the op table does not depend on the quantization
package; :mod:`mimoc.quant.spec` (the recipe contract the torch quantizers follow)
computes the same rounding with the same torch calls, and a test pins the two bit for bit.
"""

from __future__ import annotations

import torch

from mimoc.compiler import dims as D
from mimoc.compiler.ops_schema import Attr, Operand, OpSchema, fail

EPS = 1e-12  # inside the RMS: an all-zero input gets a tiny, finite step


def _int_range(bits: int, signed: bool) -> tuple[int, int]:
    if signed:
        return -(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1
    return 0, 2 ** bits - 1


def fake_quant(x: torch.Tensor, bits: int, signed: bool, mode: str, alpha: float,
               feature_dims: int = 1) -> torch.Tensor:
    """``FakeQuant`` of ``x`` (see the module docstring)."""
    lo, hi = _int_range(bits, signed)
    if mode == "static":
        step = torch.as_tensor(alpha, dtype=x.dtype)
    else:
        dims = tuple(range(-feature_dims, 0))
        step = alpha * torch.sqrt(x.square().mean(dim=dims, keepdim=True) + EPS)
    return torch.clamp(torch.round(x / step), lo, hi) * step


def _fake_quant_exec(args, attrs, sizes):
    return fake_quant(args[0], attrs["bits"], attrs["signed"], attrs["mode"],
                      float(attrs["alpha"]), attrs["feature_dims"])


def _fake_quant_shape(types, attrs):
    x = types[0].shape
    if attrs["mode"] not in ("dynamic", "static") or not 2 <= attrs["bits"] <= 8:
        fail(f"FakeQuant: mode {attrs['mode']!r} / bits {attrs['bits']} (dynamic|static, 2..8)")
    if not 1 <= attrs["feature_dims"] <= len(x):
        fail(f"FakeQuant: {attrs['feature_dims']} feature dims for {D.fmt_shape(x)}")
    return x


FAKE_QUANT = OpSchema(
    "FakeQuant", "activation fake quantization x_q = clamp(round(x / step), lo, hi) * "
    "step, step = alpha * RMS(x) over the last `feature_dims` dims (dynamic) or alpha "
    "(static)", (Operand("x"),), _fake_quant_shape, _fake_quant_exec,
    (Attr("bits", (int,)), Attr("signed", (bool,), True), Attr("mode", (str,)),
     Attr("alpha", (float, int)), Attr("feature_dims", (int,), 1)))
