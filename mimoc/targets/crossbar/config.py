"""Options of the crossbar target (``mimoc compile --target crossbar``), as one dataclass.

Example::

    >>> CrossbarConfig(array=parse_array("64x64"), slot=14).to_dict()["array"]
    [64, 64]
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from mimoc.errors import UsageError
from mimoc.sim.numerology import SLOT_SYMBOLS
from mimoc.targets.crossbar.strategy import SINGLE_SPEC, Strategy, parse_strategy

ACCUMULATIONS = ("analog", "digital")
STATIC_CLIPS = ("max-abs", "percentile")
WRITE_PARALLEL = ("tile", "matrix", "serial")
#: Largest array side accepted (a sanity bound on --array, not a device limit).
MAX_ARRAY_SIDE = 4096


def parse_array(text: Any) -> tuple[int, int]:
    """``"128x128"`` / ``(128, 128)`` / ``128`` -> ``(rows, cols)``; both >= 2."""
    if isinstance(text, str):
        parts = text.lower().replace(" ", "").split("x")
        try:
            dims = tuple(int(p) for p in parts)
        except ValueError:
            dims = ()
        if len(dims) == 1:
            dims = dims * 2
    elif isinstance(text, int) and not isinstance(text, bool):
        dims = (text, text)
    elif isinstance(text, tuple | list):
        dims = tuple(text)
    else:
        dims = ()
    if (len(dims) != 2 or any(isinstance(d, bool) or not isinstance(d, int) for d in dims)
            or not all(2 <= d <= MAX_ARRAY_SIDE for d in dims)):
        raise UsageError(f"bad --array {text!r}: give ROWSxCOLS with integers in "
                         f"2..{MAX_ARRAY_SIDE}, e.g. --array 128x128")
    return dims  # type: ignore[return-value]


@dataclass(frozen=True)
class CrossbarConfig:
    """How matrices become arrays and how the schedule is estimated.

    Attributes:
        array: maximum array size ``(rows, cols)``; a tile is a differential pair of two
            such physical arrays (``G+`` and ``G-``).
        slot: symbols per coherence slot ``S`` for the per-slot totals.
        accumulation: partial sums of row tiles added by an ``analog`` summing amplifier or
            ``digital`` (each tile's outputs through an ADC, added digitally).
        static_clip: ``max-abs`` (``w_clip = max|W|``) or ``percentile`` of ``|W|``.
        static_percentile: the percentile for ``static_clip="percentile"``.
        write_parallel: ``tile`` (every tile has its own write circuit: all in parallel),
            ``matrix`` (one write circuit per source matrix: its tiles in sequence) or
            ``serial`` (one write circuit: everything in sequence).
        mc_draws: seeded channel draws for the expected per-slot programming time.
        seed: seed of those draws (and of the ADC calibration draws).
        strategy: how the channel arrays are programmed every slot
            (:mod:`mimoc.targets.crossbar.strategy`; canonical text, ``single`` = open loop).
    """

    array: tuple[int, int] = (128, 128)
    slot: int = SLOT_SYMBOLS
    accumulation: str = "analog"
    static_clip: str = "max-abs"
    static_percentile: float = 99.9
    write_parallel: str = "tile"
    mc_draws: int = 32
    seed: int = 0
    strategy: str = SINGLE_SPEC

    def __post_init__(self) -> None:
        object.__setattr__(self, "strategy", parse_strategy(self.strategy).spec)
        object.__setattr__(self, "array", parse_array(self.array))
        s = self.slot
        if isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= 100_000:
            raise UsageError(f"bad --slot {s!r}: symbols per slot must be an integer in "
                             "1..100000, e.g. --slot 14")
        _choice("accumulation", self.accumulation, ACCUMULATIONS)
        _choice("static_clip", self.static_clip, STATIC_CLIPS)
        _choice("write_parallel", self.write_parallel, WRITE_PARALLEL)
        p = self.static_percentile
        if isinstance(p, bool) or not isinstance(p, int | float) or not 50 <= p <= 100:
            raise UsageError(f"static_percentile must be in [50, 100], got {p!r}")
        d = self.mc_draws
        if isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= 4096:
            raise UsageError(f"bad --mc-draws {d!r}: give an integer in 1..4096 (mc_draws)")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise UsageError(f"seed must be an integer, got {self.seed!r}")
        if isinstance(p, float) and not math.isfinite(p):
            raise UsageError("static_percentile must be finite")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["array"] = list(self.array)
        if out["strategy"] == SINGLE_SPEC:  # today's schedules stay byte-identical
            del out["strategy"]
        return out

    @property
    def channel_strategy(self) -> Strategy:
        return parse_strategy(self.strategy)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CrossbarConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if k == "array" and isinstance(v, list) else v)
                      for k, v in data.items() if k in known})


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UsageError(f"bad {name} {value!r}; choose one of {', '.join(choices)}")
