"""``mimoc budget``: reference processors, target names, the JSON's internal consistency
(per slot = preparation + detection, processor latencies equal FLOPs / (peak x utilisation),
crossbar latencies come from the schedule and its channel draws), the receiver workload, the
joint verdict's fields and the model's own (task) channel."""

from __future__ import annotations

import json
import math

import pytest
import torch
from json_docs import parse_output

import mimoc.api
from mimoc import quant
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
QUICK = dict(min_time=0.01, calls=300)
QUICK_FLAGS = ("--min-time", "0.01", "--calls", "300")


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
    targets = ["onnx", "dsp-c6678", "fpga-k7-480t", "jetson-orin-nx",
               f"proc:{my_processor}", "crossbar:ftj-luo2022", "onnx-w4", "mmse"]
    result = budget.run_budget(checkpoint, targets, slot=7, budget_s=50e-6, snr_db=6.0,
                               ser_symbols=SER_SYMBOLS, workdir=keep, **QUICK)
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
        code, out, err = cli(capsys, "budget", str(checkpoint), "--target", spec)
        assert one_line_error(code, err), (spec, err)
        assert out == ""
    with pytest.raises(ProcessorError, match="not valid JSON"):
        load_processor(str(bad))


# -- target names ----------------------------------------------------------------------------

def test_target_names_parse():
    specs = budget.parse_targets("onnx-cpu,onnx-cpu-w4,onnx-cpu-int8:int8,crossbar:rram-zeng2023,"
                                 "crossbar,dsp-c6678,mmse")
    assert [(s.kind, s.lowering, s.quant, s.device) for s in specs] == [
        ("onnx-cpu", None, None, None), ("onnx-cpu", "w4", None, None),
        ("onnx-cpu", "int8", "int8", None), ("crossbar", None, None, "rram-zeng2023"),
        ("crossbar", None, None, "ftj-luo2022"), ("processor", None, None, None),
        ("classical", None, None, None)]
    assert specs[-2].processor.peak_gflops == 128.0
    assert [s.name for s in budget.parse_targets(None)] == list(budget.DEFAULT_TARGETS)
    assert "mmse" in budget.DEFAULT_TARGETS


@pytest.mark.parametrize("text", ["", "onnx-cpu,,dsp-c6678", "onnx-cpu,onnx-cpu", "gpu",
                                  "onnx-cpu-w3", "onnx-cpu:fast", "mmse:4"])
def test_bad_target_lists_are_refused(text):
    with pytest.raises(MimocError):
        budget.parse_targets(text)


@pytest.mark.parametrize("argv", [
    ["--budget-us", "0"], ["--budget-us", "inf"], ["--max-symbols", "-1"], ["--slot", "0"],
    ["--array", "0x4"], ["--array", "1x"], ["--threads", "0"], ["--plot", "budget.jpg"],
    ["--snr", "nan"], ["--target-ser", "0"], ["--target-ser", "1"], ["--max-loss-db", "-1"],
    ["--percentile", "100"], ["--percentile", "20"], ["--subcarriers", "0"],
    ["--subcarriers-per-channel", "0"], ["--calls", "0"], ["--max-time", "0"],
    ["--channel", "task:x"], ["--csi", "psychic"],
])
def test_bad_flags_are_one_line_errors(capsys, checkpoint, argv):
    code, out, err = cli(capsys, "budget", str(checkpoint), "--target", "dsp-c6678", *argv)
    assert one_line_error(code, err), err
    assert out == ""


