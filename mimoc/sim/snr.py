"""SNR conventions (docs/design.md section 2).

Papers define SNR differently; mimoc makes the convention explicit. Every
function here returns ``N0``, the variance of the complex noise per receive
antenna (each real component of the real-valued model has variance ``N0/2``),
for unit-energy symbols and unit-variance channel entries.

- ``per-stream`` (default): ``rho = Es / N0`` per transmitted stream, so
  ``N0 = 1 / rho`` (Sionna's ``no`` with CN(0,1) channel entries).
- ``per-rx``: SNR per receive antenna,
  ``SNR = E||H x||^2 / E||n||^2 = Nt / N0``, so ``N0 = Nt / SNR``
  (RE-MIMO, MMNet code).
- ``detnet``: the DetNet authors' generator (neevsamuel/LearningToDetect,
  ``DetNet_HD_QPSK.py``): per real noise component
  ``sigma^2 = E[x_i^2] tr(H_r^T H_r) / (K SNR)`` with ``K = 2 Nt`` real
  unknowns and ``E[x_i^2]`` the per-real-component symbol energy (1 in their
  code, 1/2 for mimoc's unit-energy symbols), so ``N0 = 2 sigma^2 =
  tr(H_r^T H_r) / (K SNR)``; it depends on the channel draw and is on average
  ``Es/N0 = SNR / Nr``. (Before issue 22 mimoc used twice this ``N0``: 3 dB
  below the authors' operating point.)
- ``ebno``: ``Eb / N0`` per stream, ``Eb = Es / log2(M)`` for an uncoded
  link (code rate 1: every bit of a symbol is an information bit; for a code
  of rate ``R`` subtract ``10 log10(R)`` dB yourself), so
  ``N0 = 1 / (log2(M) Eb/N0)``; the same as ``per-stream`` at
  ``Es/N0 = Eb/N0 + 10 log10(log2 M)`` dB.
"""

from __future__ import annotations

import torch

from mimoc.errors import UsageError

SNR_DEFINITIONS = ("per-stream", "per-rx", "detnet", "ebno")


def check_snr_def(snr_def: str) -> str:
    if snr_def not in SNR_DEFINITIONS:
        raise UsageError(
            f"unknown SNR definition {snr_def!r}; choose one of {', '.join(SNR_DEFINITIONS)}"
        )
    return snr_def


def db_to_linear(snr_db):
    return 10.0 ** (torch.as_tensor(snr_db, dtype=torch.float64) / 10.0)


def noise_variance(snr_db, snr_def: str, H_r: torch.Tensor,
                   bits_per_symbol: int | None = None, *,
                   real_system: bool = False) -> torch.Tensor:
    """Complex noise variance ``N0`` per sample, shape ``[B]``.

    Args:
        snr_db: scalar or ``[B]`` SNR in dB under ``snr_def``.
        snr_def: ``per-stream``, ``per-rx``, ``detnet`` or ``ebno``.
        H_r: real-valued channels ``[B, 2Nr, 2Nt]`` (used for ``Nt`` and, for
            ``detnet``, the trace).
        bits_per_symbol: ``log2(M)`` of the modulation; needed by ``ebno`` only.
        real_system: ``H_r`` is a real-valued system's ``[B, Nr, Nt]`` with real symbols
            of unit energy (``E[x_i^2] = 1`` per real dimension instead of 1/2), where
            ``per-rx`` is ``Nt / (N0/2)`` per real receive dimension and ``detnet`` the
            authors' real generator, ``N0 / 2 = sigma^2 = tr(H^T H) / (K SNR)``.
    """
    check_snr_def(snr_def)
    if snr_def == "ebno" and not (isinstance(bits_per_symbol, int) and bits_per_symbol >= 1):
        raise UsageError("the ebno SNR definition needs the modulation's bits per symbol, "
                         f"got {bits_per_symbol!r}")
    batch, _, columns = H_r.shape                 # K real unknowns: 2 Nt, or Nt (real)
    nt = columns if real_system else columns // 2
    energy = 1.0 if real_system else 0.5          # E[x_i^2] per real dimension
    snr = db_to_linear(snr_db).to(H_r.device).expand(batch)
    if snr_def == "per-stream":
        n0 = 1.0 / snr
    elif snr_def == "ebno":
        n0 = 1.0 / (snr * bits_per_symbol)
    elif snr_def == "per-rx":  # signal power per real receive dimension over N0 / 2
        n0 = 2.0 * energy * nt / snr
    else:
        trace = H_r.double().square().sum(dim=(-2, -1))
        # the authors' generator: sigma^2 = E[x_i^2] tr / (K SNR) per real dimension, their
        # symbols of energy 1 per real dimension; ours of `energy`: N0 = 2 sigma^2
        n0 = 2.0 * energy * trace / (columns * snr)
    return n0.to(H_r.dtype)
