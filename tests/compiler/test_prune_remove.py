"""prune (WeSNet profile units) and remove-layers (R-WeSNet depth): exact where they must be,
equal to the PyTorch model at the same pruning / depth, FLOPs saved as counted by hand."""

from __future__ import annotations

import pytest
import torch
from independent_detectors import random_link

from mimoc.compiler.builder import GraphBuilder
from mimoc.compiler.frontend import import_module
from mimoc.compiler.interpreter import run
from mimoc.compiler.ir import Rate
from mimoc.compiler.passes import prune, remove_layers
from mimoc.compiler.passes.base import PassOptions
from mimoc.compiler.pipeline import run_pipeline
from mimoc.compiler.stages import run_stages, split_stages
from mimoc.compiler.verify import verify
from mimoc.detectors import build_detector
from mimoc.errors import UsageError

NT, NR, LAYERS, HIDDEN, V_DIM = 2, 4, 4, 16, 4
K = 2 * NT


def rel_err(a, b):
    return float((a - b).abs().max() / b.abs().max())


@pytest.fixture(scope="module")
def wesnet():
    torch.manual_seed(0)
    model = build_detector("wesnet", nt=NT, nr=NR, modulation="qpsk", layers=LAYERS,
                           hidden=HIDDEN, v_dim=V_DIM, profile="half-exp", retained=0.5).eval()
    return model, import_module(model)


@pytest.fixture(scope="module")
def link():
    return random_link(NT, NR, batch=3, slot=5, seed=11)


def outputs_at_depth(model, depth, link):
    H, y = link
    model.set_depth(depth)
    try:
        with torch.no_grad():
            return model(H, y)
    finally:
        model.set_depth(None)


# -- prune -------------------------------------------------------------------------------

def test_prune_removes_exactly_the_zero_coefficient_units(wesnet, link):
    model, graph = wesnet
    H, y = link
    result = run_pipeline(graph, "canonicalize,prune")
    pruned = verify(result.graph)
    sites = prune.find_profile_sites(pruned)
    assert len(sites) == LAYERS
    for index, site in enumerate(sites):
        block = model.blocks[index]
        beta = block.coefficients().detach()
        kept = beta != 0
        assert site.label == f"blocks.{index}.fc1"
        torch.testing.assert_close(pruned.constants[site.producer.inputs[1]],
                                   block.fc1.weight.detach()[kept], rtol=0, atol=0)
        torch.testing.assert_close(site.beta, beta[kept], rtol=0, atol=0)
        for reader in site.consumers:
            assert pruned.node(reader.inputs[1]).shape[1] == int(kept.sum())
    out, = run(pruned, {"H": H, "y": y})
    with torch.no_grad():
        assert rel_err(out, model(H, y)) < 1e-5
    staged, = run_stages(split_stages(run_pipeline(pruned, "split-channel").graph),
                         {"H": H, "y": y})
    assert rel_err(staged, out) < 1e-6
    record = result.records[-1]
    assert record.notes[0] == "blocks.0.fc1: removed 8 of 16 hidden units (|beta| <= 0)"
    # per block: W1 rows (3K + V inputs), W2 columns (K outputs), W3 columns (V, not in
    # the last block) of the removed units
    removed = HIDDEN // 2
    saved = LAYERS * 2 * removed * (3 * K + V_DIM + K) + (LAYERS - 1) * 2 * removed * V_DIM
    assert record.details["flops_saved_per_symbol"] == saved
    assert (record.flops_before.per_symbol - record.flops_after.per_symbol) == saved
    assert record.flops_after.per_slot == record.flops_before.per_slot


def test_prune_threshold_equals_the_model_with_those_coefficients_zeroed(wesnet, link):
    model, graph = wesnet
    H, y = link
    threshold = 0.5  # half-exp profile of 16: 1 x8, then e^-1, e^-2, ... -> only the ones stay
    result = run_pipeline(graph, "canonicalize,prune",
                          options=PassOptions(prune_threshold=threshold))
    assert all(site.beta.numel() == 8 for site in prune.find_profile_sites(result.graph))
    reference = build_detector("wesnet", nt=NT, nr=NR, modulation="qpsk", layers=LAYERS,
                               hidden=HIDDEN, v_dim=V_DIM, profile="half-exp", retained=1.0)
    reference.load_state_dict(model.state_dict())
    with torch.no_grad():
        for block in reference.eval().blocks:
            beta = block.profile.beta
            beta[beta.abs() <= threshold] = 0.0
        ref = reference(H, y)
    out, = run(result.graph, {"H": H, "y": y})
    assert rel_err(out, ref) < 1e-5


