"""``mimoc.load`` and the commands that read artifacts accept both kinds, recognised by the
format their index file declares."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from json_docs import parse_output

import mimoc
from mimoc.cli import main
from mimoc.detectors import build_detector, save_detector
from mimoc.errors import ModelFileError
from mimoc.runtime.imc import IMCSchedule
from mimoc.runtime.onnx_runner import OnnxArtifact
from mimoc.targets import artifact_target


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    torch.manual_seed(0)
    model = build_detector("detnet", nt=2, nr=4, modulation="qpsk", layers=2, hidden=8,
                           v_dim=4).eval()
    root = tmp_path_factory.mktemp("load")
    save_detector(model, root / "detnet.pt")
    mimoc.compile(root / "detnet.pt", target="onnx", out=root / "onnx")
    mimoc.compile(root / "detnet.pt", target="crossbar", out=root / "xb", array=(8, 8),
                  mc_draws=2)
    return model, root


def test_load_dispatches_on_the_declared_format(artifacts):
    model, root = artifacts
    assert artifact_target(root / "onnx") == "onnx"
    assert artifact_target(root / "xb") == "crossbar"
    assert artifact_target(root / "detnet.pt") is None
    onnx, xb = mimoc.load(root / "onnx"), mimoc.load(root / "xb")
    assert isinstance(onnx, OnnxArtifact) and isinstance(xb, IMCSchedule)
    H = torch.randn(3, 8, 4, generator=torch.Generator().manual_seed(1)) / 2 ** 0.5
    y = torch.randn(3, 5, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        reference = model(H, y)
    assert torch.allclose(onnx.detect(H, y), reference, atol=1e-4)
    ideal = xb.detect(H, y, c2c=0.0, ideal=True, seed=0)
    assert ideal.shape == reference.shape and torch.isfinite(ideal).all()


def test_load_refuses_what_is_not_an_artifact(artifacts, tmp_path):
    _, root = artifacts
    for path, what in [(tmp_path / "missing", "no such directory"),
                       (root / "detnet.pt", "not a directory"),
                       (tmp_path, "no manifest.json or schedule.json")]:
        with pytest.raises(ModelFileError, match=what):
            mimoc.load(path)
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "manifest.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ModelFileError, match="is not a mimoc onnx artifact index"):
        mimoc.load(fake)


@pytest.mark.parametrize("kind, title", [("onnx", "mimoc ONNX artifact"),
                                         ("xb", "mimoc crossbar schedule")])
def test_inspect_shows_both_kinds(artifacts, capsys, kind, title):
    _, root = artifacts
    assert main(["inspect", str(root / kind)]) == 0
    assert title in capsys.readouterr().out
    assert main(["inspect", str(root / kind), "--json"]) == 0
    data = parse_output("inspect", capsys.readouterr().out)
    assert data["kind"] == ("onnx" if kind == "onnx" else "crossbar")
    assert data["artifact"]["model"]["family"] == "detnet"


def test_inspect_refuses_a_modified_onnx_file(artifacts, tmp_path, capsys):
    import shutil

    _, root = artifacts
    copy = tmp_path / "copy"
    shutil.copytree(root / "onnx", copy)
    with open(copy / "slot.onnx", "ab") as handle:
        handle.write(b"\0")
    assert main(["inspect", str(copy)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "modified after compiling" in err
    assert main(["inspect", str(copy), "--allow-modified"]) == 0


def test_bench_times_a_crossbar_artifact(artifacts, capsys):
    _, root = artifacts
    code = main(["bench", str(root / "xb"), "--batch", "2", "--slot", "7", "--min-time",
                 "0.01", "--json"])
    assert code == 0
    data = parse_output("bench", capsys.readouterr().out)
    modelled = data["modelled"]
    assert data["kind"] == "crossbar" and data["slot_symbols"] == 7
    assert modelled["per_slot_s"] == pytest.approx(
        modelled["programming_s_per_slot"] + modelled["slot_compute_s"]
        + 7 * modelled["symbol_s"])
    assert [row["batch"] for row in data["simulator"]] == [2]
    assert data["simulator"][0]["per_slot_s"] == pytest.approx(
        data["simulator"][0]["median_s"] / 2)


def test_detect_gives_max_log_llrs_on_request(artifacts):
    from mimoc.errors import UsageError
    from mimoc.sim.llr import decision_variance, hard_bits, maxlog_llr
    from mimoc.sim.modulation import get_constellation

    _, root = artifacts
    onnx, xb = mimoc.load(root / "onnx"), mimoc.load(root / "xb")
    qpsk = get_constellation("qpsk")
    H = torch.randn(3, 8, 4, generator=torch.Generator().manual_seed(1)) / 2 ** 0.5
    y = torch.randn(3, 5, 8, generator=torch.Generator().manual_seed(2))
    x_hat = onnx.detect(H, y)
    llr = onnx.detect(H, y, output="llr")
    assert llr.shape == (3, 5, 2, 2)
    assert torch.allclose(llr, maxlog_llr(x_hat, decision_variance(x_hat, qpsk), qpsk))
    assert torch.equal(hard_bits(llr), qpsk.bits_of_indices(qpsk.indices_of_real(x_hat)))
    given = onnx.detect(H.numpy(), y.numpy(), output="llr", error_var=0.25)
    assert isinstance(given, np.ndarray) and np.allclose(given, maxlog_llr(x_hat, 0.25, qpsk))
    soft = xb.detect(H, y, c2c=0.0, ideal=True, seed=0, output="llr", error_var=0.5)
    hard = xb.detect(H, y, c2c=0.0, ideal=True, seed=0)
    assert torch.allclose(soft, maxlog_llr(hard, 0.5, qpsk))
    with pytest.raises(UsageError, match="unknown output"):
        onnx.detect(H, y, output="bits")
