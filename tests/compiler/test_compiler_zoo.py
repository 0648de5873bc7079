"""Differential tests for the zoo families (tiny configs): PyTorch vs IR interpreter, before
and after the default passes, and the slot/symbol stages, within 1e-5 relative (fp32)."""

from __future__ import annotations

import pytest
import torch
from independent_detectors import random_link

from mimoc.compiler.flops import count_flops
from mimoc.compiler.frontend import import_module
from mimoc.compiler.interpreter import run
from mimoc.compiler.ir import Rate
from mimoc.compiler.pipeline import default_passes, run_pipeline
from mimoc.compiler.stages import run_stages, split_stages
from mimoc.detectors import FAMILIES, build_detector

CONFIGS = {
    "detnet": dict(nt=2, nr=4, modulation="qpsk", layers=2, hidden=16, v_dim=4),
    "detnet-16qam": dict(nt=2, nr=4, modulation="16qam", layers=2, hidden=16, v_dim=4),
    "wesnet": dict(nt=2, nr=4, modulation="qpsk", layers=2, hidden=16, v_dim=4),
    "sdnet": dict(nt=2, nr=4, modulation="qpsk", nconv=1, channels=2),
}
# RE-MIMO (slow to export: attention over a dynamic user dim) is in test_compiler_remimo.py


def family_of(key: str) -> str:
    return key.split("-")[0]


def test_every_family_has_a_config():
    assert set(FAMILIES) <= {family_of(k) for k in CONFIGS} | {"remimo"}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def compiled(request):
    torch.manual_seed(0)
    model = build_detector(family_of(request.param), **CONFIGS[request.param]).eval()
    graph = import_module(model)
    result = run_pipeline(graph, default_passes("onnx"))
    return request.param, model, graph, result.graph


def rel_err(a, b):
    return float((a - b).abs().max() / b.abs().max())


def test_interpreter_passes_and_stages_match_pytorch(compiled):
    key, model, graph, optimized = compiled
    config = CONFIGS[key]
    user_counts = [config["nt"]] + ([config["nt_min"]] if "nt_min" in config else [])
    stages = split_stages(optimized)
    for nt in user_counts:  # RE-MIMO: one compiled graph for every user count
        H, y = random_link(nt, config["nr"], batch=3, slot=5, seed=nt)
        with torch.no_grad():
            ref = model(H, y)
        for g in (graph, optimized):
            out, = run(g, {"H": H, "y": y})
            assert out.shape == ref.shape and rel_err(out, ref) < 1e-5
        staged, = run_stages(stages, {"H": H, "y": y})
        assert rel_err(staged, ref) < 1e-5


def test_split_channel_hoists_channel_work(compiled):
    key, _, graph, optimized = compiled
    assert count_flops(optimized).per_symbol <= count_flops(graph).per_symbol
    assert any(n.rate == Rate.SLOT and n.op not in ("Input",) for n in optimized.nodes), key
    assert "BatchNorm" not in {n.op for n in optimized.nodes}
    stages = split_stages(optimized)
    assert stages.state and all(stages.slot.node(s).rate == Rate.SLOT for s in stages.state)
