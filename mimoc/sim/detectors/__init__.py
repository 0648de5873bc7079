"""Classical detectors: the baselines every plot compares against.

Every detector shares one signature (Sionna-style plain functions)::

    detect(H [B, 2Nr, 2Nt], y [B, S, 2Nr], noise_var [B], constellation) -> x [B, S, 2Nt]

``noise_var`` is the complex noise variance ``N0`` per receive antenna. The
output is real-valued: soft estimates for the linear detectors, constellation
points (hard decisions) for the others; the BER engine applies the
nearest-point decision. The ``S`` symbols of a slot share ``H``: slot-rate
work (Gram matrices, QR, inverses, candidate energies) is done once per slot.

Registry names (:func:`get_classical_detector` also takes a ``name:param``
spec where a detector has a parameter):

- ``zf``, ``mmse``, ``lmmse``: linear (:mod:`.linear`); ``mmse`` is the biased
  ``(H^T H + N0 I)^-1 H^T y``, ``lmmse`` the unbiased LMMSE of Sionna and the
  textbooks (the same scaled per stream to unit gain; other 16/64-QAM decisions);
- ``ml``: exhaustive maximum likelihood (:mod:`.ml`), refuses more than
  ``2^20`` candidates;
- ``sd``: exact sphere decoder, same decisions as ``ml`` (:mod:`.sphere`);
- ``kbest`` / ``kbest:K``: K-best tree search, default ``K = 16`` (:mod:`.kbest`);
- ``mmse-sic``: ordered MMSE successive interference cancellation (:mod:`.sic`);
- ``amp`` / ``amp:T``: approximate message passing with ``T`` iterations,
  default 20, damping 0.7 (:mod:`.amp`).

Example::

    >>> detect = get_classical_detector("kbest:32")
    >>> x = detect(H, y, noise_var, get_constellation("16qam"))
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from mimoc.errors import UsageError
from mimoc.sim.detectors.amp import amp
from mimoc.sim.detectors.kbest import kbest
from mimoc.sim.detectors.linear import lmmse, mmse, zf
from mimoc.sim.detectors.ml import ml
from mimoc.sim.detectors.sic import mmse_sic
from mimoc.sim.detectors.sphere import sphere

ClassicalDetector = Callable

CLASSICAL_DETECTORS: dict[str, ClassicalDetector] = {
    "zf": zf,
    "mmse": mmse,
    "lmmse": lmmse,
    "ml": ml,
    "sd": sphere,
    "kbest": kbest,
    "mmse-sic": mmse_sic,
    "amp": amp,
}

# Detectors that take one integer parameter in a ``name:VALUE`` spec, and its keyword.
_PARAMETERS = {"kbest": "k", "amp": "iterations"}
#: The placeholder of each parameter in help texts (``kbest:K``, ``amp:T``).
_PLACEHOLDERS = {"k": "K", "iterations": "T"}


def detector_specs() -> list[str]:
    """Every accepted spec form, from the registry, for help texts and errors:
    ``zf``, ``mmse``, ..., ``kbest[:K]``, ``amp[:T]``."""
    return [f"{name}[:{_PLACEHOLDERS.get(_PARAMETERS[name], 'N')}]" if name in _PARAMETERS
            else name for name in CLASSICAL_DETECTORS]


def get_classical_detector(name: str) -> ClassicalDetector:
    """Look up a classical detector by name or ``name:param`` spec (``kbest:32``, ``amp:20``)."""
    key, sep, arg = name.strip().lower().partition(":")
    if key not in CLASSICAL_DETECTORS:
        raise UsageError(
            f"unknown detector {name!r}; choose from {', '.join(CLASSICAL_DETECTORS)}"
        )
    detector = CLASSICAL_DETECTORS[key]
    if not sep:
        return detector
    if key not in _PARAMETERS:
        raise UsageError(f"detector {key!r} takes no parameter, got {name!r}")
    try:
        value = int(arg)
    except ValueError:
        value = 0
    if value < 1:
        raise UsageError(f"malformed detector spec {name!r}; e.g. {key}:16 (a positive integer)")
    configured = functools.partial(detector, **{_PARAMETERS[key]: value})
    functools.update_wrapper(configured, detector)
    configured.__name__ = f"{key}:{value}"
    return configured
