"""The target names of ``mimoc budget`` / ``report --target`` (and, for the compilable
ones, ``mimoc compile --target``): target names -> :class:`TargetSpec`.

A name is ``onnx`` (fp32 ONNX on this CPU), ``onnx-LOWERING[:METHOD]`` (a quantized ONNX
lowering: ``onnx-w4``, ``onnx-w4a4``, ``onnx-int8``, ``onnx-w4-int8``, ``onnx-auto``),
``iree`` (fp32 native code from IREE on this CPU), ``crossbar[:DEVICE]`` (a crossbar
schedule for a device name or profile; ``crossbar:DEVICE@STRATEGY`` programs the channel
arrays with a strategy of :mod:`mimoc.targets.crossbar.strategy`, written without commas,
and ``crossbar:DEVICE@search`` searches for the cheapest one within the budget and loss
limit), a reference processor's name (:mod:`mimoc.hardware.processors`) or
``proc:FILE.json`` (a processor profile of one's own), or ``mmse`` (the classical MMSE
reference on this CPU, the unbiased LMMSE as the field computes it: the reference a learned
detector has to beat). The former spellings
``onnx-cpu`` and ``onnx-cpu-LOWERING`` are deprecated aliases (:func:`canonical_name`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mimoc.errors import UsageError
from mimoc.hardware.processors import Processor, list_processors, load_processor

#: What ``mimoc budget`` compares when no ``--target`` is given (those available). One
#: crossbar device: each compile costs seconds (``torch.export`` and the static programming
#: plan), and the default run is meant to take a minute or two; name others with --target.
DEFAULT_TARGETS = ("onnx", "onnx-w4", "crossbar:ftj-luo2022", "dsp-c6678",
                   "fpga-k7-480t", "jetson-orin-nx", "mmse")
#: Classical reference detectors by target name (:mod:`mimoc.sim.detectors`).
CLASSICAL_TARGETS = ("mmse",)
#: The detector of :mod:`mimoc.sim.detectors` each classical target runs. ``mmse`` runs the
#: unbiased LMMSE (Sionna's and the textbooks' baseline; the biased estimate pulls outer
#: QAM points inward, 5-9% more symbol errors at 16/64-QAM; same decisions for BPSK/QPSK).
CLASSICAL_DETECTORS = {"mmse": "lmmse"}
#: ONNX lowerings by target-name suffix (``onnx-w4`` -> ``w4``).
ONNX_LOWERINGS = ("w4", "w4a4", "int8", "w4-int8", "auto")
#: Quantization method per lowering when the model file carries no recipe of its own:
#: min-max calibration takes seconds; KAQ's search or training takes minutes, so a KAQ model
#: is quantized first (``mimoc quantize --method kaq``) and its checkpoint budgeted.
DEFAULT_QUANT = {"w4": "minmax", "w4a4": "minmax", "int8": "int8", "w4-int8": "minmax",
                 "auto": "minmax"}
DEFAULT_DEVICE = "ftj-luo2022"
#: The deprecated spelling of the ONNX names' head (``onnx-cpu-w4`` = ``onnx-w4``).
DEPRECATED_ONNX = "onnx-cpu"


def canonical_name(name: str) -> str:
    """A target name in today's spelling: ``onnx-cpu`` -> ``onnx``, ``onnx-cpu-w4:kaq`` ->
    ``onnx-w4:kaq``; others unchanged."""
    name = name.strip()
    if name == DEPRECATED_ONNX or name.startswith((DEPRECATED_ONNX + "-", DEPRECATED_ONNX + ":")):
        return "onnx" + name[len(DEPRECATED_ONNX):]
    return name


@dataclass(frozen=True)
class TargetSpec:
    """One entry of ``--target``.

    Attributes:
        name: as written, in today's spelling (``onnx-w4``, ``crossbar:ftj-luo2022``,
            ``dsp-c6678``, ``proc:board.json``).
        kind: ``onnx-cpu``, ``iree``, ``crossbar``, ``processor`` or ``classical``.
        lowering: ONNX lowering (``None`` = fp32, ``w4``, ``w4a4``, ``int8``).
        quant: ONNX quantization method (``None``: the model's own recipe, else
            :data:`DEFAULT_QUANT`).
        device: crossbar device name or profile path.
        strategy: the crossbar's channel programming strategy spec, ``search``, or ``None``.
        processor: the loaded reference processor.
    """

    name: str
    kind: str
    lowering: str | None = None
    quant: str | None = None
    device: str | None = None
    processor: Processor | None = None
    strategy: str | None = None


def target_names_help() -> str:
    """The accepted ``--target`` forms, for help texts and error messages."""
    return ("onnx, onnx-w4 / -w4a4 / -int8 / -w4-int8 / -auto (optionally :METHOD, e.g. "
            "onnx-w4:minmax), iree, crossbar[:DEVICE] (a device name or profile .json; "
            "crossbar:DEVICE@STRATEGY or @search for the channel programming), "
            f"{', '.join(list_processors())}, proc:FILE.json, mmse")


def parse_target(text: str) -> TargetSpec:
    """``"onnx-cpu-w4:minmax"`` -> :class:`TargetSpec`; a bad name is a :class:`UsageError`."""
    name = canonical_name(text)
    head, _, tail = name.partition(":")
    if head == "onnx" and not tail:
        return TargetSpec(name, "onnx-cpu")
    if head.startswith("onnx-"):
        lowering = head[len("onnx-"):]
        if lowering not in ONNX_LOWERINGS:
            raise UsageError(f"unknown ONNX lowering {lowering!r} in target {name!r}; choose "
                             f"onnx or onnx-{{{','.join(ONNX_LOWERINGS)}}}")
        return TargetSpec(name, "onnx-cpu", lowering=lowering, quant=tail or None)
    if head == "iree" and not tail:
        return TargetSpec(name, "iree")
    if head == "crossbar":
        device, at, strategy = tail.partition("@")
        if at:
            from mimoc.targets.crossbar.strategy import parse_strategy

            if strategy != "search":
                strategy = parse_strategy(strategy).spec  # a bad spec: one line here
        # bare "crossbar" is the default device, named so that rows and JSON say which
        return TargetSpec(name if device else f"crossbar:{DEFAULT_DEVICE}{at}{strategy}",
                          "crossbar", device=device or DEFAULT_DEVICE,
                          strategy=strategy if at else None)
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
            raise UsageError(f"malformed --target {text!r}: empty entry; e.g. "
                             "--target onnx,dsp-c6678")
    else:
        items = [str(item).strip() for item in text]
    items = [canonical_name(item) for item in items]
    repeated = sorted({item for item in items if items.count(item) > 1})
    if repeated:
        raise UsageError(f"--target lists {', '.join(repeated)} more than once")
    return [parse_target(item) for item in items]

