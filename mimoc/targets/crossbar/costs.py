"""The schedule's ``costs`` section: energy per slot and area of the single-shot schedule.

The counts come from what the schedule already holds (the per-slot pulse counts of the
channel tiles over the Monte Carlo draws, the static program-and-verify pulses and row
reads, the analog multiply-accumulates, the converters of the lowered graph, the
peripheral counts); :func:`mimoc.hardware.energy.slot_costs` turns them into joules and
square micrometres (the models: docs/devices.md).

- per slot: programming the channel arrays from reset (every pulse a potentiation pulse),
  the MVM cell reads (two cells per multiply-accumulate: the differential pair) of the
  slot-rate work and of ``slot`` symbols, and the ADC/DAC conversions of the same work
  (converter nodes and, with digital accumulation, the partial sums of tiled matrices);
- static programming: once at deployment, the program-and-verify pulses (counted at the
  potentiation voltage) and verify row reads of the static tiles;
- area: the cells, ADCs and DACs of one array set.
"""

from __future__ import annotations

from math import prod
from typing import Any

import numpy as np

from mimoc.compiler.dims import evaluate_shape
from mimoc.compiler.ir import Graph, Rate
from mimoc.hardware.devices import Device
from mimoc.hardware.energy import slot_costs
from mimoc.targets.crossbar.arrays import CHANNEL, STATIC, Matrix, matrix_id
from mimoc.targets.crossbar.config import CrossbarConfig


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


def schedule_costs(graph: Graph, matrices: list[Matrix], device: Device,
                   config: CrossbarConfig, files: dict[str, np.ndarray],
                   static: dict[str, Any], macs: dict[str, int],
                   peripherals: dict[str, int]) -> dict[str, Any]:
    """The ``costs`` section (module docstring) from the schedule's parts and npz entries."""
    pulses = 0.0
    for m in matrices:
        if m.role == CHANNEL:
            for t in m.tiles:
                drawn = np.abs(files[f"{t.id}.pulses"].astype(np.int64))   # [draws, r, c]
                pulses += float(drawn.sum()) / max(drawn.shape[0], 1)
    area = {"cells": peripherals["cells"], "adcs": peripherals["adcs"],
            "dacs": peripherals["dacs"]}
    per_slot = {"program_pulses": pulses,
                "mvm_cell_reads": 2 * (macs["per_symbol"] * config.slot + macs["slot_rate"]),
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
    return {"model": "mimoc.hardware.energy.slot_costs (docs/devices.md): first-order "
                     "energy of pulses, cell reads and conversions; area of cells and "
                     "converters",
            "per_slot": {"counts": per_slot, "energy_j": slot["energy_j"],
                         "energy_breakdown_j": slot["energy_breakdown_j"]},
            "static_programming": {"counts": static_counts, "energy_j": once["energy_j"],
                                   "energy_breakdown_j": once["energy_breakdown_j"]},
            "area_um2": slot["area_um2"], "area_breakdown_um2": slot["area_breakdown_um2"]}
