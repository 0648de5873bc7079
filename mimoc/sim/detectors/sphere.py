"""Exact sphere decoder (Schnorr-Euchner enumeration), batched in lock-step.

Model: ``y = H_e s + n`` on the effective real system (see
:mod:`mimoc.sim.detectors.common`). With the sorted QR ``H_e P = Q R`` and
``y~ = Q^T y`` (from :func:`~mimoc.sim.detectors.common.sorted_triangular`),

    ||y - H_e s||^2 = ||y~ - R s'||^2 + const,   s' = P^T s,

and since ``R`` is upper triangular the metric splits over levels
``k = n-1, ..., 0``:

    d_k = d_{k+1} + R_kk^2 (c_k - s'_k)^2,
    c_k = (y~_k - sum_{j>k} R_kj s'_j) / R_kk.

Depth-first search from level ``n-1`` visits the children of a node in order
of increasing ``|c_k - a|`` (Schnorr-Euchner), so the first leaf is the Babai
(SIC) point; each leaf found shrinks the radius to its metric, and a level is
abandoned as soon as a child's partial metric ``d_k`` reaches the radius (every
later sibling is farther). The leaf left at the end is the exact ML decision.

Batching: the ``B S`` problems (the ``S`` symbols of a slot share its QR,
computed once) advance in lock-step, one accepted tree node per problem per
step (backtracking and the leaf level cost no extra step); the Python loop runs
over search steps, never over problems, and finished problems leave the active
set so the cost per step follows the problems still searching. The number of
steps is set by the hardest problem of the batch, so at low SNR on square
systems (where a few trees are large) the throughput falls well below that of
a sequential C implementation; the decisions are still exact.

Example::

    >>> x = sphere(H, y, noise_var, get_constellation("16qam"))   # == ml(...)
"""

from __future__ import annotations

import torch

from mimoc.sim.detectors.common import (
    EffectiveSystem,
    effective_system,
    sorted_triangular,
    unpermute,
)
from mimoc.sim.modulation import Constellation


def _order(center: torch.Tensor, alphabet: torch.Tensor) -> torch.Tensor:
    """Alphabet indices sorted by distance to ``center`` ``[P]`` -> ``[P, L]``."""
    return (center[:, None] - alphabet).abs().argsort(dim=-1)


