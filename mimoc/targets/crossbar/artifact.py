"""The crossbar artifact: ``schedule.json`` + ``arrays.npz`` (schema: docs/crossbar.md).

:func:`build_schedule` takes the lowered graph (after ``crossbar-lower``), a device and a
:class:`~mimoc.targets.crossbar.config.CrossbarConfig` and computes everything the schedule
holds: matrices and their tiles, the per-slot programming plan (Monte Carlo over seeded
channel draws), the one-time program-with-verify plan, ADC/DAC full scales (calibrated on
seeded draws of the link), latencies, peripheral counts, digital work and the totals.
:func:`write_artifact` writes the two files atomically and byte-identically (the npz is a
zip with fixed timestamps). :func:`read_schedule` / :func:`read_arrays` read them back.

Example::

    >>> built = build_schedule(lowered, load_device("ftj-luo2022"), CrossbarConfig())
    >>> built.schedule["totals"]["per_slot_s"]
    3.1e-07
    >>> write_artifact(built, "out/detnet")
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mimoc import __version__
from mimoc.compiler.dims import fmt_dim
from mimoc.compiler.interpreter import run_all
from mimoc.compiler.ir import Graph, Node
from mimoc.errors import UsageError
from mimoc.hardware.devices import Device
from mimoc.targets.crossbar import lower
from mimoc.targets.crossbar.arrays import (
    CHANNEL,
    STATIC,
    Matrix,
    collect_matrices,
    crossbar_matrix,
    matrix_id,
    tile,
)
from mimoc.targets.crossbar.config import CrossbarConfig
from mimoc.targets.crossbar.costs import schedule_costs
from mimoc.targets.crossbar.format import FORMAT, SCHEDULE
from mimoc.targets.crossbar.latency import analog_macs, digital_work, latency, peripherals
from mimoc.targets.crossbar.program import program_to_json
from mimoc.targets.crossbar.programming import channel_plan, static_cells, static_plan
from mimoc.targets.output import read_json_file, write_directory

FORMAT_VERSION = 1
ARRAYS = "arrays.npz"
#: Link draws for the ADC/DAC full-scale calibration: slots per SNR, symbols per slot, SNRs.
CALIBRATION = {"slots_per_snr": 64, "symbols": 4, "snr_db": [0.0, 10.0, 20.0, 30.0]}
MC_SNR_DB = 10.0


@dataclass(frozen=True)
class BuiltSchedule:
    schedule: Mapping[str, Any]
    arrays: Mapping[str, np.ndarray]
    graph: Graph  # the lowered program, ADC/DAC full scales set

    @property
    def manifest(self) -> Mapping[str, Any]:
        """The artifact's index, as every target's artifact has one (the schedule)."""
        return self.schedule

    def files(self) -> dict[str, bytes]:
        npz = npz_bytes(self.arrays)
        schedule = dict(self.schedule)
        schedule["files"] = {ARRAYS: {"bytes": len(npz), "sha256": hashlib.sha256(npz)
                                      .hexdigest()}}
        return {SCHEDULE: (json.dumps(schedule, indent=1) + "\n").encode(), ARRAYS: npz}


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """An ``.npz`` (zip of ``.npy``) with sorted entries and fixed timestamps: the same
    arrays always give the same bytes (``numpy.savez`` stamps the current time)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(arrays):
            data = io.BytesIO()
            array = np.asarray(arrays[name])  # ascontiguousarray would make 0-d arrays 1-d
            np.lib.format.write_array(data, array if array.flags.c_contiguous
                                      else array.copy(order="C"), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data.getvalue())
    return buffer.getvalue()


# ---------------------------------------------------------------- link draws

def link_sizes(graph: Graph, system: str = "complex") -> tuple[int, int]:
    """``(nt, nr)`` from the graph's ``H [B, 2Nr, 2Nt]`` input (``[B, Nr, Nt]`` in a real
    system)."""
    H = graph.node("H")
    sizes = {"B": 1, "S": 1, **dict(graph.dim_sizes)}
    rows, cols = (d if isinstance(d, int) else d.evaluate(sizes) for d in H.shape[-2:])
    scale = 1 if system == "real" else 2
    return cols // scale, rows // scale


