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
from mimoc.runtime.cpu import has_vnni
from mimoc.runtime.inputs import LAYOUT, link_arrays, real_array
from mimoc.runtime.manifest_view import ManifestView
from mimoc.sim.llr import soft_output
from mimoc.targets.artifact_files import read_recorded_file
from mimoc.targets.onnx.artifact import MANIFEST, MODEL_FILES, read_manifest


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
    # warnings about unused initializers etc. are not the user's, and an error becomes a
    # one-line MimocError: onnxruntime's own log line would be a second one
    options.log_severity_level = 4
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


def _ort_errors() -> tuple[type[BaseException], ...]:
    """onnxruntime's own exception types (not RuntimeError subclasses), and RuntimeError."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    found = [getattr(state, name, None) for name in (
        "Fail", "InvalidArgument", "InvalidGraph", "InvalidProtobuf", "NoSuchFile", "NoModel",
        "NotFound", "NotImplemented", "RuntimeException", "EPFail", "EngineError",
        "ModelLoadCanceled", "ModelRequiresCompilation")]
    return tuple(e for e in found if isinstance(e, type) and issubclass(e, BaseException)) \
        + (RuntimeError,)


ORT_ERRORS = _ort_errors()


def _first_line(err: BaseException) -> str:
    """The first line of an onnxruntime error without its ``[ONNXRuntimeError] : 1 :``."""
    text = str(err).strip()
    if not text:
        return type(err).__name__
    line = text.splitlines()[0]
    if line.startswith("[ONNXRuntimeError]"):
        line = line.split(" : ", 3)[-1]
    return line if len(line) <= 240 else line[:237] + "..."


class _Session:
    """An onnxruntime session whose failures are one-line :class:`ModelFileError` s naming
    the file (``run``), with the rest of the session's interface passed through."""

    def __init__(self, session: ort.InferenceSession, file: Path):
        self._session = session
        self.file = file

    def run(self, output_names, feed):
        try:
            return self._session.run(output_names, feed)
        except ORT_ERRORS as err:
            raise ModelFileError(f"onnxruntime failed running {str(self.file)!r} "
                                 f"({_first_line(err)}); check the inputs, or compile the "
                                 "artifact again") from None

    def __getattr__(self, name):
        return getattr(self._session, name)


def _session(data: bytes, file: Path, options: ort.SessionOptions,
             signature: Mapping[str, Any]) -> _Session:
    """A session of the model bytes ``data`` (read and checked from ``file``: the session
    runs exactly the bytes that were hashed), its inputs and outputs checked against the
    manifest's ``signature`` (names and ranks)."""
    try:
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except ORT_ERRORS as err:
        raise ModelFileError(f"onnxruntime cannot load {str(file)!r} ({_first_line(err)}); "
                             "compile the artifact again") from None
    for kind, found in (("inputs", session.get_inputs()), ("outputs", session.get_outputs())):
        have = {arg.name: len(arg.shape or ()) for arg in found}
        want = {io["name"]: len(io["shape"]) for io in signature[kind]}
        if have != want:
            raise ModelFileError(f"{str(file)!r} does not match the manifest: its {kind} are "
                                 f"{_names(have)}, the manifest says {_names(want)}; compile "
                                 "the artifact again")
    return _Session(session, file)


def _names(ranks: Mapping[str, int]) -> str:
    return ", ".join(f"{name} (rank {rank})" for name, rank in sorted(ranks.items())) or "none"