def test_prune_rule_on_a_hand_built_graph():
    b = GraphBuilder()
    x = b.input("y", ("B", "S", 3), Rate.SYMBOL)
    gen = torch.Generator().manual_seed(0)
    w1, b1 = torch.randn(5, 3, generator=gen), torch.randn(5, generator=gen)
    w2, w3 = torch.randn(2, 5, generator=gen), torch.randn(4, 5, generator=gen)
    beta = torch.tensor([1.0, 0.0, 0.5, 0.0, 0.25])
    h = b.add("Relu", [b.add("Linear", [x, b.const("w1", w1), b.const("b1", b1)])])
    z = b.add("Mul", [h, b.const("beta", beta)])
    out = b.add("Add", [b.add("Linear", [z, b.const("w2", w2)]),
                        b.add("ReduceSum", [b.add("Linear", [z, b.const("w3", w3)])],
                              {"axes": (2,), "keepdim": True})])
    graph = b.build([out])
    pruned = verify(prune.run(graph))
    shapes = {n.name: n.shape for n in pruned.nodes if n.op == "Const"}
    assert shapes["w1.pruned"] == (3, 3) and shapes["w2.pruned"] == (2, 3)
    assert shapes["w3.pruned"] == (4, 3) and shapes["beta.pruned"] == (3,)
    yv = torch.randn(2, 4, 3, generator=gen)
    torch.testing.assert_close(run(pruned, {"y": yv})[0], run(graph, {"y": yv})[0])
    # a Mul read by something other than a Linear is not a profile site
    b2 = GraphBuilder()
    x = b2.input("y", ("B", "S", 3), Rate.SYMBOL)
    z = b2.add("Mul", [b2.add("Relu", [b2.add("Linear", [x, b2.const("w1", w1)])]),
                       b2.const("beta", beta)])
    assert prune.find_profile_sites(b2.build([b2.add("Tanh", [z])])) == []


def test_prune_on_detnet_finds_nothing_and_keeps_the_graph():
    torch.manual_seed(0)
    model = build_detector("detnet", nt=NT, nr=NR, layers=2, hidden=8, v_dim=4).eval()
    graph = import_module(model)
    outcome = prune.PASS.apply(graph)
    assert outcome.graph is graph and "nothing pruned" in outcome.notes[0]


# -- remove-layers ------------------------------------------------------------------------

@pytest.mark.parametrize("depth", range(1, LAYERS + 1))
def test_remove_layers_equals_pytorch_at_every_depth(wesnet, link, depth):
    model, graph = wesnet
    H, y = link
    result = run_pipeline(graph, "canonicalize,remove-layers,split-channel",
                          options=PassOptions(keep_layers=depth))
    ref = outputs_at_depth(model, depth, link)
    out, = run(result.graph, {"H": H, "y": y})
    assert out.shape == ref.shape and rel_err(out, ref) < 1e-5
    staged, = run_stages(split_stages(result.graph), {"H": H, "y": y})
    assert rel_err(staged, ref) < 1e-5
    assert result.graph.outputs == ("x_hat",)
    record = result.records[1]
    assert record.details["kept"] == depth and record.details["removed"] == LAYERS - depth
    # each removed block: its three layers and H^T H x (the last block has no v layer, but
    # the last kept block's v layer goes instead)
    block = 2 * (HIDDEN * (3 * K + V_DIM) + HIDDEN * K + HIDDEN * V_DIM + K * K)
    saved = (LAYERS - depth) * block
    assert record.flops_before.per_symbol - record.flops_after.per_symbol == saved
    assert record.details["flops_saved_per_symbol"] == saved


def test_remove_layers_after_prune_and_on_the_imported_graph(wesnet, link):
    model, graph = wesnet
    H, y = link
    ref = outputs_at_depth(model, 2, link)
    for passes in ("remove-layers", "canonicalize,prune,remove-layers"):
        result = run_pipeline(graph, passes, options=PassOptions(keep_layers=2))
        out, = run(result.graph, {"H": H, "y": y})
        assert rel_err(out, ref) < 1e-5, passes


def test_remove_layers_one_hot_head(link):
    torch.manual_seed(1)
    model = build_detector("detnet", nt=NT, nr=NR, modulation="16qam", layers=3, hidden=8,
                           v_dim=4).eval()
    graph = import_module(model)
    H, y = link
    for depth in (1, 2):
        result = run_pipeline(graph, "canonicalize,remove-layers",
                              options=PassOptions(keep_layers=depth))
        out, = run(result.graph, {"H": H, "y": y})
        assert rel_err(out, outputs_at_depth(model, depth, link)) < 1e-5


def test_block_l1_norms_match_the_model(wesnet):
    model, graph = wesnet
    for g in (graph, run_pipeline(graph, "canonicalize,prune").graph):
        blocks = remove_layers.find_blocks(g)
        norms = remove_layers.block_l1_norms(g, blocks)
        torch.testing.assert_close(torch.tensor(norms, dtype=torch.float64),
                                   model.layer_l1_norms().double(),
                                   rtol=1e-6, atol=0)


