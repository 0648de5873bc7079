"""A tiny detector family and tiny configs of the zoo's families, shared by the
training, checkpoint and inspect tests."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mimoc.detectors import FAMILIES
from mimoc.detectors.base import DetectorConfig, DetectorModule
from mimoc.errors import UsageError


@dataclass
class TinyConfig(DetectorConfig):
    """A matched filter followed by an MLP.

    Attributes:
        hidden: hidden units of the MLP.
        gain: initial output gain.
        use_gate: multiply by a learnable per-stream gate computed from H (slot-rate work).
        widths: extra hidden widths (tuple, exercises tuple flags).
    """

    nt: int = 2
    nr: int = 4
    hidden: int = 8
    gain: float = 1.0
    use_gate: bool = True
    widths: tuple[int, ...] = ()

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.hidden, int) or self.hidden < 1:
            raise UsageError(f"hidden must be a positive integer, got {self.hidden!r}")


class TinyDetector(DetectorModule):
    """x_hat = gain * MLP(H^T y) (* gate(H))."""

    family = "tiny"
    Config = TinyConfig

    def __init__(self, config: TinyConfig):
        super().__init__(config)
        k, n = 2 * config.nt, 2 * config.nr
        sizes = [k, config.hidden, *config.widths, k]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.mlp = nn.Sequential(*layers)
        self.gain = nn.Parameter(torch.tensor(float(config.gain)))
        self.gate = nn.Linear(n * k, k) if config.use_gate else None
        self.register_buffer("calls", torch.zeros((), dtype=torch.int64))

    def forward(self, H: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = self.gain * self.mlp(y @ H)
        if self.gate is not None:
            x = x * torch.sigmoid(self.gate(H.flatten(1)))[:, None, :]
        return x

    def training_loss(self, batch) -> torch.Tensor:
        return (self(batch.H_est, batch.y) - batch.x).square().mean()


#: Small configs of every family of the zoo (fast to build, train and count).
TINY_CONFIGS = {
    "detnet": dict(nt=2, nr=4, modulation="qpsk", layers=3, hidden=16, v_dim=4),
    "wesnet": dict(nt=2, nr=4, modulation="qpsk", layers=3, hidden=16, v_dim=4,
                   l1_lambda=0.01),
    "sdnet": dict(nt=2, nr=4, modulation="qpsk", nconv=1, channels=2),
    "remimo": dict(nt=3, nr=4, modulation="qpsk", nt_min=2, d_model=8, heads=2, ff=16,
                   predictor_hidden=8, embed_hidden=16, iterations=2),
}

#: Training links per family (SDNet is trained on LS-estimated CSI).
TINY_CSI = {"sdnet": "ls:4@10"}


def zoo_families() -> list[str]:
    """Every registered family, with a clear failure if one has no tiny config here."""
    return sorted(FAMILIES)


def tiny_config(family: str) -> dict:
    if family not in TINY_CONFIGS:
        raise AssertionError(f"add a tiny config for family {family!r} to tests/tiny_detector.py")
    return dict(TINY_CONFIGS[family])
