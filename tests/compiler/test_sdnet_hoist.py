"""hoist-conv-rows (SDNet partial hoisting) and split-linear: exact against PyTorch for several
slot lengths and batches, per-symbol FLOPs reduced by the hand-computed amount."""

from __future__ import annotations

import pytest
import torch
from independent_detectors import ConvDetector, random_link

from mimoc.compiler.builder import GraphBuilder
from mimoc.compiler.dims import Sym
from mimoc.compiler.flops import count_flops
from mimoc.compiler.frontend import import_module
from mimoc.compiler.interpreter import run
from mimoc.compiler.ir import Rate
from mimoc.compiler.passes import conv_rows, split_linear
from mimoc.compiler.pipeline import run_pipeline
from mimoc.compiler.stages import run_stages, split_stages
from mimoc.compiler.verify import verify
from mimoc.detectors import build_detector

HOIST = "canonicalize,split-channel,hoist-conv-rows"
SIZES = [(1, 1), (2, 5), (3, 14)]  # (B, S)


def rel_err(a, b):
    return float((a - b).abs().max() / b.abs().max())


def sdnet(nt, nr, nconv, channels, seed=0):
    torch.manual_seed(seed)
    model = build_detector("sdnet", nt=nt, nr=nr, modulation="qpsk", nconv=nconv,
                           channels=channels).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, folded by canonicalize
        for norm in model.norms:
            norm.running_mean.uniform_(-0.3, 0.3)
            norm.running_var.uniform_(0.5, 1.5)
    return model


def conv_macs(nr, nt, nconv, channels, rows_of_layer):
    """2 x MACs of the conv stack and FC when conv layer l computes rows_of_layer(l) rows."""
    widths = [1] + [channels] * (nconv + 1) + [1]
    total = 0
    for layer, (cin, cout) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        total += 2 * cout * cin * 9 * rows_of_layer(layer) * 2 * nt
    return total + 2 * (2 * nt) * rows_of_layer(nconv + 1) * 2 * nt  # FC over the last rows


def expected_flops(nt, nr, nconv, channels):
    """Per-symbol FLOPs before and after: all R rows, then the band of l + 2 rows."""
    rows = 2 * nr + 1
    zf = 2 * (2 * nr) * (2 * nt)
    before = zf + conv_macs(nr, nt, nconv, channels, lambda layer: rows)
    after = zf + conv_macs(nr, nt, nconv, channels, lambda layer: min(rows, layer + 2))
    return before, after


CONFIGS = [  # (nt, nr, nconv, channels)
    (2, 4, 1, 2),
    (2, 3, 2, 3),
    (1, 1, 2, 2),  # 3 rows: the band covers the image after two layers
]


@pytest.fixture(scope="module", params=CONFIGS, ids=lambda c: "nt{}-nr{}-nconv{}-c{}".format(*c))
def hoisted(request):
    nt, nr, nconv, channels = request.param
    model = sdnet(nt, nr, nconv, channels)
    graph = import_module(model)
    return request.param, model, graph, run_pipeline(graph, HOIST)


@pytest.mark.parametrize("batch,slot", SIZES)
def test_hoisted_sdnet_equals_pytorch(hoisted, batch, slot):
    (nt, nr, _, _), model, _, result = hoisted
    H, y = random_link(nt, nr, batch=batch, slot=slot, seed=batch * 31 + slot)
    with torch.no_grad():
        ref = model(H, y)
    out, = run(result.graph, {"H": H, "y": y})
    assert out.shape == ref.shape and rel_err(out, ref) < 1e-5
    stages = split_stages(result.graph)
    staged, = run_stages(stages, {"H": H, "y": y})
    assert rel_err(staged, ref) < 1e-5
    # the slot state never depends on S: channel-only rows are computed once per slot
    assert all("S" not in map(str, stages.slot.node(s).shape) for s in stages.state)


def test_per_symbol_flops_drop_by_the_hand_computed_amount(hoisted):
    config, _, graph, result = hoisted
    before, after = expected_flops(*config)
    assert count_flops(graph).per_symbol == before
    assert count_flops(result.graph).per_symbol == after < before
    record = result.records[-1]
    assert record.name == "hoist-conv-rows"
    assert record.details["flops_per_symbol_before"] == before
    assert record.details["flops_per_symbol_after"] == after
    assert f"per-symbol FLOPs {before} -> {after}" in record.notes[-1]
    convs = [n for n in result.graph.nodes if n.op == "Conv2d"]
    assert {n.rate for n in convs} == {Rate.SLOT, Rate.SYMBOL}
    verify(result.graph)


