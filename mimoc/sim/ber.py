"""Monte Carlo symbol- and bit-error rates of MIMO detectors.

For every SNR point the engine draws batches of slots from a
:class:`~mimoc.sim.system.MIMOSystem` (channel ``H``, the receiver's estimate
``H_est``, symbols ``x``, noise), hands ``(H_est, y, N0)`` to every detector,
makes the nearest-point hard decision ``i_hat = argmin_i |x_hat - s_i|`` per
complex entry and counts, against the transmitted indices ``i``,

    SER = #{i_hat != i} / (B S Nt),    BER = #{bits(i_hat) != bits(i)} / (B S Nt log2 M)

summed over batches. A point ends when every detector has made at least
``min_errors`` symbol errors spread over at least ``min_error_slots`` distinct
slots, or when ``max_symbols`` scalar complex symbols have been sent (rounded
up to whole slots). The second condition keeps one bad channel, which makes
many errors at once, from ending a point.

Confidence intervals treat the **slot** as the independent unit: its ``S``
symbol vectors and their ``Nt`` streams share one channel draw, so their
errors cluster. The engine keeps, per detector, the sums of the per-slot
error counts and of their squares (:class:`~mimoc.sim.stats.SlotCounts`, for
symbols and for bits) and reports the cluster-robust 95% interval of
:func:`~mimoc.sim.stats.cluster_interval`: a Wilson interval on the effective
sample size ``N / deff``. With independent symbols it is about Wilson's
interval over symbols; with bursty errors it is as wide as the bursts demand.

Comparability and reproducibility:

- all detectors see the *same* draws, so curves compare point by point and
  their difference has far less variance than two independent runs;
- batch ``k`` of a point draws from its own generator, seeded by
  ``(seed, snr_db, k)`` alone (:func:`point_seed`), and the batch size is a
  function of the arguments only: a point's result does not depend on which
  other points are in the list, in what order they run, or on how many
  workers run the batches (``executor``: units run ahead on workers, their
  counts are consumed in batch order under the same stopping rule); same seed
  and arguments, same numbers.

Example::

    >>> from mimoc.sim.system import MIMOSystem
    >>> system = MIMOSystem(nt=4, nr=8, modulation="qpsk")
    >>> c = system.constellation
    >>> result = simulate({"zf": classical("zf", c), "mmse": classical("mmse", c)},
    ...                   system, [0.0, 4.0], max_symbols=40_000, min_errors=100)
    >>> [round(p.snr_db) for p in result.curves["mmse"]]
    [0, 4]
    >>> [c["detector"]["name"] for c in result.to_dict()["curves"]]
    ['zf', 'mmse']
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from mimoc.errors import UsageError
from mimoc.progress import progress_bar
from mimoc.sim.ber_units import (  # noqa: F401  (re-exported: the engine's public names)
    EngineDetector,
    InProcessExecutor,
    Unit,
    UnitCounts,
    UnitResult,
    count_errors,
    point_seed,
    run_unit,
)
from mimoc.sim.detectors import CLASSICAL_DETECTORS as CLASSICAL_NAMES
from mimoc.sim.detectors import get_classical_detector
from mimoc.sim.llr import GMIAccumulator
from mimoc.sim.modulation import Constellation
from mimoc.sim.stats import SlotCounts, cluster_interval, effective_trials, wilson_interval
from mimoc.sim.system import MIMOSystem

DEFAULT_MAX_SYMBOLS = 1_000_000
DEFAULT_MIN_ERRORS = 100
#: Distinct slots with errors that a point needs before ``min_errors`` may end it (or
#: ``min_errors`` when smaller): one bad channel cannot end a point, and the design effect,
#: estimated from the slots with errors, needs a Student-t correction of under 5% from 30.
DEFAULT_MIN_ERROR_SLOTS = 30
#: Scalar symbols per batch when ``batch_size`` is not given: large enough that
#: per-batch overhead vanishes, small enough for exhaustive ML's candidate tensors.
TARGET_SYMBOLS_PER_BATCH = 16_384
#: What ``"llr"`` of a result's JSON says about the soft outputs (mimoc.sim.llr).
LLR_DESCRIPTION = {
    "convention": "max-log LLR = log P(b=1)/P(b=0), Gray labels of mimoc.sim.modulation",
    "error_var": "data-aided per stream and batch: mean |x_hat - x|^2",
    "gmi": "BICM GMI from the LLRs, max over one LLR scale (llr_scale), bits per channel use",
}


@dataclass(frozen=True)
class BERPoint:
    """Error counts and rates of one detector at one SNR.

    Attributes:
        snr_db: SNR in dB under the system's convention.
        ser, ber: symbol- and bit-error rates.
        ser_ci, ber_ci: 95% confidence intervals ``(lo, hi)``, cluster-robust over slots
            (:func:`~mimoc.sim.stats.cluster_interval`).
        symbols: scalar complex symbols sent (``B * S * Nt`` summed over batches).
        errors: symbol errors.
        bit_errors: bit errors (out of ``symbols * log2 M`` bits).
        slots: slots sent (channel draws, the independent units of the intervals).
        error_slots: slots with at least one symbol error.
        effective_symbols, effective_bits: effective sample sizes ``n_eff`` of the SER and
            BER intervals (:func:`~mimoc.sim.stats.effective_trials`): as many independent
            trials would give intervals as wide.
        gmi, llr_scale: with LLR output only (``simulate(..., llr=True)``): the BICM GMI
            estimated from the detector's max-log LLRs, bits per channel use, and the LLR
            scale that attains it (:mod:`mimoc.sim.llr`); ``None`` otherwise.
    """

    snr_db: float
    ser: float
    ber: float
    ser_ci: tuple[float, float]
    ber_ci: tuple[float, float]
    symbols: int
    errors: int
    bit_errors: int
    slots: int = 0
    error_slots: int = 0
    effective_symbols: float = 0.0
    effective_bits: float = 0.0
    gmi: float | None = None
    llr_scale: float | None = None

    @classmethod
    def from_slot_counts(cls, snr_db: float, symbol_counts: SlotCounts,
                         bit_counts: SlotCounts, gmi: GMIAccumulator | None = None
                         ) -> BERPoint:
        """The point of per-slot symbol- and bit-error statistics (what the engine keeps)."""
        if symbol_counts.slots != bit_counts.slots:
            raise UsageError("symbol and bit counts must cover the same slots")
        return cls(
            snr_db=float(snr_db),
            ser=symbol_counts.rate,
            ber=bit_counts.rate,
            ser_ci=cluster_interval(symbol_counts),
            ber_ci=cluster_interval(bit_counts),
            symbols=symbol_counts.trials,
            errors=symbol_counts.errors,
            bit_errors=bit_counts.errors,
            slots=symbol_counts.slots,
            error_slots=symbol_counts.error_slots,
            effective_symbols=effective_trials(symbol_counts),
            effective_bits=effective_trials(bit_counts),
            **(dict(zip(("gmi", "llr_scale"), gmi.best(), strict=True)) if gmi else {}),
        )

    @classmethod
    def from_counts(cls, snr_db: float, symbols: int, errors: int, bit_errors: int,
                    bits_per_symbol: int) -> BERPoint:
        """A point of bare totals, with no per-slot detail (hand-made points, old results).

        Every symbol is taken as its own slot, so the intervals are Wilson's and assume
        independent symbols; :meth:`from_slot_counts` is what measured points use.
        """
        bits = symbols * bits_per_symbol
        return cls(
            snr_db=float(snr_db),
            ser=errors / symbols if symbols else math.nan,
            ber=bit_errors / bits if bits else math.nan,
            ser_ci=wilson_interval(errors, symbols),
            ber_ci=wilson_interval(bit_errors, bits),
            symbols=symbols,
            errors=errors,
            bit_errors=bit_errors,
            slots=symbols,
            error_slots=errors,
            effective_symbols=float(symbols),
            effective_bits=float(bits),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of ``mimoc ber --json`` (``gmi`` and ``llr_scale`` only with LLR
        output)."""
        out = {
            "snr_db": self.snr_db,
            "ser": self.ser,
            "ber": self.ber,
            "ser_ci": list(self.ser_ci),
            "ber_ci": list(self.ber_ci),
            "symbols": self.symbols,
            "errors": self.errors,
            "bit_errors": self.bit_errors,
            "slots": self.slots,
            "error_slots": self.error_slots,
            "effective_symbols": self.effective_symbols,
            "effective_bits": self.effective_bits,
        }
        if self.gmi is not None:
            out.update(gmi=self.gmi, llr_scale=self.llr_scale)
        return out


