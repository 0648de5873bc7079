"""A MIMO link: draws transmitted bits, channels, noise and received vectors.

System model, in the real-valued form of docs/design.md section 2::

    y_r[b, s] = H_r[b] x_r[b, s] + n_r[b, s],   n_r ~ N(0, N0/2 I)

with ``H_r [B, 2Nr, 2Nt]`` constant over a slot of ``S`` symbols (block
fading), ``x_r [B, S, 2Nt]`` Gray-mapped unit-energy symbols and ``N0`` from
the SNR convention. The receiver is given ``H_est``, the channel estimate of
the CSI model (``H`` itself with perfect CSI).

Real systems (``system="real"``, the DetNet and WeSNet papers' model)::

    y[b, s] = H[b] x[b, s] + n[b, s],   H [B, Nr, Nt] with N(0, 1) entries,
    x [B, S, Nt] real PAM symbols (BPSK: +-1) of unit energy,  n ~ N(0, N0/2 I)

Every SNR convention keeps its meaning per real dimension: ``N0/2`` is still the noise
variance of one real component, ``Es = 1`` per symbol, so ``per-stream`` is
``Es/N0 = 1/N0`` (BPSK over AWGN: ``Q(sqrt(2 Es/N0))``, as in the complex model),
``ebno`` is ``Eb/N0``, ``per-rx`` is the signal to noise power per receive dimension
(``Nt / (N0/2)``, so ``N0 = 2 Nt / SNR``) and ``detnet`` is the DetNet paper's
``(tr(H^T H) / K) / sigma^2`` with ``K = Nt`` real unknowns. ``H`` is drawn as
``sqrt(2) Re`` of the complex channel model, which for ``rayleigh`` and ``kronecker``
(real correlation matrices) is exactly the real model with unit-variance entries.

Example::

    >>> system = MIMOSystem(nt=4, nr=8, modulation="qpsk")
    >>> batch = system.sample(16, snr_db=10.0, generator=torch.Generator().manual_seed(0))
    >>> batch.y.shape
    torch.Size([16, 1, 16])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mimoc.errors import UsageError
from mimoc.sim.channels import ChannelModel, CSIModel, real_matrix
from mimoc.sim.modulation import Constellation, get_constellation
from mimoc.sim.snr import check_snr_def, noise_variance

#: The system choices: the complex link in its real form, or a real-valued link.
SYSTEMS = ("complex", "real")


@dataclass
class LinkBatch:
    """One batch of slots.

    Attributes:
        H: true real channels ``[B, 2Nr, 2Nt]``.
        H_est: the receiver's real channel estimate ``[B, 2Nr, 2Nt]``.
        y: received vectors ``[B, S, 2Nr]``.
        x: transmitted real symbols ``[B, S, 2Nt]``.
        indices: transmitted symbol indices ``[B, S, Nt]``.
        noise_var: complex noise variance ``N0`` per slot ``[B]``.
        snr_db: the SNR of each slot ``[B]`` under the system's convention.
    """

    H: torch.Tensor
    H_est: torch.Tensor
    y: torch.Tensor
    x: torch.Tensor
    indices: torch.Tensor
    noise_var: torch.Tensor
    snr_db: torch.Tensor


@dataclass(frozen=True)
class MIMOSystem:
    """An ``Nt x Nr`` link with a modulation, channel, CSI model and SNR convention."""

    nt: int
    nr: int
    modulation: str = "qpsk"
    channel: ChannelModel = field(default_factory=ChannelModel)
    csi: CSIModel = field(default_factory=CSIModel)
    snr_def: str = "per-stream"
    slot: int = 1
    system: str = "complex"

    def __post_init__(self):
        if self.system not in SYSTEMS:
            raise UsageError(f"unknown system {self.system!r}; choose one of {', '.join(SYSTEMS)}")
        for name in ("nt", "nr", "slot"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise UsageError(f"{name} must be a positive integer, got {value!r}")
        get_constellation(self.modulation, self.real)
        if self.real and not isinstance(self.channel, ChannelModel):
            raise UsageError("a real system draws rayleigh or kronecker channels only; "
                             "channels from a file or a task are complex")
        check_snr_def(self.snr_def)
        check_sizes = getattr(self.channel, "check_sizes", None)  # channels read from a file
        if check_sizes is not None:
            check_sizes(self.nr, self.nt)

    @property
    def real(self) -> bool:
        """Whether this is a real-valued system (``H [Nr, Nt]``, ``x [Nt]``)."""
        return self.system == "real"

    @property
    def dims(self) -> tuple[int, int]:
        """The detectors' real dimensions ``(rows, columns)`` of ``H``: ``(Nr, Nt)`` in a real
        system, ``(2Nr, 2Nt)`` otherwise."""
        scale = 1 if self.real else 2
        return scale * self.nr, scale * self.nt

    @property
    def constellation(self) -> Constellation:
        return get_constellation(self.modulation, self.real)

    def sample(self, batch: int, snr_db, generator: torch.Generator | None = None,
               dtype=torch.float32) -> LinkBatch:
        """Draw ``batch`` slots at ``snr_db`` (a float or a ``[batch]`` tensor)."""
        const = self.constellation
        complex_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
        H_c = self.channel.sample(batch, self.nr, self.nt, generator, complex_dtype)
        if self.real:  # sqrt(2) Re of CN(0, 1) entries is N(0, 1)
            H = (H_c.real * 2**0.5).to(dtype)
            H_est = (self.csi.estimate(H_c, generator).real * 2**0.5).to(dtype)
        else:
            H = real_matrix(H_c).to(dtype)
            H_est = real_matrix(self.csi.estimate(H_c, generator)).to(dtype)
        indices = torch.randint(0, const.order, (batch, self.slot, self.nt), generator=generator)
        x = const.real_of_indices(indices, dtype)
        snr_db = torch.as_tensor(snr_db, dtype=torch.float64).expand(batch).clone()
        n0 = noise_variance(snr_db, self.snr_def, H, const.bits_per_symbol,
                            real_system=self.real)
        noise = torch.randn((batch, self.slot, self.dims[0]), generator=generator, dtype=dtype)
        y = x @ H.transpose(-1, -2) + noise * (n0 / 2).sqrt()[:, None, None]
        return LinkBatch(H, H_est, y, x, indices, n0, snr_db)
