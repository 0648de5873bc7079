"""The quantize pass's contract: its report, its ordering rules and its one-line errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mimoc.compiler.frontend import import_module
from mimoc.compiler.passes.quantize import Quantize
from mimoc.compiler.pipeline import PASSES, run_pipeline
from mimoc.detectors import build_detector
from mimoc.errors import UsageError
from mimoc.quant.spec import ActQuant, LayerQuant, QuantRecipe


def recipe_for(model: nn.Module, act: bool = True, drop: int = 0) -> QuantRecipe:
    layers = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear | nn.Conv2d):
            scale = m.weight.detach().abs().flatten(1).amax(1)[drop:] / 7
            layers[name] = LayerQuant(4, scale, ActQuant(4, "dynamic", 0.5) if act else None)
    return QuantRecipe("kaq-ptq", 4, layers)


@pytest.fixture(scope="module")
def sdnet():
    torch.manual_seed(0)
    model = build_detector("sdnet", nt=2, nr=4, modulation="qpsk", nconv=1, channels=2).eval()
    return model, import_module(model)


def test_report_lists_every_layer_and_folded_batchnorms(sdnet):
    model, graph = sdnet
    result = run_pipeline(graph, [Quantize(recipe_for(model)), "canonicalize"])
    notes = result.records[0].notes
    assert notes[-1] == "quantized 4 layers (kaq-ptq, 4-bit weights, 4-bit dynamic activations)"
    assert sum("BatchNorm folded per channel" in n for n in notes) == 3
    assert not any(n.op == "BatchNorm" for n in result.graph.nodes)
    assert sum(n.op == "FakeQuant" for n in result.graph.nodes) == 4
    details = result.records[0].details
    assert [ly["scope"] for ly in details["layers"]] == ["convs.0", "convs.1", "convs.2", "fc"]


def test_quantize_after_batchnorm_folding_is_refused(sdnet):
    model, graph = sdnet
    with pytest.raises(UsageError, match="run quantize before canonicalize"):
        run_pipeline(graph, ["canonicalize", Quantize(recipe_for(model))])


def test_quantize_order_is_declared_for_every_model():
    """Not only where a BatchNorm shows it: quantize declares that it precedes canonicalize,
    split-linear and hoist-conv-rows, and drop-input-quant that it follows quantize; the
    pipeline checks both before any pass runs."""
    torch.manual_seed(0)
    model = build_detector("detnet", nt=2, nr=4, modulation="qpsk", layers=2, hidden=8,
                           v_dim=2).eval()
    graph = import_module(model)
    recipe = recipe_for(model)
    with pytest.raises(UsageError, match="^run quantize before split-linear: --passes "
                                         "split-channel,quantize,split-linear$"):
        run_pipeline(graph, ["split-channel", "split-linear", Quantize(recipe)])
    with pytest.raises(UsageError, match="^run quantize before drop-input-quant"):
        run_pipeline(graph, ["drop-input-quant", Quantize(recipe)])
    result = run_pipeline(graph, [Quantize(recipe), "drop-input-quant", "split-channel"])
    assert not any(n.op == "FakeQuant" for n in result.graph.nodes)


def test_scale_count_mismatch_and_missing_recipe_are_usage_errors(sdnet):
    model, graph = sdnet
    with pytest.raises(UsageError, match="outputs but the recipe has"):
        run_pipeline(graph, [Quantize(recipe_for(model, drop=1))])
    with pytest.raises(UsageError, match="needs a recipe"):
        run_pipeline(graph, [PASSES["quantize"]])


def test_weight_only_layers_keep_their_scales_through_split_linear():
    torch.manual_seed(0)
    model = build_detector("detnet", nt=2, nr=4, modulation="qpsk", layers=2, hidden=8,
                           v_dim=2).eval()
    graph = import_module(model)
    result = run_pipeline(graph, [Quantize(recipe_for(model, act=False)), "canonicalize",
                                  "split-channel", "split-linear"])
    cut = [n for n in result.graph.nodes if n.op == "Linear" and n.scope == "blocks.0.fc1"]
    assert len(cut) == 1  # block 0 reads [H^T y, 0, 0, 0]: the zero columns are gone
    weight = result.graph.node(cut[0].inputs[1])
    assert weight.shape == (8, 4) and weight.type.quant is not None
    assert len(weight.type.quant.scale) == 8


@pytest.mark.parametrize("difference, slices", [((0, 8, 4), False), ((1, 9, 3), True)])
def test_difference_coding_reuses_the_concat_operands_or_slices(difference, slices):
    """DetNet's coded input is built from its block Concat's own operands; a range that cuts
    through them takes Slices; either way the interpreter equals the torch reference."""
    from mimoc.compiler.interpreter import run
    from mimoc.quant import QuantizedDetector

    torch.manual_seed(0)
    model = build_detector("detnet", nt=2, nr=4, modulation="qpsk", layers=3, hidden=8,
                           v_dim=4).eval()
    base = recipe_for(model)
    recipe = QuantRecipe("kaq-ptq", 4, {
        name: LayerQuant(4, lq.weight_scale, lq.act,
                         difference if name.endswith("fc1") else None)
        for name, lq in base.layers.items()})
    result = run_pipeline(import_module(model), [Quantize(recipe), "canonicalize",
                                                 "split-channel"])
    ops = [n.op for n in result.graph.nodes]
    assert ("Slice" in ops) == slices
    assert ops.count("Sub") >= 2  # blocks 1 and 2 (block 0's x is zero: H^T y - 0 folds)
    assert any("input difference-coded" in note for note in result.records[0].notes)
    H, y = torch.randn(3, 8, 4), torch.randn(3, 5, 8)
    out, = run(result.graph, {"H": H.double(), "y": y.double()}, dtype=torch.float64)
    with torch.no_grad():
        ref = QuantizedDetector(model.double(), recipe)(H.double(), y.double())
    model.float()
    assert float((out - ref).abs().max() / ref.abs().max()) < 1e-6  # fp32 constants


def test_difference_coding_that_does_not_fit_is_a_usage_error():
    torch.manual_seed(0)
    model = build_detector("detnet", nt=2, nr=4, modulation="qpsk", layers=2, hidden=8,
                           v_dim=4).eval()
    base = recipe_for(model)
    recipe = QuantRecipe("kaq-ptq", 4, {
        name: LayerQuant(4, lq.weight_scale, lq.act, (0, 14, 4) if name == "blocks.1.fc1"
                         else None) for name, lq in base.layers.items()})
    with pytest.raises(UsageError, match="blocks.1.fc1.*does not fit"):
        run_pipeline(import_module(model), [Quantize(recipe)])


@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_sdnet_conv_rows_hoist_through_static_steps_only(mode):
    """A static FakeQuant is elementwise: the conv rows of H hoist to the slot stage and the
    result is unchanged; a dynamic step (an RMS over the whole image) stops the chain."""
    from mimoc.compiler.interpreter import run
    from mimoc.quant import QuantizedDetector

    torch.manual_seed(0)
    model = build_detector("sdnet", nt=2, nr=4, modulation="qpsk", nconv=1, channels=3).eval()
    layers = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear | nn.Conv2d):
            scale = m.weight.detach().abs().flatten(1).amax(1) / 7
            alpha = 0.05 if mode == "static" else 0.4
            layers[name] = LayerQuant(4, scale, ActQuant(4, mode, alpha))
    recipe = QuantRecipe("minmax", 4, layers)
    steps = [Quantize(recipe), "canonicalize", "split-channel", "hoist-conv-rows"]
    result = run_pipeline(import_module(model), steps)
    hoist = result.records[-1]
    hoisted = hoist.flops_after.per_symbol < hoist.flops_before.per_symbol
    assert hoisted == (mode == "static"), hoist.notes
    H, y = torch.randn(3, 8, 4), torch.randn(3, 5, 8)
    out, = run(result.graph, {"H": H, "y": y})
    with torch.no_grad():
        ref = QuantizedDetector(model, recipe)(H, y)
    assert float((out - ref).abs().max() / ref.abs().max()) < 1e-5
