"""FLOP counting, ``mimoc train`` and ``mimoc inspect``."""

from __future__ import annotations

import pytest
import torch
from json_docs import parse_output
from tiny_detector import TinyConfig, TinyDetector, tiny_config, zoo_families
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mimoc import cli
from mimoc.detectors import FAMILIES, build_detector, load_checkpoint, save_detector
from mimoc.detectors.base import DetectorConfig, DetectorModule
from mimoc.detectors.flops import EXTRA_FORMULAS, count_flops


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def tiny_family(monkeypatch):
    monkeypatch.setitem(FAMILIES, "tiny", TinyDetector)


# -- FLOP counter against hand counts ------------------------------------------------------

def test_mlp_flops_match_hand_count():
    config = TinyConfig(nt=3, nr=5, hidden=7, widths=(4,), use_gate=False)
    k, n = 6, 10
    report = count_flops(TinyDetector(config))
    matched_filter = 2 * n * k            # y @ H per symbol
    mlp = 2 * (k * 7 + 7 * 4 + 4 * k)     # 2 x MACs, biases not counted
    assert report.flops_per_symbol == matched_filter + mlp
    assert report.flops_slot_rate == 0
    assert report.flops_per_slot == 14 * (matched_filter + mlp)
    assert report.params == (k * 7 + 7) + (7 * 4 + 4) + (4 * k + k) + 1
    rows = {row.name: row for row in report.layers}
    assert rows["mlp.0"].flops_per_symbol == 2 * k * 7 and rows["mlp.0"].params == k * 7 + 7
    assert rows["(top)"].flops_per_symbol == matched_filter and rows["(top)"].params == 1


def test_slot_rate_work_is_split_from_symbol_work():
    config = TinyConfig(nt=2, nr=4, hidden=8, use_gate=True)
    k, n = 4, 8
    report = count_flops(TinyDetector(config))
    gate = 2 * (n * k) * k                # Linear on the flattened H, once per slot
    assert report.flops_slot_rate == gate
    assert report.flops_per_symbol == 2 * n * k + 2 * (k * 8 + 8 * k)
    assert report.flops_per_slot == gate + 14 * report.flops_per_symbol
    assert sum(r.flops_per_slot for r in report.layers) == report.flops_per_slot
    assert sum(r.params for r in report.layers) == report.params


class _LinearAlgebra(DetectorModule):
    """ZF by the normal equations, a solve and a pinv: formulas FlopCounterMode lacks."""

    family = "la"
    Config = DetectorConfig

    def __init__(self, config):
        super().__init__(config)
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, H, y):
        G = H.transpose(-1, -2) @ H                        # slot: 2 n k^2
        W = torch.linalg.inv(G) @ H.transpose(-1, -2)      # slot: 2 k^3 + 2 k^2 n
        x = y @ W.transpose(-1, -2)                        # symbol: 2 k n
        x = x + torch.linalg.solve(G, x.transpose(-1, -2)).transpose(-1, -2)  # LU + S rhs
        v = torch.mv(H[0].transpose(0, 1), y[0, 0])       # first symbol only: same for all S
        return self.scale * x + 0 * torch.linalg.pinv(H)[..., :1, :1] + 0 * v.sum()


def test_linear_algebra_formulas():
    k, n = 4, 6
    report = count_flops(_LinearAlgebra(DetectorConfig(nt=2, nr=3)))
    slot = 2 * n * k * k + 2 * k**3 + 2 * k * k * n + (4 * n * k * k + 2 * k**3)  # + pinv
    lu = round(2 * k**3 / 3)
    # flops(S) = slot + lu + S * (2 k n + 2 k^2) + 2 n k (mv on the first symbol only)
    assert report.flops_slot_rate == slot + lu + 2 * n * k
    assert report.flops_per_symbol == 2 * k * n + 2 * k * k
    assert report.uncounted == []


def test_uncounted_matrix_ops_are_named():
    class SVD(_LinearAlgebra):
        def forward(self, H, y):
            return self.scale * y @ torch.linalg.svd(H).U[..., :, : H.shape[-1]]

    report = count_flops(SVD(DetectorConfig(nt=2, nr=3)))
    assert any("svd" in op for op in report.uncounted)


@pytest.mark.parametrize("family", zoo_families())
def test_every_family_is_fully_counted(family):
    model = build_detector(family, **tiny_config(family))
    report = count_flops(model)
    assert report.flops_per_symbol > 0 and report.flops_slot_rate >= 0
    assert report.uncounted == [], f"add FLOP formulas for {report.uncounted}"
    assert sum(r.flops_per_slot for r in report.layers) == report.flops_per_slot
    assert sum(r.params for r in report.layers) == report.params
    assert report.params == sum(p.numel() for p in model.parameters())
    assert model.training  # counting does not change the module's mode

    # the totals agree with torch's own counter using the same formulas
    model.eval()
    totals = []
    for symbols in (1, 2):
        H = torch.randn(1, 2 * model.config.nr, 2 * model.config.nt)
        y = torch.randn(1, symbols, 2 * model.config.nr)
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=EXTRA_FORMULAS) as c:
            model(H, y)
        totals.append(c.get_total_flops())
    assert report.flops_per_symbol == totals[1] - totals[0]
    assert report.flops_slot_rate == 2 * totals[0] - totals[1]


# -- mimoc train -----------------------------------------------------------------------------

def _main(argv):
    """``mimoc`` exit status, whether the parser or the command reports the error."""
    try:
        return cli.main(argv)
    except SystemExit as exit:
        return exit.code


