"""``mimoc bench`` of a crossbar artifact: the device latency its schedule models, and how
long the IMC simulator takes to reproduce a slot on this CPU.

The two numbers answer different questions. The **modelled** latency is the device's:
per-slot programming of the channel arrays (expected over the schedule's seeded channel
draws), slot-rate analog work, then ``S`` x the per-symbol critical path (docs/design.md
section 7), rescaled to the requested ``S``. The **simulator** time is the wall time of
:meth:`mimoc.runtime.imc.IMCSchedule.detect` on one batch of random channels at the
device's own C2C (median over repeated calls, per slot = median / B): the cost of a BER
study on this machine, not a property of the device.

Example::

    >>> result = run_crossbar_bench(load_schedule("out/xb"), batches=(1, 64))
    >>> print(format_crossbar_bench(result))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from mimoc.runtime.bench import median_time
from mimoc.runtime.cpu import describe_cpu
from mimoc.runtime.imc import IMCSchedule
from mimoc.sim.numerology import SLOT_SYMBOLS
from mimoc.tables import text_table


@dataclass(frozen=True)
class CrossbarBench:
    path: str
    device: str
    slot: int
    programming_s: float  # per slot, expected over the schedule's channel draws
    programming_max_s: float  # the largest over those draws
    slot_compute_s: float
    symbol_s: float
    simulator: list[dict[str, Any]] = field(default_factory=list)

    @property
    def per_slot_s(self) -> float:
        return self.programming_s + self.slot_compute_s + self.slot * self.symbol_s

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "crossbar", "path": self.path, "device": self.device,
                "cpu": describe_cpu(),
                "slot_symbols": self.slot,
                "modelled": {"programming_s_per_slot": self.programming_s,
                             "programming_s_per_slot_max": self.programming_max_s,
                             "slot_compute_s": self.slot_compute_s,
                             "symbol_s": self.symbol_s, "per_slot_s": self.per_slot_s},
                "simulator": self.simulator}


def run_crossbar_bench(schedule: IMCSchedule, *, batches: Sequence[int] = (1, 64),
                       slot: int = SLOT_SYMBOLS, min_time: float = 0.5, seed: int = 0,
                       progress: Callable[[str], None] | None = None) -> CrossbarBench:
    """Modelled latency at ``slot`` symbols and simulator wall time at each batch size."""
    totals = schedule.totals
    config = schedule.model.get("config") or {}
    nt, nr = int(config["nt"]), int(config["nr"])
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for batch in batches:
        if progress is not None:
            progress(f"simulator, batch {batch}")
        if config.get("system") == "real":  # H [B, Nr, Nt] with N(0, 1) entries
            H = torch.randn(batch, nr, nt, generator=generator)
            y = torch.randn(batch, slot, nr, generator=generator)
        else:
            H = torch.randn(batch, 2 * nr, 2 * nt, generator=generator) / 2 ** 0.5
            y = torch.randn(batch, slot, 2 * nr, generator=generator)
        median, runs = median_time(lambda H=H, y=y: schedule.detect(H, y, seed=seed),
                                   min_time=min_time, min_runs=3, warmup=1)
        rows.append({"batch": batch, "median_s": median, "runs": runs,
                     "per_slot_s": median / batch})
    return CrossbarBench(str(schedule.path), schedule.device.name, slot,
                         float(totals["programming_s_per_slot"]),
                         float(totals.get("programming_s_per_slot_max",
                                          totals["programming_s_per_slot"])),
                         float(totals.get("slot_compute_s", 0.0)), float(totals["symbol_s"]),
                         rows)


def format_crossbar_bench(result: CrossbarBench) -> str:
    us = 1e6
    lines = [f"{result.path}: crossbar schedule on {result.device}, slot of {result.slot} "
             "symbols",
             f"modelled device latency per slot: {result.per_slot_s * us:.3f} us = programming "
             f"{result.programming_s * us:.3f} us (max over the schedule's draws "
             f"{result.programming_max_s * us:.3f}) + slot-rate {result.slot_compute_s * us:.3f}"
             f" us + {result.slot} x {result.symbol_s * us:.4f} us per symbol",
             f"IMC simulator on this CPU, {describe_cpu()} (wall time, not the device's):"]
    rows = [[str(row["batch"]), f"{row['median_s'] * 1e3:.3f}", f"{row['per_slot_s'] * 1e3:.3f}",
             str(row["runs"])] for row in result.simulator]
    lines += text_table(rows, ["batch", "median ms per call", "median ms per slot", "runs"],
                        right={0, 1, 2, 3}, indent="  ").splitlines()
    return "\n".join(lines)
