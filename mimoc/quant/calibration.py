"""Calibration: batches from the model's training link, layer-input statistics, initial steps.

Calibration batches are drawn exactly like training batches
(:func:`mimoc.detectors.training.draw_batch`: the model's link, channel, CSI and SNR
convention from its :class:`~mimoc.detectors.training.TrainOptions`), with the slots'
SNRs spread evenly over the training range so that every SNR is represented.

Per quantized layer the fp32 model's inputs give (:class:`InputStats`): ``min``, ``max``,
``absmax``, ``mean|x|``, ``mean(|x| / RMS(x))`` (RMS over the feature dims, as the dynamic
step) and a sample of input rows for the KAQ-PTQ search. From them:

- min-max (and int8): ``s_w[o] = max|W_o| / Qp_w``; ``alpha = absmax / Qp`` (signed,
  ``Qp = 2^(b-1) - 1``) or ``max / (2^b - 1)`` (unsigned), a static step;
- LSQ's initial steps: ``s_w[o] = 2 mean|W_o| / sqrt(Qp_w)``, ``alpha = 2 mean|x| / sqrt(Qp)``;
- KAQ's initial dynamic multiplier: ``alpha = 2 mean(|x| / RMS(x)) / sqrt(Qp)``, i.e. LSQ's
  rule applied to the RMS-normalised input.

Layers with a difference coding (:mod:`mimoc.quant.spec`; ``differences``, from the
detector's ``quant_input_differences()``) are calibrated on ``x'`` and ``W'``.

Inputs with fewer than :data:`DYNAMIC_MIN_FEATURES` features (RE-MIMO's 1- and 2-feature
token parts) keep a static step under KAQ: an RMS over one or two numbers is the number
itself, and ``round(x / (alpha |x|))`` would carry only its sign.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from mimoc.detectors.training import TrainOptions, draw_batch
from mimoc.errors import UsageError
from mimoc.quant.detector import quantizable_layers
from mimoc.quant.quantizers import feature_dims_of, lsq_weight_init, minmax_weight_scale
from mimoc.quant.spec import (
    EPS,
    ActQuant,
    LayerQuant,
    difference_input,
    difference_weight,
    int_range,
)
from mimoc.sim.system import LinkBatch

DYNAMIC_MIN_FEATURES = 8
#: Seed offset of calibration draws (distinct from training and validation draws).
CALIBRATION_SEED_OFFSET = 7919


@dataclass
class InputStats:
    """Statistics of one layer's fp32 inputs over the calibration batches."""

    min: float
    max: float
    absmax: float
    mean_abs: float
    mean_abs_over_rms: float
    features: int
    sample: torch.Tensor  # input rows (Linear: [N, in]; Conv2d: [N, C, H, W])

    @property
    def signed(self) -> bool:
        return self.min < 0.0


def calibration_batches(model: nn.Module, options: TrainOptions, batches: int = 8,
                        batch: int = 256, seed: int = 0) -> list[LinkBatch]:
    """``batches`` batches of ``batch`` slots from the model's training link, SNRs evenly
    spread over ``options.snr_db``."""
    if batches < 1 or batch < 1:
        raise UsageError(f"calibration needs at least one batch of one slot, got {batches} x "
                         f"{batch}")
    system = options.system(model)
    gen = torch.Generator().manual_seed(seed + CALIBRATION_SEED_OFFSET)
    snrs = torch.linspace(*options.snr_db, batches * batch, dtype=torch.float64)
    snrs = snrs[torch.randperm(snrs.numel(), generator=gen)]
    return [draw_batch(model, system, batch, chunk, gen, c2c=options.c2c, states=options.states)
            for chunk in snrs.split(batch)]


