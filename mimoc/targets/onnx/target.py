"""The ``onnx`` target: its options, its passes and the quantization plan of a compile.

Options (keywords of ``mimoc.compile`` / flags of ``mimoc compile``):

- ``quant``: ``None``, a method (``"kaq"``, ``"kaq-ptq"``, ``"lsq"``, ``"minmax"``,
  ``"int8"``) or a :class:`~mimoc.quant.spec.QuantRecipe`; a quantized checkpoint
  (``mimoc quantize``) compiles with its own recipe;
- ``lowering``: ``"auto"`` (default for a quantized model: the fastest lowering on this
  CPU whose decisions match the quantized reference, :mod:`.autoselect`), ``"w4"``,
  ``"w4a4"``, ``"int8"`` or ``"w4-int8"``, see :mod:`mimoc.targets.onnx.quantized`;
- ``bits``: bit width for a calibration method run during the compile;
- ``static_shapes``: dims to fix in the models (``"B=1,S=14"`` or ``{"B": 1, "S": 14}``)
  for execution providers that need static shapes (NNAPI, CoreML), see docs/onnx.md.

The passes are the user's (default ``canonicalize, split-channel, hoist-conv-rows,
split-linear``) followed by the ``onnx-fuse`` lowering; a quantized compile runs the
``quantize`` pass first (:data:`QUANT_PASSES`, :data:`W4_PASSES`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mimoc.errors import UsageError
from mimoc.targets.base import BuildContext, Target
from mimoc.targets.onnx.format import FORMAT, MANIFEST

#: Pipeline of a quantized compile: quantize first (it folds BatchNorm into quantized convs
#: itself); split-linear / hoist-conv-rows leave layers with input quantizers unchanged.
QUANT_PASSES = ("quantize", "canonicalize", "split-channel", "hoist-conv-rows", "split-linear")
#: w4: the kernel quantizes the inputs, so the recipe's input quantizers go before the splits.
W4_PASSES = ("quantize", "canonicalize", "drop-input-quant", "split-channel", "hoist-conv-rows",
             "split-linear")
TRAINED_METHODS = ("kaq", "lsq")
AUTO = "auto"


@dataclass(frozen=True)
class OnnxConfig:
    """The options of one ONNX compile; :meth:`OnnxTarget.plan` fills ``recipe`` and
    ``lowering`` once the model is known."""

    quant: Any = None
    lowering: str | None = None
    bits: int | None = None
    recipe: Any = None
    static_shapes: Any = None
    selection: Any = None  # the record of --lowering auto (manifest lowering_selection)
    #: --lowering auto whose large-batch winner differs: ((from_batch, lowering, IR graph),)
    large_batch: Any = ()


def quant_plan(model: Any, quant: Any, lowering: str | None, bits: int | None,
               carried: Any = None, *, progress: bool = False) -> tuple[Any, str | None]:
    """``(recipe or None, lowering or None)`` for a compile; one-line UsageErrors for bad
    combinations (see ``mimoc compile --help``)."""
    import torch

    from mimoc.quant.spec import QuantRecipe

    check_quant_options(quant, lowering, bits)
    recipe = quant if isinstance(quant, QuantRecipe) else carried
    if carried is not None and isinstance(quant, str) and quant != carried.method:
        raise UsageError(f"the checkpoint is already quantized with {carried.method}; drop "
                         f"--quant {quant} (or quantize the fp32 model with {quant})")
    if carried is not None and bits is not None and bits != carried.bits:
        raise UsageError(f"the checkpoint is already quantized to {carried.bits} bits; drop "
                         f"--bits {bits}")
    if recipe is None and quant is None:
        if lowering is not None or bits is not None:
            flag = "--lowering" if lowering is not None else "--bits"
            raise UsageError(f"{flag} needs a quantized model: add --quant METHOD, or compile "
                             "a checkpoint from 'mimoc quantize'")
        return None, None
    if recipe is None:
        if quant in TRAINED_METHODS:
            raise UsageError(f"{quant} trains the quantizers (minutes): run 'mimoc quantize "
                             f"MODEL.pt --method {quant} -o model_q.pt' first, then compile "
                             "model_q.pt (calibration methods kaq-ptq, minmax, int8 run here)")
        if not isinstance(model, torch.nn.Module):
            raise UsageError("--quant needs a mimoc checkpoint (a zoo detector), not a .pt2 "
                             "program")
        from mimoc.quant import quantize as quantize_model

        recipe = quantize_model(model, quant, progress=progress,
                                **({} if bits is None else {"bits": bits}))
    weight_bits = max((lq.weight_bits for lq in recipe.layers.values()), default=recipe.bits)
    if lowering is None:
        lowering = "int8" if recipe.method == "int8" or weight_bits > 4 else "w4"
    if lowering in ("w4", "w4a4", "w4-int8") and recipe.method == "int8":
        raise UsageError(f"--lowering {lowering} is a 4-bit lowering; an int8 recipe lowers "
                         "with --lowering int8")
    if lowering in ("w4", "w4a4", "w4-int8") and weight_bits > 4:
        raise UsageError(f"--lowering {lowering} holds at most 4-bit weights, the recipe has "
                         f"{weight_bits}-bit ones; use --lowering int8 or --bits 4")
    return recipe, lowering


def check_quant_options(quant: Any, lowering: str | None, bits: int | None) -> None:
    """The model-independent checks of ``quant``, ``lowering`` and ``bits``."""
    from mimoc.quant.spec import METHODS, QuantRecipe
    from mimoc.targets.onnx.quantized import LOWERINGS

    if lowering is not None and lowering not in (*LOWERINGS[1:], AUTO):
        raise UsageError(f"unknown lowering {lowering!r}; choose from "
                         f"{', '.join((*LOWERINGS[1:], AUTO))}")
    if quant is not None and not isinstance(quant, QuantRecipe) and quant not in METHODS:
        raise UsageError(f"unknown quantization method {quant!r}; choose from "
                         f"{', '.join(METHODS)}")
    if bits is not None and (isinstance(bits, bool) or not isinstance(bits, int)
                             or not 2 <= bits <= 8):
        raise UsageError(f"--bits must be an integer in 2..8, got {bits!r}")


def quantized_passes(recipe: Any, passes: str | Iterable[str] | None, lowering: str) -> list:
    """The pipeline of a quantized compile: the user's passes with ``quantize`` first,
    configured with ``recipe``."""
    from mimoc.compiler.passes.quantize import Quantize
    from mimoc.compiler.pipeline import resolve_passes

    default = W4_PASSES if lowering == "w4" else QUANT_PASSES
    names = list(default) if passes is None else (
        [s.strip() for s in passes.split(",") if s.strip()] if isinstance(passes, str)
        else list(passes))
    if "quantize" not in names:
        names.insert(0, "quantize")
    configured = Quantize(recipe)
    return [configured if name == "quantize" else resolve_passes([name])[0] for name in names]


def quant_summary(recipe: Any, lowering: str) -> dict[str, Any]:
    """The manifest's ``quantization`` entry."""
    acts = sorted({f"{lq.act.bits}-bit {lq.act.mode}" for lq in recipe.layers.values()
                   if lq.act is not None})
    faithful = {
        "w4": "no: weights exact, inputs quantized to int8 per block inside MatMulNBits "
              "instead of the recipe's activation quantizers",
        "w4a4": "yes: weights exact, activation quantizers emulated in-graph",
        "int8": "close: weights exact, static 8-bit inputs exact via QuantizeLinear, other "
                "inputs emulated in-graph, then quantized to uint8 at run time",
        "w4-int8": "yes: weights exact as int8 codes, input codes computed in-graph, integer "
                   "sums",
        "fp32": "no: weights exact (their quantized values in fp32 GEMMs), the recipe's "
                "input quantizers not applied",
    }[lowering]
    return {"method": recipe.method, "bits": recipe.bits, "lowering": lowering,
            "layers": len(recipe.layers), "activations": acts, "faithful": faithful}


