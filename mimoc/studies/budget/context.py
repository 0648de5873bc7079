"""What the preparers of a budget share: the model and its link, the slot, where the
artifacts go (:class:`BudgetContext`, made by :func:`budget_context`)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mimoc.errors import MimocError, UsageError

DEFAULT_SLOT = 14
DEFAULT_ARRAY = (128, 128)


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

    def link_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One channel realisation and its slot of ``S`` received vectors (batch 1)."""
        batch = self.system.sample(1, 10.0, torch.Generator().manual_seed(self.seed))
        return batch.H_est, batch.y


def load_model(path: str | os.PathLike) -> tuple[torch.nn.Module, dict[str, Any], bool]:
    """A checkpoint -> (the module, its training metadata, whether it carries a quant recipe)."""
    path = Path(path)
    try:
        from mimoc.quant import QuantizedDetector, load_quantized
    except ImportError:  # a build of mimoc without quantized checkpoints
        QuantizedDetector = load_quantized = None
    if load_quantized is None:
        from mimoc.detectors import load_detector

        model, recipe = load_detector(path), None
    else:
        model, recipe = load_quantized(path)
    if recipe is not None:
        return QuantizedDetector(model, recipe).eval(), _training(path), True
    return model, _training(path), False


def _training(path: Path) -> dict[str, Any]:
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # the loader above has already checked the file
        return {}
    training = raw.get("training") if isinstance(raw, dict) else None
    return dict(training) if isinstance(training, dict) else {}


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


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UsageError(f"{name} must be a positive integer, got {value!r}")

