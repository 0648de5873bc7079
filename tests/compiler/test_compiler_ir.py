"""IR core: dims, builder, verifier, printer, interpreter, FLOP counting (hand-built graphs)."""

from __future__ import annotations

import pytest
import torch

from mimoc.compiler import dims as D
from mimoc.compiler.builder import GraphBuilder
from mimoc.compiler.dims import Sym
from mimoc.compiler.flops import count_flops
from mimoc.compiler.interpreter import run
from mimoc.compiler.ir import Attrs, IRError, Node, Rate, TensorType
from mimoc.compiler.printer import format_graph
from mimoc.compiler.verify import problems, verify
from mimoc.errors import UsageError

B, S = Sym.of("B"), Sym.of("S")


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


def small_graph(gen):
    """x_hat = Linear(relu(y @ H), W) with H [B, 8, 4], y [B, S, 8]."""
    b = GraphBuilder("small")
    H = b.input("H", ("B", 8, 4), Rate.SLOT)
    y = b.input("y", ("B", "S", 8), Rate.SYMBOL)
    hty = b.add("MatMul", [y, H], name="hty")
    act = b.add("Relu", [hty])
    W = b.const("fc.weight", torch.randn(3, 4, generator=gen))
    bias = b.const("fc.bias", torch.randn(3, generator=gen))
    out = b.add("Linear", [act, W, bias], name="x_hat", scope="fc")
    return b.build([out])


def test_dims_products_and_quotients():
    bs = D.mul(B, S)
    assert str(D.mul(bs, 16)) == "16*B*S"
    assert D.div(D.mul(bs, 16), S) == Sym(16, ("B",))
    assert D.div(B, S) is None and D.div(7, 2) is None
    assert D.numel((B, S, 2)) == Sym(2, ("B", "S"))
    assert D.broadcast((B, 1, 4), (S, 1)) == (B, S, 4)
    assert D.broadcast((3,), (4,)) is None
    assert D.parse_dim("16*B*S") == D.mul(bs, 16)
    assert D.evaluate(D.mul(bs, 2), {"B": 3, "S": 5}) == 30


def test_builder_infers_shapes_and_rates(gen):
    g = small_graph(gen)
    assert g.node("hty").type == TensorType((B, S, 4), "f32", Rate.SYMBOL)
    assert g.node("x_hat").shape == (B, S, 3)
    assert g.node("fc.weight").rate == Rate.CONST
    verify(g)


def test_rate_is_max_of_operands(gen):
    b = GraphBuilder()
    H = b.input("H", ("B", 8, 4), Rate.SLOT)
    g = b.add("Gram", [H])
    W = b.const("w", torch.randn(4, 4, generator=gen))
    lin = b.add("Linear", [g, W])
    assert b.type_of(g).rate == Rate.SLOT and b.type_of(lin).rate == Rate.SLOT
    assert b.type_of(g).shape == (B, 4, 4)


def test_builder_rejects_shape_mismatch_and_nonconst_weight(gen):
    b = GraphBuilder()
    y = b.input("y", ("B", "S", 8), Rate.SYMBOL)
    W = b.const("w", torch.randn(3, 5, generator=gen))
    with pytest.raises(IRError, match="Linear: input .* does not match weight"):
        b.add("Linear", [y, W])
    with pytest.raises(IRError, match="operand 'W' must be const"):
        b.add("Linear", [y, y])
    with pytest.raises(IRError, match="unknown op"):
        b.add("Frobnicate", [y])
    with pytest.raises(IRError, match="missing attribute 'axis'"):
        b.add("Softmax", [y])


def test_verifier_catches_broken_graphs(gen):
    g = small_graph(gen)
    assert problems(g) == []
    nodes = list(g.nodes)
    i = next(k for k, n in enumerate(nodes) if n.name == "hty")
    bad_shape = g.replace(nodes=tuple(nodes[:i] + [nodes[i].replace(
        type=TensorType((B, S, 5), "f32", Rate.SYMBOL))] + nodes[i + 1:]))
    with pytest.raises(IRError, match="stored type f32\\[B,S,5\\] @symbol but operands give"):
        verify(bad_shape, after="test")
    bad_rate = g.replace(nodes=tuple(nodes[:i] + [nodes[i].replace(
        type=TensorType((B, S, 4), "f32", Rate.SLOT))] + nodes[i + 1:]))
    assert any("@slot but operands give" in p for p in problems(bad_rate))
    undefined = g.replace(nodes=tuple(n.replace(inputs=("ghost",)) if n.name == "relu" else n
                                      for n in nodes))
    assert any("undefined or later-defined value(s) %ghost" in p for p in problems(undefined))
    out_of_order = g.replace(nodes=tuple(nodes[:i] + [nodes[i + 1], nodes[i]] + nodes[i + 2:]))
    assert any("%relu" in p and "%hty" in p for p in problems(out_of_order))
    dangling = g.replace(outputs=("nowhere",))
    assert any("graph output %nowhere is not defined" in p for p in problems(dangling))
    twice = g.replace(nodes=tuple(nodes + [nodes[-1]]))
    assert any("defined twice" in p for p in problems(twice))
    no_tensor = g.replace(constants={})
    assert any("Const without a tensor" in p for p in problems(no_tensor))
    bad_attr = g.replace(nodes=tuple(n.replace(attrs=Attrs({"axis": 1})) if n.name == "relu"
                                     else n for n in nodes))
    assert any("unknown attribute(s) axis" in p for p in problems(bad_attr))
    const_input = Node("H", "Input", (), Attrs(), TensorType((B, 8, 4), "f32", Rate.CONST))
    assert any("slot or symbol" in p for p in problems(g.replace(
        nodes=(const_input,) + tuple(nodes[1:]))))


