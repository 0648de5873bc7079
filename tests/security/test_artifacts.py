"""Damaged artifacts and nonsense profiles are refused with one line, never used.

The fixture compiles one tiny DetNet to an ONNX artifact (fp32 and int8) and a crossbar
artifact once per module; each test copies what it damages. CLI cases run
``python -m mimoc`` in a subprocess: exit status 2, exactly one line on stderr, no
traceback. Python cases expect a MimocError whose one-line message names the file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from mimoc.api import compile as compile_model
from mimoc.detectors import build_detector, save_detector
from mimoc.errors import MimocError, ModelFileError
from mimoc.hardware.devices import Device, list_devices, load_device
from mimoc.hardware.processors import list_processors, load_processor
from mimoc.runtime import load_artifact
from mimoc.runtime.imc import load_schedule
from mimoc.targets.crossbar.artifact import npz_bytes, read_arrays, read_schedule
from mimoc.targets.onnx.artifact import read_manifest
from mimoc.validation import load_schema, read_json, schema_names, validate

REPO = Path(__file__).resolve().parents[2]
CONFIG = dict(nt=2, nr=4, modulation="qpsk", layers=2, hidden=8, v_dim=4)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """``{"model", "onnx", "int8", "xb"}``: a tiny DetNet and its artifacts."""
    root = tmp_path_factory.mktemp("artifacts")
    torch.manual_seed(0)
    save_detector(build_detector("detnet", **CONFIG).eval(), root / "detnet.pt")
    compile_model(root / "detnet.pt", out=root / "onnx")
    compile_model(root / "detnet.pt", out=root / "int8", quant="int8", lowering="int8")
    # FeFET: program-and-verify converges in few rounds; 8x8 arrays force tiling
    compile_model(root / "detnet.pt", target="crossbar", out=root / "xb",
                  device="fefet-jerry2017", array=(8, 8), crossbar={"mc_draws": 2})
    return {"model": root / "detnet.pt", "onnx": root / "onnx", "int8": root / "int8",
            "xb": root / "xb"}


def copy(artifacts, kind: str, tmp_path: Path) -> Path:
    out = tmp_path / kind
    shutil.copytree(artifacts[kind], out)
    return out


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def run_cli(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "mimoc", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=300)


def refused(result: subprocess.CompletedProcess, *words: str) -> str:
    """Exit 2, one line on stderr, no traceback, nothing on stdout; the line's text."""
    err = result.stderr
    assert result.returncode == 2, (result.returncode, err)
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert result.stdout == "", result.stdout
    for word in words:
        assert word in err, (word, err)
    return err


def main_refuses(capsys, *args, words=()) -> str:
    """The CLI in this process (faster than a subprocess): exit 2, one line on stderr."""
    from mimoc.cli import main

    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return refused(subprocess.CompletedProcess(args, code, out, err), *words)


