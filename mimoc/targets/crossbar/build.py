"""``mimoc.compile(..., target="crossbar")``: passes, crossbar lowering, schedule, artifact.

Default passes: ``canonicalize, split-channel, split-linear`` (the ONNX target's
``hoist-conv-rows`` is left out: on a crossbar it would move convolution reads into the
slot stage, see docs/crossbar.md); then ``crossbar-lower``. ``prune`` and
``remove-layers`` run when given in ``passes`` (with their options).

Example::

    >>> result = compile_crossbar("detnet.pt", "out/xb", device="ftj-luo2022", array=(64, 64))
    >>> result.schedule["totals"]["per_slot_s"]
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mimoc.fileio import releases_claims
from mimoc.targets.crossbar import lower
from mimoc.targets.crossbar.artifact import BuiltSchedule, build_schedule, write_artifact
from mimoc.targets.crossbar.config import CrossbarConfig
from mimoc.targets.crossbar.devices import Device, load_device

DEFAULT_PASSES = ("canonicalize", "split-channel", "split-linear")
DEFAULT_DEVICE = "ftj-luo2022"


@dataclass(frozen=True)
class CrossbarCompileResult:
    """What a crossbar compile made (``mimoc.api.CompileResult`` shape: path, artifact,
    pipeline, ``manifest`` = the schedule)."""

    path: Path | None
    artifact: BuiltSchedule
    pipeline: Any

    @property
    def schedule(self) -> dict[str, Any]:
        return dict(self.artifact.schedule)

    @property
    def manifest(self) -> dict[str, Any]:
        return self.schedule

    def report(self) -> str:
        return self.pipeline.report()


def crossbar_config(config: CrossbarConfig | dict | None = None, *, array: Any = None,
                    slot: int | None = None) -> CrossbarConfig:
    base = config if isinstance(config, CrossbarConfig) else CrossbarConfig(**(config or {}))
    changes = base.to_dict()
    if array is not None:
        changes["array"] = array
    if slot is not None:
        changes["slot"] = slot
    return CrossbarConfig.from_dict(changes)


@releases_claims  # a call failing after its output check leaves no lock
def compile_crossbar(model: Any, out: str | os.PathLike | None = None, *,
                     device: str | os.PathLike | Device | None = None, array: Any = None,
                     slot: int | None = None, config: CrossbarConfig | dict | None = None,
                     passes: str | Iterable[str] | None = None,
                     dump_after: Iterable[str] | str = (),
                     on_dump: Callable[[str, str], None] | None = None, force: bool = False,
                     example: Sequence[torch.Tensor] | None = None,
                     options: Any = None, progress: bool = False) -> CrossbarCompileResult:
    """Compile ``model`` for the crossbar target (arguments as :func:`mimoc.api.compile`)."""
    from mimoc.api import _import, _model_info, file_digest, load_source
    from mimoc.compiler.pipeline import resolve_passes, run_pipeline
    from mimoc.targets.output import check_output_directory

    dev = load_device(device if device is not None else DEFAULT_DEVICE)
    cfg = crossbar_config(config, array=array, slot=slot)
    path = Path(model) if isinstance(model, str | os.PathLike) else None
    if path is not None and not path.exists():
        load_source(path)  # raises: no such file
    if out is not None:
        check_output_directory(out, force=force)
    source = None
    if path is not None:
        model = load_source(path)
        source = {"file": path.name, "sha256": file_digest(path)}
    graph = _import(model, example)
    chosen = resolve_passes(DEFAULT_PASSES if passes is None else passes)
    chosen = [p for p in chosen if p.name != lower.NAME] + [lower.PASS]
    extra = {} if options is None else {"options": options}
    result = run_pipeline(graph, chosen, dump_after=dump_after, on_dump=on_dump, **extra)
    built = build_schedule(result.graph, dev, cfg, model=_model_info(model), source=source,
                           records=result.records, progress=progress)
    written = write_artifact(built, out, force=force) if out is not None else None
    return CrossbarCompileResult(written, built, result)
