"""Detectors written for the compiler tests, independently of the zoo.

They follow the interface ``forward(H [B, 2Nr, 2Nt], y [B, S, 2Nr]) -> x_hat [B, S, 2Nt]``
and use only ops the frontend supports, written the "naive" way a researcher would:

- :class:`UnfoldedDetector`: DetNet-like unfolding that recomputes ``H^T``, ``H^T y`` and
  ``H^T H x = (x H^T) H`` inside every block, so split-channel has work to de-duplicate
  and an ``H^T H`` product to hoist;
- :class:`ConvDetector`: SDNet-like: a zero-forcing estimate by ``linalg.solve``, an
  image of ``H`` rows plus the ZF row per symbol, two 3x3 conv + BatchNorm + tanh layers,
  flatten, a fully connected head.
"""

from __future__ import annotations

import torch
from torch import nn


class UnfoldedBlock(nn.Module):
    def __init__(self, n: int, v_dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(3 * n + v_dim, hidden)
        self.fc_x = nn.Linear(hidden, n)
        self.fc_v = nn.Linear(hidden, v_dim)
        self.t = nn.Parameter(torch.tensor(0.7))

    def forward(self, H, y, x, v):
        Ht = H.transpose(1, 2)
        hty = torch.matmul(y, H)                    # H^T y per symbol, as rows
        hthx = torch.matmul(torch.matmul(x, Ht), H)  # H^T (H x)
        z = torch.relu(self.fc1(torch.cat([hty, x, hthx, v], dim=-1)))
        u = self.fc_x(z)
        t = self.t.abs()
        x_new = -1.0 + torch.relu(u + t) / t - torch.relu(u - t) / t
        return 0.2 * x_new + 0.8 * x, self.fc_v(z)


class UnfoldedDetector(nn.Module):
    def __init__(self, nt: int = 2, nr: int = 4, layers: int = 3, hidden: int = 16,
                 v_dim: int = 4):
        super().__init__()
        self.n, self.v_dim = 2 * nt, v_dim
        self.blocks = nn.ModuleList(UnfoldedBlock(2 * nt, v_dim, hidden) for _ in range(layers))

    def forward(self, H, y):
        x = y.new_zeros(y.shape[0], y.shape[1], self.n)
        v = y.new_zeros(y.shape[0], y.shape[1], self.v_dim)
        for block in self.blocks:
            x, v = block(H, y, x, v)
        return x


class ConvDetector(nn.Module):
    def __init__(self, nt: int = 2, nr: int = 4, channels: int = 4):
        super().__init__()
        self.nt, self.nr = nt, nr
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, 1, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(1)
        self.head = nn.Linear((2 * nr + 1) * 2 * nt, 2 * nt)
        gen = torch.Generator().manual_seed(1)
        for bn in (self.bn1, self.bn2):  # non-trivial statistics, so folding is tested
            bn.running_mean.copy_(0.3 * torch.randn(bn.num_features, generator=gen))
            bn.running_var.copy_(0.5 + torch.rand(bn.num_features, generator=gen))
            bn.weight.data.copy_(1.0 + 0.2 * torch.randn(bn.num_features, generator=gen))
            bn.bias.data.copy_(0.1 * torch.randn(bn.num_features, generator=gen))

    def forward(self, H, y):
        B, S = y.shape[0], y.shape[1]
        gram = H.transpose(-1, -2) @ H
        zf = torch.linalg.solve(gram, (y @ H).transpose(-1, -2)).transpose(-1, -2)  # [B,S,2Nt]
        rows = H.unsqueeze(1).expand(B, S, 2 * self.nr, 2 * self.nt)
        image = torch.cat([rows, zf.unsqueeze(2)], dim=2).reshape(B * S, 1, 2 * self.nr + 1,
                                                                  2 * self.nt)
        a = torch.tanh(self.bn1(self.conv1(image)))
        a = torch.tanh(self.bn2(self.conv2(a)))
        out = torch.tanh(self.head(a.flatten(1)))
        return out.reshape(B, S, 2 * self.nt)


def random_link(nt: int, nr: int, batch: int = 3, slot: int = 5, seed: int = 0,
                dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """A real-valued Rayleigh channel and noisy QPSK observations ``(H, y)``."""
    gen = torch.Generator().manual_seed(seed)
    Hc = torch.complex(torch.randn(batch, nr, nt, generator=gen),
                       torch.randn(batch, nr, nt, generator=gen)) / 2 ** 0.5
    H = torch.cat([torch.cat([Hc.real, -Hc.imag], -1), torch.cat([Hc.imag, Hc.real], -1)], -2)
    x = (torch.randint(0, 2, (batch, slot, 2 * nt), generator=gen) * 2 - 1) / 2 ** 0.5
    y = x @ H.transpose(-1, -2) + 0.1 * torch.randn(batch, slot, 2 * nr, generator=gen)
    return H.to(dtype), y.to(dtype)
