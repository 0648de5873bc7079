"""The iree artifact: ``manifest.json``, ``slot.vmfb``, ``symbol.vmfb``, ``detector.vmfb``.

The ONNX target builds the three graphs (with static ``B``/``S``: IREE compiles each
size into the module); each is compiled to an IREE module (:mod:`.modules`). The
manifest is the ONNX one (graphs, slot state, FLOPs, layers, passes) with
``format``/``target`` of this target, an ``iree`` entry (compiler, flags, CPU, target
triple, the function each module exports) and the modules' sizes and sha256 under
``files``, verified when the artifact is loaded (:mod:`mimoc.runtime.iree_runner`).

Example::

    >>> built = build_artifact(onnx_built, cpu="aarch64")
    >>> write_artifact(built, "out/detnet-arm")
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mimoc.targets.artifact_files import sha256_hex
from mimoc.targets.iree.cpus import cpu_flags
from mimoc.targets.iree.format import FORMAT, FORMAT_VERSION, MANIFEST, MODULE_FILES
from mimoc.targets.iree.modules import compile_model, compiler_version
from mimoc.targets.output import read_json_file, write_directory

#: the sizes compiled into the modules unless the user fixes others
DEFAULT_SHAPES = {"B": 1, "S": 14}
ONNX_ONLY = ("lowering", "quantization", "session_config", "onnx", "lowering_selection",
             "batch_dispatch")


@dataclass(frozen=True)
class BuiltIreeArtifact:
    """The compiled modules and the manifest (``files()`` to write)."""

    modules: Mapping[str, bytes]
    manifest: Mapping[str, Any]

    def files(self) -> dict[str, bytes]:
        out = {MODULE_FILES[k]: data for k, data in self.modules.items()}
        manifest = dict(self.manifest)
        manifest["files"] = {name: {"bytes": len(data), "sha256": sha256_hex(data)}
                             for name, data in sorted(out.items())}
        out[MANIFEST] = (json.dumps(manifest, indent=2) + "\n").encode()
        return out


def build_artifact(onnx_built: Any, *, cpu: str = "host") -> BuiltIreeArtifact:
    """Compile the ONNX artifact ``onnx_built`` (static shapes) for ``cpu``."""
    triple, flags = cpu_flags(cpu)
    stages = list(MODULE_FILES)
    # iree-compile runs as a child process per module: three at once use the cores
    with ThreadPoolExecutor(max_workers=len(stages)) as pool:
        compiled = dict(zip(stages, pool.map(
            lambda stage: compile_model(onnx_built.models[stage], flags, stage), stages),
            strict=True))
    manifest = {k: v for k, v in onnx_built.manifest.items() if k not in ONNX_ONLY}
    manifest.update(format=FORMAT, format_version=FORMAT_VERSION, target="iree",
                    lowering="fp32")
    manifest["iree"] = {
        "compiler": compiler_version(), "cpu": cpu, "triple": triple,
        "flags": [*_base_flags(), *flags],
        "functions": {stage: onnx_built.models[stage].graph.name for stage in stages},
        "input": "ONNX opset 21 graphs of the onnx target, imported by IREE's ONNX importer"}
    manifest["runtime"] = ("run slot.vmfb once per channel realisation (input H), then "
                           "symbol.vmfb on y and the slot state, with the IREE runtime "
                           "(local-sync driver); sizes are fixed: see static_shapes")
    return BuiltIreeArtifact(compiled, manifest)


def _base_flags() -> list[str]:
    from mimoc.targets.iree.modules import BASE_FLAGS

    return list(BASE_FLAGS)


def write_artifact(built: BuiltIreeArtifact, out: str | os.PathLike, *,
                   force: bool = False) -> Path:
    return write_directory(built.files(), out, force=force)


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The checked manifest of an iree artifact directory (format, version, the JSON
    Schema ``iree_manifest`` and the stage structure the runtime needs)."""
    from mimoc.targets.onnx.artifact import check_manifest

    manifest = read_json_file(path, MANIFEST, fmt=FORMAT, version=FORMAT_VERSION,
                              kind="IREE artifact manifest", schema="iree_manifest",
                              how_to_make="compile one with 'mimoc compile MODEL.pt "
                                          "--target iree -o DIR'")
    check_manifest(manifest, repr(str(Path(path) / MANIFEST)))
    return manifest
