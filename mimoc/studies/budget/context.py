"""What the preparers of a budget share: the model and its link, the slot, the receiver
workload, the verdict's limits, where the artifacts go (:class:`BudgetContext`, made by
:func:`budget_context`).

The link is the model's training link (``training.options``: channel, CSI, SNR convention),
parsed as ``mimoc train`` parses it (:func:`mimoc.sim.channels.parse_channel`, which knows
the multipath ``task:ID`` channels); ``--channel`` / ``--csi`` replace it. A recorded
channel this build cannot parse is an error, never a silent fallback to Rayleigh."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from mimoc.errors import MimocError, UsageError
from mimoc.sim.numerology import SLOT_SYMBOLS
from mimoc.studies.budget.accuracy import DEFAULT_MAX_LOSS_DB, DEFAULT_TARGET_SER
from mimoc.studies.budget.timing import (
    DEFAULT_CALLS,
    DEFAULT_MAX_TIME,
    DEFAULT_PERCENTILE,
    check_percentile,
)
from mimoc.studies.budget.workload import Workload

DEFAULT_SLOT = SLOT_SYMBOLS
DEFAULT_ARRAY = (128, 128)


@dataclass
class BudgetContext:
    """What the preparers share: the model, the slot, where artifacts go, the link, the
    workload and the verdict's limits.

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
    workload: Workload = field(default_factory=Workload)
    budget_s: float = 100e-6
    percentile: float = DEFAULT_PERCENTILE
    calls: int = DEFAULT_CALLS
    max_time: float = DEFAULT_MAX_TIME
    target_ser: float = DEFAULT_TARGET_SER
    max_loss_db: float = DEFAULT_MAX_LOSS_DB
    notes: list[str] = field(default_factory=list)
    _artifacts: dict[tuple, Path] = field(default_factory=dict)

    def onnx_artifact(self, lowering: str | None = None, quant: str | None = None) -> Path:
        """The ONNX artifact of ``(lowering, quant)``, compiled into the work directory once."""
        from mimoc.driver import compile as compile_model

        key = (lowering, quant)
        if key not in self._artifacts:
            out = self.workdir / ("onnx-cpu" if lowering is None else f"onnx-cpu-{lowering}"
                                  + (f"-{quant}" if quant else ""))
            self.say(f"compiling {out.name}")
            options: dict[str, Any] = {}
            if lowering is not None:
                options = {"lowering": lowering, "quant": quant}
            compile_model(self.model_path, "onnx", out, force=True, **options)
            self._artifacts[key] = out
        return self._artifacts[key]

    def compiler_flops(self) -> dict[str, Any]:
        """The fp32 ONNX manifest's FLOPs (``per_symbol``, ``slot_rate``; 2 x MACs)."""
        from mimoc.targets.onnx import read_manifest

        return dict(read_manifest(self.onnx_artifact())["flops"])

    @property
    def reference_model(self) -> torch.nn.Module:
        """The fp32 digital model the SNR loss is measured against (a quantized checkpoint's
        model without its recipe)."""
        return getattr(self.model, "detector", self.model) if self.has_recipe else self.model

    def link_inputs(self, channels: int = 1, symbols: int | None = None,
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``channels`` channel realisations of the model's link, ``symbols`` received vectors
        each (default ``S``), and their noise variances: ``(H_est, y, N0)`` at 10 dB."""
        system = replace(self.system, slot=symbols or self.slot)
        batch = system.sample(channels, 10.0, torch.Generator().manual_seed(self.seed))
        return batch.H_est, batch.y, batch.noise_var

    def workload_inputs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`link_inputs` for the receiver workload (``B`` channels, ``S x K`` vectors)."""
        return self.link_inputs(self.workload.channels, self.workload.symbols_per_channel)


def load_model(path: str | os.PathLike) -> tuple[torch.nn.Module, dict[str, Any], bool]:
    """A checkpoint -> (the module, its training metadata, whether it carries a quant recipe).

    The metadata comes from the same checked load as the module (the checkpoint loader
    refuses malformed training fields), not from a second read of the file."""
    from mimoc.detectors import load_checkpoint
    from mimoc.quant import QuantizedDetector
    from mimoc.quant.checkpoint import recipe_of

    checkpoint = load_checkpoint(Path(path))
    recipe = recipe_of(checkpoint)
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
                 snr_def: str | None = None, *, channel: str | None = None,
                 csi: str | None = None):
    """The model's link (sizes, modulation, trained channel and CSI) with ``slot`` symbols;
    ``channel`` / ``csi`` replace the trained ones. A recorded spec this build cannot parse
    is a :class:`UsageError` (say which, and that ``--channel`` / ``--csi`` choose)."""
    from mimoc.sim.channels import CSIModel, parse_channel
    from mimoc.sim.system import MIMOSystem

    config = model.config
    options = training.get("options") if isinstance(training.get("options"), dict) else {}
    specs = {"channel": channel or str(options.get("channel", "rayleigh")),
             "csi": csi or str(options.get("csi", "perfect"))}
    parsers = {"channel": parse_channel, "csi": CSIModel.parse}
    parsed = {}
    for what, spec in specs.items():
        try:
            parsed[what] = parsers[what](spec)
        except MimocError as err:
            given = (channel if what == "channel" else csi) is not None
            source = f"--{what}" if given else f"the model's training {what}"
            raise UsageError(f"{source} {spec!r} cannot be simulated: {err}; give "
                             f"--{what} to choose one") from None
    return MIMOSystem(nt=config.nt, nr=config.nr, modulation=config.modulation,
                      channel=parsed["channel"], csi=parsed["csi"],
                      snr_def=snr_def or str(options.get("snr_def", "per-stream")), slot=slot,
                      system=getattr(config, "system", "complex"))


