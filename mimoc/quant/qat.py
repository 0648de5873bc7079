"""Quantization-aware fine-tuning: KAQ (dynamic steps + MMD) and LSQ (static steps).

Starting from the trained fp32 detector and initial steps
(:func:`mimoc.quant.calibration.learned_init_layers`), every step draws a training batch
from the model's link (as :mod:`mimoc.detectors.training`) and minimises::

    loss = task(Q(model), batch) + lambda * sum_l MMD^2_{h_l}( f_l(x_l, W_l), f_l(x_l,q, W_l,q) )

``task`` is the detector's own training loss (DetNet's weighted per-block error, SDNet's
MSE, RE-MIMO's cross-entropy) computed with the fake-quantized layers; ``f_l`` is layer
``l`` applied to the input it receives in the quantized network, once in full precision and
once quantized (:mod:`mimoc.quant.mmd`, with the learned, ascending bandwidth ``h_l``, on
at most :data:`MMD_ROWS` random rows). LSQ is the same loop with ``lambda = 0`` and
static steps. ``lambda`` is constant (docs/design.md section 6) or, with ``lam_schedule="cosine"``,
decays from ``lambda`` to 0 over the run (:func:`lambda_at`): the kernel term shapes the
layer distributions early and the last steps train on the task alone, which on SDNet
recovers the accuracy a constant lambda costs (benchmarks/kaq_accuracy.md, seed study).
Trained together with Adam and a cosine decay: the detector's weights (``lr``),
the weight steps and activation multipliers (``lr_quant``, a relative step: see
:mod:`mimoc.quant.quantizers`) and the bandwidths. BatchNorm statistics stay frozen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from mimoc.detectors.training import (
    TrainOptions,
    draw_batch,
    symbol_error_rate,
    train_steps,
)
from mimoc.progress import progress_bar
from mimoc.quant.detector import QuantizedDetector, quantizable_layers
from mimoc.quant.mmd import LearnedBandwidth, mmd2, rows_of

MMD_ROWS = 128


@dataclass
class QATSettings:
    """Fine-tuning hyper-parameters (plain values, recorded in the recipe's info)."""

    steps: int = 300
    batch: int = 256
    lam: float = 0.1
    lr: float = 1e-4
    lr_quant: float = 1e-2
    lr_final: float = 0.05
    grad_clip: float = 1.0
    seed: int = 0
    lam_schedule: str = "constant"


def cosine_decay(step: int, steps: int) -> float:
    """1 at step 0, falling on a half cosine to 0 at ``steps`` (and after)."""
    return 0.5 * (1.0 + math.cos(math.pi * min(step, steps) / steps))


def lambda_at(settings: QATSettings, step: int) -> float:
    """The MMD weight at training step ``step`` (0-based) of ``settings.steps``."""
    if settings.lam_schedule == "constant":
        return settings.lam
    return settings.lam * cosine_decay(step, settings.steps)


def fine_tune(qdet: QuantizedDetector, options: TrainOptions, settings: QATSettings, *,
              validate=None, val_every: int = 0, progress: bool = False,
              desc: str = "quantize") -> list[dict]:
    """Run QAT in place on ``qdet`` (its detector's weights and its steps); the history."""
    model = qdet.detector
    system = options.system(model)
    layers = quantizable_layers(model)
    use_mmd = settings.lam > 0
    bandwidths = nn.ModuleDict({name.replace(".", "__"): LearnedBandwidth()
                                for name in qdet.names}) if use_mmd else nn.ModuleDict()
    groups = [{"params": [p for p in model.parameters() if p.requires_grad], "lr": settings.lr},
              {"params": qdet.quantizer_parameters(), "lr": settings.lr_quant}]
    if use_mmd:
        groups.append({"params": list(bandwidths.parameters()), "lr": settings.lr_quant})
    optimizer = torch.optim.Adam(groups, foreach=True)
    final, steps = settings.lr_final, settings.steps

    def factor(step: int) -> float:
        return final + (1.0 - final) * cosine_decay(step, steps)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    with torch.random.fork_rng():
        torch.manual_seed(settings.seed)
        gen = torch.Generator().manual_seed(settings.seed + 104729)
        pick_gen = torch.Generator().manual_seed(settings.seed + 1299709)

        def next_batch():
            return draw_batch(model, system, settings.batch, options.snr_db, gen,
                              c2c=options.c2c, states=options.states)

        def loss_fn(_qdet, batch) -> torch.Tensor:
            terms: list[torch.Tensor] = []

            def observe(name: str, reference: torch.Tensor, quantized: torch.Tensor) -> None:
                conv = isinstance(layers[name], nn.Conv2d)
                a, q = rows_of(reference, conv), rows_of(quantized, conv)
                pick = torch.randperm(a.shape[0], generator=pick_gen)[:MMD_ROWS]
                h = bandwidths[name.replace(".", "__")]()
                terms.append(mmd2(a[pick], q[pick], h))

            with qdet.active(observe if use_mmd else None):
                task = model.training_loss(batch)
            if not terms:
                return task
            # the scheduler has stepped once per finished training step
            return task + lambda_at(settings, scheduler.last_epoch) * torch.stack(terms).sum()

        with progress_bar(steps, desc=desc, unit="step", enabled=progress) as bar:
            history = train_steps(qdet, next_batch, steps, optimizer, scheduler=scheduler,
                                  grad_clip=settings.grad_clip, loss_fn=loss_fn,
                                  validate=validate, val_every=val_every, log_every=10,
                                  bar=bar)
    qdet.eval()
    return history


def quantized_ser(qdet: QuantizedDetector, batches) -> float:
    """Validation SER of the fake-quantized detector."""
    return symbol_error_rate(qdet, batches)
