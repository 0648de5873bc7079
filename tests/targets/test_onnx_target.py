"""The ONNX target against PyTorch: every zoo family (tiny configs) and the independent
detectors compile, and the IR interpreter, ``detector.onnx`` and ``slot.onnx`` +
``symbol.onnx`` all equal the PyTorch model within 1e-5 (relative, fp32) for several batch
sizes and slot lengths (the dims are really dynamic); the models pass the full ONNX check,
list no initializer as a graph input, name their nodes after the layers, and compile to
byte-identical files twice."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from independent_detectors import ConvDetector, UnfoldedDetector, random_link

from mimoc.api import compile as compile_model
from mimoc.compiler.interpreter import run
from mimoc.detectors import FAMILIES, build_detector
from mimoc.targets.onnx import OPSET

CONFIGS = {
    "detnet": dict(nt=2, nr=4, modulation="qpsk", layers=3, hidden=16, v_dim=4),
    "detnet-16qam": dict(nt=2, nr=4, modulation="16qam", layers=2, hidden=16, v_dim=4),
    "wesnet": dict(nt=2, nr=4, modulation="qpsk", layers=3, hidden=16, v_dim=4),
    "sdnet": dict(nt=2, nr=4, modulation="qpsk", nconv=1, channels=2),
    "remimo": dict(nt=3, nr=4, modulation="qpsk", nt_min=2, d_model=8, heads=2, ff=8,
                   predictor_hidden=8, embed_hidden=8, iterations=1),
}
SIZES = [(1, 1), (3, 5), (2, 14)]  # (B, S)
TOL = 1e-5


def rel_err(a, b) -> float:
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    return float((a - b).abs().max() / b.abs().max())


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_every_family_is_covered():
    assert set(FAMILIES) <= {key.split("-")[0] for key in CONFIGS}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def compiled(request):
    torch.manual_seed(0)
    key = request.param
    model = build_detector(key.split("-")[0], **CONFIGS[key]).eval()
    return key, model, compile_model(model)


def _user_counts(key: str) -> list[int]:
    config = CONFIGS[key]
    return [config["nt"]] + ([config["nt_min"]] if "nt_min" in config else [])


def test_interpreter_and_onnx_models_match_pytorch(compiled):
    key, model, result = compiled
    detector, slot, symbol = (session(result.models[k]) for k in ("detector", "slot", "symbol"))
    state_names = [o.name for o in slot.get_outputs()]
    for nt in _user_counts(key):  # RE-MIMO: one artifact for every user count
        for batch, slot_len in SIZES:
            H, y = random_link(nt, CONFIGS[key]["nr"], batch=batch, slot=slot_len, seed=batch)
            with torch.no_grad():
                ref = model(H, y)
            interpreted, = run(result.pipeline.graph, {"H": H, "y": y})
            whole = detector.run(None, {"H": H.numpy(), "y": y.numpy()})[0]
            feed = dict(zip(state_names, slot.run(None, {"H": H.numpy()}), strict=True))
            feed["y"] = y.numpy()
            staged = symbol.run(None, {i.name: feed[i.name] for i in symbol.get_inputs()})[0]
            for out in (interpreted, whole, staged):
                assert tuple(out.shape) == tuple(ref.shape)
                assert rel_err(out, ref) < TOL, (key, nt, batch, slot_len)


def test_models_pass_the_full_check_with_readable_names(compiled):
    key, _, result = compiled
    for name, model in result.models.items():
        onnx.checker.check_model(model, full_check=True)
        assert model.opset_import[0].version >= 21 and OPSET >= 21
        initializers = {i.name for i in model.graph.initializer}
        assert not initializers & {i.name for i in model.graph.input}, (key, name)
        names = [n.name for n in model.graph.node]
        assert len(set(names)) == len(names) and all(n.count("/") >= 2 for n in names)
    graph = result.models["detector"].graph
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
              for i in graph.input}
    assert inputs["H"][0] == "B" and inputs["y"][:2] == ["B", "S"]
    assert [o.name for o in graph.output] == ["x_hat"]
    if key == "remimo":
        assert inputs["H"][2] == "2*U"
    else:  # layer scopes show in node names: blocks.0.fc1/..., convs.0/...
        scopes = {n.name.split("/")[0] for n in graph.node}
        assert scopes & {"blocks.0.fc1", "convs.0", "fc"}, scopes


def test_slot_stage_holds_the_channel_work(compiled):
    key, _, result = compiled
    manifest = result.manifest
    assert manifest["slot_state"] and manifest["flops"]["slot_rate"] > 0, key
    slot_inputs = [i.name for i in result.models["slot"].graph.input]
    assert slot_inputs == ["H"]
    symbol_inputs = {i.name for i in result.models["symbol"].graph.input}
    assert symbol_inputs == {"y"} | {s["name"] for s in manifest["slot_state"]}
    assert all(layer["lowering"] == "fp32" for layer in manifest["layers"])


def test_compiling_twice_gives_identical_files(tmp_path):
    torch.manual_seed(0)
    model = build_detector("detnet", **CONFIGS["detnet"]).eval()
    from mimoc.detectors import save_detector

    save_detector(model, tmp_path / "m.pt")
    a = compile_model(tmp_path / "m.pt", out=tmp_path / "a").path
    b = compile_model(tmp_path / "m.pt", out=tmp_path / "b").path
    names = sorted(p.name for p in a.iterdir())
    assert names == ["detector.onnx", "manifest.json", "slot.onnx", "symbol.onnx"]
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.mark.parametrize("make", [lambda: UnfoldedDetector(), lambda: ConvDetector()],
                         ids=["unfolded", "conv"])
def test_independent_detectors_compile_and_match(make):
    torch.manual_seed(0)
    model = make().eval()
    example = random_link(2, 4, batch=2, slot=3)
    result = compile_model(model, example=example)
    detector = session(result.models["detector"])
    for batch, slot_len in SIZES:
        H, y = random_link(2, 4, batch=batch, slot=slot_len, seed=7 + batch)
        with torch.no_grad():
            ref = model(H, y)
        out = detector.run(None, {"H": H.numpy(), "y": y.numpy()})[0]
        assert rel_err(out, ref) < TOL
    onnx.checker.check_model(result.models["detector"], full_check=True)


def test_fused_soft_sign_cuts_nodes_and_keeps_values():
    torch.manual_seed(0)
    model = build_detector("detnet", **CONFIGS["detnet"]).eval()
    result = compile_model(model)
    fuse = [r for r in result.pipeline.records if r.name == "onnx-fuse"]
    assert fuse and fuse[0].nodes_after < fuse[0].nodes_before
    assert fuse[0].flops_after.per_symbol == fuse[0].flops_before.per_symbol
    ops = {n.op_type for n in result.models["symbol"].graph.node}
    assert "Clip" in ops and "Relu" in ops and "Div" not in ops
    H, y = random_link(2, 4, batch=4, slot=6, seed=3)
    out = session(result.models["detector"]).run(None, {"H": H.numpy(), "y": y.numpy()})[0]
    with torch.no_grad():
        assert rel_err(out, model(H, y)) < TOL
    assert np.isfinite(out).all()


def test_symbol_layers_run_as_gemm_on_rows(tmp_path):
    """Per-symbol Linear layers are Gemm (bias fused) on [B*S, n] rows, in the emitted and
    in onnxruntime's optimized graph; layout changes stay few (not one per layer)."""
    from mimoc.runtime import session_options

    torch.manual_seed(0)
    model = build_detector("detnet", **CONFIGS["detnet"]).eval()
    result = compile_model(model)
    symbol = result.models["symbol"]
    linears = [n for n in result.artifact.stages.symbol.nodes if n.op == "Linear"]
    gemms = [n for n in symbol.graph.node if n.op_type == "Gemm"]
    gemm_outputs = {g.output[0] for g in gemms}
    fused = sum(len(n.output) - 1 for n in symbol.graph.node  # sibling Gemms made one
                if n.op_type == "Split" and n.input[0] in gemm_outputs)
    assert linears and len(gemms) + fused == len(linears) and fused
    assert all(len(g.input) == 3 for g in gemms)  # bias inside the Gemm
    initializers = {t.name for t in symbol.graph.initializer}
    weight_matmuls = [n for n in symbol.graph.node
                      if n.op_type == "MatMul" and n.input[1] in initializers]
    assert not weight_matmuls
    blocks = CONFIGS["detnet"]["layers"]
    reshapes = [n for n in symbol.graph.node if n.op_type == "Reshape"]
    assert len(reshapes) <= 2 * blocks + 2  # x @ H^T H per block, stage entry and exit
    path = tmp_path / "symbol.opt.onnx"
    ort.InferenceSession(symbol.SerializeToString(), session_options(1, optimized_model=str(path)),
                         providers=["CPUExecutionProvider"])
    optimized = {n.op_type for n in onnx.load(path).graph.node}
    assert optimized & {"Gemm", "FusedGemm"}


