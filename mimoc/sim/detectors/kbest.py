"""K-best detection: breadth-first tree search keeping ``K`` survivors per level.

Model and metric as in :mod:`mimoc.sim.detectors.sphere`: with the sorted
triangularisation ``||y - H_e s||^2 = ||y_t - R s_p||^2 + const``, level
``k = n-1, ..., 0`` adds ``R_kk^2 (c_k - s_k)^2`` to the partial metric. At
every level each survivor is extended by all ``L`` alphabet values and the
``K`` extensions with the smallest partial metrics survive; the best leaf is
the decision. With ``K >= L^(n-1)`` nothing is ever pruned and K-best is
exhaustive ML; smaller ``K`` trades error rate for a fixed, data-independent
amount of work (``n`` levels of ``K L`` candidates), the property that makes it
the usual hardware choice.

Batching: the loop runs over the ``n`` levels; every problem (all ``B S``
symbols, the ``S`` of a slot sharing its ``R``) advances together.

Example::

    >>> x = kbest(H, y, noise_var, get_constellation("16qam"), k=32)   # [B, S, 2Nt]
"""

from __future__ import annotations

import torch

from mimoc.errors import UsageError
from mimoc.sim.detectors.common import (
    EffectiveSystem,
    effective_system,
    sorted_triangular,
    unpermute,
)
from mimoc.sim.modulation import Constellation

DEFAULT_K = 16


def kbest_indices(eff: EffectiveSystem, k: int = DEFAULT_K) -> torch.Tensor:
    """Alphabet indices ``[B, S, n]`` of the K-best decision on an effective system."""
    R, y_t, perm = sorted_triangular(eff.H, eff.y)  # R: slot rate
    batch, slot, n = y_t.shape
    alphabet = eff.alphabet
    L = alphabet.numel()
    # Survivors: values of their path [B, S, K, n] and partial metric [B, S, K].
    values = torch.zeros((batch, slot, 1, n), dtype=y_t.dtype, device=y_t.device)
    metric = torch.zeros((batch, slot, 1), dtype=y_t.dtype, device=y_t.device)
    for level in range(n - 1, -1, -1):
        row = R[:, None, None, level, :]  # [B, 1, 1, n]; zero left of the diagonal
        interference = (row[..., level + 1:] * values[..., level + 1:]).sum(-1)
        r_kk = R[:, level, level][:, None, None]
        center = (y_t[:, :, None, level] - interference) / r_kk  # [B, S, K]
        extended = metric[..., None] + (r_kk[..., None] * (center[..., None] - alphabet)).square()
        extended = extended.flatten(-2)  # [B, S, K L]
        keep = min(k, extended.shape[-1])
        metric, pick = extended.topk(keep, dim=-1, largest=False, sorted=False)
        parent, child = pick // L, pick % L
        values = values.gather(2, parent[..., None].expand(-1, -1, -1, n)).clone()
        values[..., level] = alphabet[child]
    best = metric.argmin(-1)  # [B, S]
    decided = values.gather(2, best[..., None, None].expand(-1, -1, 1, n))[:, :, 0]
    idx = (decided[..., None] - alphabet).abs().argmin(-1)
    return unpermute(idx, perm)


def kbest(H: torch.Tensor, y: torch.Tensor, noise_var: torch.Tensor,
          constellation: Constellation, *, k: int = DEFAULT_K) -> torch.Tensor:
    """K-best decisions ``[B, S, 2Nt]`` (constellation points; needs ``Nt <= Nr``).

    Args:
        H: real channels ``[B, 2Nr, 2Nt]``.
        y: received vectors ``[B, S, 2Nr]``.
        noise_var: complex noise variance ``[B]`` (unused by the metric).
        constellation: the transmitted constellation.
        k: survivors per level (``K >= 1``).
    """
    if not isinstance(k, int) or k < 1:
        raise UsageError(f"K-best needs a positive integer K, got {k!r}")
    eff = effective_system(H, y, noise_var, constellation)
    return eff.embed_indices(kbest_indices(eff, k))