def draws(graph: Graph, slots: int, symbols: int, snr_db: float, seed: int,
          modulation: str, system: str = "complex") -> tuple[torch.Tensor, torch.Tensor]:
    """``(H, y)`` of ``slots`` seeded i.i.d. Rayleigh slots (mimoc.sim.system.MIMOSystem)."""
    from mimoc.sim.system import MIMOSystem

    nt, nr = link_sizes(graph, system)
    system = MIMOSystem(nt=nt, nr=nr, modulation=modulation, slot=symbols, system=system)
    batch = system.sample(slots, snr_db, torch.Generator().manual_seed(seed))
    return batch.H_est, batch.y


def _max_abs(t: torch.Tensor) -> float:
    value = float(t.detach().abs().max()) if t.numel() else 0.0
    return value if value > 0 else 1.0


def calibrate(graph: Graph, matrices: list[Matrix], seed: int, modulation: str,
              system: str = "complex") -> tuple[Graph, dict[str, Any]]:
    """ADC/DAC full scales = max |value| over seeded link draws; per matrix the largest
    output magnitude (for partial-sum ADCs with digital accumulation)."""
    scales: dict[str, float] = {}
    outputs: dict[str, float] = {}
    convs = [n for n in graph.nodes if n.op in ("ADC", "DAC")]
    mvms = [n for n in graph.nodes if n.op == "CrossbarMVM"]
    for k, snr in enumerate(CALIBRATION["snr_db"]):
        H, y = draws(graph, CALIBRATION["slots_per_snr"], CALIBRATION["symbols"], snr,
                     seed + 100 + k, modulation, system)
        values = run_all(graph, {"H": H, "y": y})
        for n in convs:
            scales[n.name] = max(scales.get(n.name, 0.0), _max_abs(values[n.inputs[0]]))
        for n in mvms:
            key = matrix_id(n)
            outputs[key] = max(outputs.get(key, 0.0), _max_abs(values[n.name]))
    graph = lower.set_full_scales(graph, scales)
    real = {"system": system} if system == "real" else {}  # complex records stay as they were
    return graph, {**real, "method": "max |value| over seeded i.i.d. Rayleigh link draws",
                   **CALIBRATION, "seed": seed + 100, "modulation": modulation,
                   "full_scale": scales, "matrix_output_full_scale": outputs}


# ---------------------------------------------------------------- the schedule

def _shape(node: Node) -> list[Any]:
    return [d if isinstance(d, int) else fmt_dim(d) for d in node.shape]


def _matrix_entry(m: Matrix, graph: Graph, clips: Mapping[str, float],
                  output_scale: Mapping[str, float]) -> dict[str, Any]:
    entry = {"id": m.id, "role": m.role, "form": m.form, "source": m.source,
             "source_shape": _shape(graph.node(m.source)), "bias": m.bias,
             "rows": m.rows, "cols": m.cols, "bias_row": m.has_bias_row,
             "row_tiles": m.row_tiles, "col_tiles": m.col_tiles,
             "tiles": [t.id for t in m.tiles], "used_by": list(m.nodes), "scope": m.scope,
             "output_full_scale": output_scale.get(m.id, 1.0)}
    if m.role == STATIC:
        entry["mapping"] = {"rule": "max-abs or percentile", "w_clip": clips[m.id]}
    else:
        entry["mapping"] = {"rule": "three-sigma", "w_clip": "3 * RMS(matrix) per slot"}
    return entry


def build_schedule(graph: Graph, device: Device, config: CrossbarConfig, *,
                   model: Mapping[str, Any] | None = None,
                   source: Mapping[str, Any] | None = None,
                   records: Sequence[Any] = (), progress: bool = False) -> BuiltSchedule:
    """Everything in ``schedule.json`` and ``arrays.npz`` for a lowered graph (``progress``:
    a bar over the slow steps on a terminal)."""
    from mimoc.progress import progress_bar

    with progress_bar(total=4, desc="crossbar schedule", unit="step",
                      enabled=progress) as bar:
        return _build_schedule(graph, device, config, model, source, records, bar)


