"""Circularly-symmetric complex Gaussian samples, the random primitive the channel models
share (:mod:`mimoc.sim.channels`, :mod:`mimoc.sim.multipath`); a module of its own so that
neither channel module imports the other for it."""

from __future__ import annotations

import math

import torch


def complex_normal(shape, generator=None, dtype=torch.complex64, device=None) -> torch.Tensor:
    """Samples ``CN(0, 1)``: real and imaginary parts ``N(0, 1/2)``."""
    real_dtype = torch.float64 if dtype == torch.complex128 else torch.float32
    parts = torch.randn((2, *shape), generator=generator, dtype=real_dtype, device=device)
    return torch.complex(parts[0], parts[1]) * math.sqrt(0.5)
