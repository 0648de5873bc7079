"""SDNet: a convolutional denoiser of the zero-forcing estimate (learngene paper).

Model (Zhang et al., "Efficient Deployment of Deep MIMO Detection Using
Learngene", section III). The receiver knows an estimate ``H`` (LS from pilots
in the paper; whatever the CSI model gives in mimoc) and computes the ZF coarse
estimate once per slot and symbol::

    A = (H^T H)^-1 H^T            [2Nt, 2Nr]   (slot rate)
    x_zf = A y                    [2Nt]        (symbol rate)

Every symbol becomes one single-channel image of ``(2Nr + 1) x 2Nt`` pixels::

    row 0 .. 2Nr-1 : the rows of H      (depend on the channel only)
    row 2Nr        : x_zf^T             (the ZF row, last)

The network is ``Nconv + 2`` convolutions with 3x3 kernels and zero "same"
padding, each followed by BatchNorm and Tanh: ``convs.0`` maps 1 -> C channels,
``convs.1 .. convs.Nconv`` map C -> C (the paper's numbered layers 1..Nconv, the
candidates for the learngene), ``convs.{Nconv+1}`` maps C -> 1; then flatten
(row-major, ``(2Nr+1) * 2Nt`` features) and ``x_hat = s * tanh(W f + b)`` with
``s`` the largest PAM level of the constellation (so the output range is the
constellation's). ``C = 8`` in the paper. Loss: mean squared error to the
transmitted real symbols. ``norms.i`` is the BatchNorm after ``convs.i``.

For the compiler (docs/design.md section 3): ``pinv(H)`` is slot-rate. The ZF row is
the *last* row; a 3x3 conv widens the symbol-rate band by one row per layer, so
after conv layer ``i`` (0-based) rows ``2Nr - i - 1 .. 2Nr`` depend on ``y`` and
rows ``0 .. 2Nr - i - 2`` on ``H`` only (:meth:`SDNet.symbol_rows`). BatchNorm
stays an ``nn.BatchNorm2d`` so that canonicalize can fold it into the conv.

Shapes: ``forward(H [B, 2Nr, 2Nt], y [B, S, 2Nr]) -> x_hat [B, S, 2Nt]``; the
``B*S`` images of a batch share the ``H`` rows of their slot.

Example::

    >>> model = SDNet(SDNetConfig(nt=8, nr=32, modulation="qpsk", nconv=4))
    >>> model(torch.randn(2, 64, 16), torch.randn(2, 14, 64)).shape
    torch.Size([2, 14, 16])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mimoc.detectors.base import DetectorConfig, DetectorModule
from mimoc.errors import UsageError
from mimoc.sim.system import LinkBatch


@dataclass
class SDNetConfig(DetectorConfig):
    """SDNet sizes: ``nconv`` C->C conv layers between the input and output convs.

    Attributes:
        nconv: number of middle C -> C convolutions (the paper's ``Nconv``; 8 for its
            individual model, 12 for its collective model).
        channels: feature channels ``C`` of the hidden convolutions (8 in the paper).
    """

    nt: int = 8
    nr: int = 32
    nconv: int = 4
    channels: int = 8

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.nconv, int) or self.nconv < 0:
            raise UsageError(f"nconv must be a non-negative integer, got {self.nconv!r}")
        if not isinstance(self.channels, int) or self.channels < 1:
            raise UsageError(f"channels must be a positive integer, got {self.channels!r}")
        if self.nt > self.nr:
            raise UsageError(f"SDNet starts from zero forcing, which needs Nt <= Nr; "
                             f"got Nt={self.nt} > Nr={self.nr}")


class SDNet(DetectorModule):
    """ZF + estimated CSI -> conv stack -> FC (module docstring)."""

    family = "sdnet"
    Config = SDNetConfig

    def __init__(self, config: SDNetConfig):
        super().__init__(config)
        c = config.channels
        widths = [1] + [c] * (config.nconv + 1) + [1]
        self.convs = nn.ModuleList(nn.Conv2d(cin, cout, kernel_size=3, padding=1)
                                   for cin, cout in zip(widths[:-1], widths[1:], strict=True))
        self.norms = nn.ModuleList(nn.BatchNorm2d(cout) for cout in widths[1:])
        self.fc = nn.Linear(self.image_rows * 2 * config.nt, 2 * config.nt)
        self.output_scale = float(self.constellation.levels.abs().max())

    @property
    def image_rows(self) -> int:
        """Rows of the input image: the ``2Nr`` rows of ``H`` and the ZF row."""
        return 2 * self.config.nr + 1

    @property
    def middle_layers(self) -> list[str]:
        """Names of the C -> C convolutions ``convs.1 .. convs.Nconv`` (learngene candidates)."""
        return [f"convs.{i}" for i in range(1, self.config.nconv + 1)]

    def symbol_rows(self, layer: int) -> range:
        """Rows of conv layer ``layer``'s output (0-based) that depend on ``y``; the
        others depend on ``H`` only and can be computed once per slot."""
        last = self.image_rows - 1
        return range(max(0, last - layer - 1), last + 1)

    @staticmethod
    def zero_forcing(H: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """ZF estimate ``(H^T H)^-1 H^T y`` ``[B, S, 2Nt]``; the inverse is taken once per slot."""
        Ht = H.transpose(-1, -2)
        pinv = torch.linalg.inv(Ht @ H) @ Ht          # [B, 2Nt, 2Nr], slot rate
        return y @ pinv.transpose(-1, -2)

    def images(self, H: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Input images ``[B*S, 1, 2Nr+1, 2Nt]``: the rows of ``H``, then the ZF row."""
        x_zf = self.zero_forcing(H, y)                                  # [B, S, 2Nt]
        rows = H.unsqueeze(1).expand(-1, y.shape[1], -1, -1)            # [B, S, 2Nr, 2Nt]
        image = torch.cat([rows, x_zf.unsqueeze(2)], dim=2)             # [B, S, 2Nr+1, 2Nt]
        return image.reshape(-1, 1, image.shape[-2], image.shape[-1])

    def forward(self, H: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        z = self.images(H, y)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            z = torch.tanh(norm(conv(z)))
        x_hat = self.output_scale * torch.tanh(self.fc(z.flatten(1)))
        return x_hat.reshape(y.shape[0], y.shape[1], x_hat.shape[-1])

    def training_loss(self, batch: LinkBatch) -> torch.Tensor:
        """MSE between ``forward(H_est, y)`` and the transmitted real symbols."""
        return F.mse_loss(self(batch.H_est, batch.y), batch.x)
