"""``mimoc.compile``: a detector -> IR -> passes -> an ONNX artifact (``mimoc compile``).

Inputs:

- a mimoc checkpoint (``.pt`` saved by :func:`mimoc.detectors.save_detector` or
  ``mimoc train``), loaded safely (never unpickles code);
- a ``torch.export`` program saved with ``torch.export.save`` (``.pt2``; read by
  :mod:`mimoc.compiler.pt2`, never by ``torch.export.load``), for detectors
  outside the zoo that follow ``forward(H [B, 2Nr, 2Nt], y [B, S, 2Nr]) -> x_hat``,
  exported with dynamic ``B`` and ``S``::

      B, S = torch.export.Dim("B", min=2), torch.export.Dim("S", min=2)
      ep = torch.export.export(model, (H, y), dynamic_shapes=({0: B}, {0: B, 1: S}))
      torch.export.save(ep, "detector.pt2")

- in Python, also an ``nn.Module`` (zoo detector, or any module with ``example=(H, y)``)
  or an ``ExportedProgram``.

A pickled ``nn.Module`` (``torch.save(model)``) is refused with how to save a usable file.

Example::

    >>> result = mimoc.compile("detnet.pt", target="onnx", out="out/detnet")
    >>> result.manifest["flops"]["per_symbol"], result.path
    (52736, PosixPath('out/detnet'))
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mimoc.compiler.source import EXPORT_HINT, file_digest, load_source
from mimoc.errors import MimocError, UsageError


@dataclass(frozen=True)
class CompileResult:
    """What :func:`compile` made: the artifact (in memory, and its directory if written)."""

    path: Path | None
    artifact: Any  # mimoc.targets.onnx.BuiltArtifact
    pipeline: Any  # mimoc.compiler.pipeline.PipelineResult

    @property
    def manifest(self) -> dict[str, Any]:
        return dict(self.artifact.manifest)

    @property
    def models(self):
        return self.artifact.models

    def report(self) -> str:
        return self.pipeline.report()


def target_lowering(target: str) -> list:
    """The passes a target appends to the user's pipeline (``onnx``: ``onnx-fuse``)."""
    from mimoc.targets.onnx import lower

    return {"onnx": [lower.PASS]}.get(target, [])


# ---------------------------------------------------------------- loading inputs
# load_source and file_digest live in mimoc.compiler.source (re-exported here)

def _model_info(model: Any) -> dict[str, Any]:
    family = getattr(model, "family", None)
    config = getattr(model, "config", None)
    info: dict[str, Any] = {"name": family or type(model).__name__, "family": family}
    if config is not None and hasattr(config, "to_dict"):
        info["config"] = config.to_dict()
    return info


# ---------------------------------------------------------------- the pipeline

def _import(model: Any, example: Sequence[torch.Tensor] | None):
    from mimoc.compiler.frontend import DEFAULT_DIMS, import_module, import_program

    if isinstance(model, torch.export.ExportedProgram):
        graph = import_program(model, dims=DEFAULT_DIMS, name="detector")
        H, y = graph.node("H"), graph.node("y")
        if isinstance(H.shape[0], int) or any(isinstance(d, int) for d in y.shape[:2]):
            raise UsageError("the exported program has a fixed batch or slot size (H "
                             f"{list(map(str, H.shape))}, y {list(map(str, y.shape))}); "
                             f"{EXPORT_HINT}")
        return graph
    if isinstance(model, torch.nn.Module):
        if example is None and getattr(model, "config", None) is None:
            raise UsageError("a model outside the zoo needs example inputs: "
                             "compile(model, example=(H, y))")
        return import_module(model.eval(), example)
    raise UsageError(f"cannot compile a {type(model).__name__}; give a checkpoint path, a .pt2 "
                     "program, an nn.Module or an ExportedProgram")