def test_text_form(gen):
    text = format_graph(small_graph(gen))
    assert text.splitlines()[0] == ("graph small(%H: f32[B,8,4] @slot, %y: f32[B,S,8] @symbol)"
                                    " -> (%x_hat)")
    assert "  %hty: f32[B,S,4] @symbol = MatMul(%y, %H)" in text
    assert ("%x_hat: f32[B,S,3] @symbol = Linear(%relu, W=fc.weight[3x4], b=fc.bias[3])  # fc"
            in text)
    assert "# 2 constants, 15 parameters" in text


def test_interpreter_matches_torch_and_binds_dims(gen):
    g = small_graph(gen)
    H, y = torch.randn(2, 8, 4, generator=gen), torch.randn(2, 7, 8, generator=gen)
    out, = run(g, {"H": H, "y": y})
    ref = torch.relu(y @ H) @ g.constants["fc.weight"].T + g.constants["fc.bias"]
    torch.testing.assert_close(out, ref)
    out64, = run(g, {"H": H, "y": y}, dtype=torch.float64)
    assert out64.dtype == torch.float64
    with pytest.raises(UsageError, match="inputs disagree on dimension B"):
        run(g, {"H": H, "y": torch.randn(3, 7, 8)})
    with pytest.raises(UsageError, match="input 'H' has shape \\[2, 8, 5\\]"):
        run(g, {"H": torch.randn(2, 8, 5), "y": y})
    with pytest.raises(UsageError, match="missing input 'y'"):
        run(g, {"H": H})


def test_flops_by_rate_hand_count(gen):
    b = GraphBuilder()
    H = b.input("H", ("B", 8, 4), Rate.SLOT)
    y = b.input("y", ("B", "S", 8), Rate.SYMBOL)
    gram = b.add("Gram", [H])                       # 2 * 8 * 4 * 4 = 256 per slot
    hty = b.add("MatMul", [y, H])                   # 2 * 8 * 4 = 64 per symbol
    x = b.add("MatMul", [hty, gram])                # 2 * 4 * 4 = 32 per symbol
    W = b.const("w", torch.randn(16, 4, generator=gen))
    z = b.add("Linear", [b.add("Relu", [x]), W])    # 2 * 4 * 16 = 128 per symbol
    g = b.build([z])
    report = count_flops(g)
    assert (report.per_slot, report.per_symbol) == (256, 64 + 32 + 128)
    big = count_flops(g, {"B": 2, "S": 14})
    assert big.per_symbol == 2 * 14 * (64 + 32 + 128) and big.per_slot == 2 * 256


def test_conv_and_layout_ops_execute_like_torch(gen):
    b = GraphBuilder()
    H = b.input("H", ("B", 8, 4), Rate.SLOT)
    y = b.input("y", ("B", "S", 8), Rate.SYMBOL)
    rows = b.add("Expand", [b.add("Unsqueeze", [H], {"axis": 1})], {"shape": (B, S, 8, 4)})
    hty = b.add("Unsqueeze", [b.add("MatMul", [y, H])], {"axis": 2})
    image = b.add("Reshape", [b.add("Concat", [rows, hty], {"axis": 2})],
                  {"shape": (D.mul(B, S), 1, 9, 4)})
    W = b.const("conv.weight", torch.randn(2, 1, 3, 3, generator=gen))
    conv = b.add("Conv2d", [image, W], {"padding": (1, 1)})
    flat = b.add("Reshape", [conv], {"shape": (B, S, 72)})
    out = b.add("Slice", [b.add("Tanh", [flat])], {"axis": 2, "start": 1, "end": 9, "step": 2})
    g = verify(b.build([out]))
    assert g.node(out).shape == (B, S, 4)
    Ht, yt = torch.randn(2, 8, 4, generator=gen), torch.randn(2, 3, 8, generator=gen)
    got, = run(g, {"H": Ht, "y": yt})
    img = torch.cat([Ht.unsqueeze(1).expand(2, 3, 8, 4), (yt @ Ht).unsqueeze(2)], 2)
    ref = torch.nn.functional.conv2d(img.reshape(6, 1, 9, 4), g.constants["conv.weight"],
                                     padding=1).reshape(2, 3, 72).tanh()[:, :, 1:9:2]
    torch.testing.assert_close(got, ref)
    assert count_flops(g).per_symbol == 2 * 8 * 4 + 2 * (2 * 9 * 4) * 9