def one_line(excinfo, *words: str) -> str:
    message = str(excinfo.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, (word, message)
    return message


BER = ("--snr", "10", "--max-symbols", "400", "--no-progress")


# ----------------------------------------------------------------- valid files pass

def test_shipped_profiles_and_fresh_artifacts_validate(artifacts):
    for name in list_devices():
        path = REPO / "mimoc" / "data" / "devices" / f"{name}.json"
        validate(read_json(path), "device", file=path)
        assert load_device(name).name == name
    for name in list_processors():
        path = REPO / "mimoc" / "data" / "processors" / f"{name}.json"
        validate(read_json(path), "processor", file=path)
        assert load_processor(name).peak_gflops > 0
    for kind in ("onnx", "int8"):
        assert read_manifest(artifacts[kind])["format"] == "mimoc-onnx-artifact"
        assert load_artifact(artifacts[kind]).detect(torch.zeros(1, 8, 4),
                                                     torch.zeros(1, 2, 8)).shape == (1, 2, 4)
    assert read_manifest(artifacts["int8"])["session_config"]  # the allowlisted entry
    xb = load_schedule(artifacts["xb"])
    assert xb.detect(torch.zeros(1, 8, 4), torch.zeros(1, 2, 8)).shape == (1, 2, 4)


def test_schemas_are_valid_and_the_device_schema_matches_the_dataclass():
    from jsonschema import Draft202012Validator

    assert schema_names() == ["device", "iree_manifest", "manifest", "processor", "schedule"]
    for name in schema_names():
        Draft202012Validator.check_schema(load_schema(name))
    schema = load_schema("device")
    fields = dataclasses.fields(Device)
    assert set(schema["properties"]) == {f.name for f in fields} | {"schema"}
    assert set(schema["required"]) == {f.name for f in fields
                                       if f.default is dataclasses.MISSING}


def test_message_names_the_file_and_the_field():
    with pytest.raises(ModelFileError) as err:
        validate({"totals": {"per_slot_s": -3}}, "schedule", file="out/x/schedule.json",
                 fix="compile the artifact again")
    assert one_line(err).startswith("'out/x/schedule.json': missing key 'format'")
    data = read_json(REPO / "mimoc" / "data" / "devices" / "ftj-luo2022.json")
    with pytest.raises(ModelFileError) as err:
        validate({**data, "states": 1.5e300}, "device", file="d.json")
    one_line(err, "'d.json'", "field 'states' must be an integer")


# ----------------------------------------------------------------- ONNX manifest

@pytest.mark.parametrize("change, field", [
    (lambda m: m.pop("graphs"), "missing key 'graphs'"),
    (lambda m: m.update(graphs=["detector"]), "field 'graphs' must be a JSON object"),
    (lambda m: m.update(model="detnet"), "field 'model' must be a JSON object"),
    (lambda m: m["model"].update(config=[2, 4]), "field 'model.config'"),
    (lambda m: m["model"]["config"].update(nt="2"), "field 'model.config.nt'"),
    (lambda m: m.update(session_config="fast"), "field 'session_config'"),
    # an arbitrary session entry could make onnxruntime write files
    (lambda m: m.update(session_config={"ep.context_file_path": "/tmp/x"}),
     "unknown key 'session_config[\"ep.context_file_path\"]'"),
    (lambda m: m["graphs"]["detector"]["inputs"][0].update(shape=["B", "Q", 4]),
     "graphs.detector H"),
    (lambda m: m["files"].pop("detector.onnx"), "missing key 'files[\"detector.onnx\"]'"),
])
def test_damaged_manifest_is_refused(artifacts, tmp_path, change, field):
    art = copy(artifacts, "onnx", tmp_path)
    edit_json(art / "manifest.json", change)
    with pytest.raises(ModelFileError) as err:
        load_artifact(art)
    one_line(err, "manifest.json'", field)


def test_nan_and_duplicate_keys_in_a_manifest_are_refused(artifacts, tmp_path):
    art = copy(artifacts, "onnx", tmp_path)
    text = (art / "manifest.json").read_text()
    for before, after, words in [
            ('"per_symbol": ', '"per_symbol": NaN, "x": ', ("NaN",)),
            ('"per_symbol": ', '"per_symbol": 1e999, "x": ',
             ("field 'flops.per_symbol' must be a finite number",)),
            ('"lowering": ', '"lowering": "w4", "lowering": ', ("appears twice",))]:
        (art / "manifest.json").write_text(text.replace(before, after, 1))
        with pytest.raises(ModelFileError) as err:
            read_manifest(art)
        one_line(err, "manifest.json", *words)


def test_bench_on_a_manifest_without_flops_is_one_line(artifacts, tmp_path):
    art = copy(artifacts, "onnx", tmp_path)
    edit_json(art / "manifest.json", lambda m: m.pop("flops"))
    refused(run_cli("bench", art, "--batch", "1", "--min-time", "0.01"),
            "missing key 'flops'")


# ----------------------------------------------------------------- ONNX files

def _tamper_weights(path: Path) -> None:
    """Scale the largest float initializer of an ONNX file by -50 and save it."""
    model = onnx.load(path)
    init = max((t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT),
               key=lambda t: numpy_helper.to_array(t).size)
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * -50, init.name))
    onnx.save(model, path)


def test_tampered_onnx_weights_are_refused_unless_allowed(artifacts, tmp_path):
    art = copy(artifacts, "onnx", tmp_path)
    _tamper_weights(art / "detector.onnx")
    refused(run_cli("ber", art, *BER), "detector.onnx", "modified after compiling",
            "--allow-modified")
    result = run_cli("ber", art, *BER, "--allow-modified")
    assert result.returncode == 0, result.stderr
    assert str(art) in result.stdout
    with pytest.raises(ModelFileError, match="modified after compiling"):
        load_artifact(art)
    assert load_artifact(art, verify=False).manifest["format_version"] == 1