@torch.no_grad()
def input_stats(model: nn.Module, batches: list[LinkBatch], names: list[str] | None = None,
                sample_rows: int = 512, seed: int = 0,
                differences: dict[str, tuple[int, int, int]] | None = None
                ) -> dict[str, InputStats]:
    """Statistics of the fp32 inputs (``x'`` where ``differences`` codes the layer's input)
    of each quantized layer (module docstring)."""
    layers = quantizable_layers(model)
    differences = differences or {}
    names = list(layers) if names is None else names
    acc: dict[str, dict] = {n: {"min": math.inf, "max": -math.inf, "abs": 0.0, "ratio": 0.0,
                                "count": 0, "rows": 0, "samples": []} for n in names}
    gen = torch.Generator().manual_seed(seed)

    def hook_for(name: str, layer: nn.Module):
        dims = feature_dims_of(layer)

        def hook(module, inputs):
            x = difference_input(inputs[0].detach().float(), differences.get(name))
            rows = x if dims == 3 else x.reshape(-1, x.shape[-1])
            a = acc[name]
            a["min"] = min(a["min"], float(rows.min()))
            a["max"] = max(a["max"], float(rows.max()))
            a["abs"] += float(rows.abs().sum())
            a["count"] += rows.numel()
            feat = tuple(range(-dims, 0))
            rms = torch.sqrt(rows.square().mean(dim=feat, keepdim=True) + EPS)
            a["ratio"] += float((rows.abs() / rms).sum())
            a["rows"] += rows.shape[0]
            pick = torch.randperm(rows.shape[0], generator=gen)[:sample_rows]
            a["samples"].append(rows[pick].clone())
        return hook

    handles = [layers[n].register_forward_pre_hook(hook_for(n, layers[n])) for n in names]
    was_training = model.training
    model.eval()
    try:
        for b in batches:
            model(b.H_est, b.y)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    out = {}
    for n in names:
        a = acc[n]
        if a["count"] == 0:
            raise UsageError(f"layer {n} was not used by the forward pass; it cannot be "
                             f"calibrated (is the model's depth reduced?)")
        samples = torch.cat(a["samples"])
        samples = samples[torch.randperm(samples.shape[0], generator=gen)[:sample_rows]]
        out[n] = InputStats(a["min"], a["max"], max(abs(a["min"]), abs(a["max"])),
                            a["abs"] / a["count"], a["ratio"] / a["count"],
                            samples[0].numel(), samples)
    return out


def _qp(bits: int, signed: bool) -> int:
    return int_range(bits, signed)[1]


def minmax_recipe_layers(model: nn.Module, stats: dict[str, InputStats], bits: int,
                         differences: dict[str, tuple[int, int, int]] | None = None
                         ) -> dict[str, LayerQuant]:
    """Min-max steps: nothing clipped on the calibration data (static input steps)."""
    layers = quantizable_layers(model)
    differences = differences or {}
    out = {}
    for name, st in stats.items():
        peak = st.absmax if st.signed else st.max
        alpha = max(peak, 1e-8) / _qp(bits, st.signed)
        diff = differences.get(name)
        weight = difference_weight(layers[name].weight, diff)
        out[name] = LayerQuant(bits, minmax_weight_scale(weight, bits),
                               ActQuant(bits, "static", alpha, st.signed), diff)
    return out


def learned_init_layers(model: nn.Module, stats: dict[str, InputStats], bits: int,
                        act_mode: str,
                        differences: dict[str, tuple[int, int, int]] | None = None
                        ) -> dict[str, LayerQuant]:
    """Initial steps of LSQ (``act_mode="static"``) and KAQ (``"dynamic"``)."""
    layers = quantizable_layers(model)
    differences = differences or {}
    out = {}
    for name, st in stats.items():
        qp = _qp(bits, st.signed)
        mode = act_mode if st.features >= DYNAMIC_MIN_FEATURES else "static"
        if mode == "dynamic":
            alpha = 2.0 * st.mean_abs_over_rms / math.sqrt(qp)
        else:
            alpha = 2.0 * st.mean_abs / math.sqrt(qp)
        diff = differences.get(name)
        weight = difference_weight(layers[name].weight, diff)
        out[name] = LayerQuant(bits, lsq_weight_init(weight, bits),
                               ActQuant(bits, mode, max(alpha, 1e-8), st.signed), diff)
    return out
