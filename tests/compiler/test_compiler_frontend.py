"""Frontend and end-to-end equivalence on detectors written independently of the zoo.

PyTorch model vs IR interpreter, before and after every pass, and the slot/symbol stages,
within 1e-5 (relative, fp32); FLOP reductions of split-channel against hand counts.
"""

from __future__ import annotations

import pytest
import torch
from independent_detectors import ConvDetector, UnfoldedDetector, random_link
from torch import nn

from mimoc.compiler.flops import count_flops
from mimoc.compiler.frontend import UnsupportedOpError, import_module
from mimoc.compiler.interpreter import run
from mimoc.compiler.ir import Rate
from mimoc.compiler.pipeline import default_passes, run_pipeline
from mimoc.compiler.stages import run_stages, split_stages
from mimoc.errors import MimocError

NT, NR, LAYERS, HIDDEN, V_DIM = 2, 4, 3, 16, 4


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.fixture(scope="module")
def unfolded():
    torch.manual_seed(0)
    model = UnfoldedDetector(NT, NR, LAYERS, HIDDEN, V_DIM).eval()
    return model, import_module(model, random_link(NT, NR))


@pytest.fixture(scope="module")
def conv():
    torch.manual_seed(1)
    model = ConvDetector(NT, NR, channels=4).eval()
    return model, import_module(model, random_link(NT, NR))


@pytest.fixture(params=["unfolded", "conv"])
def compiled(request):
    return request.getfixturevalue(request.param)


def test_frontend_graph_shape_names_and_rates(unfolded):
    _, graph = unfolded
    H, y = graph.inputs
    assert (H.name, str(H.type.shape), H.rate) == ("H", str(H.type.shape), Rate.SLOT)
    assert [str(d) for d in y.shape] == ["B", "S", str(2 * NR)] and y.rate == Rate.SYMBOL
    assert graph.outputs == ("x_hat",)
    assert [str(d) for d in graph.node("x_hat").shape] == ["B", "S", str(2 * NT)]
    scopes = {n.scope for n in graph.nodes if n.op == "Linear"}
    assert {"blocks.0.fc1", "blocks.2.fc_x"} <= scopes


@pytest.mark.parametrize("batch,slot", [(3, 5), (1, 14), (4, 1)])
def test_every_pass_keeps_the_outputs(compiled, batch, slot):
    model, graph = compiled
    H, y = random_link(NT, NR, batch, slot, seed=batch)
    with torch.no_grad():
        ref = model(H, y)
        ref64 = model.double()(H.double(), y.double())
        model.float()
    result = run_pipeline(graph, "canonicalize,split-channel")
    for g in [graph] + [result.graph]:
        out, = run(g, {"H": H, "y": y})
        assert rel_err(out, ref) < 1e-5
        out64, = run(g, {"H": H, "y": y}, dtype=torch.float64)
        assert rel_err(out64, ref64) < 1e-6  # only the fp32 storage of folded weights differs
    stages = split_stages(result.graph)
    staged, = run_stages(stages, {"H": H, "y": y})
    assert rel_err(staged, ref) < 1e-5


def test_intermediate_graphs_after_each_pass(compiled):
    model, graph = compiled
    H, y = random_link(NT, NR, 2, 3, seed=7)
    with torch.no_grad():
        ref = model(H, y)
    for passes in ("canonicalize", "split-channel", "cse", "split-channel,canonicalize"):
        out, = run(run_pipeline(graph, passes).graph, {"H": H, "y": y})
        assert rel_err(out, ref) < 1e-5, passes


def test_split_channel_flops_match_hand_counts(unfolded):
    _, graph = unfolded
    m, n, h, v, L = 2 * NR, 2 * NT, HIDDEN, V_DIM, LAYERS
    mlp = L * 2 * (3 * n + v) * h + L * 2 * h * n + (L - 1) * 2 * h * v  # last v is dead
    before = count_flops(graph)
    # H^T y in every block, H x and H^T (H x) in every block but the first (x_0 = 0 is
    # const rate: its products are slot-rate work)
    assert before.per_symbol == L * 2 * m * n + (L - 1) * 2 * (2 * m * n) + mlp
    assert before.per_slot == 2 * (2 * m * n)
    result = run_pipeline(graph, "canonicalize,split-channel")
    after = count_flops(result.graph)
    # H^T y once, (H^T H) x_k with H^T H hoisted and computed once per slot
    assert after.per_symbol == 2 * m * n + (L - 1) * 2 * n * n + mlp
    assert after.per_slot == 2 * m * n * n
    grams = [node for node in result.graph.nodes if node.op == "Gram"]
    assert len(grams) == 1 and grams[0].rate == Rate.SLOT
    assert set(split_stages(result.graph).state) == {"H", grams[0].name}


