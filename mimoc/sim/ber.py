"""Monte Carlo symbol- and bit-error rates of MIMO detectors.

For every SNR point the engine draws batches of slots from a
:class:`~mimoc.sim.system.MIMOSystem` (channel ``H``, the receiver's estimate
``H_est``, symbols ``x``, noise), hands ``(H_est, y, N0)`` to every detector,
makes the nearest-point hard decision ``i_hat = argmin_i |x_hat - s_i|`` per
complex entry and counts, against the transmitted indices ``i``,

    SER = #{i_hat != i} / (B S Nt),    BER = #{bits(i_hat) != bits(i)} / (B S Nt log2 M)

summed over batches. A point ends when every detector has made at least
``min_errors`` symbol errors spread over at least ``min_error_slots`` distinct
slots, or when ``max_symbols`` scalar complex symbols have been sent (rounded
up to whole slots). The second condition keeps one bad channel, which makes
many errors at once, from ending a point.

Confidence intervals treat the **slot** as the independent unit: its ``S``
symbol vectors and their ``Nt`` streams share one channel draw, so their
errors cluster. The engine keeps, per detector, the sums of the per-slot
error counts and of their squares (:class:`~mimoc.sim.stats.SlotCounts`, for
symbols and for bits) and reports the cluster-robust 95% interval of
:func:`~mimoc.sim.stats.cluster_interval`: a Wilson interval on the effective
sample size ``N / deff``. With independent symbols it is about Wilson's
interval over symbols; with bursty errors it is as wide as the bursts demand.

Comparability and reproducibility:

- all detectors see the *same* draws, so curves compare point by point and
  their difference has far less variance than two independent runs;
- the draws of a point come from a generator seeded by ``(seed, snr_db)``
  alone, so a point's result does not depend on which other points are in
  the list or in what order they run; same seed and arguments, same numbers.

Example::

    >>> from mimoc.sim.system import MIMOSystem
    >>> system = MIMOSystem(nt=4, nr=8, modulation="qpsk")
    >>> c = system.constellation
    >>> result = simulate({"zf": classical("zf", c), "mmse": classical("mmse", c)},
    ...                   system, [0.0, 4.0], max_symbols=40_000, min_errors=100)
    >>> [round(p.snr_db) for p in result.curves["mmse"]]
    [0, 4]
    >>> [c["detector"]["name"] for c in result.to_dict()["curves"]]
    ['zf', 'mmse']
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from mimoc.errors import UsageError
from mimoc.progress import progress_bar
from mimoc.sim.detectors import CLASSICAL_DETECTORS as CLASSICAL_NAMES
from mimoc.sim.detectors import get_classical_detector
from mimoc.sim.llr import GMIAccumulator, error_variance, maxlog_llr
from mimoc.sim.modulation import Constellation
from mimoc.sim.stats import SlotCounts, cluster_interval, effective_trials, wilson_interval
from mimoc.sim.system import MIMOSystem

#: What the engine calls: ``(H_est [B, 2Nr, 2Nt], y [B, S, 2Nr], N0 [B]) -> x_hat [B, S, 2Nt]``.
EngineDetector = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

DEFAULT_MAX_SYMBOLS = 1_000_000
DEFAULT_MIN_ERRORS = 100
#: Distinct slots with errors that a point needs before ``min_errors`` may end it (or
#: ``min_errors`` when smaller): one bad channel cannot end a point, and the design effect,
#: estimated from the slots with errors, needs a Student-t correction of under 5% from 30.
DEFAULT_MIN_ERROR_SLOTS = 30
#: Scalar symbols per batch when ``batch_size`` is not given: large enough that
#: per-batch overhead vanishes, small enough for exhaustive ML's candidate tensors.
TARGET_SYMBOLS_PER_BATCH = 16_384
#: What ``"llr"`` of a result's JSON says about the soft outputs (mimoc.sim.llr).
LLR_DESCRIPTION = {
    "convention": "max-log LLR = log P(b=1)/P(b=0), Gray labels of mimoc.sim.modulation",
    "error_var": "data-aided per stream and batch: mean |x_hat - x|^2",
    "gmi": "BICM GMI from the LLRs, max over one LLR scale (llr_scale), bits per channel use",
}


@dataclass(frozen=True)
class BERPoint:
    """Error counts and rates of one detector at one SNR.

    Attributes:
        snr_db: SNR in dB under the system's convention.
        ser, ber: symbol- and bit-error rates.
        ser_ci, ber_ci: 95% confidence intervals ``(lo, hi)``, cluster-robust over slots
            (:func:`~mimoc.sim.stats.cluster_interval`).
        symbols: scalar complex symbols sent (``B * S * Nt`` summed over batches).
        errors: symbol errors.
        bit_errors: bit errors (out of ``symbols * log2 M`` bits).
        slots: slots sent (channel draws, the independent units of the intervals).
        error_slots: slots with at least one symbol error.
        effective_symbols, effective_bits: effective sample sizes ``n_eff`` of the SER and
            BER intervals (:func:`~mimoc.sim.stats.effective_trials`): as many independent
            trials would give intervals as wide.
        gmi, llr_scale: with LLR output only (``simulate(..., llr=True)``): the BICM GMI
            estimated from the detector's max-log LLRs, bits per channel use, and the LLR
            scale that attains it (:mod:`mimoc.sim.llr`); ``None`` otherwise.
    """

    snr_db: float
    ser: float
    ber: float
    ser_ci: tuple[float, float]
    ber_ci: tuple[float, float]
    symbols: int
    errors: int
    bit_errors: int
    slots: int = 0
    error_slots: int = 0
    effective_symbols: float = 0.0
    effective_bits: float = 0.0
    gmi: float | None = None
    llr_scale: float | None = None

    @classmethod
    def from_slot_counts(cls, snr_db: float, symbol_counts: SlotCounts,
                         bit_counts: SlotCounts, gmi: GMIAccumulator | None = None
                         ) -> BERPoint:
        """The point of per-slot symbol- and bit-error statistics (what the engine keeps)."""
        if symbol_counts.slots != bit_counts.slots:
            raise UsageError("symbol and bit counts must cover the same slots")
        return cls(
            snr_db=float(snr_db),
            ser=symbol_counts.rate,
            ber=bit_counts.rate,
            ser_ci=cluster_interval(symbol_counts),
            ber_ci=cluster_interval(bit_counts),
            symbols=symbol_counts.trials,
            errors=symbol_counts.errors,
            bit_errors=bit_counts.errors,
            slots=symbol_counts.slots,
            error_slots=symbol_counts.error_slots,
            effective_symbols=effective_trials(symbol_counts),
            effective_bits=effective_trials(bit_counts),
            **(dict(zip(("gmi", "llr_scale"), gmi.best(), strict=True)) if gmi else {}),
        )

    @classmethod
    def from_counts(cls, snr_db: float, symbols: int, errors: int, bit_errors: int,
                    bits_per_symbol: int) -> BERPoint:
        """A point of bare totals, with no per-slot detail (hand-made points, old results).

        Every symbol is taken as its own slot, so the intervals are Wilson's and assume
        independent symbols; :meth:`from_slot_counts` is what measured points use.
        """
        bits = symbols * bits_per_symbol
        return cls(
            snr_db=float(snr_db),
            ser=errors / symbols if symbols else math.nan,
            ber=bit_errors / bits if bits else math.nan,
            ser_ci=wilson_interval(errors, symbols),
            ber_ci=wilson_interval(bit_errors, bits),
            symbols=symbols,
            errors=errors,
            bit_errors=bit_errors,
            slots=symbols,
            error_slots=errors,
            effective_symbols=float(symbols),
            effective_bits=float(bits),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of ``mimoc ber --json`` (``gmi`` and ``llr_scale`` only with LLR
        output)."""
        out = {
            "snr_db": self.snr_db,
            "ser": self.ser,
            "ber": self.ber,
            "ser_ci": list(self.ser_ci),
            "ber_ci": list(self.ber_ci),
            "symbols": self.symbols,
            "errors": self.errors,
            "bit_errors": self.bit_errors,
            "slots": self.slots,
            "error_slots": self.error_slots,
            "effective_symbols": self.effective_symbols,
            "effective_bits": self.effective_bits,
        }
        if self.gmi is not None:
            out.update(gmi=self.gmi, llr_scale=self.llr_scale)
        return out