def compile(model: str | os.PathLike | torch.nn.Module | torch.export.ExportedProgram,  # noqa: A001
            target: str = "onnx", out: str | os.PathLike | None = None, *,
            passes: str | Iterable[str] | None = None, dump_after: Iterable[str] | str = (),
            on_dump: Callable[[str, str], None] | None = None, force: bool = False,
            example: Sequence[torch.Tensor] | None = None, options: Any = None,
            quant: Any = None, lowering: str | None = None, bits: int | None = None,
            progress: bool = False,
            device: Any = None, array: Any = None, slot: int | None = None,
            crossbar: Any = None,
            ) -> CompileResult:
    """Compile ``model`` for ``target`` and (when ``out`` is given) write the artifact.

    Args:
        model: checkpoint path, ``.pt2`` path, ``nn.Module`` or ``ExportedProgram``.
        target: ``"onnx"`` (ONNX for onnxruntime) or ``"crossbar"`` (memristor crossbar
            schedule; ``device``, ``array``, ``slot`` and ``crossbar`` (a
            :class:`~mimoc.targets.crossbar.config.CrossbarConfig` or dict) configure it,
            see :func:`mimoc.targets.crossbar.build.compile_crossbar` and docs/crossbar.md).
        out: artifact directory, written atomically; ``None`` keeps it in memory.
        passes: comma-separated names or a list (default: the target's default pipeline);
            the target's own lowering passes (:func:`target_lowering`) run after them.
        dump_after: pass names whose IR text goes to ``on_dump(name, text)``.
        force: replace a non-empty ``out``.
        example: ``(H, y)`` for modules outside the zoo.
        options: :class:`mimoc.compiler.passes.base.PassOptions` (prune / remove-layers).
        quant: ``None``, a method (``"kaq"``, ``"kaq-ptq"``, ``"lsq"``, ``"minmax"``,
            ``"int8"``) or a :class:`~mimoc.quant.spec.QuantRecipe`. A quantized checkpoint
            (``mimoc quantize``) compiles with its own recipe. See :func:`quant_plan`.
        lowering: ``"w4"`` (default for 4-bit methods), ``"w4a4"`` or ``"int8"`` (default
            for ``int8``); see :mod:`mimoc.targets.onnx.quantized`.
        bits: bit width for a calibration method run here (default: the method's).
        progress: progress bars (on a terminal) while a calibration method runs.

    Raises :class:`~mimoc.errors.MimocError` (one-line message) for bad inputs.
    """
    from mimoc.compiler.pipeline import DEFAULT_PASSES, resolve_passes, run_pipeline
    from mimoc.targets import TARGETS
    from mimoc.targets.onnx import build_artifact, write_artifact
    from mimoc.targets.output import check_output_directory

    if target not in TARGETS:
        raise UsageError(f"unknown target {target!r}; targets: {', '.join(TARGETS)}")
    if target == "crossbar":
        from mimoc.targets.crossbar.build import compile_crossbar

        return compile_crossbar(model, out, device=device, array=array, slot=slot,
                                config=crossbar, passes=passes, dump_after=dump_after,
                                on_dump=on_dump, force=force, example=example, options=options)
    if device is not None or array is not None or slot is not None or crossbar is not None:
        raise UsageError("device, array, slot and crossbar options are for target='crossbar'")
    path = Path(model) if isinstance(model, str | os.PathLike) else None
    if path is not None and not path.exists():
        load_source(path)  # raises: no such file
    if out is not None:
        check_output_directory(out, force=force)  # fail before the slow part
    source = None
    carried = None
    if path is not None:
        model, carried = _load_with_recipe(path)
        source = {"file": path.name, "sha256": file_digest(path)}
    recipe, lowering = quant_plan(model, quant, lowering, bits, carried, progress=progress)
    graph = _import(model, example)
    if recipe is None:
        chosen = resolve_passes(DEFAULT_PASSES[target] if passes is None else passes)
    else:
        chosen = _quantized_passes(recipe, passes, lowering)
    chosen += [p for p in target_lowering(target) if p not in chosen]
    extra = {} if options is None else {"options": options}
    result = run_pipeline(graph, chosen, dump_after=dump_after, on_dump=on_dump, **extra)
    info = _model_info(model)
    summary = None if recipe is None else _quant_summary(recipe, lowering)
    built = build_artifact(result.graph, records=result.records, model=info, source=source,
                           lowering=lowering or "fp32", quantization=summary)
    written = write_artifact(built, out, force=force) if out is not None else None
    return CompileResult(written, built, result)


# ---------------------------------------------------------------- quantized compiles

