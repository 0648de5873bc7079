"""Shared pieces of the non-linear detectors: input checks, the effective real
system they search over, and the sorted QR decomposition.

Effective system. The detectors search over a real model

    y = H_e s + n,   s in A^n,   n ~ N(0, N0/2 I)

- QAM (QPSK, 16-QAM, 64-QAM): ``H_e = H_r`` (all ``n = 2 Nt`` real
  dimensions) and ``A = c.levels``, the ``sqrt(M)`` PAM levels, so the
  ``L^n = M^Nt`` real candidates are exactly the complex ones;
- BPSK: the quadrature parts are always 0, so ``H_e = H_r[:, :, :Nt]`` (the
  columns that multiply ``Re x``), ``A = {-1, +1}`` and ``n = Nt``. Searching
  the full ``2 Nt`` model would admit non-BPSK points with a nonzero
  imaginary part.

:func:`effective_system` builds it (in float64 by default, so that metrics are
exact enough for the sphere decoder to agree with exhaustive ML) and
:meth:`EffectiveSystem.embed` maps decisions back to ``[B, S, 2Nt]``.

Example::

    >>> eff = effective_system(H, y, noise_var, get_constellation("bpsk"))
    >>> eff.H.shape, eff.n            # [B, 2Nr, Nt], Nt
    >>> x = eff.embed_indices(idx)     # idx [B, S, Nt] -> [B, S, 2Nt], zero imaginary half
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mimoc.errors import UsageError
from mimoc.sim.modulation import Constellation


def check_inputs(H: torch.Tensor, y: torch.Tensor, noise_var,
                 real_system: bool = False) -> torch.Tensor:
    """Check the shapes of a detector call; return ``noise_var`` as a ``[B]`` tensor.
    A real system's ``H [B, Nr, Nt]`` may have odd sizes."""
    if H.dim() != 3 or y.dim() != 3:
        raise UsageError(
            f"detectors take H [B, 2Nr, 2Nt] and y [B, S, 2Nr]; got H {tuple(H.shape)} "
            f"and y {tuple(y.shape)} (add a slot dimension with y[:, None, :])"
        )
    batch, two_nr, two_nt = H.shape
    if not real_system and (two_nr % 2 or two_nt % 2):
        raise UsageError(f"H must be a real-valued model [B, 2Nr, 2Nt]; got {tuple(H.shape)}")
    if y.shape[0] != batch or y.shape[2] != two_nr:
        raise UsageError(
            f"y {tuple(y.shape)} does not match H {tuple(H.shape)}; expected [{batch}, S, {two_nr}]"
        )
    noise_var = torch.as_tensor(noise_var, device=H.device)
    if noise_var.dim() > 1 or (noise_var.dim() == 1 and noise_var.numel() not in (1, batch)):
        raise UsageError(f"noise_var must be a scalar or [B={batch}]; got {tuple(noise_var.shape)}")
    return noise_var.reshape(-1).expand(batch)


@dataclass(frozen=True)
class EffectiveSystem:
    """The real system a detector searches over (see the module docstring).

    Attributes:
        H: effective channel ``[B, 2Nr, n]``.
        y: received vectors ``[B, S, 2Nr]``.
        alphabet: the real alphabet ``A`` ``[L]``, ascending.
        noise_var: real noise variance per component, ``N0 / 2``, ``[B]``.
        nt: number of complex streams ``Nt``.
        is_real: ``True`` for BPSK and PAM in a complex system (``n = Nt``, decisions
            get a zero quadrature half); in a real system ``False`` and ``n = Nt``.
        out_dtype: dtype of the caller's ``H``; decisions are returned in it.
    """

    H: torch.Tensor
    y: torch.Tensor
    alphabet: torch.Tensor
    noise_var: torch.Tensor
    nt: int
    is_real: bool
    out_dtype: torch.dtype

    @property
    def n(self) -> int:
        """Number of real unknowns searched over."""
        return self.H.shape[-1]

    @property
    def symbol_energy(self) -> float:
        """Mean energy of one real entry of ``s`` under a uniform prior."""
        return float(self.alphabet.square().mean())

    def embed(self, s: torch.Tensor) -> torch.Tensor:
        """Effective real vectors ``[..., n]`` -> caller's real model ``[..., 2Nt]``."""
        if self.is_real:
            s = torch.cat([s, torch.zeros_like(s)], dim=-1)
        return s.to(self.out_dtype)

    def embed_indices(self, idx: torch.Tensor) -> torch.Tensor:
        """Alphabet indices ``[..., n]`` -> constellation points ``[..., 2Nt]``."""
        return self.embed(self.alphabet[idx])


