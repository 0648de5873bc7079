"""Linear detectors: zero forcing, MMSE and unbiased LMMSE.

Real-valued model ``y = H x + n`` with ``H [B, 2Nr, 2Nt]``, ``y [B, S, 2Nr]``
and complex noise variance ``N0`` per receive antenna (``N0/2`` per real
component). Both return soft estimates ``[B, S, 2Nt]``; the BER engine makes
the nearest-point hard decision.

- ZF: ``x = (H^T H)^-1 H^T y``, defined for ``Nt <= Nr``.
- MMSE: ``x = (H^T H + N0/Es I)^-1 H^T y`` with ``Es = 1`` (unit-energy
  symbols, so each real dimension has variance 1/2 and the regulariser is
  ``(N0/2) / (1/2) = N0``). Biased: ``E[x_hat_j | x_j] = mu_j x_j`` with
  ``mu_j < 1``, which shrinks the estimate towards 0.
- LMMSE (unbiased, as Sionna's ``LinearDetector("lmmse")`` and textbooks
  compute it): ``x = D^-1 (H^T H + N0 I)^-1 H^T y`` with
  ``D = diag((H^T H + N0 I)^-1 H^T H)``, so that ``E[x_hat_j | x_j] = x_j``;
  its nearest-point decisions differ from MMSE's for multi-level
  constellations (16/64-QAM) and equal them for BPSK/QPSK (a positive scale
  keeps every sign).

These treat every constellation as circular, including BPSK (conventional
complex ZF/MMSE), so ZF's diversity on i.i.d. Rayleigh is ``Nr - Nt + 1``.
"""

from __future__ import annotations

import torch

from mimoc.errors import UsageError
from mimoc.sim.modulation import Constellation


def _gram_solve(H: torch.Tensor, y: torch.Tensor, reg: torch.Tensor | None,
                inverse_diagonal: bool = False):
    """Solve ``(H^T H + reg I) x = H^T y`` for every slot and symbol (one factorisation per
    channel); with ``inverse_diagonal`` also ``diag((H^T H + reg I)^-1)`` ``[B, 2Nt]``."""
    Ht = H.transpose(-1, -2)
    gram = Ht @ H
    if reg is not None:
        gram = gram + reg[:, None, None] * torch.eye(H.shape[-1], dtype=H.dtype, device=H.device)
    rhs = (y @ H).transpose(-1, -2)  # [B, 2Nt, S] = H^T y
    chol, info = torch.linalg.cholesky_ex(gram)
    if bool((info == 0).all()):
        x = torch.cholesky_solve(rhs, chol)
        inverse = torch.cholesky_inverse(chol) if inverse_diagonal else None
    else:  # an ill-conditioned draw: fall back to the pseudo-inverse
        inverse = torch.linalg.pinv(gram)
        x = inverse @ rhs
    if not inverse_diagonal:
        return x.transpose(-1, -2)
    return x.transpose(-1, -2), inverse.diagonal(dim1=-2, dim2=-1)


def _regulariser(noise_var: torch.Tensor, H: torch.Tensor,
                 constellation: Constellation) -> torch.Tensor:
    """Noise over symbol energy per real dimension: ``(N0/2) / (1/2) = N0`` in the complex
    model, ``(N0/2) / 1`` in a real system (unit-energy real symbols)."""
    noise_var = torch.as_tensor(noise_var).to(H.dtype)
    return noise_var / 2 if constellation.real_system else noise_var


def zf(H: torch.Tensor, y: torch.Tensor, noise_var: torch.Tensor,
       constellation: Constellation) -> torch.Tensor:
    """Zero-forcing estimate ``(H^T H)^-1 H^T y`` ``[B, S, 2Nt]``."""
    if H.shape[-1] > H.shape[-2]:
        raise UsageError(
            f"ZF needs Nt <= Nr, got Nt={H.shape[-1] // constellation.dims_per_symbol} > "
            f"Nr={H.shape[-2] // constellation.dims_per_symbol}; "
            "use mmse or ml instead"
        )
    return _gram_solve(H, y, None)


def mmse(H: torch.Tensor, y: torch.Tensor, noise_var: torch.Tensor,
         constellation: Constellation) -> torch.Tensor:
    """MMSE estimate ``(H^T H + N0 I)^-1 H^T y`` ``[B, S, 2Nt]`` (``N0/2`` in a real system)."""
    return _gram_solve(H, y, _regulariser(noise_var, H, constellation))


def lmmse(H: torch.Tensor, y: torch.Tensor, noise_var: torch.Tensor,
          constellation: Constellation) -> torch.Tensor:
    """Unbiased LMMSE estimate ``diag(W H)^-1 W y``, ``W = (H^T H + N0 I)^-1 H^T``."""
    reg = _regulariser(noise_var, H, constellation)
    x, inverse_diagonal = _gram_solve(H, y, reg, inverse_diagonal=True)  # W y
    # W H = A^-1 (A - reg I) = I - reg A^-1 with A = H^T H + reg I: the same factorisation
    bias = 1.0 - reg[:, None] * inverse_diagonal  # diag(W H), [B, 2Nt]
    return x / bias[:, None, :]
