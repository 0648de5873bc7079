"""``mimoc compile --quant/--lowering``: quantized artifacts from the command line, the bad
combinations as one-line errors (exit 2), and ``mimoc ber`` / ``mimoc bench`` on a
quantized artifact (with the session options its manifest asks for)."""

from __future__ import annotations

import json

import pytest
import torch
from json_docs import parse_output

from mimoc import quant
from mimoc.cli import main
from mimoc.detectors import build_detector, save_detector
from mimoc.runtime import load_artifact

CONFIG = dict(nt=2, nr=4, modulation="qpsk", layers=2, hidden=16, v_dim=4)


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_detector("detnet", **CONFIG).eval()
    path = tmp_path_factory.mktemp("model") / "detnet.pt"
    save_detector(model, path)
    return model, path


@pytest.mark.parametrize("flags, words", [
    (["--lowering", "w4"], "--lowering needs a quantized model"),
    (["--bits", "4"], "--bits needs a quantized model"),
    (["--quant", "int8", "--lowering", "w4"], "int8 recipe lowers with --lowering int8"),
    (["--quant", "minmax", "--bits", "8", "--lowering", "w4"], "at most 4-bit weights"),
    (["--quant", "kaq"], "run 'mimoc quantize"),
    (["--quant", "minmax", "--bits", "9"], "--bits must be an integer in 2..8"),
])
def test_bad_combinations_are_one_line_errors(capsys, checkpoint, tmp_path, flags, words):
    _, path = checkpoint
    code, out, err = cli(capsys, "compile", str(path), "-o", str(tmp_path / "a"), *flags)
    assert code == 2 and err.count("\n") == 1 and words in err, err
    assert not (tmp_path / "a").exists()


def test_compile_quant_minmax_then_ber_and_bench(capsys, checkpoint, tmp_path):
    model, path = checkpoint
    art = tmp_path / "w4"
    code, out, err = cli(capsys, "compile", str(path), "-o", str(art), "--quant", "minmax",
                         "--lowering", "w4", "--json")
    assert code == 0, err
    manifest = parse_output("compile", out)["artifact"]
    assert manifest["lowering"] == "w4" and manifest["quantization"]["method"] == "minmax"
    quantized = [ly for ly in manifest["layers"] if ly["lowering"] == "w4"]
    assert {ly["scope"] for ly in quantized} == {"blocks.0.fc1", "blocks.0.fc2", "blocks.0.fc3",
                                                 "blocks.1.fc1", "blocks.1.fc2"}
    assert all("MatMulNBits" in ly["quantized"]["weights"] for ly in quantized)
    code, out, err = cli(capsys, "ber", str(art), "--snr", "10", "--max-symbols", "2000",
                         "--no-progress", "--json")
    assert code == 0, err
    code, out, err = cli(capsys, "bench", str(art), "--batch", "1", "--min-time", "0.01",
                         "--json")
    assert code == 0, err
    assert parse_output("bench", out)["timings"]


def test_int8_artifact_applies_its_session_options(capsys, checkpoint, tmp_path):
    _, path = checkpoint
    art = tmp_path / "int8"
    code, out, err = cli(capsys, "compile", str(path), "-o", str(art), "--quant", "int8",
                         "--lowering", "int8")
    assert code == 0, err
    assert "lowering int8" in out
    manifest = json.loads((art / "manifest.json").read_text())
    assert manifest["session_config"] == {"session.x64quantprecision": "1"}
    loaded = load_artifact(art)
    from mimoc.runtime.onnx_runner import config_entries

    assert loaded.session_config == config_entries(manifest["session_config"])
    H = torch.randn(2, 8, 4)
    y = torch.randn(2, 3, 8)
    assert loaded.detect(H, y).shape == (2, 3, 4)


def test_quantized_checkpoint_compiles_with_its_recipe(capsys, checkpoint, tmp_path):
    model, _ = checkpoint
    recipe = quant.quantize(model, "minmax", bits=4)
    saved = tmp_path / "detnet_q.pt"
    quant.save_quantized(model, recipe, saved)
    code, out, err = cli(capsys, "compile", str(saved), "-o", str(tmp_path / "a"),
                         "--lowering", "w4a4", "--json")
    assert code == 0, err
    manifest = parse_output("compile", out)["artifact"]
    assert manifest["lowering"] == "w4a4" and manifest["quantization"]["method"] == "minmax"
    code, out, err = cli(capsys, "compile", str(saved), "-o", str(tmp_path / "b"),
                         "--quant", "lsq")
    assert code == 2 and "already quantized with minmax" in err