def test_a_file_that_is_not_a_checkpoint_is_refused(capsys, tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("not a model")
    code, out, err = cli(capsys, "budget", str(path), "--target", "dsp-c6678")
    assert one_line_error(code, err) and out == ""


# -- the JSON: internal consistency ----------------------------------------------------------

def _available(data):
    return {row["target"]: row for row in data["targets"] if row["available"]}


ROW_FIELDS = {"target", "source", "latency_us", "snr_loss_db", "snr_loss_ci_db", "verdict",
              "misses", "verdict_reason", "subcarriers_per_slot", "covers_workload", "tail",
              "latency_percentile", "latency_is_lower_bound", "accuracy_within"}


def test_json_has_the_verdict_fields(budget_json):
    data, _ = budget_json
    assert {"budget_us", "max_loss_db", "target_ser", "percentile", "workload", "link",
            "accuracy"} <= set(data)
    assert data["budget_us"] == pytest.approx(50) and data["max_loss_db"] == 0.5
    assert data["target_ser"] == 1e-3 and data["percentile"] == 99.9
    assert data["workload"] == {"subcarriers": 1, "subcarriers_per_channel": 12,
                                "slot_symbols": 7, "channels": 1, "symbols_per_channel": 7,
                                "vectors": 7}
    assert data["accuracy"]["grid_db"] == [6.0 + o for o in
                                           budget.accuracy.grid_offsets(0.5)]
    for row in _available(data).values():
        assert ROW_FIELDS <= set(row), ROW_FIELDS - set(row)
        assert row["verdict"] in ("meets", "misses", "unknown")
        assert row["latency_us"] == pytest.approx(
            1e6 * (row["per_slot_s"] if row["tail"] is None else row["tail"]["p99.9_s"]))
        # an untrained model never reaches SER 1e-3: the accuracy is unknown, said so
        assert row["accuracy_within"] is None and "fp32 model" in row["verdict_reason"]
        assert row["verdict"] == ("misses" if row["latency_us"] > 50 else "unknown")
    assert not any(row["verdict"] == "meets" for row in data["targets"]
                   if row.get("source") == "flops")


def test_every_row_adds_up(budget_json):
    data, _ = budget_json
    rows = _available(data)
    assert {"onnx", "dsp-c6678", "fpga-k7-480t", "jetson-orin-nx", "mmse"} <= set(rows)
    assert data["slot_symbols"] == 7 and data["budget_s"] == pytest.approx(50e-6)
    for row in rows.values():
        assert row["per_slot_s"] == pytest.approx(row["preparation_s"] + row["detection_s"],
                                                  rel=1e-12)
        assert row["per_symbol_s"] == pytest.approx(row["detection_s"] / 7, rel=1e-12)
        latency = row["latency_us"] * 1e-6
        assert row["margin_s"] == pytest.approx(row["budget_s"] - latency, rel=1e-9)
        assert row["headroom"] == pytest.approx(row["budget_s"] / latency, rel=1e-9)
        assert row["vectors_per_s"] == pytest.approx(7 / row["per_slot_s"], rel=1e-9)
        assert row["bits_per_s"] == pytest.approx(row["vectors_per_s"] * 2 * 2, rel=1e-9)
        assert row["latency_source"] == row["source"] and row["source"] in data["sources"]
        assert all(math.isfinite(row[k]) and row[k] >= 0
                   for k in ("preparation_s", "detection_s"))
        if row["tail"] is not None:
            tail = row["tail"]
            assert tail["p50_s"] <= tail["p99_s"] <= tail["p99.9_s"] <= tail["max_s"]
            assert 0 <= tail["miss_fraction"] <= 1
            assert row["meets_budget"] == (tail["p99.9_s"] <= 50e-6 or None) or \
                (row["meets_budget"] is False and tail["p99.9_s"] > 50e-6)


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
        assert row["latency_source"] == "flops" and row["latency_is_lower_bound"]
        assert row["preparation_s"] == pytest.approx(flops["slot_rate"] / rate, rel=1e-12)
        assert row["detection_s"] == pytest.approx(7 * flops["per_symbol"] / rate, rel=1e-12)
        assert row["details"]["utilisation"] == (0.5 if name == "half-dsp" else 1.0)
        assert row["tail"] is None and row["latency_percentile"] is None
        assert row["subcarriers_per_slot_is_upper_bound"] is True
        per_subcarrier = flops["slot_rate"] / 12 + 7 * flops["per_symbol"]
        assert row["subcarriers_per_slot"] == math.floor(50e-6 * rate / per_subcarrier)
        assert row["verdict"] != "meets"


def test_measured_rows_time_thousands_of_calls(budget_json):
    data, _ = budget_json
    rows = _available(data)
    for name in ("onnx", "onnx-w4", "mmse"):
        row = rows[name]
        assert row["latency_source"] == "measured"
        assert row["details"]["batch"] == 1 and row["details"]["calls"] >= 300
        assert row["tail"]["count"] == row["details"]["calls"]
        assert row["tail"]["unit"] == "calls" and "timed calls" in row["latency_how"]
        assert row["subcarriers_per_slot"] == math.floor(50e-6 / row["tail"]["p99.9_s"])
    assert "onnxruntime" in rows["onnx"]["latency_how"]
    assert "mimoc.sim.detectors.lmmse (the unbiased LMMSE" in rows["mmse"]["latency_how"]


def test_the_same_slots_for_every_target(budget_json):
    data, _ = budget_json
    rows = _available(data)
    processors = [r for r in rows.values() if r["kind"] == "processor"]
    # the processors run the fp32 model: the reference itself, no loss at all
    assert all(r["ser"] == processors[0]["ser"] for r in processors)
    assert all(r["snr_loss_db"] is None and r["bootstrap_replicates"] == 0
               for r in processors)  # (no crossing of 1e-3 for an untrained model)
    digital, compiled = processors[0]["ser"], rows["onnx"]["ser"]
    assert digital["symbols"] == compiled["symbols"] >= SER_SYMBOLS // 2
    assert digital["snr_db"] == 6.0 == data["snr_db"]
    # The compiled artifact decides like the PyTorch model (float32 ties aside).
    assert abs(digital["errors"] - compiled["errors"]) <= 2
    assert rows["mmse"]["ser"]["symbols"] == digital["symbols"]
    assert rows["mmse"]["ser"]["errors"] < digital["errors"]  # MMSE beats an untrained net


def test_crossbar_numbers_come_from_the_schedule_and_channel_draws(budget_json):
    data, keep = budget_json
    row = _available(data)["crossbar:ftj-luo2022"]
    totals = json.loads((keep / "crossbar-ftj-luo2022" / "schedule.json").read_text())["totals"]
    assert row["latency_source"] == "schedule"
    assert totals["slot_symbols"] == 7
    assert row["detection_s"] == pytest.approx(7 * totals["symbol_s"], rel=1e-12)
    tail = row["tail"]
    draws = tail["programming_per_channel"]
    assert tail["count"] == draws["count"] == 4096 and tail["unit"] == "channel draws"
    # the mean over 4,096 draws of the link is the schedule's mean over its 32, roughly
    assert row["preparation_s"] == pytest.approx(draws["mean_s"], rel=1e-12)
    assert draws["mean_s"] == pytest.approx(totals["programming_s_per_slot"], rel=0.05)
    assert draws["p99.9_s"] > draws["mean_s"] and draws["max_s"] >= draws["p99.9_s"]
    assert tail["p99.9_s"] == pytest.approx(draws["p99.9_s"] + 7 * totals["symbol_s"])
    assert row["ser"]["symbols"] == _available(data)["onnx"]["ser"]["symbols"]
    assert row["subcarriers_per_slot"] >= 1 and row["array_sets"] == 1
    costs = json.loads((keep / "crossbar-ftj-luo2022" / "schedule.json").read_text())["costs"]
    assert f"energy {costs['per_slot']['energy_j'] * 1e9:,.3g} nJ per slot" in json.dumps(row)


def test_w4_is_measured_on_its_own_artifact(budget_json):
    data, keep = budget_json
    row = _available(data)["onnx-w4"]
    assert row["latency_source"] == "measured"
    manifest = read_manifest(next(keep.glob("onnx-cpu-w4*")))
    assert manifest["lowering"] != "fp32"


# -- the receiver workload --------------------------------------------------------------------

def test_a_100_mhz_carrier_reports_capacity_for_every_target(checkpoint):
    targets = ["onnx", "crossbar:ftj-luo2022", "dsp-c6678", "mmse"]
    report = budget.run_budget(checkpoint, targets, subcarriers=3276, ser_symbols=1000,
                               snr_db=6.0, min_time=0.01, calls=20, max_time=2.0)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["workload"]["channels"] == 273 and data["workload"]["vectors"] == 45_864
    rows = _available(data)
    assert set(rows) == set(targets)
    for row in rows.values():
        assert isinstance(row["subcarriers_per_slot"], int) and row["subcarriers_per_slot"] >= 0
        assert row["vectors_per_slot"] == 45_864
        assert row["covers_workload"] in (True, False, None)
    assert rows["onnx"]["details"]["batch"] == 273
    assert rows["onnx"]["details"]["symbols_per_channel"] == 168
    assert rows["mmse"]["details"]["batch_1"]["count"] >= 7
    flops = rows["dsp-c6678"]["details"]
    assert rows["dsp-c6678"]["per_slot_s"] == pytest.approx(
        (273 * flops["flops_slot_rate"] + 45_864 * flops["flops_per_symbol"]) / 128e9)
    xbar = rows["crossbar:ftj-luo2022"]
    # one array set serves 273 channels one after another: far over 100 us
    assert xbar["covers_workload"] is False and xbar["verdict"] == "misses"
    assert xbar["tail"]["unit"].startswith("slots of 273 channel draws")
    served = xbar["subcarriers_per_slot"]
    assert xbar["array_sets"] == math.ceil(3276 / served)
    settings = report.target("crossbar:ftj-luo2022").settings
    arrays = settings["peripherals"]["arrays"]
    assert xbar["replication"]["arrays"] == xbar["array_sets"] * arrays
    assert f"{xbar['array_sets']:,} array sets" in xbar["capacity_how"]
    text = budget.format_budget(report)
    assert "3,276 subcarriers per slot = 273 channels x 168 symbol vectors" in text


# -- the model's own channel ------------------------------------------------------------------

def test_the_training_task_channel_is_simulated(tmp_path):
    """A model trained on ``task:ID`` channels is evaluated on them, not on Rayleigh."""
    from mimoc.sim.ber import from_module
    from mimoc.sim.channels import ChannelModel, parse_channel

    torch.manual_seed(0)
    model = build_detector("detnet", **CONFIG).eval()
    path = tmp_path / "task.pt"
    save_detector(model, path, training={"options": {"channel": "task:17", "csi": "ls:4@10",
                                                     "snr_def": "per-stream"}})
    with budget.budget_context(path) as ctx:
        assert ctx.system.channel.spec == "task:17" and ctx.system.csi.spec == "ls:4@10"
    report = budget.run_budget(path, ["dsp-c6678"], snr_db=8.0, ser_symbols=2000,
                               **QUICK)
    assert report.to_dict()["link"] == {"channel": "task:17", "csi": "ls:4@10",
                                        "snr_def": "per-stream"}
    errors = report.rows[0].ser.errors
    grid = [8.0 + o for o in budget.accuracy.grid_offsets(0.5)]

    def errors_on(channel):
        system = budget.model_system(model, {}, 14, channel=channel, csi="ls:4@10")
        counts = budget.simulate_slots({"m": from_module(model)}, system, grid, seed=0,
                                       max_symbols=2000)
        return int(next(g for g in counts if g.snr_db == 8.0).errors["m"].sum())

    assert errors == errors_on("task:17") != errors_on("rayleigh")
    assert isinstance(parse_channel("task:17"), type(ctx.system.channel))
    assert not isinstance(ctx.system.channel, ChannelModel)


def test_an_unknown_training_channel_is_an_error_not_rayleigh(tmp_path, capsys):
    torch.manual_seed(0)
    model = build_detector("detnet", **CONFIG).eval()
    path = tmp_path / "odd.pt"
    save_detector(model, path, training={"options": {"channel": "ray-tracing:city"}})
    code, out, err = cli(capsys, "budget", str(path), "--target", "dsp-c6678",
                         "--max-symbols", "0")
    assert one_line_error(code, err) and "training channel 'ray-tracing:city'" in err
    assert "--channel" in err and out == ""
    code, out, err = cli(capsys, "budget", str(path), "--target", "dsp-c6678",
                         "--max-symbols", "0", "--channel", "rayleigh", "--json")
    assert code == 0 and parse_output("budget", out)["link"]["channel"] == "rayleigh"


# -- defaults, text and plot -------------------------------------------------------------------

def test_default_targets_run_with_a_plot(checkpoint, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(budget.target_names, "DEFAULT_TARGETS", ("dsp-c6678",))
    plot = tmp_path / "budget.png"
    code, out, err = cli(capsys, "budget", str(checkpoint), "--max-symbols", "0", "--plot",
                         str(plot))
    assert code == 0, err
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("target"))
    assert lines[header].split()[:4] == ["target", "source", "prep", "us"]
    assert lines[header + 1].startswith("-----")
    row = lines[header + 2]
    assert row.startswith("dsp-c6678") and "flops" in row and ">= " in row
    assert row.rstrip().endswith("unknown")
    assert "SER @" not in out  # --max-symbols 0
    assert "accuracy not measured (--max-symbols 0)" in " ".join(out.split())
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"plot written to {plot}" in out


def test_text_output_states_sources_and_the_verdict(checkpoint, capsys):
    code, out, err = cli(capsys, "budget", str(checkpoint), "--target", "dsp-c6678,onnx",
                         "--budget-us", "0.001", "--max-symbols", "0", *QUICK_FLAGS)
    assert code == 0, err
    rows = _table_rows(out)
    assert [r.split()[-2:] for r in rows] == [["misses:", "latency"]] * 2
    assert "even its lower bound" in out and "p99.9" in out
    assert "dsp-c6678: compiler FLOPs" in out and "onnx: fp32 artifact, onnxruntime" in out
    code, out, err = cli(capsys, "budget", str(checkpoint), "--target", "dsp-c6678,onnx",
                         "--budget-us", "1e6", "--max-symbols", "2000", "--snr", "10",
                         "--percentile", "99", *QUICK_FLAGS)
    assert code == 0, err
    assert "SER @ 10 dB" in out and "p99 slot latency <= 1000000 us" in out
    # within the budget, but an untrained model never reaches SER 1e-3: unknown
    assert [r.split()[-1] for r in _table_rows(out)] == ["unknown", "unknown"]


def _table_rows(out: str) -> list[str]:
    lines = out.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("-----")) + 1
    last = next(i for i, line in enumerate(lines) if line.startswith("prep ="))
    return lines[first:last]


