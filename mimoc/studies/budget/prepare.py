"""One function per target kind prepares a target of a budget (:data:`PREPARERS`):
compile it, cost the slot's workload on it (:class:`~mimoc.studies.budget.results.Latency`
with its tail), count the subcarriers it serves within the budget, and give the engine
that simulates its error rate."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mimoc.errors import MimocError
from mimoc.sim.ber import EngineDetector
from mimoc.studies.budget.context import BudgetContext
from mimoc.studies.budget.results import Capacity, Latency, PreparedTarget
from mimoc.studies.budget.target_names import CLASSICAL_DETECTORS, DEFAULT_QUANT, TargetSpec
from mimoc.studies.budget.timing import Tail, percentile_key, time_stages
from mimoc.studies.budget.units import format_us
from mimoc.studies.budget.workload import (
    flops_capacity,
    linear_capacity,
    sequential_capacity,
)

#: Channel draws of a crossbar's per-slot programming time: its p99.9 rests on the 4 slowest.
PROGRAMMING_DRAWS = 4096


def _batch_text(ctx: BudgetContext) -> str:
    w = ctx.workload
    return f"batch {w.channels} x {w.symbols_per_channel} symbol vectors"


def _measured(times: np.ndarray, ctx: BudgetContext, how: str,
              details: dict[str, Any], *, prep: float | None = None,
              det: float | None = None) -> tuple[Latency, Capacity]:
    """A measured latency from per-call stage times ``[calls, stages]`` (the per-slot time
    is their sum), and the capacity it gives."""
    totals = times.sum(axis=1)
    tail = Tail.of(totals, ctx.budget_s, ctx.percentile, "calls")
    if prep is None or det is None:
        prep, det = float(np.median(times[:, 0])), float(np.median(times[:, 1:].sum(axis=1)))
    latency = Latency(prep, det, ctx.slot, "measured", how, details, ctx.workload.vectors, tail)
    value = tail.at(ctx.percentile)
    n = ctx.workload.subcarriers
    capacity = Capacity(linear_capacity(ctx.workload, value, ctx.budget_s),
                        f"{n:,} subcarrier{'s' if n > 1 else ''} x budget / "
                        f"{percentile_key(ctx.percentile)} ({format_us(value)} us), the time "
                        "taken as linear in the workload")
    return latency, capacity


def _timed_how(what: str, ctx: BudgetContext, tail: Tail, stages: str) -> str:
    threads = f"{ctx.threads} thread{'s' if ctx.threads > 1 else ''}"
    return (f"{what} on this CPU ({_cpu_name()}), {_batch_text(ctx)}, {threads}, "
            f"{tail.count:,} timed calls of {stages} (garbage collector paused); prep and "
            "detect are the stages' medians")


def prepare_onnx(spec: TargetSpec, ctx: BudgetContext) -> PreparedTarget:
    """ONNX on this CPU: compile, then time ``slot.onnx`` + ``symbol.onnx`` on the workload."""
    import onnxruntime

    from mimoc.runtime import load_artifact

    quant = spec.quant
    if spec.lowering is not None and quant is None and not ctx.has_recipe:
        quant = DEFAULT_QUANT[spec.lowering]
    path = ctx.onnx_artifact(spec.lowering, quant)
    artifact = load_artifact(path, threads=ctx.threads)
    times = _time_artifact(artifact, spec, ctx)
    manifest = artifact.manifest
    lowering = manifest.get("lowering", "fp32")
    details = {"calls": len(times), "threads": ctx.threads, "batch": ctx.workload.channels,
               "symbols_per_channel": ctx.workload.symbols_per_channel,
               "onnxruntime": onnxruntime.__version__, "flops": dict(manifest.get("flops", {}))}
    latency, capacity = _measured(times, ctx, "", details)
    how = _timed_how(f"{lowering} artifact, onnxruntime {onnxruntime.__version__}", ctx,
                     latency.tail, "slot.onnx then symbol.onnx")
    latency = replace(latency, how=how)
    settings = {"target": "onnx", "lowering": manifest.get("lowering", spec.lowering or "fp32"),
                "quantization": manifest.get("quantization"),
                "passes": [p.get("pass") for p in manifest.get("passes", [])],
                "onnx": manifest.get("onnx"),
                "files": {name: info.get("bytes") for name, info in
                          (manifest.get("files") or {}).items()}}
    variant = "" if spec.lowering is None else \
        f" ({spec.lowering}, {quant or 'the checkpoint recipe'})"
    return PreparedTarget(spec, latency, engine=artifact.engine(),
                          ser_how=f"the compiled artifact{variant} run by onnxruntime",
                          settings=settings, artifact=path, capacity=capacity)


def _time_artifact(artifact, spec: TargetSpec, ctx: BudgetContext):
    """Per-call times of an artifact's two stages on the workload (its slot stage, then its
    symbol stage on that state), as :func:`time_stages` gives them."""
    H, y, _ = (t.numpy() for t in ctx.workload_inputs())
    state = {"slot": artifact.run_slot(H)}

    def slot_stage() -> None:
        state["slot"] = artifact.run_slot(H)

    ctx.say(f"timing {spec.name}")
    return time_stages([slot_stage, lambda: artifact.run_symbols(y, state["slot"])],
                       calls=ctx.calls, min_time=ctx.min_time, max_time=ctx.max_time)


def prepare_iree(spec: TargetSpec, ctx: BudgetContext) -> PreparedTarget:
    """IREE modules on this CPU (``--target iree --cpu host``), compiled for the workload's
    sizes (B channels, S x K vectors each), timed as ``slot.vmfb`` + ``symbol.vmfb``."""
    from mimoc.driver import compile as compile_model
    from mimoc.runtime import load

    w = ctx.workload
    out = ctx.workdir / "iree"
    ctx.say("compiling iree")
    compile_model(ctx.model_path, "iree", out, force=True,
                  static_shapes={"B": w.channels, "S": w.symbols_per_channel})
    artifact = load(out)
    times = _time_artifact(artifact, spec, ctx)
    manifest = artifact.manifest
    details = {"calls": len(times), "threads": 1, "batch": w.channels,
               "symbols_per_channel": w.symbols_per_channel, "iree": manifest["iree"],
               "flops": dict(manifest.get("flops", {}))}
    latency, capacity = _measured(times, ctx, "", details)
    how = _timed_how(f"IREE modules ({manifest['iree']['compiler']})", ctx, latency.tail,
                     "slot.vmfb then symbol.vmfb")
    settings = {"target": "iree", "cpu": manifest["iree"]["cpu"],
                "flags": manifest["iree"]["flags"],
                "passes": [p.get("pass") for p in manifest.get("passes", [])],
                "files": {name: info.get("bytes") for name, info in
                          (manifest.get("files") or {}).items()}}
    return PreparedTarget(spec, replace(latency, how=how), engine=artifact.engine(),
                          ser_how="the compiled IREE modules run by the IREE runtime",
                          settings=settings, artifact=out, capacity=capacity)


def prepare_classical(spec: TargetSpec, ctx: BudgetContext) -> PreparedTarget:
    """The classical MMSE reference (the unbiased LMMSE), batched torch on this CPU (the
    reference a learned detector has to beat): timed on the workload and at batch 1."""
    from mimoc.sim.ber import classical

    constellation = ctx.system.constellation
    detector = CLASSICAL_DETECTORS[spec.name]
    detect = classical(detector, constellation)

    def timed(H, y, n0) -> np.ndarray:
        eye = torch.eye(H.shape[-1], dtype=H.dtype)

        def factor() -> None:  # the channel preparation: H^T H + N0 I, its Cholesky factor
            # and the diagonal of its inverse (the unbiasing, once per channel)
            chol, _ = torch.linalg.cholesky_ex(H.transpose(-1, -2) @ H
                                               + n0[:, None, None] * eye)
            torch.cholesky_inverse(chol).diagonal(dim1=-2, dim2=-1)

        return time_stages([factor, lambda: detect(H, y, n0)], calls=ctx.calls,
                           min_time=ctx.min_time, max_time=ctx.max_time)

    previous = torch.get_num_threads()
    torch.set_num_threads(ctx.threads)
    try:
        ctx.say(f"timing {spec.name}")
        with torch.no_grad():
            times = timed(*ctx.workload_inputs())
            single = None
            if ctx.workload.vectors != ctx.slot:
                single = Tail.of(timed(*ctx.link_inputs())[:, 1], ctx.budget_s, ctx.percentile)
    finally:
        torch.set_num_threads(previous)
    whole = times[:, 1]  # the per-slot time is the whole mmse call; the factor splits it
    prep = float(np.median(times[:, 0]))
    det = max(float(np.median(whole)) - prep, 0.0)
    details = {"calls": len(times), "threads": ctx.threads, "batch": ctx.workload.channels,
               "symbols_per_channel": ctx.workload.symbols_per_channel,
               "torch": torch.__version__,
               "batch_1": None if single is None else single.to_dict()}
    latency, capacity = _measured(whole[:, None], ctx, "", details, prep=prep, det=det)
    how = _timed_how(f"mimoc.sim.detectors.{detector} (the unbiased LMMSE: H^T H + N0 I, "
                     f"Cholesky, solve, divided by diag(W H)), torch "
                     f"{torch.__version__}", ctx, latency.tail, "the whole detector")
    how = how.replace("prep and detect are the stages' medians",
                      "prep = the median of H^T H + N0 I, its Cholesky factor and the "
                      "diagonal of its inverse alone, "
                      "detect = the rest of the median call")
    if single is not None:
        how += (f"; at batch 1 ({ctx.slot} vectors): p50 {format_us(single.at(50))} us, "
                f"{percentile_key(ctx.percentile)} {format_us(single.at(ctx.percentile))} us")
    latency = replace(latency, how=how)
    return PreparedTarget(spec, latency, engine=detect, capacity=capacity,
                          ser_how="the unbiased LMMSE detector (torch, float32), given N0",
                          settings={"target": "classical", "detector": detector})


def _programming_draws(program, ctx: BudgetContext) -> np.ndarray:
    """Per-slot programming seconds of the channel arrays over ``PROGRAMMING_DRAWS`` channel
    draws of the model's link (its channel and CSI), by the simulator's programming model."""
    H, y, _ = ctx.link_inputs(PROGRAMMING_DRAWS, 1)
    out = [program.run(H[i:i + 1024], y[i:i + 1024], seed=ctx.seed).programming_s.numpy()
           for i in range(0, len(H), 1024)]
    return np.concatenate(out)


def prepare_crossbar(spec: TargetSpec, ctx: BudgetContext) -> PreparedTarget:
    """A crossbar schedule: compile, cost the workload on one array set (channels one after
    another) over channel draws of the programming time, simulate with the IMC runtime."""
    from mimoc.driver import compile as compile_model
    from mimoc.runtime import imc

    out = ctx.workdir / f"crossbar-{Path(str(spec.device)).stem}"
    if spec.strategy:  # one directory per strategy of the same device
        out = out.with_name(out.name + "-" + re.sub(r"[^A-Za-z0-9.]+", "_", spec.strategy))
    ctx.say(f"compiling {spec.name}")
    searching = spec.strategy == "search"
    result = compile_model(ctx.model_path, "crossbar", None if searching else out, force=True,
                           device=spec.device, array=ctx.array, slot=ctx.slot,
                           strategy=None if searching else spec.strategy)
    if searching:
        result = _search_strategy(result, spec, ctx, out)
    schedule = result.schedule
    totals = schedule["totals"]
    if int(totals["slot_symbols"]) != ctx.slot:
        raise MimocError(f"the crossbar schedule of {spec.name} is for "
                         f"{totals['slot_symbols']} symbols per slot, not {ctx.slot}")
    program = imc.load_schedule(out)
    ctx.say(f"drawing {spec.name}'s programming time")
    draws = _programming_draws(program, ctx)
    w = ctx.workload
    # slot_compute_s: slot-rate work besides programming (digital parts), if any
    compute = float(totals.get("slot_compute_s", 0.0))
    symbol_s = float(totals["symbol_s"])
    fixed = w.channels * compute + w.vectors * symbol_s
    rng = np.random.default_rng(ctx.seed)
    if w.channels == 1:
        programming = draws
        unit = "channel draws"
    else:  # one array set: the slot's channels are programmed one after another
        picks = [rng.integers(0, len(draws), size=(len(draws), min(w.channels - i, 64)))
                 for i in range(0, w.channels, 64)]
        programming = sum(draws[p].sum(axis=1) for p in picks)
        unit = f"slots of {w.channels} channel draws (resampled)"
    key = percentile_key(ctx.percentile)
    per_channel = Tail.of(draws, ctx.budget_s, ctx.percentile, "channel draws")
    tail = Tail.of(programming + fixed, ctx.budget_s, ctx.percentile, unit,
                   programming_per_channel=per_channel.to_dict())
    serves = "its channel" if w.channels == 1 else \
        f"the {w.channels:,} channels one after another"
    how = (f"schedule ({spec.device}, arrays up to {ctx.array[0]}x{ctx.array[1]}), one array "
           f"set serving {serves}: programming of the channel arrays per channel over "
           f"{len(draws):,} channel draws of this link (mean "
           f"{format_us(per_channel.mean_s)} us, {key} "
           f"{format_us(per_channel.at(ctx.percentile))} us, max "
           f"{format_us(per_channel.max_s)} us) + {w.vectors:,} x the per-symbol critical "
           f"path ({format_us(symbol_s)} us); the schedule's own mean over "
           f"{schedule.get('config', {}).get('mc_draws', '?')} i.i.d. Rayleigh draws is "
           f"{format_us(float(totals['programming_s_per_slot']))} us; static weights "
           f"programmed once with verify in "
           f"{_seconds(float(totals.get('static_programming_s', 0.0)))} (not per slot)"
           + _energy_text(schedule))
    latency = Latency(w.channels * (float(draws.mean()) + compute), w.vectors * symbol_s,
                      ctx.slot, "schedule", how,
                      {"totals": dict(totals), "programming_draws": len(draws)}, w.vectors,
                      tail)
    capacity = _crossbar_capacity(schedule, per_channel.at(ctx.percentile) + compute,
                                  ctx.slot * symbol_s, ctx)
    c2c = _device_c2c(spec.device)

    def engine_at(level: float) -> EngineDetector:
        return program.engine(c2c=level, seed=ctx.seed)

    settings = {"target": "crossbar", "device": spec.device, "array": list(ctx.array),
                "slot_symbols": ctx.slot,
                **({"strategy": schedule["config"]["strategy"]}
                   if "strategy" in schedule["config"] else {}),
                **{k: schedule[k] for k in ("format", "format_version", "version", "device",
                                            "mapping", "peripherals", "costs")
                   if k in schedule}}
    return PreparedTarget(spec, latency, engine=program.engine(c2c=None, seed=ctx.seed),
                          engine_at=engine_at,
                          ser_how=f"the IMC simulator at the device's C2C ({c2c})",
                          settings=settings, artifact=out, c2c=c2c, capacity=capacity)


def _energy_text(schedule: dict[str, Any]) -> str:
    """The schedule's energy per slot and area, as a clause (empty for older artifacts)."""
    costs = schedule.get("costs")
    if not costs:
        return ""
    return (f"; energy {costs['per_slot']['energy_j'] * 1e9:,.3g} nJ per slot, area "
            f"{costs['area_um2'] / 1e6:,.3g} mm^2 per array set (schedule costs, "
            f"docs/devices.md)")
