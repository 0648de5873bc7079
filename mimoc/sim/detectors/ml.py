"""Exhaustive maximum-likelihood detection.

Model: ``y = H_e s + n`` on the effective real system (see
:mod:`mimoc.sim.detectors.common`) with ``s in A^n`` and white Gaussian noise,
so the ML decision is

    s_ML = argmin_s ||y - H_e s||^2 = argmin_s  s^T G s - 2 z^T s,
    G = H_e^T H_e (per slot),   z = H_e^T y (per symbol),

dropping the constant ``||y||^2``. The quadratic term ``q(s) = s^T G s`` does
not depend on ``y``, so it is computed once per slot for every candidate, as
one GEMM of the ``n(n+1)/2`` upper-triangular entries of ``G`` with the
candidates' pair products ``w_ij s_i s_j`` (``w = 1`` on the diagonal, 2 off
it). Each symbol then costs one GEMM ``z^T C`` with the candidate matrix
``C [n, L^n]`` and an argmin.

The candidate set has ``L^n = M^Nt`` entries; above ``max_candidates``
(default ``2^20``) :func:`ml` refuses with a :class:`UsageError` that points to
the sphere decoder, which gives the same decisions without the enumeration.

Example::

    >>> x = ml(H, y, noise_var, get_constellation("qpsk"))   # [B, S, 2Nt]
"""

from __future__ import annotations

import functools

import torch

from mimoc.errors import UsageError
from mimoc.sim.detectors.common import EffectiveSystem, effective_system
from mimoc.sim.modulation import Constellation

ML_MAX_CANDIDATES = 2**20
_CANDIDATE_BLOCK = 2**14  # candidates per GEMM block
_METRIC_BUDGET = 2**21  # metric entries per block ([batch chunk, S, candidate block])
_CACHE_LIMIT = 2**16  # candidate tables up to this size are cached


def candidate_count(constellation: Constellation, nt: int) -> int:
    """Number of candidate vectors ``M^Nt`` that exhaustive ML enumerates."""
    return constellation.order**nt


def _digits(first: int, count: int, n: int, base: int, device) -> torch.Tensor:
    """Base-``base`` digits ``[n, count]`` of candidates ``first .. first+count-1``.

    Digit ``i`` is the alphabet index of real dimension ``i``.
    """
    k = torch.arange(first, first + count, device=device)
    powers = base ** torch.arange(n, device=device)
    return (k[None, :] // powers[:, None]) % base


def _build_block(alphabet: torch.Tensor, n: int, first: int, count: int):
    """Candidate values ``C [n, count]`` and pair products ``F [n(n+1)/2, count]``."""
    C = alphabet[_digits(first, count, n, alphabet.numel(), alphabet.device)]
    iu, ju = torch.triu_indices(n, n, device=alphabet.device)
    weight = torch.where(iu == ju, 1.0, 2.0).to(alphabet.dtype)
    F = C[iu] * C[ju] * weight[:, None]
    return C, F


@functools.lru_cache(maxsize=16)
def _cached_block(levels: tuple, n: int, dtype: torch.dtype, first: int, count: int):
    return _build_block(torch.tensor(levels, dtype=dtype), n, first, count)


def _candidate_block(alphabet: torch.Tensor, n: int, first: int, count: int):
    total = alphabet.numel() ** n
    if total <= _CACHE_LIMIT and alphabet.device.type == "cpu":
        return _cached_block(tuple(alphabet.tolist()), n, alphabet.dtype, first, count)
    return _build_block(alphabet, n, first, count)


def ml_indices(eff: EffectiveSystem) -> torch.Tensor:
    """Alphabet indices ``[B, S, n]`` of the ML decision on an effective system."""
    H, y = eff.H, eff.y
    batch, slot, _ = y.shape
    n, L = eff.n, eff.alphabet.numel()
    total = L**n
    gram = H.transpose(-1, -2) @ H  # slot rate
    iu, ju = torch.triu_indices(n, n, device=H.device)
    gram_ut = gram[:, iu, ju]  # [B, n(n+1)/2]
    z2 = -2.0 * (y @ H)  # [B, S, n], symbol rate

    best_metric = torch.full((batch, slot), torch.inf, dtype=H.dtype, device=H.device)
    best_index = torch.zeros((batch, slot), dtype=torch.long, device=H.device)
    block = min(total, _CANDIDATE_BLOCK)
    chunk = max(1, _METRIC_BUDGET // (slot * block))
    for first in range(0, total, block):
        count = min(block, total - first)
        C, F = _candidate_block(eff.alphabet, n, first, count)
        for b0 in range(0, batch, chunk):
            b1 = min(batch, b0 + chunk)
            quad = gram_ut[b0:b1] @ F  # [b, K]: s^T G s for every candidate
            metric = torch.matmul(z2[b0:b1], C)  # [b, S, K]
            metric += quad[:, None, :]
            value, arg = metric.min(-1)
            better = value < best_metric[b0:b1]
            best_metric[b0:b1] = torch.where(better, value, best_metric[b0:b1])
            best_index[b0:b1] = torch.where(better, arg + first, best_index[b0:b1])
    powers = L ** torch.arange(n, device=H.device)
    return (best_index[..., None] // powers) % L


def ml(H: torch.Tensor, y: torch.Tensor, noise_var: torch.Tensor, constellation: Constellation,
       *, max_candidates: int = ML_MAX_CANDIDATES) -> torch.Tensor:
    """Exhaustive ML decisions ``[B, S, 2Nt]`` (constellation points).

    Args:
        H: real channels ``[B, 2Nr, 2Nt]``.
        y: received vectors ``[B, S, 2Nr]``.
        noise_var: complex noise variance ``[B]`` (not needed by ML; kept for the
            common signature).
        constellation: the transmitted constellation.
        max_candidates: refuse problems with more candidate vectors than this.
    """
    nt = H.shape[-1] // constellation.dims_per_symbol if H.dim() == 3 else 0
    count = candidate_count(constellation, nt)
    if count > max_candidates:
        raise UsageError(
            f"exhaustive ML over {constellation.order}^{nt} = {count:,} candidate vectors exceeds "
            f"the limit of {max_candidates:,}; use the sphere decoder 'sd' (same decisions) "
            "or 'kbest'"
        )
    eff = effective_system(H, y, noise_var, constellation)
    return eff.embed_indices(ml_indices(eff))
