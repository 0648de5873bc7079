"""Rewrite rules and passes on hand-built graphs; pipelines; the slot/symbol partition."""

from __future__ import annotations

import pytest
import torch

from mimoc.compiler.builder import GraphBuilder
from mimoc.compiler.dims import Sym
from mimoc.compiler.flops import count_flops
from mimoc.compiler.interpreter import run
from mimoc.compiler.ir import Rate
from mimoc.compiler.passes import canonicalize, cse, split_channel
from mimoc.compiler.passes.base import FunctionPass
from mimoc.compiler.pipeline import PASSES, default_passes, run_pipeline
from mimoc.compiler.stages import run_stages, split_stages
from mimoc.compiler.verify import verify
from mimoc.errors import UsageError

B, S = Sym.of("B"), Sym.of("S")


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


def link(gen, batch=2, slot=3, nr=4, nt=2):
    return {"H": torch.randn(batch, 2 * nr, 2 * nt, generator=gen, dtype=torch.float64),
            "y": torch.randn(batch, slot, 2 * nr, generator=gen, dtype=torch.float64)}


def ops_of(graph):
    return [n.op for n in graph.nodes if n.op not in ("Input", "Const")]


def assert_same(g1, g2, inputs):
    a, = run(g1, inputs, dtype=torch.float64)
    b, = run(g2, inputs, dtype=torch.float64)
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)  # folded weights are stored fp32


def bn_params(b, gen, c, prefix="bn"):
    return [b.const(f"{prefix}.weight", 1 + 0.3 * torch.randn(c, generator=gen)),
            b.const(f"{prefix}.bias", 0.2 * torch.randn(c, generator=gen)),
            b.const(f"{prefix}.running_mean", 0.3 * torch.randn(c, generator=gen)),
            b.const(f"{prefix}.running_var", 0.5 + torch.rand(c, generator=gen))]


def test_batchnorm_folds_into_conv(gen):
    # BatchNorm(Conv2d(x, W, b)) -> Conv2d(x, W*s, (b-mean)*s + beta)
    b = GraphBuilder()
    H = b.input("H", ("B", 8, 4), Rate.SLOT)
    x = b.add("Unsqueeze", [H], {"axis": 1})
    conv = b.add("Conv2d", [x, b.const("c.weight", torch.randn(3, 1, 3, 3, generator=gen)),
                            b.const("c.bias", torch.randn(3, generator=gen))], {"padding": (1, 1)},
                 scope="conv")
    out = b.add("BatchNorm", [conv, *bn_params(b, gen, 3)], {"eps": 1e-5}, scope="bn")
    g = b.build([out])
    folded = verify(canonicalize.run(g))
    assert ops_of(folded) == ["Unsqueeze", "Conv2d"]
    assert folded.node(folded.outputs[0]).scope == "conv"
    assert_same(g, folded, {"H": link(gen)["H"]})


def test_batchnorm_folds_into_linear_and_otherwise_becomes_affine(gen):
    # BatchNorm(Linear(x, W, b)) -> Linear(x, W*s, ...); BatchNorm(x) -> Add(Mul(x, s), t)
    b = GraphBuilder()
    H = b.input("H", ("B", 8, 4), Rate.SLOT)
    flat = b.add("Reshape", [H], {"shape": (B, 32)})
    lin = b.add("Linear", [flat, b.const("l.weight", torch.randn(5, 32, generator=gen))])
    bn1 = b.add("BatchNorm", [lin, *bn_params(b, gen, 5, "bn1")], {"eps": 1e-3})
    img = b.add("Reshape", [H], {"shape": (B, 8, 2, 2)})
    bn2 = b.add("BatchNorm", [img, *bn_params(b, gen, 8, "bn2")], {"eps": 1e-5})
    out = b.add("Add", [b.add("ReduceSum", [bn2], {"axes": (2, 3)}), b.add("ReduceSum", [
        bn1], {"axes": (1,), "keepdim": True})])
    g = b.build([out])
    folded = verify(canonicalize.run(g))
    assert "BatchNorm" not in ops_of(folded)
    assert ops_of(folded).count("Linear") == 1 and "Mul" in ops_of(folded)
    assert_same(g, folded, {"H": link(gen)["H"]})