def model_info(path: Path, model: torch.nn.Module) -> dict[str, Any]:
    config = getattr(model, "config", None) or getattr(getattr(model, "model", None),
                                                       "config", None)
    family = getattr(model, "family", None) or getattr(getattr(model, "model", None),
                                                       "family", None)
    return {"path": str(path), "family": family, "nt": config.nt, "nr": config.nr,
            "modulation": config.modulation}


@contextmanager
def budget_context(model_path: str | os.PathLike, *, slot: int = DEFAULT_SLOT,
                   array: tuple[int, int] = DEFAULT_ARRAY, threads: int = 1,
                   min_time: float = 0.2, seed: int = 0, snr_def: str | None = None,
                   workdir: str | os.PathLike | None = None,
                   say: Callable[[str], None] | None = None, subcarriers: int = 1,
                   subcarriers_per_channel: int = 12, budget_s: float = 100e-6,
                   percentile: float = DEFAULT_PERCENTILE, calls: int = DEFAULT_CALLS,
                   max_time: float = DEFAULT_MAX_TIME,
                   target_ser: float = DEFAULT_TARGET_SER,
                   max_loss_db: float = DEFAULT_MAX_LOSS_DB, channel: str | None = None,
                   csi: str | None = None) -> Iterator[BudgetContext]:
    """A :class:`BudgetContext` whose artifacts live in ``workdir`` (default: a temporary
    directory removed on exit)."""
    _check_positive(slot=slot, threads=threads, calls=calls, subcarriers=subcarriers,
                    subcarriers_per_channel=subcarriers_per_channel)
    for name, value in (("min_time", min_time), ("max_time", max_time), ("budget", budget_s)):
        if not (isinstance(value, int | float) and 0 < value < float("inf")):
            raise UsageError(f"{name} must be a positive number, got {value!r}")
    if not (isinstance(target_ser, int | float) and 0 < target_ser < 1):
        raise UsageError(f"the target SER must lie in (0, 1), e.g. 1e-3, got {target_ser!r}")
    if not (isinstance(max_loss_db, int | float) and 0 <= max_loss_db < float("inf")):
        raise UsageError(f"the SNR loss limit must be a non-negative number of dB, got "
                         f"{max_loss_db!r}")
    percentile = check_percentile(percentile)
    path = Path(model_path)
    model, training, has_recipe = load_model(path)
    system = model_system(model, training, slot, snr_def, channel=channel, csi=csi)
    notes = []
    options = training.get("options") if isinstance(training.get("options"), dict) else {}
    if channel is None and "channel" not in options:
        notes.append(f"no training channel recorded in the model: {system.channel.spec}, "
                     f"{system.csi.spec} CSI (--channel, --csi to choose)")
    with tempfile.TemporaryDirectory(prefix="mimoc-budget-") as tmp:
        work = Path(workdir) if workdir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        ctx = BudgetContext(model=model, model_path=path, system=system, workdir=work,
                            slot=slot, array=array, threads=threads, min_time=min_time,
                            seed=seed, has_recipe=has_recipe, training=training,
                            say=say or (lambda text: None),
                            workload=Workload(subcarriers, subcarriers_per_channel, slot),
                            budget_s=float(budget_s), percentile=percentile, calls=calls,
                            max_time=float(max_time), target_ser=float(target_ser),
                            max_loss_db=float(max_loss_db), notes=notes)
        yield ctx


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UsageError(f"{name} must be a positive integer, got {value!r}")

