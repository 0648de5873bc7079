"""Squared maximum mean discrepancy with a Gaussian kernel (KAQ's distribution alignment).

For samples ``a_1..a_N`` (full precision) and ``q_1..q_M`` (quantized), rows of ``d``
features, both divided by the RMS ``r`` of ``a`` (so one bandwidth fits every layer)::

    K(u, v) = exp(-||u - v||^2 / (2 d h^2))
    MMD^2   = mean_ij K(a_i, a_j) + mean_ij K(q_i, q_j) - 2 mean_ij K(a_i, q_j)

(the biased V-statistic: never negative). ``h`` is the kernel density estimate's
bandwidth, relative to ``r``. It is *learned by ascent*: minimising MMD^2 over ``h`` is
degenerate (``h -> inf`` makes every kernel 1 and MMD^2 0), so, as in MMD-GAN critics,
``h`` moves to where the discrepancy is largest (a gradient-reversed parameter) while the
quantizer moves to make it small; ``h`` is kept in ``[H_MIN, H_MAX]``.

Example::

    >>> mmd2(torch.randn(64, 8), torch.randn(64, 8) + 1.0, torch.tensor(1.0)) > 0.1
    tensor(True)
"""

from __future__ import annotations

import math

import torch
from torch import nn

H_MIN, H_MAX = 0.1, 10.0


def mmd2(a: torch.Tensor, q: torch.Tensor, bandwidth: torch.Tensor) -> torch.Tensor:
    """Biased MMD^2 of rows ``a [N, d]`` and ``q [M, d]`` (module docstring), a scalar."""
    d = a.shape[-1]
    scale = torch.sqrt(a.detach().square().mean() + 1e-12)
    a, q = a / scale, q / scale
    gamma = 1.0 / (2.0 * d * bandwidth.square())

    def k(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return torch.exp(-gamma * torch.cdist(u, v).square()).mean()

    return k(a, a) + k(q, q) - 2.0 * k(a, q)


def rows_of(out: torch.Tensor, conv: bool) -> torch.Tensor:
    """Samples of a layer output: Linear ``[..., d]`` -> ``[M, d]``; Conv2d ``[N, C, H, W]``
    -> per-position channel vectors ``[N H W, C]``."""
    if conv:
        return out.movedim(1, -1).reshape(-1, out.shape[1])
    return out.reshape(-1, out.shape[-1])


class LearnedBandwidth(nn.Module):
    """A bandwidth ``h`` in ``[H_MIN, H_MAX]`` whose gradient is reversed (ascent)."""

    def __init__(self, init: float = 1.0):
        super().__init__()
        self.log_h = nn.Parameter(torch.tensor(math.log(init)))

    def forward(self) -> torch.Tensor:
        h = self.log_h.clamp(math.log(H_MIN), math.log(H_MAX)).exp()
        return 2.0 * h.detach() - h  # value h, gradient -dL/dh: ascent on the discrepancy


def max_mmd2(a: torch.Tensor, q: torch.Tensor, bandwidths=(0.25, 0.5, 1.0, 2.0)) -> float:
    """The largest MMD^2 over a grid of bandwidths (the ascent's outcome, without training)."""
    return max(float(mmd2(a, q, torch.tensor(h))) for h in bandwidths)
