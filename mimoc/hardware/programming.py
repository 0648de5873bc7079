"""Programming memristor crossbars: the one statement of the physics (docs/design.md section 7).

Noise-aware training (:mod:`mimoc.detectors.noise_aware`), the crossbar target
(:mod:`mimoc.targets.crossbar.arrays`, :mod:`mimoc.targets.crossbar.programming`) and the IMC
simulator (:mod:`mimoc.runtime.imc`) all program cells through these functions, so the three
cannot drift apart. Each caller keeps its own precision and random stream: the functions take
tensors in the dtype they are given and the standard normal draws ``z`` from the caller.

- **Mapping.** A signed matrix ``W`` is a differential pair ``G+ - G-`` with
  ``G+ = Gmin + k max(W, 0)``, ``G- = Gmin + k max(-W, 0)`` and
  ``k = (Gmax - Gmin) / w_clip`` (:func:`mapping_gain`, :func:`pair_conductances`); only
  the cell that carries the sign moves from ``Gmin``. A channel matrix uses the three-sigma
  rule ``w_clip = 3 sigma_h`` (:func:`sigma_clip`), ``sigma_h`` by default the RMS of its
  entries (:func:`channel_clip`): 99.73% of Gaussian entries map inside the range.
- **Pulses from reset.** With ``P`` states a pulse nominally moves the conductance by
  ``dG = (Gmax - Gmin) / P``, so a target ``G`` takes ``n = clip(round((G - Gmin) / dG), 0,
  P)`` potentiation pulses (:func:`pulses_from_reset`); in the weight domain the same count
  is ``n = clip(round(|W| / w_clip * P), 0, P)`` (:func:`weight_pulses`).
- **Programming without verification** (the per-slot channel arrays): each pulse adds
  ``dG`` plus cycle-to-cycle noise ``N(0, (c2c (Gmax - Gmin))^2)``; the sum of ``n``
  independent increments is Gaussian, so a cell lands at
  ``Gmin + n dG + c2c (Gmax - Gmin) sqrt(n) z``, clipped to ``[Gmin, Gmax]``
  (:func:`program_from_reset`; :func:`programmed_level` is the same in any units, e.g.
  weights with ``Gmin -> 0`` and ``Gmax - Gmin -> w_clip``). That is the ``per-pulse``
  C2C definition (``Device.c2c_model``, the default); ``per-write`` devices get one draw
  ``c2c (Gmax - Gmin) z`` per programming operation instead, whatever its pulse count
  (NeuroSim's definition; a cell with ``n = 0`` is not written and stays at ``Gmin``):
  :func:`c2c_spread` is the one place that tells the two apart.
- **Programming with verification** (static weights, once at deployment;
  :func:`program_with_verify`): open loop as above, then repeated *read, correct* until
  every cell is within the tolerance: a cell with error ``e = G_target - G`` gets
  ``k = round(|e| / dG)`` pulses in the direction of ``e`` (with that direction's C2C
  noise: ``sqrt(k)`` draws per-pulse, one draw per-write: each correction is a write);
  it is done when ``|e| <= verify_tolerance (Gmax - Gmin)`` or when ``k = 0``
  (closer than half a step: no pulse can improve it), or after ``verify_max_iterations``
  corrections. Rows are programmed one after another, the cells of a row in parallel, so a
  row's time is ``sum over its iterations (max_k_in_row * pulse_width_s + verify_read_s)``.

Example::

    >>> from mimoc.hardware.devices import load_device
    >>> ftj = load_device("ftj-luo2022")
    >>> W = torch.tensor([[0.5, -1.0], [0.0, 2.0]], dtype=torch.float64)
    >>> w_clip = channel_clip(W)
    >>> n = weight_pulses(W, w_clip, ftj.states)      # pulses of the cell carrying the sign
    >>> n
    tensor([[22., 44.],
            [ 0., 87.]], dtype=torch.float64)
    >>> z = torch.randn(2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    >>> G = program_from_reset(n, ftj, z)              # µS, noisy, inside [Gmin, Gmax]
    >>> bool(((G >= ftj.g_min_us) & (G <= ftj.g_max_us)).all())
    True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from mimoc.errors import UsageError
from mimoc.hardware.devices import Device

#: Three-sigma rule of IM-MIMO: 99.73% of Gaussian entries map inside the range.
CLIP_SIGMAS = 3.0
#: C2C definitions (``Device.c2c_model``): noise per pulse, accumulating as ``sqrt(n)``
#: (mimoc's default, IM-MIMO's Lemma 1), or one draw per programming operation (NeuroSim).
PER_PULSE, PER_WRITE = "per-pulse", "per-write"


# ----------------------------------------------------------------------------- mapping

def sigma_clip(sigma: torch.Tensor, *, floor: float | None = None,
               sigmas: float = CLIP_SIGMAS) -> torch.Tensor:
    """``w_clip = 3 sigma`` (``sigmas`` sigma), at least ``floor`` (default: the smallest
    normal number of ``sigma``'s dtype): an all-zero matrix has nothing to program, but
    ``w_clip`` must stay positive to avoid ``0/0``."""
    if floor is None:
        floor = torch.finfo(sigma.dtype).tiny
    return (sigmas * sigma).clamp_min(floor)


def channel_clip(W: torch.Tensor, *, floor: float | None = None,
                 sigmas: float = CLIP_SIGMAS) -> torch.Tensor:
    """:func:`sigma_clip` per matrix ``[..., 1, 1]`` with ``sigma_h`` the RMS of the entries
    of ``W [..., rows, cols]``, computed in ``W``'s dtype."""
    return sigma_clip(W.square().mean(dim=(-2, -1), keepdim=True).sqrt(), floor=floor,
                      sigmas=sigmas)


def mapping_gain(w_clip: torch.Tensor | float, device: Device) -> torch.Tensor | float:
    """``k = (Gmax - Gmin) / w_clip``: microsiemens per weight unit."""
    return device.range_us / w_clip


def pair_conductances(W: torch.Tensor, w_clip: torch.Tensor | float, device: Device,
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(G+, G-)`` in µS of the exact differential-pair mapping of ``W`` (each side clipped
    to ``Gmax``; the side that does not carry the sign stays at ``Gmin``)."""
    k = mapping_gain(w_clip, device)
    pos = (device.g_min_us + k * W.clamp_min(0)).clamp(max=device.g_max_us)
    neg = (device.g_min_us + k * (-W).clamp_min(0)).clamp(max=device.g_max_us)
    return pos, neg


# ----------------------------------------------------------------------------- pulse counts

def weight_pulses(W: torch.Tensor, w_clip: torch.Tensor | float, states: int) -> torch.Tensor:
    """Potentiation pulses from reset of the cell that carries ``W``:
    ``clip(round(|W| / w_clip * P), 0, P)`` (``W``'s dtype, whole numbers).

    The weight-domain form of :func:`pulses_from_reset`: ``(G - Gmin) / dG = |W| / w_clip * P``
    for ``G = Gmin + k |W|``."""
    return torch.round(W.abs() / w_clip * states).clamp(0, states)


def pulses_from_reset(target_us: torch.Tensor, device: Device) -> torch.Tensor:
    """Potentiation pulses from reset to reach ``target_us``:
    ``clip(round((G - Gmin) / dG), 0, states)`` (int64, same shape)."""
    target = torch.as_tensor(target_us, dtype=torch.float64)
    return torch.round((target - device.g_min_us) / device.step_us).clamp(0, device.states) \
        .to(torch.int64)


# ----------------------------------------------------------------------------- open loop

def c2c_spread(n: torch.Tensor, c2c_model: str = PER_PULSE) -> torch.Tensor:
    """How many C2C standard deviations ``n`` pulses of one write add up to: ``sqrt(n)``
    (``per-pulse``: every pulse independent) or ``1`` for ``n > 0`` and ``0`` for ``n = 0``
    (``per-write``: one draw per programming operation; an unwritten cell keeps its value)."""
    if c2c_model == PER_PULSE:
        return n.sqrt()
    if c2c_model == PER_WRITE:
        return (n > 0).to(n.dtype)
    raise UsageError(f"c2c_model must be {PER_PULSE!r} or {PER_WRITE!r}, got {c2c_model!r}")


def programmed_level(n: torch.Tensor, z: torch.Tensor | None, *, low, step, sigma, high,
                     c2c_model: str = PER_PULSE) -> torch.Tensor:
    """Where a cell lands after ``n`` identical pulses up from ``low``:
    ``low + n step + sigma sqrt(n) z`` (``per-pulse`` C2C; ``per-write``: ``sigma z`` for
    ``n > 0``), clipped to ``[low, high]``.

    ``step``: the nominal change of one pulse; ``sigma``: the standard deviation of the C2C
    noise of one pulse (``per-pulse``) or one write (``per-write``); ``z``: standard normal
    draws of ``n``'s shape (``None``: no noise). Numbers or tensors that broadcast with
    ``n``, in any units (µS, or weights with ``low = 0`` and ``high = w_clip``)."""
    level = low + n * step
    if z is not None:
        level = level + sigma * c2c_spread(n, c2c_model) * z
    return level.clamp_min(low).clamp_max(high)


def program_from_reset(n: torch.Tensor, device: Device, z: torch.Tensor | None,
                       ) -> torch.Tensor:
    """Conductances in µS after ``n`` potentiation pulses from reset without verification:
    ``Gmin + n dG + c2c (Gmax - Gmin) sqrt(n) z`` (per-write devices: ``c2c (Gmax - Gmin)
    z`` for ``n > 0``) clipped to ``[Gmin, Gmax]`` (``z`` standard normal draws of ``n``'s
    shape; ``None``: no noise)."""
    return programmed_level(n, z, low=device.g_min_us, step=device.step_us,
                            sigma=device.c2c_sigma_us("potentiation"), high=device.g_max_us,
                            c2c_model=device.c2c_model)


# ----------------------------------------------------------------------------- verify loop

@dataclass
class VerifyResult:
    """The outcome of :func:`program_with_verify` for cells ``[..., rows, cols]``.

    Attributes:
        conductance_us: programmed conductances, float64 ``[..., rows, cols]``.
        pulses: pulses applied to each cell (open loop + corrections), int64, same shape.
        iterations: verify reads of each cell's row until the cell was done, int64.
        row_time_s: programming-with-verify time of each row, float64 ``[..., rows]``.
        converged: cells within tolerance (or within half a step), bool, same shape.
    """

    conductance_us: torch.Tensor
    pulses: torch.Tensor
    iterations: torch.Tensor
    row_time_s: torch.Tensor
    converged: torch.Tensor

    @property
    def total_time_s(self) -> float:
        """All rows one after another: the sum of ``row_time_s``."""
        return float(self.row_time_s.sum())


def program_with_verify(target_us: torch.Tensor, device: Device,
                        generator: torch.Generator | None = None, *,
                        on_cells: Callable[[int], None] | None = None) -> VerifyResult:
    """Program cells from reset to ``target_us`` with read-and-correct verification.

    The model is the module docstring's: an open-loop pass of
    ``round((G - Gmin) / dG)`` potentiation pulses, then up to
    ``device.verify_max_iterations`` rounds in which every row is read once
    (``verify_read_s``) and every cell still off by more than the tolerance
    gets ``k = round(|e| / dG)`` pulses towards its target, each with the C2C
    noise of its direction; conductances are clipped to ``[Gmin, Gmax]``.

    Args:
        target_us: target conductances ``[..., rows, cols]`` in µS, inside
            ``[Gmin, Gmax]`` (one tensor per side of a differential pair).
        device: the :class:`~mimoc.hardware.devices.Device`.
        generator: random generator of the C2C noise (deterministic for a seed).
        on_cells: told how many more cells are finished (within tolerance, or given up
            after the last round) after the open-loop pass and after each round; the
            counts add up to the number of cells (a progress bar's ticks).

    Returns:
        A :class:`VerifyResult`.

    Example::

        >>> from mimoc.hardware.devices import load_device
        >>> dev = load_device("fefet-jerry2017")
        >>> target = torch.full((2, 3), 1.0, dtype=torch.float64)
        >>> out = program_with_verify(target, dev, torch.Generator().manual_seed(0))
        >>> bool(((out.conductance_us - target).abs() <= dev.verify_tolerance_us
        ...       + dev.step_us / 2).all())
        True
    """
    target = torch.as_tensor(target_us, dtype=torch.float64)
    if target.dim() < 2:
        raise UsageError(f"program_with_verify expects cells [..., rows, cols], got shape "
                         f"{tuple(target.shape)}")
    if not torch.isfinite(target).all():
        raise UsageError("program_with_verify: target conductances must be finite")
    slack = 1e-9 * max(device.range_us, 1.0)
    if (target < device.g_min_us - slack).any() or (target > device.g_max_us + slack).any():
        raise UsageError(f"program_with_verify: targets must lie in [Gmin, Gmax] = "
                         f"[{device.g_min_us:g}, {device.g_max_us:g}] uS of {device.name}")
    target = target.clamp(device.g_min_us, device.g_max_us)
    step, width = device.step_us, device.pulse_width_s
    sigma_pot = device.c2c_sigma_us("potentiation")
    sigma_dep = device.c2c_sigma_us("depression")
    tolerance = device.verify_tolerance_us

    def noise(count: int) -> torch.Tensor:
        return torch.randn(count, generator=generator, dtype=torch.float64)

    shape = target.shape
    rows = shape[:-1]
    # open loop from reset: potentiation pulses only (noise drawn even when the device has
    # none, so the correction rounds see the same random stream for every device)
    pulses = pulses_from_reset(target, device)
    n = pulses.to(torch.float64)
    G = program_from_reset(n, device, noise(target.numel()).reshape(shape))
    row_time = (n.amax(dim=-1) * width + device.verify_read_s).reshape(-1)
    iterations = torch.ones_like(pulses).reshape(-1)

    # the correction rounds work on the unfinished cells only (flat indices), so a tile
    # whose last few cells need hundreds of rounds costs little
    flat_target, flat_G = target.reshape(-1), G.reshape(-1).clone()
    flat_pulses = pulses.reshape(-1).clone()
    row_of = torch.arange(flat_target.numel()) // shape[-1]

    def done(error: torch.Tensor) -> torch.Tensor:
        return (error.abs() <= tolerance) | (torch.round(error.abs() / step) == 0)

    active = torch.nonzero(~done(flat_target - flat_G)).reshape(-1)
    tell = on_cells or (lambda count: None)
    tell(flat_target.numel() - active.numel())
    for _ in range(device.verify_max_iterations):
        if active.numel() == 0:
            break
        unfinished = active.numel()
        error = flat_target[active] - flat_G[active]
        k = torch.round(error.abs() / step)                   # >= 1 for an unfinished cell
        sigma = torch.where(error > 0, sigma_pot, sigma_dep)
        moved = flat_G[active] + torch.sign(error) * k * step \
            + sigma * c2c_spread(k, device.c2c_model) * noise(active.numel())
        flat_G[active] = moved.clamp(device.g_min_us, device.g_max_us)
        flat_pulses[active] += k.to(torch.int64)
        iterations[active] += 1
        # each row with unfinished cells: its largest correction and one more verify read
        row_ids = row_of[active]
        row_max = torch.zeros_like(row_time).scatter_reduce(0, row_ids, k, reduce="amax")
        row_reads = torch.zeros_like(row_time).index_fill_(0, row_ids, device.verify_read_s)
        row_time = row_time + row_max * width + row_reads
        active = active[~done(flat_target[active] - flat_G[active])]
        tell(unfinished - active.numel())
    tell(active.numel())  # given up: no more rounds
    finished = torch.ones(flat_target.numel(), dtype=torch.bool)
    finished[active] = False
    G, pulses = flat_G.reshape(shape), flat_pulses.reshape(shape)
    iterations, finished = iterations.reshape(shape), finished.reshape(shape)
    row_time = row_time.reshape(rows)
    return VerifyResult(conductance_us=G, pulses=pulses, iterations=iterations,
                        row_time_s=row_time, converged=finished)
