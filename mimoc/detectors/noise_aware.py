"""Noise-aware training: perturb channel matrices as a crossbar would program them.

IM-MIMO programs the receiver's channel matrix into memristor crossbars once per
slot, without write-verify, so every entry carries programming noise
(docs/design.md section 7). Training on channels perturbed by the same statistical
model teaches the detector to tolerate it. This module applies that model
(:mod:`mimoc.hardware.programming`, which the crossbar target and the IMC simulator
use too) in the *weight domain*: no conductances needed.

Model, per real entry ``W = H_r[b, i, j]`` of a matrix ``H_r[b]``:

- three-sigma mapping: ``w_clip = 3 sigma_h``. The conductance range
  ``Gmax - Gmin`` of the one device of the differential pair that moves (``G+``
  for ``W > 0``, ``G-`` for ``W < 0``) represents ``[0, w_clip]``, so
  ``k = (Gmax - Gmin) / w_clip`` and ``|W| = (G - Gmin) / k``;
- pulse count from a reset device with ``P`` states (each pulse nominally adds
  ``(Gmax - Gmin) / P``)::

      n = clip(round(|W| / w_clip * P), 0, P)

- each pulse adds ``(Gmax - Gmin) / P`` plus cycle-to-cycle noise
  ``N(0, (c2c (Gmax - Gmin))^2)``, i.e. in weight units ``w_clip / P`` plus
  ``N(0, (c2c w_clip)^2)``; the sum of ``n`` independent increments is
  Gaussian, so::

      |W_prog| = clip(n w_clip / P + c2c w_clip sqrt(n) z, 0, w_clip),   z ~ N(0, 1)
      W_prog = sign(W) |W_prog|

  The clip to ``[0, w_clip]`` is the conductance clip to ``[Gmin, Gmax]`` of
  the moving device; the other device stays at ``Gmin``, so the sign never
  flips. The error therefore has three parts: three-sigma clipping (0.27% of
  Gaussian entries), ``P``-level quantisation (present even at ``c2c = 0``),
  and C2C noise with standard deviation ``c2c w_clip sqrt(n)``, larger for
  larger entries (IM-MIMO's Lemma 1: independent, non-identical). With
  ``c2c_model="per-write"`` (NeuroSim's definition) the noise is one draw
  ``c2c w_clip z`` per programmed entry (``n > 0``), the same for every size.

``sigma_h``: by default estimated per matrix as the RMS of its real entries,
``sigma_h[b] = sqrt(mean_ij H_r[b, i, j]^2)``, which is how a receiver that
sets its mapping coefficient per slot would do it, and which adapts to CSI
estimation noise or other channel normalisations. For CN(0, 1) channels the
known value is ``1/sqrt(2)`` (each real part has variance 1/2); pass
``sigma_h=2 ** -0.5`` to use a fixed mapping instead.

Every entry of the real matrix is programmed on its own cell, so the
duplicated blocks of ``[[Re H, -Im H], [Im H, Re H]]`` receive independent
noise (the perturbed matrix is no longer an exact complex embedding).
"""

from __future__ import annotations

import math

import torch

from mimoc.errors import UsageError
from mimoc.hardware.programming import (
    PER_PULSE,
    channel_clip,
    programmed_level,
    sigma_clip,
    weight_pulses,
)


def program_channel(H_r: torch.Tensor, c2c: float, states: int,
                    generator: torch.Generator | None = None, *,
                    sigma_h: float | None = None, c2c_model: str = PER_PULSE) -> torch.Tensor:
    """Channel matrices as programmed into crossbars without verification.

    Args:
        H_r: real channel matrices ``[..., 2Nr, 2Nt]`` (any leading batch dims).
        c2c: cycle-to-cycle variation per pulse as a fraction of the
            conductance range (e.g. ``0.01`` for 1%); ``0`` leaves only
            clipping and ``P``-level quantisation.
        states: ``P``, the number of programming states of the device
            (256 RRAM, 32 FeFET, 150 FTJ in docs/design.md's device table).
        generator: random generator for the C2C noise.
        sigma_h: fixed entry standard deviation for the three-sigma mapping;
            ``None`` estimates it per matrix (RMS of the entries).
        c2c_model: ``"per-pulse"`` (the default: ``c2c w_clip sqrt(n) z``) or
            ``"per-write"`` (one draw ``c2c w_clip z`` per programmed entry, ``n > 0``),
            as ``Device.c2c_model`` (:func:`mimoc.hardware.programming.c2c_spread`).

    Returns:
        The programmed matrices, same shape and dtype as ``H_r``; no gradient
        flows through them (they are training inputs, not parameters).

    Example::

        >>> H = torch.randn(2, 16, 8) / 2 ** 0.5
        >>> H_prog = program_channel(H, c2c=0.02, states=150,
        ...                          generator=torch.Generator().manual_seed(0))
        >>> H_prog.shape
        torch.Size([2, 16, 8])
    """
    if not (isinstance(c2c, (int, float)) and math.isfinite(c2c) and c2c >= 0):
        raise UsageError(f"C2C variation must be a finite number >= 0, got {c2c!r}")
    if isinstance(states, bool) or not isinstance(states, int) or states < 1:
        raise UsageError(f"device states must be a positive integer, got {states!r}")
    if H_r.dim() < 2:
        raise UsageError(f"program_channel expects matrices [..., rows, cols], "
                         f"got shape {tuple(H_r.shape)}")
    W = H_r.detach()
    if sigma_h is None:
        w_clip = channel_clip(W)                     # RMS per matrix, in W's dtype
    else:
        if not (math.isfinite(sigma_h) and sigma_h > 0):
            raise UsageError(f"sigma_h must be a positive number, got {sigma_h!r}")
        w_clip = sigma_clip(torch.full((1, 1), float(sigma_h), dtype=W.dtype,
                                       device=W.device))
    pulses = weight_pulses(W, w_clip, states)
    z = (torch.randn(W.shape, generator=generator, dtype=W.dtype, device=W.device)
         if c2c > 0 else None)
    # the moving cell of the pair, in weight units: Gmin -> 0, Gmax - Gmin -> w_clip
    magnitude = programmed_level(pulses, z, low=0, step=w_clip / states, sigma=c2c * w_clip,
                                 high=w_clip, c2c_model=c2c_model)
    return torch.sign(W) * magnitude