def test_constant_folding_and_identities(gen):
    b = GraphBuilder()
    y = b.input("y", ("B", "S", 8), Rate.SYMBOL)
    t = b.const("t", torch.tensor(-0.5))
    scale = b.add("Abs", [t])                                   # Abs(Const) -> Const
    x = b.add("Mul", [y, scale])
    x = b.add("Reshape", [x], {"shape": (B, S, 8)})             # same shape -> x
    x = b.add("Transpose", [b.add("Transpose", [x], {"perm": (0, 2, 1)})],
              {"perm": (0, 2, 1)})                              # composes to identity -> x
    x = b.add("Add", [x, b.const("zero", torch.zeros(8))])      # Add(x, 0) -> x
    x = b.add("Neg", [b.add("Neg", [x])])                       # Neg(Neg(x)) -> x
    x = b.add("Mul", [b.add("Mul", [x, b.const("c1", torch.tensor(2.0))]),
                      b.const("c2", torch.tensor(3.0))])        # Mul(Mul(x,2),3) -> Mul(x,6)
    g = b.build([x])
    out = verify(canonicalize.run(g))
    assert ops_of(out) == ["Mul"]  # everything above collapses to y * (0.5 * 2 * 3)
    assert float(out.constants[out.node(out.outputs[0]).inputs[1]]) == 3.0
    assert_same(g, out, {"y": link(gen)["y"]})


def test_zero_fill_propagates(gen):
    # MatMul(Fill 0, A) -> Fill 0; Add(x, Fill 0) -> x
    b = GraphBuilder()
    H = b.input("H", ("B", 8, 4), Rate.SLOT)
    y = b.input("y", ("B", "S", 8), Rate.SYMBOL)
    x0 = b.fill(0.0, ("B", "S", 4))
    hx = b.add("MatMul", [x0, b.add("Transpose", [H], {"perm": (0, 2, 1)})])
    out = b.add("Add", [b.add("Relu", [y]), hx])
    g = b.build([out])
    simplified = verify(canonicalize.run(g))
    assert ops_of(simplified) == ["Relu"]
    assert_same(g, simplified, link(gen))


def test_cse_merges_repeated_slot_and_symbol_work(gen):
    b = GraphBuilder()
    H = b.input("H", ("B", 8, 4), Rate.SLOT)
    y = b.input("y", ("B", "S", 8), Rate.SYMBOL)
    outs = []
    for _ in range(3):  # every "block" recomputes H^T, H^T H and H^T y
        ht = b.add("Transpose", [H], {"perm": (0, 2, 1)})
        gram = b.add("MatMul", [ht, H])
        hty = b.add("MatMul", [y, H])
        outs.append(b.add("MatMul", [hty, gram]))
    out = b.add("Add", [b.add("Add", [outs[0], outs[1]]), outs[2]])
    g = b.build([out])
    merged = verify(cse.run(g))
    assert ops_of(merged).count("MatMul") == 3 and ops_of(merged).count("Transpose") == 1
    before, after = count_flops(g), count_flops(merged)
    assert (before.per_slot, after.per_slot) == (3 * 256, 256)
    assert (before.per_symbol, after.per_symbol) == (3 * (64 + 32), 64 + 32)
    assert_same(g, merged, link(gen))


def detnet_like_block_graph(gen, nr=4, nt=2):
    """x1 = (x0 H^T) H with x0 = Linear(y H) — the H^T H x_k product of DetNet."""
    b = GraphBuilder()
    H = b.input("H", ("B", 2 * nr, 2 * nt), Rate.SLOT)
    y = b.input("y", ("B", "S", 2 * nr), Rate.SYMBOL)
    x0 = b.add("Linear", [b.add("MatMul", [y, H]),
                          b.const("w", torch.randn(2 * nt, 2 * nt, generator=gen))])
    hx = b.add("MatMul", [x0, b.add("Transpose", [H], {"perm": (0, 2, 1)})])
    return b.build([b.add("MatMul", [hx, H])])


