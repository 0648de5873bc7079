"""Accuracy in a budget: the SNR loss at a target SER against the fp32 model.

An error rate at one SNR says little about a verdict; the loss of a target is how much more
SNR it needs than the fp32 digital model (PyTorch) to reach the same SER:

1. **where the reference crosses**: the fp32 model's SER is simulated at SNRs 2 dB apart,
   from the middle of its training range towards the target SER (:func:`find_crossing`),
   until two points bracket it; the crossing is interpolated (``--snr`` skips this step);
2. **one grid, one set of slots**: every target and the reference run on the same seeded
   slots at a small SNR grid around that crossing (:func:`grid_offsets`), keeping each
   slot's error count (:func:`simulate_slots`: the per-batch seeded units of
   :func:`mimoc.sim.ber.simulate`, here or on workers); a point ends when its symbol budget is
   spent or every detector has ``MIN_ERRORS`` errors (one rule for all, so the slots stay
   paired);
3. **the loss**: each curve's crossing SNR is interpolated log-linearly between the two
   grid points that bracket the target SER (:func:`mimoc.sim.ber.snr_at`; a point with
   no error counts half an error), and ``loss = crossing(target) - crossing(fp32)``;
4. **its interval**: the slot is the independent unit (the ``S`` symbols of a slot share a
   channel, so their errors cluster), so the 95% interval is a paired bootstrap over slots
   (:func:`snr_losses`): each replicate resamples every grid point's slots with
   replacement, the same slots for the target and the reference, and recomputes both
   crossings. A curve still above the target SER at the top of the grid has a loss beyond
   the grid (``+inf``: "more than the grid reaches"); one already below it at the bottom,
   ``-inf``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np
import torch

from mimoc.sim.ber import (
    BERPoint,
    EngineDetector,
    InProcessExecutor,
    Unit,
    UnitCounts,
    simulate,
    snr_at,
)
from mimoc.sim.stats import SlotCounts
from mimoc.sim.system import MIMOSystem

DEFAULT_TARGET_SER = 1e-3
DEFAULT_MAX_LOSS_DB = 0.5
#: Bootstrap replicates of the loss interval.
BOOTSTRAP = 1000
#: A grid point ends once every detector has this many symbol errors.
MIN_ERRORS = 200
SEARCH_STEP_DB = 2.0
SEARCH_LIMITS_DB = (-30.0, 60.0)
#: Slots per batch of the grid simulation (about 16k scalar symbols).
TARGET_SYMBOLS_PER_BATCH = 16_384


def grid_offsets(max_loss_db: float) -> list[float]:
    """SNR offsets from the reference's crossing: 0.5 dB apart from -1 dB to 1.5 dB past the
    loss limit (where the verdict is decided), then one point 1 dB further."""
    top = max(max_loss_db, 0.0) + 1.5
    fine = [-1.0 + 0.5 * i for i in range(int(round((top + 1.0) / 0.5)) + 1)]
    return fine + [fine[-1] + 1.0]


class _Point(NamedTuple):  # what snr_at reads of a BERPoint
    snr_db: float
    ser: float


def crossing(snrs: Sequence[float], ser: Sequence[float], symbols: Sequence[int],
             target_ser: float) -> float:
    """SNR where a SER curve crosses ``target_ser`` (log-linear between the bracketing grid
    points); ``+inf`` when it stays above the target over the grid, ``-inf`` when it is
    already below it at the lowest point."""
    points = [_Point(s, r if r > 0 else 0.5 / n) for s, r, n in zip(snrs, ser, symbols,
                                                                   strict=True)]
    found = snr_at(points, target_ser)  # type: ignore[arg-type]  # reads snr_db and ser
    if found is not None:
        return found
    ordered = sorted(points)
    return math.inf if ordered[-1].ser > target_ser else -math.inf


@dataclass
class SlotErrors:
    """Per-slot error counts of several detectors at one SNR, on the same slots."""

    snr_db: float
    symbols_per_slot: int      # S x Nt scalar symbols
    bits_per_symbol: int
    errors: dict[str, np.ndarray]
    bit_errors: dict[str, np.ndarray]

    @property
    def slots(self) -> int:
        return len(next(iter(self.errors.values())))

    @property
    def symbols(self) -> int:
        return self.slots * self.symbols_per_slot

    def point(self, name: str) -> BERPoint:
        """The SER/BER point of ``name`` with slot-clustered intervals (the slot is the
        independent unit, :func:`mimoc.sim.stats.cluster_interval`)."""
        symbols = SlotCounts().add(torch.from_numpy(self.errors[name]), self.symbols_per_slot)
        bits = SlotCounts().add(torch.from_numpy(self.bit_errors[name]),
                                self.symbols_per_slot * self.bits_per_symbol)
        return BERPoint.from_slot_counts(self.snr_db, symbols, bits)


class _KeptSlots:
    """An executor's stand-in for :func:`simulate`: its units ask for every slot's errors,
    and what each unit gave is kept, by ``(point, batch)``; ``say`` is told each point as
    its first unit starts (in point order, as :func:`simulate` starts them)."""

    def __init__(self, executor: Any, snrs: Sequence[float],
                 say: Callable[[str], None]) -> None:
        self.executor, self.snrs, self.say = executor, snrs, say
        self.kept: dict[tuple[int, int], UnitCounts] = {}
        self._started: set[int] = set()

    @property
    def window(self) -> int:
        return self.executor.window

    def submit(self, unit: Unit) -> None:
        if unit.point not in self._started:
            self._started.add(unit.point)
            self.say(f"simulating the SER at {self.snrs[unit.point]:g} dB")
        self.executor.submit(replace(unit, keep_slots=True))

    def wait(self) -> list[tuple[Unit, UnitCounts]]:
        done = self.executor.wait()
        for unit, counts in done:
            self.kept[unit.point, unit.batch] = counts
        return done

    def cancel(self) -> None:
        self.executor.cancel()


def simulate_slots(detectors: Mapping[str, EngineDetector], system: MIMOSystem,
                   snrs: Sequence[float], *, seed: int, max_symbols: int,
                   min_errors: int = MIN_ERRORS,
                   say: Callable[[str], None] = lambda text: None,
                   executor: Any = None) -> list[SlotErrors]:
    """Every detector on the same seeded slots at each SNR, errors kept per slot.

    The units are :func:`mimoc.sim.ber.simulate`'s (batch ``k`` of a point drawn from
    ``point_seed(seed, snr, k)``, :data:`TARGET_SYMBOLS_PER_BATCH` symbols a batch) under
    this module's stopping rule, so a point's slots are those :func:`simulate` counts with
    the same arguments. ``executor``: runs the units (:func:`simulate`'s; default: this
    process; with one, only the names of ``detectors`` are used); the units are consumed
    in batch order, so any executor gives the same slots.
    """
    snrs = [float(snr) for snr in snrs]
    per_slot = system.slot * system.nt
    batch = max(1, TARGET_SYMBOLS_PER_BATCH // per_slot)
    kept = _KeptSlots(executor or InProcessExecutor(detectors, system), snrs, say)
    # min_error_slots=1: a point ends on its errors alone (min_errors >= 1 error implies
    # one slot with errors), one rule for every detector so that the slots stay paired
    result = simulate(detectors, system, snrs, seed=seed, max_symbols=max_symbols,
                      min_errors=min_errors, min_error_slots=1, batch_size=batch,
                      executor=kept)
    names = list(detectors)
    out = []
    for p, snr in enumerate(snrs):
        parts: list[UnitCounts] = []
        slots = 0  # batch by batch up to the slots that the stopping rule consumed
        while slots < result.curves[names[0]][p].slots:
            parts.append(kept.kept[p, len(parts)])
            slots += len(parts[-1][names[0]].slot_errors[0])
        out.append(SlotErrors(snr, per_slot, system.constellation.bits_per_symbol,
                              {name: np.concatenate([part[name].slot_errors[0]
                                                     for part in parts]) for name in names},
                              {name: np.concatenate([part[name].slot_errors[1]
                                                     for part in parts]) for name in names}))
    return out


@dataclass(frozen=True)
class Loss:
    """A target's SNR loss at the target SER against the reference.

    ``value_db`` and ``ci_db`` (95%, paired bootstrap over slots) may be ``+-inf``: beyond
    the grid, whose reach is ``range_db`` (lowest and highest grid SNR minus the
    reference's crossing). ``value_db`` is ``None`` when it cannot be measured (``note``
    says why).
    """

    value_db: float | None
    ci_db: tuple[float, float] | None
    range_db: tuple[float, float]
    replicates: int = 0
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        def finite(v):
            return v if v is not None and math.isfinite(v) else None

        return {"snr_loss_db": finite(self.value_db),
                "snr_loss_ci_db": None if self.ci_db is None else
                [finite(self.ci_db[0]), finite(self.ci_db[1])],
                "snr_loss_beyond_grid": None if self.value_db is None or
                math.isfinite(self.value_db) else ("above" if self.value_db > 0 else "below"),
                "snr_loss_grid_db": [finite(v) for v in self.range_db],
                "bootstrap_replicates": self.replicates,
                **({"snr_loss_note": self.note} if self.note else {})}


def _resampled_sers(grid: Sequence[SlotErrors], names: Sequence[str], replicates: int,
                    rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``name -> [replicates, points]`` SER over each point's slots resampled with
    replacement: the same slots for every name (paired)."""
    out = {name: np.empty((replicates, len(grid))) for name in names}
    for j, g in enumerate(grid):
        for chunk in range(0, replicates, 100):  # bounded memory for long runs
            rows = min(100, replicates - chunk)
            idx = rng.integers(0, g.slots, size=(rows, g.slots), dtype=np.int64)
            for name in names:
                out[name][chunk:chunk + rows, j] = g.errors[name][idx].sum(axis=1) / g.symbols
    return out