def test_l1_threshold_picks_the_expected_depth_on_hand_set_weights(link):
    torch.manual_seed(2)
    model = build_detector("wesnet", nt=NT, nr=NR, layers=LAYERS, hidden=HIDDEN, v_dim=V_DIM,
                           profile="linear", retained=1.0).eval()
    scales = [1.0, 0.5, 1e-3, 1e-4]
    with torch.no_grad():
        for block, c in zip(model.blocks, scales, strict=True):
            for layer in (block.fc1, block.fc2, block.fc3):
                if layer is not None:
                    layer.weight.fill_(c)
    # |beta W| = c * sum_j beta_j * (inputs of fc1 + outputs of fc2 [+ outputs of fc3])
    beta_sum = sum(1 - i / HIDDEN for i in range(1, HIDDEN + 1))
    fan = [3 * K + V_DIM + K + V_DIM] * (LAYERS - 1) + [3 * K + V_DIM + K]
    expected = [c * beta_sum * f for c, f in zip(scales, fan, strict=True)]
    graph = import_module(model)
    torch.testing.assert_close(
        torch.tensor(remove_layers.block_l1_norms(graph, remove_layers.find_blocks(graph)),
                     dtype=torch.float64),
        torch.tensor(expected, dtype=torch.float64), rtol=1e-6, atol=0)
    assert expected == pytest.approx([180.0, 90.0, 0.18, 0.015])  # sum beta = 7.5
    threshold = 1.0  # blocks 2 and 3 are below it
    assert expected[2] < threshold < expected[1]
    result = run_pipeline(graph, "remove-layers", options=PassOptions(l1_threshold=threshold))
    assert result.records[0].details["kept"] == 2 == model.depth_for_threshold(threshold)
    H, y = link
    out, = run(result.graph, {"H": H, "y": y})
    assert rel_err(out, outputs_at_depth(model, 2, link)) < 1e-5
    low = run_pipeline(graph, "remove-layers", options=PassOptions(l1_threshold=1e-6))
    assert low.records[0].details["kept"] == LAYERS and low.graph is graph
    high = run_pipeline(graph, "remove-layers", options=PassOptions(l1_threshold=1e9))
    assert high.records[0].details["kept"] == 1


def test_relative_l1_threshold_is_a_fraction_of_the_largest_block_norm(link):
    torch.manual_seed(6)
    model = build_detector("wesnet", nt=NT, nr=NR, layers=LAYERS, hidden=HIDDEN, v_dim=V_DIM,
                           profile="half-exp", retained=0.5).eval()
    norms_before = model.layer_l1_norms()
    with torch.no_grad():  # |beta W| is linear in |W|: block norms become 100, 50, 4, 1
        for block, target, norm in zip(model.blocks, [100.0, 50.0, 4.0, 1.0], norms_before,
                                       strict=True):
            for layer in (block.fc1, block.fc2, block.fc3):
                if layer is not None:
                    layer.weight.mul_(target / float(norm))
    scaled = import_module(model)
    norms = remove_layers.block_l1_norms(scaled, remove_layers.find_blocks(scaled))
    largest = max(norms)
    for fraction, depth in ((0.1, 2), (0.02, 3), (0.6, 1), (0.0, LAYERS)):
        # the hand-set weights put each fraction strictly between two norm ratios
        assert all(abs(n / largest - fraction) > 1e-3 for n in norms)
        options = PassOptions(l1_threshold=f"{fraction}x")
        record = run_pipeline(scaled, "remove-layers", options=options).records[0]
        assert record.details["kept"] == depth == model.depth_for_threshold(fraction, True)
        absolute = PassOptions(l1_threshold=fraction * largest)
        assert run_pipeline(scaled, "remove-layers",
                            options=absolute).records[0].details["kept"] == depth
    result = run_pipeline(scaled, "remove-layers", options=PassOptions(l1_threshold="0.10x"))
    assert "--l1-threshold 0.1x = " in result.records[0].notes[0]
    out, = run(result.graph, dict(zip(("H", "y"), link, strict=True)))
    assert rel_err(out, outputs_at_depth(model, 2, link)) < 1e-5
    assert PassOptions(l1_threshold="2.5").l1_threshold == 2.5
    assert PassOptions(l1_threshold=" 0.25X").l1_rule() == (0.25, True)
    for bad in ("x", "-0.1x", "tenx", "infx", "0.1y", -1.0, True):
        with pytest.raises(UsageError, match="--l1-threshold must be a finite number >= 0"):
            PassOptions(l1_threshold=bad)