def test_conv_detector_batchnorm_folded_and_solve_hoisted(conv):
    model, graph = conv
    result = run_pipeline(graph, default_passes("onnx"))
    out = result.graph
    ops = [node.op for node in out.nodes]
    assert "BatchNorm" not in ops and "Solve" not in ops
    assert out.node("linalg_solve_inverse").rate == Rate.SLOT
    assert {node.scope for node in out.nodes if node.op == "Conv2d"} == {"conv1", "conv2"}
    # Hand counts (2 x MACs) at B = S = 1: n = 2Nt = 4 columns, m = 2Nr = 8, the image has
    # R = m + 1 = 9 rows of width n (H's rows, then the ZF estimate's row), C = 4 channels.
    n, m, C = 2 * NT, 2 * NR, 4
    R = m + 1
    y_h = 2 * m * n                                     # y @ H
    conv1, conv2 = 2 * C * 1 * 9 * R * n, 2 * 1 * C * 9 * R * n
    head = 2 * (R * n) * n
    frontend = count_flops(graph)
    assert frontend.per_slot == 2 * m * n * n           # H^T H
    assert frontend.per_symbol == y_h + (2 * n ** 3) // 3 + 2 * n * n + conv1 + conv2 + head
    by_pass = {r.name: r for r in result.records}
    assert list(by_pass) == ["canonicalize", "split-channel", "hoist-conv-rows", "split-linear"]
    # split-channel: Solve(H^T H, .) -> Inverse(H^T H) @ . moves the 2n^3/3 factorisation to
    # the slot stage as a 2n^3 inverse; the 2n^2 substitution stays a per-symbol MatMul.
    split = by_pass["split-channel"]
    assert split.flops_before.per_symbol - split.flops_after.per_symbol == (2 * n ** 3) // 3
    assert split.flops_after.per_slot - split.flops_before.per_slot == 2 * n ** 3
    # hoist-conv-rows: only the last row (the ZF estimate) depends on y. conv1 computes the
    # 2 band rows (row 8 and the row above it), conv2 3 rows; the head reads 3 band rows of
    # n columns per symbol. The full-image convolutions and the head's other 6 rows
    # (6 n columns, plus the bias) run once per slot on the image with the band zeroed.
    hoist = by_pass["hoist-conv-rows"]
    band = 2 * C * 9 * 2 * n + 2 * C * 9 * 3 * n + 2 * (3 * n) * n
    assert hoist.flops_after.per_symbol == y_h + 2 * n * n + band == 1632
    assert hoist.flops_after.per_slot == 2 * m * n * n + 2 * n ** 3 + conv1 + conv2 \
        + 2 * (6 * n) * n == 5760
    # split-linear: the head reads no zero or channel-only Concat parts: unchanged.
    assert by_pass["split-linear"].flops_after == hoist.flops_after
    H, y = random_link(NT, NR, seed=3)
    x_hat, = run_stages(split_stages(out), {"H": H, "y": y})
    assert rel_err(x_hat, model(H, y).detach()) < 1e-5


class Cumulative(nn.Module):
    def forward(self, H, y):
        return torch.cumsum(y @ H, dim=-1)  # the line the error must point at


def test_unsupported_op_names_op_line_and_supported_set():
    H, y = random_link(NT, NR)
    with pytest.raises(UnsupportedOpError) as info:
        import_module(Cumulative(), (H, y))
    message = str(info.value)
    assert message.startswith("aten.cumsum.default at ")
    assert "test_compiler_frontend.py:" in message and "torch.cumsum(y @ H" in message
    assert "supported ATen ops: " in message and "aten.linear" in message
    assert "\n" not in message and isinstance(info.value, MimocError)


