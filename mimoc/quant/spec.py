"""The quantization recipe: what every quantized layer does, as plain data.

This module is the contract between the quantizers (:mod:`mimoc.quant`, which *choose*
the scales by KAQ / LSQ / min-max / int8 calibration or training) and the compiler
(``quantize`` pass, ONNX lowerings ``w4`` / ``w4a4`` / ``int8``, which *apply* them). Both
sides call the reference functions below, and the IR's ``FakeQuant`` op
(:mod:`mimoc.compiler.ops_quant`) repeats :func:`fake_quant_act`'s arithmetic call for call
(a test pins the two bit for bit), so the PyTorch model, the IR interpreter and the
compiled ONNX round the same way.

A quantized layer is an ``nn.Linear`` or ``nn.Conv2d`` of a zoo detector, keyed by its
module path (``"blocks.3.fc1"``), which is also the ``scope`` of its IR nodes. Per layer:

- weights ``W`` (``[out, in]`` or ``[out, in, kh, kw]``): symmetric, narrow-range,
  per output channel::

      q = clamp(round(W / s_w[o]), -(2^(b-1) - 1), 2^(b-1) - 1),   W_q = q * s_w[o]

  (``b = 4``: integers -7..7, so ``MatMulNBits``' unsigned 4-bit with zero point 8 holds
  them exactly);
- the layer's input activation ``x`` (optional)::

      step = alpha * RMS(x)  over the feature dims     (mode "dynamic", KAQ)
      step = alpha                                      (mode "static", LSQ / min-max / int8)
      x_q  = clamp(round(x / step), lo, hi) * step

  with ``lo, hi = -(2^(b-1) - 1), 2^(b-1) - 1`` when ``signed`` and ``0, 2^b - 1``
  otherwise; the feature dims are the last dim for ``Linear`` and ``(C, H, W)`` for
  ``Conv2d``; ``RMS(x) = sqrt(mean(x^2) + EPS)``. The dynamic step follows the current
  signal (and so the channel and the SNR) at run time and is computed in-graph.

``round`` is round-half-to-even in both torch and ONNX. Biases stay fp32.

Difference coding (optional, per ``Linear``; ``difference = (t, r, n)``): the layer
computes ``W x`` as ``W' x'`` with::

    x'[t:t+n] = x[t:t+n] - x[r:r+n]   (other features unchanged)
    W'[:, r:r+n] = W[:, r:r+n] + W[:, t:t+n]

(exact in real arithmetic), and it is ``x'`` and ``W'`` that are quantized as above. DetNet's
block input ``[H^T y, x, H^T H x, v]`` holds two large, nearly cancelling terms whose
difference is the gradient step; one 4-bit grid over both loses the small difference
(about 1 dB at SER 1e-3). Coded as ``[H^T y - H^T H x, x, H^T H x, v]`` the difference gets
the grid, and the error on ``H^T H x`` is multiplied by ``W_a + W_c``, which training makes
small (``W_a ~ -W_c``). Detectors name their coded inputs with
``quant_input_differences()`` (:class:`mimoc.detectors.base.DetectorModule`).

Checkpoint form (``save_quantized`` / ``load_quantized``): a mimoc detector checkpoint
(:mod:`mimoc.detectors.checkpoint`) whose dict has one more key,
``"quantization": QuantRecipe.to_dict()``; tensors are plain CPU tensors, so
``torch.load(weights_only=True)`` still reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from mimoc.errors import ModelFileError

RECIPE_VERSION = 1
METHODS = ("kaq", "kaq-ptq", "lsq", "minmax", "int8")
ACT_MODES = ("dynamic", "static")
LAMBDA_SCHEDULES = ("constant", "cosine")  # of the MMD weight during kaq (mimoc.quant.qat)
EPS = 1e-12  # inside the RMS: an all-zero input gets a tiny, finite step


def int_range(bits: int, signed: bool = True) -> tuple[int, int]:
    """The integer grid of a symmetric narrow-range (signed) or unsigned ``bits``-bit code."""
    if signed:
        return -(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1
    return 0, 2 ** bits - 1


@dataclass(frozen=True)
class ActQuant:
    """Quantizer of a layer's input: ``bits``, ``mode`` dynamic|static, ``alpha``, ``signed``."""

    bits: int
    mode: str
    alpha: float
    signed: bool = True


@dataclass(frozen=True)
class LayerQuant:
    """Weight bits and per-output-channel steps ``weight_scale [out]`` (of ``W'`` when
    ``difference`` is set); the input quantizer; the difference coding ``(t, r, n)``."""

    weight_bits: int
    weight_scale: torch.Tensor
    act: ActQuant | None = None
    difference: tuple[int, int, int] | None = None


