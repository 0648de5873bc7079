"""The compiler driver: load -> import -> the target's passes -> pipeline -> build -> write.

One function, :func:`compile`, serves every target: the target
(:class:`~mimoc.targets.base.Target`, looked up in :data:`mimoc.targets.TARGETS`) says
which options it takes, which passes to run and how to build and write its artifact;
the driver does everything else the same way for all of them. Every check that needs
no model runs before the slow steps (the options, the output directory), so a bad flag
fails in milliseconds.

Example::

    >>> result = compile("detnet.pt", "onnx", "out/detnet")
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

from mimoc.compiler.source import EXPORT_HINT
from mimoc.errors import UsageError
from mimoc.fileio import releases_claims
from mimoc.targets import get_target, target_options
from mimoc.targets.base import BuildContext, check_options


@dataclass(frozen=True)
class CompileResult:
    """What :func:`compile` made: the artifact (in memory, and its directory if written),
    the pipeline's result and the target's name."""

    path: Path | None
    artifact: Any  # the target's artifact: onnx BuiltArtifact, crossbar BuiltSchedule, ...
    pipeline: Any  # mimoc.compiler.pipeline.PipelineResult
    target: str = "onnx"

    @property
    def manifest(self) -> dict[str, Any]:
        """The artifact's index (``manifest.json`` of ONNX, ``schedule.json`` of crossbar)."""
        return dict(self.artifact.manifest)

    @property
    def schedule(self) -> dict[str, Any]:
        """The crossbar schedule (``schedule.json``)."""
        if not hasattr(self.artifact, "schedule"):
            raise AttributeError(f"a {self.target} artifact has no schedule")
        return dict(self.artifact.schedule)

    @property
    def models(self):
        """The ONNX models of an ONNX artifact."""
        return self.artifact.models

    def report(self) -> str:
        return self.pipeline.report()


def model_info(model: Any) -> dict[str, Any]:
    """``{"name", "family", "config"}`` of a model, for the artifact's index."""
    family = getattr(model, "family", None)
    config = getattr(model, "config", None)
    info: dict[str, Any] = {"name": family or type(model).__name__, "family": family}
    if config is not None and hasattr(config, "to_dict"):
        info["config"] = config.to_dict()
    return info


def load_with_recipe(path: Path) -> tuple[Any, Any, str | None]:
    """``(module or program, recipe or None, snr_def or None)``: a quantized checkpoint
    carries its recipe; ``snr_def`` is the SNR convention the checkpoint says it was trained
    under (``None`` when it does not say, or says something unknown)."""
    from mimoc.compiler.source import load_model_file
    from mimoc.quant.checkpoint import recipe_of
    from mimoc.sim.snr import SNR_DEFINITIONS

    checkpoint = load_model_file(path)  # the file is read and checked once
    if isinstance(checkpoint, torch.export.ExportedProgram):
        return checkpoint, None, None
    snr_def = (checkpoint.training.get("options") or {}).get("snr_def")
    return (checkpoint.model.eval(), recipe_of(checkpoint),
            snr_def if snr_def in SNR_DEFINITIONS else None)


def import_graph(model: Any, example: Sequence[torch.Tensor] | None):
    """The IR of a module or an exported program (the frontend)."""
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


@releases_claims  # a call failing after its output check leaves no lock
def compile(model: Any, target: str = "onnx", out: str | os.PathLike | None = None, *,  # noqa: A001
            passes: str | Iterable[str] | None = None, dump_after: Iterable[str] | str = (),
            on_dump: Callable[[str, str], None] | None = None, force: bool = False,
            example: Sequence[torch.Tensor] | None = None, options: Any = None,
            progress: bool = False, **target_opts: Any) -> CompileResult:
    """Compile ``model`` for ``target``; see :func:`mimoc.api.compile` for the arguments.

    ``target_opts`` are the target's own options (``None`` values are ignored); an
    option of another target is a one-line UsageError naming its target.
    """
    from mimoc.compiler.pipeline import run_pipeline
    from mimoc.compiler.source import file_digest, load_source
    from mimoc.targets.output import check_output_directory

    chosen_target = get_target(target)
    others = {k: v for k, v in target_options().items() if k != chosen_target.name}
    config = chosen_target.configure(**check_options(chosen_target, target_opts, others))
    path = Path(model) if isinstance(model, str | os.PathLike) else None
    if path is not None and not path.exists():
        load_source(path)  # raises: no such file
    if out is not None:
        check_output_directory(out, force=force)  # fail before the slow part
    source = None
    recipe = snr_def = None
    if path is not None:
        model, recipe, snr_def = load_with_recipe(path)
        source = {"file": path.name, "sha256": file_digest(path)}
    config = chosen_target.plan(config, model, recipe, progress=progress)
    graph = import_graph(model, example)
    extra = {} if options is None else {"options": options}
    result = run_pipeline(graph, chosen_target.passes(config, passes), dump_after=dump_after,
                          on_dump=on_dump, **extra)
    context = BuildContext(model=model_info(model), source=source,
                           records=tuple(result.records), progress=progress,
                           snr_def=snr_def)
    built = chosen_target.build(result.graph, config, context=context)
    written = chosen_target.write(built, out, force=force) if out is not None else None
    return CompileResult(written, built, result, chosen_target.name)
