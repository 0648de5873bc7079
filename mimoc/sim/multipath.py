"""Geometric multipath channel tasks: channels whose statistics differ by scenario.

The learngene paper trains over many ray-traced urban-microcell scenarios
(QuaDRiGa, 3GPP 38.901 UMi NLoS): in each *task* the user equipment sits in a
small area around a task-specific position, so its channels share angular and
power statistics that differ from task to task. Ray-traced data is not
available here, so mimoc draws tasks from a geometric (cluster) model that
keeps what matters for a detector — the spatial correlation and conditioning
of ``H`` — and lets it change between tasks.

Model. The base station has a uniform linear array of ``Nr`` antennas with
spacing ``d`` wavelengths (half a wavelength by default); the steering vector
at azimuth ``theta`` (0 = broadside) is
``a(theta)_n = exp(j 2 pi d n sin(theta))``, ``n = 0..Nr-1``. Each of the
``Nt`` transmit streams (users, or antennas of one user spread over the
scattering cluster) ``j`` gets, per channel draw,

- a mean angle ``phi_j = center + U(-width/2, width/2)`` (users fall anywhere
  in the task's cluster);
- ``P`` scattered paths with angles ``theta_jl = phi_j + spread * N(0, 1)``
  and gains ``g_jl ~ CN(0, p_l)``, where the power profile
  ``p_l ~ exp(-decay * l)`` is normalised so that ``sum_l p_l = 1``;
- optionally a line-of-sight path of Rician factor ``K`` with a uniform
  random phase ``psi_j``:

``h_j = sqrt(K/(K+1)) e^{j psi_j} a(phi_j) + sqrt(1/(K+1)) sum_l g_jl a(theta_jl)``.

Since ``|a(theta)_n| = 1`` and ``sum_l p_l = 1``, every entry has
``E|h_nj|^2 = 1`` exactly: the SNR conventions of :mod:`mimoc.sim.snr` hold
unchanged. What changes between tasks is the receive covariance
``R = E[h h^H]`` (its angular power spectrum, centred on the cluster, and its
eigenvalue spread: narrow clusters and few paths give low-rank, ill-conditioned
``H``, where zero forcing enhances the noise most).

Task registry. A task is a :class:`GeometricChannel` whose parameters are drawn
deterministically from its integer id (:func:`channel_task`): cluster centre in
[-60, 60] degrees, cluster width in [6, 50] degrees, per-path spread in
[2, 12] degrees, 3 to 16 paths, decay in [0, 0.6], and line of sight (K in
[0, 6] dB) for about a third of the tasks. :data:`TRAINING_TASKS` (ids
0..47) serve the sequential training of a collective model;
:data:`HELD_OUT_TASKS` (ids 1000..1004) are never used for it and serve as the
unseen target tasks. A task can be given as ``task:17`` (:func:`parse_task`).

Frozen tasks. A task redraws the users' angles and path gains every slot, so
its channels' conditioning spreads over decades. :class:`FrozenChannel` (made by
:func:`frozen_task`) repeats one draw of a task instead: a user that does not
move, the limit of the learngene paper's tasks (one UE inside a 5 m circle of a
fixed ray-traced scene, 8,100 channel samples reused for 200 epochs). SDNet
beats LMMSE only on such narrow tasks (benchmarks/sdnet_learngene.md, issue 22).

Example::

    >>> task = channel_task(3)
    >>> H = task.sample(64, nr=32, nt=8, generator=torch.Generator().manual_seed(0))
    >>> H.shape, H.dtype
    (torch.Size([64, 32, 8]), torch.complex64)
    >>> system = MIMOSystem(nt=8, nr=32, channel=task)   # duck-typed: only .sample() is used
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass

import torch

from mimoc.errors import UsageError
from mimoc.sim.gaussian import complex_normal

TRAINING_TASKS: tuple[int, ...] = tuple(range(48))
HELD_OUT_TASKS: tuple[int, ...] = tuple(range(1000, 1005))


@dataclass(frozen=True)
class GeometricChannel:
    """A clustered multipath channel seen by a uniform linear array (module docstring).

    Attributes:
        center_deg: the cluster's mean azimuth in degrees (0 = broadside).
        width_deg: users' mean angles are uniform in ``center +- width/2``.
        spread_deg: standard deviation of the path angles around a user's mean angle.
        paths: number of scattered paths per user.
        decay: exponential decay of the path power profile (0 = equal powers).
        k_factor_db: Rician factor of a line-of-sight path; ``-inf`` for none.
        spacing: antenna spacing in wavelengths.
        name: a label for reports (``task:ID`` for registry tasks).
    """

    center_deg: float = 0.0
    width_deg: float = 20.0
    spread_deg: float = 5.0
    paths: int = 8
    decay: float = 0.0
    k_factor_db: float = -math.inf
    spacing: float = 0.5
    name: str = "geometric"

    def __post_init__(self):
        if not isinstance(self.paths, int) or self.paths < 1:
            raise UsageError(f"a geometric channel needs at least one path, got {self.paths!r}")
        if not -90.0 <= self.center_deg <= 90.0:
            raise UsageError(f"cluster centre {self.center_deg} deg must lie in [-90, 90]")
        for field in ("width_deg", "spread_deg", "decay"):
            if getattr(self, field) < 0:
                raise UsageError(f"{field} must be non-negative, got {getattr(self, field)}")
        if self.spacing <= 0:
            raise UsageError(f"antenna spacing must be positive, got {self.spacing}")

    @property
    def spec(self) -> str:
        if self.name.startswith("task:"):
            return self.name
        return (f"geometric:center={self.center_deg:g},width={self.width_deg:g},"
                f"spread={self.spread_deg:g},paths={self.paths},decay={self.decay:g},"
                f"k={self.k_factor_db:g}")

    def path_powers(self) -> torch.Tensor:
        """Mean path powers ``p_l`` ``[P]`` (float64), summing to 1."""
        p = torch.exp(-self.decay * torch.arange(self.paths, dtype=torch.float64))
        return p / p.sum()

    def sample(self, batch: int, nr: int, nt: int, generator: torch.Generator | None = None,
               dtype=torch.complex64) -> torch.Tensor:
        """Draw ``batch`` channels, complex ``[batch, Nr, Nt]`` with unit-power entries."""
        real = torch.float64
        deg = math.pi / 180.0
        u = torch.rand((batch, 1, nt), generator=generator, dtype=real)
        mean_angle = (self.center_deg + (u - 0.5) * self.width_deg) * deg      # [B, 1, Nt]
        offsets = torch.randn((batch, self.paths, nt), generator=generator, dtype=real)
        angles = mean_angle + self.spread_deg * deg * offsets                  # [B, P, Nt]
        gains = complex_normal((batch, self.paths, nt), generator, torch.complex128)
        gains = gains * self.path_powers().sqrt()[None, :, None]
        n = torch.arange(nr, dtype=real)[None, :, None, None]                  # [1, Nr, 1, 1]
        steering = torch.polar(torch.ones((), dtype=real),
                               2 * math.pi * self.spacing * n * torch.sin(angles)[:, None])
        H = (steering * gains[:, None]).sum(dim=2)                             # [B, Nr, Nt]
        if self.k_factor_db > -math.inf:
            k = 10.0 ** (self.k_factor_db / 10.0)
            phase = 2 * math.pi * torch.rand((batch, 1, nt), generator=generator, dtype=real)
            los = torch.polar(torch.ones((), dtype=real),
                              2 * math.pi * self.spacing * n[..., 0] * torch.sin(mean_angle)
                              + phase)
            H = math.sqrt(k / (k + 1)) * los + math.sqrt(1 / (k + 1)) * H
        return H.to(dtype)


def channel_task(task_id: int) -> GeometricChannel:
    """The registry task ``task_id``: parameters drawn deterministically from the id."""
    if not isinstance(task_id, int) or task_id < 0:
        raise UsageError(f"a channel task id is a non-negative integer, got {task_id!r}")
    rng = random.Random(f"mimoc-channel-task-{task_id}")  # stable across Python versions
    center = rng.uniform(-60.0, 60.0)
    width = rng.uniform(6.0, 50.0)
    spread = rng.uniform(2.0, 12.0)
    paths = rng.randint(3, 16)
    decay = rng.uniform(0.0, 0.6)
    k_db = rng.uniform(0.0, 6.0) if rng.random() < 1 / 3 else -math.inf
    return GeometricChannel(round(center, 2), round(width, 2), round(spread, 2), paths,
                            round(decay, 3), round(k_db, 2) if k_db > -math.inf else k_db,
                            name=f"task:{task_id}")


def parse_task(spec: str) -> GeometricChannel:
    """``task:17`` -> :func:`channel_task` (17)."""
    kind, _, arg = spec.strip().lower().partition(":")
    if kind != "task" or not arg.strip().isdigit():
        raise UsageError(f"malformed channel task {spec!r}; use task:ID with an integer ID, "
                         f"e.g. task:{HELD_OUT_TASKS[0]}")
    return channel_task(int(arg))


@dataclass(frozen=True)
class FrozenChannel:
    """One channel of ``task``, returned for every slot (module docstring).

    The channel is the draw with the median weakest singular value among
    ``candidates`` draws from a generator seeded with ``seed``: a typical channel
    of the task, not a lucky or a hopeless one.
    """

    task: GeometricChannel
    seed: int = 123
    candidates: int = 512

    def __post_init__(self):
        if not isinstance(self.candidates, int) or self.candidates < 1:
            raise UsageError(f"a frozen channel needs at least one candidate draw, "
                             f"got {self.candidates!r}")

    @property
    def spec(self) -> str:
        return f"{self.task.spec}/frozen"

    def channel(self, nr: int, nt: int) -> torch.Tensor:
        """The frozen channel, complex128 ``[Nr, Nt]`` (computed once per size)."""
        return _frozen_draw(self, nr, nt).clone()

    def sample(self, batch: int, nr: int, nt: int, generator: torch.Generator | None = None,
               dtype=torch.complex64) -> torch.Tensor:
        """``batch`` copies of :meth:`channel` (``generator`` is not used: nothing is drawn)."""
        return _frozen_draw(self, nr, nt).expand(batch, nr, nt).to(dtype, copy=True)


@functools.lru_cache(maxsize=16)
def _frozen_draw(frozen: FrozenChannel, nr: int, nt: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(frozen.seed)
    draws = frozen.task.sample(frozen.candidates, nr, nt, generator, torch.complex128)
    weakest = torch.linalg.svdvals(draws)[:, -1]
    return draws[weakest.argsort()[frozen.candidates // 2]]


def frozen_task(task_id: int, seed: int = 123) -> FrozenChannel:
    """:class:`FrozenChannel` of the registry task ``task_id``."""
    return FrozenChannel(channel_task(task_id), seed)


def angular_spectrum(H: torch.Tensor, angles_deg: torch.Tensor, spacing: float = 0.5
                     ) -> torch.Tensor:
    """Mean angular power ``E |a(theta)^H h|^2 / Nr`` of channels ``[B, Nr, Nt]`` at the
    given angles ``[A]`` (a beam scan; used to compare tasks). Returns ``[A]``."""
    nr = H.shape[-2]
    n = torch.arange(nr, dtype=torch.float64)[:, None]
    theta = angles_deg.to(torch.float64) * math.pi / 180.0
    a = torch.polar(torch.ones((), dtype=torch.float64),
                    2 * math.pi * spacing * n * torch.sin(theta)[None, :])   # [Nr, A]
    beams = a.conj().T.to(H.dtype) @ H                                       # [B, A, Nt]
    return beams.abs().square().mean(dim=(0, 2)).real.to(torch.float64) / nr


def receive_covariance(H: torch.Tensor) -> torch.Tensor:
    """Sample receive covariance ``E[h h^H]`` ``[Nr, Nr]`` over draws and streams."""
    cols = H.transpose(-1, -2).reshape(-1, H.shape[-2]).to(torch.complex128)  # [B*Nt, Nr]
    return cols.T @ cols.conj() / cols.shape[0]
