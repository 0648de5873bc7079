"""KAQ post-training: per-layer step multipliers that minimise MMD^2, no retraining.

For every quantized layer ``f(x, W)`` (inputs ``x`` sampled from the fp32 model on
calibration batches over the SNR range, :mod:`mimoc.quant.calibration`)::

    s_w   = m_w * max|W_o| / Qp_w                      (per channel, one m_w per layer)
    alpha = m_a * alpha_0                              (dynamic step alpha * RMS(x))
    (m_w, m_a) = argmin  max_h MMD^2_h( f(x, W),  f(x_q, W_q) )

over the grids :data:`WEIGHT_MULTIPLIERS` x :data:`ALPHA_MULTIPLIERS`, by coordinate
descent (weights with fp inputs, then ``alpha``, then weights again). ``alpha_0`` is KAQ's
initial multiplier and ``max_h`` runs over a few kernel bandwidths (the learned bandwidth's
ascent, :func:`mimoc.quant.mmd.max_mmd2`). The outputs compared are the layer's (pre-
activation) outputs, rows as in :func:`mimoc.quant.mmd.rows_of`, at most
:data:`MMD_ROWS` of them.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from mimoc.quant.calibration import InputStats
from mimoc.quant.detector import layer_function, quantizable_layers
from mimoc.quant.mmd import max_mmd2, rows_of
from mimoc.quant.spec import LayerQuant, difference_weight, fake_quant_act, fake_quant_weight

WEIGHT_MULTIPLIERS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4)
ALPHA_MULTIPLIERS = tuple(0.4 * (2.5 / 0.4) ** (i / 12) for i in range(13))
MMD_ROWS = 256


@torch.no_grad()
def search_layer(layer: nn.Module, init: LayerQuant, stats: InputStats,
                 generator: torch.Generator) -> tuple[LayerQuant, dict]:
    """The best ``(m_w, m_a)`` of one layer; returns its LayerQuant and the search record."""
    compute = layer_function(layer)
    conv = isinstance(layer, nn.Conv2d)
    x = stats.sample  # x' for a difference-coded layer (calibration), so W' here
    weight = difference_weight(layer.weight, init.difference)
    dims = 3 if conv else 1
    reference = rows_of(compute(x, weight), conv)
    pick = torch.randperm(reference.shape[0], generator=generator)[:MMD_ROWS]
    reference = reference[pick]
    base_scale = init.weight_scale

    def score(m_w: float, act) -> float:
        wq = fake_quant_weight(weight, base_scale * m_w, init.weight_bits)
        xq = x if act is None else fake_quant_act(x, act, dims)
        return max_mmd2(reference, rows_of(compute(xq, wq), conv)[pick])

    m_w = min(WEIGHT_MULTIPLIERS, key=lambda m: score(m, None))
    act, m_a = init.act, 1.0
    if act is not None:
        alpha0 = act.alpha
        m_a = min(ALPHA_MULTIPLIERS,
                  key=lambda m: score(m_w, dataclasses.replace(act, alpha=alpha0 * m)))
        act = dataclasses.replace(act, alpha=alpha0 * m_a)
        m_w = min(WEIGHT_MULTIPLIERS, key=lambda m: score(m, act))
    best = score(m_w, act)
    return (LayerQuant(init.weight_bits, base_scale * m_w, act, init.difference),
            {"weight_multiplier": m_w, "alpha_multiplier": m_a, "mmd2": best})


def kaq_ptq_layers(model: nn.Module, init: dict[str, LayerQuant],
                   stats: dict[str, InputStats], seed: int = 0, progress=None
                   ) -> tuple[dict[str, LayerQuant], dict[str, dict]]:
    """Search every layer of ``init`` (min-max weight steps, KAQ's dynamic alphas)."""
    layers = quantizable_layers(model)
    generator = torch.Generator().manual_seed(seed)
    out, record = {}, {}
    for name, lq in init.items():
        out[name], record[name] = search_layer(layers[name], lq, stats[name], generator)
        if progress is not None:
            progress.update(1)
    return out, record