#: Pipeline of a quantized compile: quantize first (it folds BatchNorm into quantized convs
#: itself); split-linear / hoist-conv-rows leave layers with input quantizers unchanged.
QUANT_PASSES = ("quantize", "canonicalize", "split-channel", "hoist-conv-rows", "split-linear")
#: w4: the kernel quantizes the inputs, so the recipe's input quantizers go before the splits.
W4_PASSES = ("quantize", "canonicalize", "drop-input-quant", "split-channel", "hoist-conv-rows",
             "split-linear")
TRAINED_METHODS = ("kaq", "lsq")


def _load_with_recipe(path: Path):
    """``(module or program, recipe or None)``: a quantized checkpoint carries its recipe."""
    source = load_source(path)
    if isinstance(source, torch.export.ExportedProgram):
        return source, None
    try:
        from mimoc.quant.checkpoint import load_quantized
    except ImportError:  # pragma: no cover - mimoc.quant is part of the package
        return source, None
    model, recipe = load_quantized(path)
    return model.eval(), recipe


def quant_plan(model: Any, quant: Any, lowering: str | None, bits: int | None,
               carried: Any = None, *, progress: bool = False) -> tuple[Any, str | None]:
    """``(recipe or None, lowering or None)`` for a compile; one-line UsageErrors for bad
    combinations (see ``mimoc compile --help``)."""
    from mimoc.quant.spec import METHODS, QuantRecipe
    from mimoc.targets.onnx.quantized import LOWERINGS

    if lowering is not None and lowering not in LOWERINGS[1:]:
        raise UsageError(f"unknown lowering {lowering!r}; choose from "
                         f"{', '.join(LOWERINGS[1:])}")
    if quant is not None and not isinstance(quant, QuantRecipe) and quant not in METHODS:
        raise UsageError(f"unknown quantization method {quant!r}; choose from "
                         f"{', '.join(METHODS)}")
    if bits is not None and (isinstance(bits, bool) or not isinstance(bits, int)
                             or not 2 <= bits <= 8):
        raise UsageError(f"--bits must be an integer in 2..8, got {bits!r}")
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
    if lowering in ("w4", "w4a4") and recipe.method == "int8":
        raise UsageError(f"--lowering {lowering} is a 4-bit lowering; an int8 recipe lowers "
                         "with --lowering int8")
    if lowering in ("w4", "w4a4") and weight_bits > 4:
        raise UsageError(f"--lowering {lowering} holds at most 4-bit weights, the recipe has "
                         f"{weight_bits}-bit ones; use --lowering int8 or --bits 4")
    return recipe, lowering


def _quantized_passes(recipe: Any, passes: str | Iterable[str] | None, lowering: str) -> list:
    from mimoc.compiler.passes.quantize import make_pass
    from mimoc.compiler.pipeline import resolve_passes

    default = W4_PASSES if lowering == "w4" else QUANT_PASSES
    names = list(default) if passes is None else (
        [s.strip() for s in passes.split(",") if s.strip()] if isinstance(passes, str)
        else list(passes))
    if "quantize" not in names:
        names.insert(0, "quantize")
    configured = make_pass(recipe)
    return [configured if name == "quantize" else resolve_passes([name])[0] for name in names]


def _quant_summary(recipe: Any, lowering: str) -> dict[str, Any]:
    acts = sorted({f"{lq.act.bits}-bit {lq.act.mode}" for lq in recipe.layers.values()
                   if lq.act is not None})
    faithful = {
        "w4": "no: weights exact, inputs quantized to int8 per block inside MatMulNBits "
              "instead of the recipe's activation quantizers",
        "w4a4": "yes: weights exact, activation quantizers emulated in-graph",
        "int8": "close: weights exact, static 8-bit inputs exact via QuantizeLinear, other "
                "inputs emulated in-graph, then quantized to uint8 at run time",
    }[lowering]
    return {"method": recipe.method, "bits": recipe.bits, "lowering": lowering,
            "layers": len(recipe.layers), "activations": acts, "faithful": faithful}


__all__ = ["EXPORT_HINT", "CompileResult", "MimocError", "compile", "file_digest", "load_source",
           "quant_plan"]
