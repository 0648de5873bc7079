"""The joint verdict of a budget row: latency and accuracy, each ``True`` (within its limit),
``False`` (known to exceed it) or ``None`` (not known), with the reason.

- latency: the per-slot latency at the verdict's percentile against the budget. A FLOPs /
  peak figure is a lower bound: above the budget it proves a miss, below it proves
  nothing. A percentile from too few samples is the slowest sample: it can prove a miss
  only.
- accuracy: the SNR loss's 95% interval against the limit: all of it within is ``True``,
  all of it beyond is ``False``, an interval that straddles the limit is ``None``.
- the row **meets** only when both are ``True``; it **misses** when either is ``False``
  (naming which); otherwise it is **unknown**.
"""

from __future__ import annotations

import math

from mimoc.studies.budget.accuracy import Loss
from mimoc.studies.budget.timing import percentile_key
from mimoc.studies.budget.units import format_db, format_us

MEETS, MISSES, UNKNOWN = "meets", "misses", "unknown"
LATENCY, ACCURACY = "latency", "accuracy"


def latency_status(latency, budget_s: float, percentile: float) -> tuple[bool | None, str]:
    """Whether ``latency`` (a :class:`~mimoc.studies.budget.results.Latency`) fits the
    budget at ``percentile``, and why not when it does not or cannot be told."""
    value = latency.verdict_s(percentile)
    us = f"{format_us(value)} us"
    if latency.lower_bound:
        if value > budget_s:
            return False, f"even its lower bound {us} exceeds the budget"
        return None, (f"a lower bound ({us}) cannot show the budget is met; only a "
                      "measurement can")
    tail = latency.tail
    label = percentile_key(percentile) if tail is not None else "slot"
    if value > budget_s:
        return False, f"{label} {us} exceeds the budget"
    if tail is not None and not tail.resolves(percentile):
        return None, (f"only {tail.count} {tail.unit}: too few for {label} (the slowest, "
                      f"{us}, is within the budget)")
    return True, ""


def accuracy_status(loss: Loss | None, max_loss_db: float) -> tuple[bool | None, str]:
    """Whether the SNR loss is within ``max_loss_db``, and why not when it is not or cannot
    be told."""
    if loss is None:
        return None, "accuracy not measured (--max-symbols 0)"
    if loss.value_db is None:
        return None, loss.note
    if loss.ci_db is None:
        return None, loss.note or "no interval for the loss"
    lo, hi = loss.ci_db
    if hi <= max_loss_db:
        return True, ""
    if lo > max_loss_db:
        if math.isinf(lo):
            return False, f"SNR loss beyond the grid (> {format_db(loss.range_db[1])} dB)"
        return False, f"SNR loss {format_db(lo)} dB or more exceeds {max_loss_db:g} dB"
    return None, (f"the SNR loss interval [{format_db(lo)}, {format_db(hi)}] dB straddles the "
                  f"{max_loss_db:g} dB limit (more --max-symbols narrows it)")


def decide(latency_ok: bool | None, accuracy_ok: bool | None) -> tuple[str, list[str]]:
    """``(verdict, what missed)``: meets only when both parts are within their limits."""
    missed = [part for part, ok in ((LATENCY, latency_ok), (ACCURACY, accuracy_ok))
              if ok is False]
    if missed:
        return MISSES, missed
    if latency_ok is True and accuracy_ok is True:
        return MEETS, []
    return UNKNOWN, []
