"""One function per target kind prepares a target of a budget (:data:`PREPARERS`):
compile it, cost one slot on it (:class:`~mimoc.studies.budget.results.Latency`) and
give the engine that simulates its error rate."""

from __future__ import annotations

import json
import platform
from collections.abc import Callable
from pathlib import Path

from mimoc.errors import MimocError
from mimoc.sim.ber import EngineDetector
from mimoc.studies.budget.context import BudgetContext
from mimoc.studies.budget.results import Latency, PreparedTarget
from mimoc.studies.budget.table import format_us
from mimoc.studies.budget.target_names import DEFAULT_QUANT, TargetSpec


def prepare_onnx(spec: TargetSpec, ctx: BudgetContext) -> PreparedTarget:
    """ONNX on this CPU: compile, then time ``slot.onnx`` and ``symbol.onnx`` at batch 1."""
    from mimoc.runtime import load_artifact
    from mimoc.runtime.bench import median_time

    quant = spec.quant
    if spec.lowering is not None and quant is None and not ctx.has_recipe:
        quant = DEFAULT_QUANT[spec.lowering]
    path = ctx.onnx_artifact(spec.lowering, quant)
    artifact = load_artifact(path, threads=ctx.threads)
    H, y = (t.numpy() for t in ctx.link_inputs())
    state = artifact.run_slot(H)
    ctx.say(f"timing {spec.name}")
    prep, prep_runs = median_time(lambda: artifact.run_slot(H), min_time=ctx.min_time)
    det, det_runs = median_time(lambda: artifact.run_symbols(y, state), min_time=ctx.min_time)
    import onnxruntime

    lowering = artifact.manifest.get("lowering", "fp32")
    how = (f"{lowering} artifact, onnxruntime {onnxruntime.__version__} on this CPU "
           f"({_cpu_name()}), batch 1, "
           f"{ctx.threads} thread{'s' if ctx.threads > 1 else ''}, median of {prep_runs} runs "
           f"of slot.onnx and {det_runs} runs of symbol.onnx on {ctx.slot} symbols")
    manifest = artifact.manifest
    latency = Latency(prep, det, ctx.slot, "measured", how,
                      {"runs": {"slot": prep_runs, "symbol": det_runs}, "threads": ctx.threads,
                       "batch": 1, "onnxruntime": onnxruntime.__version__,
                       "flops": dict(manifest.get("flops", {}))})
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
                          settings=settings, artifact=path)


def prepare_crossbar(spec: TargetSpec, ctx: BudgetContext) -> PreparedTarget:
    """A crossbar schedule: compile, read the per-slot totals, simulate with the IMC runtime."""
    from mimoc.driver import compile as compile_model
    from mimoc.runtime import imc

    out = ctx.workdir / f"crossbar-{Path(str(spec.device)).stem}"
    ctx.say(f"compiling {spec.name}")
    compile_model(ctx.model_path, "crossbar", out, force=True, device=spec.device,
                  array=ctx.array, slot=ctx.slot)
    schedule = json.loads((out / "schedule.json").read_text())
    totals = schedule["totals"]
    if int(totals["slot_symbols"]) != ctx.slot:
        raise MimocError(f"the crossbar schedule of {spec.name} is for "
                         f"{totals['slot_symbols']} symbols per slot, not {ctx.slot}")
    # slot_compute_s: slot-rate work besides programming (digital parts), if the schedule has any
    prep = float(totals["programming_s_per_slot"]) + float(totals.get("slot_compute_s", 0.0))
    det = int(totals["slot_symbols"]) * float(totals["symbol_s"])
    how = (f"schedule.json totals ({spec.device}, arrays up to {ctx.array[0]}x{ctx.array[1]}): "
           f"per-slot programming of the channel arrays (+ slot-rate computation), {ctx.slot} x "
           "per-symbol computation latency; static weights programmed once with verify in "
           f"{_seconds(float(totals.get('static_programming_s', 0.0)))} (not per slot)")
    latency = Latency(prep, det, ctx.slot, "schedule", how, {"totals": dict(totals)})
    program = imc.load_schedule(out)
    c2c = _device_c2c(spec.device)

    def engine_at(level: float) -> EngineDetector:
        return program.engine(c2c=level, seed=ctx.seed)

    settings = {"target": "crossbar", "device": spec.device, "array": list(ctx.array),
                "slot": ctx.slot,
                **{k: schedule[k] for k in ("format", "format_version", "version", "device",
                                            "mapping", "peripherals") if k in schedule}}
    return PreparedTarget(spec, latency, engine=program.engine(c2c=None, seed=ctx.seed),
                          engine_at=engine_at,
                          ser_how=f"the IMC simulator at the device's C2C ({c2c})",
                          settings=settings, artifact=out, c2c=c2c)


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
    """A reference processor: the compiler's FLOPs over its peak x utilisation."""
    processor = spec.processor
    assert processor is not None  # parse_target sets it for this kind
    flops = ctx.compiler_flops()
    slot_rate, per_symbol = int(flops["slot_rate"]), int(flops["per_symbol"])
    prep = processor.seconds(slot_rate)
    det = processor.seconds(ctx.slot * per_symbol)
    rate = (f"{processor.peak_gflops:g} GFLOP/s peak (utilisation 1: a lower bound)"
            if processor.utilisation == 1.0 else
            f"{processor.peak_gflops:g} GFLOP/s peak x utilisation {processor.utilisation:g}")
    how = (f"compiler FLOPs (slot-rate {slot_rate:,}, per symbol {per_symbol:,}; 2 x MACs) / "
           f"{rate} of {processor.title or processor.name}")
    latency = Latency(prep, det, ctx.slot, "flops", how,
                      {"flops_slot_rate": slot_rate, "flops_per_symbol": per_symbol,
                       "peak_gflops": processor.peak_gflops,
                       "utilisation": processor.utilisation, "processor": processor.to_dict()})
    return PreparedTarget(spec, latency, ser_how="the digital model (PyTorch, fp32)",
                          settings={"target": "processor", **processor.to_dict()})


#: Target kind -> the function that prepares it.
PREPARERS: dict[str, Callable[[TargetSpec, BudgetContext], PreparedTarget]] = {
    "onnx-cpu": prepare_onnx,
    "crossbar": prepare_crossbar,
    "processor": prepare_processor,
}


def prepare(spec: TargetSpec, ctx: BudgetContext) -> PreparedTarget:
    """Prepare one target, or say why it failed (its compiler or runtime refused this
    model: the error's one line, ``failed=True``)."""
    try:
        return PREPARERS[spec.kind](spec, ctx)
    except MimocError as err:
        return PreparedTarget(spec, reason=f"failed: {err}", failed=True)


def _seconds(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.3g} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{format_us(seconds)} us"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return " ".join(line.partition(":")[2].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"