def _search_strategy(result, spec: TargetSpec, ctx: BudgetContext, out: Path):
    """``crossbar:DEVICE@search``: the cheapest channel strategy within the budget and the
    loss limit (:mod:`mimoc.studies.strategy`), written to ``out``."""
    from mimoc.hardware.devices import device_from_dict
    from mimoc.studies.strategy import search_strategy
    from mimoc.targets import get_target

    ctx.say(f"searching {spec.name}'s channel programming strategy")
    found = search_strategy(result.artifact, device_from_dict(result.schedule["device"]),
                            budget_s=ctx.budget_s, max_loss_db=ctx.max_loss_db,
                            target_ser=ctx.target_ser, seed=ctx.seed, say=ctx.say)
    path = get_target("crossbar").write(found.built, out, force=True)
    return replace(result, path=path, artifact=found.built)


def _crossbar_capacity(schedule: dict[str, Any], channel_s: float, subcarrier_s: float,
                       ctx: BudgetContext) -> Capacity:
    w = ctx.workload
    served = sequential_capacity(channel_s, subcarrier_s, w.per_channel, ctx.budget_s)
    sets = math.ceil(w.subcarriers / served) if served else None
    peripherals = schedule.get("peripherals") or {}
    replication: dict[str, Any] = {}
    how = (f"one array set, channels one after another at {percentile_key(ctx.percentile)} "
           f"programming ({format_us(channel_s)} us per channel, "
           f"{format_us(subcarrier_s)} us per subcarrier)")
    if sets is None:
        how += "; no number of array sets covers the workload: one channel exceeds the budget"
    elif sets > 1:
        replication = {"array_sets": sets,
                       **{k: sets * int(peripherals[k]) for k in ("arrays", "cells")
                          if isinstance(peripherals.get(k), int)}}
        area = ", ".join(f"{v:,} {k}" for k, v in replication.items() if k != "array_sets")
        how += (f"; {w.subcarriers:,} subcarriers need {sets:,} array sets in parallel "
                f"({sets:,}x the area{': ' + area if area else ''})")
    return Capacity(served, how, array_sets=sets, replication=replication)


