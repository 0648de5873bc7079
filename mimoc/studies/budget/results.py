"""What a budget is made of: one target's slot latency, a prepared target, a budget row and
the whole report (``mimoc budget --json`` is :meth:`BudgetReport.to_dict`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mimoc.sim.ber import BERPoint, EngineDetector
from mimoc.studies.budget.target_names import TargetSpec

#: Where each latency comes from (``Latency.source``): the text of the report's legend.
SOURCES = {
    "measured": "measured here: onnxruntime on this CPU, batch 1, median of repeated runs",
    "schedule": "estimated from the crossbar schedule's totals",
    "flops": "derived from the compiler's FLOPs and the processor's peak x utilisation",
}


@dataclass(frozen=True)
class Latency:
    """One slot's latency on a target.

    Attributes:
        preparation_s: once per channel realisation (slot stage, crossbar programming).
        detection_s: the slot's ``slot_symbols`` symbol vectors.
        slot_symbols: ``S``.
        source: ``measured``, ``schedule`` or ``flops`` (see :data:`SOURCES`).
        how: one line saying exactly how the numbers were obtained.
        details: the inputs of the numbers (runs, FLOPs, peak, schedule totals, ...).
    """

    preparation_s: float
    detection_s: float
    slot_symbols: int
    source: str
    how: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def per_slot_s(self) -> float:
        return self.preparation_s + self.detection_s

    @property
    def per_symbol_s(self) -> float:
        return self.detection_s / self.slot_symbols


@dataclass
class PreparedTarget:
    """A target ready to be costed and simulated.

    Attributes:
        spec: the target.
        latency: its slot latency (``None`` when unavailable).
        engine: ``(H, y, N0) -> x_hat`` on the target, for :func:`mimoc.sim.ber.simulate`;
            ``None`` for processors (they share the digital model,
            :data:`mimoc.studies.budget.measure.DIGITAL`).
        engine_at: crossbar only: the engine at a given C2C level (a fraction, 0.02 = 2%).
        ser_how: what runs the SER simulation.
        settings: the compile settings (manifest / schedule excerpt) for reports.
        artifact: the compiled artifact directory, if any.
        reason: why the target is unavailable (``None`` when it is available).
        c2c: crossbar only: the device's cycle-to-cycle variation, as text.
        failed: the target exists in this build but failed on this model (``reason`` says
            how).
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

    @property
    def available(self) -> bool:
        return self.reason is None


@dataclass(frozen=True)
class TargetBudget:
    """One row of the budget: latency vs the budget, and the SER on that target."""

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

    @property
    def available(self) -> bool:
        return self.reason is None and self.latency is not None

    @property
    def meets_budget(self) -> bool | None:
        return None if self.latency is None else self.latency.per_slot_s <= self.budget_s

    @property
    def margin_s(self) -> float | None:
        """``budget - per_slot``: spare time when positive, the shortfall when negative."""
        return None if self.latency is None else self.budget_s - self.latency.per_slot_s

    @property
    def headroom(self) -> float | None:
        """``budget / per_slot`` (> 1: meets the budget with that factor to spare)."""
        return None if self.latency is None else self.budget_s / self.latency.per_slot_s

    @property
    def vectors_per_s(self) -> float | None:
        return None if self.latency is None else self.latency.slot_symbols / \
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
        assert lat is not None
        row.update(
            latency_source=lat.source, latency_how=lat.how,
            preparation_s=lat.preparation_s, detection_s=lat.detection_s,
            per_slot_s=lat.per_slot_s, per_symbol_s=lat.per_symbol_s,
            slot_symbols=lat.slot_symbols,
            vectors_per_s=self.vectors_per_s,
            bits_per_s=self.vectors_per_s * self.bits_per_vector,
            budget_s=self.budget_s, meets_budget=self.meets_budget, margin_s=self.margin_s,
            headroom=self.headroom,
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

    def target(self, name: str) -> TargetBudget:
        for row in self.rows:
            if row.target == name:
                return row
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "slot_symbols": self.slot, "budget_s": self.budget_s,
                "snr_db": self.snr_db, "snr_def": self.snr_def,
                "ser_symbols": self.ser_symbols, "seed": self.seed,
                "sources": SOURCES, "targets": [row.to_dict() for row in self.rows],
                "notes": self.notes}
