"""Work units of the Monte Carlo engine (:func:`mimoc.sim.ber.simulate`): one batch of
one SNR point, seeded by ``(seed, snr_db, batch)`` alone, so that batches can run in any
order, in this process or on workers (:mod:`mimoc.runtime.parallel`), and give the same
counts."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from mimoc.errors import UsageError
from mimoc.sim.llr import GMIAccumulator, error_variance, maxlog_llr
from mimoc.sim.modulation import Constellation
from mimoc.sim.stats import SlotCounts
from mimoc.sim.system import MIMOSystem

#: What the engine calls: ``(H_est [B, 2Nr, 2Nt], y [B, S, 2Nr], N0 [B]) -> x_hat [B, S, 2Nt]``.
EngineDetector = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def count_errors(x_hat: torch.Tensor, indices: torch.Tensor,
                  constellation: Constellation) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-slot symbol errors ``[B]`` and bit errors ``[B]`` of estimates ``x_hat [B, S, 2Nt]``
    (``[B, S, Nt]`` in a real system)."""
    width = constellation.dims_per_symbol * indices.shape[-1]
    if x_hat.shape[:-1] != indices.shape[:-1] or x_hat.shape[-1] != width:
        raise UsageError(
            f"detector returned shape {tuple(x_hat.shape)}, expected "
            f"{(*indices.shape[:-1], width)}; is it built for this Nt and system?"
        )
    decided = constellation.indices_of_real(x_hat)
    wrong_bits = constellation.bits_of_indices(decided ^ indices)  # popcount of the XOR
    return (decided != indices).flatten(1).sum(1), wrong_bits.flatten(1).sum(1)


def point_seed(seed: int, snr_db: float, batch: int | None = None) -> int:
    """Seed of the generator of one SNR point (``batch=None``) or of one batch of it.

    A batch's draws are a function of ``(seed, snr_db, batch)`` only, so batches can run
    in any order, on any worker, and give the same numbers. The SNR is rounded to 1e-9 dB
    so that ``4``, ``4.0`` and ``0.1 * 40`` share draws.
    """
    snr = round(float(snr_db), 9) + 0.0  # + 0.0 maps -0.0 to 0.0
    key = f"mimoc.ber:{int(seed)}:{snr!r}" + ("" if batch is None else f":{int(batch)}")
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@dataclass(frozen=True)
class Unit:
    """One work unit: batch ``batch`` (``slots`` slots) of SNR point ``point`` (its index
    in the SNR list), drawn from a generator seeded by ``seed``; ``keep_slots``: its
    result also carries every slot's error counts (``UnitResult.slot_errors``)."""

    point: int
    snr_db: float
    batch: int
    slots: int
    seed: int
    keep_slots: bool = False


@dataclass(frozen=True)
class UnitResult:
    """What one detector's work on a unit (or on several, added up) gives: the per-slot
    statistics of its symbol and bit errors, with LLR output its GMI sums, and for a unit
    that keeps its slots the symbol and bit errors of every slot (``[B]`` each: what a
    bootstrap over slots resamples; a sum keeps them only when both terms have them)."""

    symbols: SlotCounts
    bits: SlotCounts
    gmi: GMIAccumulator | None = None
    slot_errors: tuple[np.ndarray, np.ndarray] | None = None

    @staticmethod
    def empty(system: MIMOSystem, llr: bool = False) -> UnitResult:
        gmi = GMIAccumulator(system.constellation.bits_per_symbol, system.nt) if llr else None
        return UnitResult(SlotCounts(), SlotCounts(), gmi)

    def __add__(self, other: UnitResult) -> UnitResult:
        gmi = None if self.gmi is None else self.gmi.merged(other.gmi)
        slots = None
        if self.slot_errors is not None and other.slot_errors is not None:
            slots = tuple(np.concatenate(pair) for pair in zip(self.slot_errors,
                                                                other.slot_errors,
                                                                strict=True))
        return UnitResult(self.symbols + other.symbols, self.bits + other.bits, gmi, slots)


#: What a unit gives: detector name -> its :class:`UnitResult`.
UnitCounts = dict[str, UnitResult]


def run_unit(detectors: Mapping[str, EngineDetector], system: MIMOSystem, unit: Unit,
             dtype: torch.dtype = torch.float32, *, llr: bool = False,
             on_llr: Callable[[str, float, torch.Tensor, torch.Tensor], None] | None = None
             ) -> UnitCounts:
    """Draw ``unit``'s batch and count every detector's errors on it (and with ``llr``
    its max-log LLRs' GMI sums; ``on_llr(name, snr_db, llrs, sent_bits)`` sees them).

    A detector with noise of its own (a crossbar's programming noise) has ``reseed(seed)``;
    it is reseeded from the unit's seed first, so its draws too depend on the unit alone.
    """
    constellation = system.constellation
    per_slot = system.slot * system.nt
    bits_per_slot = per_slot * constellation.bits_per_symbol
    with torch.no_grad():
        batch = system.sample(unit.slots, unit.snr_db,
                              torch.Generator().manual_seed(unit.seed), dtype)
        counts: UnitCounts = {}
        for name, detect in detectors.items():
            reseed = getattr(detect, "reseed", None)
            if reseed is not None:
                reseed(unit.seed)
            x_hat = detect(batch.H_est, batch.y, batch.noise_var)
            sym_err, bit_err = count_errors(x_hat, batch.indices, constellation)
            gmi = None
            if llr or on_llr is not None:
                llrs = maxlog_llr(x_hat, error_variance(x_hat, batch.x), constellation)
                sent = constellation.bits_of_indices(batch.indices)
                gmi = GMIAccumulator(constellation.bits_per_symbol, system.nt)
                gmi.add(llrs, sent)
                if on_llr is not None:
                    on_llr(name, unit.snr_db, llrs, sent)
            counts[name] = UnitResult(SlotCounts().add(sym_err, per_slot),
                                      SlotCounts().add(bit_err, bits_per_slot), gmi,
                                      (sym_err.numpy(), bit_err.numpy()) if unit.keep_slots
                                      else None)
    return counts


class InProcessExecutor:
    """The serial executor: runs each unit here, one at a time, when asked for results.

    An executor keeps up to ``window`` units in flight: ``submit(unit)`` starts one,
    ``wait()`` returns ``[(unit, counts), ...]`` of at least one finished unit, in any
    order, and ``cancel()`` drops the units still in flight. :func:`simulate` decides
    what runs and consumes results in batch order, so any executor gives its numbers.
    """

    window = 1

    def __init__(self, detectors: Mapping[str, EngineDetector], system: MIMOSystem,
                 dtype: torch.dtype = torch.float32, *, llr: bool = False,
                 on_llr: Callable[[str, float, torch.Tensor, torch.Tensor], None] | None = None
                 ) -> None:
        self.detectors, self.system, self.dtype = detectors, system, dtype
        self.llr, self.on_llr = llr, on_llr
        self._pending: list[Unit] = []

    def submit(self, unit: Unit) -> None:
        self._pending.append(unit)

    def wait(self) -> list[tuple[Unit, UnitCounts]]:
        unit = self._pending.pop(0)
        return [(unit, run_unit(self.detectors, self.system, unit, self.dtype, llr=self.llr,
                                on_llr=self.on_llr))]

    def cancel(self) -> None:
        self._pending.clear()