def test_slot_model_copied_over_the_detector_is_refused(artifacts, tmp_path, capsys):
    art = copy(artifacts, "onnx", tmp_path)
    shutil.copy(art / "slot.onnx", art / "detector.onnx")
    with pytest.raises(ModelFileError) as err:
        load_artifact(art)
    one_line(err, "detector.onnx", "modified")
    with pytest.raises(ModelFileError) as err:  # with the check off: inputs/outputs differ
        load_artifact(art, verify=False)
    one_line(err, "detector.onnx", "does not match the manifest")
    main_refuses(capsys, "ber", art, *BER, "--allow-modified",
                 words=("does not match the manifest",))


def test_onnx_model_failing_at_run_time_is_one_line(artifacts, tmp_path, capfd):
    from onnx import helper

    art = copy(artifacts, "onnx", tmp_path)
    model = onnx.load(art / "detector.onnx")
    out = model.graph.output[0].name
    model.graph.node[-1].output[0] = out + "_pre"  # then reshape to a size that cannot fit
    model.graph.initializer.append(helper.make_tensor("bad", onnx.TensorProto.INT64, [3],
                                                      [-1, 7, 11]))
    model.graph.node.append(helper.make_node("Reshape", [out + "_pre", "bad"], [out]))
    onnx.save(model, art / "detector.onnx")
    artifact = load_artifact(art, verify=False)
    capfd.readouterr()
    with pytest.raises(ModelFileError) as err:
        artifact.detect(torch.zeros(1, 8, 4), torch.zeros(1, 2, 8))
    one_line(err, "onnxruntime failed running", "detector.onnx")
    assert capfd.readouterr().err == ""  # onnxruntime's own log line is not printed


def test_garbage_onnx_file_is_one_line(artifacts, tmp_path):
    art = copy(artifacts, "onnx", tmp_path)
    (art / "symbol.onnx").write_bytes(b"\x08\x07garbage" * 50)
    with pytest.raises(ModelFileError) as err:
        load_artifact(art, verify=False)
    one_line(err, "onnxruntime cannot load", "symbol.onnx")
    (art / "symbol.onnx").unlink()
    with pytest.raises(ModelFileError) as err:
        load_artifact(art, verify=False)
    one_line(err, "symbol.onnx", "missing")


# ----------------------------------------------------------------- crossbar schedule

@pytest.mark.parametrize("change, field", [
    (lambda s: s["matrices"][0].update(row_tiles=0), "field 'matrices[0].row_tiles'"),
    (lambda s: s["matrices"][1].update(row_tiles=7), "does not have the tiles"),
    (lambda s: next(m for m in s["matrices"] if m["role"] == "static")["mapping"]
     .update(w_clip=0), ".mapping.w_clip' must be a number > 0"),
    (lambda s: s["programming"]["per_slot"]["tiles"][0]["example_row_pulses"]
     .__setitem__(0, -40), "example_row_pulses[0]' must be an integer >= 0"),
    (lambda s: s["totals"].update(programming_s_per_slot=-3e-6),
     "field 'totals.programming_s_per_slot' must be a number >= 0"),
    (lambda s: s["device"].update(g_max_us=-1), "field 'device.g_max_us'"),
    (lambda s: s["programming"]["per_slot"]["groups"].append(["nope"]), "'nope'"),
    (lambda s: s["arrays"][0].update(rows=[0, 3]), "does not match its matrix"),
])
def test_damaged_schedule_is_refused(artifacts, tmp_path, change, field):
    xb = copy(artifacts, "xb", tmp_path)
    edit_json(xb / "schedule.json", change)
    with pytest.raises(ModelFileError) as err:
        load_schedule(xb)
    one_line(err, "schedule.json'", field)


def test_program_and_matrices_must_agree(artifacts, tmp_path):
    xb = copy(artifacts, "xb", tmp_path)

    def rename(s):
        node = next(n for n in s["program"]["nodes"] if n["op"] == "CrossbarMVM")
        node["attrs"]["matrix"] = "elsewhere"
    edit_json(xb / "schedule.json", rename)
    with pytest.raises(ModelFileError) as err:
        load_schedule(xb)
    one_line(err, "'elsewhere'")


def test_inspect_refuses_schedules_without_totals_or_with_bad_matrices(artifacts, tmp_path,
                                                                        capsys):
    xb = copy(artifacts, "xb", tmp_path)
    original = (xb / "schedule.json").read_text()
    edit_json(xb / "schedule.json", lambda s: s.pop("totals"))
    refused(run_cli("inspect", xb), "missing key 'totals'")
    (xb / "schedule.json").write_text(original)
    edit_json(xb / "schedule.json", lambda s: s.update(matrices=["x"]))
    main_refuses(capsys, "inspect", xb, "--json",
                 words=("field 'matrices[0]' must be a JSON object",))