class OnnxArtifact(ManifestView):
    """A loaded artifact: ``detect(H, y)``, the stages, and an engine for the BER simulator.

    Attributes:
        path: the artifact directory.
        manifest: its ``manifest.json`` (dict).
        slot, symbol, detector: the onnxruntime sessions of the stages and the whole model.
    """

    def __init__(self, path: str | os.PathLike, *, threads: int = 1, verify: bool = True):
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        #: session config entries applied (from the manifest's ``session_config``)
        self.session_config = config_entries(self.manifest.get("session_config"))
        options = session_options(threads, config=self.session_config)
        sessions = {}
        for stage, name in MODEL_FILES.items():
            data = read_recorded_file(self.path, name, self.manifest["files"], index=MANIFEST,
                                      verify=verify)
            sessions[stage] = _session(data, self.path / name, options,
                                       self.manifest["graphs"][stage])
        self.slot, self.symbol, self.detector = (sessions[k] for k in ("slot", "symbol",
                                                                         "detector"))
        #: ``(from_batch, session)``, largest first: ``detect`` runs the first whose
        #: from_batch <= B (--lowering auto: another lowering is faster at large batches)
        self._by_batch = [(1, self.detector)]
        for entry in self.manifest.get("batch_dispatch", [])[1:]:
            data = read_recorded_file(self.path, entry["file"], self.manifest["files"],
                                      index=MANIFEST, verify=verify)
            self._by_batch.insert(0, (entry["from_batch"], _session(
                data, self.path / entry["file"], options, self.manifest["graphs"]["detector"])))
        self._state_names = [o.name for o in self.slot.get_outputs()]
        self._symbol_inputs = [i.name for i in self.symbol.get_inputs()]
        self._shapes = {io["name"]: io["shape"]
                        for io in self.manifest["graphs"]["detector"]["inputs"]}

    # -- running ----------------------------------------------------------------------

    def _check(self, name: str, array: np.ndarray) -> None:
        want = self._shapes[name]
        if array.ndim != len(want) or any(isinstance(w, int) and w != g
                                          for w, g in zip(want, array.shape, strict=False)):
            static = self.manifest.get("static_shapes")
            how = (" (compiled with fixed sizes " + ",".join(f"{k}={v}" for k, v in
                                                             static.items())
                   + "; compile without --static-shapes for any size)") if static else ""
            raise UsageError(f"{name} has shape {list(array.shape)}, the artifact expects "
                             f"{want}{how}")

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
        batch = self._shapes["H"][:1]  # ["B"], or [n] for an artifact with a fixed B
        per_slot = {io["name"]: io["shape"][:1] == batch
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

    def detect(self, H: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, *,
               output: str = "symbols", error_var: Any = None) -> np.ndarray | torch.Tensor:
        """``x_hat [B, S, 2Nt]`` from ``H [B, 2Nr, 2Nt]`` and ``y [B, S, 2Nr]``.

        Torch tensors in give a float32 torch tensor out; arrays give an array. Inputs are
        checked first (:mod:`mimoc.runtime.inputs`): real, finite, sizes >= 1, one B.
        ``output="llr"``: max-log LLRs ``[B, S, Nt, log2 M]`` instead, ``log P(b=1)/P(b=0)``
        with the per-stream error variance ``error_var`` (default: estimated from the
        decisions; :mod:`mimoc.sim.llr`).
        """
        as_torch = isinstance(H, torch.Tensor) or isinstance(y, torch.Tensor)
        H_np, y_np = link_arrays(H, y)
        self._check("H", H_np)
        self._check("y", y_np)
        detector = next(s for start, s in self._by_batch if start <= H_np.shape[0])
        x_hat = detector.run(None, {"H": H_np, "y": y_np})[0]
        if output != "symbols" or error_var is not None:
            llr = soft_output(torch.from_numpy(x_hat), output, self.config.get("modulation"),
                              error_var)
            return llr if as_torch else llr.numpy()
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


def load_artifact(path: str | os.PathLike, *, threads: int = 1,
                  verify: bool = True) -> OnnxArtifact:
    """Load an artifact directory written by ``mimoc compile`` (see :class:`OnnxArtifact`).

    Everything read is checked first (manifest schema, the ONNX files' inputs and outputs);
    with ``verify`` (default) an ONNX file modified after compiling (its sha256 differs
    from the manifest's) is refused: pass ``verify=False`` for an artifact you edited on
    purpose."""
    path = Path(path)
    if not path.is_dir():
        raise ModelFileError(f"{str(path)!r} is not an artifact directory; compile one with "
                             "'mimoc compile MODEL.pt -o DIR'")
    return OnnxArtifact(path, threads=threads, verify=verify)