def _device_c2c(device: str | None) -> str:
    """The device's cycle-to-cycle variation as text (``3.65%`` or ``4.41% pot. / 5.44% dep.``)."""
    try:
        from mimoc.hardware.devices import load_device
    except ImportError:
        return "its profile's value"
    profile = load_device(device)
    pot, dep = profile.c2c_potentiation, profile.c2c_depression
    return f"{100 * pot:.3g}%" if pot == dep else \
        f"{100 * pot:.3g}% potentiation / {100 * dep:.3g}% depression"


def prepare_processor(spec: TargetSpec, ctx: BudgetContext) -> PreparedTarget:
    """A reference processor: the compiler's FLOPs over its peak x utilisation, a lower bound
    on the latency (it can prove a miss, never a meet)."""
    processor = spec.processor
    assert processor is not None  # parse_target sets it for this kind
    flops = ctx.compiler_flops()
    slot_rate, per_symbol = int(flops["slot_rate"]), int(flops["per_symbol"])
    w = ctx.workload
    prep = processor.seconds(w.channels * slot_rate)
    det = processor.seconds(w.vectors * per_symbol)
    rate = (f"{processor.peak_gflops:g} GFLOP/s peak" if processor.utilisation == 1.0 else
            f"{processor.peak_gflops:g} GFLOP/s peak x utilisation {processor.utilisation:g}")
    how = (f"compiler FLOPs (slot-rate {slot_rate:,} per channel x {w.channels:,}, per symbol "
           f"{per_symbol:,} x {w.vectors:,}; 2 x MACs) / {rate} of "
           f"{processor.title or processor.name}: a lower bound (every cycle useful, no "
           "memory or launch cost)")
    latency = Latency(prep, det, ctx.slot, "flops", how,
                      {"flops_slot_rate": slot_rate, "flops_per_symbol": per_symbol,
                       "peak_gflops": processor.peak_gflops,
                       "utilisation": processor.utilisation, "processor": processor.to_dict()},
                      w.vectors, lower_bound=True)
    capacity = Capacity(flops_capacity(slot_rate, per_symbol, w, processor.sustained_flops,
                                       ctx.budget_s),
                        "at most: budget x rate / (FLOPs per subcarrier, its share of a "
                        "channel's slot-rate FLOPs included)", upper_bound=True)
    return PreparedTarget(spec, latency, ser_how="the digital model (PyTorch)",
                          settings={"target": "processor", **processor.to_dict()},
                          capacity=capacity)


#: Target kind -> the function that prepares it.
PREPARERS: dict[str, Callable[[TargetSpec, BudgetContext], PreparedTarget]] = {
    "onnx-cpu": prepare_onnx,
    "iree": prepare_iree,
    "crossbar": prepare_crossbar,
    "processor": prepare_processor,
    "classical": prepare_classical,
}


def prepare(spec: TargetSpec, ctx: BudgetContext) -> PreparedTarget:
    """Prepare one target, or say why it failed (its compiler or runtime refused this
    model: the error's one line, ``failed=True``)."""
    try:
        return PREPARERS[spec.kind](spec, ctx)
    except MimocError as err:
        return PreparedTarget(spec, reason=f"failed: {err}", failed=True)


def prepare_all(specs: Sequence[TargetSpec], ctx: BudgetContext) -> list[PreparedTarget]:
    return [prepare(spec, ctx) for spec in specs]


def _seconds(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.3g} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{format_us(seconds)} us"


def _cpu_name() -> str:
    from mimoc.runtime.cpu import describe_cpu

    return describe_cpu()
