"""Programming one channel matrix under a :class:`~mimoc.targets.crossbar.strategy.Strategy`.

One function for the compiler's Monte-Carlo plan (:mod:`mimoc.targets.crossbar.programming`)
and the IMC simulator (:mod:`mimoc.runtime.imc`), so the schedule's expected times and what
the simulator spends cannot drift apart. The physics is :mod:`mimoc.hardware.programming`:

- mapping ``w_clip = clip_sigmas * sigma_h`` per matrix and slot, ``levels`` states;
- open loop (``verify`` off): ``n`` pulses from reset per cell, a tile row takes
  ``max |n| x pulse_width``;
- program-and-verify: :func:`~mimoc.hardware.programming.program_with_verify` of each side
  of each tile, all slots of the batch at once; a tile row takes the slower side's (and
  copy's) verify time;
- redundancy ``r``: ``r`` independent copies programmed in parallel (a row takes the
  slowest copy), the column currents summed and read with ``r`` times the gain, i.e. the
  mean of the copies' ``G+ - G-``.

Rows of a tile are programmed one after another; tiles combine per write group in the
caller. Counts per slot (pulses applied, verify row reads) are kept per tile for the energy
model.

Example::

    >>> out = program_matrix(W, [("H#0.0", (0, 8), (0, 4))], device, SINGLE, generator)
    >>> out.dG.shape, out.times["H#0.0"].shape
    (torch.Size([B, 8, 4]), torch.Size([B]))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from mimoc.hardware.devices import Device
from mimoc.hardware.programming import program_from_reset, program_with_verify
from mimoc.targets.crossbar.arrays import channel_clip, signed_pulses, target_conductances
from mimoc.targets.crossbar.strategy import Strategy

#: a tile of the matrix: (id, (row start, stop), (col start, stop))
TileSpan = tuple[str, tuple[int, int], tuple[int, int]]


@dataclass
class ChannelProgram:
    """One channel matrix programmed for a batch of slots ``[B, rows, cols]``.

    Attributes:
        dG: ``G+ - G-`` in µS (mean over the copies).
        w_clip: the mapping range per slot ``[B, 1, 1]``.
        pulses: signed open-loop pulses from reset ``[B, rows, cols]`` (int64).
        times: per tile, its programming time per slot ``[B]`` (s).
        row_times: per tile, each row's time ``[B, rows]`` (s).
        pulse_counts: per tile, pulses applied per slot ``[B]`` (all copies and sides).
        verify_reads: per tile, verify row reads per slot ``[B]`` (all copies and sides).
        not_converged: per tile, cells left outside the tolerance per slot ``[B]``.
    """

    dG: torch.Tensor
    w_clip: torch.Tensor
    pulses: torch.Tensor
    times: dict[str, torch.Tensor] = field(default_factory=dict)
    row_times: dict[str, torch.Tensor] = field(default_factory=dict)
    pulse_counts: dict[str, torch.Tensor] = field(default_factory=dict)
    verify_reads: dict[str, torch.Tensor] = field(default_factory=dict)
    not_converged: dict[str, torch.Tensor] = field(default_factory=dict)


def program_matrix(W: torch.Tensor, tiles: Sequence[TileSpan], device: Device,
                   strategy: Strategy, generator: torch.Generator | None, *,
                   ideal_clip: bool = False, draw_noise: bool = True) -> ChannelProgram:
    """Program ``W [B, rows, cols]`` (crossbar orientation, float64) on its tiles.

    ``device``: the simulated device (the strategy's levels, tolerance and iteration cap
    are applied here); ``ideal_clip``: ``w_clip`` at least ``max|W|`` (no clipping);
    ``draw_noise``: open loop draws its normal numbers only when set (a noiseless device
    draws nothing, as before strategies existed). ``generator=None`` with
    ``draw_noise=False``: open-loop plan without noise (the compiler's pulse counts)."""
    dev = strategy.channel_device(device)
    w_clip = channel_clip(W, strategy.clip_sigmas)                    # [B, 1, 1]
    if ideal_clip:
        w_clip = torch.maximum(w_clip, W.abs().amax(dim=(-2, -1), keepdim=True))
    pulses = signed_pulses(W, w_clip, dev.states)                     # [B, rows, cols]
    out = ChannelProgram(torch.zeros_like(W), w_clip, pulses)
    width = dev.pulse_width_s
    r = strategy.redundancy
    if not strategy.verify:
        n_pos = pulses.clamp_min(0).double()
        n_neg = (-pulses).clamp_min(0).double()

        def program(n):
            z = (torch.randn(n.shape, generator=generator, dtype=torch.float64)
                 if draw_noise else None)
            return program_from_reset(n, dev, z)

        for _ in range(r):
            out.dG += program(n_pos) - program(n_neg)
        for tid, (a, b), (c, d) in tiles:
            tile = pulses[:, a:b, c:d].abs()
            row_max = tile.amax(dim=-1).double()                      # [B, rows]
            out.row_times[tid] = row_max * width
            out.times[tid] = row_max.sum(dim=-1) * width
            out.pulse_counts[tid] = r * tile.sum(dim=(-2, -1)).double()
            out.verify_reads[tid] = torch.zeros(W.shape[0], dtype=torch.float64)
            out.not_converged[tid] = torch.zeros(W.shape[0], dtype=torch.float64)
    else:
        pos, neg = target_conductances(W, w_clip, dev)
        for tid, (a, b), (c, d) in tiles:
            row_time = None
            count = reads = missed = 0.0
            for _ in range(r):
                sides = [program_with_verify(side[:, a:b, c:d].contiguous(), dev, generator)
                         for side in (pos, neg)]
                out.dG[:, a:b, c:d] += sides[0].conductance_us - sides[1].conductance_us
                for s in sides:
                    row_time = s.row_time_s if row_time is None else \
                        torch.maximum(row_time, s.row_time_s)
                    count = count + s.pulses.sum(dim=(-2, -1)).double()
                    reads = reads + s.iterations.amax(dim=-1).sum(dim=-1).double()
                    missed = missed + (~s.converged).sum(dim=(-2, -1)).double()
            out.row_times[tid] = row_time
            out.times[tid] = row_time.sum(dim=-1)
            out.pulse_counts[tid], out.verify_reads[tid] = count, reads
            out.not_converged[tid] = missed
    if r > 1:
        out.dG /= r
    return out


__all__ = ["ChannelProgram", "TileSpan", "program_matrix"]