@dataclass(frozen=True)
class QuantRecipe:
    """Method, default bits and the per-layer quantizers (module path -> LayerQuant)."""

    method: str
    bits: int
    layers: dict[str, LayerQuant] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)  # training / calibration report

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": RECIPE_VERSION, "method": self.method, "bits": self.bits,
            "info": dict(self.info),
            "layers": {name: {"weight_bits": lq.weight_bits,
                              "weight_scale": lq.weight_scale.detach().float().cpu().clone(),
                              "act": None if lq.act is None else {
                                  "bits": lq.act.bits, "mode": lq.act.mode,
                                  "alpha": float(lq.act.alpha), "signed": lq.act.signed},
                              "difference": None if lq.difference is None
                              else list(lq.difference)}
                       for name, lq in self.layers.items()},
        }

    @classmethod
    def from_dict(cls, data: Any) -> QuantRecipe:
        """Validate plain data from a checkpoint; ModelFileError (one line) when malformed."""
        def bad(what: str) -> ModelFileError:
            return ModelFileError(f"the checkpoint's quantization section is malformed ({what}); "
                                  "quantize the model again with 'mimoc quantize'")

        if not isinstance(data, dict) or data.get("version") != RECIPE_VERSION:
            raise bad(f"expected version {RECIPE_VERSION}")
        if data.get("method") not in METHODS:
            raise bad(f"unknown method {data.get('method')!r}")
        bits = data.get("bits")
        if not isinstance(bits, int) or not 2 <= bits <= 8:
            raise bad(f"bits {bits!r} not in 2..8")
        layers = {}
        for name, entry in (data.get("layers") or {}).items():
            try:
                scale = entry["weight_scale"]
                wbits = entry["weight_bits"]
                if not (isinstance(scale, torch.Tensor) and scale.dim() == 1
                        and torch.isfinite(scale).all() and (scale > 0).all()):
                    raise bad(f"layer {name}: weight_scale must be a positive 1-D tensor")
                if not isinstance(wbits, int) or not 2 <= wbits <= 8:
                    raise bad(f"layer {name}: weight_bits {wbits!r} not in 2..8")
                act = entry.get("act")
                if act is not None:
                    if act["mode"] not in ACT_MODES or not 2 <= int(act["bits"]) <= 8 \
                            or not float(act["alpha"]) > 0:
                        raise bad(f"layer {name}: bad activation quantizer {act!r}")
                    act = ActQuant(int(act["bits"]), act["mode"], float(act["alpha"]),
                                   bool(act.get("signed", True)))
                difference = entry.get("difference")
                if difference is not None:
                    difference = tuple(int(v) for v in difference)
                    if not valid_difference(difference):
                        raise bad(f"layer {name}: bad difference coding {difference!r}")
            except (KeyError, TypeError, ValueError):
                raise bad(f"layer {name}") from None
            layers[str(name)] = LayerQuant(wbits, scale.float(), act, difference)
        return cls(data["method"], bits, layers, dict(data.get("info") or {}))


def valid_difference(difference: tuple[int, ...], features: int | None = None) -> bool:
    """``(t, r, n)`` with ``n >= 1``, disjoint ranges, inside ``features`` when given."""
    if len(difference) != 3:
        return False
    t, r, n = difference
    end = max(t, r) + n
    return (min(t, r) >= 0 and n >= 1 and (t + n <= r or r + n <= t)
            and (features is None or end <= features))


def difference_input(x: torch.Tensor, difference: tuple[int, int, int] | None) -> torch.Tensor:
    """``x'``: ``x`` with features ``t:t+n`` replaced by ``x[t:t+n] - x[r:r+n]``."""
    if difference is None:
        return x
    t, r, n = difference
    coded = x[..., t:t + n] - x[..., r:r + n]
    return torch.cat([x[..., :t], coded, x[..., t + n:]], dim=-1)


def difference_weight(weight: torch.Tensor, difference: tuple[int, int, int] | None
                      ) -> torch.Tensor:
    """``W'``: ``W`` with columns ``r:r+n`` increased by columns ``t:t+n`` (``W' x' = W x``)."""
    if difference is None:
        return weight
    t, r, n = difference
    shift = torch.zeros_like(weight)
    shift[:, r:r + n] = weight[:, t:t + n]
    return weight + shift


def fake_quant_weight(weight: torch.Tensor, scale: torch.Tensor, bits: int) -> torch.Tensor:
    """``W_q = clamp(round(W / s), -(2^(b-1)-1), 2^(b-1)-1) * s``, ``s [out]`` per output
    channel."""
    lo, hi = int_range(bits, True)
    s = scale.reshape((-1,) + (1,) * (weight.dim() - 1)).to(weight.dtype)
    return torch.clamp(torch.round(weight / s), lo, hi) * s


def act_step(x: torch.Tensor, act: ActQuant, feature_dims: int = 1) -> torch.Tensor:
    """The step of ``act`` on ``x``: ``alpha * RMS(x)`` over the last ``feature_dims`` dims
    (dynamic, keepdim) or the constant ``alpha`` (static)."""
    if act.mode == "static":
        return torch.as_tensor(act.alpha, dtype=x.dtype)
    dims = tuple(range(-feature_dims, 0))
    return act.alpha * torch.sqrt(x.square().mean(dim=dims, keepdim=True) + EPS)


def fake_quant_act(x: torch.Tensor, act: ActQuant, feature_dims: int = 1) -> torch.Tensor:
    """``x_q = clamp(round(x / step), lo, hi) * step`` (see the module docstring)."""
    lo, hi = int_range(act.bits, act.signed)
    step = act_step(x, act, feature_dims)
    return torch.clamp(torch.round(x / step), lo, hi) * step
