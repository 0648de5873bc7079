"""``mimoc quantize``: writes a quantized checkpoint, one-line summary, bad input -> 2."""


import pytest
import torch
from json_docs import curves_by_name, parse_output

from mimoc.cli import main
from mimoc.detectors import save_detector
from mimoc.detectors.training import TrainOptions, TrainReport
from mimoc.quant import load_quantized

from .conftest import tiny


@pytest.fixture
def model_file(tmp_path):
    model = tiny("detnet")
    # a tiny training link so calibration and validation stay fast
    report = TrainReport(steps=1, seconds=0.0, final_loss=0.0, val_ser=None,
                         options=TrainOptions(batch=16, snr_db=(0.0, 8.0), val_batch=32))
    return save_detector(model, tmp_path / "m.pt", training=report)


def test_quantize_writes_a_checkpoint_and_one_line(model_file, tmp_path, capsys):
    out = tmp_path / "q.pt"
    assert main(["quantize", str(model_file), "--method", "minmax", "--bits", "3",
                 "-o", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and line.startswith("minmax W3A3: 5 layers, no training")
    assert "validation SER" in line
    model, recipe = load_quantized(out)
    assert recipe.method == "minmax" and recipe.bits == 3


def test_quantize_trains_with_json(model_file, tmp_path, capsys):
    out = tmp_path / "k.pt"
    assert main(["quantize", str(model_file), "--method", "kaq", "--steps", "2",
                 "--lambda", "0.2", "--lambda-schedule", "cosine", "--seed", "1", "--json",
                 "-o", str(out)]) == 0
    data = parse_output("quantize", capsys.readouterr().out)
    assert data["method"] == "kaq" and data["steps"] == 2 and data["qat"]["lam"] == 0.2
    assert data["qat"]["lam_schedule"] == "cosine"
    assert data["layer_count"] == 5 and data["layers"]["blocks.0.fc2"]["act"]["signed"] is False
    # DetNet's block inputs are difference-coded by default: [H^T y - H^T H x, x, H^T H x, v]
    assert data["layers"]["blocks.1.fc1"]["difference"] == [0, 8, 4]
    assert data["layers"]["blocks.1.fc2"]["difference"] is None
    assert data["input_difference"] == ["blocks.0.fc1", "blocks.1.fc1"]
    _, recipe = load_quantized(out)
    assert torch.isfinite(recipe.layers["blocks.0.fc1"].weight_scale).all()


@pytest.mark.parametrize("argv,needle", [
    (["--method", "minmax", "--bits", "9"], "bits"),
    (["--method", "int8", "--bits", "4"], "int8"),
    (["--method", "minmax", "--steps", "5"], "does not train"),
    (["--method", "kaq", "--lambda", "nan"], "lambda"),
    (["--method", "lsq", "--lambda", "0.1"], "kaq only"),
    (["--method", "lsq", "--lambda-schedule", "cosine"], "kaq only"),
])
def test_bad_flags_exit_2(model_file, tmp_path, capsys, argv, needle):
    out = tmp_path / "x.pt"
    assert main(["quantize", str(model_file), *argv, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1
    assert not out.exists()


def test_bad_model_file_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    assert main(["quantize", str(bad), "--method", "minmax", "-o", str(tmp_path / "o.pt")]) == 2
    assert "not a torch checkpoint" in capsys.readouterr().err


def test_unknown_method_is_an_argparse_error(model_file, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main(["quantize", str(model_file), "--method", "gptq", "-o", str(tmp_path / "o.pt")])
    assert exit_.value.code == 2


def test_ber_runs_a_quantized_checkpoint_quantized(model_file, tmp_path, capsys):
    out = tmp_path / "q2.pt"
    assert main(["quantize", str(model_file), "--method", "minmax", "--bits", "2",
                 "--no-input-difference", "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["ber", "--detector", f"{model_file},{out}", "--nt", "2", "--nr", "4",
                 "--snr", "6", "--max-symbols", "4000", "--json"]) == 0
    curves = curves_by_name(parse_output("ber", capsys.readouterr().out))
    fp32, quantized = (curves[str(p)][0]["errors"] for p in (model_file, out))
    assert quantized > fp32  # 2-bit min-max costs errors: the recipe really runs


def test_resume_needs_a_quantized_checkpoint(model_file, tmp_path, capsys):
    assert main(["quantize", str(model_file), "--method", "kaq", "--resume", "--steps", "1",
                 "-o", str(tmp_path / "r.pt")]) == 2
    assert "--resume needs a quantized checkpoint" in capsys.readouterr().err


def test_resume_keeps_the_recipes_coding(model_file, tmp_path, capsys):
    first = tmp_path / "k1.pt"
    assert main(["quantize", str(model_file), "--method", "kaq", "--steps", "1",
                 "-o", str(first)]) == 0
    capsys.readouterr()
    assert main(["quantize", str(first), "--method", "kaq", "--resume", "--steps", "1",
                 "--no-input-difference", "-o", str(tmp_path / "k2.pt")]) == 2
    err = capsys.readouterr().err
    assert "--no-input-difference" in err and err.count("\n") == 1
    assert not (tmp_path / "k2.pt").exists()
