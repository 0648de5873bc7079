"""``mimoc report``: an atomic report directory whose Markdown shows the figures it holds and
whose numbers are the budget's and the simulator's."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch
from json_docs import curves_by_name

from mimoc.cli import main
from mimoc.detectors import build_detector, save_detector
from mimoc.studies import budget
from mimoc.validation import validate_output

CONFIG = dict(nt=2, nr=4, modulation="qpsk", layers=2, hidden=16, v_dim=4)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_detector("detnet", **CONFIG).eval()
    path = tmp_path_factory.mktemp("model") / "detnet.pt"
    save_detector(model, path, training={"snr_db": [0.0, 10.0], "steps": 1})
    return path


@pytest.fixture(scope="module")
def report_run(checkpoint, tmp_path_factory):
    """The report directory and what ``--json`` printed."""
    out = tmp_path_factory.mktemp("report") / "report"
    targets = "onnx,dsp-c6678,crossbar:ftj-luo2022"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["report", str(checkpoint), "-o", str(out), "--target", targets,
                     "--snr", "0,8", "--c2c", "0,0.04", "--max-symbols", "2000",
                     "--min-time", "0.02", "--baseline", "mmse,zf", "--json"])
    assert code == 0
    return out, printed.getvalue()


@pytest.fixture(scope="module")
def report_dir(report_run):
    return report_run[0]


def test_report_json_is_report_json_with_its_envelope(report_run):
    out, printed = report_run
    shown = validate_output("report", json.loads(printed))
    saved = validate_output("report", json.loads((out / "report.json").read_text()))
    assert shown == saved and shown["schema"] == "mimoc-report/1"
    assert shown["command"][:3] == ["mimoc", "report", saved["model"]["path"]]


def test_report_holds_markdown_figures_and_numbers(report_dir):
    names = {p.name for p in report_dir.iterdir()}
    assert {"report.md", "report.json", "ber.png", "budget.png"} <= names
    for name in names - {"report.md", "report.json"}:
        assert (report_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (report_dir / "report.md").read_text()
    for section in ("## Model", "## Error rates", "## Latency budget and verdict",
                    "## Compile settings"):
        assert section in text
    # Every figure the Markdown links is in the directory, and every figure is linked.
    linked = {line.rpartition("(")[2].rstrip(")") for line in text.splitlines()
              if line.startswith("![")}
    assert linked == names - {"report.md", "report.json"}


def test_report_numbers_match_the_budget_and_curves(report_dir):
    data = validate_output("report", json.loads((report_dir / "report.json").read_text()))
    assert data["model"]["params"] > 0 and data["model"]["nt"] == 2
    curves = curves_by_name(data["ber"])
    assert "original (PyTorch)" in curves and "onnx" in curves
    kinds = {c["detector"]["name"]: c["detector"]["kind"] for c in data["ber"]["curves"]}
    assert kinds["original (PyTorch)"] == "model" and kinds["onnx"] == "artifact"
    assert [p["snr_db"] for p in curves["onnx"]] == [0.0, 8.0]
    rows = {row["target"]: row for row in data["budget"]["targets"]}
    for row in rows.values():
        assert row["per_slot_s"] == pytest.approx(row["preparation_s"] + row["detection_s"])
        assert row["verdict"] in ("meets", "misses", "unknown")
    text = (report_dir / "report.md").read_text()
    prep = budget.format_us(rows["dsp-c6678"]["preparation_s"])
    cells = markdown_rows(text)
    dsp = next(row for row in cells if row[:2] == ["dsp-c6678", "flops"])
    assert dsp[2] == f">= {prep}" and rows["dsp-c6678"]["verdict"] in dsp
    assert '"lowering": "fp32"' in text  # the compile settings of onnx
    # the budget's accuracy ran on the report's symbol budget, every target on the same slots
    assert data["budget"]["ser_symbols"] == 2000
    assert data["budget"]["target_ser"] == 1e-3 and data["budget"]["max_loss_db"] == 0.5


def test_report_flags_reach_the_budget(checkpoint, tmp_path):
    out = tmp_path / "report"
    code = main(["report", str(checkpoint), "-o", str(out), "--target", "dsp-c6678",
                 "--snr", "0,8", "--c2c", "0", "--max-symbols", "1000", "--subcarriers",
                 "3276", "--max-loss-db", "1", "--target-ser", "0.01", "--percentile", "99"])
    assert code == 0
    data = json.loads((out / "report.json").read_text())["budget"]
    assert data["workload"]["channels"] == 273 and data["max_loss_db"] == 1.0
    assert data["target_ser"] == 0.01 and data["percentile"] == 99.0
    assert "3,276 subcarriers per slot" in (out / "report.md").read_text()


def test_baselines_are_curves_on_the_same_draws(report_dir):
    data = json.loads((report_dir / "report.json").read_text())
    curves = curves_by_name(data["ber"])
    assert data["baseline"] == ["mmse", "zf"]
    assert {"mmse", "zf"} <= set(curves)
    for name in ("mmse", "zf"):  # same SNR grid and symbol budget as the model's curve
        assert [p["snr_db"] for p in curves[name]] == [0.0, 8.0]
        assert [p["symbols"] for p in curves[name]] == \
            [p["symbols"] for p in curves["original (PyTorch)"]]
    text = (report_dir / "report.md").read_text()
    assert "Classical baselines: mmse, zf." in text
    assert any(row[:2] == ["zf", "0"] for row in markdown_rows(text))


@pytest.mark.parametrize(("baseline", "message"), [("mmse,nope", "unknown detector"),
                                                   ("mmse,", "empty item")])
def test_bad_baseline_is_one_line_before_any_work(checkpoint, tmp_path, capsys, baseline,
                                                  message):
    out = tmp_path / "report"
    code = main(["report", str(checkpoint), "-o", str(out), "--baseline", baseline])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and message in err
    assert not out.exists()


def test_crossbar_curves_sweep_the_c2c_levels(report_dir):
    data = json.loads((report_dir / "report.json").read_text())
    sweep = data["crossbar_c2c"]["crossbar:ftj-luo2022"]["curves"]
    assert [c["detector"]["name"] for c in sweep] == ["original (PyTorch)", "C2C 0%", "C2C 4%"]
    assert [c["detector"].get("c2c") for c in sweep] == [None, 0.0, 0.04]
    assert (report_dir / "crossbar_ftj-luo2022_c2c.png").is_file()
    assert any(name.startswith("crossbar:ftj-luo2022 (C2C")
               for name in curves_by_name(data["ber"]))


def test_report_output_is_atomic_and_guarded(checkpoint, report_dir, tmp_path, capsys):
    # An existing report is not overwritten without --force; nothing is printed.
    code = main(["report", str(checkpoint), "-o", str(report_dir), "--target", "dsp-c6678"])
    out, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and "--force" in err and out == ""
    # A failure part-way (a bad target) leaves no directory behind.
    target = tmp_path / "never"
    code = main(["report", str(checkpoint), "-o", str(target), "--target", "nope"])
    assert code == 2 and not target.exists()
    for argv in (["--c2c", "2"], ["--c2c", "x"], ["--snr", "0:-1:4"], ["--max-symbols", "0"],
                 ["--percentile", "100"], ["--subcarriers", "0"], ["--target-ser", "2"]):
        code = main(["report", str(checkpoint), "-o", str(target), *argv])
        assert code == 2 and not target.exists(), argv


def markdown_rows(text: str) -> list[list[str]]:
    """The cells of every row of every Markdown table in ``text`` (padding stripped)."""
    return [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in text.splitlines() if line.startswith("|")]
