"""What a budget is made of: one target's slot latency, a prepared target, a budget row with
its joint verdict and the whole report (``mimoc budget --json`` is
:meth:`BudgetReport.to_dict`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mimoc.sim.ber import BERPoint, EngineDetector
from mimoc.studies.budget.accuracy import DEFAULT_MAX_LOSS_DB, DEFAULT_TARGET_SER, Loss
from mimoc.studies.budget.target_names import TargetSpec
from mimoc.studies.budget.timing import DEFAULT_PERCENTILE, Tail
from mimoc.studies.budget.verdict import accuracy_status, decide, latency_status
from mimoc.studies.budget.workload import Workload

#: Where each latency comes from (``Latency.source``): the text of the report's legend.
SOURCES = {
    "measured": "measured here on this CPU (onnxruntime, or torch for mmse) at the workload's "
                "batch: percentiles over thousands of timed calls",
    "schedule": "estimated from the crossbar schedule (per-slot programming over channel "
                "draws, then the symbols' critical path)",
    "flops": "the compiler's FLOPs over the processor's peak x utilisation: a lower bound at "
             "utilisation 1",
}

#: The loss keys of a row without an SER simulation (``--max-symbols 0``).
NO_LOSS = {"snr_loss_db": None, "snr_loss_ci_db": None, "snr_loss_beyond_grid": None,
           "snr_loss_grid_db": None, "bootstrap_replicates": 0}


@dataclass(frozen=True)
class Latency:
    """One slot's latency on a target, for the budget's workload.

    Attributes:
        preparation_s: once per channel realisation, summed over the workload's channels
            (slot stage, crossbar programming); median stage time when measured, mean over
            channel draws for a crossbar.
        detection_s: the workload's symbol vectors.
        slot_symbols: ``S``.
        source: ``measured``, ``schedule`` or ``flops`` (see :data:`SOURCES`).
        how: one line saying exactly how the numbers were obtained.
        details: the inputs of the numbers (calls, FLOPs, peak, schedule totals, ...).
        vectors: symbol vectors per slot in the workload (default ``slot_symbols``).
        tail: the per-slot distribution (measured calls, crossbar channel draws).
        lower_bound: the numbers are lower bounds (FLOPs over a peak).
    """

    preparation_s: float
    detection_s: float
    slot_symbols: int
    source: str
    how: str
    details: dict[str, Any] = field(default_factory=dict)
    vectors: int | None = None
    tail: Tail | None = None
    lower_bound: bool = False

    @property
    def per_slot_s(self) -> float:
        return self.preparation_s + self.detection_s

    @property
    def vectors_per_slot(self) -> int:
        return self.vectors or self.slot_symbols

    @property
    def per_symbol_s(self) -> float:
        return self.detection_s / self.vectors_per_slot

    def verdict_s(self, percentile: float) -> float:
        """The latency the verdict compares with the budget: the tail's ``percentile``, else
        the slot (a bound, for FLOPs)."""
        return self.per_slot_s if self.tail is None else self.tail.at(percentile)


@dataclass(frozen=True)
class Capacity:
    """How many subcarriers a target detects within the slot budget (``upper_bound``: at
    most that many), and how that was worked out; ``array_sets``: crossbar array sets that
    would cover the workload (``None``: none can)."""

    subcarriers_per_slot: int
    how: str
    upper_bound: bool = False
    array_sets: int | None = None
    replication: dict[str, Any] = field(default_factory=dict)


@dataclass
class PreparedTarget:
    """A target ready to be costed and simulated.

    Attributes:
        spec: the target.
        latency: its slot latency (``None`` when unavailable).
        engine: ``(H, y, N0) -> x_hat`` on the target, for the SER simulation; ``None`` for
            processors (they share the digital model,
            :data:`mimoc.studies.budget.measure.DIGITAL`).
        engine_at: crossbar only: the engine at a given C2C level (a fraction, 0.02 = 2%).
        ser_how: what runs the SER simulation.
        settings: the compile settings (manifest / schedule excerpt) for reports.
        artifact: the compiled artifact directory, if any.
        reason: why the target is unavailable (``None`` when it is available).
        c2c: crossbar only: the device's cycle-to-cycle variation, as text.
        failed: the target exists in this build but failed on this model.
        capacity: subcarriers per slot within the budget.
    """

    spec: TargetSpec
    latency: Latency | None = None
    engine: EngineDetector | None = None
    engine_at: Callable[[float], EngineDetector] | None = None
    ser_how: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    artifact: Path | None = None
    reason: str | None = None
    c2c: str = ""
    failed: bool = False
    capacity: Capacity | None = None

    @property
    def available(self) -> bool:
        return self.reason is None


@dataclass(frozen=True)
class TargetBudget:
    """One row of the budget: latency against the budget, SNR loss against the limit, the
    joint verdict (:mod:`mimoc.studies.budget.verdict`) and the subcarriers it serves."""

    target: str
    kind: str
    budget_s: float
    latency: Latency | None = None
    ser: BERPoint | None = None
    ser_how: str = ""
    reason: str | None = None
    bits_per_vector: int = 1
    settings: dict[str, Any] = field(default_factory=dict)
    failed: bool = False
    loss: Loss | None = None
    percentile: float = DEFAULT_PERCENTILE
    max_loss_db: float = DEFAULT_MAX_LOSS_DB
    capacity: Capacity | None = None

    @property
    def available(self) -> bool:
        return self.reason is None and self.latency is not None

    @property
    def latency_status(self) -> tuple[bool | None, str]:
        assert self.latency is not None
        return latency_status(self.latency, self.budget_s, self.percentile)

    @property
    def accuracy_status(self) -> tuple[bool | None, str]:
        return accuracy_status(self.loss, self.max_loss_db)

    @property
    def meets_budget(self) -> bool | None:
        """The latency part of the verdict (``None``: not known, e.g. a lower bound within
        the budget)."""
        return None if self.latency is None else self.latency_status[0]

    @property
    def verdict(self) -> str:
        return decide(self.latency_status[0], self.accuracy_status[0])[0]

    @property
    def missed(self) -> list[str]:
        return decide(self.latency_status[0], self.accuracy_status[0])[1]

    @property
    def verdict_reason(self) -> str:
        """Why the verdict is not ``meets``: each part's reason, joined."""
        parts = [status[1] for status in (self.latency_status, self.accuracy_status)
                 if status[0] is not True and status[1]]
        return "; ".join(parts)

    @property
    def verdict_latency_s(self) -> float | None:
        return None if self.latency is None else self.latency.verdict_s(self.percentile)

    @property
    def margin_s(self) -> float | None:
        """``budget - latency`` at the verdict's percentile: spare time when positive."""
        value = self.verdict_latency_s
        return None if value is None else self.budget_s - value

    @property
    def headroom(self) -> float | None:
        value = self.verdict_latency_s
        return None if value is None else self.budget_s / value

    @property
    def vectors_per_s(self) -> float | None:
        return None if self.latency is None else self.latency.vectors_per_slot / \
            self.latency.per_slot_s

    def to_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {"target": self.target, "kind": self.kind,
                               "available": self.available}
        if not self.available:
            row["reason"] = self.reason
            if self.failed:
                row["failed"] = True
            return row
        lat = self.latency
        assert lat is not None and self.vectors_per_s is not None
        verdict, missed = decide(self.latency_status[0], self.accuracy_status[0])
        cap = self.capacity
        row.update(
            source=lat.source, latency_source=lat.source, latency_how=lat.how,
            latency_us=self.verdict_latency_s * 1e6,
            latency_percentile=None if lat.tail is None else self.percentile,
            latency_is_lower_bound=lat.lower_bound,
            preparation_s=lat.preparation_s, detection_s=lat.detection_s,
            per_slot_s=lat.per_slot_s, per_symbol_s=lat.per_symbol_s,
            slot_symbols=lat.slot_symbols, vectors_per_slot=lat.vectors_per_slot,
            vectors_per_s=self.vectors_per_s,
            bits_per_s=self.vectors_per_s * self.bits_per_vector,
            tail=None if lat.tail is None else lat.tail.to_dict(),
            budget_s=self.budget_s, meets_budget=self.meets_budget, margin_s=self.margin_s,
            headroom=self.headroom,
            **(NO_LOSS if self.loss is None else self.loss.to_dict()),
            accuracy_within=self.accuracy_status[0],
            verdict=verdict, misses=missed, verdict_reason=self.verdict_reason,
            subcarriers_per_slot=None if cap is None else cap.subcarriers_per_slot,
            subcarriers_per_slot_is_upper_bound=None if cap is None else cap.upper_bound,
            covers_workload=self.meets_budget, capacity_how=None if cap is None else cap.how,
            array_sets=None if cap is None else cap.array_sets,
            replication=None if cap is None or not cap.replication else cap.replication,
            ser=None if self.ser is None else self.ser.to_dict(), ser_source=self.ser_how,
            details=lat.details)
        return row


