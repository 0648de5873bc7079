"""``mimoc budget``: reference processors, target names, and the JSON's internal consistency
(per slot = preparation + detection, the budget flag and margin match the numbers, processor
latencies equal FLOPs / (peak x utilisation), crossbar latencies equal the schedule's totals)."""

from __future__ import annotations

import json
import math

import pytest
import torch

import mimoc.api
from mimoc.cli import main
from mimoc.detectors import build_detector, save_detector
from mimoc.errors import MimocError
from mimoc.hardware.processors import (
    ProcessorError,
    list_processors,
    load_processor,
    processor_from_dict,
)
from mimoc.studies import budget
from mimoc.targets.onnx import read_manifest

CONFIG = dict(nt=2, nr=4, modulation="qpsk", layers=2, hidden=16, v_dim=4)
SER_SYMBOLS = 4000


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str) -> bool:
    return code == 2 and err.count("\n") == 1 and err.startswith("mimoc: error:")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_detector("detnet", **CONFIG).eval()
    path = tmp_path_factory.mktemp("model") / "detnet.pt"
    save_detector(model, path)
    return path


@pytest.fixture(scope="module")
def my_processor(tmp_path_factory):
    path = tmp_path_factory.mktemp("proc") / "half_dsp.json"
    path.write_text(json.dumps({"name": "half-dsp", "peak_gflops": 64, "utilisation": 0.5}))
    return path


@pytest.fixture(scope="module")
def budget_json(checkpoint, my_processor, tmp_path_factory):
    keep = tmp_path_factory.mktemp("budget") / "artifacts"
    targets = ["onnx-cpu", "dsp-c6678", "fpga-k7-480t", "jetson-orin-nx",
               f"proc:{my_processor}", "crossbar:ftj-luo2022", "onnx-cpu-w4"]
    result = budget.run_budget(checkpoint, targets, slot=7, budget_s=50e-6, snr_db=6.0,
                               ser_symbols=SER_SYMBOLS, min_time=0.02, workdir=keep)
    # through JSON, as a script would read `mimoc budget --json`
    return json.loads(json.dumps(result.to_dict())), keep


# -- reference processors ------------------------------------------------------------------

def test_shipped_processors_are_the_design_notes_three():
    assert list_processors() == ["dsp-c6678", "fpga-k7-480t", "jetson-orin-nx"]
    peaks = {name: load_processor(name).peak_gflops for name in list_processors()}
    assert peaks == {"dsp-c6678": 128.0, "fpga-k7-480t": 1800.0, "jetson-orin-nx": 1880.0}
    assert all(load_processor(name).utilisation == 1.0 for name in list_processors())
    assert load_processor("dsp-c6678").seconds(128e9) == pytest.approx(1.0)


def test_a_user_processor_file_defaults_its_name_and_utilisation(tmp_path):
    path = tmp_path / "board.json"
    path.write_text('{"peak_gflops": 10}')
    proc = load_processor(str(path))
    assert (proc.name, proc.peak_gflops, proc.utilisation) == ("board", 10.0, 1.0)
    assert proc.seconds(5e9) == pytest.approx(0.5)


@pytest.mark.parametrize("data, field", [
    ({"peak_gflops": 10, "clock": 1}, "clock"),
    ({"peak_gflops": -1}, "peak_gflops"),
    ({"peak_gflops": float("nan")}, "peak_gflops"),
    ({"peak_gflops": "fast"}, "peak_gflops"),
    ({"peak_gflops": True}, "peak_gflops"),
    ({}, "peak_gflops"),
    ({"peak_gflops": 10, "utilisation": 0}, "utilisation"),
    ({"peak_gflops": 10, "utilisation": 1.5}, "utilisation"),
    ({"peak_gflops": 10, "name": "two words"}, "name"),
    ({"peak_gflops": 10, "title": 3}, "title"),
    ({"peak_gflops": 10, "format": "mimoc-device"}, "format"),
])
def test_nonsense_processor_is_refused_naming_the_field(data, field):
    with pytest.raises(ProcessorError, match=f"'{field}'") as info:
        processor_from_dict(data, where="p.json", default_name="p")
    assert "\n" not in str(info.value) and isinstance(info.value, MimocError)


def test_unreadable_processor_files_are_one_line_errors(tmp_path, capsys, checkpoint):
    bad = tmp_path / "bad.json"
    bad.write_text("{peak: 1")
    for spec in (f"proc:{bad}", f"proc:{tmp_path / 'missing.json'}", "proc:", "tpu-v9"):
        code, out, err = cli(capsys, "budget", str(checkpoint), "--targets", spec)
        assert one_line_error(code, err), (spec, err)
        assert out == ""
    with pytest.raises(ProcessorError, match="not valid JSON"):
        load_processor(str(bad))


# -- target names ----------------------------------------------------------------------------

