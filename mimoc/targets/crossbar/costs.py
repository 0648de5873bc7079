"""Per-slot event counts of a schedule and their area / energy, for ranking strategies.

The counts are the contract of :func:`mimoc.hardware.energy.slot_costs` (``device, counts ->
{"energy_j", "area_um2", ...}``): ``program_pulses`` (expected per slot, all copies and
both sides, verify corrections included), ``verify_reads`` (row reads per slot),
``mvm_cell_reads`` (cells read per slot: both arrays of a pair, channel copies included),
``adc_conversions`` / ``dac_conversions`` (per slot: one per converter and symbol, an
upper bound where a converter serves slot-rate work only), ``cells``, ``adcs``, ``dacs``.

Example::

    >>> counts = slot_counts(built.schedule, built.arrays)
    >>> costs = slot_costs_of(device, counts)      # energy and area, or a count-based proxy
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from mimoc.targets.crossbar.strategy import parse_strategy

try:  # the device model's energy and area (another part of mimoc; may be absent)
    from mimoc.hardware.energy import slot_costs as _device_slot_costs
except ImportError:  # pragma: no cover - depends on the installed tree
    _device_slot_costs = None


def slot_counts(schedule: Mapping[str, Any], arrays: Mapping[str, np.ndarray],
                ) -> dict[str, float]:
    """The per-slot counts of a built schedule (module docstring)."""
    strategy = parse_strategy(schedule["config"].get("strategy"))
    plan = schedule["programming"]["per_slot"]
    r = strategy.redundancy
    S = schedule["config"]["slot"]
    channel = {a["id"]: a for a in schedule["arrays"] if a["role"] == "channel"}
    channel_cells = sum(2 * a["shape"][0] * a["shape"][1] for a in channel.values())
    if "expected_pulses" in plan:
        pulses = float(plan["expected_pulses"])
    else:  # today's open loop: |signed pulses| of every draw, mean over the draws
        per_draw = sum(np.abs(arrays[f"{t}.pulses"].astype(np.int64)).sum(axis=(-2, -1))
                       for t in channel) if channel else np.zeros(1)
        pulses = float(r * np.mean(per_draw))
    matrices = {m["id"]: m for m in schedule["matrices"]}
    cell_reads = 0
    for node in schedule["program"]["nodes"]:
        if node["op"] != "CrossbarMVM":
            continue
        m = matrices[node["attrs"]["matrix"]]
        copies = r if m["role"] == "channel" else 1
        per = S if node.get("rate") == "symbol" else 1
        cell_reads += 2 * node["attrs"].get("reads", 1) * m["rows"] * m["cols"] * copies * per
    p = schedule["peripherals"]
    return {"program_pulses": pulses,
            "verify_reads": float(plan.get("expected_verify_reads", 0.0)),
            "mvm_cell_reads": float(cell_reads),
            "adc_conversions": float(p["adcs"] * S), "dac_conversions": float(p["dacs"] * S),
            "cells": float(p["cells"] + (r - 1) * channel_cells),
            "adcs": float(p["adcs"]), "dacs": float(p["dacs"])}


def slot_costs_of(device, counts: Mapping[str, float]) -> dict[str, Any]:
    """Energy and area per slot from :func:`mimoc.hardware.energy.slot_costs` when the tree
    has it; otherwise a proxy: ``area`` = cells, ``energy`` = pulses + verify reads (the
    terms a strategy changes), marked ``"model": "counts"``."""
    if _device_slot_costs is not None:
        return {"model": "mimoc.hardware.energy", **_device_slot_costs(device, dict(counts))}
    # TODO(merge): mimoc.hardware.energy.slot_costs(device, counts) -> {"energy_j",
    # "area_um2", ...} arrives with the device helper's branch; until then rank by counts.
    return {"model": "counts", "area_cells": counts["cells"],
            "energy_events": counts["program_pulses"] + counts["verify_reads"]}


def rank_key(latency_s: float, costs: Mapping[str, Any]) -> tuple[float, float, float]:
    """Cheapest first: slot latency, then area, then energy."""
    area = costs.get("area_um2", costs.get("area_cells", 0.0))
    energy = costs.get("energy_j", costs.get("energy_events", 0.0))
    return (float(latency_s), float(area), float(energy))


__all__ = ["rank_key", "slot_costs_of", "slot_counts"]
