"""examples/train_paper_detnet.py: staged checkpoints resume to the same weights."""

from __future__ import annotations

import pytest
import torch
from script_loader import ROOT, loaded_script

from mimoc.detectors import DetNet, DetNetConfig, load_checkpoint, save_detector

SCRIPT = ROOT / "examples" / "train_paper_detnet.py"
ARGS = ["--only", "detnet-20x30-qpsk", "--steps", "4", "--stage-steps", "2", "--batch", "8"]


@pytest.fixture()
def script():
    with loaded_script(SCRIPT, "train_paper_detnet") as module:
        yield module


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


@pytest.mark.slow
def test_training_curve_compares_checkpoints_with_the_authors(script, tmp_path, capsys):
    """benchmarks/detnet_paper.py --part curve: one row per checkpoint, one ratio to the
    authors' BER per SNR; checkpoints of different systems are refused."""
    with loaded_script(ROOT / "benchmarks" / "detnet_paper.py", "detnet_paper") as bench:
        check_curve(script, bench, tmp_path, capsys)


def check_curve(script, bench, tmp_path, capsys) -> None:
    for steps in (2, 4):
        out = tmp_path / str(steps)
        assert script.main([*ARGS[:2], "--steps", str(steps), "--stage-steps", "2",
                            "--batch", "8", "--out", str(out)]) == 0
    paths = [str(tmp_path / s / "detnet_20x30_qpsk.pt") for s in ("2", "4")]
    capsys.readouterr()
    assert bench.main(["--part", "curve", "--symbols", "2000", "--min-errors", "5",
                       "--checkpoints", *paths]) == 0
    text = capsys.readouterr().out
    rows = [line for line in text.splitlines() if "steps (" in line]
    assert [row.split()[0] for row in rows] == ["2", "4"]
    assert all(row.count("x [") == len(bench.CURVE_SNRS) for row in rows)

    other = tmp_path / "bpsk.pt"
    save_detector(DetNet(DetNetConfig(**script.BPSK_30X60)), other)
    with pytest.raises(SystemExit, match="one model's checkpoints"):
        bench.main(["--part", "curve", "--checkpoints", paths[0], str(other)])
    small = tmp_path / "small.pt"  # a system the authors published no BER for
    save_detector(DetNet(DetNetConfig(nt=4, nr=8, modulation="qpsk", layers=2)), small)
    with pytest.raises(SystemExit, match="no published BER"):
        bench.main(["--part", "curve", "--checkpoints", str(small), str(small)])
