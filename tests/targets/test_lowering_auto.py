"""``--lowering w4-int8`` (4-bit codes in int8 kernels) and ``--lowering auto`` (timed
candidates, decision check, the record in the manifest)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

import mimoc
from mimoc.detectors import build_detector, save_detector
from mimoc.errors import UsageError
from mimoc.runtime import load
from mimoc.targets.onnx import autoselect
from mimoc.targets.onnx.target import quantized_passes

CONFIG = dict(nt=2, nr=4, modulation="qpsk", layers=2, hidden=16, v_dim=4)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("auto") / "detnet.pt"
    save_detector(build_detector("detnet", **CONFIG).eval(), path)
    return path


def _run(result, H, y):
    session = ort.InferenceSession(result.models["detector"].SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return session.run(None, {"H": H.numpy(), "y": y.numpy()})[0]


def test_w4_int8_reproduces_the_faithful_lowering(checkpoint):
    """w4-int8 computes the recipe's codes and integer sums: w4a4's outputs (fp32
    emulation) to rounding, and the same hard decisions; its kernels are the int8 ones."""
    H, y = autoselect.check_set(build_detector("detnet", **CONFIG).config)
    faithful = mimoc.compile(checkpoint, quant="minmax", lowering="w4a4")
    codes = mimoc.compile(checkpoint, quant="minmax", lowering="w4-int8")
    a, b = _run(faithful, H, y), _run(codes, H, y)
    assert np.abs(a - b).max() <= 1e-4 * np.abs(a).max()
    assert (np.sign(a) == np.sign(b)).mean() >= 0.999
    ops = {n.op_type for n in codes.models["detector"].graph.node}
    assert "MatMulIntegerToFloat" in ops and "MatMulNBits" not in ops
    assert codes.manifest["quantization"]["faithful"].startswith("yes")


def test_auto_is_the_default_for_a_quantized_model(checkpoint, tmp_path):
    result = mimoc.compile(checkpoint, out=tmp_path / "a", quant="minmax")
    selection = result.manifest["lowering_selection"]
    names = [c["lowering"] for c in selection["candidates"]]
    assert names == list(autoselect.candidates(_recipe(checkpoint)))
    assert result.manifest["lowering"] == selection["chosen"]
    chosen = next(c for c in selection["candidates"] if c["lowering"] == selection["chosen"])
    assert chosen["correct"] and chosen["agreement"] >= autoselect.MIN_AGREEMENT
    best = min(c["median_us"]["B=1"] for c in selection["candidates"] if c["correct"])
    assert chosen["median_us"]["B=1"] <= best * (1 + autoselect.TIE) + 1e-9
    assert selection["buckets"][0] == {"from_batch": 1, "lowering": selection["chosen"]}
    assert ("batch_dispatch" in result.manifest) == (len(selection["buckets"]) > 1)
    assert all(set(c["median_us"]) == {"B=1", "B=64"} and min(c["median_us"].values()) > 0
               for c in selection["candidates"])
    assert selection["cpu"]
    load(tmp_path / "a")  # the manifest passes its schema


def _recipe(path):
    from mimoc.detectors import load_detector
    from mimoc.quant import quantize

    return quantize(load_detector(path), "minmax")


def test_explicit_lowering_keeps_the_artifact_deterministic(checkpoint):
    one = mimoc.compile(checkpoint, quant="minmax", lowering="w4")
    two = mimoc.compile(checkpoint, quant="minmax", lowering="w4")
    assert "lowering_selection" not in one.manifest
    assert one.artifact.files() == two.artifact.files()


def test_the_fastest_correct_candidate_wins(checkpoint, monkeypatch):
    """The decision, with fixed timings: the fastest candidate is passed over when its
    decisions differ from the quantized reference's; the next fastest wins."""
    recipe = _recipe(checkpoint)
    model = build_detector("detnet", **CONFIG)
    names = autoselect.candidates(recipe)
    times = {name: 1e-3 * (i + 2) for i, name in enumerate(names)}
    times[names[-1]] = 1e-4  # the fastest, but made to disagree below
    monkeypatch.setattr(autoselect, "time_sessions", lambda sessions, feeds: {
        n: {b: times[n] for b in feeds} for n in sessions})
    real = autoselect._decisions
    calls = iter(range(len(names) + 1))

    def decisions(x_hat, constellation):
        out = real(x_hat, constellation)
        return out if next(calls) < len(names) else out + 1  # the last candidate differs
    monkeypatch.setattr(autoselect, "_decisions", decisions)
    selection = autoselect.select_lowering(model, recipe, lambda name: quantized_passes(
        recipe, None, name))
    assert selection["chosen"] == names[0]
    assert not selection["candidates"][-1]["correct"]


