"""Running a budget: prepare every target, measure their SNR loss against the fp32 model on
the same slots (:mod:`mimoc.studies.budget.accuracy`), and assemble the
:class:`~mimoc.studies.budget.results.BudgetReport` with its verdicts."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mimoc.errors import UsageError
from mimoc.sim.ber import BERPoint, EngineDetector
from mimoc.studies.budget.accuracy import (
    DEFAULT_MAX_LOSS_DB,
    DEFAULT_TARGET_SER,
    Loss,
    crossing,
    find_crossing,
    grid_offsets,
    simulate_slots,
    snr_losses,
)
from mimoc.studies.budget.context import (
    DEFAULT_ARRAY,
    DEFAULT_SLOT,
    BudgetContext,
    budget_context,
    default_snr,
    model_info,
)
from mimoc.studies.budget.prepare import prepare_all
from mimoc.studies.budget.results import BudgetReport, PreparedTarget, TargetBudget
from mimoc.studies.budget.target_names import parse_targets
from mimoc.studies.budget.timing import DEFAULT_CALLS, DEFAULT_MAX_TIME, DEFAULT_PERCENTILE

DEFAULT_BUDGET_S = 100e-6
#: Scalar symbols per SNR point of the accuracy grid (every target on the same slots).
DEFAULT_SER_SYMBOLS = 100_000
REFERENCE = "fp32"    # simulate key of the fp32 digital model, the loss's reference
DIGITAL = "digital"   # simulate key of a quantized checkpoint's model (the processors run it)


@dataclass
class Accuracy:
    """The accuracy study of a budget: each target's loss and its SER at the grid's centre."""

    losses: dict[str, Loss] = field(default_factory=dict)
    points: dict[str, BERPoint] = field(default_factory=dict)
    center_db: float | None = None
    info: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _simulated_as(target: PreparedTarget, ctx: BudgetContext) -> str:
    if target.spec.kind == "processor":
        return DIGITAL if ctx.has_recipe else REFERENCE
    return target.spec.name


def measure_accuracy(prepared: Sequence[PreparedTarget], ctx: BudgetContext, *,
                     snr_db: float | None = None, max_symbols: int = DEFAULT_SER_SYMBOLS,
                     ) -> Accuracy:
    """SNR loss at ``ctx.target_ser`` of every available target against the fp32 model, all
    on the same slots (``snr_db``: the grid's centre; default: the fp32 model's crossing)."""
    from mimoc.sim.ber import from_module

    result = Accuracy()
    detectors: dict[str, EngineDetector] = {REFERENCE: from_module(ctx.reference_model)}
    if ctx.has_recipe:
        detectors[DIGITAL] = from_module(ctx.model)
    for target in prepared:
        if target.available and target.engine is not None:
            detectors[target.spec.name] = target.engine
    start = default_snr(ctx.training)
    if snr_db is None:
        center, search = find_crossing(detectors[REFERENCE], ctx.system, start, ctx.target_ser,
                                       seed=ctx.seed, max_symbols=max_symbols, say=ctx.say)
        result.info["search"] = [{"snr_db": p.snr_db, "ser": p.ser, "symbols": p.symbols}
                                 for p in search]
        if center is None:
            result.notes.append(f"the fp32 model does not reach SER {ctx.target_ser:g} between "
                                f"{min(p.snr_db for p in search):g} and "
                                f"{max(p.snr_db for p in search):g} dB: no SNR loss; grid "
                                f"centred at {start:g} dB (--snr to choose)")
            center = start
        else:
            center = round(center, 1)
    else:
        center = float(snr_db)
    grid = simulate_slots(detectors, ctx.system, [center + o for o in
                                                  grid_offsets(ctx.max_loss_db)],
                          seed=ctx.seed, max_symbols=max_symbols, say=ctx.say)
    names = [_simulated_as(t, ctx) for t in prepared if t.available]
    losses = snr_losses(grid, list(dict.fromkeys(names)), REFERENCE, ctx.target_ser,
                        seed=ctx.seed)
    middle = next(g for g in grid if abs(g.snr_db - center) < 1e-9)
    for target in prepared:
        if target.available:
            key = _simulated_as(target, ctx)
            result.losses[target.spec.name] = losses[key]
            result.points[target.spec.name] = middle.point(key)
    result.center_db = center
    snrs, symbols = [g.snr_db for g in grid], [g.symbols for g in grid]
    ref_cross = crossing(snrs, [g.point(REFERENCE).ser for g in grid], symbols, ctx.target_ser)
    result.info.update(
        reference="the fp32 model (PyTorch)" + (", without the checkpoint's quantization "
                                                 "recipe" if ctx.has_recipe else ""),
        center_db=center, grid_db=snrs, slots_per_point=[g.slots for g in grid],
        symbols_per_slot=grid[0].symbols_per_slot,
        reference_crossing_db=ref_cross if math.isfinite(ref_cross) else None,
        reference_ser=[g.point(REFERENCE).ser for g in grid])
    return result


#: the steps each kind of target says (``say``) while it is prepared, besides the compile
#: of an ONNX artifact it shares with others: for the k/N of a progress bar
_PREPARE_STEPS = {"onnx-cpu": 1, "crossbar": 2, "processor": 0, "classical": 1}
_SEARCH_STEPS = 2  # points the crossing search usually simulates (a bar's total grows past it)


def planned_steps(targets: str | Sequence[str] | None = None, *,
                  ser_symbols: int = DEFAULT_SER_SYMBOLS, snr_db: float | None = None,
                  max_loss_db: float = DEFAULT_MAX_LOSS_DB) -> int:
    """How many steps :func:`run_budget` will ``say`` (the crossing search may take more):
    each ONNX artifact compiled once, each target's timing, the SNR points of accuracy."""
    specs = parse_targets(targets)
    artifacts = {(s.lowering, s.quant) for s in specs if s.kind == "onnx-cpu"}
    if any(s.kind == "processor" for s in specs):
        artifacts.add((None, None))  # a FLOPs bound reads the fp32 artifact's count
    steps = len(artifacts) + sum(_PREPARE_STEPS.get(s.kind, 1) for s in specs)
    if ser_symbols > 0:
        steps += (0 if snr_db is not None else _SEARCH_STEPS) + len(grid_offsets(max_loss_db))
    return steps


