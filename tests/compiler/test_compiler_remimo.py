"""RE-MIMO through the compiler: one graph with a dynamic user count ``U`` (``H [B, 2Nr,
2U]``) matches PyTorch for several user counts, before and after the default passes and
through the slot/symbol stages (1e-5 relative, fp32)."""

from __future__ import annotations

import pytest
import torch
from independent_detectors import random_link

from mimoc.compiler.dims import Sym
from mimoc.compiler.flops import count_flops
from mimoc.compiler.frontend import import_module
from mimoc.compiler.interpreter import run
from mimoc.compiler.pipeline import default_passes, run_pipeline
from mimoc.compiler.stages import run_stages, split_stages
from mimoc.detectors import build_detector

CONFIG = dict(nt=3, nr=4, modulation="qpsk", nt_min=2, d_model=8, heads=2, ff=8,
              predictor_hidden=8, embed_hidden=8, iterations=1)


@pytest.fixture(scope="module")
def compiled():
    torch.manual_seed(0)
    model = build_detector("remimo", **CONFIG).eval()
    graph = import_module(model)
    return model, graph, run_pipeline(graph, default_passes("onnx")).graph


def test_user_count_is_a_dynamic_dim(compiled):
    _, graph, _ = compiled
    H = graph.node("H")
    assert H.shape[2] == Sym(2, ("U",)) and graph.dim_sizes == {"U": CONFIG["nt"]}
    assert graph.node("x_hat").shape[2] == Sym(2, ("U",))
    assert count_flops(graph).per_symbol > count_flops(graph, {"U": 2}).per_symbol


@pytest.mark.parametrize("nt", [3, 2])
def test_matches_pytorch_for_every_user_count(compiled, nt):
    model, graph, optimized = compiled
    H, y = random_link(nt, CONFIG["nr"], batch=2, slot=4, seed=nt)
    with torch.no_grad():
        ref = model(H, y)
    for g in (graph, optimized):
        out, = run(g, {"H": H, "y": y})
        assert out.shape == ref.shape
        assert float((out - ref).abs().max() / ref.abs().max()) < 1e-5
    staged, = run_stages(split_stages(optimized), {"H": H, "y": y})
    assert float((staged - ref).abs().max() / ref.abs().max()) < 1e-5
