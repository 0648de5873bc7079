"""The onnx-cpu target: IR -> ONNX (fp32), table-driven (:data:`.emitters.EMITTERS`).

- :func:`.emit.emit_model`: one IR graph -> one ONNX model (opset 21); per-symbol layers
  are emitted on rows ``[B*S, n]`` (:mod:`.layout`: Gemm with the bias fused); quantized
  graphs per :class:`~.context.Lowering` (:mod:`.quantized`);
- :func:`.artifact.build_artifact` / :func:`.artifact.write_artifact`: the artifact
  directory (manifest, ``slot.onnx``, ``symbol.onnx``, ``detector.onnx``), written atomically.

The Python entry point is :func:`mimoc.api.compile` (``mimoc compile`` on the command
line); :mod:`mimoc.runtime` runs the artifact.
"""

from mimoc.targets.onnx.artifact import (
    MANIFEST,
    MODEL_FILES,
    BuiltArtifact,
    build_artifact,
    read_manifest,
    write_artifact,
)
from mimoc.targets.onnx.context import EmitError, Lowering
from mimoc.targets.onnx.emit import OPSET, emit_model, supported_ops

__all__ = ["MANIFEST", "MODEL_FILES", "OPSET", "BuiltArtifact", "EmitError", "Lowering",
           "build_artifact", "emit_model", "read_manifest", "supported_ops", "write_artifact"]