def _adc_full_scale(xb: Path, text: str) -> None:
    """Set the first program ADC's full scale to ``text`` (raw JSON, e.g. ``NaN``)."""
    def mark(s):
        node = next(n for n in s["program"]["nodes"] if n["op"] == "ADC")
        node["attrs"]["full_scale"] = 123456.75
    edit_json(xb / "schedule.json", mark)
    raw = (xb / "schedule.json").read_text()
    (xb / "schedule.json").write_text(raw.replace("123456.75", text))


def test_nan_adc_full_scale_is_refused_not_simulated(artifacts, tmp_path, capsys):
    xb = copy(artifacts, "xb", tmp_path)
    _adc_full_scale(xb, "NaN")  # today: SER 1.0, exit 0
    refused(run_cli("ber", "--detector", xb, *BER), "schedule.json", "NaN")
    _adc_full_scale(copy(artifacts, "xb", tmp_path / "2"), "-1")
    main_refuses(capsys, "ber", "--detector", tmp_path / "2" / "xb", *BER,
                 words=("full_scale' must be a number > 0",))


def test_huge_program_shapes_are_refused_before_allocating(artifacts, tmp_path):
    xb = copy(artifacts, "xb", tmp_path)
    edit_json(xb / "schedule.json",
              lambda s: s["program"]["nodes"][0].update(shape=[100000, 100000]))
    with pytest.raises(ModelFileError) as err:
        read_schedule(xb)
    one_line(err, "more than")


# ----------------------------------------------------------------- arrays.npz

def _arrays(path: Path) -> dict[str, np.ndarray]:
    return read_arrays(path, verify=False)


def test_tampered_arrays_are_refused_unless_allowed(artifacts, tmp_path, capsys):
    xb = copy(artifacts, "xb", tmp_path)
    arrays = _arrays(xb)
    key = next(k for k in arrays if k.endswith(".g_pos"))
    arrays[key] = arrays[key][::-1].copy()  # still valid conductances, other weights
    (xb / "arrays.npz").write_bytes(npz_bytes(arrays))
    with pytest.raises(ModelFileError) as err:
        load_schedule(xb)
    one_line(err, "arrays.npz", "modified after compiling")
    main_refuses(capsys, "inspect", xb, words=("modified after compiling",))
    from mimoc.cli import main

    assert main(["inspect", str(xb), "--allow-modified"]) == 0
    assert "mimoc crossbar schedule" in capsys.readouterr().out
    assert load_schedule(xb, verify=False).detect(torch.zeros(1, 8, 4),
                                                  torch.zeros(1, 2, 8)).shape == (1, 2, 4)


def _replace_entry(path: Path, name: str, payload: bytes | None) -> None:
    """Rewrite ``arrays.npz`` with entry ``name`` replaced by raw ``payload`` (None: drop)."""
    with zipfile.ZipFile(path) as archive:
        entries = {info.filename: archive.read(info) for info in archive.infolist()}
    if payload is None:
        entries.pop(name)
    else:
        entries[name] = payload
    with zipfile.ZipFile(path, "w") as archive:
        for entry, data in entries.items():
            archive.writestr(entry, data)


def _npy_header(shape, descr: str = "<f4") -> bytes:
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False,
                                                  "shape": shape})
    return buffer.getvalue()


def test_npy_header_declaring_a_huge_array_is_refused_before_allocating(artifacts, tmp_path):
    xb = copy(artifacts, "xb", tmp_path)
    name = next(k for k in _arrays(xb) if k.endswith(".weights")) + ".npy"
    _replace_entry(xb / "arrays.npz", name, _npy_header((10**7, 10**7)) + b"\0" * 64)
    with pytest.raises(ModelFileError) as err:
        load_schedule(xb, verify=False)
    one_line(err, "declares shape (10000000, 10000000)", "holds 64 bytes")
    with pytest.raises(ModelFileError, match="modified after compiling"):
        load_schedule(xb)


def test_object_arrays_are_refused(artifacts, tmp_path):
    xb = copy(artifacts, "xb", tmp_path)
    name = next(k for k in _arrays(xb) if k.startswith("const/")) + ".npy"
    _replace_entry(xb / "arrays.npz", name, _npy_header((1,), "|O") + b"\x80\x04N.")
    with pytest.raises(ModelFileError) as err:
        load_schedule(xb, verify=False)
    one_line(err, "object", "dtype")