class ParameterOnlyOps(nn.Module):
    """Weights computed from parameters with ops the IR has no op for (cumsum, softplus,
    cumprod, erfinv, arange, a random-free lookup): folded into constants at import."""

    def __init__(self):
        super().__init__()
        self.d = nn.Parameter(torch.randn(2 * NT))
        self.fc = nn.Linear(2 * NT, 2 * NT)
        self.register_buffer("steps", torch.tensor([0.1, 0.2, 0.3, 0.4]))

    def forward(self, H, y):
        scale = torch.relu(1.0 - torch.cumsum(nn.functional.softplus(self.d), dim=0))
        scale = scale + torch.cumprod(self.steps, 0) + torch.erfinv(self.steps)
        weight = self.fc.weight * torch.arange(2 * NT, dtype=torch.float32)  # column scaling
        return nn.functional.linear((y @ H) * scale, weight, self.fc.bias)


def test_parameter_only_subgraphs_fold_into_constants_whatever_their_ops():
    torch.manual_seed(4)
    model = ParameterOnlyOps().eval()
    H, y = random_link(NT, NR)
    graph = import_module(model, (H, y))
    ops = [node.op for node in graph.nodes]
    assert ops.count("Const") == 3 and ops.count("Linear") == 1  # scale, weight, bias
    linear = next(node for node in graph.nodes if node.op == "Linear")
    assert graph.node(linear.inputs[1]).op == "Const"  # the folded weight stays a weight
    assert all(graph.node(n).rate == Rate.CONST for n in linear.inputs[1:])
    with torch.no_grad():
        want = model(H, y)
    assert rel_err(run(graph, {"H": H, "y": y})[0], want) < 1e-6
    result = run_pipeline(graph, default_passes("onnx"))
    assert rel_err(run_stages(split_stages(result.graph), {"H": H, "y": y})[0], want) < 1e-6


class CumsumOfParameterOnDataPath(nn.Module):
    def __init__(self):
        super().__init__()
        self.d = nn.Parameter(torch.randn(2 * NT))

    def forward(self, H, y):
        return torch.cumsum((y @ H) * self.d, dim=-1)  # data path: must be rejected


class ShapeDerived(nn.Module):
    def forward(self, H, y):
        counts = torch.cumsum(torch.ones(H.shape[-1]), 0)  # depends on H's (dynamic) shape
        return (y @ H) * counts


def test_ops_that_read_h_or_y_are_not_folded():
    H, y = random_link(NT, NR)
    dynamic_columns = {"H": {0: "B", 2: "N"}, "y": {0: "B", 1: "S"}}  # H.shape[-1] symbolic
    for module, code, dims in (
            (CumsumOfParameterOnDataPath(), "torch.cumsum((y @ H) * self.d", None),
            (ShapeDerived(), "torch.cumsum(torch.ones(H.shape[-1])", dynamic_columns)):
        with pytest.raises(UnsupportedOpError) as info:
            import_module(module, (H, y), dims=dims)
        message = str(info.value)
        assert message.startswith("aten.cumsum.default at ") and code in message
        assert "supported ATen ops: " in message and "\n" not in message


class NaNWeights(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2 * NR, 2 * NT)
        with torch.no_grad():
            self.fc.weight[0, 0] = float("nan")

    def forward(self, H, y):
        return self.fc(y)


def test_nan_weights_are_refused():
    with pytest.raises(MimocError, match="weight fc.weight contains NaN or Inf"):
        import_module(NaNWeights(), random_link(NT, NR))


def test_interface_mismatch_is_a_mimoc_error():
    class OneInput(nn.Module):
        def forward(self, H):
            return H

    with pytest.raises(MimocError):
        import_module(OneInput(), random_link(NT, NR))


class InPlace(nn.Module):
    """In-place ops make the frontend lower the program to the functional opset first."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2 * NT, 2 * NT)

    def forward(self, H, y):
        x = y @ H
        x.relu_()
        x.mul_(2.0)
        return self.fc(x).movedim(-1, 1).movedim(1, -1)


def test_in_place_ops_are_lowered_to_functional_ops():
    model = InPlace().eval()
    H, y = random_link(NT, NR)
    graph = import_module(model, (H, y))
    assert {"Relu", "Mul", "Linear"} <= {n.op for n in graph.nodes}
    out, = run(graph, {"H": H, "y": y})
    with torch.no_grad():
        assert rel_err(out, model(H, y)) < 1e-6
