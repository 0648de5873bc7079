"""A MIMO link: draws transmitted bits, channels, noise and received vectors.

System model, in the real-valued form of docs/design.md section 2::

    y_r[b, s] = H_r[b] x_r[b, s] + n_r[b, s],   n_r ~ N(0, N0/2 I)

with ``H_r [B, 2Nr, 2Nt]`` constant over a slot of ``S`` symbols (block
fading), ``x_r [B, S, 2Nt]`` Gray-mapped unit-energy symbols and ``N0`` from
the SNR convention. The receiver is given ``H_est``, the channel estimate of
the CSI model (``H`` itself with perfect CSI).

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

    def __post_init__(self):
        for name in ("nt", "nr", "slot"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise UsageError(f"{name} must be a positive integer, got {value!r}")
        get_constellation(self.modulation)
        check_snr_def(self.snr_def)
        check_sizes = getattr(self.channel, "check_sizes", None)  # channels read from a file
        if check_sizes is not None:
            check_sizes(self.nr, self.nt)

    @property
    def constellation(self) -> Constellation:
        return get_constellation(self.modulation)

    def sample(self, batch: int, snr_db, generator: torch.Generator | None = None,
               dtype=torch.float32) -> LinkBatch:
        """Draw ``batch`` slots at ``snr_db`` (a float or a ``[batch]`` tensor)."""
        const = self.constellation
        complex_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
        H_c = self.channel.sample(batch, self.nr, self.nt, generator, complex_dtype)
        H = real_matrix(H_c).to(dtype)
        H_est = real_matrix(self.csi.estimate(H_c, generator)).to(dtype)
        indices = torch.randint(0, const.order, (batch, self.slot, self.nt), generator=generator)
        x = const.real_of_indices(indices, dtype)
        snr_db = torch.as_tensor(snr_db, dtype=torch.float64).expand(batch).clone()
        n0 = noise_variance(snr_db, self.snr_def, H, const.bits_per_symbol)
        noise = torch.randn((batch, self.slot, 2 * self.nr), generator=generator, dtype=dtype)
        y = x @ H.transpose(-1, -2) + noise * (n0 / 2).sqrt()[:, None, None]
        return LinkBatch(H, H_est, y, x, indices, n0, snr_db)