def snr_losses(grid: Sequence[SlotErrors], names: Sequence[str], reference: str,
               target_ser: float, *, replicates: int = BOOTSTRAP,
               seed: int = 0) -> dict[str, Loss]:
    """The loss of each of ``names`` against ``reference`` on ``grid`` (the module's steps 3
    and 4)."""
    snrs = [g.snr_db for g in grid]
    symbols = [g.symbols for g in grid]

    def cross(sers) -> float:
        return crossing(snrs, sers, symbols, target_ser)

    def total(name: str) -> list[float]:
        return [g.errors[name].sum() / g.symbols for g in grid]

    ref = cross(total(reference))
    if not math.isfinite(ref):
        where = "stays above" if ref > 0 else "is already below"
        note = (f"the fp32 model {where} SER {target_ser:g} from {min(snrs):g} to "
                f"{max(snrs):g} dB: no crossing to compare with")
        return {name: Loss(None, None, (math.nan, math.nan), note=note) for name in names}
    reach = (min(snrs) - ref, max(snrs) - ref)
    sers = _resampled_sers(grid, list(dict.fromkeys([reference, *names])), replicates,
                           np.random.default_rng(seed))
    ref_cross = np.array([cross(row) for row in sers[reference]])
    kept = np.isfinite(ref_cross)
    out = {}
    for name in names:
        value = cross(total(name)) - ref
        if kept.sum() < 0.95 * replicates:  # the reference's own crossing is not resolved
            out[name] = Loss(value, None, reach, int(kept.sum()),
                             note=f"the fp32 model's crossing leaves the grid in "
                                  f"{int((~kept).sum())} of {replicates} bootstrap replicates")
            continue
        sample = np.array([cross(row) for row in sers[name][kept]]) - ref_cross[kept]
        ci = (float(np.quantile(sample, 0.025, method="lower")),
              float(np.quantile(sample, 0.975, method="higher")))
        out[name] = Loss(value, ci, reach, int(kept.sum()))
    return out


