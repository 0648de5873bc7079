"""Running a budget: prepare every target, simulate their SER on the same draws, and
assemble the :class:`~mimoc.studies.budget.results.BudgetReport`."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence

from mimoc.errors import UsageError
from mimoc.sim.ber import BERPoint, EngineDetector
from mimoc.studies.budget.context import (
    DEFAULT_ARRAY,
    DEFAULT_SLOT,
    BudgetContext,
    budget_context,
    default_snr,
    model_info,
)
from mimoc.studies.budget.prepare import prepare
from mimoc.studies.budget.results import BudgetReport, PreparedTarget, TargetBudget
from mimoc.studies.budget.target_names import parse_targets

DEFAULT_BUDGET_S = 100e-6
#: Scalar symbols per target for the SER estimate: small, so a default run stays quick.
DEFAULT_SER_SYMBOLS = 40_000
DIGITAL = "digital"  # simulate() key of the PyTorch model shared by the processors


def measure_ser(prepared: Sequence[PreparedTarget], ctx: BudgetContext, snr_db: float, *,
                max_symbols: int = DEFAULT_SER_SYMBOLS, progress: bool = False,
                ) -> dict[str, BERPoint]:
    """SER/BER of every available target at ``snr_db``, all on the same draws.

    Returns target name -> point; the processors all get the digital model's point.
    """
    from mimoc.sim.ber import from_module, simulate

    detectors: dict[str, EngineDetector] = {}
    for target in prepared:
        if target.available and target.engine is not None:
            detectors[target.spec.name] = target.engine
    if any(t.available and t.spec.kind == "processor" for t in prepared):
        detectors[DIGITAL] = from_module(ctx.model)
    if not detectors:
        return {}
    ctx.say(f"simulating SER at {snr_db:g} dB")
    result = simulate(detectors, ctx.system, [snr_db], seed=ctx.seed, max_symbols=max_symbols,
                      progress=progress)
    points = {name: curve[0] for name, curve in result.curves.items()}
    return {t.spec.name: points[DIGITAL if t.spec.kind == "processor" else t.spec.name]
            for t in prepared if t.available and
            (t.spec.name in points or t.spec.kind == "processor")}


def run_budget(model_path: str | os.PathLike, targets: str | Sequence[str] | None = None, *,
               slot: int = DEFAULT_SLOT, budget_s: float = DEFAULT_BUDGET_S,
               snr_db: float | None = None, snr_def: str | None = None,
               ser_symbols: int = DEFAULT_SER_SYMBOLS, seed: int = 0,
               array: tuple[int, int] = DEFAULT_ARRAY, threads: int = 1, min_time: float = 0.2,
               workdir: str | os.PathLike | None = None, progress: bool = False,
               say: Callable[[str], None] | None = None) -> BudgetReport:
    """The latency budget of a model on ``targets`` (see :mod:`mimoc.studies.budget`).

    Args:
        model_path: a mimoc checkpoint.
        targets: names (see :func:`~mimoc.studies.budget.target_names.target_names_help`);
            ``None``: :data:`~mimoc.studies.budget.target_names.DEFAULT_TARGETS`.
        slot: symbols per slot ``S``.
        budget_s: the per-slot latency budget in seconds.
        snr_db: SNR of the SER estimate (default: the middle of the training range);
            ``snr_def`` its convention (default: the model's training convention).
        ser_symbols: scalar symbols per target for the SER (0: no SER).
        array: crossbar maximum array size.
        threads, min_time: onnxruntime threads and minimum timed seconds per measurement.
        workdir: keep the compiled artifacts there (default: a temporary directory).
    """
    if not (isinstance(budget_s, int | float) and math.isfinite(budget_s) and budget_s > 0):
        raise UsageError(f"the budget must be a positive time, got {budget_s!r}")
    if not isinstance(ser_symbols, int) or ser_symbols < 0:
        raise UsageError(f"ser_symbols must be a non-negative integer, got {ser_symbols!r}")
    specs = parse_targets(targets)
    with budget_context(model_path, slot=slot, array=array, threads=threads,
                        min_time=min_time, seed=seed, snr_def=snr_def, workdir=workdir,
                        say=say) as ctx:
        snr = default_snr(ctx.training) if snr_db is None else float(snr_db)
        if not math.isfinite(snr):
            raise UsageError(f"the SNR must be a finite number of dB, got {snr_db!r}")
        prepared = [prepare(spec, ctx) for spec in specs]
        points = measure_ser(prepared, ctx, snr, max_symbols=ser_symbols, progress=progress) \
            if ser_symbols > 0 else {}
        report = assemble(ctx, prepared, budget_s, points, snr if ser_symbols > 0 else None,
                          ser_symbols)
        if snr_db is None and ser_symbols > 0:
            report.notes.append(f"SNR {snr:g} dB: the middle of the model's training range "
                                "(--snr to choose)")
    return report


def assemble(ctx: BudgetContext, prepared: Sequence[PreparedTarget], budget_s: float,
             points: dict[str, BERPoint], snr_db: float | None,
             ser_symbols: int) -> BudgetReport:
    """The :class:`BudgetReport` of prepared targets and their SER points (by target name)."""
    system = ctx.system
    bits = system.nt * system.constellation.bits_per_symbol
    rows = [TargetBudget(p.spec.name, p.spec.kind, budget_s, p.latency,
                         points.get(p.spec.name), p.ser_how, p.reason, bits, p.settings,
                         p.failed)
            for p in prepared]
    return BudgetReport(model_info(ctx.model_path, ctx.model), ctx.slot, budget_s, snr_db,
                        system.snr_def, ser_symbols, ctx.seed, rows)

