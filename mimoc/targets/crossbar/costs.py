"""The schedule's ``costs`` section: energy per slot and area, one count model for every
channel programming strategy.

The counts come from what the schedule already holds (the per-slot plan of the channel
arrays over the Monte Carlo draws, the static program-and-verify pulses and row reads,
the analog multiply-accumulates, the converters of the lowered graph, the peripheral
counts); :func:`mimoc.hardware.energy.slot_costs` turns them into joules and square
micrometres (the models: docs/devices.md). The strategy search ranks its candidates by the
same section, so a strategy's cost is worked out one way everywhere.

- per slot: programming the channel arrays (open loop: the mean over the draws of the
  ``|pulses|`` of every tile, each a potentiation pulse, times the redundancy ``r``;
  with verification: the plan's expected pulses and row verify reads, copies included),
  the MVM cell reads (two cells per multiply-accumulate: the differential pair; the
  channel arrays' reads ``r`` times) of the slot-rate work and of ``slot`` symbols, and
  the ADC/DAC conversions of the same work (converter nodes and, with digital
  accumulation, the partial sums of tiled matrices);
- static programming: once at deployment, the program-and-verify pulses (counted at the
  potentiation voltage) and verify row reads of the static tiles;
- area: the cells (channel cells ``r`` times), ADCs and DACs of one array set.
"""

from __future__ import annotations

from collections.abc import Mapping
from math import prod
from typing import Any

import numpy as np

from mimoc.compiler.dims import evaluate_shape
from mimoc.compiler.ir import Graph, Rate
from mimoc.hardware.devices import Device
from mimoc.hardware.energy import slot_costs
from mimoc.targets.crossbar.arrays import CHANNEL, STATIC, Matrix, matrix_id
from mimoc.targets.crossbar.config import CrossbarConfig

MODEL = ("mimoc.hardware.energy.slot_costs (docs/devices.md): first-order energy of pulses, "
         "cell reads and conversions; area of cells and converters")


def conversions(graph: Graph, matrices: list[Matrix], config: CrossbarConfig,
                ) -> dict[str, int]:
    """ADC and DAC conversions of one slot (``config.slot`` symbols and the slot-rate work)."""
    sizes = {"B": 1, "S": 1, **dict(graph.dim_sizes)}
    by_id = {m.id: m for m in matrices}
    out = {"adc_conversions": 0, "dac_conversions": 0}
    for n in graph.nodes:
        per_slot = config.slot if n.rate == Rate.SYMBOL else 1
        if n.op in ("ADC", "DAC"):
            key = "adc_conversions" if n.op == "ADC" else "dac_conversions"
            out[key] += per_slot * int(prod(evaluate_shape(n.shape, sizes)))
        elif n.op == "CrossbarMVM" and config.accumulation == "digital":
            m = by_id[matrix_id(n)]
            if m.row_tiles > 1:  # each partial sum out through an ADC, the sum back in
                out["adc_conversions"] += per_slot * n.attrs["reads"] * m.row_tiles * m.cols
                out["dac_conversions"] += per_slot * n.attrs["reads"] * m.cols
    return out


def _cell_reads(graph: Graph, matrices: list[Matrix], config: CrossbarConfig,
                redundancy: int) -> int:
    """Cells read in one slot's MVMs: two per multiply-accumulate, channel copies included."""
    by_id = {m.id: m for m in matrices}
    reads = 0
    for n in graph.nodes:
        if n.op == "CrossbarMVM":
            m = by_id[matrix_id(n)]
            copies = redundancy if m.role == CHANNEL else 1
            per_slot = config.slot if n.rate == Rate.SYMBOL else 1
            reads += 2 * n.attrs["reads"] * m.rows * m.cols * copies * per_slot
    return reads


def _channel_programming(matrices: list[Matrix], files: Mapping[str, np.ndarray],
                         per_slot_plan: Mapping[str, Any], redundancy: int,
                         ) -> dict[str, float]:
    """Pulses (and verify row reads) of programming the channel arrays once per slot."""
    if "expected_pulses" in per_slot_plan:  # a strategy's plan: copies and corrections in
        reads = float(per_slot_plan.get("expected_verify_reads", 0.0))
        row_cells = [t.shape[1] for m in matrices if m.role == CHANNEL for t in m.tiles]
        return {"program_pulses": float(per_slot_plan["expected_pulses"]),
                "verify_reads": reads,
                "verify_row_cells": float(np.mean(row_cells)) if reads and row_cells else 0.0}
    pulses = 0.0
    for m in matrices:
        if m.role == CHANNEL:
            for t in m.tiles:
                drawn = np.abs(files[f"{t.id}.pulses"].astype(np.int64))   # [draws, r, c]
                pulses += float(drawn.sum()) / max(drawn.shape[0], 1)
    return {"program_pulses": redundancy * pulses}


def schedule_costs(graph: Graph, matrices: list[Matrix], device: Device,
                   config: CrossbarConfig, files: Mapping[str, np.ndarray],
                   static: Mapping[str, Any], per_slot_plan: Mapping[str, Any],
                   peripherals: Mapping[str, int]) -> dict[str, Any]:
    """The ``costs`` section (module docstring) from the schedule's parts and npz entries."""
    r = config.channel_strategy.redundancy
    channel_cells = sum(2 * m.rows * m.cols for m in matrices if m.role == CHANNEL)
    area = {"cells": peripherals["cells"] + (r - 1) * channel_cells,
            "adcs": peripherals["adcs"], "dacs": peripherals["dacs"]}
    per_slot = {**_channel_programming(matrices, files, per_slot_plan, r),
                "mvm_cell_reads": _cell_reads(graph, matrices, config, r),
                **conversions(graph, matrices, config), **area}
    static_pulses = sum(int(files[f"{t.id}.verify_pulses"].astype(np.int64).sum())
                        for m in matrices if m.role == STATIC for t in m.tiles)
    reads = sum(int(t.get("verify_row_reads", 0)) for t in static["tiles"])
    cell_reads = sum(int(t.get("verify_row_reads", 0)) * int(t["cols"])
                     for t in static["tiles"])
    static_counts = {"program_pulses": static_pulses, "verify_reads": reads,
                     "verify_row_cells": cell_reads / reads if reads else 0}
    slot = slot_costs(device, per_slot)
    once = slot_costs(device, static_counts)
    return {"model": MODEL,
            "per_slot": {"counts": per_slot, "energy_j": slot["energy_j"],
                         "energy_breakdown_j": slot["energy_breakdown_j"]},
            "static_programming": {"counts": static_counts, "energy_j": once["energy_j"],
                                   "energy_breakdown_j": once["energy_breakdown_j"]},
            "area_um2": slot["area_um2"], "area_breakdown_um2": slot["area_breakdown_um2"]}


def rank_key(latency_s: float, costs: Mapping[str, Any]) -> tuple[float, float, float]:
    """Cheapest first: slot latency, then area, then energy per slot (a ``costs`` section)."""
    return (float(latency_s), float(costs["area_um2"]), float(costs["per_slot"]["energy_j"]))


__all__ = ["conversions", "rank_key", "schedule_costs"]
