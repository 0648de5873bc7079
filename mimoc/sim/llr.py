"""Soft outputs: max-log bit LLRs from any detector's symbol estimate, and the BICM
rate (GMI) they support.

Sign convention (Sionna's): ``LLR = log P(b = 1 | x_hat) / P(b = 0 | x_hat)``, so a
positive LLR favours bit 1 and the hard decision is ``b = LLR > 0``. Bits are those of
:mod:`mimoc.sim.modulation`: point ``i`` carries the label ``i``, MSB first; for QAM the
first half of the label is the Gray label of the in-phase level, the second half the
quadrature one. LLRs have shape ``[..., Nt, log2 M]``, bit ``0`` the MSB.

Post-detection model. The detector's estimate of complex stream ``j`` is taken as
``x_hat_j = x_j + e_j`` with ``e_j ~ CN(0, v_j)`` (the Gaussian model every linear
receiver's demapper uses, applied to any detector, learned ones included), so the
max-log LLR of bit ``i`` is::

    LLR_i = ( min_{s: b_i(s) = 0} |x_hat - s|^2 - min_{s: b_i(s) = 1} |x_hat - s|^2 ) / v_j

Gray-labelled square QAM is a product of two PAM constellations and each bit depends on
one real dimension only, so the minima are taken over the ``sqrt(M)`` levels of that
dimension (the other dimension's term is the same on both sides and cancels): exact
max-log, not an approximation of it.

The error variance ``v_j``:

- in the BER engine (``mimoc ber --output llr``): the data-aided per-stream error
  variance ``v_j = mean |x_hat_j - x_j|^2`` over each batch of slots
  (:func:`error_variance` against the transmitted symbols). It is what a receiver
  learns from pilots, needs no model of the detector, and treats every detector alike;
- in the API (``detect(..., output="llr")``): ``error_var`` when given (a number or one
  per stream, e.g. measured on pilots), else the decision-directed estimate
  ``mean |x_hat_j - nearest(x_hat_j)|^2`` over the call's batch, which needs no
  transmitted symbols but is too small at low SNR (a wrong decision counts as a small
  error), making the LLRs over-confident there.

The variance is floored at :data:`MIN_ERROR_VAR` so that an error-free batch of a
hard-output detector (``ml``, ``sd``) gives large finite LLRs.

GMI. For coded-BER users the engine reports the BICM generalized mutual information
estimated from the LLRs and the transmitted bits (Alvarado et al., "Achievable
information rates for fiber optics", 2018; Sionna's ``bitwise_mutual_information``),
maximised over one common LLR scale ``s`` so that a mis-estimated variance does not
understate the rate::

    GMI = max_s  sum_i [ 1 - E log2(1 + exp(-s (2 b_i - 1) LLR_i)) ]

in bits per complex symbol, times ``Nt`` per channel use. Any ``s`` gives an achievable
rate of a BICM receiver with these metrics; ``s = 0`` gives 0, so the estimate is never
negative.
"""

from __future__ import annotations

import math

import torch

from mimoc.errors import UsageError
from mimoc.sim.modulation import Constellation, gray

#: Smallest error variance used (see the module docstring).
MIN_ERROR_VAR = 1e-10
#: LLR scales the GMI is maximised over: 0 and 2^-8 .. 2^8 in quarter octaves (1 included).
GMI_SCALES = torch.cat([torch.zeros(1, dtype=torch.float64),
                        2.0 ** (torch.arange(-32, 33, dtype=torch.float64) / 4)])


def _dimension_llrs(values: torch.Tensor, levels: torch.Tensor, bits: int) -> torch.Tensor:
    """Squared-distance differences ``min_{b=0} - min_{b=1}`` of the ``bits`` Gray bits of
    one real dimension: ``values [..., Nt]`` -> ``[..., Nt, bits]`` (not yet divided by
    the variance)."""
    n = levels.numel()
    labels = gray(torch.arange(n, device=values.device))
    shifts = torch.arange(bits - 1, -1, -1, device=values.device)
    is_one = ((labels[None, :] >> shifts[:, None]) & 1).bool()  # [bits, L], MSB first
    dist = (values[..., None] - levels).square()[..., None, :]  # [..., Nt, 1, L]
    d0 = dist.masked_fill(is_one, math.inf).amin(-1)
    d1 = dist.masked_fill(~is_one, math.inf).amin(-1)
    return d0 - d1


