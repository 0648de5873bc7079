"""Back ends, one package per target, each a :class:`~mimoc.targets.base.Target` plug-in.

- :mod:`mimoc.targets.onnx`: ONNX models for onnxruntime (fp32, int8, 4-bit);
- :mod:`mimoc.targets.iree`: the ONNX graphs compiled to native CPU code by IREE
  (``.vmfb`` modules for the host, aarch64, x86-64-v3, ...);
- :mod:`mimoc.targets.crossbar`: memristor crossbar programming schedules (schedule.json +
  arrays.npz) for the IMC simulator :mod:`mimoc.runtime.imc`;
- :mod:`mimoc.targets.output`: atomic artifact directories, shared by the targets.

:data:`TARGETS` lists the targets ``mimoc compile --target`` accepts, each as the module
and attribute of its :class:`~mimoc.targets.base.Target` (imported on first use, so the
command line's ``--help`` stays fast); :func:`register` adds one defined elsewhere.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from mimoc.errors import ModelFileError, UsageError

#: target name -> "module:attribute" of its Target instance
TARGETS: dict[str, str] = {
    "onnx": "mimoc.targets.onnx.target:TARGET",
    "crossbar": "mimoc.targets.crossbar.target:TARGET",
    "iree": "mimoc.targets.iree.target:TARGET",
}

_LOADED: dict = {}


def register(target) -> None:
    """Make ``target`` (a :class:`~mimoc.targets.base.Target`) available by its name."""
    if not getattr(target, "name", ""):
        raise UsageError("a target needs a name")
    TARGETS[target.name] = f"{type(target).__module__}:{type(target).__name__}"
    _LOADED[target.name] = target


def unregister(name: str) -> None:
    """Remove a target added with :func:`register` (the built-in ones stay)."""
    if name in ("onnx", "crossbar", "iree"):
        raise UsageError(f"target {name!r} is built in")
    TARGETS.pop(name, None)
    _LOADED.pop(name, None)


def get_target(name: str):
    """The :class:`~mimoc.targets.base.Target` called ``name``; a one-line UsageError
    listing the targets for an unknown one."""
    if not isinstance(name, str) or name not in TARGETS:
        raise UsageError(f"unknown target {name!r}; targets: {', '.join(TARGETS)}")
    if name not in _LOADED:
        module, attribute = TARGETS[name].split(":")
        _LOADED[name] = getattr(importlib.import_module(module), attribute)
    return _LOADED[name]


def target_options() -> dict[str, tuple[str, ...]]:
    """Every target's option names (to say which target an option belongs to)."""
    return {name: get_target(name).options for name in TARGETS}


def artifact_target(path: str | os.PathLike) -> str | None:
    """The name of the target whose artifact directory ``path`` is, from the ``format``
    its index file declares (``manifest.json`` of ``onnx``, ``schedule.json`` of
    ``crossbar``, ...); ``None`` when ``path`` is no directory holding such a file. An
    index file that declares another format is a one-line ModelFileError."""
    from mimoc.validation import read_json

    path = Path(path)
    if not path.is_dir():
        return None
    mismatch = None  # two targets may share an index name (manifest.json: onnx, iree)
    for name in TARGETS:
        target = get_target(name)
        index = path / target.artifact_index if target.artifact_index else None
        if index is None or not index.is_file():
            continue
        data = read_json(index)
        found = data.get("format") if isinstance(data, dict) else None
        if found == target.artifact_format:
            return name
        mismatch = mismatch or ModelFileError(
            f"{str(index)!r} is not a mimoc {name} artifact index (format {found!r}, "
            f"expected {target.artifact_format!r}); compile the artifact again")
    if mismatch is not None:
        raise mismatch
    return None