def test_gram_row_rule_moves_htH_to_the_slot_rate(gen):
    # MatMul(MatMul(x, Transpose(A)), A) -> MatMul(x, Gram(A))
    g = detnet_like_block_graph(gen)
    out = verify(split_channel.run(g))
    assert ops_of(out) == ["Gram", "MatMul", "Linear", "MatMul"]
    m, n = 8, 4
    before, after = count_flops(g), count_flops(out)
    assert before.per_symbol == 2 * m * n + 2 * n * n + 2 * (2 * m * n)
    assert after.per_symbol == 2 * m * n + 2 * n * n + 2 * n * n
    assert (before.per_slot, after.per_slot) == (0, 2 * m * n * n)
    assert_same(g, out, link(gen))


def test_gram_rule_not_applied_when_it_costs_more(gen):
    # Nt >> Nr: H^T H is bigger than two thin products, the rule's guard keeps the graph
    g = detnet_like_block_graph(gen, nr=1, nt=4)
    out = split_channel.run(g)
    assert "Gram" not in ops_of(out)
    assert count_flops(out).per_symbol == count_flops(g).per_symbol


def test_gram_col_rule(gen):
    # MatMul(Transpose(A), MatMul(A, X)) -> MatMul(Gram(A), X)
    b = GraphBuilder()
    H = b.input("H", ("B", 8, 4), Rate.SLOT)
    y = b.input("y", ("B", "S", 8), Rate.SYMBOL)
    X = b.add("Transpose", [b.add("MatMul", [y, H])], {"perm": (0, 2, 1)})   # [B, 4, S]
    hx = b.add("MatMul", [H, X])
    out = b.add("MatMul", [b.add("Transpose", [H], {"perm": (0, 2, 1)}), hx])
    g = b.build([out])
    rewritten = verify(split_channel.run(g))
    assert "Gram" in ops_of(rewritten)
    assert count_flops(rewritten).per_symbol < count_flops(g).per_symbol
    assert_same(g, rewritten, link(gen))


def test_solve_with_slot_matrix_becomes_inverse(gen):
    # Solve(A@slot, B@symbol) -> MatMul(Inverse(A), B)
    b = GraphBuilder()
    H = b.input("H", ("B", 8, 4), Rate.SLOT)
    y = b.input("y", ("B", "S", 8), Rate.SYMBOL)
    gram = b.add("MatMul", [b.add("Transpose", [H], {"perm": (0, 2, 1)}), H])
    rhs = b.add("Transpose", [b.add("MatMul", [y, H])], {"perm": (0, 2, 1)})
    g = b.build([b.add("Solve", [gram, rhs])])
    out = verify(split_channel.run(g))
    assert {"Inverse", "Gram"} <= set(ops_of(out)) and "Solve" not in ops_of(out)
    assert out.node("solve_inverse").rate == Rate.SLOT
    before, after = count_flops(g), count_flops(out)
    assert before.per_symbol == 2 * 8 * 4 + (2 * 4 ** 3) // 3 + 2 * 4 * 4
    assert after.per_symbol == 2 * 8 * 4 + 2 * 4 * 4
    assert_same(g, out, link(gen))


def test_hoisting_and_stage_partition(gen):
    b = GraphBuilder()
    H = b.input("H", ("B", 8, 4), Rate.SLOT)
    y = b.input("y", ("B", "S", 8), Rate.SYMBOL)
    hty = b.add("MatMul", [y, H])
    gram = b.add("Gram", [H])                                 # slot work after symbol work
    rows = b.add("Expand", [b.add("Unsqueeze", [gram], {"axis": 1})],
                 {"shape": (B, S, 4, 4)})                      # slot rate, but needs S
    x = b.add("Squeeze", [b.add("MatMul", [rows, b.add("Unsqueeze", [hty], {"axis": 3})])],
              {"axis": 3})
    g = b.build([b.add("Add", [x, hty])])
    hoisted = verify(split_channel.run(g))
    order = [n.name for n in hoisted.nodes if n.op not in ("Input", "Const")]
    assert order.index("gram") < order.index("matmul")
    stages = split_stages(hoisted)
    assert set(stages.state) == {"H", "unsqueeze"}  # gram is broadcast over S per symbol
    assert [n.name for n in stages.slot.inputs] == ["H"]
    assert {n.name for n in stages.symbol.inputs} == {"y", *stages.state}
    assert "expand" in stages.symbol and "gram" in stages.slot
    inputs = link(gen)
    torch.testing.assert_close(run_stages(stages, inputs, dtype=torch.float64)[0],
                               run(g, inputs, dtype=torch.float64)[0])


