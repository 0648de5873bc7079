"""The iree target: the ONNX target's slot, symbol and detector graphs compiled by IREE
to native CPU modules (``.vmfb``) for the host or another CPU (``--cpu aarch64``).

- :mod:`.target`: options (``cpu``, ``static_shapes``), passes, build and write;
- :mod:`.modules`: ONNX -> MLIR -> ``.vmfb`` through :mod:`iree.compiler`;
- :mod:`.artifact`: the artifact directory (manifest with the modules' sha256);
- :mod:`.cpus`: ``--cpu`` names -> target triple and flags.

:mod:`mimoc.runtime.iree_runner` runs the artifact with the IREE runtime.
"""

from mimoc.targets.iree.format import FORMAT, MANIFEST, MODULE_FILES

__all__ = ["FORMAT", "MANIFEST", "MODULE_FILES"]
