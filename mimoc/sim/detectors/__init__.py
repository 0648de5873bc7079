"""Classical detectors: the baselines every plot compares against.

Every detector shares one signature (Sionna-style plain functions)::

    detect(H [B, 2Nr, 2Nt], y [B, S, 2Nr], noise_var [B], constellation) -> x [B, S, 2Nt]

``noise_var`` is the complex noise variance ``N0`` per receive antenna. The
output is a real-valued estimate (soft for linear detectors, constellation
points for the others); the BER engine applies the nearest-point decision.
"""

from __future__ import annotations

from collections.abc import Callable

from mimoc.errors import UsageError
from mimoc.sim.detectors.linear import mmse, zf

ClassicalDetector = Callable

CLASSICAL_DETECTORS: dict[str, ClassicalDetector] = {
    "zf": zf,
    "mmse": mmse,
}


def get_classical_detector(name: str) -> ClassicalDetector:
    """Look up a classical detector by name."""
    try:
        return CLASSICAL_DETECTORS[name]
    except KeyError:
        raise UsageError(
            f"unknown detector {name!r}; choose from {', '.join(CLASSICAL_DETECTORS)}"
        ) from None
