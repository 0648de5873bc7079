"""Checks of what a caller hands to a compiled detector's ``detect`` (ONNX artifact and
crossbar simulator alike): one-line :class:`~mimoc.errors.UsageError` instead of
onnxruntime or numpy exceptions, silently dropped imaginary parts, or NaN results.

The detectors take the real-valued layout of a complex link ``y = H x + n``::

    H [B, 2Nr, 2Nt] = [[Re H, -Im H], [Im H, Re H]]   (mimoc.sim.channels.real_matrix)
    y [B, S, 2Nr]   = [Re y, Im y]                     (mimoc.sim.channels.real_vector)

``B`` slots (channel realisations), ``S`` symbol vectors per slot. Every size must be at
least 1 and every value finite.

Example::

    >>> H, y = link_arrays(H, y, np.float32)     # checked, as float32 numpy arrays
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mimoc.errors import UsageError

LAYOUT = "H [B, 2Nr, 2Nt] and y [B, S, 2Nr]"
_COMPLEX_HINT = ("the detectors take the real-valued layout H [B, 2Nr, 2Nt] = "
                 "[[Re H, -Im H], [Im H, Re H]] and y [B, S, 2Nr] = [Re y, Im y] "
                 "(mimoc.sim.channels.real_matrix / real_vector)")
_LAYOUTS = {"H": "[B, 2Nr, 2Nt]", "y": "[B, S, 2Nr]"}


def real_array(value: Any, name: str, dtype: type = np.float32) -> np.ndarray:
    """``value`` (numpy array, torch tensor, nested lists) as a contiguous array of ``dtype``
    in the layout of ``name`` (``"H"`` or ``"y"``): 3-D, sizes >= 1, real, finite."""
    if type(value) is np.ndarray and value.dtype == dtype and value.ndim == 3 \
            and value.flags.c_contiguous and value.size and _all_finite(value):
        return value  # the common call, checked at a fraction of the general path's cost
    layout = _LAYOUTS[name]
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype in (torch.bfloat16, torch.float16):
            value = value.float()  # numpy has no bfloat16
        value = value.numpy()
    elif not isinstance(value, np.ndarray):
        given = type(value).__name__
        try:
            value = None if isinstance(value, str | bytes) else np.asarray(value)
        except (TypeError, ValueError, RuntimeError):
            value = None  # a ragged list, an object numpy cannot convert
        if value is None or value.dtype == object:
            raise UsageError(f"{name} must be an array or tensor of real numbers {layout}, "
                             f"got {given}")
    if np.iscomplexobj(value):
        raise UsageError(f"{name} is complex; {_COMPLEX_HINT}")
    if value.dtype == np.bool_ or value.dtype.kind not in "iuf":
        raise UsageError(f"{name} must hold real numbers {layout}, got dtype {value.dtype}")
    if value.ndim != 3:
        raise UsageError(f"{name} has shape {list(value.shape)}; expected {layout} "
                         "(3 dimensions)")
    if min(value.shape) < 1:
        raise UsageError(f"{name} has shape {list(value.shape)}; every size of {layout} must "
                         "be at least 1")
    finite = np.isfinite(value)
    if not finite.all():
        raise UsageError(f"{name} has {finite.size - np.count_nonzero(finite)} value(s) that "
                         "are NaN or Inf; detectors need finite inputs")
    with np.errstate(over="ignore"):  # the overflow is refused just below, in words
        array = np.ascontiguousarray(value, dtype=dtype)
    if not np.isfinite(array).all():
        raise UsageError(f"{name} has values beyond the range of {np.dtype(dtype).name} "
                         f"(|x| > {np.finfo(dtype).max:.3g}); scale the link down")
    return array


def _all_finite(array: np.ndarray) -> bool:
    """A finite sum proves every value finite (NaN and Inf propagate); an infinite one (a
    NaN, an Inf, or an overflow of finite values) sends the caller down the full check."""
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(np.add.reduce(array, axis=None)))


def same_batch(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> None:
    """Refuse arrays whose first (batch) sizes differ."""
    if a.shape[0] != b.shape[0]:
        raise UsageError(f"{name_a} and {name_b} have different batch sizes ({a.shape[0]} and "
                         f"{b.shape[0]}); {LAYOUT} need the same B")


def link_arrays(H: Any, y: Any, dtype: type = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """``(H, y)`` checked (:func:`real_array`, same ``B``, ``y``'s ``2Nr`` = ``H``'s rows)."""
    H = real_array(H, "H", dtype)
    y = real_array(y, "y", dtype)
    same_batch("H", H, "y", y)
    if y.shape[2] != H.shape[1]:
        raise UsageError(f"y has {y.shape[2]} values per symbol vector but H has {H.shape[1]} "
                         f"rows; {LAYOUT} need the same 2Nr")
    return H, y


def seed_value(seed: Any) -> int:
    """``seed`` as an int for ``torch.Generator.manual_seed``: a non-negative integer."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) \
            or not 0 <= int(seed) < 2 ** 64:
        raise UsageError(f"seed must be an integer in [0, 2**64), got {seed!r}")
    return int(seed)