def _build_schedule(graph, device, config, model, source, records, bar) -> BuiltSchedule:
    if not any(n.op == "CrossbarMVM" for n in graph.nodes):
        raise UsageError("the detector has no matrix-vector product the crossbar can run "
                         "(no Linear, Conv2d or MatMul with a weight or channel matrix)")
    if "H" not in graph or "y" not in graph:
        raise UsageError("the crossbar target needs a detector with inputs H and y")
    modulation = ((model or {}).get("config") or {}).get("modulation", "qpsk")
    system = ((model or {}).get("config") or {}).get("system", "complex")
    matrices = collect_matrices(graph)
    tile(matrices, config)

    bar.set_description(f"channel programming ({config.mc_draws} draws)")
    channel_values = _channel_values(graph, matrices, config, modulation, system)
    static_values = {m.id: crossbar_matrix(m, graph.constants[m.source],
                                           graph.constants[m.bias] if m.bias else None)
                     for m in matrices if m.role == STATIC}
    per_slot, channel_files = channel_plan(matrices, channel_values, device, config)
    bar.update(1)
    bar.set_description("static program-and-verify")
    # a bar of its own under the steps: program-and-verify is the slow step (cells finish
    # round by round)
    from mimoc.progress import progress_bar

    with progress_bar(static_cells(matrices), desc="verified static cells", unit="cell",
                      enabled=not bar.disable, unit_scale=True) as cells:
        static, static_files, clips = static_plan(matrices, static_values, device, config,
                                                  on_cells=cells.update)
    bar.update(1)
    bar.set_description("ADC/DAC calibration")
    graph, calibration = calibrate(graph, matrices, config.seed, modulation, system)
    bar.update(1)
    bar.set_description("latency and peripherals")

    timing = latency(graph, matrices, device, config)
    totals = _totals(per_slot, timing, config, static["time_s"])
    arrays_list = []
    for m in matrices:
        for t in m.tiles:
            arrays_list.append({"id": t.id, "matrix": m.id, "role": m.role,
                                "tile": list(t.index), "rows": list(t.rows),
                                "cols": list(t.cols), "shape": list(t.shape),
                                "physical_arrays": 2})
    npz: dict[str, np.ndarray] = {**channel_files, **static_files}
    for n in graph.nodes:
        if n.op == "Const":
            npz[f"const/{n.name}"] = graph.constants[n.name].detach().cpu().numpy()
    schedule = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "mimoc_version": __version__,
        "target": "crossbar",
        "model": dict(model or {"name": graph.name}),
        "source": dict(source) if source else None,
        "device": device.to_dict(),
        "config": config.to_dict(),
        "passes": [_pass_entry(r) for r in records],
        "inputs": [{"name": n.name, "shape": _shape(n), "rate": str(n.rate)}
                   for n in graph.inputs],
        "matrices": [_matrix_entry(m, graph, clips, calibration["matrix_output_full_scale"])
                     for m in matrices],
        "arrays": arrays_list,
        "programming": {"per_slot": per_slot, "static": static},
        "latency": timing,
        "peripherals": peripherals(graph, matrices, config),
        "analog_macs": analog_macs(graph, matrices),
        "costs": schedule_costs(graph, matrices, device, config, npz, static, per_slot,
                                peripherals(graph, matrices, config)),
        "digital": digital_work(graph),
        "calibration": calibration,
        "totals": totals,
        "program": program_to_json(graph),
    }
    _record_strategy(schedule, config)
    bar.update(1)
    return BuiltSchedule(schedule, npz, graph)


def _channel_values(graph: Graph, matrices: list[Matrix], config: CrossbarConfig,
                    modulation: str, system: str = "complex") -> dict[str, torch.Tensor]:
    """The channel matrices over the seeded Monte Carlo draws ``[D, rows, cols]``."""
    H, y = draws(graph, config.mc_draws, 1, MC_SNR_DB, config.seed, modulation, system)
    values = run_all(graph, {"H": H, "y": y})
    return {m.id: crossbar_matrix(m, values[m.source], None)
            for m in matrices if m.role == CHANNEL}


def _totals(per_slot: Mapping[str, Any], timing: Mapping[str, Any], config: CrossbarConfig,
            static_s: float) -> dict[str, Any]:
    symbol_s = timing["symbol_s"]
    programming = per_slot["expected_s"]
    totals = {
        "programming_s_per_slot": programming,
        "programming_s_per_slot_std": per_slot["std_s"],
        "programming_s_per_slot_max": per_slot["max_s"],
        "symbol_s": symbol_s,
        "slot_symbols": config.slot,
        "slot_compute_s": timing["slot_compute_s"],
        "per_slot_s": programming + timing["slot_compute_s"] + config.slot * symbol_s,
        "static_programming_s": static_s,
    }
    if "p99_s" in per_slot:  # a strategy's high percentile (the verify loop varies)
        totals["programming_s_per_slot_p99"] = per_slot["p99_s"]
        totals["per_slot_s_p99"] = (per_slot["p99_s"] + timing["slot_compute_s"]
                                    + config.slot * symbol_s)
    return totals


