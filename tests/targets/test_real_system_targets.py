"""Real-system models (``--system real``: ``H [B, Nr, Nt]``, odd sizes allowed) compile to
ONNX and to the crossbar and equal the PyTorch model; ``mimoc budget`` takes one."""

from __future__ import annotations

import onnxruntime as ort
import pytest
import torch

from mimoc.api import compile as compile_model
from mimoc.cli import main
from mimoc.compiler.frontend import import_module
from mimoc.compiler.pipeline import run_pipeline
from mimoc.detectors import build_detector, save_detector
from mimoc.hardware.devices import load_device
from mimoc.runtime.imc import load_schedule
from mimoc.targets.crossbar import lower
from mimoc.targets.crossbar.artifact import build_schedule, write_artifact
from mimoc.targets.crossbar.config import CrossbarConfig
from mimoc.targets.crossbar.target import DEFAULT_PASSES

CONFIG = dict(nt=3, nr=5, modulation="bpsk", system="real", layers=2, hidden=8, v_dim=3)


def _link(batch: int, slot: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 5, 3, generator=g), torch.randn(batch, slot, 5, generator=g)


@pytest.mark.parametrize("family", ["detnet", "wesnet"])
def test_onnx_artifact_equals_pytorch(family):
    torch.manual_seed(0)
    model = build_detector(family, **CONFIG).eval()
    result = compile_model(model)
    session = ort.InferenceSession(result.models["detector"].SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    for batch, slot in ((1, 1), (3, 5), (2, 14)):
        H, y = _link(batch, slot, batch)
        with torch.no_grad():
            want = model(H, y)
        got = torch.from_numpy(session.run(None, {"H": H.numpy(), "y": y.numpy()})[0])
        assert got.shape == (batch, slot, 3)
        assert float((got - want).abs().max() / want.abs().max()) < 1e-5


def test_crossbar_ideal_device_equals_pytorch(tmp_path):
    torch.manual_seed(1)
    model = build_detector("detnet", **CONFIG).eval()
    graph = run_pipeline(import_module(model), list(DEFAULT_PASSES) + [lower.PASS]).graph
    assert tuple(graph.node("H").shape[1:]) == (5, 3)
    built = build_schedule(graph, load_device("fefet-jerry2017"),
                           CrossbarConfig(mc_draws=4, array=(4, 4)),
                           model={"name": model.family, "config": model.config.to_dict()})
    assert built.schedule["calibration"]["system"] == "real"
    write_artifact(built, tmp_path / "xb")
    H, y = _link(2, 3, 7)
    with torch.no_grad():
        want = model(H, y)
    got = load_schedule(tmp_path / "xb").detect(H, y, ideal=True)
    assert torch.allclose(got, want, atol=1e-5, rtol=0), (got - want).abs().max()


def test_cli_compile_ber_and_budget_of_a_real_model(tmp_path, capsys):
    torch.manual_seed(2)
    path = tmp_path / "real.pt"
    save_detector(build_detector("detnet", **CONFIG), path)
    assert main(["compile", str(path), "-o", str(tmp_path / "onnx")]) == 0
    code = main(["ber", str(tmp_path / "onnx"), "--detector", f"{path},zf", "--snr", "4",
                 "--max-symbols", "300"])
    out, err = capsys.readouterr()
    assert code == 0, err
    rows = {line.split()[0]: line.split()[2] for line in out.splitlines()
            if line.startswith((str(path), str(tmp_path / "onnx")))}
    assert len(set(rows.values())) == 1, rows  # the artifact decides as the model does
    code = main(["budget", str(path), "--target", "onnx", "--snr", "4", "--max-symbols",
                 "200"])
    out, err = capsys.readouterr()
    assert code == 0, err