def test_auto_needs_a_quantized_model(checkpoint):
    with pytest.raises(UsageError, match="needs a quantized model"):
        mimoc.compile(checkpoint, lowering="auto")


def test_a_lowering_faster_at_large_batches_is_dispatched_by_batch(checkpoint, tmp_path,
                                                                    monkeypatch):
    """Fixed timings where int8 wins at B = 1 and fp32 at B = 64 (an int8 recipe: both
    agree with its reference): the artifact keeps both detectors, the manifest says from
    which batch fp32 runs, and the runtime's detect runs the large-batch one from there on
    (its outputs are fp32's, not int8's)."""
    times = {"int8": {1: 100e-6, 64: 5000e-6}, "fp32": {1: 150e-6, 64: 3000e-6}}
    monkeypatch.setattr(autoselect, "time_sessions", lambda sessions, feeds: {
        n: {b: times[n][b] for b in feeds} for n in sessions})
    result = mimoc.compile(checkpoint, out=tmp_path / "a", quant="int8")
    selection = result.manifest["lowering_selection"]
    start = autoselect.crossover(times["int8"], times["fp32"])
    assert start == 3  # 100 + 77.8 (B - 1) us against 150 + 45.2 (B - 1) us: 256 > 240
    assert selection["chosen"] == result.manifest["lowering"] == "int8"
    assert selection["buckets"] == [{"from_batch": 1, "lowering": "int8"},
                                    {"from_batch": start, "lowering": "fp32"}]
    assert result.manifest["batch_dispatch"][1] == {"from_batch": start, "lowering": "fp32",
                                                     "file": "detector.fp32.onnx"}
    art = load(tmp_path / "a")
    H, y = autoselect.check_set(build_detector("detnet", **CONFIG).config)
    H, y = H[:8].numpy(), y[:8].numpy()
    ran = []
    for _, session in art._by_batch:
        original = session.run
        monkeypatch.setattr(session, "run", lambda names, feed, o=original, s=session: (
            ran.append(s.file.name), o(names, feed))[1])
    large = ort.InferenceSession((tmp_path / "a" / "detector.fp32.onnx").read_bytes(),
                                providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(art.detect(H, y), large.run(None, {"H": H, "y": y})[0],
                               atol=1e-5)
    art.detect(H[:start - 1], y[:start - 1])
    assert ran == ["detector.fp32.onnx", "detector.onnx"]


def test_crossover_stays_in_the_timed_range():
    assert autoselect.crossover({1: 1.0, 64: 2.0}, {1: 1.0, 64: 3.0}) == 64  # never better
    assert autoselect.crossover({1: 1.0, 64: 9.0}, {1: 1.0, 64: 2.0}) == 2
    assert autoselect.crossover({1: 1.0, 64: 2.0}, {1: 50.0, 64: 1.9}) == 64


def test_a_batch_dispatch_naming_an_unlisted_file_is_refused(checkpoint, tmp_path,
                                                             monkeypatch):
    import json

    from mimoc.errors import ModelFileError

    result = mimoc.compile(checkpoint, out=tmp_path / "a", quant="minmax", lowering="w4")
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    manifest["batch_dispatch"] = [{"from_batch": 1, "lowering": "w4", "file": "detector.onnx"},
                                  {"from_batch": 8, "lowering": "int8",
                                   "file": "detector.int8.onnx"}]
    (tmp_path / "a" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="batch_dispatch"):
        load(tmp_path / "a")
    assert result.manifest["lowering"] == "w4"


def test_a_faithful_tie_never_costs_speed_against_fp32(checkpoint, monkeypatch):
    """int8 (earlier, more faithful) is within TIE of fp32 but slower: fp32 wins; when
    int8 is as fast, the faithful one wins the tie."""
    from mimoc.detectors import load_detector

    recipe = quantize_int8(checkpoint)
    model = load_detector(checkpoint)  # the seeded weights: fp32 agrees with the reference
    for int8_us, expected in ((101.0, "fp32"), (100.0, "int8")):
        times = {"int8": int8_us * 1e-6, "fp32": 100e-6}
        monkeypatch.setattr(autoselect, "time_sessions", lambda sessions, feeds, t=times: {
            n: {b: t[n] for b in feeds} for n in sessions})
        selection = autoselect.select_lowering(model, recipe, lambda name: quantized_passes(
            recipe, None, name))
        assert selection["chosen"] == expected and len(selection["buckets"]) == 1


def quantize_int8(path):
    from mimoc.detectors import load_detector
    from mimoc.quant import quantize

    return quantize(load_detector(path), "int8")
