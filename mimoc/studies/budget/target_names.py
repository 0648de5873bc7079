"""The ``--targets`` grammar of ``mimoc budget``: target names -> :class:`TargetSpec`.

A name is ``onnx-cpu`` (fp32 ONNX on this CPU), ``onnx-cpu-LOWERING[:METHOD]`` (a
quantized ONNX lowering), ``iree`` (fp32 native code from IREE on this CPU),
``crossbar:DEVICE`` (a crossbar schedule for a device name or
profile), a reference processor's name (:mod:`mimoc.hardware.processors`) or
``proc:FILE.json`` (a processor profile of one's own), or ``mmse`` (the classical MMSE
detector on this CPU: the reference a learned detector has to beat).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mimoc.errors import UsageError
from mimoc.hardware.processors import Processor, list_processors, load_processor

#: What ``mimoc budget`` compares when no ``--targets`` is given (those available). One
#: crossbar device: each compile costs seconds (``torch.export`` and the static programming
#: plan), and the default run is meant to take a minute or two; name others with --targets.
DEFAULT_TARGETS = ("onnx-cpu", "onnx-cpu-w4", "crossbar:ftj-luo2022", "dsp-c6678",
                   "fpga-k7-480t", "jetson-orin-nx", "mmse")
#: Classical reference detectors by target name (:mod:`mimoc.sim.detectors`).
CLASSICAL_TARGETS = ("mmse",)
#: ONNX lowerings by target-name suffix (``onnx-cpu-w4`` -> ``w4``).
ONNX_LOWERINGS = ("w4", "w4a4", "int8", "w4-int8", "auto")
#: Quantization method per lowering when the model file carries no recipe of its own:
#: min-max calibration takes seconds; KAQ's search or training takes minutes, so a KAQ model
#: is quantized first (``mimoc quantize --method kaq``) and its checkpoint budgeted.
DEFAULT_QUANT = {"w4": "minmax", "w4a4": "minmax", "int8": "int8", "w4-int8": "minmax",
                 "auto": "minmax"}
DEFAULT_DEVICE = "ftj-luo2022"


@dataclass(frozen=True)
class TargetSpec:
    """One entry of ``--targets``.

    Attributes:
        name: as written (``onnx-cpu-w4``, ``crossbar:ftj-luo2022``, ``dsp-c6678``,
            ``proc:board.json``).
        kind: ``onnx-cpu``, ``iree``, ``crossbar``, ``processor`` or ``classical``.
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
    return ("onnx-cpu, onnx-cpu-w4 / -w4a4 / -int8 / -w4-int8 / -auto (optionally :METHOD, "
            "e.g. onnx-cpu-w4:minmax), iree, crossbar:DEVICE (a device name or profile .json), "
            f"{', '.join(list_processors())}, proc:FILE.json, mmse")


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
    if head == "iree" and not tail:
        return TargetSpec(name, "iree")
    if head == "crossbar":
        return TargetSpec(name, "crossbar", device=tail or DEFAULT_DEVICE)
    if head == "proc":
        if not tail:
            raise UsageError(f"target {name!r} needs a file: proc:FILE.json")
        return TargetSpec(name, "processor", processor=load_processor(tail))
    if not tail and head in CLASSICAL_TARGETS:
        return TargetSpec(name, "classical")
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

