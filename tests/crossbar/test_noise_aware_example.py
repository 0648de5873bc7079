"""The shipped noise-aware DetNet: same architecture as the example DetNet, trained noise-aware."""

from __future__ import annotations

from pathlib import Path

import torch

from mimoc.detectors import load_checkpoint

MODELS = Path(__file__).resolve().parents[2] / "examples" / "models"


def test_noise_aware_checkpoint_matches_the_example_detnet():
    standard = load_checkpoint(MODELS / "detnet_8x16_qpsk.pt")
    aware = load_checkpoint(MODELS / "detnet_8x16_qpsk_noiseaware.pt")
    assert aware.family == standard.family == "detnet"
    assert aware.model.config == standard.model.config
    info = aware.training["noise_aware"]
    assert info["c2c"] == 0.02 and info["states"] == 150 and info["c2c_dist"] == "uniform"
    stages = aware.training["stages"]
    assert len(stages) == 2 and stages[0]["options"]["c2c"] == 0.0
    # fine-tuned: the weights moved away from the digital model's
    a, b = standard.model.state_dict(), aware.model.state_dict()
    assert a.keys() == b.keys()
    assert any(not torch.equal(a[k], b[k]) for k in a)
    # and it still detects: at high SNR without noise every symbol of a small batch is right
    gen = torch.Generator().manual_seed(0)
    H = torch.randn(64, 32, 16, generator=gen) / 2 ** 0.5
    x = (torch.randint(0, 2, (64, 1, 16), generator=gen) * 2 - 1) / 2 ** 0.5
    y = x @ H.transpose(-1, -2) + 0.01 * torch.randn(64, 1, 32, generator=gen)
    with torch.no_grad():
        x_hat = aware.model(H, y)
    assert torch.equal(torch.sign(x_hat), torch.sign(x))
