"""Every command's ``--json`` is one self-describing document: the envelope (``schema``,
``mimoc_version``, ``command``) and the command's keys, valid against the JSON Schema shipped
for it in ``mimoc/data/schemas/output/``; a document that drops a required key or adds an
unknown one is refused. (``budget`` and ``report`` are checked the same way in
tests/studies, where their slower runs already are.)"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import pytest
import torch
from jsonschema import Draft202012Validator

import mimoc
from mimoc.cli import main
from mimoc.detectors import build_detector, save_detector
from mimoc.errors import MimocError
from mimoc.validation import (
    OUTPUT_VERSIONS,
    load_schema,
    output_envelope,
    output_schema_names,
    validate_output,
)

CONFIG = dict(nt=2, nr=4, modulation="qpsk", layers=2, hidden=8, v_dim=4)
QUICK_BER = ("--snr", "0", "--max-symbols", "400", "--no-progress")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A tiny DetNet checkpoint and its ONNX and crossbar artifacts."""
    root = tmp_path_factory.mktemp("json")
    torch.manual_seed(0)
    save_detector(build_detector("detnet", **CONFIG).eval(), root / "detnet.pt")
    for target, name in (("onnx", "onnx"), ("crossbar", "xb")):
        assert main(["compile", str(root / "detnet.pt"), "--target", target,
                     "-o", str(root / name)]) == 0
    (root / "sweep.toml").write_text('models = ["detnet.pt"]\ndetectors = ["mmse"]\n'
                                     'targets = ["pytorch", "onnx"]\nsnr = [0]\n'
                                     "[run]\nmax_symbols = 400\n")
    return root


def _argv(root) -> dict[str, list[str]]:
    model, onnx, xb = str(root / "detnet.pt"), str(root / "onnx"), str(root / "xb")
    return {
        "ber-one": ["ber", "--detector", "mmse", "--nt", "2", "--nr", "4", *QUICK_BER,
                    "--json"],
        "ber-llr": ["ber", "--detector", "mmse,zf", "--nt", "2", "--nr", "2", *QUICK_BER,
                    "--output", "llr", "--json"],
        "ber-artifacts": ["ber", onnx, xb, "--detector", f"zf,{model}", "--c2c", "0,0.02",
                          *QUICK_BER, "--json"],
        "compile-onnx": ["compile", model, "-o", str(root / "c-onnx"), "--json"],
        "compile-crossbar": ["compile", model, "--target", "crossbar", "-o",
                             str(root / "c-xb"), "--json"],
        "inspect-checkpoint": ["inspect", model, "--json"],
        "inspect-onnx": ["inspect", onnx, "--json"],
        "inspect-crossbar": ["inspect", xb, "--json"],
        "inspect-ir": ["inspect", model, "--passes", "canonicalize", "--dump-after", "all",
                       "--json"],
        "bench-crossbar": ["bench", xb, "--batches", "1", "--min-time", "0.01", "--json"],
        "devices-all": ["devices", "--json"],
        "devices-one": ["devices", "ftj-luo2022", "--json"],
        "quantize": ["quantize", model, "--method", "minmax", "--bits", "4",
                     "-o", str(root / "q.pt"), "--json", "--no-progress"],
        "train": ["train", "detnet", "--nt", "2", "--nr", "4", "--layers", "2", "--hidden",
                  "8", "--v-dim", "4", "--steps", "2", "--batch", "8", "--val-batch", "16",
                  "--val-every", "1", "-o", str(root / "t.pt"), "--json", "--no-progress"],
        "sweep": ["sweep", str(root / "sweep.toml"), "-o", str(root / "sweep"), "--workers",
                  "1", "--no-plots", "--no-progress", "--json"],
    }


CASES = list(_argv(Path("unused")))


@pytest.fixture(scope="module")
def documents(workdir):
    """Each case's printed document (run once per module, in-process)."""
    out = {}
    for case, argv in _argv(workdir).items():
        stream = io.StringIO()
        with contextlib.redirect_stdout(stream):
            code = main(argv)
        assert code == 0, (case, argv)
        text = stream.getvalue()
        assert text.count("\n") == 1, f"{case}: not one line of JSON"
        out[case] = (argv, json.loads(text))
    return out


# -- the schemas -----------------------------------------------------------------------

def test_every_command_has_a_valid_schema():
    assert output_schema_names() == sorted(OUTPUT_VERSIONS)
    assert set(OUTPUT_VERSIONS) == {"train", "quantize", "compile", "inspect", "ber", "bench",
                                    "budget", "report", "devices", "sweep"}
    for name in [*output_schema_names(), "envelope"]:
        schema = load_schema(f"output/{name}")
        Draft202012Validator.check_schema(schema)
        assert schema["$id"] == f"urn:mimoc:schema:output:{name}"
    for name in output_schema_names():  # strict at the top: no key outside the format
        assert load_schema(f"output/{name}")["unevaluatedProperties"] is False


def test_envelope():
    envelope = output_envelope("ber", ["mimoc", "ber", "--json"])
    assert envelope == {"schema": "mimoc-ber/1", "mimoc_version": mimoc.__version__,
                        "command": ["mimoc", "ber", "--json"]}
    assert output_envelope("devices", None)["command"] is None  # made through the API


# -- the documents -----------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES)
def test_json_carries_the_envelope_and_validates(documents, case):
    argv, doc = documents[case]
    command = argv[0]
    assert list(doc)[:3] == ["schema", "mimoc_version", "command"]
    assert doc["schema"] == f"mimoc-{command}/{OUTPUT_VERSIONS[command]}"
    assert doc["mimoc_version"] == mimoc.__version__
    assert doc["command"] == ["mimoc", *argv]
    assert validate_output(command, doc) is doc