def find_crossing(engine: EngineDetector, system: MIMOSystem, start_db: float,
                  target_ser: float, *, seed: int, max_symbols: int,
                  say: Callable[[str], None] = lambda text: None, executor: Any = None,
                  ) -> tuple[float | None, list[BERPoint]]:
    """Where ``engine`` crosses ``target_ser``: SNRs ``SEARCH_STEP_DB`` apart from
    ``start_db`` towards the target until two bracket it. Returns the interpolated crossing
    (``None``: not within :data:`SEARCH_LIMITS_DB`) and the points simulated.
    ``executor``: runs :func:`simulate`'s units, its one detector named ``"fp32"`` (the
    points are the same as without it)."""
    points: list[BERPoint] = []
    snr, direction = float(start_db), 0
    while SEARCH_LIMITS_DB[0] <= snr <= SEARCH_LIMITS_DB[1]:
        say(f"locating the fp32 model's SER {target_ser:g} ({snr:g} dB)")
        point = simulate({"fp32": engine}, system, [snr], seed=seed, max_symbols=max_symbols,
                         min_errors=MIN_ERRORS, executor=executor).curves["fp32"][0]
        points.append(point)
        step = 1 if point.ser > target_ser else -1
        if direction and step != direction:  # the last two points bracket the target
            a, b = sorted(points[-2:], key=lambda p: p.snr_db)
            found = crossing([a.snr_db, b.snr_db], [a.ser, b.ser], [a.symbols, b.symbols],
                             target_ser)
            return (found if math.isfinite(found) else (a.snr_db + b.snr_db) / 2), points
        if point.ser == target_ser:
            return snr, points
        direction = step
        snr += step * SEARCH_STEP_DB
    return None, points