def _search(R: torch.Tensor, y_t: torch.Tensor, slot_of: torch.Tensor,
            alphabet: torch.Tensor) -> torch.Tensor:
    """Depth-first Schnorr-Euchner search for every problem.

    Args:
        R: upper-triangular factors ``[B, n, n]``.
        y_t: rotated observations ``[P, n]``.
        slot_of: slot index of every problem ``[P]``.
        alphabet: real alphabet ``[L]``.

    Returns:
        alphabet indices ``[P, n]`` of the ML decision (in ``R``'s column order).

    The walk moves over levels ``n-1 .. 1``; level 0 is resolved in the same
    step that picks a child at level 1 (only its nearest point can beat the
    radius, and once it has, none of its siblings can). Backtracking costs no
    steps: each step looks at the next untried child of every level on the
    current path and continues at the lowest level whose child is still
    inside the radius, so a step is one accepted node.
    """
    P, n = y_t.shape
    L = alphabet.numel()
    device, dtype = y_t.device, y_t.dtype
    diag = R.diagonal(dim1=-2, dim2=-1)[slot_of]  # [P, n]
    if n == 1:
        return (y_t / diag - alphabet).abs().argmin(-1, keepdim=True)
    levels = torch.arange(n, device=device)
    result = torch.zeros((P, n), dtype=torch.long, device=device)

    # Per-problem search state; `ids` maps the active rows to the original problems.
    ids = torch.arange(P, device=device)
    level = torch.full((P,), n - 1, dtype=torch.long, device=device)
    values = torch.zeros((P, n), dtype=dtype, device=device)  # s_j on the current path
    chosen = torch.zeros((P, n), dtype=torch.long, device=device)
    dist = torch.zeros((P, n + 1), dtype=dtype, device=device)  # d_k; d_n = 0
    center = torch.zeros((P, n), dtype=dtype, device=device)
    order = torch.zeros((P, n, L), dtype=torch.long, device=device)
    tried = torch.zeros((P, n), dtype=torch.long, device=device)  # children visited per level
    radius = torch.full((P,), torch.inf, dtype=dtype, device=device)
    best = torch.zeros((P, n), dtype=torch.long, device=device)

    center[:, n - 1] = y_t[:, n - 1] / diag[:, n - 1]
    order[:, n - 1] = _order(center[:, n - 1], alphabet)

    while ids.numel():
        rows = torch.arange(ids.numel(), device=device)
        # Next child (Schnorr-Euchner order) of every level on the path, and its metric.
        nxt = order.gather(2, tried.clamp_max(L - 1)[..., None])[..., 0]  # [A, n]
        d_nxt = dist[:, 1:] + (diag * (center - alphabet[nxt])).square()
        open_ = (tried < L) & (d_nxt < radius[:, None]) & (levels >= level[:, None])
        finished = ~open_.any(-1)
        if bool(finished.any()):
            result[ids[finished]] = best[finished]
            keep = ~finished
            ids, rows, nxt, d_nxt, open_ = ids[keep], rows[: int(keep.sum())], nxt[keep], \
                d_nxt[keep], open_[keep]
            values, chosen, dist, center = values[keep], chosen[keep], dist[keep], center[keep]
            order, tried, radius, best = order[keep], tried[keep], radius[keep], best[keep]
            diag, slot_of, y_t = diag[keep], slot_of[keep], y_t[keep]
            if not ids.numel():
                break

        # Take the child at the lowest open level k (backtracking if k is above the old level).
        k = torch.where(open_, levels, n).amin(-1)
        child, d_k = nxt[rows, k], d_nxt[rows, k]
        tried[rows, k] += 1
        chosen[rows, k] = child
        values[rows, k] = alphabet[child]
        dist[rows, k] = d_k

        # Centre of level j = k-1 given the path above it.
        j = k - 1
        above = levels[None, :] > j[:, None]
        interference = (R[slot_of, j] * values * above).sum(-1)
        r_jj = diag[rows, j]
        c_j = (y_t[rows, j] - interference) / r_jj

        # k == 1: the nearest leaf; it shrinks the radius if it is inside.
        leaf = (c_j[:, None] - alphabet).abs().argmin(-1)
        d_leaf = d_k + (r_jj * (c_j - alphabet[leaf])).square()
        found = (j == 0) & (d_leaf < radius)
        radius = torch.where(found, d_leaf, radius)
        best = torch.where(found[:, None], chosen, best)
        best[:, 0] = torch.where(found, leaf, best[:, 0])

        # k >= 2: descend to level k-1 and sort its children.
        down = j > 0
        center[rows, j] = torch.where(down, c_j, center[rows, j])
        order[rows, j] = torch.where(down[:, None], _order(c_j, alphabet), order[rows, j])
        tried[rows, j] = torch.where(down, 0, tried[rows, j])
        level = torch.where(down, j, k)
    return result


def sphere_indices(eff: EffectiveSystem) -> torch.Tensor:
    """Alphabet indices ``[B, S, n]`` of the exact ML decision on an effective system."""
    batch, slot, _ = eff.y.shape
    R, y_t, perm = sorted_triangular(eff.H, eff.y)  # R: slot rate
    slot_of = torch.arange(batch, device=eff.y.device).repeat_interleave(slot)
    idx = _search(R, y_t.reshape(batch * slot, -1), slot_of, eff.alphabet)
    return unpermute(idx.reshape(batch, slot, -1), perm)


def sphere(H: torch.Tensor, y: torch.Tensor, noise_var: torch.Tensor,
           constellation: Constellation) -> torch.Tensor:
    """Exact ML decisions ``[B, S, 2Nt]`` by sphere decoding (needs ``Nt <= Nr``).

    Args:
        H: real channels ``[B, 2Nr, 2Nt]``.
        y: received vectors ``[B, S, 2Nr]``.
        noise_var: complex noise variance ``[B]`` (unused: the search starts
            with an infinite radius).
        constellation: the transmitted constellation.
    """
    eff = effective_system(H, y, noise_var, constellation)
    return eff.embed_indices(sphere_indices(eff))