@dataclass
class BudgetReport:
    """Every target's budget row for one model (``mimoc budget``)."""

    model: dict[str, Any]
    slot: int
    budget_s: float
    snr_db: float | None
    snr_def: str
    ser_symbols: int
    seed: int
    rows: list[TargetBudget] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    target_ser: float = DEFAULT_TARGET_SER
    max_loss_db: float = DEFAULT_MAX_LOSS_DB
    percentile: float = DEFAULT_PERCENTILE
    workload: Workload = field(default_factory=Workload)
    link: dict[str, Any] = field(default_factory=dict)
    accuracy: dict[str, Any] = field(default_factory=dict)

    def target(self, name: str) -> TargetBudget:
        for row in self.rows:
            if row.target == name:
                return row
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        from mimoc.sim import numerology

        return {"model": self.model, "link": self.link, "slot_symbols": self.slot,
                "budget_s": self.budget_s, "budget_us": self.budget_s * 1e6,
                "max_loss_db": self.max_loss_db, "target_ser": self.target_ser,
                "percentile": self.percentile, "workload": self.workload.to_dict(),
                "numerology": {"slot_symbols": numerology.SLOT_SYMBOLS,
                               "subcarriers_per_rb": numerology.SUBCARRIERS_PER_RB,
                               "subcarriers_100mhz_30khz":
                                   numerology.SUBCARRIERS_100MHZ_30KHZ},
                "snr_db": self.snr_db, "snr_def": self.snr_def,
                "ser_symbols": self.ser_symbols, "seed": self.seed,
                "accuracy": self.accuracy, "sources": SOURCES,
                "targets": [row.to_dict() for row in self.rows], "notes": self.notes}
