"""Tail latency: a deadline is not a median.

:func:`time_stages` calls a target's stages (slot stage, symbol stage) over and over and
records every call; :class:`Tail` holds the per-slot distribution that results (or that a
crossbar's channel draws give): p50, p99, p99.9, the verdict's percentile, the worst case
and the fraction of slots over the budget. A percentile ``q`` rests on the slowest
``(1 - q) x n`` samples, so it means something only with ``n >= 1 / (1 - q)`` of them
(1,000 for p99.9; :meth:`Tail.resolves`); with fewer, the slowest sample stands in and can
prove a miss, never a meet.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mimoc.errors import UsageError

#: Timed calls per measured target: p99.9 then rests on its 5 slowest.
DEFAULT_CALLS = 5000
#: The percentile of the per-slot latency the verdict uses.
DEFAULT_PERCENTILE = 99.9
#: Percentiles every tail reports.
REPORTED_PERCENTILES = (50.0, 99.0, 99.9)
#: A measurement stops after this many seconds even if it has fewer calls (a large
#: workload's call can take tens of milliseconds).
DEFAULT_MAX_TIME = 10.0
MIN_CALLS = 7


def check_percentile(percentile: float) -> float:
    if isinstance(percentile, bool) or not isinstance(percentile, int | float) or \
            not 50.0 <= float(percentile) < 100.0:
        raise UsageError(f"the percentile must lie in [50, 100), e.g. 99.9, got {percentile!r}")
    return float(percentile)


def percentile_key(percentile: float) -> str:
    """``99.9`` -> ``"p99.9"``, ``50.0`` -> ``"p50"``."""
    return f"p{percentile:g}"


@dataclass(frozen=True)
class Tail:
    """The distribution of one target's per-slot latency.

    Attributes:
        count: samples (timed calls, or slots of channel draws).
        unit: what a sample is (``calls``, ``channel draws``, ...).
        percentiles: ``"p50"`` ... -> seconds (the reported ones and the verdict's).
        max_s, mean_s: the slowest sample and the mean.
        miss_fraction: share of the samples over the budget.
    """

    count: int
    unit: str
    percentiles: dict[str, float]
    max_s: float
    mean_s: float
    miss_fraction: float
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, samples: Sequence[float] | np.ndarray, budget_s: float, percentile: float,
           unit: str = "calls", **extra: Any) -> Tail:
        values = np.asarray(samples, dtype=np.float64).ravel()
        if values.size == 0:
            raise UsageError("no latency samples to summarise")
        levels = sorted(set(REPORTED_PERCENTILES) | {float(percentile)})
        # "higher": an order statistic, never an interpolation below an observed slot
        found = {percentile_key(q): float(np.quantile(values, q / 100.0, method="higher"))
                 for q in levels}
        return cls(int(values.size), unit, found, float(values.max()), float(values.mean()),
                   float((values > budget_s).mean()), dict(extra))

    def at(self, percentile: float) -> float:
        """The latency at ``percentile`` (the slowest sample when too few resolve it)."""
        value = self.percentiles.get(percentile_key(percentile))
        return self.max_s if value is None else value

    def resolves(self, percentile: float) -> bool:
        """Enough samples for ``percentile`` to lie below the slowest one."""
        return self.count * (1.0 - percentile / 100.0) >= 1.0 - 1e-9

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "unit": self.unit,
                **{f"{k}_s": v for k, v in self.percentiles.items()},
                "max_s": self.max_s, "mean_s": self.mean_s,
                "miss_fraction": self.miss_fraction, **self.extra}


def time_stages(stages: Sequence[Callable[[], Any]], *, calls: int = DEFAULT_CALLS,
                min_time: float = 0.2, max_time: float = DEFAULT_MAX_TIME,
                warmup: int = 3) -> np.ndarray:
    """Wall seconds of every stage of every call, ``[calls, stages]``.

    The stages run in order, one slot per call; the loop stops once it has ``calls`` calls
    and ``min_time`` seconds, or at ``max_time`` seconds (with at least ``MIN_CALLS``). The
    garbage collector is paused while timing (like :mod:`timeit`): a receiver is not a
    Python loop.
    """
    for _ in range(warmup):
        for stage in stages:
            stage()
    rows: list[list[float]] = []
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        while True:
            marks = [time.perf_counter()]
            for stage in stages:
                stage()
                marks.append(time.perf_counter())
            rows.append([b - a for a, b in zip(marks, marks[1:], strict=False)])
            elapsed = marks[-1] - start
            if len(rows) >= MIN_CALLS and (
                    (len(rows) >= calls and elapsed >= min_time) or elapsed >= max_time):
                break
    finally:
        if enabled:
            gc.enable()
    return np.asarray(rows, dtype=np.float64)