@dataclass
class BERResult:
    """Curves of several detectors measured on the same draws.

    Attributes:
        system: the simulated link.
        curves: detector name -> points in the order of the SNR list.
        seed, max_symbols, min_errors, batch_size, min_error_slots: the run's settings.
        identities: detector name -> what it is, for ``to_dict`` (``kind``: ``classical``,
            ``model``, ``artifact`` or ``module``; ``spec``, ``path``, ``target``, ``c2c``
            as they apply); set by whoever built the detectors.
    """

    system: MIMOSystem
    curves: dict[str, list[BERPoint]] = field(default_factory=dict)
    seed: int = 0
    max_symbols: int = DEFAULT_MAX_SYMBOLS
    min_errors: int = DEFAULT_MIN_ERRORS
    batch_size: int = 0
    min_error_slots: int = DEFAULT_MIN_ERROR_SLOTS
    llr: bool = False
    identities: dict[str, dict[str, Any]] = field(default_factory=dict)

    def detector(self, name: str) -> dict[str, Any]:
        """The structured identity of curve ``name``: ``identities[name]`` when the caller
        set one, else ``{"name", "kind": "classical", "spec"}`` for a classical detector
        and ``{"name", "kind": "module"}`` for any other."""
        if name in self.identities:
            return {"name": name, **self.identities[name]}
        if name.lower().partition(":")[0] in CLASSICAL_NAMES:
            return {"name": name, "kind": "classical", "spec": name}
        return {"name": name, "kind": "module"}

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``mimoc ber --json`` without its envelope)::

            {"nt": 4, "nr": 8, "modulation": "qpsk", "snr_def": "per-stream",
             "channel": "rayleigh", "csi": "perfect", "slot_symbols": 1, "seed": 0,
             "max_symbols": .., "min_errors": .., "min_error_slots": ..,
             "curves": [{"detector": {"name": "mmse", "kind": "classical", ...},
                         "points": [{"snr_db", "ser", "ber", "ser_ci", "ber_ci", "symbols",
                                     "errors", "bit_errors", "slots", "error_slots",
                                     "effective_symbols", "effective_bits"}, ...]}, ...]}

        ``curves`` is a list in the order of the detectors, one entry even for one
        detector; the settings make a run repeatable.
        """
        s = self.system
        out = {
            "nt": s.nt,
            "nr": s.nr,
            "modulation": s.modulation,
            "snr_def": s.snr_def,
            "channel": getattr(s.channel, "spec", str(s.channel)),
            "csi": getattr(s.csi, "spec", str(s.csi)),
            "slot_symbols": s.slot,
            "seed": self.seed,
            "max_symbols": self.max_symbols,
            "min_errors": self.min_errors,
            "min_error_slots": self.min_error_slots,
            "curves": [{"detector": self.detector(name),
                        "points": [p.to_dict() for p in points]}
                       for name, points in self.curves.items()],
        }
        if self.llr:
            out["llr"] = dict(LLR_DESCRIPTION)
        return out


# -- wrappers ----------------------------------------------------------------

def classical(name: str, constellation: Constellation) -> EngineDetector:
    """Wrap a classical detector of :mod:`mimoc.sim.detectors` by registry name.

    Raises :class:`~mimoc.errors.UsageError` for an unknown name.
    """
    detect = get_classical_detector(name)

    def run(H: torch.Tensor, y: torch.Tensor, noise_var: torch.Tensor) -> torch.Tensor:
        return detect(H, y, noise_var, constellation)

    run.__name__ = f"classical_{name}"
    return run


def from_module(model: torch.nn.Module) -> EngineDetector:
    """Wrap a zoo detector (``forward(H, y) -> x_hat``) for the engine.

    Runs under ``torch.no_grad()`` in eval mode (BatchNorm uses its running
    statistics) and restores the module's previous mode afterwards. Inputs move
    to the module's device and the output comes back to the CPU. ``noise_var``
    is not passed: zoo detectors learn the noise level from the data.
    """
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")

    def run(H: torch.Tensor, y: torch.Tensor, noise_var: torch.Tensor) -> torch.Tensor:
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                x_hat = model(H.to(device), y.to(device))
        finally:
            model.train(was_training)
        return x_hat.to("cpu", H.dtype)

    run.__name__ = f"module_{type(model).__name__}"
    return run


# -- the engine --------------------------------------------------------------

def point_seed(seed: int, snr_db: float) -> int:
    """Seed of the generator of one SNR point, a function of ``(seed, snr_db)`` only.

    The SNR is rounded to 1e-9 dB so that ``4``, ``4.0`` and ``0.1 * 40`` share draws.
    """
    snr = round(float(snr_db), 9) + 0.0  # + 0.0 maps -0.0 to 0.0
    digest = hashlib.sha256(f"mimoc.ber:{int(seed)}:{snr!r}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _check_arguments(detectors, snr_db, max_symbols, min_errors, min_error_slots,
                     batch_size) -> list[float]:
    if not detectors:
        raise UsageError("no detector to simulate; give at least one")
    snrs = [float(s) for s in snr_db]
    if not snrs:
        raise UsageError("no SNR point to simulate; give at least one")
    if not all(math.isfinite(s) for s in snrs):
        raise UsageError(f"SNR points must be finite numbers of dB, got {snrs}")
    for name, value, low in (("max_symbols", max_symbols, 1), ("min_errors", min_errors, 1),
                             ("min_error_slots", min_error_slots, 1),
                             ("batch_size", batch_size, 1)):
        if value is not None and (not isinstance(value, int) or value < low):
            raise UsageError(f"{name} must be an integer >= {low}, got {value!r}")
    return snrs


def _count_errors(x_hat: torch.Tensor, indices: torch.Tensor,
                  constellation: Constellation) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-slot symbol errors ``[B]`` and bit errors ``[B]`` of estimates ``x_hat [B, S, 2Nt]``."""
    if x_hat.shape[:-1] != indices.shape[:-1] or x_hat.shape[-1] != 2 * indices.shape[-1]:
        raise UsageError(
            f"detector returned shape {tuple(x_hat.shape)}, expected "
            f"{(*indices.shape[:-1], 2 * indices.shape[-1])}; is it built for this Nt?"
        )
    decided = constellation.indices_of_real(x_hat)
    wrong_bits = constellation.bits_of_indices(decided ^ indices)  # popcount of the XOR
    return (decided != indices).flatten(1).sum(1), wrong_bits.flatten(1).sum(1)