def _train(tmp_path, *extra):
    path = tmp_path / "tiny.pt"
    argv = ["train", "tiny", "--nt", "2", "--nr", "4", "--steps", "20", "--slot", "1",
            "--batch", "32", "--val-every", "10", "--val-batch", "64", "--snr-train", "5:15",
            "--seed", "3", "-o", str(path), *extra]
    return path, _main(argv)


def test_train_writes_a_loadable_checkpoint(tmp_path, capsys, tiny_family):
    path, status = _train(tmp_path, "--hidden", "5", "--widths", "3,3", "--no-use-gate",
                          "--gain", "0.5")
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "20 steps" in out and "validation SER" in out and "final loss" in out
    ckpt = load_checkpoint(path)
    assert ckpt.family == "tiny" and ckpt.config == TinyConfig(
        nt=2, nr=4, hidden=5, widths=(3, 3), use_gate=False, gain=0.5)
    assert ckpt.training["snr_db"] == [5.0, 15.0] and ckpt.training["seed"] == 3
    assert ckpt.training["steps"] == 20 and 0 <= ckpt.training["val_ser"] <= 1
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.pt"]


def test_train_json_summary_and_seed_determinism(tmp_path, capsys, tiny_family):
    _, status = _train(tmp_path, "--json")
    first = parse_output("train", capsys.readouterr().out)
    _, status = _train(tmp_path, "--json", "--force")  # the same -o again: --force
    second = parse_output("train", capsys.readouterr().out)
    assert status == 0
    for key in ("family", "steps", "seconds", "final_loss", "val_ser", "params", "config",
                "output", "history"):
        assert key in first
    assert first["family"] == "tiny" and first["steps"] == 20
    assert first["final_loss"] == second["final_loss"] and first["val_ser"] == second["val_ser"]


def test_train_help_lists_config_fields_with_defaults(capsys, tiny_family):
    with pytest.raises(SystemExit):
        cli.main(["train", "tiny", "--help"])
    out = capsys.readouterr().out
    for text in ("--hidden INT", "hidden units of the MLP (default: 8)", "--gain FLOAT",
                 "--use-gate, --no-use-gate", "--widths INT,...", "--snr-train LO:HI"):
        assert text in out, text


@pytest.mark.parametrize("argv,expected", [
    (["--hidden", "x"], "argument --hidden: expects INT, got 'x'"),
    (["--use-gate", "3"], "unrecognized arguments"),
    (["--hidden", "0"], "hidden must be a positive integer"),
    (["--snr-train", "9:3"], "malformed --snr-train"),
    (["--mod", "8psk"], "unknown modulation"),
    (["--c2c", "-1"], "c2c"),
])
def test_train_usage_errors_are_one_line(tmp_path, capsys, tiny_family, argv, expected):
    _, status = _train(tmp_path, *argv)
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and expected in err
    assert not (tmp_path / "tiny.pt").exists()


def test_train_refuses_a_missing_output_folder(tmp_path, capsys, tiny_family):
    status = cli.main(["train", "tiny", "--steps", "1", "-o", str(tmp_path / "no" / "m.pt")])
    assert status == 2 and "does not exist" in capsys.readouterr().err


# -- mimoc inspect ---------------------------------------------------------------------------

def test_inspect_json_fields(tmp_path, capsys, tiny_family):
    path, _ = _train(tmp_path)
    capsys.readouterr()
    assert cli.main(["inspect", str(path), "--json"]) == 0
    data = parse_output("inspect", capsys.readouterr().out)
    assert (data["kind"], data["path"]) == ("checkpoint", str(path))
    info = data["checkpoint"]
    report = count_flops(load_checkpoint(path).model)
    assert info["family"] == "tiny" and (info["nt"], info["nr"]) == (2, 4)
    assert info["modulation"] == "qpsk" and info["config"]["hidden"] == 8
    assert info["params"] == report.params
    assert info["flops_per_symbol"] == report.flops_per_symbol
    assert info["flops_per_slot"] == report.flops_per_slot
    assert {row["name"] for row in info["layers"]} == {"(top)", "mlp.0", "mlp.2", "gate"}
    assert set(info["layers"][0]) == {"name", "type", "params", "flops_per_symbol",
                                      "flops_slot_rate", "flops_per_slot"}
    assert info["training"]["steps"] == 20 and info["training"]["history_points"] >= 2
    assert "history" not in info["training"]


def test_inspect_text(tmp_path, capsys, tiny_family):
    path, _ = _train(tmp_path)
    capsys.readouterr()
    assert cli.main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "mimoc tiny detector" in out and "Nt=2 x Nr=4, qpsk" in out
    assert "per symbol vector" in out and "per slot of 14 symbols" in out
    assert "mlp.0" in out and "Linear" in out and "val. SER" in out and "total" in out


def test_inspect_untrained_family_checkpoint(tmp_path, capsys):
    family = zoo_families()[0]
    path = save_detector(build_detector(family, **tiny_config(family)), tmp_path / "m.pt")
    assert cli.main(["inspect", str(path), "--json"]) == 0
    info = parse_output("inspect", capsys.readouterr().out)["checkpoint"]
    assert info["family"] == family and info["training"] == {}
    assert cli.main(["inspect", str(path)]) == 0
    assert "none recorded" in capsys.readouterr().out


def test_inspect_refuses_a_folder(tmp_path, capsys):
    assert cli.main(["inspect", str(tmp_path)]) == 2
    assert "cannot inspect" in capsys.readouterr().err
