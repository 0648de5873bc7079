"""Run an onnx-cpu artifact with onnxruntime: slot stage once per channel, symbol stage per symbol.

:class:`OnnxArtifact` loads an artifact directory (see :mod:`mimoc.targets.onnx.artifact`)::

    state = art.run_slot(H)             # [B, 2Nr, 2Nt] -> H^T H, pinv(H), ...  (per channel)
    x_hat = art.run_symbols(y, state)   # [B, S, 2Nr]   -> [B, S, 2Nt]          (per symbol)
    x_hat = art.detect(H, y)            # both at once: detector.onnx, one session call

``detect`` runs ``detector.onnx``, the same split graph in one file (its slot-rate nodes
have no ``S`` dim: they run once per channel realisation), because one session call costs
less than two when ``H`` and the whole slot arrive together. ``run_slot``/``run_symbols``
(``slot.onnx``, ``symbol.onnx``) serve a receiver that gets the channel first and the
symbols later, in pieces: the slot state is computed once and reused.

Session options are chosen for small models: one intra-op thread by default (a detector's
matrices are far too small to split over threads; spinning threads cost more than they
save), sequential execution, all graph optimisations (``ORT_ENABLE_ALL``).

Example::

    >>> art = load_artifact("out/detnet")
    >>> x_hat = art.detect(H, y)                     # numpy or torch in, same kind out
    >>> result = simulate({"compiled": art.engine()}, system, [0, 4, 8])
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from mimoc.errors import ModelFileError, UsageError
from mimoc.runtime.inputs import LAYOUT, link_arrays, real_array
from mimoc.targets.onnx.artifact import MODEL_FILES, read_manifest


def has_vnni() -> bool:
    """Whether this x86 CPU has VNNI (``avx512_vnni`` / ``avx_vnni``); False if unknown."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


def config_entries(manifest_config: Mapping[str, str] | None) -> dict[str, str]:
    """The session config entries an artifact asks for (manifest ``session_config``) that
    apply on this machine: ``session.x64quantprecision`` (U8U8 instead of u8s8 kernels,
    which can saturate their 16-bit sums) only on x86-64 without VNNI."""
    entries = dict(manifest_config or {})
    if "session.x64quantprecision" in entries and (
            platform.machine().lower() not in ("x86_64", "amd64") or has_vnni()):
        entries.pop("session.x64quantprecision")
    return entries