@dataclass
class BERResult:
    """Curves of several detectors measured on the same draws.

    Attributes:
        system: the simulated link.
        curves: detector name -> points in the order of the SNR list.
        seed, max_symbols, min_errors, batch_size, min_error_slots: the run's settings.
        identities: detector name -> what it is, for ``to_dict`` (``kind``: ``classical``,
            ``model``, ``artifact`` or ``module``; ``spec``, ``path``, ``target``, ``c2c``
            as they apply); set by whoever built the detectors.
    """

    system: MIMOSystem
    curves: dict[str, list[BERPoint]] = field(default_factory=dict)
    seed: int = 0
    max_symbols: int = DEFAULT_MAX_SYMBOLS
    min_errors: int = DEFAULT_MIN_ERRORS
    batch_size: int = 0
    min_error_slots: int = DEFAULT_MIN_ERROR_SLOTS
    llr: bool = False
    identities: dict[str, dict[str, Any]] = field(default_factory=dict)

    def detector(self, name: str) -> dict[str, Any]:
        """The structured identity of curve ``name``: ``identities[name]`` when the caller
        set one, else ``{"name", "kind": "classical", "spec"}`` for a classical detector
        and ``{"name", "kind": "module"}`` for any other."""
        if name in self.identities:
            return {"name": name, **self.identities[name]}
        if name.lower().partition(":")[0] in CLASSICAL_NAMES:
            return {"name": name, "kind": "classical", "spec": name}
        return {"name": name, "kind": "module"}

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``mimoc ber --json`` without its envelope)::

            {"nt": 4, "nr": 8, "modulation": "qpsk", "snr_def": "per-stream",
             "channel": "rayleigh", "csi": "perfect", "slot_symbols": 1, "seed": 0,
             "max_symbols": .., "min_errors": .., "min_error_slots": ..,
             "curves": [{"detector": {"name": "mmse", "kind": "classical", ...},
                         "points": [{"snr_db", "ser", "ber", "ser_ci", "ber_ci", "symbols",
                                     "errors", "bit_errors", "slots", "error_slots",
                                     "effective_symbols", "effective_bits"}, ...]}, ...]}

        ``curves`` is a list in the order of the detectors, one entry even for one
        detector; the settings make a run repeatable.
        """
        s = self.system
        out = {
            "nt": s.nt,
            "nr": s.nr,
            "modulation": s.modulation,
            "snr_def": s.snr_def,
            "channel": getattr(s.channel, "spec", str(s.channel)),
            "csi": getattr(s.csi, "spec", str(s.csi)),
            "slot_symbols": s.slot,
            "seed": self.seed,
            "max_symbols": self.max_symbols,
            "min_errors": self.min_errors,
            "min_error_slots": self.min_error_slots,
            "curves": [{"detector": self.detector(name),
                        "points": [p.to_dict() for p in points]}
                       for name, points in self.curves.items()],
        }
        if getattr(s, "system", "complex") == "real":  # complex runs' documents stay as they were
            out = {"system": "real", **out}
        if self.llr:
            out["llr"] = dict(LLR_DESCRIPTION)
        return out


# -- wrappers ----------------------------------------------------------------

def classical(name: str, constellation: Constellation) -> EngineDetector:
    """Wrap a classical detector of :mod:`mimoc.sim.detectors` by registry name.

    Raises :class:`~mimoc.errors.UsageError` for an unknown name.
    """
    detect = get_classical_detector(name)

    def run(H: torch.Tensor, y: torch.Tensor, noise_var: torch.Tensor) -> torch.Tensor:
        return detect(H, y, noise_var, constellation)

    run.__name__ = f"classical_{name}"
    return run


def from_module(model: torch.nn.Module) -> EngineDetector:
    """Wrap a zoo detector (``forward(H, y) -> x_hat``) for the engine.

    Runs under ``torch.no_grad()`` in eval mode (BatchNorm uses its running
    statistics) and restores the module's previous mode afterwards. Inputs move
    to the module's device and the output comes back to the CPU. ``noise_var``
    is not passed: zoo detectors learn the noise level from the data.
    """
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")

    def run(H: torch.Tensor, y: torch.Tensor, noise_var: torch.Tensor) -> torch.Tensor:
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                x_hat = model(H.to(device), y.to(device))
        finally:
            model.train(was_training)
        return x_hat.to("cpu", H.dtype)

    run.__name__ = f"module_{type(model).__name__}"
    return run


# -- the engine --------------------------------------------------------------

def _check_arguments(detectors, snr_db, max_symbols, min_errors, min_error_slots,
                     batch_size) -> list[float]:
    if not detectors:
        raise UsageError("no detector to simulate; give at least one")
    snrs = [float(s) for s in snr_db]
    if not snrs:
        raise UsageError("no SNR point to simulate; give at least one")
    if not all(math.isfinite(s) for s in snrs):
        raise UsageError(f"SNR points must be finite numbers of dB, got {snrs}")
    for name, value, low in (("max_symbols", max_symbols, 1), ("min_errors", min_errors, 1),
                             ("min_error_slots", min_error_slots, 1),
                             ("batch_size", batch_size, 1)):
        if value is not None and (not isinstance(value, int) or value < low):
            raise UsageError(f"{name} must be an integer >= {low}, got {value!r}")
    return snrs


def simulate(detectors: Mapping[str, EngineDetector], system: MIMOSystem,
             snr_db: Sequence[float], *, seed: int = 0,
             max_symbols: int = DEFAULT_MAX_SYMBOLS, min_errors: int = DEFAULT_MIN_ERRORS,
             min_error_slots: int | None = None, batch_size: int | None = None,
             progress: bool = False, dtype: torch.dtype = torch.float32,
             llr: bool = False,
             on_llr: Callable[[str, float, torch.Tensor, torch.Tensor], None] | None = None,
             executor: Any = None) -> BERResult:
    """Measure SER and BER of ``detectors`` on ``system`` at each SNR in ``snr_db``.

    Args:
        detectors: name -> ``f(H_est, y, N0) -> x_hat`` (see :func:`classical`
            and :func:`from_module`); all see the same draws. With an ``executor``
            only the names are used (the executor runs the detectors).
        system: the link (sizes, modulation, channel, CSI, SNR convention, slot).
        snr_db: SNR points in dB under ``system.snr_def``.
        seed: master seed; batch ``k`` of a point draws from a generator seeded by
            ``(seed, snr, k)`` (:func:`point_seed`).
        max_symbols: symbol budget per point (scalar complex symbols, whole slots).
        min_errors: a point ends once every detector has this many symbol errors ...
        min_error_slots: ... in at least this many distinct slots (default:
            ``DEFAULT_MIN_ERROR_SLOTS`` or ``min_errors``, whichever is smaller), so
            that one bad channel draw cannot end a point.
        batch_size: slots per batch; default ``TARGET_SYMBOLS_PER_BATCH / (S Nt)``.
            The draws depend on it, so keep it fixed when comparing runs.
        progress: show a progress bar of finished batches on stderr (only on a terminal).
        dtype: real dtype of the simulated tensors.
        llr: also compute every detector's max-log LLRs and report the GMI they support
            (``BERPoint.gmi``; :mod:`mimoc.sim.llr`).
        on_llr: called with ``(detector, snr_db, LLRs, sent bits)`` for every batch
            (implies ``llr``), e.g. a :class:`~mimoc.sim.llr.LLRRecorder`.
        executor: runs the units (:class:`InProcessExecutor`'s interface); default: this
            process, one unit at a time. Whatever runs them, the results are consumed in
            batch order and the stopping rule sees exactly what the serial run sees, so
            the counts are the same; results of units beyond a point's stop are dropped.

    Returns:
        :class:`BERResult` with one curve per detector, points in ``snr_db`` order.
    """
    snrs = _check_arguments(detectors, snr_db, max_symbols, min_errors, min_error_slots,
                            batch_size)
    llr = llr or on_llr is not None
    if llr and getattr(system, "system", "complex") == "real":
        raise UsageError("LLR output is for complex systems (its error model is per complex "
                         "symbol); a real system gives hard decisions")
    if min_error_slots is None:
        min_error_slots = min(DEFAULT_MIN_ERROR_SLOTS, min_errors)
    per_slot = system.slot * system.nt
    if batch_size is None:
        batch_size = max(1, TARGET_SYMBOLS_PER_BATCH // per_slot)
    if executor is None:
        executor = InProcessExecutor(detectors, system, dtype, llr=llr, on_llr=on_llr)
    elif llr:
        raise UsageError("LLR output runs in this process only: simulate without an executor")
    names = list(detectors)
    result = BERResult(system, {name: [] for name in names}, seed, max_symbols, min_errors,
                       batch_size, min_error_slots, llr)
    total_slots = math.ceil(max_symbols / per_slot)
    batches = math.ceil(total_slots / batch_size)

    def unit_of(point: int, batch: int) -> Unit:
        return Unit(point, snrs[point], batch,
                    min(batch_size, total_slots - batch * batch_size),
                    point_seed(seed, snrs[point], batch))

    def enough(counts: SlotCounts) -> bool:
        return counts.errors >= min_errors and counts.error_slots >= min_error_slots

    totals = [{name: UnitResult.empty(system, llr) for name in names} for _ in snrs]
    ready: list[dict[int, UnitCounts]] = [{} for _ in snrs]
    submitted, consumed, done = [0] * len(snrs), [0] * len(snrs), [False] * len(snrs)
    in_flight, first = 0, 0
    # The bar counts batches against the worst case (every point spends its budget) and
    # jumps ahead when a point stops early, so its ETA is an upper bound.
    bar = progress_bar(total=batches * len(snrs), desc="ber", unit="batch", enabled=progress)
    try:
        with bar:
            while True:
                # Keep the executor's window full with the earliest points' next batches:
                # points are independent, so later points fill what one point cannot.
                point = first
                while in_flight < executor.window and point < len(snrs):
                    if done[point] or submitted[point] == batches:
                        point += 1
                        continue
                    executor.submit(unit_of(point, submitted[point]))
                    submitted[point] += 1
                    in_flight += 1
                if in_flight == 0:
                    break
                for unit, counts in executor.wait():
                    in_flight -= 1
                    p = unit.point
                    if done[p]:
                        continue  # ran ahead of its point's stop: not part of the result
                    ready[p][unit.batch] = counts
                    while consumed[p] in ready[p]:
                        for name, part in ready[p].pop(consumed[p]).items():
                            totals[p][name] = totals[p][name] + part
                        consumed[p] += 1
                        bar.update(1)
                        if consumed[p] == batches or all(
                                enough(t.symbols) for t in totals[p].values()):
                            done[p] = True
                            bar.update(batches - consumed[p])
                            ready[p].clear()
                            break
                while first < len(snrs) and done[first]:
                    first += 1
                if first < len(snrs):
                    bar.set_description(f"ber @ {snrs[first]:g} dB")
                    bar.set_postfix(
                        min_errors=min(t.symbols.errors for t in totals[first].values()),
                        min_error_slots=min(t.symbols.error_slots
                                            for t in totals[first].values()),
                        refresh=False)
    finally:
        executor.cancel()
    for p, snr in enumerate(snrs):
        for name in names:
            t = totals[p][name]
            result.curves[name].append(BERPoint.from_slot_counts(snr, t.symbols, t.bits, t.gmi))
    return result


def snr_at(points: Sequence[BERPoint], target_ser: float) -> float | None:
    """SNR (dB) at which a SER curve reaches ``target_ser``, interpolated log-linearly.

    Between the two measured points that bracket the target, ``log10(SER)`` is
    taken as linear in dB. Returns the SNR of a point that hits the target
    exactly, and ``None`` when the curve does not cross the target between
    two points with non-zero SER (it starts below it, never reaches it, or
    drops from above the target straight to zero errors).

    Example::

        >>> pts = [BERPoint.from_counts(s, 10_000, e, e, 2) for s, e in [(0, 1000), (10, 10)]]
        >>> snr_at(pts, 1e-2)
        5.0
    """
    if not 0.0 < target_ser < 1.0:
        raise UsageError(f"target SER must lie in (0, 1), got {target_ser}")
    ordered = sorted(points, key=lambda p: p.snr_db)
    for p in ordered:
        if p.ser == target_ser:
            return p.snr_db
    for a, b in zip(ordered, ordered[1:], strict=False):
        if a.ser > target_ser > b.ser:
            if b.ser <= 0.0:
                return None
            la, lb, lt = math.log10(a.ser), math.log10(b.ser), math.log10(target_ser)
            return a.snr_db + (lt - la) / (lb - la) * (b.snr_db - a.snr_db)
    return None
