"""Confidence intervals for error rates measured by Monte Carlo.

An error rate measured as ``k`` errors in ``n`` independent trials is a
binomial proportion. mimoc reports the **Wilson score interval**
(Wilson 1927): with ``p = k/n`` and ``z`` the two-sided normal quantile of the
confidence level (1.96 for 95%),

    centre = (p + z^2 / (2n)) / (1 + z^2 / n)
    half   = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / (4 n^2))
    CI     = [centre - half, centre + half]

Unlike the normal-approximation ("Wald") interval it never leaves ``[0, 1]``
and stays meaningful at ``k = 0`` (upper bound about ``z^2 / n``), which is
the regime of low error rates that BER curves end in.

Example::

    >>> lo, hi = wilson_interval(12, 1000)
    >>> round(lo, 4), round(hi, 4)
    (0.0069, 0.0209)
"""

from __future__ import annotations

import math
from statistics import NormalDist

from mimoc.errors import UsageError


def normal_quantile(confidence: float) -> float:
    """Two-sided standard-normal quantile ``z`` with ``P(|Z| <= z) = confidence``."""
    if not 0.0 < confidence < 1.0:
        raise UsageError(f"confidence level must lie in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_interval(errors: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval ``(lo, hi)`` for ``errors`` out of ``trials``.

    ``trials == 0`` carries no information and gives ``(0.0, 1.0)``.
    """
    if trials < 0 or errors < 0 or errors > trials:
        raise UsageError(f"need 0 <= errors <= trials, got {errors} errors in {trials} trials")
    if trials == 0:
        return 0.0, 1.0
    z = normal_quantile(confidence)
    n = float(trials)
    p = errors / n
    z2n = z * z / n
    centre = (p + z2n / 2.0) / (1.0 + z2n)
    half = z / (1.0 + z2n) * math.sqrt(p * (1.0 - p) / n + z2n / (4.0 * n))
    # The exact bounds at k = 0 and k = n are 0 and 1; clamp away rounding residue.
    lo = 0.0 if errors == 0 else max(0.0, centre - half)
    hi = 1.0 if errors == trials else min(1.0, centre + half)
    return lo, hi