class OnnxTarget(Target):
    name = "onnx"
    summary = "ONNX models for onnxruntime on edge CPUs (fp32, int8, 4-bit weights)"
    options = ("quant", "lowering", "bits", "static_shapes")
    default_passes = ("canonicalize", "split-channel", "hoist-conv-rows", "split-linear")
    artifact_index = MANIFEST
    artifact_format = FORMAT

    def configure(self, **options: Any) -> OnnxConfig:
        from mimoc.targets.onnx.finish import parse_static_shapes

        config = OnnxConfig(**options)
        check_quant_options(config.quant, config.lowering, config.bits)
        return replace(config, static_shapes=parse_static_shapes(config.static_shapes))

    def plan(self, config: OnnxConfig, model: Any, recipe: Any, *,
             progress: bool = False) -> OnnxConfig:
        auto = config.lowering == AUTO
        recipe, lowering = quant_plan(model, config.quant, None if auto else config.lowering,
                                      config.bits, recipe, progress=progress)
        if auto and recipe is None:
            raise UsageError("--lowering auto needs a quantized model: add --quant METHOD, or "
                             "compile a checkpoint from 'mimoc quantize'")
        selection = None
        if recipe is not None and (auto or config.lowering is None):
            from mimoc.targets.onnx.autoselect import select_lowering

            selection = select_lowering(model, recipe, lambda name: quantized_passes(
                recipe, None, name))
            lowering = selection["chosen"]
        large = []
        for bucket in (selection or {}).get("buckets", [])[1:]:
            from mimoc.targets.onnx.autoselect import detector_graph

            large.append((bucket["from_batch"], bucket["lowering"], detector_graph(
                model, lambda name: quantized_passes(recipe, None, name), bucket["lowering"])))
        return OnnxConfig(config.quant, lowering, config.bits, recipe, config.static_shapes,
                          selection, tuple(large))

    def passes(self, config: OnnxConfig, requested: str | Iterable[str] | None) -> list:
        from mimoc.compiler.pipeline import resolve_passes
        from mimoc.targets.onnx import lower

        if config.recipe is None:
            chosen = resolve_passes(self.default_passes if requested is None else requested)
        else:
            chosen = quantized_passes(config.recipe, requested, config.lowering)
        return chosen + [p for p in [lower.PASS] if p not in chosen]

    def build(self, graph: Any, config: OnnxConfig, *, context: BuildContext) -> Any:
        from mimoc.targets.onnx.artifact import build_artifact

        summary = None if config.recipe is None else quant_summary(config.recipe,
                                                                   config.lowering)
        return build_artifact(graph, records=context.records, model=dict(context.model),
                              source=context.source, lowering=config.lowering or "fp32",
                              quantization=summary, static_shapes=config.static_shapes,
                              snr_def=context.snr_def, selection=config.selection,
                              large_batch=config.large_batch)

    def write(self, artifact: Any, out: str | os.PathLike, *, force: bool) -> Path:
        from mimoc.targets.onnx.artifact import write_artifact

        return write_artifact(artifact, out, force=force)


TARGET = OnnxTarget()
