"""Ordered MMSE successive interference cancellation (MMSE-SIC, V-BLAST order).

Model: ``y = H_e s + n`` on the effective real system (see
:mod:`mimoc.sim.detectors.common`), ``E[s s^T] = E_s I`` (``E_s`` the mean
energy of the real alphabet), ``n ~ N(0, sigma^2 I)``, ``sigma^2 = N0 / 2``.
With the set ``U`` of streams not yet detected and ``H_U`` their columns,

    A_U = H_U^T H_U + (sigma^2 / E_s) I,   error covariance = sigma^2 A_U^-1.

Each step detects the stream with the smallest MMSE error variance
``i = argmin_{u in U} [A_U^-1]_uu`` with the unbiased MMSE filter
``w = A_U^-1 H_U^T e_i / ([A_U^-1 H_U^T H_U]_ii)`` (unbiased so that the
nearest-level decision of a multi-level PAM is not pulled towards 0), takes
the nearest alphabet value, subtracts ``h_i s_i`` from ``y`` and removes ``i``
from ``U``. For QAM the ``2 Nt`` real dimensions are detected one by one
(real-valued V-BLAST); for BPSK only the ``Nt`` in-phase ones exist.

The order and the filters depend on the channel only: they are computed once
per slot (one inversion, then a rank-one downdate of ``A_U^-1`` per detected
stream, ``O(n^3)`` in all); each of the ``S`` symbols then costs ``n``
inner products and cancellations.

Example::

    >>> x = mmse_sic(H, y, noise_var, get_constellation("16qam"))   # [B, S, 2Nt]
"""

from __future__ import annotations

import torch

from mimoc.sim.detectors.common import EffectiveSystem, effective_system
from mimoc.sim.modulation import Constellation


def sic_filters(eff: EffectiveSystem) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Slot-rate part of MMSE-SIC.

    Returns:
        ``order [B, n]`` (stream detected at each step), unbiased filters
        ``W [B, n, 2Nr]`` (row ``t`` for step ``t``) and the detected streams'
        columns ``cols [B, n, 2Nr]``.
    """
    H = eff.H
    batch, m, n = H.shape
    rows = torch.arange(batch, device=H.device)
    reg = (eff.noise_var / eff.symbol_energy)[:, None, None]
    eye = torch.eye(n, dtype=H.dtype, device=H.device)
    # inv = A_U^-1 embedded in n x n with zero rows and columns for detected streams.
    inv = torch.linalg.inv(H.transpose(-1, -2) @ H + reg * eye)
    remaining = torch.ones((batch, n), dtype=torch.bool, device=H.device)
    order = torch.empty((batch, n), dtype=torch.long, device=H.device)
    filters = torch.empty((batch, n, m), dtype=H.dtype, device=H.device)
    for t in range(n):
        mse = inv.diagonal(dim1=-2, dim2=-1).masked_fill(~remaining, torch.inf)
        i = mse.argmin(-1)
        row = inv[rows, i]  # [B, n], zero on detected streams
        w = (row[:, None, :] @ H.transpose(-1, -2))[:, 0]  # [B, m]
        filters[:, t] = w / (w * H[rows, :, i]).sum(-1, keepdim=True)
        order[:, t] = i
        remaining[rows, i] = False
        # Remove stream i: the Schur complement gives A_{U\i}^-1 in O(n^2)
        # (and zeroes row and column i).
        inv = inv - row[:, :, None] * row[:, None, :] / row[rows, i][:, None, None]
    cols = H.gather(2, order[:, None, :].expand(batch, m, n)).transpose(-1, -2)
    return order, filters, cols


def _nearest(z: torch.Tensor, alphabet: torch.Tensor) -> torch.Tensor:
    """Index of the nearest alphabet value of every entry of ``z``."""
    return (z[..., None] - alphabet).abs().argmin(-1)


def mmse_sic_indices(eff: EffectiveSystem) -> torch.Tensor:
    """Alphabet indices ``[B, S, n]`` of the ordered MMSE-SIC decision."""
    order, filters, cols = sic_filters(eff)
    residual = eff.y.clone()
    idx = torch.empty(eff.y.shape[:2] + (eff.n,), dtype=torch.long, device=eff.y.device)
    for t in range(eff.n):
        z = (residual * filters[:, None, t]).sum(-1)  # [B, S]
        decided = _nearest(z, eff.alphabet)
        residual -= cols[:, None, t] * eff.alphabet[decided][..., None]
        idx.scatter_(2, order[:, None, t, None].expand(-1, idx.shape[1], 1), decided[..., None])
    return idx


def mmse_sic(H: torch.Tensor, y: torch.Tensor, noise_var: torch.Tensor,
             constellation: Constellation) -> torch.Tensor:
    """Ordered MMSE-SIC decisions ``[B, S, 2Nt]`` (constellation points).

    Args:
        H: real channels ``[B, 2Nr, 2Nt]``.
        y: received vectors ``[B, S, 2Nr]``.
        noise_var: complex noise variance ``N0`` per receive antenna ``[B]``.
        constellation: the transmitted constellation.
    """
    eff = effective_system(H, y, noise_var, constellation)
    return eff.embed_indices(mmse_sic_indices(eff))