def _record_strategy(schedule: dict[str, Any], config: CrossbarConfig) -> None:
    """``schedule["strategy"]``: the channel strategy (nothing for the default ``single``:
    today's schedules keep their bytes); its counts and costs are the ``costs`` section."""
    strategy = config.channel_strategy
    if strategy.is_single:
        schedule.pop("strategy", None)
        return
    schedule["strategy"] = strategy.to_dict()


def with_strategy(built: BuiltSchedule, device: Device, strategy: Any) -> BuiltSchedule:
    """``built`` with its channel arrays planned for another strategy: the same bytes as a
    compile with that strategy (the static arrays, calibration and latency do not depend on
    it, so only the per-slot plan, its npz entries and the totals are recomputed)."""
    from mimoc.targets.crossbar.strategy import parse_strategy

    schedule = dict(built.schedule)
    config = CrossbarConfig.from_dict({**schedule["config"],
                                       "strategy": parse_strategy(strategy).spec})
    config.channel_strategy.check_device(device)
    modulation = (schedule.get("model", {}).get("config") or {}).get("modulation", "qpsk")
    matrices = collect_matrices(built.graph)
    tile(matrices, config)
    values = _channel_values(built.graph, matrices, config, modulation)
    per_slot, files = channel_plan(matrices, values, device, config)
    channel_tiles = {t.id for m in matrices if m.role == CHANNEL for t in m.tiles}
    npz = {k: v for k, v in built.arrays.items() if k.rsplit(".", 1)[0] not in channel_tiles}
    npz.update(files)
    schedule["config"] = config.to_dict()
    schedule["programming"] = {**schedule["programming"], "per_slot": per_slot}
    schedule["totals"] = _totals(per_slot, schedule["latency"], config,
                                 schedule["programming"]["static"]["time_s"])
    schedule["costs"] = schedule_costs(built.graph, matrices, device, config, npz,
                                       schedule["programming"]["static"], per_slot,
                                       schedule["peripherals"])
    schedule.pop("strategy_search", None)
    _record_strategy(schedule, config)
    return BuiltSchedule(schedule, npz, built.graph)


def _pass_entry(record: Any) -> dict[str, Any]:
    entry = dict(record.to_dict())
    entry.pop("seconds", None)  # wall time would make two compiles differ
    return entry


def write_artifact(built: BuiltSchedule, out: str | os.PathLike, *, force: bool = False) -> Path:
    """Write ``schedule.json`` and ``arrays.npz`` atomically (:mod:`mimoc.targets.output`)."""
    return write_directory(built.files(), out, force=force)


# ---------------------------------------------------------------- reading

def read_schedule(path: str | os.PathLike) -> dict[str, Any]:
    """``schedule.json`` of an artifact directory, checked: format and version, the JSON
    Schema (``mimoc/data/schemas/schedule.schema.json``) and the references between its
    matrices, tiles and write groups (:func:`~mimoc.targets.crossbar.checks.check_schedule`)."""
    from mimoc.targets.crossbar.checks import check_schedule

    schedule = read_json_file(path, SCHEDULE, fmt=FORMAT, version=FORMAT_VERSION,
                              kind="crossbar schedule", schema="schedule",
                              how_to_make="compile one with 'mimoc compile MODEL.pt --target "
                                          "crossbar -o DIR'")
    check_schedule(schedule, repr(str(Path(path) / SCHEDULE)))
    return schedule


def verify_arrays_file(path: str | os.PathLike, schedule: Mapping[str, Any]) -> bytes:
    """The bytes of ``arrays.npz``, refused if they differ from the schedule's sha256."""
    from mimoc.targets.artifact_files import read_recorded_file

    return read_recorded_file(Path(path), ARRAYS, schedule["files"], index=SCHEDULE)


def read_arrays(path: str | os.PathLike, schedule: Mapping[str, Any] | None = None, *,
                verify: bool = True) -> dict[str, np.ndarray]:
    """The arrays of ``arrays.npz`` by name, read safely (no pickles; every ``.npy`` header
    checked before anything is allocated: :func:`mimoc.targets.artifact_files.read_npz`).

    ``verify``: refuse a file whose sha256 differs from the one in ``schedule.json``
    (``schedule``: the already read schedule; ``None`` reads it). ``verify=False`` is for
    people who edit artifacts on purpose (``--allow-modified``).
    """
    from mimoc.targets.artifact_files import read_npz, read_recorded_file

    path = Path(path)
    if schedule is None:
        schedule = read_schedule(path)
    data = read_recorded_file(path, ARRAYS, schedule["files"], index=SCHEDULE, verify=verify)
    return read_npz(data, where=repr(str(path / ARRAYS)))
