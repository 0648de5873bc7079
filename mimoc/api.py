"""``mimoc.compile``: a detector -> IR -> passes -> an ONNX artifact (``mimoc compile``).

Inputs:

- a mimoc checkpoint (``.pt`` saved by :func:`mimoc.detectors.save_detector` or
  ``mimoc train``), loaded safely (never unpickles code);
- a ``torch.export`` program saved with ``torch.export.save`` (``.pt2``), for detectors
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

import hashlib
import os
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mimoc.errors import MimocError, ModelFileError, UsageError

EXPORT_HINT = ("export it with torch.export and save the program: ep = torch.export.export("
               "model, (H, y), dynamic_shapes=({0: B}, {0: B, 1: S})) with B, S = "
               "torch.export.Dim('B', min=2), torch.export.Dim('S', min=2); "
               "torch.export.save(ep, 'model.pt2')")


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

def _is_export_archive(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith("/archive_format") or n.endswith("serialized_exported_program"
                                                                  ".json")
                       for n in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_source(path: str | os.PathLike) -> torch.nn.Module | torch.export.ExportedProgram:
    """A checkpoint (-> zoo module, eval mode) or a ``.pt2`` program (-> ExportedProgram)."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{str(path)!r}: no such file; give a mimoc checkpoint (.pt) or "
                             "a torch.export program (.pt2)")
    if path.is_file() and _is_export_archive(path):
        try:
            return torch.export.load(str(path))
        except Exception as err:  # torch raises many types for a damaged archive
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelFileError(f"{str(path)!r} is a torch.export archive that cannot be "
                                 f"loaded ({first}); save it again with torch.export.save") \
                from None
    from mimoc.detectors import load_detector

    try:
        return load_detector(path)
    except ModelFileError as err:
        if "pickled Python code" in str(err):
            raise ModelFileError(f"{err}; or, for a detector outside the zoo, {EXPORT_HINT}") \
                from None
        raise


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
            ) -> CompileResult:
    """Compile ``model`` for ``target`` and (when ``out`` is given) write the artifact.

    Args:
        model: checkpoint path, ``.pt2`` path, ``nn.Module`` or ``ExportedProgram``.
        target: ``"onnx"`` (fp32 ONNX for onnxruntime).
        out: artifact directory, written atomically; ``None`` keeps it in memory.
        passes: comma-separated names or a list (default: the target's default pipeline);
            the target's own lowering passes (:func:`target_lowering`) run after them.
        dump_after: pass names whose IR text goes to ``on_dump(name, text)``.
        force: replace a non-empty ``out``.
        example: ``(H, y)`` for modules outside the zoo.
        options: :class:`mimoc.compiler.passes.base.PassOptions` (prune / remove-layers).

    Raises :class:`~mimoc.errors.MimocError` (one-line message) for bad inputs.
    """
    from mimoc.compiler.pipeline import DEFAULT_PASSES, resolve_passes, run_pipeline
    from mimoc.targets import TARGETS
    from mimoc.targets.onnx import build_artifact, write_artifact
    from mimoc.targets.output import check_output_directory

    if target not in TARGETS:
        raise UsageError(f"unknown target {target!r}; targets: {', '.join(TARGETS)}")
    path = Path(model) if isinstance(model, str | os.PathLike) else None
    if path is not None and not path.exists():
        load_source(path)  # raises: no such file
    if out is not None:
        check_output_directory(out, force=force)  # fail before the slow part
    source = None
    if path is not None:
        model = load_source(path)
        source = {"file": path.name, "sha256": file_digest(path)}
    graph = _import(model, example)
    chosen = resolve_passes(DEFAULT_PASSES[target] if passes is None else passes)
    chosen += [p for p in target_lowering(target) if p not in chosen]
    extra = {} if options is None else {"options": options}
    result = run_pipeline(graph, chosen, dump_after=dump_after, on_dump=on_dump, **extra)
    info = _model_info(model)
    built = build_artifact(result.graph, records=result.records, model=info, source=source)
    written = write_artifact(built, out, force=force) if out is not None else None
    return CompileResult(written, built, result)


__all__ = ["CompileResult", "MimocError", "compile", "load_source"]
