"""The fp32 lowering undoes what only input quantizers needed (mimoc.targets.onnx.uncode):
difference coding and zero parts."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper

import mimoc.targets.onnx.emit as emit
from mimoc.api import compile as compile_model
from mimoc.detectors import build_detector
from mimoc.targets.onnx.uncode import drop_zero_parts, undo_difference_coding


def _coded(a_shape=("B", "S", 3)) -> onnx.ModelProto:
    """``Gemm(Concat(rows(a - b), rows(b), c))``, the form the quantize pass emits."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 8)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "bias"),
             numpy_helper.from_array(np.array([-1, 3], np.int64), "rows3"),
             numpy_helper.from_array(np.array([-1, 2], np.int64), "rows2")]
    nodes = [helper.make_node("Sub", ["a", "b"], ["diff"]),
             helper.make_node("Reshape", ["diff", "rows3"], ["diff.rows"]),
             helper.make_node("Reshape", ["b", "rows3"], ["b.rows"]),
             helper.make_node("Reshape", ["c", "rows2"], ["c.rows"]),
             helper.make_node("Concat", ["diff.rows", "b.rows", "c.rows"], ["cat"], axis=1),
             helper.make_node("Gemm", ["cat", "w", "bias"], ["out"], transB=1)]
    graph = helper.make_graph(
        nodes, "coded", [helper.make_tensor_value_info("a", TensorProto.FLOAT, list(a_shape)),
                         helper.make_tensor_value_info("b", TensorProto.FLOAT, ["B", "S", 3]),
                         helper.make_tensor_value_info("c", TensorProto.FLOAT, ["B", "S", 2])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [None, 4])], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)


def _run(model: onnx.ModelProto, feed: dict) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=[
        "CPUExecutionProvider"]).run(None, feed)[0]


def test_the_sub_moves_into_the_weights():
    rng = np.random.default_rng(1)
    feed = {name: rng.standard_normal((2, 5, width)).astype(np.float32)
            for name, width in (("a", 3), ("b", 3), ("c", 2))}
    expected = _run(_coded(), feed)
    after = undo_difference_coding(_coded())
    onnx.checker.check_model(after, full_check=True)
    assert "Sub" not in [n.op_type for n in after.graph.node]
    np.testing.assert_allclose(_run(after, feed), expected, rtol=1e-5, atol=1e-5)


def test_codings_it_cannot_prove_are_left_alone():
    broadcast = _coded(a_shape=("B", 1, 3))  # a - b broadcasts a: rows(a) has fewer rows
    assert undo_difference_coding(broadcast).SerializeToString() \
        == _coded(a_shape=("B", 1, 3)).SerializeToString()
    read_twice = _coded()
    read_twice.graph.output.append(helper.make_tensor_value_info("diff", TensorProto.FLOAT,
                                                                 None))
    before = read_twice.SerializeToString()
    assert undo_difference_coding(read_twice).SerializeToString() == before


def _zero_padded(rank: int) -> onnx.ModelProto:
    """``Gemm(rows(Concat(a, zeros like a, c)))``: DetNet's first block input."""
    rng = np.random.default_rng(0)
    dims = ["B", "S"][:rank - 1]
    inits = [numpy_helper.from_array(rng.standard_normal((4, 8)).astype(np.float32), "w"),
             numpy_helper.from_array(np.array([-1, 8], np.int64), "i64.m1_8")]
    nodes = [helper.make_node("Shape", ["a"], ["shape"]),
             helper.make_node("ConstantOfShape", ["shape"], ["zeros"]),
             helper.make_node("Concat", ["a", "zeros", "c"], ["cat"], axis=-1)]
    if rank > 2:
        nodes.append(helper.make_node("Reshape", ["cat", "i64.m1_8"], ["cat.rows"]))
    nodes.append(helper.make_node("Gemm", [nodes[-1].output[0], "w"], ["out"], transB=1))
    graph = helper.make_graph(
        nodes, "padded", [helper.make_tensor_value_info("a", TensorProto.FLOAT, dims + [3]),
                          helper.make_tensor_value_info("c", TensorProto.FLOAT, dims + [2])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [None, 4])], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)


def test_zero_parts_lose_their_columns():
    rng = np.random.default_rng(1)
    for rank in (2, 3):
        size = (5,) if rank == 2 else (2, 7)
        feed = {"a": rng.standard_normal((*size, 3)).astype(np.float32),
                "c": rng.standard_normal((*size, 2)).astype(np.float32)}
        expected = _run(_zero_padded(rank), feed)
        after = drop_zero_parts(_zero_padded(rank))
        onnx.checker.check_model(after, full_check=True)
        ops = [n.op_type for n in after.graph.node]
        assert "ConstantOfShape" not in ops and "Shape" not in ops
        weight = next(t for t in after.graph.initializer if t.name.startswith("w"))
        assert list(weight.dims) == [4, 5]  # 8 columns, 3 of them zero
        np.testing.assert_allclose(_run(after, feed), expected, rtol=1e-6, atol=1e-6)


def test_quantized_detnet_fp32_lowering_is_the_float_graphs_shape(monkeypatch):
    """The fp32 lowering of a difference-coded 4-bit DetNet has the float model's ops
    (no Sub, no zero parts, residual Muls folded), and computes what the coded graph
    computes."""
    torch.manual_seed(0)
    model = build_detector("detnet", nt=4, nr=8, modulation="qpsk", layers=4, hidden=32,
                           v_dim=8).eval()
    graph = compile_model(model, quant="minmax", lowering="w4a4").pipeline.graph
    simplified = emit.emit_model(graph, "d", lowering="fp32")
    monkeypatch.setattr(emit, "undo_difference_coding", lambda m: m)
    monkeypatch.setattr(emit, "drop_zero_parts", lambda m: m)
    coded = emit.emit_model(graph, "d", lowering="fp32")
    float_graph = compile_model(model).models["detector"]

    def ops(m):
        return sorted(n.op_type for n in m.graph.node)

    assert ops(simplified) == ops(float_graph) != ops(coded)
    assert "Sub" in ops(coded) and "ConstantOfShape" in ops(coded)
    gen = torch.Generator().manual_seed(2)
    feed = {"H": (torch.randn(3, 16, 8, generator=gen) / 4).numpy(),
            "y": torch.randn(3, 14, 16, generator=gen).numpy()}
    got, expected = _run(simplified, feed), _run(coded, feed)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert (np.sign(got) == np.sign(expected)).all()