def test_target_names_parse():
    specs = budget.parse_targets("onnx-cpu,onnx-cpu-w4,onnx-cpu-int8:int8,crossbar:rram-zeng2023,"
                                 "crossbar,dsp-c6678")
    assert [(s.kind, s.lowering, s.quant, s.device) for s in specs] == [
        ("onnx-cpu", None, None, None), ("onnx-cpu", "w4", None, None),
        ("onnx-cpu", "int8", "int8", None), ("crossbar", None, None, "rram-zeng2023"),
        ("crossbar", None, None, "ftj-luo2022"), ("processor", None, None, None)]
    assert specs[-1].processor.peak_gflops == 128.0
    assert [s.name for s in budget.parse_targets(None)] == list(budget.DEFAULT_TARGETS)


@pytest.mark.parametrize("text", ["", "onnx-cpu,,dsp-c6678", "onnx-cpu,onnx-cpu", "gpu",
                                  "onnx-cpu-w3", "onnx-cpu:fast"])
def test_bad_target_lists_are_refused(text):
    with pytest.raises(MimocError):
        budget.parse_targets(text)


@pytest.mark.parametrize("argv", [
    ["--budget-us", "0"], ["--budget-us", "inf"], ["--ser-symbols", "-1"], ["--slot", "0"],
    ["--array", "128"], ["--array", "0x4"], ["--threads", "0"], ["--plot", "budget.svg"],
    ["--snr", "nan"],
])
def test_bad_flags_are_one_line_errors(capsys, checkpoint, argv):
    code, out, err = cli(capsys, "budget", str(checkpoint), "--targets", "dsp-c6678", *argv)
    assert one_line_error(code, err), err
    assert out == ""