def test_missing_weights_entry_is_refused(artifacts, tmp_path):
    xb = copy(artifacts, "xb", tmp_path)
    name = next(k for k in _arrays(xb) if k.endswith(".weights"))
    _replace_entry(xb / "arrays.npz", name + ".npy", None)
    with pytest.raises(ModelFileError) as err:
        load_schedule(xb, verify=False)
    one_line(err, f"'{name}' is missing")


def test_conductances_outside_the_device_range_are_refused(artifacts, tmp_path):
    xb = copy(artifacts, "xb", tmp_path)
    arrays = _arrays(xb)
    static = next(m for m in read_schedule(xb)["matrices"] if m["role"] == "static")
    key = f"{static['tiles'][0]}.g_neg"
    arrays[key] = arrays[key] * 1000
    (xb / "arrays.npz").write_bytes(npz_bytes(arrays))
    with pytest.raises(ModelFileError) as err:
        load_schedule(xb, verify=False)
    one_line(err, "outside [Gmin, Gmax]")


# ----------------------------------------------------------------- profiles

def _profile(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dev.json"
    path.write_text(text)
    return path


@pytest.mark.parametrize("change, field", [
    ({"g_max_us": -27.5}, "g_max_us"),
    ({"g_min_us": 30.0}, "g_max_us (27.5) must be greater than g_min_us (30)"),
    ({"states": 10**9}, "field 'states' must be an integer <= 1048576"),
    ({"states": "150"}, "field 'states' must be an integer"),
    ({"c2c_depression": [0.1]}, "field 'c2c_depression'"),
    ({"pulse_width_s": None}, "field 'pulse_width_s'"),
])
def test_nonsense_device_profiles_name_file_and_field(tmp_path, change, field):
    data = load_device("ftj-luo2022").to_dict() | change
    with pytest.raises(MimocError) as err:
        load_device(_profile(tmp_path, json.dumps(data)))
    one_line(err, "dev.json", field)


def test_device_profile_with_nan_or_a_missing_field_via_the_cli(tmp_path, capsys):
    text = json.dumps(load_device("ftj-luo2022").to_dict())
    path = _profile(tmp_path, text.replace('"g_max_us": 27.5', '"g_max_us": NaN'))
    refused(run_cli("devices", path), "dev.json", "NaN")
    data = load_device("ftj-luo2022").to_dict()
    del data["v_write_neg"]
    main_refuses(capsys, "devices", _profile(tmp_path, json.dumps(data)),
                 words=("dev.json", "missing key 'v_write_neg'"))


@pytest.mark.parametrize("text, field", [
    ('{"peak_gflops": NaN}', "NaN"),
    ('{"peak_gflops": -5}', "field 'peak_gflops' must be a number > 0"),
    ('{"peak_gflops": 1e999}', "field 'peak_gflops' must be a finite number"),
    ('{"peak_gflops": "100"}', "field 'peak_gflops' must be a number"),
    ('{"peak_gflops": 100, "utilisation": 2}', "field 'utilisation'"),
    ('{"peak_gflops": 100, "clock_hz": 1}', "unknown key 'clock_hz'"),
    ('[100]', "must be a JSON object"),
])
def test_nonsense_processor_files_name_file_and_field(tmp_path, text, field):
    path = tmp_path / "board.json"
    path.write_text(text)
    with pytest.raises(MimocError) as err:
        load_processor(str(path))
    one_line(err, "board.json", field)


# ----------------------------------------------------------------- the flag, honest files

def test_every_artifact_reading_command_has_the_same_flag():
    from mimoc.cli import build_parser

    parser = build_parser()
    for argv in (["ber", "dir"], ["bench", "dir"], ["inspect", "dir"]):
        assert parser.parse_args(argv).allow_modified is False
        assert parser.parse_args(argv + ["--allow-modified"]).allow_modified is True


def test_rram_artifact_with_targets_at_gmax_runs(tmp_path):
    # RRAM's Gmax 230.99 uS rounds up in float32: the largest weight's target lies half
    # an ulp above Gmax in arrays.npz, which must not be refused (it was, before)
    torch.manual_seed(0)
    model = build_detector("detnet", **CONFIG).eval()
    compile_model(model, target="crossbar", out=tmp_path / "rram", device="rram-zeng2023",
                  array=(8, 8), crossbar={"mc_draws": 2})
    xb = load_schedule(tmp_path / "rram")
    assert xb.detect(torch.zeros(1, 8, 4), torch.zeros(1, 2, 8)).shape == (1, 2, 4)
