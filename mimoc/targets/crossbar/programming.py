"""Programming plans: per-slot channel arrays (no verify) and one-time static arrays (verify).

Channel arrays (docs/design.md section 7, "programming without verification"): every slot the
tiles of each channel matrix are programmed from reset, row by row; the cells of a row in
parallel. A row takes ``max_row(n) * pulse_width``, a tile the sum over its rows (both sides
of the differential pair are programmed at the same time, so a row's ``n`` is the larger
side's, i.e. ``|signed pulses|``). Tiles of one *write group* are programmed one after
another, groups in parallel; a slot's programming time is the slowest group's sum. It
depends on ``H``, so the schedule gives its mean (the *expected* time) over
``config.mc_draws`` seeded channel draws, with their std, min and max, and the per-row plan
of draw 0 as an example. ``arrays.npz`` keeps the signed pulse counts of every draw
(``<tile>.pulses [draws, rows, cols]``), so the times can be recomputed from it.

Static arrays ("programming with verification", once at deployment):
:func:`mimoc.hardware.programming.program_with_verify` per side; a tile row takes the
slower side's verify time; tiles and groups combine as above.

Example::

    >>> plan, files = channel_plan(matrices, values, device, config)
    >>> plan["expected_s"] > 0
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from mimoc.hardware.devices import Device
from mimoc.hardware.programming import program_with_verify
from mimoc.targets.crossbar.arrays import (
    CHANNEL,
    STATIC,
    Matrix,
    channel_clip,
    pulse_dtype,
    signed_pulses,
    static_clip,
    target_conductances,
    write_groups,
)
from mimoc.targets.crossbar.channel import program_matrix
from mimoc.targets.crossbar.config import CrossbarConfig


def verify_many(targets: list[torch.Tensor], device: Device, generator: torch.Generator,
                on_cells: Callable[[int], None] | None = None) -> list[Any]:
    """:func:`program_with_verify` of many ``[rows, cols]`` targets in few batched calls:
    targets with the same row count are stacked, narrower ones padded with ``Gmin`` columns
    (a cell at ``Gmin`` needs no pulse, so the padding changes no row's time); results are
    sliced back, in order. ``on_cells(count)``: cells finished, as they finish (padding
    cells not counted), for a progress bar."""
    by_rows: dict[int, list[int]] = {}
    for index, target in enumerate(targets):
        by_rows.setdefault(target.shape[0], []).append(index)
    out: list[Any] = [None] * len(targets)
    for rows in sorted(by_rows):
        members = by_rows[rows]
        width = max(targets[i].shape[1] for i in members)
        stack = torch.full((len(members), rows, width), device.g_min_us, dtype=torch.float64)
        for slot, i in enumerate(members):
            stack[slot, :, :targets[i].shape[1]] = targets[i]
        padding = sum(rows * (width - targets[i].shape[1]) for i in members)
        result = program_with_verify(stack, device, generator,
                                     on_cells=_less(on_cells, padding))
        for slot, i in enumerate(members):
            cols = targets[i].shape[1]
            out[i] = type(result)(result.conductance_us[slot, :, :cols],
                                  result.pulses[slot, :, :cols],
                                  result.iterations[slot, :, :cols], result.row_time_s[slot],
                                  result.converged[slot, :, :cols])
    return out


def _less(on_cells: Callable[[int], None] | None, padding: int) -> Callable[[int], None]:
    """``on_cells`` without the first ``padding`` cells (the Gmin padding of a stack, which
    the open-loop pass finishes, so they are in the first count)."""
    left = padding

    def tell(count: int) -> None:
        nonlocal left
        skipped = min(count, left)
        left -= skipped
        if on_cells is not None and count > skipped:
            on_cells(count - skipped)
    return tell


def _stats(values: np.ndarray) -> dict[str, float]:
    return {"expected_s": float(values.mean()), "std_s": float(values.std()),
            "min_s": float(values.min()), "max_s": float(values.max())}


def _group_totals(groups: list[list[str]], tile_times: dict[str, np.ndarray]) -> np.ndarray:
    """Per draw: max over groups of the sum of the group's tile times."""
    if not groups:
        return np.zeros(1)
    sums = [np.sum([tile_times[t] for t in g], axis=0) for g in groups]
    return np.max(np.stack(sums), axis=0)


def channel_plan(matrices: list[Matrix], values: dict[str, torch.Tensor], device: Device,
                 config: CrossbarConfig) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The per-slot plan of the channel tiles and their ``arrays.npz`` entries.

    ``values[matrix id]``: the matrix over the draws, crossbar orientation ``[D, rows, cols]``.
    The plan follows ``config.strategy`` (:mod:`mimoc.targets.crossbar.strategy`); with
    program-and-verify the draws are programmed with a generator seeded ``seed + 2`` and
    the time of each draw is what the verify loop took (``<tile>.verify_row_time_s``).
    """
    strategy = config.channel_strategy
    dev = strategy.channel_device(device)
    width = device.pulse_width_s
    generator = torch.Generator().manual_seed(config.seed + 2) if strategy.verify else None
    files: dict[str, np.ndarray] = {}
    tiles: list[dict[str, Any]] = []
    tile_times: dict[str, np.ndarray] = {}
    pulse_counts: list[np.ndarray] = []
    read_counts: list[np.ndarray] = []
    dtype = pulse_dtype(dev.states)
    for m in matrices:
        if m.role != CHANNEL:
            continue
        G = values[m.id].double()
        w_clip = channel_clip(G, strategy.clip_sigmas)        # [D, 1, 1]
        pulses = signed_pulses(G, w_clip, dev.states)         # [D, rows, cols]
        pos, neg = target_conductances(G[0], w_clip[0], dev)
        verified = (program_matrix(G, [(t.id, t.rows, t.cols) for t in m.tiles], device,
                                   strategy, generator) if strategy.verify else None)
        for t in m.tiles:
            (r0, r1), (c0, c1) = t.rows, t.cols
            p = pulses[:, r0:r1, c0:c1]
            row_max = p.abs().amax(dim=-1).numpy()            # [D, rows]
            if verified is None:
                times = row_max.sum(axis=-1) * width          # [D]
                pulse_counts.append(strategy.redundancy * p.abs().sum(dim=(-2, -1)).numpy())
            else:
                row_time = verified.row_times[t.id].numpy()   # [D, rows]
                times = row_time.sum(axis=-1)
                files[f"{t.id}.verify_row_time_s"] = row_time.astype(np.float64)
                pulse_counts.append(verified.pulse_counts[t.id].numpy())
                read_counts.append(verified.verify_reads[t.id].numpy())
            tile_times[t.id] = times
            files[f"{t.id}.pulses"] = p.numpy().astype(dtype)
            files[f"{t.id}.g_pos"] = pos[r0:r1, c0:c1].numpy().astype(np.float32)
            files[f"{t.id}.g_neg"] = neg[r0:r1, c0:c1].numpy().astype(np.float32)
            entry = {
                "array": t.id, "matrix": m.id, "rows": t.shape[0], "cols": t.shape[1],
                "row_order": list(range(t.shape[0])),
                "example_row_pulses": [int(v) for v in row_max[0]],
                "example_row_time_s": [float(v) * width for v in row_max[0]],
                "example_time_s": float(times[0]),
                "expected_row_pulses": [float(v) for v in row_max.mean(axis=0)],
                "expected_time_s": float(times.mean()),
            }
            if verified is not None:
                entry["example_row_time_s"] = [float(v) for v in row_time[0]]
                entry["verify_reads_expected"] = float(verified.verify_reads[t.id].mean())
                entry["cells_not_converged_expected"] = float(
                    verified.not_converged[t.id].mean())
            tiles.append(entry)
    groups = write_groups(matrices, CHANNEL, config.write_parallel)
    totals = _group_totals(groups, tile_times)
    plan = {
        "mode": "from reset, no verification, row by row (cells of a row in parallel)",
        "draws": config.mc_draws, "seed": config.seed,
        "channel_model": "i.i.d. Rayleigh, CN(0,1) entries, real model",
        "mapping": "w_clip = 3 sigma_h per matrix and slot (sigma_h = RMS of the entries)",
        "write_parallel": config.write_parallel, "groups": groups,
        "tiles": tiles, "example_s": float(totals[0]) if groups else 0.0,
        **(_stats(totals) if groups else _stats(np.zeros(1))),
        "reset": "the reset of the arrays before programming is not counted",
    }
    if not strategy.is_single:  # today's schedules keep their bytes
        plan.update(strategy_plan(strategy, dev, config, totals if groups else np.zeros(1),
                                  pulse_counts, read_counts))
    return plan, files


def static_cells(matrices: list[Matrix]) -> int:
    """The cells :func:`static_plan` programs: both sides of every static tile."""
    return sum(2 * t.shape[0] * t.shape[1] for m in matrices if m.role == STATIC
               for t in m.tiles)
def strategy_plan(strategy, dev: Device, config: CrossbarConfig, totals: np.ndarray,
                  pulse_counts: list[np.ndarray], read_counts: list[np.ndarray],
                  ) -> dict[str, Any]:
    """The plan's entries that only a non-default strategy records."""
    mode = ("program-and-verify from reset every slot, row by row (cells of a row in "
            f"parallel), tolerance {dev.verify_tolerance:g} of Gmax - Gmin, at most "
            f"{dev.verify_max_iterations} rounds; verify seed {config.seed + 2}"
            if strategy.verify else
            "from reset, no verification, row by row (cells of a row in parallel)")
    if strategy.redundancy > 1:
        mode += f"; {strategy.redundancy} copies in parallel, currents summed"
    zero = np.zeros_like(totals)
    return {
        "mode": mode,
        "mapping": f"w_clip = {strategy.clip_sigmas:g} sigma_h per matrix and slot "
                   f"(sigma_h = RMS of the entries), {dev.states} levels",
        "strategy": strategy.to_dict(),
        "p99_s": float(np.quantile(totals, 0.99)),
        "expected_pulses": float(np.sum(pulse_counts, axis=0).mean()) if pulse_counts
        else float(zero.mean()),
        "expected_verify_reads": float(np.sum(read_counts, axis=0).mean()) if read_counts
        else 0.0,
    }


def static_plan(matrices: list[Matrix], constants: dict[str, torch.Tensor], device: Device,
                config: CrossbarConfig, on_cells: Callable[[int], None] | None = None,
                ) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, float]]:
    """The one-time program-with-verify plan of the static tiles and their npz entries.

    ``constants[matrix id]``: the matrix in crossbar orientation ``[rows, cols]``.
    Returns the plan, the npz entries and ``w_clip`` per static matrix. ``on_cells(count)``
    is told as cells finish program-and-verify (both sides of every tile: see
    :func:`static_cells` for the total).
    """
    generator = torch.Generator().manual_seed(config.seed + 1)
    files: dict[str, np.ndarray] = {}
    tiles: list[dict[str, Any]] = []
    tile_times: dict[str, np.ndarray] = {}
    dtype = pulse_dtype(device.states)
    clips: dict[str, float] = {}
    not_converged = 0
    jobs = []
    for m in matrices:
        if m.role != STATIC:
            continue
        G = constants[m.id].double()
        w_clip = static_clip(G, config)
        clips[m.id] = w_clip
        files[f"{m.id}.weights"] = G.numpy().astype(np.float32)  # the model's fp32 weights
        pos, neg = target_conductances(G, w_clip, device)
        pulses = signed_pulses(G, w_clip, device.states)
        for t in m.tiles:
            jobs.append((m, t, pos, neg, pulses))
    targets = [side[t.rows[0]:t.rows[1], t.cols[0]:t.cols[1]]
               for _, t, pos, neg, _ in jobs for side in (pos, neg)]
    results = verify_many(targets, device, generator, on_cells)
    for index, (m, t, pos, neg, pulses) in enumerate(jobs):
        (r0, r1), (c0, c1) = t.rows, t.cols
        sides = results[2 * index: 2 * index + 2]
        row_time = torch.maximum(sides[0].row_time_s, sides[1].row_time_s).numpy()
        tile_times[t.id] = np.array([row_time.sum()])
        not_converged += int(sum(int((~s.converged).sum()) for s in sides))
        files[f"{t.id}.g_pos"] = pos[r0:r1, c0:c1].numpy().astype(np.float32)
        files[f"{t.id}.g_neg"] = neg[r0:r1, c0:c1].numpy().astype(np.float32)
        files[f"{t.id}.pulses"] = pulses[r0:r1, c0:c1].numpy().astype(dtype)
        verify_pulses = np.stack([s.pulses.numpy() for s in sides])
        files[f"{t.id}.verify_pulses"] = verify_pulses.astype(
            np.int16 if verify_pulses.max(initial=0) <= np.iinfo(np.int16).max else np.int32)
        files[f"{t.id}.verify_row_time_s"] = np.stack(
            [s.row_time_s.numpy() for s in sides]).astype(np.float64)
        tiles.append({"array": t.id, "matrix": m.id, "rows": t.shape[0],
                      "cols": t.shape[1], "time_s": float(row_time.sum()),
                      "verify_iterations_max": int(max(int(s.iterations.max())
                                                       for s in sides)),
                      # verify reads of the tile's rows (both arrays): its energy
                      "verify_row_reads": int(sum(int(s.iterations.amax(dim=-1).sum())
                                                  for s in sides))})
    groups = write_groups(matrices, STATIC, config.write_parallel)
    total = float(_group_totals(groups, tile_times)[0]) if groups else 0.0
    plan = {"mode": "program-and-verify from reset, once at deployment (not per slot)",
            "tolerance": device.verify_tolerance, "seed": config.seed + 1,
            "write_parallel": config.write_parallel, "groups": groups, "tiles": tiles,
            "time_s": total, "cells_not_converged": not_converged}
    return plan, files, clips