def test_a_target_that_fails_on_the_model_is_a_row_and_exit_status_1(checkpoint, capsys,
                                                                       monkeypatch):
    def refuse(spec, ctx):
        raise MimocError("this processor cannot run DetNet")

    monkeypatch.setitem(budget.PREPARERS, "processor", refuse)
    code, out, err = cli(capsys, "budget", str(checkpoint), "--target", "onnx,dsp-c6678",
                         "--max-symbols", "1000", "--snr", "6", *QUICK_FLAGS, "--json")
    assert code == 1 and "dsp-c6678 failed" in err and err.count("\n") == 1
    rows = {row["target"]: row for row in parse_output("budget", out)["targets"]}
    assert rows["onnx"]["available"] and rows["onnx"]["ser"] is not None
    assert rows["dsp-c6678"] == {"target": "dsp-c6678", "kind": "processor",
                                 "available": False, "failed": True,
                                 "reason": "failed: this processor cannot run DetNet"}


def test_a_quantized_checkpoint_is_budgeted_with_its_own_recipe(tmp_path, capsys):
    torch.manual_seed(0)
    model = build_detector("detnet", **CONFIG).eval()
    recipe = quant.quantize(model, "minmax")
    path = tmp_path / "detnet_q.pt"
    quant.save_quantized(model, recipe, path)
    data = _json(capsys, str(path), "--target", "onnx-w4,dsp-c6678", "--max-symbols", "2000",
                 "--snr", "8")
    rows = _available(data)
    assert "the checkpoint recipe" in rows["onnx-w4"]["ser_source"]
    assert rows["onnx-w4"]["latency_how"].startswith("w4 artifact")
    # the digital model of a quantized checkpoint is its fake-quantized PyTorch module; the
    # loss is measured against the fp32 model without the recipe
    assert rows["dsp-c6678"]["ser"]["symbols"] == rows["onnx-w4"]["ser"]["symbols"]
    assert "without the checkpoint's quantization recipe" in data["accuracy"]["reference"]


def _json(capsys, *argv):
    code, out, err = cli(capsys, "budget", *argv, *QUICK_FLAGS, "--json")
    assert code == 0, err
    return parse_output("budget", out)
