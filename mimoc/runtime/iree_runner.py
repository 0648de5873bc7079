"""Run an iree artifact with the IREE runtime on this machine (``local-sync`` driver).

:class:`IreeArtifact` mirrors :class:`~mimoc.runtime.onnx_runner.OnnxArtifact`
(``detect``, ``detect_staged``, ``run_slot``, ``run_symbols``, ``engine``) so that
``mimoc ber``, ``mimoc bench`` and ``mimoc budget`` run it alike. The modules have fixed
sizes (the manifest's ``static_shapes``, default ``B=1, S=14``): a call with other ``B`` or
``S`` is cut into pieces of the compiled sizes, the last one padded by repeating its
final channel / symbol (the detector treats channels, and the symbols of a slot, one by
one, so padding changes no other output) and the padding dropped from the result.

Every module's sha256 is checked against the manifest before IREE maps it (``verify``),
and a module compiled for another architecture (``--cpu aarch64`` on an x86 host) is
refused with one line: run it on that CPU (docs/edge.md).

Example::

    >>> art = load_artifact("out/detnet-iree")
    >>> x_hat = art.detect(H, y)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from mimoc.errors import ModelFileError, UsageError
from mimoc.runtime.inputs import link_arrays, real_array
from mimoc.runtime.manifest_view import ManifestView
from mimoc.targets.artifact_files import read_recorded_file
from mimoc.targets.iree.artifact import read_manifest
from mimoc.targets.iree.cpus import runs_here
from mimoc.targets.iree.format import MANIFEST, MODULE_FILES


def _runtime():
    try:
        import iree.runtime as rt
    except ImportError:
        raise ModelFileError("running an iree artifact needs the IREE runtime: pip install "
                             "'mimoc[iree]' (iree-base-runtime)") from None
    return rt


class _Module:
    """One ``.vmfb`` loaded in its own context, its function called with numpy arrays."""

    def __init__(self, data: bytes, file: Path, function: str):
        rt = _runtime()
        self.file = file
        try:
            self._context = rt.SystemContext(config=rt.Config("local-sync"))
            self._context.add_vm_module(rt.VmModule.copy_buffer(self._context.instance, data))
            self._function = self._context.modules.module[function]
        except (RuntimeError, ValueError, KeyError) as err:
            raise ModelFileError(f"the IREE runtime cannot load {str(file)!r} "
                                 f"({_first_line(err)}); compile the artifact again") from None

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        try:
            result = self._function(*arrays)
        except (RuntimeError, ValueError) as err:
            raise ModelFileError(f"the IREE runtime failed running {str(self.file)!r} "
                                 f"({_first_line(err)}); check the inputs, or compile the "
                                 "artifact again") from None
        results = result if isinstance(result, tuple | list) else [result]
        return [np.asarray(r.to_host()) for r in results]


def _first_line(err: BaseException) -> str:
    line = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return line if len(line) <= 240 else line[:237] + "..."


def _pad(array: np.ndarray, axis: int, size: int) -> np.ndarray:
    """``array`` grown to ``size`` along ``axis`` by repeating its last entry."""
    missing = size - array.shape[axis]
    if missing <= 0:
        return array
    last = np.take(array, [-1], axis=axis)
    return np.concatenate([array, np.repeat(last, missing, axis=axis)], axis=axis)


class IreeArtifact(ManifestView):
    """A loaded iree artifact (see the module docstring).

    Attributes:
        path: the artifact directory.
        manifest: its ``manifest.json`` (dict).
        sizes: the compiled sizes (``{"B": 1, "S": 14}``).
    """

    def __init__(self, path: str | os.PathLike, *, verify: bool = True):
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        iree = self.manifest["iree"]
        if not runs_here(iree["triple"]):
            raise ModelFileError(f"{str(self.path)!r} was compiled for {iree['triple']} (--cpu "
                                 f"{iree['cpu']}), not this machine; run it there, or compile "
                                 "it with --cpu host")
        self.sizes = dict(self.manifest.get("static_shapes") or {})
        modules = {}
        for stage, name in MODULE_FILES.items():
            data = read_recorded_file(self.path, name, self.manifest["files"], index=MANIFEST,
                                      verify=verify)
            modules[stage] = _Module(data, self.path / name, iree["functions"][stage])
        self.slot, self.symbol, self.detector = (modules[k] for k in ("slot", "symbol",
                                                                        "detector"))
        graphs = self.manifest["graphs"]
        self._state_names = [io["name"] for io in graphs["slot"]["outputs"]]
        self._symbol_inputs = [io["name"] for io in graphs["symbol"]["inputs"]]
        self._shapes = {io["name"]: io["shape"] for io in graphs["detector"]["inputs"]}


    def _check(self, name: str, array: np.ndarray) -> None:
        """Rank and the sizes the modules cannot cut (all but ``B`` and ``S``)."""
        want = self._shapes[name]
        cut = {0, 1} if name == "y" else {0}
        if array.ndim != len(want) or any(isinstance(w, int) and w != g and axis not in cut
                                          for axis, (w, g) in enumerate(zip(want, array.shape,
                                                                            strict=True))):
            raise UsageError(f"{name} has shape {list(array.shape)}, the artifact expects "
                             f"{want} (B and S may differ: calls are cut to the compiled "
                             "sizes)")

    def _pieces(self, H: np.ndarray, y: np.ndarray):
        """``(channel slice, symbol slice, H piece, y piece)`` of the compiled sizes."""
        b, s = self.sizes.get("B", 1), self.sizes.get("S", y.shape[1])
        for c0 in range(0, H.shape[0], b):
            H_piece = _pad(H[c0:c0 + b], 0, b)
            for s0 in range(0, y.shape[1], s):
                y_piece = _pad(_pad(y[c0:c0 + b, s0:s0 + s], 1, s), 0, b)
                yield slice(c0, c0 + b), slice(s0, s0 + s), H_piece, y_piece

    def _assemble(self, H: np.ndarray, y: np.ndarray, run) -> np.ndarray:
        out = None
        for channels, symbols, H_piece, y_piece in self._pieces(H, y):
            x = run(H_piece, y_piece)
            if out is None:
                out = np.empty((H.shape[0], y.shape[1], x.shape[-1]), dtype=np.float32)
            rows = min(channels.stop, H.shape[0]) - channels.start
            cols = min(symbols.stop, y.shape[1]) - symbols.start
            out[channels.start:channels.start + rows, symbols.start:symbols.start + cols] = \
                x[:rows, :cols]
        return out

    def detect(self, H: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor,
               ) -> np.ndarray | torch.Tensor:
        """``x_hat [B, S, 2Nt]`` from ``H [B, 2Nr, 2Nt]`` and ``y [B, S, 2Nr]`` (inputs
        checked by :mod:`mimoc.runtime.inputs`; torch in, torch out)."""
        as_torch = isinstance(H, torch.Tensor) or isinstance(y, torch.Tensor)
        H_np, y_np = link_arrays(H, y)
        self._check("H", H_np)
        self._check("y", y_np)
        if (H_np.shape[0], y_np.shape[1]) == (self.sizes.get("B"), self.sizes.get("S")):
            x_hat = self.detector(H_np, y_np)[0]  # the compiled sizes: no pieces, no copy
        else:
            x_hat = self._assemble(H_np, y_np, lambda h, v: self.detector(h, v)[0])
        return torch.from_numpy(x_hat) if as_torch else x_hat

    def run_slot(self, H: np.ndarray | torch.Tensor) -> dict[str, np.ndarray]:
        """The slot state for ``H`` with the compiled ``B`` (one call of slot.vmfb)."""
        H = real_array(H, "H")
        self._check("H", H)
        if H.shape[0] != self.sizes.get("B", H.shape[0]):
            raise UsageError(f"run_slot takes B = {self.sizes['B']} channels (the compiled "
                             f"size), got {H.shape[0]}; use detect for any B")
        return dict(zip(self._state_names, self.slot(H), strict=True))

    def run_symbols(self, y: np.ndarray | torch.Tensor,
                    state: Mapping[str, np.ndarray]) -> np.ndarray:
        """``x_hat`` for ``y`` with the compiled sizes and the state of :meth:`run_slot`."""
        y = real_array(y, "y")
        self._check("y", y)
        compiled = [self.sizes.get(d, n) for d, n in zip("BS", y.shape[:2], strict=True)]
        if list(y.shape[:2]) != compiled:
            raise UsageError(f"run_symbols takes y with B, S = {compiled} (the compiled "
                             f"sizes), got {list(y.shape[:2])}; use detect for any size")
        if not isinstance(state, Mapping):
            raise UsageError("state must be the dict that run_slot(H) returned")
        feed = []
        for name in self._symbol_inputs:
            value = y if name == "y" else state.get(name)
            if not isinstance(value, np.ndarray):
                raise UsageError(f"state has no array {name!r}; pass the dict that "
                                 "run_slot(H) returned")
            feed.append(value)
        return self.symbol(*feed)[0]

    def detect_staged(self, H: np.ndarray | torch.Tensor,
                      y: np.ndarray | torch.Tensor) -> np.ndarray:
        """:meth:`detect` through slot.vmfb then symbol.vmfb."""
        H, y = link_arrays(H, y)
        return self._assemble(H, y, lambda h, v: self.run_symbols(v, self.run_slot(h)))

    __call__ = detect

    def engine(self):
        """The artifact as a detector for :func:`mimoc.sim.ber.simulate`."""

        def run(H: torch.Tensor, y: torch.Tensor, noise_var: torch.Tensor) -> torch.Tensor:
            return self.detect(H, y).to(H.dtype)

        run.__name__ = f"iree_artifact_{self.path.name}"
        return run


def load_artifact(path: str | os.PathLike, *, verify: bool = True) -> IreeArtifact:
    """Load an iree artifact directory (``mimoc compile MODEL --target iree -o DIR``)."""
    path = Path(path)
    if not path.is_dir():
        raise ModelFileError(f"{str(path)!r} is not an artifact directory; compile one with "
                             "'mimoc compile MODEL.pt --target iree -o DIR'")
    return IreeArtifact(path, verify=verify)
