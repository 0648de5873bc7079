"""Tiny detectors of every family for the quantization tests."""

import pytest
import torch

from mimoc.detectors import build_detector
from mimoc.detectors.training import TrainOptions

TINY = {
    "detnet": dict(nt=2, nr=4, layers=2, hidden=16, v_dim=4),
    "wesnet": dict(nt=2, nr=4, layers=2, hidden=16, v_dim=4, profile="half-exp", retained=0.5),
    "sdnet": dict(nt=2, nr=4, nconv=1, channels=3),
    "remimo": dict(nt=3, nt_min=2, nr=4, modulation="qpsk", d_model=8, heads=2, ff=8,
                   predictor_hidden=8, embed_hidden=8, iterations=2, te_dim=2),
}


def tiny(family: str):
    with torch.random.fork_rng():
        torch.manual_seed(3)
        return build_detector(family, **TINY[family]).eval()


@pytest.fixture
def options() -> TrainOptions:
    return TrainOptions(steps=10, batch=16, snr_db=(0.0, 10.0), val_batch=64)
