"""The iree target: a tiny DetNet compiled by IREE to .vmfb modules, run by the IREE
runtime, against PyTorch and onnxruntime; the artifact's checks; inspect, ber, bench."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import mimoc
from mimoc.cli import main
from mimoc.detectors import build_detector, save_detector
from mimoc.errors import ModelFileError, UsageError
from mimoc.runtime import load
from mimoc.sim.system import MIMOSystem

# IREE compiles each module in seconds: CI runs these (-m "slow or not slow")
pytestmark = pytest.mark.slow


CONFIG = dict(nt=2, nr=4, modulation="qpsk", layers=3, hidden=16, v_dim=4)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """``(model, iree dir, onnx dir)``: one IREE compile (three modules) for the module."""
    root = tmp_path_factory.mktemp("iree")
    torch.manual_seed(0)
    model = build_detector("detnet", **CONFIG).eval()
    save_detector(model, root / "detnet.pt")
    mimoc.compile(root / "detnet.pt", target="iree", out=root / "iree",
                  static_shapes="B=2,S=14")
    mimoc.compile(root / "detnet.pt", out=root / "onnx")
    return model, root / "iree", root / "onnx"


def link(batch: int, slot: int, seed: int = 1):
    system = MIMOSystem(nt=CONFIG["nt"], nr=CONFIG["nr"], slot=slot)
    sample = system.sample(batch, 6.0, generator=torch.Generator().manual_seed(seed))
    return sample.H, sample.y


def test_iree_equals_pytorch_and_onnxruntime(compiled):
    """Seeded links of a B and S the modules were not compiled for (cut and padded): the
    same hard decisions as PyTorch and onnxruntime, outputs within 1e-4."""
    model, iree_dir, onnx_dir = compiled
    H, y = link(batch=5, slot=17)
    with torch.no_grad():
        reference = model(H, y).numpy()
    x_iree = load(iree_dir).detect(H.numpy(), y.numpy())
    x_ort = load(onnx_dir).detect(H.numpy(), y.numpy())
    scale = np.abs(reference).max()
    assert x_iree.shape == reference.shape
    assert np.abs(x_iree - reference).max() <= 1e-4 * scale
    assert np.abs(x_iree - x_ort).max() <= 1e-4 * scale
    assert (np.sign(x_iree) == np.sign(reference)).all()
    staged = load(iree_dir).detect_staged(H, y)
    assert np.abs(staged - x_iree).max() <= 1e-5 * scale


def test_the_manifest_records_the_compile(compiled):
    _, iree_dir, _ = compiled
    manifest = json.loads((iree_dir / "manifest.json").read_text())
    assert manifest["target"] == "iree" and manifest["static_shapes"] == {"B": 2, "S": 14}
    assert {"--iree-opt-data-tiling", "--iree-llvmcpu-enable-ukernels=all",
            "--iree-llvmcpu-target-cpu=host"} <= set(manifest["iree"]["flags"])
    assert sorted(manifest["files"]) == ["detector.vmfb", "slot.vmfb", "symbol.vmfb"]
    state = load(iree_dir).run_slot(link(2, 14)[0])
    assert set(state) == {io["name"] for io in manifest["slot_state"]}


def test_a_damaged_module_is_refused_in_one_line(compiled, tmp_path, capsys):
    _, iree_dir, _ = compiled
    damaged = tmp_path / "damaged"
    shutil.copytree(iree_dir, damaged)
    with (damaged / "symbol.vmfb").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelFileError, match="symbol.vmfb' was modified after compiling"):
        load(damaged)
    for command in (["inspect", str(damaged)], ["ber", str(damaged), "--snr", "10"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "modified after compiling" in err, err


def test_inspect_ber_and_bench_run_it(compiled, capsys):
    _, iree_dir, _ = compiled
    assert main(["inspect", str(iree_dir)]) == 0
    assert "mimoc IREE artifact" in capsys.readouterr().out
    assert main(["ber", str(iree_dir), "--snr", "10", "--max-symbols", "500",
                 "--no-progress", "--json"]) == 0
    capsys.readouterr()
    assert main(["bench", str(iree_dir), "--batches", "1,3", "--min-time", "0.01",
                 "--json"]) == 0
    timings = json.loads(capsys.readouterr().out)["timings"]
    assert {t["batch"] for t in timings} == {1, 3}


def test_bad_options_fail_before_compiling(compiled, tmp_path):
    model, _, _ = compiled
    with pytest.raises(UsageError, match="unknown --cpu 'pentium'"):
        mimoc.compile(model, target="iree", cpu="pentium")
    with pytest.raises(UsageError, match="--cpu is an option of the iree target"):
        mimoc.compile(model, cpu="aarch64")


def test_budget_names_the_iree_target():
    from mimoc.studies.budget import parse_target

    assert parse_target("iree").kind == "iree"
    assert parse_target("onnx-cpu-w4-int8").lowering == "w4-int8"


def test_cpu_names_map_to_triples_and_flags():
    from mimoc.targets.iree.cpus import cpu_flags, host_triple

    assert cpu_flags("host") == (host_triple(), ["--iree-llvmcpu-target-cpu=host"])
    assert cpu_flags("aarch64") == ("aarch64-linux-gnu", [
        "--iree-llvmcpu-target-triple=aarch64-linux-gnu", "--iree-llvmcpu-target-cpu=generic"])
    assert cpu_flags("cortex-a76")[0] == "aarch64-linux-gnu"
    assert cpu_flags("x86-64-v3")[1][-1] == "--iree-llvmcpu-target-cpu=x86-64-v3"
    for bad in ("", "host; rm", "Pentium 4"):
        with pytest.raises(UsageError):
            cpu_flags(bad)
