"""The onnx artifact's index file and the ``format`` it declares (read by the target,
the artifact writer and reader, and :func:`mimoc.targets.artifact_target`)."""

MANIFEST = "manifest.json"
FORMAT = "mimoc-onnx-artifact"