def maxlog_llr(x_hat: torch.Tensor, error_var, constellation: Constellation) -> torch.Tensor:
    """Max-log LLRs ``[..., Nt, log2 M]`` of the real estimates ``x_hat [..., 2Nt]``.

    Args:
        x_hat: a detector's real-valued output ``[Re x; Im x]``.
        error_var: complex error variance ``v_j = E|x_hat_j - x_j|^2``: a number, or a
            tensor broadcastable to ``[..., Nt]`` (e.g. one per stream ``[Nt]``).
        constellation: the transmitted constellation (its bit labels).

    Returns ``log P(b=1) / P(b=0)`` per bit (module docstring).
    """
    if x_hat.dim() < 1 or x_hat.shape[-1] % 2:
        raise UsageError(f"LLRs need real estimates [..., 2Nt]; got shape {tuple(x_hat.shape)}")
    dtype = x_hat.dtype if x_hat.is_floating_point() else torch.float32
    x_hat = x_hat.to(dtype)
    nt = x_hat.shape[-1] // 2
    var = torch.as_tensor(error_var, dtype=dtype, device=x_hat.device)
    if not bool(torch.isfinite(var).all()) or bool((var < 0).any()):
        raise UsageError("error_var must be finite and non-negative")
    var = var.clamp_min(MIN_ERROR_VAR)
    levels = constellation.levels.to(dtype=dtype, device=x_hat.device)
    bits = constellation.bits_per_dim
    parts = [_dimension_llrs(x_hat[..., :nt], levels, bits)]
    if not constellation.is_real:
        parts.append(_dimension_llrs(x_hat[..., nt:], levels, bits))
    return torch.cat(parts, dim=-1) / var[..., None]