@pytest.mark.parametrize("case", CASES)
def test_a_missing_required_key_or_an_unknown_key_is_refused(documents, case):
    argv, doc = documents[case]
    command = argv[0]
    schema = load_schema(f"output/{command}")
    required = ["schema", "mimoc_version", "command", *schema.get("required", [])]
    for key in dict.fromkeys(required):
        broken = copy.deepcopy(doc)
        del broken[key]
        with pytest.raises(MimocError, match=f"missing key '{key}'"):
            validate_output(command, broken)
    with pytest.raises(MimocError, match="unknown key 'extra'"):
        validate_output(command, {**doc, "extra": 1})
    with pytest.raises(MimocError, match="schema"):
        validate_output(command, {**doc, "schema": f"mimoc-{command}/999"})


def test_ber_has_curves_with_structured_detectors(documents, workdir):
    _, one = documents["ber-one"]
    assert len(one["curves"]) == 1 and "points" not in one and "detector" not in one
    assert one["curves"][0]["detector"] == {"name": "mmse", "kind": "classical",
                                            "spec": "mmse"}
    assert (one["modulation"], one["slot_symbols"]) == ("qpsk", 14)
    _, many = documents["ber-artifacts"]
    model, onnx, xb = str(workdir / "detnet.pt"), str(workdir / "onnx"), str(workdir / "xb")
    assert [c["detector"] for c in many["curves"]] == [
        {"name": "zf", "kind": "classical", "spec": "zf"},
        {"name": model, "kind": "model", "spec": model, "path": model},
        {"name": onnx, "kind": "artifact", "spec": onnx, "path": onnx, "target": "onnx"},
        {"name": f"{xb}@c2c=0", "kind": "artifact", "spec": xb, "path": xb,
         "target": "crossbar", "c2c": 0.0},
        {"name": f"{xb}@c2c=0.02", "kind": "artifact", "spec": xb, "path": xb,
         "target": "crossbar", "c2c": 0.02}]
    symbols = {tuple(p["symbols"] for p in c["points"]) for c in many["curves"]}
    assert len(symbols) == 1  # the same draws for every curve


def test_a_broken_ber_point_is_refused(documents):
    _, doc = documents["ber-one"]
    broken = copy.deepcopy(doc)
    del broken["curves"][0]["points"][0]["ser_ci"]
    with pytest.raises(MimocError, match=r"missing key 'curves\[0\]\.points\[0\]\.ser_ci'"):
        validate_output("ber", broken)
    broken = copy.deepcopy(doc)
    broken["curves"][0]["detector"]["kind"] = "guess"
    with pytest.raises(MimocError, match="kind"):
        validate_output("ber", broken)


def test_inspect_and_compile_nest_what_they_describe(documents, workdir):
    for case, kind, key in (("inspect-checkpoint", "checkpoint", "checkpoint"),
                            ("inspect-onnx", "onnx", "artifact"),
                            ("inspect-crossbar", "crossbar", "artifact"),
                            ("inspect-ir", "ir", "ir")):
        _, doc = documents[case]
        assert doc["kind"] == kind and set(doc) - {"schema", "mimoc_version", "command"} \
            == {"path", "kind", key}
    _, compiled = documents["compile-onnx"]
    index = json.loads((workdir / "c-onnx" / "manifest.json").read_text())
    assert compiled["target"] == "onnx" and compiled["artifact"] == index
    _, compiled = documents["compile-crossbar"]
    index = json.loads((workdir / "c-xb" / "schedule.json").read_text())
    index.pop("program")  # the lowered program is left out: see mimoc inspect
    assert compiled["target"] == "crossbar" and compiled["artifact"] == index
    _, listed = documents["devices-one"]
    assert [d["name"] for d in listed["devices"]] == ["ftj-luo2022"]


def test_inspect_refuses_a_payload_of_another_kind(documents):
    _, doc = documents["inspect-checkpoint"]
    with pytest.raises(MimocError, match="missing key 'ir'"):
        validate_output("inspect", {**doc, "kind": "ir"})


@pytest.mark.parametrize(("case", "key"), [("compile-onnx", "graphs"),
                                           ("compile-crossbar", "totals"),
                                           ("inspect-onnx", "files"),
                                           ("inspect-crossbar", "matrices")])
def test_an_artifact_index_is_checked_by_the_artifact_schemas(documents, case, key):
    argv, doc = documents[case]
    broken = copy.deepcopy(doc)
    del broken["artifact"][key]
    with pytest.raises(MimocError, match=f"missing key 'artifact.{key}'"):
        validate_output(argv[0], broken)


def test_sweep_prints_its_results_json_and_nests_ber_results(documents, workdir):
    _, doc = documents["sweep"]
    assert doc == json.loads((workdir / "sweep" / "results.json").read_text())
    (job,) = doc["jobs"]
    assert [c["detector"]["name"] for c in job["result"]["curves"]] == [
        "mmse", "detnet/pytorch", "detnet/onnx-fp32"]
    assert job["result"]["slot_symbols"] == 14 == doc["sweep"]["link"]["slot"]
    broken = copy.deepcopy(doc)
    del broken["jobs"][0]["result"]["curves"][0]["points"][0]["ser"]
    with pytest.raises(MimocError, match=r"missing key 'jobs\[0\]\.result\.curves\[0\]"):
        validate_output("sweep", broken)
    broken = copy.deepcopy(doc)
    broken["sweep"]["run"]["batch_size"] = 5
    with pytest.raises(MimocError, match="unknown key 'sweep.run.batch_size'"):
        validate_output("sweep", broken)