def run_budget(model_path: str | os.PathLike, targets: str | Sequence[str] | None = None, *,
               slot: int = DEFAULT_SLOT, budget_s: float = DEFAULT_BUDGET_S,
               snr_db: float | None = None, snr_def: str | None = None,
               ser_symbols: int = DEFAULT_SER_SYMBOLS, seed: int = 0,
               array: tuple[int, int] = DEFAULT_ARRAY, threads: int = 1, min_time: float = 0.2,
               workdir: str | os.PathLike | None = None, progress: bool = False,
               say: Callable[[str], None] | None = None, subcarriers: int = 1,
               subcarriers_per_channel: int = 12, percentile: float = DEFAULT_PERCENTILE,
               calls: int = DEFAULT_CALLS, max_time: float = DEFAULT_MAX_TIME,
               target_ser: float = DEFAULT_TARGET_SER,
               max_loss_db: float = DEFAULT_MAX_LOSS_DB, channel: str | None = None,
               csi: str | None = None) -> BudgetReport:
    """The budget of a model on ``targets`` (see :mod:`mimoc.studies.budget`).

    Args:
        model_path: a mimoc checkpoint.
        targets: names (see :func:`~mimoc.studies.budget.target_names.target_names_help`);
            ``None``: :data:`~mimoc.studies.budget.target_names.DEFAULT_TARGETS`.
        slot: OFDM symbols per slot ``S``.
        budget_s: the per-slot latency budget in seconds.
        snr_db: centre of the accuracy grid (default: where the fp32 model crosses
            ``target_ser``); ``snr_def`` its convention (default: the model's).
        ser_symbols: scalar symbols per SNR point of the grid (0: no accuracy).
        array: crossbar maximum array size.
        threads, min_time, calls, max_time: timing: threads, and each measurement makes
            ``calls`` calls and ``min_time`` s, or stops at ``max_time`` s.
        subcarriers, subcarriers_per_channel: the receiver workload per slot.
        percentile: the latency percentile the verdict uses.
        target_ser, max_loss_db: the accuracy limit: SNR loss at ``target_ser``.
        channel, csi: replace the model's training channel / CSI.
        workdir: keep the compiled artifacts there (default: a temporary directory).
        progress, say: ``say(text)`` is told each step (``progress`` is accepted for
            callers of earlier versions; the steps go through ``say``).
    """
    if not (isinstance(budget_s, int | float) and math.isfinite(budget_s) and budget_s > 0):
        raise UsageError(f"the budget must be a positive time, got {budget_s!r}")
    if isinstance(ser_symbols, bool) or not isinstance(ser_symbols, int) or ser_symbols < 0:
        raise UsageError(f"ser_symbols must be a non-negative integer, got {ser_symbols!r}")
    if snr_db is not None and not math.isfinite(float(snr_db)):
        raise UsageError(f"the SNR must be a finite number of dB, got {snr_db!r}")
    specs = parse_targets(targets)
    with budget_context(model_path, slot=slot, array=array, threads=threads,
                        min_time=min_time, seed=seed, snr_def=snr_def, workdir=workdir,
                        say=say, subcarriers=subcarriers,
                        subcarriers_per_channel=subcarriers_per_channel, budget_s=budget_s,
                        percentile=percentile, calls=calls, max_time=max_time,
                        target_ser=target_ser, max_loss_db=max_loss_db, channel=channel,
                        csi=csi) as ctx:
        prepared = prepare_all(specs, ctx)
        return evaluate(ctx, prepared, snr_db=snr_db, ser_symbols=ser_symbols)