def session_options(threads: int = 1, *, optimized_model: str | None = None,
                    profile: str | None = None,
                    config: Mapping[str, str] | None = None) -> ort.SessionOptions:
    """onnxruntime options for small detector models (see the module docstring);
    ``config``: extra session config entries (:func:`config_entries` of a manifest)."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise UsageError(f"threads must be a positive integer, got {threads!r}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # warnings about unused initializers etc. are not the user's
    if threads == 1:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    for key, value in (config or {}).items():
        options.add_session_config_entry(key, str(value))
    if optimized_model:
        options.optimized_model_filepath = optimized_model
    if profile:
        options.enable_profiling = True
        options.profile_file_prefix = profile
    return options


def _session(path: Path, options: ort.SessionOptions) -> ort.InferenceSession:
    if not path.is_file():
        raise ModelFileError(f"{str(path)!r} is missing; the artifact is incomplete, compile "
                             "it again")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelFileError(f"onnxruntime cannot load {str(path)!r} ({first}); compile the "
                             "artifact again") from None


class OnnxArtifact:
    """A loaded artifact: ``detect(H, y)``, the stages, and an engine for the BER simulator.

    Attributes:
        path: the artifact directory.
        manifest: its ``manifest.json`` (dict).
        slot, symbol, detector: the onnxruntime sessions of the stages and the whole model.
    """

    def __init__(self, path: str | os.PathLike, *, threads: int = 1):
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        #: session config entries applied (from the manifest's ``session_config``)
        self.session_config = config_entries(self.manifest.get("session_config"))
        options = session_options(threads, config=self.session_config)
        self.slot = _session(self.path / MODEL_FILES["slot"], options)
        self.symbol = _session(self.path / MODEL_FILES["symbol"], options)
        self.detector = _session(self.path / MODEL_FILES["detector"], options)
        self._state_names = [o.name for o in self.slot.get_outputs()]
        self._symbol_inputs = [i.name for i in self.symbol.get_inputs()]
        self._shapes = {io["name"]: io["shape"]
                        for io in self.manifest["graphs"]["detector"]["inputs"]}

    # -- properties from the manifest ------------------------------------------------

    @property
    def model(self) -> Mapping[str, Any]:
        return self.manifest.get("model") or {}

    @property
    def config(self) -> Mapping[str, Any]:
        return self.model.get("config") or {}

    @property
    def flops(self) -> Mapping[str, Any]:
        return self.manifest["flops"]

    # -- running ----------------------------------------------------------------------

    def _check(self, name: str, array: np.ndarray) -> None:
        want = self._shapes[name]
        if array.ndim != len(want) or any(isinstance(w, int) and w != g
                                          for w, g in zip(want, array.shape, strict=False)):
            raise UsageError(f"{name} has shape {list(array.shape)}, the artifact expects "
                             f"{want}")

    def run_slot(self, H: np.ndarray | torch.Tensor) -> dict[str, np.ndarray]:
        """The slot state for channels ``H [B, 2Nr, 2Nt]`` (name -> array)."""
        H = real_array(H, "H")
        self._check("H", H)
        return dict(zip(self._state_names, self.slot.run(None, {"H": H}), strict=True))

    def run_symbols(self, y: np.ndarray | torch.Tensor,
                    state: Mapping[str, np.ndarray]) -> np.ndarray:
        """``x_hat [B, S, 2Nt]`` for ``y [B, S, 2Nr]`` and the slot state of their channels."""
        y = real_array(y, "y")
        self._check("y", y)
        if not isinstance(state, Mapping):
            raise UsageError(f"state must be the dict that run_slot(H) returned, got "
                             f"{type(state).__name__}")
        per_slot = {io["name"]: io["shape"][:1] == ["B"]
                    for io in self.manifest["graphs"]["symbol"]["inputs"]}
        feed = {"y": y}
        for name in self._symbol_inputs:
            if name == "y":
                continue
            value = state.get(name)
            if not isinstance(value, np.ndarray):
                raise UsageError(f"state has no array {name!r}; pass the dict that "
                                 "run_slot(H) returned")
            if per_slot.get(name) and value.shape[:1] != y.shape[:1]:
                raise UsageError(f"the slot state is for {value.shape[0] if value.ndim else 0} "
                                 f"channels but y has B = {y.shape[0]}; run_slot(H) and "
                                 f"run_symbols(y, state) need the same B ({LAYOUT})")
            feed[name] = value
        return self.symbol.run(None, feed)[0]

    def detect(self, H: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor,
               ) -> np.ndarray | torch.Tensor:
        """``x_hat [B, S, 2Nt]`` from ``H [B, 2Nr, 2Nt]`` and ``y [B, S, 2Nr]``.

        Torch tensors in give a float32 torch tensor out; arrays give an array. Inputs are
        checked first (:mod:`mimoc.runtime.inputs`): real, finite, sizes >= 1, one B.
        """
        as_torch = isinstance(H, torch.Tensor) or isinstance(y, torch.Tensor)
        H_np, y_np = link_arrays(H, y)
        self._check("H", H_np)
        self._check("y", y_np)
        x_hat = self.detector.run(None, {"H": H_np, "y": y_np})[0]
        return torch.from_numpy(x_hat) if as_torch else x_hat

    def detect_staged(self, H: np.ndarray | torch.Tensor,
                      y: np.ndarray | torch.Tensor) -> np.ndarray:
        """:meth:`detect` through the two stage models (``run_slot`` then ``run_symbols``)."""
        H, y = link_arrays(H, y)
        return self.run_symbols(y, self.run_slot(H))

    __call__ = detect

    def engine(self):
        """The artifact as a detector for :func:`mimoc.sim.ber.simulate`
        (``(H_est, y, N0) -> x_hat``; ``N0`` is not used, like the zoo models)."""

        def run(H: torch.Tensor, y: torch.Tensor, noise_var: torch.Tensor) -> torch.Tensor:
            return self.detect(H, y).to(H.dtype)

        run.__name__ = f"onnx_artifact_{self.path.name}"
        return run


def load_artifact(path: str | os.PathLike, *, threads: int = 1) -> OnnxArtifact:
    """Load an artifact directory written by ``mimoc compile`` (see :class:`OnnxArtifact`)."""
    path = Path(path)
    if not path.is_dir():
        raise ModelFileError(f"{str(path)!r} is not an artifact directory; compile one with "
                             "'mimoc compile MODEL.pt -o DIR'")
    return OnnxArtifact(path, threads=threads)


def is_artifact(path: str | os.PathLike) -> bool:
    path = Path(path)
    return path.is_dir() and (path / "manifest.json").is_file()
