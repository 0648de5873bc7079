"""The ``iree`` target: the ONNX target's graphs compiled to native code by IREE.

Options (keywords of ``mimoc.compile`` / flags of ``mimoc compile``):

- ``cpu``: the processor the modules are for (default ``host``; ``aarch64``,
  ``x86-64-v3``, an LLVM core name: :mod:`.cpus`);
- ``static_shapes``: the sizes compiled into the modules (default ``B=1,S=14``; RE-MIMO's
  ``U`` defaults to the model's ``nt``).

The passes are the ONNX target's (fp32: the onnx-fuse lowering included); quantized
models are refused (IREE does not import onnxruntime's contrib kernels: compile them with
``--target onnx``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mimoc.errors import UsageError
from mimoc.targets.base import BuildContext, Target
from mimoc.targets.iree.format import FORMAT, MANIFEST


@dataclass(frozen=True)
class IreeConfig:
    cpu: str = "host"
    static_shapes: Any = None


class IreeTarget(Target):
    name = "iree"
    summary = "native CPU code through IREE (.vmfb modules; host, aarch64, x86-64-v3, ...)"
    options = ("cpu", "static_shapes")
    default_passes = ("canonicalize", "split-channel", "hoist-conv-rows", "split-linear")
    artifact_index = MANIFEST
    artifact_format = FORMAT

    def configure(self, **options: Any) -> IreeConfig:
        from mimoc.targets.iree.artifact import DEFAULT_SHAPES
        from mimoc.targets.iree.cpus import cpu_flags
        from mimoc.targets.onnx.finish import parse_static_shapes

        config = IreeConfig(**options)
        cpu_flags(config.cpu)  # a bad --cpu fails before the slow part
        shapes = parse_static_shapes(config.static_shapes) or {}
        return IreeConfig(config.cpu, {**DEFAULT_SHAPES, **shapes})

    def plan(self, config: IreeConfig, model: Any, recipe: Any, *,
             progress: bool = False) -> IreeConfig:
        if recipe is not None:
            raise UsageError("the iree target compiles fp32 models; compile the quantized "
                             "checkpoint with --target onnx, or its fp32 model with "
                             "--target iree")
        nt = getattr(getattr(model, "config", None), "nt", None)
        if getattr(model, "family", None) == "remimo" and "U" not in config.static_shapes:
            return IreeConfig(config.cpu, {**config.static_shapes, "U": nt})
        return config

    def passes(self, config: IreeConfig, requested: str | Iterable[str] | None) -> list:
        from mimoc.targets.onnx.target import TARGET as ONNX

        return ONNX.passes(ONNX.configure(), requested)

    def build(self, graph: Any, config: IreeConfig, *, context: BuildContext) -> Any:
        from mimoc.targets.iree.artifact import build_artifact
        from mimoc.targets.onnx.artifact import build_artifact as build_onnx

        onnx_built = build_onnx(graph, records=context.records, model=dict(context.model),
                                source=context.source, static_shapes=config.static_shapes,
                                snr_def=context.snr_def)
        return build_artifact(onnx_built, cpu=config.cpu)

    def write(self, artifact: Any, out: str | os.PathLike, *, force: bool) -> Path:
        from mimoc.targets.iree.artifact import write_artifact

        return write_artifact(artifact, out, force=force)


TARGET = IreeTarget()
