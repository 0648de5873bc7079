"""The in-memory-computing (IMC) simulator: executes a crossbar schedule and gives ``x_hat``.

:func:`load_schedule` reads an artifact written by ``mimoc compile --target crossbar``
(``schedule.json`` + ``arrays.npz``) and runs its lowered program op by op (the compiler's
op table), with the crossbar ops replaced by the device model of docs/design.md section 7
(:mod:`mimoc.hardware.programming`, the same functions the target and noise-aware training
use):

- **static arrays** are programmed once per :meth:`IMCSchedule.detect` call / per
  :meth:`IMCSchedule.engine` (deployment) from the target conductances in ``arrays.npz``
  with program-and-verify (:func:`~mimoc.hardware.programming.program_with_verify`),
  cached per (device, generator state) so a repeated run reuses them with the same result;
- **channel arrays** are programmed for every slot (every ``b`` of ``H [B, ...]``) from the
  slot-rate matrix the program computes (``H``, ``H^T``, ``pinv(H)^T``) with the schedule's
  strategy (:mod:`mimoc.targets.crossbar.channel`: verify, redundancy, mapping range,
  levels); the default ``single`` is open loop: three-sigma mapping,
  ``n = clip(round(|W| / w_clip * P), 0, P)`` potentiation pulses from reset on the side of
  the pair that carries the sign, ``G = Gmin + n dG + c2c (Gmax - Gmin) sqrt(n) z``,
  clipped to ``[Gmin, Gmax]``;
- each MVM is ``(x @ (G+ - G-)) / k`` per row tile (``k = (Gmax - Gmin) / w_clip``), the
  row tiles' partial sums added (digital accumulation: each partial through the ADC);
- ``ADC``/``DAC`` nodes quantise to the device's ``adc_bits``/``dac_bits`` (or the
  ``adc_bits=``/``dac_bits=`` given) over ``[-full_scale, full_scale]`` (mid-tread,
  ``2^(b-1) - 1`` levels per side); ``None`` bits: ideal.

- variability (:mod:`mimoc.hardware.variability`, off unless the profile sets it):
  static arrays drift ``time_s`` seconds after programming, every cell read carries read
  noise, each physical array has its own Gmin/Gmax (device-to-device spread).

``c2c=None`` uses the device's own C2C variations; a number sets both directions.
``ideal=True`` is a device without noise, with 2^30 states, ideal converters and no
clipping in the mapping (``w_clip`` at least ``max|W|``): the
simulator then equals the PyTorch model to float precision (tests/crossbar). Everything is
batched torch (float64) and deterministic for a seed. :attr:`IMCResult.programming_s` is
the per-slot programming time of the channel arrays actually programmed (row max x pulse
width, summed over rows, slowest write group), next to the schedule's expected value.

Example::

    >>> xb = load_schedule("out/xb")
    >>> x_hat = xb.detect(H, y, c2c=0.02, seed=1)          # [B, S, 2Nt]
    >>> result = simulate({"crossbar": xb.engine(c2c=0.02)}, system, [0, 4, 8])
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mimoc.compiler import ops
from mimoc.compiler.interpreter import bind_sizes
from mimoc.errors import ModelFileError, UsageError
from mimoc.hardware.devices import Device, device_from_dict
from mimoc.hardware.programming import mapping_gain
from mimoc.hardware.variability import (
    clip_range,
    d2d_ranges,
    drift,
    drift_factor,
    drifts,
    read_noise_std,
    remap_range,
)
from mimoc.runtime.inputs import link_arrays, seed_value
from mimoc.sim.llr import soft_output
from mimoc.targets.crossbar.arrays import target_conductances
from mimoc.targets.crossbar.artifact import SCHEDULE, read_arrays, read_schedule
from mimoc.targets.crossbar.channel import ChannelProgram, program_matrix
from mimoc.targets.crossbar.checks import check_arrays, check_program
from mimoc.targets.crossbar.config import CrossbarConfig
from mimoc.targets.crossbar.program import program_from_json
from mimoc.targets.crossbar.programming import verify_many
from mimoc.targets.crossbar.strategy import SINGLE, Strategy, parse_strategy

#: States of the ideal device (fine enough that quantisation is below float32 precision).
IDEAL_STATES = 2 ** 30
#: Programmed static array sets kept per schedule (a few MB each for the example DetNet).
STATIC_CACHE_ENTRIES = 4
#: ``adc_bits`` / ``dac_bits`` default: the device profile's resolution.
DEVICE = "device"


@dataclass
class IMCResult:
    """``x_hat [B, S, 2Nt]`` (float32) and the per-slot channel programming time ``[B]``."""

    x_hat: torch.Tensor
    programming_s: torch.Tensor


def quantize(x: torch.Tensor, bits: int | None, full_scale: float) -> torch.Tensor:
    """Mid-tread uniform quantiser over ``[-full_scale, full_scale]`` (``bits None``: ``x``)."""
    if bits is None:
        return x
    levels = 2 ** (bits - 1) - 1
    if levels < 1:
        return torch.sign(x) * full_scale
    step = full_scale / levels
    return torch.clamp(torch.round(x / step), -levels, levels) * step


@dataclass
class _Programmed:
    """One matrix on its arrays: per row tile ``(row range, G+ - G-, k)``; ``squares``: per
    row tile ``G+^2 + G-^2`` for read noise (``None``: ``G+ = Gmin + max(G+ - G-, 0)`` and
    ``G- = Gmin + max(G- - G+, 0)``, exact for channel arrays: the side that does not carry
    the sign gets no pulse)."""

    row_tiles: list[tuple[int, int, torch.Tensor, Any]]
    squares: list[torch.Tensor] | None = None


class IMCSchedule:
    """A loaded crossbar artifact (see the module docstring)."""

    def __init__(self, path: str | os.PathLike, *, verify: bool = True,
                 schedule: Mapping[str, Any] | None = None,
                 arrays: Mapping[str, np.ndarray] | None = None,
                 static_cache: dict | None = None):
        """Read the artifact at ``path``; or, with ``schedule`` and ``arrays`` (a built
        schedule in memory, e.g. a strategy candidate), use those (``path`` only names it).
        ``static_cache``: share the programmed static arrays with another schedule of the
        same compile (they do not depend on the channel strategy)."""
        self.path = Path(path)
        if schedule is None or arrays is None:
            self.schedule = read_schedule(self.path)  # schema-checked: the keys below exist
            self.arrays = read_arrays(self.path, self.schedule, verify=verify)
        else:
            self.schedule, self.arrays = dict(schedule), dict(arrays)
        where = repr(str(self.path / SCHEDULE))
        self.device = device_from_dict(self.schedule["device"], f"{where} device")
        check_arrays(self.schedule, self.arrays, self.device, where)
        consts = {k[len("const/"):]: torch.from_numpy(v.copy())
                  for k, v in self.arrays.items() if k.startswith("const/")}
        self.graph = program_from_json(self.schedule["program"], consts)
        check_program(self.schedule, self.graph, where)
        try:
            self.config = CrossbarConfig.from_dict(self.schedule["config"])
        except UsageError as err:
            raise ModelFileError(f"{where}: {err}; compile the artifact again") from None
        self.matrices = {m["id"]: m for m in self.schedule["matrices"]}
        self.tiles = {a["id"]: a for a in self.schedule["arrays"]}
        self.groups = self.schedule["programming"]["per_slot"]["groups"]
        self.strategy: Strategy = parse_strategy(self.config.strategy)
        #: per channel matrix, what the last run programmed (times, counts, dG)
        self.last_channel: dict[str, ChannelProgram] = {}
        # programmed static arrays per (device, ideal, generator state): re-programming
        # them with verify dominated every run; a hit restores the generator's state after
        # programming, so results are those of a fresh programming
        self.static_cache: dict = {} if static_cache is None else static_cache

    # -- properties ------------------------------------------------------------------

    @property
    def model(self) -> Mapping[str, Any]:
        return self.schedule.get("model") or {}

    @property
    def config_dict(self) -> Mapping[str, Any]:
        return self.model.get("config") or {}

    @property
    def totals(self) -> Mapping[str, Any]:
        return self.schedule["totals"]

    # -- devices -----------------------------------------------------------------------

    def device_for(self, c2c: float | None = None, *, ideal: bool = False) -> Device:
        """The simulated device: the schedule's, with ``c2c`` if given, or the ideal one."""
        if ideal:
            return self.device.ideal(states=IDEAL_STATES)
        if c2c is None:
            return self.device
        if isinstance(c2c, bool) or not isinstance(c2c, int | float) or not 0 <= c2c < 1:
            raise UsageError(f"C2C variation must be a fraction in [0, 1) (0.02 = 2%), "
                             f"got {c2c!r}")
        return self.device.with_c2c(float(c2c))

    # -- programming -----------------------------------------------------------------

    def _tile_grid(self, m: Mapping[str, Any]) -> list[list[Mapping[str, Any]]]:
        grid: list[list[Mapping[str, Any]]] = [[] for _ in range(m["row_tiles"])]
        for tid in m["tiles"]:
            t = self.tiles[tid]
            grid[t["tile"][0]].append(t)
        return grid

    def draw_d2d(self, device: Device, generator: torch.Generator,
                 ) -> dict[str, tuple[torch.Tensor, torch.Tensor]] | None:
        """Per tile ``(Gmin_a [2], Gmax_a [2])`` of its two physical arrays (``G+``, ``G-``):
        the device-to-device spread (:func:`~mimoc.hardware.variability.d2d_ranges`), drawn
        once per deployment; ``None`` (nothing drawn) for a device without spread."""
        ids = [a["id"] for a in self.schedule["arrays"]]
        ranges = d2d_ranges(2 * len(ids), device, generator)
        if ranges is None:
            return None
        g_min, g_max = (r.reshape(len(ids), 2) for r in ranges)
        return {tid: (g_min[i], g_max[i]) for i, tid in enumerate(ids)}

    def program_static(self, device: Device, generator: torch.Generator, *,
                       ideal: bool = False, time_s: float | None = None,
                       d2d: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
                       compensate_drift: bool = False) -> dict[str, _Programmed]:
        """Program-and-verify every static tile from its target conductances (``ideal``:
        targets remapped from the exact weights with ``w_clip = max|W|``, no clipping).
        All tiles go through :func:`~mimoc.targets.crossbar.programming.verify_many`; then
        each array's device-to-device range (``d2d``: clipped to it) and the drift of
        ``time_s`` seconds after programming (:mod:`mimoc.hardware.variability`);
        ``compensate_drift``: the readout gain divides by the mean drift factor
        ``((t + t0) / t0)^(-drift_nu)`` (a global drift compensation, exact without spread)."""
        jobs = []
        targets = []
        for mid, m in self.matrices.items():
            if m["role"] != "static":
                continue
            w_clip = float(m["mapping"]["w_clip"])
            weights = torch.from_numpy(self.arrays[f"{mid}.weights"]).double()
            if ideal:
                w_clip = max(w_clip, float(weights.abs().max()))
            for tiles in self._tile_grid(m):
                for t in tiles:
                    (a, b), (c, d) = t["rows"], t["cols"]
                    if ideal:
                        targets += list(target_conductances(weights[a:b, c:d], w_clip, device))
                    else:
                        # float32 in arrays.npz: Gmax can round up by half an ulp
                        # (check_arrays refused anything further out)
                        targets += [torch.from_numpy(self.arrays[f"{t['id']}.{side}"]).double()
                                    .clamp(device.g_min_us, device.g_max_us)
                                    for side in ("g_pos", "g_neg")]
            gain = mapping_gain(w_clip, device)
            if compensate_drift and drifts(device, time_s):
                gain = gain * float(drift_factor(time_s, device.drift_nu, device.drift_t0_s))
            jobs.append((mid, m, gain))
        results = iter(verify_many(targets, device, generator))
        out: dict[str, _Programmed] = {}
        for mid, m, k in jobs:
            rows, squares = [], []
            for tiles in self._tile_grid(m):
                blocks, block_squares = [], []
                for t in tiles:
                    pos, neg = next(results).conductance_us, next(results).conductance_us
                    if d2d is not None:
                        g_min, g_max = d2d[t["id"]]
                        pos = clip_range(pos, g_min[0], g_max[0])
                        neg = clip_range(neg, g_min[1], g_max[1])
                    pos = drift(pos, device, time_s, generator)
                    neg = drift(neg, device, time_s, generator)
                    blocks.append(pos - neg)
                    block_squares.append(pos.square() + neg.square())
                r0, r1 = tiles[0]["rows"]
                rows.append((r0, r1, torch.cat(blocks, dim=-1), k))
                squares.append(torch.cat(block_squares, dim=-1))
            out[mid] = _Programmed(rows, squares)
        return out

    def channel_d2d(self, programmed: _Programmed, m: Mapping[str, Any], device: Device,
                    d2d: dict[str, tuple[torch.Tensor, torch.Tensor]] | None) -> _Programmed:
        """A channel matrix programmed open loop on arrays with their device-to-device
        ranges (:func:`~mimoc.hardware.variability.remap_range` of each side, rebuilt
        exactly from ``G+ - G-``: the side that does not carry the sign stays at Gmin)."""
        if d2d is None:
            return programmed
        rows, squares = [], []
        for (r0, r1, dG, k), tiles in zip(programmed.row_tiles, self._tile_grid(m),
                                          strict=True):
            bounds = torch.zeros(4, dG.shape[-1], dtype=torch.float64)
            for t in tiles:
                c0, c1 = t["cols"]
                g_min, g_max = d2d[t["id"]]
                bounds[:, c0:c1] = torch.stack([g_min[0], g_max[0], g_min[1], g_max[1]])[:, None]
            pos = remap_range(device.g_min_us + dG.clamp_min(0), device, bounds[0], bounds[1])
            neg = remap_range(device.g_min_us + (-dG).clamp_min(0), device, bounds[2],
                              bounds[3])
            rows.append((r0, r1, pos - neg, k))
            squares.append(pos.square() + neg.square())
        return _Programmed(rows, squares)
    def static_for(self, device: Device, generator: torch.Generator, *,
                   ideal: bool = False, time_s: float | None = None,
                   d2d: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
                   compensate_drift: bool = False) -> dict[str, _Programmed]:
        """:meth:`program_static` through the cache (same result, generator advanced the
        same way). The key is the generator's state after ``d2d`` was drawn from it, so
        it stands for the seed and the device-to-device ranges alike."""
        key = (device, ideal, time_s, compensate_drift,
               hashlib.sha256(generator.get_state().numpy().tobytes()).hexdigest())
        hit = self.static_cache.get(key)
        if hit is None:
            static = self.program_static(device, generator, ideal=ideal, time_s=time_s,
                                         d2d=d2d, compensate_drift=compensate_drift)
            while len(self.static_cache) >= STATIC_CACHE_ENTRIES:
                self.static_cache.pop(next(iter(self.static_cache)))
            hit = self.static_cache[key] = (static, generator.get_state())
        else:
            generator.set_state(hit[1])
        return hit[0]

    def program_channel(self, m: Mapping[str, Any], value: torch.Tensor, device: Device,
                        generator: torch.Generator, *, ideal: bool = False,
                        ) -> tuple[_Programmed, dict[str, torch.Tensor]]:
        """Program one channel matrix for every slot of the batch with the schedule's
        strategy (:mod:`mimoc.targets.crossbar.channel`; ``single``: open loop, no
        verification). ``ideal``: open loop, ``w_clip = max(3 sigma_h, max|W|)``, no
        clipping. Returns the programmed tiles and each tile's time per slot ``[B]``."""
        W = value.double().reshape(value.shape[0], value.shape[-2], value.shape[-1])
        strategy = SINGLE if ideal else self.strategy
        spans = [(t["id"], tuple(t["rows"]), tuple(t["cols"]))
                 for tiles in self._tile_grid(m) for t in tiles]
        out = program_matrix(W, spans, device, strategy, generator, ideal_clip=ideal,
                             draw_noise=device.c2c_sigma_us("potentiation") > 0)
        self.last_channel[m["id"]] = out
        lead = tuple(value.shape[:-2])                        # (B,) or (B, 1, ...)
        dG = out.dG
        k = mapping_gain(out.w_clip, device).reshape(lead + (1, 1))  # broadcasts like matmul
        rows = []
        for tiles in self._tile_grid(m):
            r0, r1 = tiles[0]["rows"]
            rows.append((r0, r1, dG[:, r0:r1, :].reshape(lead + (r1 - r0, dG.shape[-1])), k))
        return _Programmed(rows), dict(out.times)

    def _slot_time(self, times: dict[str, torch.Tensor], batch: int) -> torch.Tensor:
        if not self.groups:
            return torch.zeros(batch, dtype=torch.float64)
        sums = [sum(times[t] for t in group) for group in self.groups]
        return torch.stack(sums).amax(dim=0)

    # -- executing ----------------------------------------------------------------------

    def _mvm(self, node, x: torch.Tensor, programmed: _Programmed, m: Mapping[str, Any],
             adc_bits: int | None, device: Device | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
        form = node.attrs["form"]
        x = x.double()
        if form == "conv2d":
            n, _, h, w = x.shape
            kh, kw = self.graph.node(node.inputs[1]).shape[2:]
            cols = F.unfold(x, (kh, kw), dilation=node.attrs["dilation"],
                            padding=node.attrs["padding"], stride=node.attrs["stride"])
            vec = cols.transpose(1, 2)                          # [N, L, C*kh*kw]
        else:
            vec = x
        if m["bias_row"]:
            vec = torch.cat([vec, torch.ones(vec.shape[:-1] + (1,), dtype=vec.dtype)], dim=-1)
        digital = self.config.accumulation == "digital" and len(programmed.row_tiles) > 1
        out = None
        noisy = device is not None and device.read_noise > 0
        for index, (r0, r1, dG, k) in enumerate(programmed.row_tiles):
            part = vec[..., r0:r1] @ dG
            if noisy:  # every cell's read current with its own noise: one draw per output
                squares = (programmed.squares[index] if programmed.squares is not None else
                           (device.g_min_us + dG.clamp_min(0)).square()
                           + (device.g_min_us + (-dG).clamp_min(0)).square())
                std = read_noise_std(vec[..., r0:r1], squares, device.read_noise)
                part = part + std * torch.randn(part.shape, generator=generator,
                                                dtype=part.dtype)
            part = part / k  # k: a number (static) or [B, .., 1, 1] (per slot)
            if digital:
                part = quantize(part, adc_bits, float(m["output_full_scale"]))
            out = part if out is None else out + part
        if form == "conv2d":
            oh, ow = node.shape[2], node.shape[3]
            out = out.transpose(1, 2).reshape(x.shape[0], -1, oh, ow)
        return out

    def run(self, H: torch.Tensor, y: torch.Tensor, *, c2c: float | None = None, seed: int = 0,
            ideal: bool = False, generator: torch.Generator | None = None,
            static: dict[str, _Programmed] | None = None, adc_bits: Any = DEVICE,
            dac_bits: Any = DEVICE, time_s: float | None = None,
            d2d: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
            compensate_drift: bool = False) -> IMCResult:
        """Execute the schedule on ``H [B, 2Nr, 2Nt]``, ``y [B, S, 2Nr]`` (module docstring).

        ``adc_bits`` / ``dac_bits``: converter resolutions (default: the device's; ``None``:
        ideal converters). ``time_s``: seconds since the static arrays were programmed (their
        drift; ``None``: read at once). ``d2d``: the arrays' device-to-device ranges
        (:meth:`draw_d2d`) with a given ``static``; without ``static`` both are drawn here.
        ``compensate_drift``: a global drift compensation (:meth:`program_static`)."""
        time_s = _time_since_programming(time_s)
        device = self.device_for(c2c, ideal=ideal)
        adc_bits = _bits("adc_bits", adc_bits, None if ideal else device.adc_bits)
        dac_bits = _bits("dac_bits", dac_bits, None if ideal else device.dac_bits)
        H_np, y_np = link_arrays(H, y, np.float64)  # real, finite, sizes >= 1, one B
        H, y = torch.from_numpy(H_np), torch.from_numpy(y_np)
        generator = generator or torch.Generator().manual_seed(seed_value(seed))
        if static is None:
            d2d = self.draw_d2d(device, generator)
            static = self.static_for(device, generator, ideal=ideal, time_s=time_s, d2d=d2d,
                                     compensate_drift=compensate_drift)
        inputs = {"H": H, "y": y}
        sizes = bind_sizes(self.graph, inputs)
        values: dict[str, torch.Tensor] = {}
        programmed = dict(static)
        times: dict[str, torch.Tensor] = {}
        for node in self.graph.nodes:
            if node.op == "Input":
                value = inputs[node.name]
            elif node.op == "Const":
                value = self.graph.constants[node.name].double()
            elif node.op == "CrossbarMVM":
                mid = node.attrs["matrix"]
                m = self.matrices[mid]
                if mid not in programmed:
                    programmed[mid], tile_times = self.program_channel(
                        m, values[node.inputs[1]], device, generator, ideal=ideal)
                    times.update(tile_times)
                    programmed[mid] = self.channel_d2d(programmed[mid], m, device, d2d)
                value = self._mvm(node, values[node.inputs[0]], programmed[mid], m, adc_bits,
                                  device, generator)
            elif node.op in ("ADC", "DAC"):
                bits = adc_bits if node.op == "ADC" else dac_bits
                value = quantize(values[node.inputs[0]], bits, float(node.attrs["full_scale"]))
            else:
                args = [values[i] for i in node.inputs]
                value = ops.schema(node.op).execute(args, node.attrs, sizes)
                if value.is_floating_point():
                    value = value.double()
            values[node.name] = value
        x_hat = values[self.graph.outputs[0]].to(torch.float32)
        return IMCResult(x_hat, self._slot_time(times, H.shape[0]))

    def detect(self, H: torch.Tensor, y: torch.Tensor, *, c2c: float | None = None,
               seed: int = 0, ideal: bool = False, adc_bits: Any = DEVICE,
               dac_bits: Any = DEVICE, time_s: float | None = None,
               output: str = "symbols", error_var: Any = None) -> torch.Tensor:
        """``x_hat [B, S, 2Nt]``: static arrays and every slot's channel arrays programmed
        with noise seeded by ``seed`` (the same seed gives the same output); ``time_s``:
        seconds since the static arrays were programmed (drift).
        ``output="llr"``: max-log LLRs ``[B, S, Nt, log2 M]`` instead (:mod:`mimoc.sim.llr`;
        ``error_var`` as in the ONNX runner's ``detect``)."""
        with torch.no_grad():
            x_hat = self.run(H, y, c2c=c2c, seed=seed, ideal=ideal, adc_bits=adc_bits,
                             dac_bits=dac_bits, time_s=time_s).x_hat
        return soft_output(x_hat, output, self.config_dict.get("modulation"), error_var)

    __call__ = detect

    def engine(self, *, c2c: float | None = None, seed: int = 0, ideal: bool = False,
               adc_bits: Any = DEVICE, dac_bits: Any = DEVICE, time_s: float | None = None,
               compensate_drift: bool = False):
        """A detector for :func:`mimoc.sim.ber.simulate` (``(H_est, y, N0) -> x_hat``): the
        static arrays are programmed once (deployment) and read ``time_s`` seconds later
        (drift; ``None``: at once), the channel arrays for every slot, from one generator
        seeded by ``seed`` (and by the work unit: ``run.reseed``); the arrays' device-to-device
        ranges are drawn once; ``compensate_drift``: a global drift compensation
        (:meth:`program_static`)."""
        device = self.device_for(c2c, ideal=ideal)
        time_s = _time_since_programming(time_s)
        generator = torch.Generator().manual_seed(seed_value(seed))
        d2d = self.draw_d2d(device, generator)
        static = self.static_for(device, generator, ideal=ideal, time_s=time_s, d2d=d2d,
                                 compensate_drift=compensate_drift)

        def run(H: torch.Tensor, y: torch.Tensor, noise_var: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                result = self.run(H, y, c2c=c2c, ideal=ideal, generator=generator,
                                  static=static, adc_bits=adc_bits, dac_bits=dac_bits,
                                  d2d=d2d)
            return result.x_hat.to(H.dtype)

        def reseed(unit_seed: int) -> None:
            # the engine reseeds per work unit, so a unit's programming noise depends on
            # (seed, unit) alone, whichever worker runs it and in whatever order
            generator.manual_seed(seed_value(seed) ^ int(unit_seed))

        label = "ideal" if ideal else f"c2c{device.c2c_potentiation:g}"
        run.__name__ = f"imc_{self.path.name}_{label}"
        run.reseed = reseed
        return run


def _time_since_programming(time_s: Any) -> float | None:
    if time_s is None:
        return None
    if (isinstance(time_s, bool) or not isinstance(time_s, int | float)
            or not math.isfinite(time_s) or time_s < 0):
        raise UsageError(f"the time since programming must be a number of seconds >= 0, "
                         f"got {time_s!r}")
    return float(time_s)


def _bits(name: str, value: Any, default: int | None) -> int | None:
    if value is DEVICE:
        return default
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or not 1 <= value <= 32):
        raise UsageError(f"{name} must be 1..32 bits or None (ideal), got {value!r}")
    return value


def load_schedule(path: str | os.PathLike, *, verify: bool = True) -> IMCSchedule:
    """Load a crossbar artifact directory (``mimoc compile --target crossbar`` output).

    Everything read is checked first (schema, references, ``arrays.npz`` entries); with
    ``verify`` (default) an ``arrays.npz`` modified after compiling is refused: pass
    ``verify=False`` for an artifact you edited on purpose."""
    path = Path(path)
    if not path.is_dir():
        raise ModelFileError(f"{str(path)!r} is not an artifact directory; compile one with "
                             "'mimoc compile MODEL.pt --target crossbar -o DIR'")
    return IMCSchedule(path, verify=verify)
