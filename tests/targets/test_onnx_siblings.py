"""Sibling Gemms (same input, constant weights) fused into one Gemm and a Split."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper

from mimoc.detectors import build_detector
from mimoc.targets.onnx.siblings import fuse_sibling_gemms


def _model(alpha: float = 1.0, trans_b=(1, 1)) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((6, 5)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal(6).astype(np.float32), "b1"),
             numpy_helper.from_array(rng.standard_normal((3, 5)).astype(np.float32), "w2"),
             numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "b2")]
    if trans_b[1] == 0:
        inits[2] = numpy_helper.from_array(rng.standard_normal((5, 3)).astype(np.float32),
                                           "w2")
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["a"], name="fc1/a/Gemm",
                              transB=trans_b[0], alpha=alpha),
             helper.make_node("Relu", ["a"], ["r"], name="fc1/r/Relu"),
             helper.make_node("Gemm", ["x", "w2", "b2"], ["b"], name="fc2/b/Gemm",
                              transB=trans_b[1]),
             helper.make_node("Concat", ["r", "b"], ["out"], name="g/out/Concat", axis=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["M", 5])], [helper.make_tensor_value_info(
            "out", TensorProto.FLOAT, ["M", 9])], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=[
        "CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_two_gemms_on_one_input_become_one_with_the_same_outputs():
    x = np.random.default_rng(1).standard_normal((14, 5)).astype(np.float32)
    before = _model()
    expected = _run(before, x)
    after = fuse_sibling_gemms(_model())
    onnx.checker.check_model(after, full_check=True)
    ops = [n.op_type for n in after.graph.node]
    assert ops.count("Gemm") == 1 and ops.count("Split") == 1
    assert {"w1", "w2", "b1", "b2"}.isdisjoint(t.name for t in after.graph.initializer)
    np.testing.assert_allclose(_run(after, x), expected, rtol=1e-6, atol=1e-6)


def test_gemms_that_differ_in_scaling_or_layout_are_left_alone():
    for model in (_model(alpha=2.0), _model(trans_b=(1, 0))):
        before = model.SerializeToString()
        assert fuse_sibling_gemms(model).SerializeToString() == before


def test_detnet_blocks_read_their_hidden_vector_once():
    """Each DetNet block's fc2 and fc3 (same hidden vector) run as one Gemm; the last
    block has no fc3 (its state is not read: pruned)."""
    import mimoc

    torch.manual_seed(0)
    model = build_detector("detnet", nt=2, nr=4, modulation="qpsk", layers=3, hidden=16,
                           v_dim=4).eval()
    detector = mimoc.compile(model).models["detector"]
    fused = [n.name for n in detector.graph.node if n.op_type == "Split"]
    assert len(fused) == 2 and all("fc2+" in name and "fc3" in name for name in fused)
