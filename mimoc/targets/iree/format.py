"""The iree artifact's index file and the ``format`` it declares (read by the target, the
artifact writer and reader, and :func:`mimoc.targets.artifact_target`)."""

MANIFEST = "manifest.json"
FORMAT = "mimoc-iree-artifact"
FORMAT_VERSION = 1
MODULE_FILES = {"slot": "slot.vmfb", "symbol": "symbol.vmfb", "detector": "detector.vmfb"}
