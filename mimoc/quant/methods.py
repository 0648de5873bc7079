"""``quantize(model, method)``: choose (and, for QAT, train) a :class:`QuantRecipe`.

Methods (all quantize every Linear/Conv2d, :func:`mimoc.quant.detector.quantizable_layers`;
weights per output channel, narrow-range symmetric; inputs signed or unsigned as calibrated):

========  ======================================================  ======================
method    steps                                                   activation step
========  ======================================================  ======================
minmax    ``max|W_o| / Qp``, input ``max|x| / Qp`` (calibrated)    static
int8      minmax with 8 bits                                      static
lsq       LSQ init, then learned (QAT, task loss)                 static, learned
kaq       LSQ weight init, then learned (QAT, task + lambda MMD)  dynamic ``alpha RMS(x)``
kaq-ptq   minmax x multiplier, multipliers minimising MMD^2       dynamic ``alpha RMS(x)``
========  ======================================================  ======================

QAT methods fine-tune ``model`` in place (its fp32 weights move with the quantizers); the
post-training ones leave it unchanged. The calibration and training batches come from the
model's training link (``options``, a :class:`TrainOptions`: channel, CSI, SNR range,
SNR convention; a checkpoint's ``training["options"]``, see :func:`options_from_training`).

Example::

    >>> recipe = quantize(model, "kaq", bits=4, steps=300, options=TrainOptions(snr_db=(-6, 4)))
    >>> recipe.info["val_ser_fp32"], recipe.info["val_ser"]
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from mimoc.detectors.base import DetectorModule
from mimoc.detectors.training import TrainOptions, symbol_error_rate, validation_set
from mimoc.errors import MimocError, UsageError
from mimoc.progress import progress_bar
from mimoc.quant.calibration import (
    calibration_batches,
    input_stats,
    learned_init_layers,
    minmax_recipe_layers,
)
from mimoc.quant.detector import QuantizedDetector, check_recipe_fits, quantizable_layers
from mimoc.quant.ptq import kaq_ptq_layers
from mimoc.quant.qat import QATSettings, fine_tune
from mimoc.quant.spec import ACT_MODES, LAMBDA_SCHEDULES, METHODS, QuantRecipe

DEFAULT_BITS = 4
DEFAULT_STEPS = 300
DEFAULT_LAMBDA = 0.1


def options_from_training(training: Mapping[str, Any] | None) -> TrainOptions:
    """The :class:`TrainOptions` a checkpoint was trained with (defaults when unknown)."""
    stored = (training or {}).get("options") or {}
    if not isinstance(stored, Mapping):
        return TrainOptions()
    names = {f.name for f in dataclasses.fields(TrainOptions)}
    values = {k: v for k, v in stored.items() if k in names}
    if "snr_db" in values:
        values["snr_db"] = tuple(values["snr_db"])
    try:
        return TrainOptions(**values)
    except (MimocError, TypeError):
        return TrainOptions()


def _check_bits(method: str, bits: int | None) -> int:
    if method == "int8":
        if bits not in (None, 8):
            raise UsageError(f"method int8 is 8-bit; drop --bits or pass 8 (got {bits})")
        return 8
    bits = DEFAULT_BITS if bits is None else bits
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 8:
        raise UsageError(f"bits must be an integer in 2..8, got {bits!r}")
    return bits


def quantize(model: nn.Module, method: str, *, bits: int | None = None,
             steps: int | None = None, seed: int = 0, progress: bool = False,
             options: TrainOptions | None = None, lam: float | None = None,
             act_mode: str | None = None, batch: int | None = None, lr: float = 1e-4,
             lr_quant: float = 1e-2, calib_batches: int = 8, calib_batch: int = 256,
             val_batch: int = 2048, init: QuantRecipe | None = None,
             difference: bool = True, lam_schedule: str = "constant") -> QuantRecipe:
    """Quantize ``model`` with ``method``; the recipe (module docstring).

    Args:
        model: a zoo detector (fine-tuned in place by ``kaq`` / ``lsq``).
        method: ``kaq``, ``kaq-ptq``, ``lsq``, ``minmax`` or ``int8``.
        bits: weight and activation bits, 2..8 (default 4; int8 is 8).
        steps: QAT steps (default 300; only kaq / lsq).
        seed: seed of calibration and training draws.
        progress: progress bars on stderr (when it is a terminal).
        options: the model's training link and SNR range (default ``TrainOptions()``).
        lam: MMD weight lambda (kaq only; default 0.1).
        lam_schedule: ``constant`` (default) or ``cosine``: lambda decays to 0 over the
            run (kaq only; :func:`mimoc.quant.qat.lambda_at`).
        act_mode: override the activation step mode (``static`` / ``dynamic``) of kaq,
            kaq-ptq or lsq, e.g. for the static-vs-dynamic ablation.
        batch: QAT batch in slots (default ``min(options.batch, 256)``).
        lr, lr_quant: QAT learning rates of the weights and of the steps (relative).
        calib_batches, calib_batch: calibration batches and slots per batch.
        val_batch: validation slots for the SER before/after (0: skip).
        init: resume QAT (kaq / lsq) from this recipe's steps (e.g. a quantized
            checkpoint's, with its fine-tuned model) instead of fresh initial steps.
        difference: code the inputs the detector names in ``quant_input_differences()``
            as differences (DetNet / WeSNet: ``H^T y - H^T H x``; :mod:`mimoc.quant.spec`);
            ``False`` quantizes every input as it is (the ablation). Resuming keeps the
            recipe's coding.

    Returns:
        The :class:`QuantRecipe`; ``info`` records the method's settings, the validation
        SER of the fp32 model (``val_ser_fp32``) and of the quantized one (``val_ser``).
    """
    if not isinstance(model, DetectorModule):
        raise UsageError(f"quantize needs a mimoc detector, got {type(model).__name__}")
    if method not in METHODS:
        raise UsageError(f"unknown quantization method {method!r}; choose one of "
                         f"{', '.join(METHODS)}")
    bits = _check_bits(method, bits)
    trains = method in ("kaq", "lsq")
    if steps is not None and not trains:
        raise UsageError(f"method {method} does not train; --steps applies to kaq and lsq")
    steps = DEFAULT_STEPS if steps is None else steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise UsageError(f"steps must be a positive integer, got {steps!r}")
    if lam is not None and method != "kaq":
        raise UsageError(f"lambda (MMD weight) applies to kaq only, not {method}")
    lam = DEFAULT_LAMBDA if lam is None else float(lam)
    if not lam >= 0 or lam != lam or lam == float("inf"):
        raise UsageError(f"lambda must be a finite number >= 0, got {lam!r}")
    if lam_schedule not in LAMBDA_SCHEDULES:
        raise UsageError(f"unknown lambda schedule {lam_schedule!r}; choose one of "
                         f"{', '.join(LAMBDA_SCHEDULES)}")
    if lam_schedule != "constant" and method != "kaq":
        raise UsageError(f"a lambda schedule applies to kaq only, not {method}")
    if act_mode is not None and (act_mode not in ACT_MODES or method in ("minmax", "int8")):
        raise UsageError(f"act_mode must be one of {', '.join(ACT_MODES)} for kaq, kaq-ptq "
                         f"or lsq, got {act_mode!r} for {method}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UsageError(f"seed must be an integer >= 0, got {seed!r}")
    if init is not None:
        if not trains:
            raise UsageError(f"resuming applies to kaq and lsq, not {method}")
        if init.bits != bits or act_mode is not None or not difference:
            raise UsageError(f"resuming keeps the recipe's {init.bits} bits, input steps and "
                             f"coding; drop --bits / --act-mode / --no-input-difference")
        check_recipe_fits(model, init)
    options = options or TrainOptions()
    mode = act_mode or ("static" if method == "lsq" else "dynamic")

    start = time.perf_counter()
    model.eval()
    names = list(quantizable_layers(model))
    if not names:
        raise UsageError(f"{type(model).__name__} has no Linear/Conv2d layer to quantize")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        calib = calibration_batches(model, options, calib_batches, calib_batch, seed)
        if init is not None:  # resuming keeps the recipe's coding
            differences = {n: lq.difference for n, lq in init.layers.items() if lq.difference}
        else:
            differences = model.quant_input_differences() if difference else {}
        stats = input_stats(model, calib, names, seed=seed, differences=differences)
    val = validation_set(model, options.system(model),
                         dataclasses.replace(options, val_batch=val_batch)) if val_batch else []
    val_fp32 = symbol_error_rate(model, val) if val else None

    info: dict[str, Any] = {"method": method, "bits": bits, "layers": len(names), "seed": seed,
                            "snr_db": list(options.snr_db), "calibration_slots":
                            calib_batches * calib_batch, "act_mode": mode,
                            "input_difference": list(differences),
                            "val_ser_fp32": val_fp32, "val_slots": val_batch}
    if method in ("minmax", "int8"):
        layers = minmax_recipe_layers(model, stats, bits, differences)
    elif method == "kaq-ptq":
        init = minmax_recipe_layers(model, stats, bits, differences)
        dynamic = learned_init_layers(model, stats, bits, mode, differences)
        init = {n: dataclasses.replace(init[n], act=dynamic[n].act) for n in init}
        with progress_bar(len(init), desc="kaq-ptq", unit="layer", enabled=progress) as bar:
            layers, record = kaq_ptq_layers(model, init, stats, seed, bar)
        info["search"] = record
    elif init is not None:
        layers = dict(init.layers)
        info["resumed_from"] = {"method": init.method, "steps": init.info.get("steps")}
    else:
        layers = learned_init_layers(model, stats, bits, mode, differences)
    qdet = QuantizedDetector(model, QuantRecipe(method, bits, layers), learn=trains)
    if trains:
        settings = QATSettings(steps=steps, batch=batch or min(options.batch, 256),
                               lam=lam if method == "kaq" else 0.0, lr=lr, lr_quant=lr_quant,
                               grad_clip=options.grad_clip or 1.0, seed=seed,
                               lam_schedule=lam_schedule)
        info["val_ser_init"] = symbol_error_rate(qdet, val) if val else None
        history = fine_tune(qdet, options, settings, progress=progress, desc=method,
                            validate=(lambda: symbol_error_rate(qdet, val)) if val else None,
                            val_every=max(1, steps // 5))
        info.update(steps=steps, qat=dataclasses.asdict(settings), history=history)
    info["val_ser"] = symbol_error_rate(qdet, val) if val else None
    info["seconds"] = time.perf_counter() - start
    return qdet.recipe(info)
