"""Residual chains s' = P + c s run without their Mul nodes (mimoc.targets.onnx.residual)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper

from mimoc.detectors import build_detector
from mimoc.targets.onnx.residual import fold_residual_scales


def _chain(c: float = 0.9, links: int = 3) -> onnx.ModelProto:
    """s_{k+1} = Clip(Gemm(Concat(x, s_k))) + c s_k, read by the next Gemm and the output."""
    rng = np.random.default_rng(0)
    inits, nodes, s = [], [], "s0"
    for k in range(links):
        inits += [numpy_helper.from_array(rng.standard_normal((3, 5)).astype(np.float32),
                                          f"w{k}"),
                  numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), f"b{k}"),
                  numpy_helper.from_array(np.array(c, np.float32), f"c{k}")]
        nodes += [helper.make_node("Concat", ["x", s], [f"z{k}"], axis=1),
                  helper.make_node("Gemm", [f"z{k}", f"w{k}", f"b{k}"], [f"g{k}"], transB=1),
                  helper.make_node("Clip", [f"g{k}", "lo", "hi"], [f"p{k}"]),
                  helper.make_node("Mul", [s, f"c{k}"], [f"m{k}"]),
                  helper.make_node("Add", [f"p{k}", f"m{k}"], [f"s{k + 1}"])]
        s = f"s{k + 1}"
    inits += [numpy_helper.from_array(np.array(-0.5, np.float32), "lo"),
              numpy_helper.from_array(np.array(0.5, np.float32), "hi")]
    graph = helper.make_graph(
        nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["M", 2]),
                         helper.make_tensor_value_info("s0", TensorProto.FLOAT, ["M", 3])],
        [helper.make_tensor_value_info(s, TensorProto.FLOAT, ["M", 3])], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)


def _run(model: onnx.ModelProto, feed: dict) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=[
        "CPUExecutionProvider"]).run(None, feed)[0]


def test_a_residual_chain_loses_its_muls_and_keeps_its_outputs():
    rng = np.random.default_rng(1)
    feed = {"x": rng.standard_normal((7, 2)).astype(np.float32),
            "s0": rng.standard_normal((7, 3)).astype(np.float32)}
    expected = _run(_chain(), feed)
    after = fold_residual_scales(_chain())
    onnx.checker.check_model(after, full_check=True)
    ops = [n.op_type for n in after.graph.node]
    assert ops.count("Mul") == 1 and len(ops) == len(_chain().graph.node) - 2  # 3 -> 1 (output)
    assert [o.name for o in after.graph.output] == [o.name for o in _chain().graph.output]
    np.testing.assert_allclose(_run(after, feed), expected, rtol=1e-5, atol=1e-6)


def test_chains_it_cannot_rescale_are_left_alone():
    for model in (_chain(c=-0.9), _chain(c=0.0)):  # a negative factor would flip the Clip
        before = model.SerializeToString()
        assert fold_residual_scales(model).SerializeToString() == before


def test_detnet_fp32_graph_matches_pytorch_without_residual_muls():
    """The emitted fp32 DetNet (a 4-block 4x8 here) keeps only the block-0 and output
    scales as Mul nodes, and its estimates equal PyTorch's."""
    import mimoc

    torch.manual_seed(0)
    model = build_detector("detnet", nt=4, nr=8, modulation="qpsk", layers=4, hidden=32,
                           v_dim=8).eval()
    detector = mimoc.compile(model).models["detector"]
    muls = [n for n in detector.graph.node if n.op_type == "Mul"]
    residual = [n for n in muls if "rescaled" not in n.output[0] and "x_hat" not in n.output[0]
                and any(i.startswith("add") for i in n.input)]
    assert residual == [] and sum(n.output[0] == "x_hat" for n in muls) == 1
    gen = torch.Generator().manual_seed(2)
    H = torch.randn(3, 16, 8, generator=gen) / 4
    y = torch.randn(3, 5, 16, generator=gen)
    with torch.no_grad():
        expected = model(H, y).numpy()
    session = ort.InferenceSession(detector.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    got = session.run(None, {n: {"H": H, "y": y}[n].numpy() for n in names})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert (np.sign(got) == np.sign(expected)).all()