def test_pipeline_records_dumps_and_errors(gen):
    g = detnet_like_block_graph(gen)
    seen = []
    result = run_pipeline(g, "canonicalize,split-channel", dump_after={"split-channel"},
                          on_dump=lambda name, text: seen.append(name))
    assert seen == ["split-channel"] and "Gram(%H)" in result.dumps["split-channel"]
    assert [r.name for r in result.records] == ["canonicalize", "split-channel"]
    assert result.records[-1].flops_after.per_symbol < result.records[0].flops_before.per_symbol
    assert "split-channel" in result.report()
    assert set(run_pipeline(g, [], dump_after="all").dumps) == {"frontend"}
    assert [p.name for p in default_passes("onnx")] == [
        "canonicalize", "split-channel", "hoist-conv-rows", "split-linear"]
    assert set(PASSES) >= {"canonicalize", "cse", "split-channel"}
    with pytest.raises(UsageError, match="unknown pass 'fold'; available passes: canonicalize"):
        run_pipeline(g, "canonicalize,fold")
    with pytest.raises(UsageError, match="--dump-after split-channel: not in the pipeline"):
        run_pipeline(g, "canonicalize", dump_after={"split-channel"})


def test_declared_pass_order_is_checked_before_anything_runs(gen):
    """``must_precede`` / ``must_follow`` are checked by the pipeline in one place: a
    one-line UsageError with the list in a working order; nothing runs before it."""
    g = detnet_like_block_graph(gen)
    ran = []

    def note(name):
        return lambda graph: ran.append(name) or graph

    first = FunctionPass("first", note("first"), "runs first", must_precede=("middle",))
    middle = FunctionPass("middle", note("middle"), "runs second")
    last = FunctionPass("last", note("last"), "runs last", must_follow=("middle",))
    assert [r.name for r in run_pipeline(g, [first, middle, last]).records] == [
        "first", "middle", "last"]
    ran.clear()
    with pytest.raises(UsageError, match="^run first before middle: --passes first,middle$"):
        run_pipeline(g, [middle, first])
    with pytest.raises(UsageError, match="^run middle before last: --passes first,middle,last$"):
        run_pipeline(g, [first, last, middle])
    assert ran == []
    assert [r.name for r in run_pipeline(g, [middle, "canonicalize"]).records] == [
        "middle", "canonicalize"]  # an ordering rule binds only passes in the list


def test_pass_options_map_onto_the_pass_dataclasses():
    """PassOptions (the CLI flags) set the fields of the passes that read them, in one
    function; the passes carry and check their own options."""
    from mimoc.compiler.passes.base import PassOptions
    from mimoc.compiler.passes.prune import Prune
    from mimoc.compiler.passes.remove_layers import RemoveLayers
    from mimoc.compiler.pipeline import configure_passes

    chosen = [PASSES["canonicalize"], PASSES["remove-layers"], PASSES["prune"]]
    configured = configure_passes(chosen, PassOptions(keep_layers=2, prune_threshold=0.5))
    assert configured == [PASSES["canonicalize"], RemoveLayers(keep_layers=2),
                          Prune(threshold=0.5)]
    assert configure_passes(chosen, PassOptions()) == chosen  # defaults change nothing
    relative = PASSES["remove-layers"].configured(PassOptions(l1_threshold="0.10x"))
    assert relative == RemoveLayers(l1_threshold="0.1x")
    assert PASSES["canonicalize"].configured(PassOptions(keep_layers=2)) is PASSES["canonicalize"]
    with pytest.raises(UsageError, match="^--prune-threshold 0.5 is an option of the prune "
                                         "pass, which is not in the pipeline"):
        configure_passes(chosen[:2], PassOptions(prune_threshold=0.5))
    with pytest.raises(UsageError, match="--prune-threshold must be a finite number >= 0"):
        Prune(threshold=-1.0)
    with pytest.raises(UsageError, match="either --keep-layers or --l1-threshold, not both"):
        RemoveLayers(keep_layers=2, l1_threshold=1.0)
    with pytest.raises(UsageError, match="--keep-layers must be a positive integer"):
        RemoveLayers(keep_layers=0)