def test_l1_threshold_flag_takes_both_forms():
    import argparse

    from mimoc.commands.pass_flags import add_pass_option_arguments, pass_options

    parser = argparse.ArgumentParser()
    add_pass_option_arguments(parser)
    assert pass_options(parser.parse_args(["--l1-threshold", "0.1x"])).l1_rule() == (0.1, True)
    assert pass_options(parser.parse_args(["--l1-threshold", "3"])).l1_threshold == 3.0


def test_learnable_profile_wesnet_imports_and_matches(link):
    """L-WeSNet: beta = ReLU(1 - cumsum(softplus(d))) depends on parameters only, so the
    frontend evaluates it at import time (the IR has no cumsum / softplus)."""
    torch.manual_seed(5)
    model = build_detector("wesnet", nt=NT, nr=NR, layers=LAYERS, hidden=HIDDEN, v_dim=V_DIM,
                           profile="linear", retained=0.75, learnable_profile=True).eval()
    with torch.no_grad():  # learned-looking decrements: some units reach 0 before the tail
        for block in model.blocks:
            block.profile.decrements.normal_(-1.5, 1.0)
    graph = import_module(model)
    assert not {"Cumsum", "Softplus"} & {node.op for node in graph.nodes}
    H, y = link
    with torch.no_grad():
        want = model(H, y)
    assert rel_err(run(graph, {"H": H, "y": y})[0], want) < 1e-5
    for passes in ("canonicalize,split-channel,hoist-conv-rows,split-linear",
                   "canonicalize,prune,split-channel,split-linear"):
        result = run_pipeline(graph, passes)
        staged, = run_stages(split_stages(result.graph), {"H": H, "y": y})
        assert rel_err(staged, want) < 1e-5
    # the folded profile is what prune reads: every unit with beta = 0 leaves fc1
    sites = prune.find_profile_sites(run_pipeline(graph, "canonicalize,prune").graph)
    kept = [int((block.coefficients() != 0).sum()) for block in model.blocks]
    assert [len(site.beta) for site in sites] == kept and min(kept) < 0.75 * HIDDEN


def test_remove_layers_errors(wesnet):
    _, graph = wesnet
    with pytest.raises(UsageError, match="needs a target: --keep-layers N"):
        run_pipeline(graph, "remove-layers")
    with pytest.raises(UsageError, match="--keep-layers 9: the model has only 4 blocks"):
        run_pipeline(graph, "remove-layers", options=PassOptions(keep_layers=9))
    with pytest.raises(UsageError, match="not in the pipeline; add it to --passes"):
        run_pipeline(graph, "canonicalize", options=PassOptions(keep_layers=2))
    with pytest.raises(UsageError, match="either --keep-layers or --l1-threshold"):
        PassOptions(keep_layers=2, l1_threshold=1.0)
    with pytest.raises(UsageError, match="--keep-layers must be a positive integer"):
        PassOptions(keep_layers=0)
    with pytest.raises(UsageError, match="--prune-threshold must be a finite number"):
        PassOptions(prune_threshold=-1.0)
    torch.manual_seed(0)
    sdnet = build_detector("sdnet", nt=2, nr=2, nconv=1, channels=2).eval()
    with pytest.raises(UsageError, match="no repeated blocks"):
        run_pipeline(import_module(sdnet), "remove-layers", options=PassOptions(keep_layers=1))


def test_prune_stacked_sites_cut_rows_and_columns_of_the_middle_layer():
    gen = torch.Generator().manual_seed(3)
    b = GraphBuilder()
    x = b.input("y", ("B", "S", 3), Rate.SYMBOL)
    beta1 = torch.tensor([0.0, 1.0, 0.0, 0.5])
    beta2 = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.3])
    h1 = b.add("Relu", [b.add("Linear", [x, b.const("w1", torch.randn(4, 3, generator=gen))])])
    z1 = b.add("Mul", [h1, b.const("beta1", beta1)])
    h2 = b.add("Tanh", [b.add("Linear", [z1, b.const("w2", torch.randn(5, 4, generator=gen)),
                                         b.const("b2", torch.randn(5, generator=gen))])])
    z2 = b.add("Mul", [b.const("beta2", beta2), h2])
    graph = b.build([b.add("Linear", [z2, b.const("w3", torch.randn(2, 5, generator=gen))])])
    pruned = verify(prune.run(graph))
    middle = [n for n in pruned.nodes if n.op == "Linear"][1]
    assert pruned.node(middle.inputs[1]).shape == (2, 2)  # 2 of 5 rows, 2 of 4 columns
    yv = torch.randn(2, 3, 3, generator=gen)
    torch.testing.assert_close(run(pruned, {"y": yv})[0], run(graph, {"y": yv})[0])