def test_a_file_that_is_not_a_checkpoint_is_refused(capsys, tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("not a model")
    code, out, err = cli(capsys, "budget", str(path), "--targets", "dsp-c6678")
    assert one_line_error(code, err) and out == ""


# -- the JSON: internal consistency ----------------------------------------------------------

def _available(data):
    return {row["target"]: row for row in data["targets"] if row["available"]}


def test_every_row_adds_up_and_its_verdict_matches(budget_json):
    data, _ = budget_json
    rows = _available(data)
    assert {"onnx-cpu", "dsp-c6678", "fpga-k7-480t", "jetson-orin-nx"} <= set(rows)
    assert data["slot_symbols"] == 7 and data["budget_s"] == pytest.approx(50e-6)
    for row in rows.values():
        assert row["per_slot_s"] == pytest.approx(row["preparation_s"] + row["detection_s"],
                                                  rel=1e-12)
        assert row["per_symbol_s"] == pytest.approx(row["detection_s"] / 7, rel=1e-12)
        assert row["meets_budget"] == (row["per_slot_s"] <= row["budget_s"])
        assert row["margin_s"] == pytest.approx(row["budget_s"] - row["per_slot_s"], rel=1e-9)
        assert row["headroom"] == pytest.approx(row["budget_s"] / row["per_slot_s"], rel=1e-9)
        assert row["vectors_per_s"] == pytest.approx(7 / row["per_slot_s"], rel=1e-9)
        assert row["bits_per_s"] == pytest.approx(row["vectors_per_s"] * 2 * 2, rel=1e-9)
        assert row["latency_source"] in data["sources"]
        assert all(math.isfinite(row[k]) and row[k] >= 0
                   for k in ("preparation_s", "detection_s"))


def test_processor_latency_is_compiler_flops_over_peak(budget_json, checkpoint, tmp_path):
    data, keep = budget_json
    rows = _available(data)
    flops = read_manifest(keep / "onnx-cpu")["flops"]  # the compiler's count, default passes
    compiled = mimoc.api.compile(checkpoint, out=None).manifest["flops"]
    assert (flops["slot_rate"], flops["per_symbol"]) == (compiled["slot_rate"],
                                                         compiled["per_symbol"])
    for name, rate in [("dsp-c6678", 128e9), ("fpga-k7-480t", 1.8e12),
                       ("jetson-orin-nx", 1.88e12), ("half-dsp", 64e9 * 0.5)]:
        row = next(r for r in rows.values()
                   if r["kind"] == "processor" and r["details"]["processor"]["name"] == name)
        assert row["latency_source"] == "flops"
        assert row["preparation_s"] == pytest.approx(flops["slot_rate"] / rate, rel=1e-12)
        assert row["detection_s"] == pytest.approx(7 * flops["per_symbol"] / rate, rel=1e-12)
        assert row["details"]["utilisation"] == (0.5 if name == "half-dsp" else 1.0)


def test_onnx_cpu_is_measured_and_its_ser_matches_the_digital_model(budget_json):
    data, _ = budget_json
    rows = _available(data)
    onnx = rows["onnx-cpu"]
    assert onnx["latency_source"] == "measured"
    assert onnx["details"]["batch"] == 1 and onnx["details"]["runs"]["symbol"] >= 7
    assert "median" in onnx["latency_how"] and "onnxruntime" in onnx["latency_how"]
    # Same draws for every target; the processors share the digital model's point.
    processors = [r for r in rows.values() if r["kind"] == "processor"]
    assert all(r["ser"] == processors[0]["ser"] for r in processors)
    digital, compiled = processors[0]["ser"], onnx["ser"]
    assert digital["symbols"] == compiled["symbols"] >= SER_SYMBOLS // 2
    assert digital["snr_db"] == 6.0
    # The compiled artifact decides like the PyTorch model (float32 ties aside).
    assert abs(digital["errors"] - compiled["errors"]) <= 2


def test_crossbar_numbers_are_the_schedules_totals(budget_json):
    data, keep = budget_json
    row = _available(data)["crossbar:ftj-luo2022"]
    totals = json.loads((keep / "crossbar-ftj-luo2022" / "schedule.json").read_text())["totals"]
    assert row["latency_source"] == "schedule"
    assert totals["slot_symbols"] == 7
    assert row["preparation_s"] == pytest.approx(
        totals["programming_s_per_slot"] + totals.get("slot_compute_s", 0.0), rel=1e-12)
    assert row["detection_s"] == pytest.approx(7 * totals["symbol_s"], rel=1e-12)
    assert row["per_slot_s"] == pytest.approx(totals["per_slot_s"], rel=1e-9)
    assert row["ser"]["symbols"] == _available(data)["onnx-cpu"]["ser"]["symbols"]


def test_w4_is_measured_on_its_own_artifact(budget_json):
    data, keep = budget_json
    row = _available(data)["onnx-cpu-w4"]
    assert row["latency_source"] == "measured"
    manifest = read_manifest(next(keep.glob("onnx-cpu-w4*")))
    assert manifest["lowering"] != "fp32"


# -- defaults, text and plot -------------------------------------------------------------------

def test_default_targets_run_with_a_plot(checkpoint, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(budget.target_names, "DEFAULT_TARGETS", ("dsp-c6678",))
    plot = tmp_path / "budget.png"
    code, out, err = cli(capsys, "budget", str(checkpoint), "--ser-symbols", "0", "--plot",
                         str(plot))
    assert code == 0, err
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("target"))
    assert lines[header + 1].startswith("-----")
    assert lines[header + 2].startswith("dsp-c6678") and "flops" in lines[header + 2]
    assert "SER at" not in out  # --ser-symbols 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"plot written to {plot}" in out


def test_text_output_states_sources_and_the_verdict(checkpoint, capsys):
    code, out, err = cli(capsys, "budget", str(checkpoint), "--targets", "dsp-c6678,onnx-cpu",
                         "--budget-us", "1e6", "--ser-symbols", "2000", "--min-time", "0.02")
    assert code == 0, err
    assert out.count("meets,") == 2 and "misses" not in out
    assert "SER at 10 dB" in out  # untrained checkpoint: no training range, 10 dB
    assert "dsp-c6678: compiler FLOPs" in out and "onnx-cpu: fp32 artifact, onnxruntime" in out


def test_a_target_that_fails_on_the_model_is_a_row_and_exit_status_1(checkpoint, capsys,
                                                                       monkeypatch):
    def refuse(spec, ctx):
        raise MimocError("this processor cannot run DetNet")

    monkeypatch.setitem(budget.PREPARERS, "processor", refuse)
    code, out, err = cli(capsys, "budget", str(checkpoint), "--targets", "onnx-cpu,dsp-c6678",
                         "--ser-symbols", "1000", "--min-time", "0.02", "--json")
    assert code == 1 and "dsp-c6678 failed" in err and err.count("\n") == 1
    rows = {row["target"]: row for row in json.loads(out)["targets"]}
    assert rows["onnx-cpu"]["available"] and rows["onnx-cpu"]["ser"] is not None
    assert rows["dsp-c6678"] == {"target": "dsp-c6678", "kind": "processor",
                                 "available": False, "failed": True,
                                 "reason": "failed: this processor cannot run DetNet"}


def test_a_quantized_checkpoint_is_budgeted_with_its_own_recipe(tmp_path, capsys):
    quant = pytest.importorskip("mimoc.quant")
    if not hasattr(quant, "save_quantized"):
        pytest.skip("quantized checkpoints are not in this build yet")
    torch.manual_seed(0)
    model = build_detector("detnet", **CONFIG).eval()
    recipe = quant.quantize(model, "minmax")
    path = tmp_path / "detnet_q.pt"
    quant.save_quantized(model, recipe, path)
    data = _json(capsys, str(path), "--targets", "onnx-cpu-w4,dsp-c6678", "--ser-symbols", "2000",
                 "--snr", "8")
    rows = _available(data)
    assert "the checkpoint recipe" in rows["onnx-cpu-w4"]["ser_source"]
    assert rows["onnx-cpu-w4"]["latency_how"].startswith("w4 artifact")
    # the digital model of a quantized checkpoint is its fake-quantized PyTorch module
    assert rows["dsp-c6678"]["ser"]["symbols"] == rows["onnx-cpu-w4"]["ser"]["symbols"]


def _json(capsys, *argv):
    code, out, err = cli(capsys, "budget", *argv, "--min-time", "0.02", "--json")
    assert code == 0, err
    return json.loads(out)