def effective_system(H: torch.Tensor, y: torch.Tensor, noise_var, constellation: Constellation,
                     dtype: torch.dtype = torch.float64) -> EffectiveSystem:
    """Build the effective real system of ``y = H x + n`` for ``constellation``.

    Args:
        H: real channels ``[B, 2Nr, 2Nt]``.
        y: received vectors ``[B, S, 2Nr]``.
        noise_var: complex noise variance ``N0`` per receive antenna, ``[B]``.
        constellation: the transmitted constellation.
        dtype: working precision (float64 by default).
    """
    noise_var = check_inputs(H, y, noise_var, constellation.real_system)
    nt = H.shape[-1] // constellation.dims_per_symbol
    padded = constellation.is_real and not constellation.real_system
    H_e = H[..., :nt] if padded else H
    return EffectiveSystem(
        H=H_e.to(dtype),
        y=y.to(dtype),
        alphabet=constellation.levels.to(dtype=dtype, device=H.device),
        noise_var=noise_var.to(dtype) / 2,
        nt=nt,
        is_real=padded,
        out_dtype=H.dtype,
    )


def sorted_triangular(H: torch.Tensor, y: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sorted triangularisation of ``y = H s + n`` for tree searches.

    Finds a column permutation ``perm [B, n]`` and an upper-triangular
    ``R [B, n, n]`` with ``R^T R = H_p^T H_p``, ``H_p = H[:, :, perm]``, and the
    rotated observations ``y_t = R^-T H_p^T y`` ``[B, S, n]``, so that

        ||y - H s||^2 = ||y_t - R s_p||^2 + ||y||^2 - ||y_t||^2,   s_p = s[perm],

    i.e. ``R`` and ``y_t`` are those of the QR decomposition ``H_p = Q R``,
    ``y_t = Q^T y``, without forming ``Q``. The order is the sorted QR of
    Wuebben et al. (2001): the weakest remaining column first, so the last rows
    of ``R`` (which a tree search decides first) get the largest diagonal
    entries and the early decisions are the reliable ones. It is computed as a
    pivoted Cholesky factorisation of the Gram matrix (the squared residual
    norm of a column after projecting out the chosen ones is the diagonal of
    the Schur complement). ``R`` and the Gram matrix are slot-rate; only
    ``y_t`` is computed per symbol.

    Args:
        H: effective channels ``[B, m, n]`` with ``n <= m``.
        y: received vectors ``[B, S, m]``.

    Returns:
        ``(R, y_t, perm)``.
    """
    batch, m, n = H.shape
    if n > m:
        raise UsageError(
            f"a QR-based tree search needs at least as many real receive dimensions as "
            f"unknowns (got {n} unknowns, {m} observations); use ml, mmse or amp instead"
        )
    rows = torch.arange(batch, device=H.device)
    gram = H.transpose(-1, -2) @ H
    # Row i of `factor` is column i of the pivoted Cholesky factor, indexed by original column.
    factor = torch.zeros_like(gram)
    residual = gram.diagonal(dim1=-2, dim2=-1).clone()
    chosen = torch.zeros((batch, n), dtype=torch.bool, device=H.device)
    perm = torch.empty((batch, n), dtype=torch.long, device=H.device)
    tiny = torch.finfo(H.dtype).tiny
    for i in range(n):
        k = residual.masked_fill(chosen, torch.inf).argmin(-1)  # weakest remaining column
        perm[:, i] = k
        col = gram[rows, k] - (factor[rows, :i, k][:, None, :] @ factor[:, :i])[:, 0]
        col = col.masked_fill(chosen, 0.0) / col[rows, k].clamp_min(tiny).sqrt()[:, None]
        chosen[rows, k] = True
        factor[:, i] = col
        residual = residual - col.square()
    R = factor.gather(2, perm[:, None, :].expand(batch, n, n))
    z = y @ H  # [B, S, n] = (H^T y)^T
    z_p = z.gather(2, perm[:, None, :].expand_as(z))
    y_t = torch.linalg.solve_triangular(R.transpose(-1, -2), z_p.transpose(-1, -2),
                                        upper=False).transpose(-1, -2)
    return R, y_t, perm


def unpermute(s: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Undo a column permutation: ``s [B, S, n]`` in permuted order -> original order."""
    out = torch.empty_like(s)
    out.scatter_(-1, perm[:, None, :].expand_as(s), s)
    return out