def simulate(detectors: Mapping[str, EngineDetector], system: MIMOSystem,
             snr_db: Sequence[float], *, seed: int = 0,
             max_symbols: int = DEFAULT_MAX_SYMBOLS, min_errors: int = DEFAULT_MIN_ERRORS,
             min_error_slots: int | None = None, batch_size: int | None = None,
             progress: bool = False, dtype: torch.dtype = torch.float32,
             llr: bool = False,
             on_llr: Callable[[str, float, torch.Tensor, torch.Tensor], None] | None = None
             ) -> BERResult:
    """Measure SER and BER of ``detectors`` on ``system`` at each SNR in ``snr_db``.

    Args:
        detectors: name -> ``f(H_est, y, N0) -> x_hat`` (see :func:`classical`
            and :func:`from_module`); all see the same draws.
        system: the link (sizes, modulation, channel, CSI, SNR convention, slot).
        snr_db: SNR points in dB under ``system.snr_def``.
        seed: master seed; a point's generator is seeded by ``(seed, snr)``.
        max_symbols: symbol budget per point (scalar complex symbols, whole slots).
        min_errors: a point ends once every detector has this many symbol errors ...
        min_error_slots: ... in at least this many distinct slots (default:
            ``DEFAULT_MIN_ERROR_SLOTS`` or ``min_errors``, whichever is smaller), so
            that one bad channel draw cannot end a point.
        batch_size: slots per batch; default ``TARGET_SYMBOLS_PER_BATCH / (S Nt)``.
            The draws depend on it, so keep it fixed when comparing runs.
        progress: show a progress bar on stderr (only when it is a terminal).
        dtype: real dtype of the simulated tensors.
        llr: also compute every detector's max-log LLRs and report the GMI they support
            (``BERPoint.gmi``; :mod:`mimoc.sim.llr`).
        on_llr: called with ``(detector, snr_db, LLRs, sent bits)`` for every batch
            (implies ``llr``), e.g. a :class:`~mimoc.sim.llr.LLRRecorder`.

    Returns:
        :class:`BERResult` with one curve per detector, points in ``snr_db`` order.
    """
    snrs = _check_arguments(detectors, snr_db, max_symbols, min_errors, min_error_slots,
                            batch_size)
    llr = llr or on_llr is not None
    if min_error_slots is None:
        min_error_slots = min(DEFAULT_MIN_ERROR_SLOTS, min_errors)
    per_slot = system.slot * system.nt
    bits_per_slot = per_slot * system.constellation.bits_per_symbol
    if batch_size is None:
        batch_size = max(1, TARGET_SYMBOLS_PER_BATCH // per_slot)
    constellation = system.constellation
    names = list(detectors)
    result = BERResult(system, {name: [] for name in names}, seed, max_symbols, min_errors,
                       batch_size, min_error_slots, llr)

    def enough(counts: SlotCounts) -> bool:
        return counts.errors >= min_errors and counts.error_slots >= min_error_slots

    # The bar counts symbols against the worst case (every point spends its budget)
    # and jumps ahead when a point stops early, so its ETA is an upper bound.
    budget = math.ceil(max_symbols / per_slot) * per_slot
    bar = progress_bar(total=budget * len(snrs), desc="ber", unit="sym", unit_scale=True,
                       enabled=progress)
    with bar, torch.no_grad():
        for snr in snrs:
            generator = torch.Generator().manual_seed(point_seed(seed, snr))
            symbols = 0
            sym_counts = dict.fromkeys(names, SlotCounts())
            bit_counts = dict.fromkeys(names, SlotCounts())
            gmis = {name: GMIAccumulator(constellation.bits_per_symbol, system.nt)
                    for name in names} if llr else {}
            bar.set_description(f"ber @ {snr:g} dB")
            bar.set_postfix(min_errors=0, min_error_slots=0, refresh=False)
            while symbols < max_symbols and not all(map(enough, sym_counts.values())):
                slots = min(batch_size, math.ceil((max_symbols - symbols) / per_slot))
                batch = system.sample(slots, snr, generator, dtype)
                for name in names:
                    x_hat = detectors[name](batch.H_est, batch.y, batch.noise_var)
                    sym_err, bit_err = _count_errors(x_hat, batch.indices, constellation)
                    sym_counts[name] = sym_counts[name].add(sym_err, per_slot)
                    bit_counts[name] = bit_counts[name].add(bit_err, bits_per_slot)
                    if llr:
                        llrs = maxlog_llr(x_hat, error_variance(x_hat, batch.x), constellation)
                        sent = constellation.bits_of_indices(batch.indices)
                        gmis[name].add(llrs, sent)
                        if on_llr is not None:
                            on_llr(name, snr, llrs, sent)
                symbols += slots * per_slot
                bar.update(slots * per_slot)
                bar.set_postfix(min_errors=min(c.errors for c in sym_counts.values()),
                                min_error_slots=min(c.error_slots for c in sym_counts.values()),
                                refresh=False)
            bar.update(budget - symbols)
            for name in names:
                result.curves[name].append(
                    BERPoint.from_slot_counts(snr, sym_counts[name], bit_counts[name],
                                              gmis.get(name)))
    return result


def snr_at(points: Sequence[BERPoint], target_ser: float) -> float | None:
    """SNR (dB) at which a SER curve reaches ``target_ser``, interpolated log-linearly.

    Between the two measured points that bracket the target, ``log10(SER)`` is
    taken as linear in dB. Returns the SNR of a point that hits the target
    exactly, and ``None`` when the curve does not cross the target between
    two points with non-zero SER (it starts below it, never reaches it, or
    drops from above the target straight to zero errors).

    Example::

        >>> pts = [BERPoint.from_counts(s, 10_000, e, e, 2) for s, e in [(0, 1000), (10, 10)]]
        >>> snr_at(pts, 1e-2)
        5.0
    """
    if not 0.0 < target_ser < 1.0:
        raise UsageError(f"target SER must lie in (0, 1), got {target_ser}")
    ordered = sorted(points, key=lambda p: p.snr_db)
    for p in ordered:
        if p.ser == target_ser:
            return p.snr_db
    for a, b in zip(ordered, ordered[1:], strict=False):
        if a.ser > target_ser > b.ser:
            if b.ser <= 0.0:
                return None
            la, lb, lt = math.log10(a.ser), math.log10(b.ser), math.log10(target_ser)
            return a.snr_db + (lt - la) / (lb - la) * (b.snr_db - a.snr_db)
    return None
