"""What happens to programmed cells after programming: drift, read noise, device-to-device.

The models the IMC simulator (:mod:`mimoc.runtime.imc`) applies on top of the programming
of :mod:`mimoc.hardware.programming` (docs/devices.md, "Variability"); every one is off
by default (the profile fields are 0), and then nothing here draws a random number, so
results do not change.

- **Conductance drift** (static arrays; the per-slot channel arrays are read microseconds
  after programming): ``G(t) = G_prog ((t + t0) / t0)^(-nu)`` ``t`` seconds after
  programming, ``nu = |drift_nu + drift_nu_std z|`` per cell (one draw per programming),
  ``t0 = drift_t0_s``: the power law of IBM aihwkit's ``PCMLikeNoiseModel``
  (``apply_drift_noise_to_conductance``; ``t0 = 20 s`` there).
- **Read noise**: every cell's read current ``x_i G_ij`` in an MVM carries
  ``N(0, (read_noise x_i G_ij)^2)``, independent per cell and read; the output of a
  differential pair's column is therefore ``sum_i x_i (G+_ij - G-_ij)`` plus
  ``N(0, read_noise^2 sum_i x_i^2 (G+_ij^2 + G-_ij^2))`` (a sum of independent Gaussians),
  drawn once per output and read: :func:`read_noise_std`.
- **Device-to-device spread** of the conductance range: each physical array gets
  ``Gmin_a = Gmin (1 + s z)``, ``Gmax_a = Gmax (1 + s z')`` (``s = d2d_g_spread``, one draw
  per array and seed; ``Gmin_a`` at least 0 and ``Gmax_a`` above ``Gmin_a``). Open-loop
  programming has the array's own range: ``n`` pulses of ``(Gmax_a - Gmin_a) / P`` with C2C
  a fraction of that range, i.e. ``G_a = Gmin_a + (G - Gmin) (Gmax_a - Gmin_a) /
  (Gmax - Gmin)`` for the nominal result ``G`` (:func:`remap_range`); program-and-verify
  reads the cell back and reaches targets inside the array's range, so verified cells are
  only clipped to ``[Gmin_a, Gmax_a]`` (:func:`clip_range`).
"""

from __future__ import annotations

import torch

from mimoc.hardware.devices import Device


def drift_factor(time_s: float, nu: torch.Tensor | float, t0_s: float):
    """``((t + t0) / t0)^(-nu)``: what drift multiplies a conductance by after ``time_s``."""
    return torch.pow(torch.as_tensor((time_s + t0_s) / t0_s, dtype=torch.float64),
                     -torch.as_tensor(nu, dtype=torch.float64))


def drifts(device: Device, time_s: float | None) -> bool:
    """Whether drift changes anything: a drifting device read ``time_s > 0`` after programming."""
    return bool(time_s) and (device.drift_nu > 0 or device.drift_nu_std > 0)


def drift(G: torch.Tensor, device: Device, time_s: float | None,
          generator: torch.Generator | None) -> torch.Tensor:
    """Conductances ``G`` (µS) ``time_s`` seconds after programming (module docstring); one
    ``nu`` per cell, drawn from ``generator`` only when ``drift_nu_std > 0``."""
    if not drifts(device, time_s):
        return G
    nu = torch.full_like(G, device.drift_nu)
    if device.drift_nu_std > 0:
        z = torch.randn(G.shape, generator=generator, dtype=G.dtype)
        nu = (nu + device.drift_nu_std * z).abs()
    return G * drift_factor(float(time_s), nu, device.drift_t0_s)


def d2d_ranges(count: int, device: Device, generator: torch.Generator | None,
               ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(Gmin_a, Gmax_a)`` in µS of ``count`` physical arrays (module docstring), or ``None``
    when the device has no device-to-device spread (nothing drawn)."""
    spread = device.d2d_g_spread
    if spread <= 0 or count == 0:
        return None
    z = torch.randn(2, count, generator=generator, dtype=torch.float64)
    g_min = (device.g_min_us * (1 + spread * z[0])).clamp_min(0.0)
    g_max = device.g_max_us * (1 + spread * z[1])
    # an array whose draws cross keeps a sliver of range rather than a negative one
    g_max = torch.maximum(g_max, g_min + 1e-3 * device.range_us)
    return g_min, g_max


def remap_range(G: torch.Tensor, device: Device, g_min: torch.Tensor, g_max: torch.Tensor,
                ) -> torch.Tensor:
    """Open-loop conductances on an array with range ``[g_min, g_max]`` (broadcasting with
    ``G``) from the nominal ones: ``g_min + (G - Gmin) (g_max - g_min) / (Gmax - Gmin)``."""
    return g_min + (G - device.g_min_us) * ((g_max - g_min) / device.range_us)


def clip_range(G: torch.Tensor, g_min: torch.Tensor, g_max: torch.Tensor) -> torch.Tensor:
    """Verified conductances on an array with range ``[g_min, g_max]``: clipped to it."""
    return torch.minimum(torch.maximum(G, g_min), g_max)


def read_noise_std(vec: torch.Tensor, squares: torch.Tensor, read_noise: float,
                   ) -> torch.Tensor:
    """Standard deviation of each MVM output (module docstring):
    ``read_noise sqrt(vec^2 @ (G+^2 + G-^2))`` for inputs ``vec [..., rows]`` and
    ``squares = G+^2 + G-^2 [..., rows, cols]`` (µS^2): in µS times input units."""
    return read_noise * (vec.square() @ squares).sqrt()
