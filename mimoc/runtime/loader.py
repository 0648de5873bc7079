"""``mimoc.load(path)``: any compiled artifact, by the format its index file declares.

The target that wrote a directory is recognised from its index file's ``format`` field
(:func:`mimoc.targets.artifact_target`); :data:`RUNNERS` maps each target to the
executor that loads its artifacts: ``onnx`` -> :class:`~mimoc.runtime.onnx_runner.
OnnxArtifact` (onnxruntime), ``crossbar`` -> :class:`~mimoc.runtime.imc.IMCSchedule` (the
in-memory-computing simulator), ``iree`` -> :class:`~mimoc.runtime.iree_runner.IreeArtifact`
(the IREE runtime). All have ``detect(H, y)``, ``engine()`` for
:func:`mimoc.sim.ber.simulate`, ``config`` and ``path``; ``detect(H, y, output="llr")``
gives max-log bit LLRs instead of symbol estimates (:mod:`mimoc.sim.llr`) for the ONNX and
crossbar runners.

Example::

    >>> artifact = mimoc.load("out/detnet")          # ONNX or crossbar alike
    >>> x_hat = artifact.detect(H, y)
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from mimoc.errors import ModelFileError
from mimoc.targets import artifact_target

#: target name -> "module:function" loading its artifact (path, *, verify, **options)
RUNNERS: dict[str, str] = {
    "onnx": "mimoc.runtime.onnx_runner:load_artifact",
    "crossbar": "mimoc.runtime.imc:load_schedule",
    "iree": "mimoc.runtime.iree_runner:load_artifact",
}
#: options that only some runners take
RUNNER_OPTIONS: dict[str, tuple[str, ...]] = {"onnx": ("threads",), "crossbar": (),
                                               "iree": ()}


def is_artifact(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an artifact directory of a target mimoc can run."""
    return artifact_target(path) in RUNNERS


def load(path: str | os.PathLike, *, verify: bool = True, threads: int = 1) -> Any:
    """The executor of the artifact directory ``path`` (see the module docstring).

    ``verify``: refuse files modified after compiling (their recorded sha256 differs);
    ``threads``: onnxruntime threads (ONNX artifacts). A path that is no artifact, or an
    artifact of a target without a runner here, is a one-line ModelFileError.
    """
    kind = artifact_target(path)
    if kind is None:
        what = "no such directory" if not Path(path).exists() else (
            "not a directory" if not Path(path).is_dir() else "no manifest.json or "
            "schedule.json inside")
        raise ModelFileError(f"{str(path)!r} is not a mimoc artifact ({what}); compile one "
                             "with 'mimoc compile MODEL.pt -o DIR'")
    if kind not in RUNNERS:
        raise ModelFileError(f"{str(path)!r} is a {kind} artifact, which mimoc has no runner "
                             f"for; runners: {', '.join(RUNNERS)}")
    module, function = RUNNERS[kind].split(":")
    options = {"threads": threads} if "threads" in RUNNER_OPTIONS[kind] else {}
    return getattr(importlib.import_module(module), function)(path, verify=verify, **options)