def test_layouts_are_planned_before_emission():
    """Rows for a per-symbol Linear, for elementwise ops whose operand already has a row
    form (also one made by an earlier row reader: ``y`` read by the Linear), the IR layout
    for a batched MatMul and what reads only it; the model still computes the graph."""
    from mimoc.compiler.builder import GraphBuilder
    from mimoc.compiler.ir import Rate
    from mimoc.targets.onnx import emit_model
    from mimoc.targets.onnx.emitters import LAYOUT_RULES
    from mimoc.targets.onnx.layout import Layout, plan_layouts

    gen = torch.Generator().manual_seed(0)
    b = GraphBuilder()
    H = b.input("H", ("B", 8, 4), Rate.SLOT)
    y = b.input("y", ("B", "S", 8), Rate.SYMBOL)
    hidden = b.add("Linear", [y, b.const("fc.weight", torch.randn(6, 8, generator=gen)),
                              b.const("fc.bias", torch.randn(6, generator=gen))], scope="fc")
    relu = b.add("Relu", [hidden], name="relu")
    shifted = b.add("Add", [y, b.const("shift", torch.randn(8, generator=gen))], name="shifted")
    mixed = b.add("MatMul", [y, H], name="mixed")
    squashed = b.add("Tanh", [mixed], name="squashed")
    graph = b.build([relu, shifted, squashed])
    plan = plan_layouts(graph, "fp32", LAYOUT_RULES)
    layouts = {name: plan.layout(name).value for name in (hidden, relu, shifted, mixed,
                                                          squashed)}
    assert layouts == {hidden: "rows", relu: "rows", shifted: "rows", mixed: "plain",
                       squashed: "plain"}
    assert plan.layout(y) is Layout.PLAIN and plan.has_rows(y)
    model = emit_model(graph, "layouts")
    producers = {n.output[0]: n.op_type for n in model.graph.node}
    assert sum(op == "Reshape" for op in producers.values()) == 3  # y in, relu and shifted out
    assert producers["relu.rows.0"] == "Relu" and producers["squashed"] == "Tanh"
    inputs = {"H": torch.randn(3, 8, 4, generator=gen), "y": torch.randn(3, 5, 8, generator=gen)}
    expected = run(graph, inputs)
    outputs = session(model).run(None, {k: v.numpy() for k, v in inputs.items()})
    for out, ref in zip(outputs, expected, strict=True):
        assert rel_err(out, ref) < TOL
