"""The receiver workload of one slot, and how many subcarriers a target detects in it.

The 5G NR numbers are :mod:`mimoc.sim.numerology`'s: a slot is ``SLOT_SYMBOLS`` (14) OFDM
symbols; a resource block is ``SUBCARRIERS_PER_RB`` (12) subcarriers, over which the channel
is roughly shared; a 100 MHz carrier at 30 kHz spacing carries
``SUBCARRIERS_100MHZ_30KHZ`` (3,276 = 273 x 12) subcarriers. The symbols of a resource
block are not shared: each subcarrier carries its own symbol vector in every OFDM symbol.

A workload of ``N`` subcarriers with ``K`` of them per channel realisation is

    B = ceil(N / K) channels per slot,   S x min(K, N) symbol vectors per channel

(``S`` OFDM symbols x the channel's subcarriers; a last, partial channel is counted as a
whole one, so ``B x S x min(K, N) >= N x S`` vectors). ``N = 1`` is one channel and its
``S`` symbol vectors: the single-channel budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from mimoc.errors import UsageError
from mimoc.sim.numerology import SLOT_SYMBOLS, SUBCARRIERS_PER_RB


@dataclass(frozen=True)
class Workload:
    """``subcarriers`` detected per slot, ``per_channel`` of them sharing a channel, ``slot``
    OFDM symbols per slot."""

    subcarriers: int = 1
    per_channel: int = SUBCARRIERS_PER_RB
    slot: int = SLOT_SYMBOLS

    def __post_init__(self):
        for name in ("subcarriers", "per_channel", "slot"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"{name} must be a positive integer, got {value!r}")

    @property
    def channels(self) -> int:
        """``B``: channel realisations per slot."""
        return math.ceil(self.subcarriers / self.per_channel)

    @property
    def symbols_per_channel(self) -> int:
        """Symbol vectors per channel: ``S x min(K, N)``."""
        return self.slot * min(self.per_channel, self.subcarriers)

    @property
    def vectors(self) -> int:
        """Symbol vectors per slot (``B x S x min(K, N)``)."""
        return self.channels * self.symbols_per_channel

    def describe(self) -> str:
        sub = "subcarrier" if self.subcarriers == 1 else "subcarriers"
        channels = "1 channel" if self.channels == 1 else f"{self.channels:,} channels"
        return (f"{self.subcarriers:,} {sub} per slot = {channels} x "
                f"{self.symbols_per_channel:,} symbol vectors ({self.slot} OFDM symbols x "
                f"{min(self.per_channel, self.subcarriers)} subcarrier"
                f"{'s' if min(self.per_channel, self.subcarriers) > 1 else ''})")

    def to_dict(self) -> dict[str, Any]:
        return {"subcarriers": self.subcarriers, "subcarriers_per_channel": self.per_channel,
                "slot_symbols": self.slot, "channels": self.channels,
                "symbols_per_channel": self.symbols_per_channel, "vectors": self.vectors}


def linear_capacity(workload: Workload, seconds: float, budget_s: float) -> int:
    """Subcarriers per slot if the time grows linearly with the workload from a measured
    ``seconds`` for ``workload`` (per-call overheads amortise over larger batches, so from a
    small workload this underestimates)."""
    return int(math.floor(workload.subcarriers * budget_s / seconds + 1e-9))


def sequential_capacity(channel_s: float, subcarrier_s: float, per_channel: int,
                        budget_s: float) -> int:
    """Subcarriers per slot of hardware that serves one channel at a time: each channel costs
    ``channel_s`` (its preparation) plus ``subcarrier_s`` per subcarrier; whole channels of
    ``per_channel`` subcarriers, then as many subcarriers of one more channel as fit."""
    whole = channel_s + per_channel * subcarrier_s
    full = int(math.floor(budget_s / whole + 1e-12)) if whole > 0 else 0
    left = budget_s - full * whole
    partial = 0
    if left > channel_s and subcarrier_s > 0:
        partial = min(per_channel - 1, int(math.floor((left - channel_s) / subcarrier_s)))
    return full * per_channel + max(partial, 0)


def flops_capacity(flops_channel: float, flops_vector: float, workload: Workload,
                   flops_per_s: float, budget_s: float) -> int:
    """An upper bound on subcarriers per slot at ``flops_per_s``: each subcarrier costs its
    ``S`` vectors and a ``1/K`` share of a channel's preparation."""
    per_subcarrier = flops_channel / workload.per_channel + workload.slot * flops_vector
    return int(math.floor(budget_s * flops_per_s / per_subcarrier + 1e-9))
