"""examples/train_paper_detnet.py: staged checkpoints resume to the same weights."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from mimoc.detectors import load_checkpoint

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "train_paper_detnet.py"
ARGS = ["--only", "detnet-20x30-qpsk", "--steps", "4", "--stage-steps", "2", "--batch", "8"]


@pytest.fixture()
def script():
    spec = importlib.util.spec_from_file_location("train_paper_detnet", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_interrupted_run_resumes_to_the_same_weights(script, tmp_path, monkeypatch):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert script.main([*ARGS, "--out", str(whole)]) == 0

    save = script.save_detector
    calls = []

    def save_then_interrupt(*args, **kwargs):
        save(*args, **kwargs)
        calls.append(1)
        raise KeyboardInterrupt  # killed right after the first stage's checkpoint

    monkeypatch.setattr(script, "save_detector", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        script.main([*ARGS, "--out", str(cut)])
    monkeypatch.setattr(script, "save_detector", save)
    first = load_checkpoint(cut / "detnet_20x30_qpsk.pt")
    assert first.training["total_steps"] == 2
    assert script.main([*ARGS, "--out", str(cut), "--resume"]) == 0

    a = load_checkpoint(whole / "detnet_20x30_qpsk.pt")
    b = load_checkpoint(cut / "detnet_20x30_qpsk.pt")
    assert a.training["total_steps"] == b.training["total_steps"] == 4
    assert len(b.training["stages"]) == 2
    for (name, x), (_, y) in zip(a.model.state_dict().items(), b.model.state_dict().items(),
                                 strict=True):
        assert torch.equal(x, y), name


def test_cosine_segments_join(script):
    assert script.cosine_lr(1e-3, 0, 100) == pytest.approx(1e-3)
    assert script.cosine_lr(1e-3, 100, 100) == pytest.approx(1e-3 * script.LR_FINAL)
    assert script.cosine_lr(1e-3, 50, 100) == pytest.approx(1e-3 * (1 + script.LR_FINAL) / 2)
