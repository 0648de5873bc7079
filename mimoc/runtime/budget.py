"""Latency budgets: where a detector meets the 6G slot target, and at what error rate.

``mimoc budget`` prints them.

For each target the detector is compiled (or its FLOPs taken) and one coherence slot of
``S`` symbols (default 14) is costed as two parts::

    per_slot = preparation + detection,     detection = S x per_symbol

- **preparation**: the work done once per channel realisation -- the ONNX slot stage
  (``slot.onnx``: ``H^T H``, ...), the crossbar's per-slot programming of the channel
  arrays, the slot-rate FLOPs on a reference processor;
- **detection**: the ``S`` symbol vectors of the slot.

``per_symbol = detection / S``; throughput ``S / per_slot`` symbol vectors per second
(x ``Nt log2 M`` bits); the slot meets the budget (default 100 us, the 6G air-interface
target) when ``per_slot <= budget``, with margin ``budget - per_slot`` (negative: missed by)
and headroom ``budget / per_slot``.

Where each number comes from (``Latency.source``):

- ``measured``: onnxruntime on this CPU, batch 1 (one channel realisation), one thread,
  median of repeated runs (:func:`mimoc.runtime.bench.median_time`) of ``slot.onnx``
  (preparation) and of ``symbol.onnx`` on the ``S`` symbols (detection);
- ``schedule``: the crossbar schedule's totals (``schedule.json["totals"]``):
  ``programming_s_per_slot`` (preparation) and ``slot_symbols x symbol_s`` (detection);
  the one-time static programming with verify is reported apart, it is not per slot;
- ``flops``: the compiler's FLOP count (default ONNX pipeline; 2 x MACs) divided by the
  processor's peak x utilisation (:mod:`mimoc.runtime.processors`): slot-rate FLOPs
  (preparation) and ``S x`` per-symbol FLOPs (detection). At utilisation 1.0 these are
  lower bounds.

Each target also gets its SER at one SNR, all on the same channel and noise draws
(:func:`mimoc.sim.ber.simulate`): ONNX targets run their compiled artifact, crossbar
targets the IMC simulator at the device's cycle-to-cycle variation, reference processors
the digital (PyTorch) model.

One function per target kind prepares it (:data:`PREPARERS`): :func:`prepare_onnx`,
:func:`prepare_crossbar`, :func:`prepare_processor`. A kind that this build of mimoc cannot
run is reported as unavailable with a one-line reason (:func:`unavailable_reason`), never
with made-up numbers.

Example::

    >>> report = run_budget("examples/models/detnet_8x16_qpsk.pt",
    ...                     targets="onnx-cpu,dsp-c6678", snr_db=0.0, ser_symbols=20_000)
    >>> row = report.target("dsp-c6678")
    >>> row.meets_budget, row.latency.source           # 9.0 MFLOP / 128 GFLOPS = 70 us
    (True, 'flops')
    >>> print(format_budget(report))
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import math
import os
import platform
import tempfile
import textwrap
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mimoc.errors import MimocError, UsageError
from mimoc.runtime.processors import Processor, list_processors, load_processor
from mimoc.sim.ber import BERPoint, EngineDetector

DEFAULT_BUDGET_S = 100e-6
DEFAULT_SLOT = 14
#: Scalar symbols per target for the SER estimate: small, so a default run stays quick.
DEFAULT_SER_SYMBOLS = 40_000
#: What ``mimoc budget`` compares when no ``--targets`` is given (those available). One
#: crossbar device: each compile costs seconds (``torch.export`` and the static programming
#: plan), and the default run is meant to take about a minute; name others with --targets.
DEFAULT_TARGETS = ("onnx-cpu", "onnx-cpu-w4", "crossbar:ftj-luo2022", "dsp-c6678",
                   "fpga-k7-480t", "jetson-orin-nx")
#: ONNX lowerings by target-name suffix (``onnx-cpu-w4`` -> ``w4``).
ONNX_LOWERINGS = ("w4", "w4a4", "int8")
#: Quantization method per lowering when the model file carries no recipe of its own:
#: min-max calibration takes seconds; KAQ's search or training takes minutes, so a KAQ model
#: is quantized first (``mimoc quantize --method kaq``) and its checkpoint budgeted.
DEFAULT_QUANT = {"w4": "minmax", "w4a4": "minmax", "int8": "int8"}
DEFAULT_DEVICE = "ftj-luo2022"
DEFAULT_ARRAY = (128, 128)
DIGITAL = "digital"  # simulate() key of the PyTorch model shared by the processors
TEXT_WIDTH = 100  # where format_budget wraps the lines that say where numbers come from

SOURCES = {
    "measured": "measured here: onnxruntime on this CPU, batch 1, median of repeated runs",
    "schedule": "estimated from the crossbar schedule's totals",
    "flops": "derived from the compiler's FLOPs and the processor's peak x utilisation",
}


# ---------------------------------------------------------------- target names

@dataclass(frozen=True)
class TargetSpec:
    """One entry of ``--targets``.

    Attributes:
        name: as written (``onnx-cpu-w4``, ``crossbar:ftj-luo2022``, ``dsp-c6678``,
            ``proc:board.json``).
        kind: ``onnx-cpu``, ``crossbar`` or ``processor``.
        lowering: ONNX lowering (``None`` = fp32, ``w4``, ``w4a4``, ``int8``).
        quant: ONNX quantization method (``None``: the model's own recipe, else
            :data:`DEFAULT_QUANT`).
        device: crossbar device name or profile path.
        processor: the loaded reference processor.
    """

    name: str
    kind: str
    lowering: str | None = None
    quant: str | None = None
    device: str | None = None
    processor: Processor | None = None


def target_names_help() -> str:
    """The accepted ``--targets`` forms, for help texts and error messages."""
    return ("onnx-cpu, onnx-cpu-w4 / -w4a4 / -int8 (optionally :METHOD, e.g. "
            "onnx-cpu-w4:minmax), crossbar:DEVICE (a device name or profile .json), "
            f"{', '.join(list_processors())}, proc:FILE.json")


def parse_target(text: str) -> TargetSpec:
    """``"onnx-cpu-w4:minmax"`` -> :class:`TargetSpec`; a bad name is a :class:`UsageError`."""
    name = text.strip()
    head, _, tail = name.partition(":")
    if head == "onnx-cpu" and not tail:
        return TargetSpec(name, "onnx-cpu")
    if head.startswith("onnx-cpu-"):
        lowering = head[len("onnx-cpu-"):]
        if lowering not in ONNX_LOWERINGS:
            raise UsageError(f"unknown ONNX lowering {lowering!r} in target {name!r}; choose "
                             f"onnx-cpu or onnx-cpu-{{{','.join(ONNX_LOWERINGS)}}}")
        return TargetSpec(name, "onnx-cpu", lowering=lowering, quant=tail or None)
    if head == "crossbar":
        return TargetSpec(name, "crossbar", device=tail or DEFAULT_DEVICE)
    if head == "proc":
        if not tail:
            raise UsageError(f"target {name!r} needs a file: proc:FILE.json")
        return TargetSpec(name, "processor", processor=load_processor(tail))
    if not tail and head in list_processors():
        return TargetSpec(name, "processor", processor=load_processor(head))
    raise UsageError(f"unknown target {name!r}; targets: {target_names_help()}")


def parse_targets(text: str | Sequence[str] | None) -> list[TargetSpec]:
    """A comma-separated list (or a sequence) of target names; ``None`` = the defaults."""
    if text is None:
        items = list(DEFAULT_TARGETS)
    elif isinstance(text, str):
        items = [item.strip() for item in text.split(",")]
        if not text.strip() or any(not item for item in items):
            raise UsageError(f"malformed --targets {text!r}: empty entry; e.g. "
                             "--targets onnx-cpu,dsp-c6678")
    else:
        items = [str(item).strip() for item in text]
    repeated = sorted({item for item in items if items.count(item) > 1})
    if repeated:
        raise UsageError(f"--targets lists {', '.join(repeated)} more than once")
    return [parse_target(item) for item in items]


def select_targets(targets: str | Sequence[str] | None,
                   ) -> tuple[list[TargetSpec], dict[str, str]]:
    """The targets to run and, for the defaults (``targets=None``), those this build cannot
    run with the reason (name -> reason). Targets named explicitly are all kept: an
    unavailable one becomes a row that says why."""
    specs = parse_targets(targets)
    if targets is not None:
        return specs, {}
    skipped = {spec.name: reason for spec in specs
               if (reason := unavailable_reason(spec)) is not None}
    return [spec for spec in specs if spec.name not in skipped], skipped


def unavailable_reason(spec: TargetSpec) -> str | None:
    """Why this build of mimoc cannot run ``spec`` (one line), or ``None`` when it can."""
    if spec.kind == "onnx-cpu" and spec.lowering is not None:
        from mimoc import api

        if "lowering" not in inspect.signature(api.compile).parameters:
            return ("needs the quantized ONNX lowerings (mimoc.compile(..., quant=, "
                    "lowering=)), which this version of mimoc does not have yet")
    if spec.kind == "crossbar":
        from mimoc.targets import TARGETS

        if "crossbar" not in TARGETS or importlib.util.find_spec("mimoc.runtime.imc") is None:
            return ("needs the crossbar target and its IMC simulator (mimoc compile --target "
                    "crossbar), which this version of mimoc does not have yet")
    return None


# ---------------------------------------------------------------- latency of one target

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
            ``None`` for processors (they share the digital model, :data:`DIGITAL`).
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


@dataclass
class BudgetContext:
    """What the preparers share: the model, the slot, where artifacts go, the link.

    ``onnx_artifact`` compiles each ONNX variant once (the processors reuse the fp32
    compile's FLOP count).
    """

    model: torch.nn.Module
    model_path: Path
    system: Any  # MIMOSystem of the model's link, slot = S
    workdir: Path
    slot: int = DEFAULT_SLOT
    array: tuple[int, int] = DEFAULT_ARRAY
    threads: int = 1
    min_time: float = 0.2
    seed: int = 0
    has_recipe: bool = False
    training: dict[str, Any] = field(default_factory=dict)
    say: Callable[[str], None] = lambda text: None
    _artifacts: dict[tuple, Path] = field(default_factory=dict)

    def onnx_artifact(self, lowering: str | None = None, quant: str | None = None) -> Path:
        """The ONNX artifact of ``(lowering, quant)``, compiled into the work directory once."""
        from mimoc.api import compile as compile_model

        key = (lowering, quant)
        if key not in self._artifacts:
            out = self.workdir / ("onnx-cpu" if lowering is None else f"onnx-cpu-{lowering}"
                                  + (f"-{quant}" if quant else ""))
            self.say(f"compiling {out.name}")
            options: dict[str, Any] = {}
            if lowering is not None:
                options = {"lowering": lowering, "quant": quant}
            compile_model(self.model_path, target="onnx", out=out, force=True, **options)
            self._artifacts[key] = out
        return self._artifacts[key]

    def compiler_flops(self) -> dict[str, Any]:
        """The fp32 ONNX manifest's FLOPs (``per_symbol``, ``slot_rate``; 2 x MACs)."""
        from mimoc.targets.onnx import read_manifest

        return dict(read_manifest(self.onnx_artifact())["flops"])

    def link_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One channel realisation and its slot of ``S`` received vectors (batch 1)."""
        batch = self.system.sample(1, 10.0, torch.Generator().manual_seed(self.seed))
        return batch.H_est, batch.y


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
    from mimoc.api import compile as compile_model
    from mimoc.runtime import imc

    out = ctx.workdir / f"crossbar-{Path(str(spec.device)).stem}"
    ctx.say(f"compiling {spec.name}")
    compile_model(ctx.model_path, target="crossbar", out=out, force=True, device=spec.device,
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
        from mimoc.targets.crossbar.devices import load_device
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
    """Prepare one target, or say why it is unavailable (this build lacks it) or failed (its
    compiler or runtime refused this model: the error's one line, ``failed=True``)."""
    reason = unavailable_reason(spec)
    if reason is not None:
        return PreparedTarget(spec, reason=reason)
    try:
        return PREPARERS[spec.kind](spec, ctx)
    except MimocError as err:
        return PreparedTarget(spec, reason=f"failed: {err}", failed=True)


# ---------------------------------------------------------------- the budget

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
    skipped: dict[str, str] = field(default_factory=dict)

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
                "skipped_defaults": self.skipped, "notes": self.notes}


# ---------------------------------------------------------------- running

def load_model(path: str | os.PathLike) -> tuple[torch.nn.Module, dict[str, Any], bool]:
    """A checkpoint -> (the module, its training metadata, whether it carries a quant recipe).

    The metadata comes from the same checked load as the module (the checkpoint loader
    refuses malformed training fields), not from a second read of the file."""
    from mimoc.detectors import load_checkpoint

    try:
        from mimoc.quant import QuantizedDetector
        from mimoc.quant.checkpoint import recipe_of
    except ImportError:  # a build of mimoc without quantized checkpoints
        QuantizedDetector = recipe_of = None
    checkpoint = load_checkpoint(Path(path))
    recipe = recipe_of(checkpoint) if recipe_of is not None else None
    training = dict(checkpoint.training)
    if recipe is not None:
        return QuantizedDetector(checkpoint.model, recipe).eval(), training, True
    return checkpoint.model, training, False


def default_snr(training: dict[str, Any]) -> float:
    """The middle of the model's training SNR range (10 dB when none is recorded)."""
    snr = training.get("snr_db")
    if isinstance(snr, list | tuple) and len(snr) == 2 and all(
            isinstance(v, int | float) for v in snr):
        return round((float(snr[0]) + float(snr[1])) / 2, 2)
    return 10.0


def model_system(model: torch.nn.Module, training: dict[str, Any], slot: int,
                 snr_def: str | None = None):
    """The model's link (sizes, modulation, trained channel and CSI) with ``slot`` symbols."""
    from mimoc.sim.channels import ChannelModel, CSIModel
    from mimoc.sim.system import MIMOSystem

    config = model.config
    options = training.get("options") if isinstance(training.get("options"), dict) else {}
    try:
        channel = ChannelModel.parse(str(options.get("channel", "rayleigh")))
        csi = CSIModel.parse(str(options.get("csi", "perfect")))
    except MimocError:
        channel, csi = ChannelModel.parse("rayleigh"), CSIModel.parse("perfect")
    return MIMOSystem(nt=config.nt, nr=config.nr, modulation=config.modulation, channel=channel,
                      csi=csi, snr_def=snr_def or str(options.get("snr_def", "per-stream")),
                      slot=slot)


def model_info(path: Path, model: torch.nn.Module) -> dict[str, Any]:
    config = getattr(model, "config", None) or getattr(getattr(model, "model", None),
                                                       "config", None)
    family = getattr(model, "family", None) or getattr(getattr(model, "model", None),
                                                       "family", None)
    return {"file": str(path), "family": family, "nt": config.nt, "nr": config.nr,
            "modulation": config.modulation}


@contextmanager
def budget_context(model_path: str | os.PathLike, *, slot: int = DEFAULT_SLOT,
                   array: tuple[int, int] = DEFAULT_ARRAY, threads: int = 1,
                   min_time: float = 0.2, seed: int = 0, snr_def: str | None = None,
                   workdir: str | os.PathLike | None = None,
                   say: Callable[[str], None] | None = None) -> Iterator[BudgetContext]:
    """A :class:`BudgetContext` whose artifacts live in ``workdir`` (default: a temporary
    directory removed on exit)."""
    _check_positive(slot=slot, threads=threads)
    if not min_time > 0:
        raise UsageError(f"min_time must be positive, got {min_time}")
    path = Path(model_path)
    model, training, has_recipe = load_model(path)
    system = model_system(model, training, slot, snr_def)
    with tempfile.TemporaryDirectory(prefix="mimoc-budget-") as tmp:
        work = Path(workdir) if workdir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        ctx = BudgetContext(model=model, model_path=path, system=system, workdir=work,
                            slot=slot, array=array, threads=threads, min_time=min_time,
                            seed=seed, has_recipe=has_recipe, training=training,
                            say=say or (lambda text: None))
        yield ctx


def measure_ser(prepared: Sequence[PreparedTarget], ctx: BudgetContext, snr_db: float, *,
                max_symbols: int = DEFAULT_SER_SYMBOLS, progress: bool = False,
                ) -> dict[str, BERPoint]:
    """SER/BER of every available target at ``snr_db``, all on the same draws.

    Returns target name -> point; the processors all get the digital model's point.
    """
    from mimoc.sim.ber import from_module, simulate

    detectors: dict[str, EngineDetector] = {}
    for target in prepared:
        if target.available and target.engine is not None:
            detectors[target.spec.name] = target.engine
    if any(t.available and t.spec.kind == "processor" for t in prepared):
        detectors[DIGITAL] = from_module(ctx.model)
    if not detectors:
        return {}
    ctx.say(f"simulating SER at {snr_db:g} dB")
    result = simulate(detectors, ctx.system, [snr_db], seed=ctx.seed, max_symbols=max_symbols,
                      progress=progress)
    points = {name: curve[0] for name, curve in result.curves.items()}
    return {t.spec.name: points[DIGITAL if t.spec.kind == "processor" else t.spec.name]
            for t in prepared if t.available and
            (t.spec.name in points or t.spec.kind == "processor")}


def run_budget(model_path: str | os.PathLike, targets: str | Sequence[str] | None = None, *,
               slot: int = DEFAULT_SLOT, budget_s: float = DEFAULT_BUDGET_S,
               snr_db: float | None = None, snr_def: str | None = None,
               ser_symbols: int = DEFAULT_SER_SYMBOLS, seed: int = 0,
               array: tuple[int, int] = DEFAULT_ARRAY, threads: int = 1, min_time: float = 0.2,
               workdir: str | os.PathLike | None = None, progress: bool = False,
               say: Callable[[str], None] | None = None) -> BudgetReport:
    """The latency budget of a model on ``targets`` (see the module docstring).

    Args:
        model_path: a mimoc checkpoint.
        targets: names (see :func:`target_names_help`); ``None``: :data:`DEFAULT_TARGETS`,
            keeping those this build can run (the others are listed in ``skipped``).
        slot: symbols per slot ``S``.
        budget_s: the per-slot latency budget in seconds.
        snr_db: SNR of the SER estimate (default: the middle of the training range);
            ``snr_def`` its convention (default: the model's training convention).
        ser_symbols: scalar symbols per target for the SER (0: no SER).
        array: crossbar maximum array size.
        threads, min_time: onnxruntime threads and minimum timed seconds per measurement.
        workdir: keep the compiled artifacts there (default: a temporary directory).
    """
    if not (isinstance(budget_s, int | float) and math.isfinite(budget_s) and budget_s > 0):
        raise UsageError(f"the budget must be a positive time, got {budget_s!r}")
    if not isinstance(ser_symbols, int) or ser_symbols < 0:
        raise UsageError(f"ser_symbols must be a non-negative integer, got {ser_symbols!r}")
    specs, skipped = select_targets(targets)
    with budget_context(model_path, slot=slot, array=array, threads=threads,
                        min_time=min_time, seed=seed, snr_def=snr_def, workdir=workdir,
                        say=say) as ctx:
        snr = default_snr(ctx.training) if snr_db is None else float(snr_db)
        if not math.isfinite(snr):
            raise UsageError(f"the SNR must be a finite number of dB, got {snr_db!r}")
        prepared = [prepare(spec, ctx) for spec in specs]
        points = measure_ser(prepared, ctx, snr, max_symbols=ser_symbols, progress=progress) \
            if ser_symbols > 0 else {}
        report = assemble(ctx, prepared, budget_s, points, snr if ser_symbols > 0 else None,
                          ser_symbols)
        report.skipped = skipped
        if snr_db is None and ser_symbols > 0:
            report.notes.append(f"SNR {snr:g} dB: the middle of the model's training range "
                                "(--snr to choose)")
    return report


def assemble(ctx: BudgetContext, prepared: Sequence[PreparedTarget], budget_s: float,
             points: dict[str, BERPoint], snr_db: float | None,
             ser_symbols: int) -> BudgetReport:
    """The :class:`BudgetReport` of prepared targets and their SER points (by target name)."""
    system = ctx.system
    bits = system.nt * system.constellation.bits_per_symbol
    rows = [TargetBudget(p.spec.name, p.spec.kind, budget_s, p.latency,
                         points.get(p.spec.name), p.ser_how, p.reason, bits, p.settings,
                         p.failed)
            for p in prepared]
    return BudgetReport(model_info(ctx.model_path, ctx.model), ctx.slot, budget_s, snr_db,
                        system.snr_def, ser_symbols, ctx.seed, rows)


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UsageError(f"{name} must be a positive integer, got {value!r}")


# ---------------------------------------------------------------- output

def format_us(seconds: float) -> str:
    """Microseconds with 3-4 significant digits (``342``, ``18.0``, ``0.0091``)."""
    us = round(seconds * 1e6, 9)  # 100e-6 s is 100 us, not 99.99999999999999
    if us >= 100:
        return f"{us:.0f}"
    if us >= 10:
        return f"{us:.1f}"
    if us >= 1:
        return f"{us:.2f}"
    return f"{us:.2g}"


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


def _verdict(row: TargetBudget) -> str:
    margin = row.margin_s
    assert margin is not None
    if row.meets_budget:
        return f"meets, {format_us(margin)} us spare"
    return f"misses by {format_us(-margin)} us"


def format_budget(report: BudgetReport) -> str:
    """The budget as a fixed-width table, then where each number comes from."""
    m = report.model
    lines = [f"{m['file']}: {m['family']} {m['nt']}x{m['nr']} {m['modulation']}; slot of "
             f"S={report.slot} symbols, budget {format_us(report.budget_s)} us per slot"]
    if report.snr_db is not None:
        lines.append(f"SER at {report.snr_db:g} dB ({report.snr_def}), same draws for every "
                     f"target, up to {report.ser_symbols:,} symbols each (a quick estimate: "
                     "--ser-symbols for tighter intervals)")
    header = ["target", "source", "prep us", "detect us", "slot us", "symbol us", "Mbit/s",
              f"budget {format_us(report.budget_s)} us", "SER [95% CI]"]
    table = [header]
    for row in report.rows:
        if not row.available:
            table.append([row.target, "failed" if row.failed else "unavailable",
                          "", "", "", "", "", "", ""])
            continue
        lat = row.latency
        assert lat is not None and row.vectors_per_s is not None
        ser = "" if row.ser is None else \
            f"{row.ser.ser:.2e} [{row.ser.ser_ci[0]:.1e}, {row.ser.ser_ci[1]:.1e}]"
        table.append([row.target, lat.source, format_us(lat.preparation_s),
                      format_us(lat.detection_s), format_us(lat.per_slot_s),
                      format_us(lat.per_symbol_s),
                      f"{row.vectors_per_s * row.bits_per_vector / 1e6:.3g}", _verdict(row),
                      ser])
    if report.snr_db is None:  # no SER estimate: no SER column
        table = [r[:-1] for r in table]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    right = {2, 3, 4, 5, 6}
    for i, r in enumerate(table):
        lines.append("  ".join(c.rjust(w) if j in right else c.ljust(w)
                               for j, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip())
        if i == 0:
            lines.append("-" * len(lines[-1]))
    lines.append("prep = channel preparation, once per slot (ONNX slot stage, crossbar "
                 "programming);")
    lines.append("detect = the S symbols; slot = prep + detect; Mbit/s = S Nt log2(M) bits "
                 "per slot time")
    lines.append("where the numbers come from:")
    sources = []
    for row in report.rows:
        if row.available:
            assert row.latency is not None
            ser = f"; SER: {row.ser_how}" if row.ser is not None else ""
            sources.append(f"{row.target}: {row.latency.how}{ser}")
        elif row.failed:
            sources.append(f"{row.target}: {row.reason}")
        else:
            sources.append(f"{row.target}: unavailable: {row.reason}")
    sources += [f"{name}: not run (default target): {reason}"
                for name, reason in report.skipped.items()]
    for text in sources:
        lines += textwrap.wrap(text, width=TEXT_WIDTH, initial_indent="  ",
                               subsequent_indent="      ", break_on_hyphens=False)
    lines += [f"note: {note}" for note in report.notes]
    return "\n".join(lines)


__all__ = ["DEFAULT_TARGETS", "BudgetContext", "BudgetReport", "Latency", "PREPARERS",
           "PreparedTarget", "TargetBudget", "TargetSpec", "budget_context", "format_budget",
           "measure_ser", "parse_targets", "prepare", "prepare_crossbar", "prepare_onnx",
           "prepare_processor", "run_budget", "unavailable_reason"]