def evaluate(ctx: BudgetContext, prepared: Sequence[PreparedTarget], *,
             snr_db: float | None = None, ser_symbols: int = DEFAULT_SER_SYMBOLS,
             ) -> BudgetReport:
    """Measure the accuracy of prepared targets (unless ``ser_symbols`` is 0) and assemble
    the report."""
    accuracy = None
    if ser_symbols > 0 and any(t.available for t in prepared):
        accuracy = measure_accuracy(prepared, ctx, snr_db=snr_db, max_symbols=ser_symbols)
    return assemble(ctx, prepared, accuracy, ser_symbols)


def assemble(ctx: BudgetContext, prepared: Sequence[PreparedTarget],
             accuracy: Accuracy | None, ser_symbols: int) -> BudgetReport:
    """The :class:`BudgetReport` of prepared targets and their accuracy."""
    system = ctx.system
    bits = system.nt * system.constellation.bits_per_symbol
    accuracy = accuracy or Accuracy()
    rows = [TargetBudget(p.spec.name, p.spec.kind, ctx.budget_s, p.latency,
                         accuracy.points.get(p.spec.name), p.ser_how, p.reason, bits,
                         p.settings, p.failed, accuracy.losses.get(p.spec.name),
                         ctx.percentile, ctx.max_loss_db, p.capacity)
            for p in prepared]
    link = {"channel": system.channel.spec, "csi": system.csi.spec, "snr_def": system.snr_def}
    return BudgetReport(model_info(ctx.model_path, ctx.model), ctx.slot, ctx.budget_s,
                        accuracy.center_db, system.snr_def, ser_symbols, ctx.seed, rows,
                        [*ctx.notes, *accuracy.notes], ctx.target_ser, ctx.max_loss_db,
                        ctx.percentile, ctx.workload, link, accuracy.info)
