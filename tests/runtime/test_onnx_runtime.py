"""mimoc.runtime: an artifact detects like the PyTorch model (whole and staged), plugs into
the BER engine with the same SER on the same draws, and ``mimoc bench`` times all paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from independent_detectors import random_link
from json_docs import curves_by_name, parse_output

from mimoc.api import compile as compile_model
from mimoc.cli import main
from mimoc.detectors import build_detector, save_detector
from mimoc.errors import MimocError, UsageError
from mimoc.runtime import load_artifact, session_options
from mimoc.runtime.bench import format_bench, run_bench
from mimoc.sim.ber import from_module, simulate
from mimoc.sim.system import MIMOSystem

CONFIG = dict(nt=2, nr=4, modulation="qpsk", layers=3, hidden=16, v_dim=4)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    torch.manual_seed(0)
    model = build_detector("detnet", **CONFIG).eval()
    root = tmp_path_factory.mktemp("rt")
    save_detector(model, root / "detnet.pt")
    compile_model(root / "detnet.pt", out=root / "art")
    return model, root


def test_detect_whole_and_staged_match_pytorch(compiled):
    model, root = compiled
    art = load_artifact(root / "art")
    for batch, slot in [(1, 1), (4, 14), (2, 3)]:
        H, y = random_link(2, 4, batch=batch, slot=slot, seed=batch)
        with torch.no_grad():
            ref = model(H, y)
        out = art.detect(H, y)
        assert isinstance(out, torch.Tensor) and out.shape == ref.shape
        staged = art.detect_staged(H.numpy(), y.numpy())
        assert isinstance(staged, np.ndarray)
        for value in (out, torch.from_numpy(staged)):
            assert float((value - ref).abs().max() / ref.abs().max()) < 1e-5
    # the slot state is reusable: symbols arriving in two pieces give the same result
    H, y = random_link(2, 4, batch=2, slot=6, seed=9)
    state = art.run_slot(H.numpy())
    parts = [art.run_symbols(y[:, :2].numpy(), state), art.run_symbols(y[:, 2:].numpy(), state)]
    assert np.allclose(np.concatenate(parts, axis=1), art.detect(H.numpy(), y.numpy()),
                       rtol=1e-6, atol=1e-7)


def test_shape_mismatch_and_bad_paths_are_user_errors(compiled, tmp_path):
    _, root = compiled
    art = load_artifact(root / "art")
    with pytest.raises(UsageError, match="expects"):
        art.detect(np.zeros((1, 8, 6), np.float32), np.zeros((1, 2, 8), np.float32))
    with pytest.raises(UsageError, match="same B"):
        art.detect(np.zeros((2, 8, 4), np.float32), np.zeros((1, 2, 8), np.float32))
    with pytest.raises(MimocError, match="not an artifact"):
        load_artifact(tmp_path / "nothing")
    with pytest.raises(UsageError):
        session_options(0)


def test_engine_gives_the_same_errors_as_the_model_on_the_same_draws(compiled):
    model, root = compiled
    art = load_artifact(root / "art")
    system = MIMOSystem(nt=2, nr=4, modulation="qpsk", slot=3)
    result = simulate({"torch": from_module(model), "onnx": art.engine()}, system, [0.0, 8.0],
                      max_symbols=6000, min_errors=10_000, seed=3)
    for a, b in zip(result.curves["torch"], result.curves["onnx"], strict=True):
        assert (a.errors, a.bit_errors, a.symbols) == (b.errors, b.bit_errors, b.symbols)


def test_ber_cli_compares_artifact_and_model(capsys, compiled):
    _, root = compiled
    code = main(["ber", str(root / "art"), "--detector", str(root / "detnet.pt"), "--snr", "0,6",
                 "--max-symbols", "4000", "--slot", "2", "--json", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = parse_output("ber", out)
    assert (data["nt"], data["nr"], data["modulation"]) == (2, 4, "qpsk")  # from the models
    art = str(root / "art")
    assert data["curves"][1]["detector"] == {"name": art, "kind": "artifact", "spec": art,
                                             "path": art, "target": "onnx"}
    curves = curves_by_name(data)
    model_curve, artifact_curve = (curves[k] for k in (str(root / "detnet.pt"), art))
    assert [p["errors"] for p in model_curve] == [p["errors"] for p in artifact_curve]
    assert [p["ser"] for p in model_curve] == [p["ser"] for p in artifact_curve]


def test_ber_cli_refuses_mismatched_sizes_and_non_artifacts(capsys, compiled, tmp_path):
    _, root = compiled
    code = main(["ber", str(root / "art"), "--nt", "3", "--snr", "0"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--nt 2 --nr 4 --mod qpsk" in err
    code = main(["ber", str(tmp_path), "--snr", "0"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "not a compiled artifact" in err


def test_bench_times_every_path(compiled):
    model, root = compiled
    art = load_artifact(root / "art")
    result = run_bench(model, art, batches=(1, 3), slot=4, min_time=0.01)
    assert {(t.path, t.batch) for t in result.timings} == {
        (p, b) for p in ("pytorch", "onnx-export", "mimoc", "mimoc-staged") for b in (1, 3)}
    assert result.gemm_peak_gflops > 0 and result.flops_per_slot > 0
    assert all(t.median_s > 0 and 0 < t.peak_share < 1 for t in result.timings)
    data = result.to_dict()
    assert set(data["speedup"]["1"]) == {"pytorch", "onnx-export", "mimoc-staged"}
    assert "speed-up at batch 3" in format_bench(result)


def test_bench_cli_json(capsys, compiled):
    _, root = compiled
    code = main(["bench", str(root / "art"), "--batch", "1", "--slot", "2", "--min-time",
                 "0.01", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    # the model file was found beside the artifact (by its hash)
    data = parse_output("bench", out)
    assert data["kind"] == "onnx" and data["slot_symbols"] == 2
    assert {t["path"] for t in data["timings"]} == {"pytorch", "onnx-export", "mimoc",
                                                    "mimoc-staged"}
    code = main(["bench", str(root / "art"), "--batch", "0"])
    assert code == 2 and capsys.readouterr().err.count("\n") == 1


def test_bench_skips_the_plain_export_when_torch_cannot_export(capfd, tmp_path):
    """SDNet's pseudo-inverse (aten::linalg_inv) has no TorchScript-exporter symbolic: the
    onnx-export path is skipped with a note and --json stays parseable (the exporter's
    C++ graph dump to stdout is silenced)."""
    torch.manual_seed(0)
    model = build_detector("sdnet", nt=2, nr=4, modulation="qpsk", nconv=1, channels=2).eval()
    save_detector(model, tmp_path / "sdnet.pt")
    code = main(["bench", str(tmp_path / "sdnet.pt"), "--batch", "1", "--slot", "2",
                 "--min-time", "0.01", "--json"])
    out, err = capfd.readouterr()
    assert code == 0, err
    data = parse_output("bench", out)
    assert {t["path"] for t in data["timings"]} == {"pytorch", "mimoc", "mimoc-staged"}
    assert len(data["notes"]) == 1 and "onnx-export skipped" in data["notes"][0]
