"""What an ONNX file says about itself: ``metadata_props`` (family, Nt, Nr, modulation,
version, source hash, stage, lowering; sorted), inferred shapes (``value_info``), slot-state
names that say what the value is (``HtH_scaled``, not ``mul``), and ``--static-shapes``:
fixed dims in the models and the manifest, the runtime refusing other sizes, and every bad
spec one line."""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
import pytest
import torch
from independent_detectors import random_link

from mimoc.api import compile as compile_model
from mimoc.cli import main
from mimoc.detectors import build_detector, save_detector
from mimoc.errors import UsageError
from mimoc.runtime import load_artifact
from mimoc.targets.onnx.finish import parse_static_shapes

CONFIG = dict(nt=2, nr=4, modulation="qpsk", layers=2, hidden=16, v_dim=4)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "detnet.pt"
    save_detector(build_detector("detnet", **CONFIG).eval(), path)
    return path


@pytest.fixture(scope="module")
def artifacts(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    dynamic = compile_model(checkpoint, out=out / "dynamic")
    static = compile_model(checkpoint, out=out / "static", static_shapes="B=1,S=14")
    return dynamic, static


def test_every_model_carries_sorted_metadata(artifacts, checkpoint):
    dynamic, _ = artifacts
    sha = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    for stage, model in dynamic.models.items():
        keys = [p.key for p in model.metadata_props]
        assert keys == sorted(keys), stage
        meta = {p.key: p.value for p in model.metadata_props}
        assert meta == {"mimoc.family": "detnet", "mimoc.nt": "2", "mimoc.nr": "4",
                        "mimoc.modulation": "qpsk", "mimoc.version": mimoc_version(),
                        "mimoc.source_sha256": sha, "mimoc.stage": stage,
                        "mimoc.lowering": "fp32"}, stage


def mimoc_version() -> str:
    from mimoc import __version__

    return __version__


def test_training_snr_convention_is_recorded_when_the_checkpoint_has_it(tmp_path):
    torch.manual_seed(0)
    model = build_detector("detnet", **CONFIG).eval()
    save_detector(model, tmp_path / "m.pt", training={"options": {"snr_def": "per-rx"}})
    result = compile_model(tmp_path / "m.pt")
    for stage, onnx_model in result.models.items():
        meta = {p.key: p.value for p in onnx_model.metadata_props}
        assert meta["mimoc.snr_def"] == "per-rx", stage


def test_in_memory_model_has_no_source_hash():
    torch.manual_seed(0)
    result = compile_model(build_detector("detnet", **CONFIG).eval())
    meta = {p.key for p in result.models["detector"].metadata_props}
    assert "mimoc.source_sha256" not in meta and "mimoc.family" in meta


def test_models_hold_inferred_shapes_and_pass_the_full_check(artifacts):
    for result in artifacts:
        for stage, model in result.models.items():
            onnx.checker.check_model(model, full_check=True)
            if stage != "slot":  # the detnet slot stage is one Gram and one scale
                assert len(model.graph.value_info) > len(model.graph.node) // 2, stage
            shapes = {v.name: [d.dim_param or d.dim_value
                               for d in v.type.tensor_type.shape.dim]
                      for v in model.graph.value_info}
            assert all(shapes.values()), stage  # every intermediate has a known rank


def test_slot_state_names_say_what_the_value_is(artifacts):
    dynamic, _ = artifacts
    state = [s["name"] for s in dynamic.manifest["slot_state"]]
    assert state == ["H", "HtH_scaled"]
    assert [o.name for o in dynamic.models["slot"].graph.output] == state
    symbol_inputs = {i.name for i in dynamic.models["symbol"].graph.input}
    assert symbol_inputs == {"y", *state}


def test_static_shapes_fix_the_dims_and_the_runtime_refuses_other_sizes(artifacts):
    dynamic, static = artifacts
    assert static.manifest["static_shapes"] == {"B": 1, "S": 14}
    assert "static_shapes" not in dynamic.manifest
    for model in static.models.values():
        for value in list(model.graph.input) + list(model.graph.output):
            dims = value.type.tensor_type.shape.dim
            assert all(d.HasField("dim_value") for d in dims), value.name
    assert static.manifest["graphs"]["detector"]["inputs"][1]["shape"] == [1, 14, 8]
    fixed, free = load_artifact(static.path), load_artifact(dynamic.path)
    H, y = random_link(2, 4, batch=1, slot=14, seed=3)
    assert np.array_equal(fixed.detect(H.numpy(), y.numpy()), free.detect(H.numpy(), y.numpy()))
    assert np.array_equal(fixed.detect_staged(H, y), free.detect_staged(H, y))
    H2, y2 = random_link(2, 4, batch=2, slot=5, seed=4)
    with pytest.raises(UsageError, match="static-shapes") as err:
        fixed.detect(H2, y2)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("spec, expected", [
    ("B=1,S=14", {"B": 1, "S": 14}), (" S = 7 ", {"S": 7}), ({"S": 2, "B": 3}, {"B": 3, "S": 2}),
    ("U=4,B=1", {"B": 1, "U": 4}), (None, None)])
def test_static_shapes_spec_parses(spec, expected):
    parsed = parse_static_shapes(spec)
    assert parsed == expected
    assert parsed is None or list(parsed) == [d for d in "BSU" if d in parsed]


@pytest.mark.parametrize("spec", ["B=0", "B=-1", "X=1", "B=1,B=2", "B", "B=x", "", "=3",
                                  "B=1.5", {}, {"B": True}, {"B": 2.0}, {"N": 1}, 5,
                                  "B=99999999999"])
def test_bad_static_shapes_are_one_line_usage_errors(spec):
    with pytest.raises(UsageError) as err:
        parse_static_shapes(spec)
    assert "\n" not in str(err.value)


def test_cli_flag_compiles_and_refuses(capsys, checkpoint, tmp_path):
    code = main(["compile", str(checkpoint), "-o", str(tmp_path / "a"),
                 "--static-shapes", "B=2,S=3"])
    capsys.readouterr()
    assert code == 0 and load_artifact(tmp_path / "a").manifest["static_shapes"] == {
        "B": 2, "S": 3}
    code = main(["compile", str(checkpoint), "-o", str(tmp_path / "b"),
                 "--static-shapes", "K=2"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "unknown dim 'K'" in err
    assert not (tmp_path / "b").exists()
    code = main(["compile", str(checkpoint), "-o", str(tmp_path / "c"), "--target",
                 "crossbar", "--static-shapes", "B=1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "onnx target" in err