def error_variance(x_hat: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-stream complex error variance ``mean |x_hat_j - ref_j|^2`` ``[Nt]`` over all
    leading dimensions of real vectors ``[..., 2Nt]``."""
    nt = x_hat.shape[-1] // 2
    sq = (x_hat - reference.to(x_hat.dtype)).square()
    return (sq[..., :nt] + sq[..., nt:]).reshape(-1, nt).mean(0)


def decision_variance(x_hat: torch.Tensor, constellation: Constellation) -> torch.Tensor:
    """Decision-directed per-stream error variance ``[Nt]`` (module docstring)."""
    return error_variance(x_hat, constellation.nearest_real(x_hat))


def hard_bits(llr: torch.Tensor) -> torch.Tensor:
    """Hard decisions of LLRs under the convention above: ``1`` where ``LLR > 0``."""
    return (llr > 0).long()


class GMIAccumulator:
    """Running sums for the GMI estimate of one detector at one SNR point (module
    docstring): :meth:`add` per batch, :attr:`gmi` at the end."""

    def __init__(self, bits_per_symbol: int, streams: int):
        self.bits_per_symbol = bits_per_symbol
        self.streams = streams
        self.bit_count = 0
        self.penalty = torch.zeros_like(GMI_SCALES)  # sum of log2(1 + exp(-s (2b-1) LLR))

    def add(self, llr: torch.Tensor, bits: torch.Tensor) -> None:
        """One batch: LLRs ``[..., Nt, k]`` and the transmitted bits of the same shape."""
        signed = (2.0 * bits.to(torch.float64) - 1.0) * llr.to(torch.float64)
        signed = signed.reshape(-1)
        for i, scale in enumerate(GMI_SCALES.tolist()):
            self.penalty[i] += torch.nn.functional.softplus(-scale * signed).sum() / math.log(2)
        self.bit_count += signed.numel()

    def merged(self, other: GMIAccumulator | None) -> GMIAccumulator:
        """A new accumulator holding the sums of both (``other`` ``None``: a copy)."""
        out = GMIAccumulator(self.bits_per_symbol, self.streams)
        out.bit_count = self.bit_count + (other.bit_count if other is not None else 0)
        out.penalty = self.penalty + (other.penalty if other is not None else 0.0)
        return out

    def best(self) -> tuple[float, float]:
        """``(GMI in bits per channel use, the LLR scale attaining it)``."""
        if not self.bit_count:
            return math.nan, math.nan
        per_bit = 1.0 - self.penalty / self.bit_count
        i = int(per_bit.argmax())
        return float(per_bit[i]) * self.bits_per_symbol * self.streams, float(GMI_SCALES[i])

    @property
    def gmi(self) -> float:
        return self.best()[0]


def detect_llr(x_hat: torch.Tensor, constellation: Constellation,
               error_var=None) -> torch.Tensor:
    """LLRs of an estimate for API callers: ``error_var`` or, when ``None``, the
    decision-directed :func:`decision_variance`."""
    if error_var is None:
        error_var = decision_variance(x_hat, constellation)
    return maxlog_llr(x_hat, error_var, constellation)


#: What a detection entry point returns: ``symbols`` (``x_hat``) or ``llr``.
OUTPUTS = ("symbols", "llr")


def soft_output(x_hat: torch.Tensor, output: str, modulation: str | None,
                error_var=None) -> torch.Tensor:
    """``x_hat`` itself (``output="symbols"``) or its max-log LLRs ``[B, S, Nt, log2 M]``
    (``output="llr"``) for the modulation the model was built for; the detection entry
    points of :func:`mimoc.load` call it."""
    if output not in OUTPUTS:
        raise UsageError(f"unknown output {output!r}; choose one of {', '.join(OUTPUTS)}")
    if output == "symbols":
        if error_var is not None:
            raise UsageError("error_var sets the LLRs' variance; pass it with output='llr'")
        return x_hat
    if not modulation:
        raise UsageError("this model does not record its modulation, so its bits are "
                         "unknown; compute LLRs with mimoc.sim.llr.maxlog_llr")
    from mimoc.sim.modulation import get_constellation

    return detect_llr(torch.as_tensor(x_hat), get_constellation(modulation), error_var)


#: Largest LLR file ``--save-llr`` writes (its arrays are held in memory first).
MAX_LLR_BYTES = 1 << 30


class LLRRecorder:
    """Collects the LLRs of a run for ``mimoc ber --save-llr FILE.npz``: pass it as
    ``simulate(..., on_llr=recorder)``; :meth:`npz_bytes` gives the file.

    The ``.npz`` holds ``detectors`` (names, strings), ``snr_db`` (float64) and, for
    detector ``i`` and SNR point ``j``, ``llr_i_j`` (float32 ``[slots, S, Nt, log2 M]``,
    the convention of this module) and ``bits_i_j`` (uint8, the sent bits, same shape).
    Plain arrays: ``numpy.load(FILE)`` reads it without ``allow_pickle``.
    """

    def __init__(self):
        self.llrs: dict[tuple[str, float], list] = {}
        self.bits: dict[tuple[str, float], list] = {}

    @staticmethod
    def size_bound(detectors: int, points: int, symbols_per_point: int,
                   bits_per_symbol: int) -> int:
        """Bytes the file of a run can reach (float32 LLR + uint8 bit per bit)."""
        return detectors * points * symbols_per_point * bits_per_symbol * 5

    def __call__(self, name: str, snr_db: float, llr: torch.Tensor, bits: torch.Tensor):
        self.llrs.setdefault((name, snr_db), []).append(llr.float().numpy())
        self.bits.setdefault((name, snr_db), []).append(bits.to(torch.uint8).numpy())

    def npz_bytes(self) -> bytes:
        import io

        import numpy as np

        names = list(dict.fromkeys(name for name, _ in self.llrs))
        snrs = sorted({snr for _, snr in self.llrs})
        arrays = {"detectors": np.array(names, dtype=str),
                  "snr_db": np.array(snrs, dtype=np.float64)}
        for (name, snr), parts in self.llrs.items():
            key = f"{names.index(name)}_{snrs.index(snr)}"
            arrays[f"llr_{key}"] = np.concatenate(parts)
            arrays[f"bits_{key}"] = np.concatenate(self.bits[(name, snr)])
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()