def test_default_sdnet_per_symbol_flops():
    model = sdnet(8, 32, 4, 8)
    result = run_pipeline(import_module(model), HOIST)
    before, after = expected_flops(8, 32, 4, 8)
    assert (before, after) == (5_127_168, 358_144)
    record = result.records[-1]
    assert (record.flops_before.per_symbol, record.flops_after.per_symbol) == (before, after)
    H, y = random_link(8, 32, batch=2, slot=14, seed=5)
    with torch.no_grad():
        ref = model(H, y)
    staged, = run_stages(split_stages(result.graph), {"H": H, "y": y})
    assert rel_err(staged, ref) < 1e-5


def test_canonicalize_and_cse_after_hoisting_stay_exact(hoisted):
    (nt, nr, _, _), model, _, result = hoisted
    again = run_pipeline(result.graph, "canonicalize,cse,split-channel").graph
    H, y = random_link(nt, nr, batch=2, slot=3, seed=3)
    with torch.no_grad():
        ref = model(H, y)
    assert rel_err(run(again, {"H": H, "y": y})[0], ref) < 1e-5
    assert count_flops(again).per_symbol == count_flops(result.graph).per_symbol


def test_independent_conv_detector_is_hoisted():
    torch.manual_seed(0)
    nt, nr, channels = 2, 4, 4
    model = ConvDetector(nt, nr, channels).eval()
    H, y = random_link(nt, nr, batch=2, slot=3, seed=1)
    graph = import_module(model, (H, y))
    result = run_pipeline(graph, HOIST)
    rows, width = 2 * nr + 1, 2 * nt
    conv = [2 * channels * 9 * width, 2 * channels * 9 * width]  # per output row, both convs
    fc = 2 * (2 * nt) * width
    saved = conv[0] * (rows - 2) + conv[1] * (rows - 3) + fc * (rows - 3)
    record = result.records[-1]
    assert record.flops_before.per_symbol - record.flops_after.per_symbol == saved
    with torch.no_grad():
        ref = model(H, y)
    staged, = run_stages(split_stages(result.graph), {"H": H, "y": y})
    assert rel_err(staged, ref) < 1e-5


def test_no_conv_image_leaves_the_graph_unchanged():
    torch.manual_seed(0)
    model = build_detector("detnet", nt=2, nr=4, layers=2, hidden=8, v_dim=4).eval()
    graph = import_module(model)
    outcome = conv_rows.PASS.apply(graph)
    assert outcome.graph is graph and "nothing hoisted" in outcome.notes[0]


# -- split-linear ---------------------------------------------------------------------------

def test_split_linear_drops_the_zero_inputs_of_detnet_block_zero():
    torch.manual_seed(0)
    nt, nr, hidden, v_dim = 2, 4, 16, 4
    k = 2 * nt
    model = build_detector("detnet", nt=nt, nr=nr, layers=3, hidden=hidden, v_dim=v_dim).eval()
    graph = import_module(model)
    base = run_pipeline(graph, "canonicalize,split-channel").graph
    split = run_pipeline(base, "split-linear").graph
    # block 0 reads [H^T y, x_0 = 0, H^T H x_0 = 0, v_0 = 0]: only the K columns of H^T y stay
    saved = 2 * hidden * (3 * k + v_dim) - 2 * hidden * k
    assert count_flops(base).per_symbol - count_flops(split).per_symbol == saved
    for batch, slot in SIZES:
        H, y = random_link(nt, nr, batch=batch, slot=slot, seed=slot)
        with torch.no_grad():
            ref = model(H, y)
        staged, = run_stages(split_stages(split), {"H": H, "y": y})
        assert rel_err(staged, ref) < 1e-5


def test_split_linear_multiplies_channel_only_parts_once_per_slot():
    b = GraphBuilder()
    H = b.input("H", ("B", 4, 2), Rate.SLOT)
    y = b.input("y", ("B", "S", 4), Rate.SYMBOL)
    gen = torch.Generator().manual_seed(0)
    features = b.add("ReduceSum", [H], {"axes": (1,), "keepdim": True})          # [B, 1, 2]
    per_symbol = b.add("Expand", [features], {"shape": (Sym.of("B"), Sym.of("S"), 2)})
    cat = b.add("Concat", [b.add("MatMul", [y, H]), per_symbol], {"axis": 2})   # [B, S, 4]
    weight, bias = torch.randn(3, 4, generator=gen), torch.randn(3, generator=gen)
    out = b.add("Linear", [cat, b.const("w", weight), b.const("b", bias)])
    graph = b.build([out])
    split = verify(split_linear.run(graph))
    assert count_flops(graph).per_symbol - count_flops(split).per_symbol == 2 * 3 * 2
    slot_linears = [n for n in split.nodes if n.op == "Linear" and n.rate == Rate.SLOT]
    assert len(slot_linears) == 1 and slot_linears[0].shape == (Sym.of("B"), 1, 3)
    inputs = {"H": torch.randn(2, 4, 2, generator=gen), "y": torch.randn(2, 5, 4, generator=gen)}
    torch.testing.assert_close(run_stages(split_stages(split), inputs)[0], run(graph, inputs)[0])
