"""Quantized ONNX against the quantized PyTorch model, for DetNet, WeSNet and SDNet (tiny).

The recipes are built by hand from :mod:`mimoc.quant.spec` (per-channel weight steps that
clip the largest weights, dynamic 4-bit inputs, unsigned after ReLU), and the reference
is an independent fake-quantized forward written here from spec's two functions (forward
pre-hooks on the layers), cross-checked with :class:`mimoc.quant.QuantizedDetector`.

- the quantize pass: IR interpreter == reference in float64 (1e-9) and the integer weight
  codes equal ``round(W / s)`` of the torch weights (sign-flipped by a negative folded
  BatchNorm gain; ``W'`` for the difference-coded ``fc1`` of DetNet / WeSNet, whose
  ``-plain`` setup quantizes the block input as it is);
- ``w4a4``: detector.onnx and slot.onnx + symbol.onnx reproduce the reference's hard
  decisions on >= 99.9% of symbols (and its soft outputs to 1e-5);
- ``int8`` (8-bit static recipe): hard decisions >= 99.9%, outputs within 2 activation steps
  (SDNet's convolutions as ``ConvInteger``);
- ``w4``: against the weight-only reference (the kernel quantizes inputs to int8 per block
  instead of the recipe's A4) within the tolerance derived in :func:`w4_tolerance`;
- onnxruntime's optimized graphs run the weights low-bit; the w4 artifact's weight bytes.
"""

from __future__ import annotations

import contextlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from independent_detectors import random_link
from torch import nn

from mimoc.api import compile as compile_model
from mimoc.compiler.interpreter import run
from mimoc.compiler.passes.quantize import codes as weight_codes
from mimoc.detectors import build_detector
from mimoc.quant.detector import QuantizedDetector
from mimoc.quant.spec import (
    ActQuant,
    LayerQuant,
    QuantRecipe,
    difference_input,
    difference_weight,
    fake_quant_act,
    fake_quant_weight,
)
from mimoc.runtime.onnx_runner import config_entries, session_options
from mimoc.targets.onnx import Lowering

CONFIGS = {
    "detnet": dict(nt=2, nr=4, modulation="qpsk", layers=3, hidden=16, v_dim=4),
    "wesnet": dict(nt=2, nr=4, modulation="qpsk", layers=3, hidden=16, v_dim=4),
    "sdnet": dict(nt=2, nr=4, modulation="qpsk", nconv=1, channels=4),
}
CONFIGS["detnet-plain"] = CONFIGS["detnet"]  # no difference coding


def family_of(setup_name: str) -> str:
    return setup_name.split("-")[0]


def layers_of(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)}


def build(name: str) -> nn.Module:
    torch.manual_seed(1)
    model = build_detector(family_of(name), **CONFIGS[name]).eval()
    for m in model.modules():  # BatchNorm statistics and gains of a trained model
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(-1.5, 1.5)  # some negative gains
    return model


def input_rms(model: nn.Module, H, y) -> dict[str, float]:
    """RMS and sign of each layer's input on (H, y), to size the static steps."""
    stats, hooks = {}, []
    for name, layer in layers_of(model).items():
        def hook(module, args, name=name):
            x = args[0]
            stats[name] = (float(x.abs().max()), bool((x >= 0).all()))
        hooks.append(layer.register_forward_pre_hook(hook))
    with torch.no_grad():
        model(H, y)
    for h in hooks:
        h.remove()
    return stats


def make_recipe(model: nn.Module, method: str, bits: int, H, y, coded: bool = True
                ) -> QuantRecipe:
    stats = input_rms(model, H, y)
    differences = model.quant_input_differences() if coded else {}
    layers = {}
    for name, layer in layers_of(model).items():
        diff = differences.get(name)
        w = difference_weight(layer.weight.detach(), diff)
        qmax = 2 ** (bits - 1) - 1
        scale = 0.85 * w.abs().flatten(1).amax(1) / qmax  # the largest weights clip
        peak, unsigned = stats[name]
        if method == "int8":
            act = ActQuant(8, "static", peak / (255 if unsigned else 127), not unsigned)
        else:
            act = ActQuant(bits, "dynamic", 0.55 if unsigned else 0.45, not unsigned)
        layers[name] = LayerQuant(bits, scale, act, diff)
    return QuantRecipe(method, bits, layers)


@contextlib.contextmanager
def fake_quantized(model: nn.Module, recipe: QuantRecipe, activations: bool = True):
    """The spec's fake quantization on ``model``'s layers (weights swapped, input hooks)."""
    saved, hooks = {}, []
    for name, layer in layers_of(model).items():
        lq = recipe.layers.get(name)
        if lq is None:
            continue
        saved[name] = layer.weight.data
        layer.weight.data = fake_quant_weight(
            difference_weight(layer.weight.data, lq.difference),
            lq.weight_scale.to(layer.weight.dtype), lq.weight_bits)
        act = lq.act if activations else None
        dims = 1 if isinstance(layer, nn.Linear) else 3

        def pre_hook(module, args, act=act, dims=dims, diff=lq.difference):
            x = difference_input(args[0], diff)
            return (x if act is None else fake_quant_act(x, act, dims),)
        hooks.append(layer.register_forward_pre_hook(pre_hook))
    try:
        yield model
    finally:
        for name, layer in layers_of(model).items():
            if name in saved:
                layer.weight.data = saved[name]
        for h in hooks:
            h.remove()


def reference(model, recipe, H, y, *, activations=True, dtype=torch.float32):
    model = model.to(dtype)
    try:
        with torch.no_grad(), fake_quantized(model, recipe, activations):
            return model(H.to(dtype), y.to(dtype)).float()
    finally:
        model.float()


def link(name: str, batch: int, slot: int, seed: int):
    config = CONFIGS[name]
    return random_link(config["nt"], config["nr"], batch=batch, slot=slot, seed=seed)


def hard(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return np.sign(np.asarray(x))  # QPSK real parts: the sign is the decision


def session(model: onnx.ModelProto, **kwargs) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), session_options(**kwargs),
                                providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def setup(request):
    family = request.param
    model = build(family)
    H, y = link(family, 8, 14, seed=3)
    coded = not family.endswith("-plain")
    return (family, model, make_recipe(model, "kaq", 4, H, y, coded),
            make_recipe(model, "int8", 8, H, y, coded))


@pytest.fixture(scope="module")
def compiled(setup):
    family, model, recipe, recipe8 = setup
    out = {low: compile_model(model, quant=recipe, lowering=low) for low in ("w4", "w4a4")}
    out["int8"] = compile_model(model, quant=recipe8, lowering="int8")
    return out


def test_interpreter_equals_the_quantized_model_and_codes_are_identical(setup, compiled):
    family, model, recipe, _ = setup
    H, y = link(family, 3, 5, seed=7)
    graph = compiled["w4a4"].pipeline.graph
    ref = reference(model, recipe, H, y, dtype=torch.float64)
    out, = run(graph, {"H": H.double(), "y": y.double()}, dtype=torch.float64)
    assert float((out.float() - ref).abs().max() / ref.abs().max()) < 1e-6
    torch_layers = layers_of(model)
    checked = set()
    for node in graph.nodes:
        if node.op in ("Linear", "Conv2d") and node.scope in recipe.layers:
            quant = graph.node(node.inputs[1]).type.quant
            assert quant is not None and quant.bits == 4, node.scope
            ours = weight_codes(graph.constants[node.inputs[1]], quant)
            lq = recipe.layers[node.scope]
            w = difference_weight(torch_layers[node.scope].weight.detach(), lq.difference)
            theirs = torch.clamp(torch.round(w.double() / lq.weight_scale.double().reshape(
                (-1,) + (1,) * (w.dim() - 1))), -7, 7).to(torch.int64)
            if node.op == "Conv2d":  # BatchNorm folded: codes times sign(gain)
                bn = dict(model.named_modules())[node.scope.replace("convs", "norms")]
                theirs = theirs * torch.sign(bn.weight.detach()).to(torch.int64).reshape(
                    -1, 1, 1, 1)
            assert torch.equal(ours, theirs), node.scope
            checked.add(node.scope)
    assert checked == set(recipe.layers)
    coded = {n for n, lq in recipe.layers.items() if lq.difference is not None}
    expected = {f"blocks.{i}.fc1" for i in range(3)} if family in ("detnet", "wesnet") else set()
    assert coded == expected


def test_quantized_detector_agrees_with_the_spec_reference(setup):
    family, model, recipe, _ = setup
    H, y = link(family, 3, 5, seed=8)
    with torch.no_grad():
        theirs = QuantizedDetector(model, recipe).eval()(H, y)
    ours = reference(model, recipe, H, y)
    assert float((theirs - ours).abs().max() / ours.abs().max()) < 1e-5


def test_w4a4_reproduces_the_hard_decisions(setup, compiled):
    family, model, recipe, _ = setup
    result = compiled["w4a4"]
    H, y = link(family, 64, 14, seed=11)
    ref = reference(model, recipe, H, y)
    whole = session(result.models["detector"]).run(None, {"H": H.numpy(), "y": y.numpy()})[0]
    slot, symbol = session(result.models["slot"]), session(result.models["symbol"])
    feed = dict(zip([o.name for o in slot.get_outputs()], slot.run(None, {"H": H.numpy()}),
                    strict=True))
    feed["y"] = y.numpy()
    staged = symbol.run(None, {i.name: feed[i.name] for i in symbol.get_inputs()})[0]
    for out in (whole, staged):
        agree = float((hard(out) == hard(ref)).mean())
        assert agree >= 0.999, (family, agree)
        # soft outputs equal but where a rounding boundary flips one code (rare)
        close = np.abs(out - ref.numpy()) <= 1e-5 * float(ref.abs().max())
        assert close.mean() >= 0.99, (family, close.mean())


def test_int8_is_close_with_the_manifest_session_options(setup, compiled):
    family, model, _, recipe8 = setup
    result = compiled["int8"]
    assert result.manifest["session_config"] == {"session.x64quantprecision": "1"}
    H, y = link(family, 64, 14, seed=12)
    ref = reference(model, recipe8, H, y)
    config = config_entries(result.manifest["session_config"])
    out = session(result.models["detector"], config=config).run(
        None, {"H": H.numpy(), "y": y.numpy()})[0]
    assert float((hard(out) == hard(ref)).mean()) >= 0.999
    # static 8-bit inputs are exact: only fp rounding, or a code flipped at a rounding
    # boundary (one step, |x| / 127 of the layer's input), moves an output
    assert float(np.abs(out - ref.numpy()).max() / ref.abs().max()) < 2 / 127


def w4_tolerance(n_layers: int) -> float:
    """Relative output tolerance of ``w4`` against the weight-only reference.

    MatMulNBits (accuracy level 4) rounds each block of an input row to int8 with step
    ``max|x_block| / 127``: a relative error of at most ``1/254`` per element, so a layer's
    output moves by at most ``1/254`` of ``sum |w||x|`` (and typically far less, the errors
    being independent). Each of the ``n`` quantized layers on the path adds its share
    (activations are 1-Lipschitz), so ``n / 254`` bounds the relative drift of the
    largest output (times 2 for the soft-sign / tanh gains near 1 and margin).
    """
    return 2 * n_layers / 254


def test_w4_is_close_to_the_weight_only_model(setup, compiled):
    family, model, recipe, _ = setup
    H, y = link(family, 16, 14, seed=13)
    ref = reference(model, recipe, H, y, activations=False)
    out = session(compiled["w4"].models["detector"]).run(
        None, {"H": H.numpy(), "y": y.numpy()})[0]
    err = float(np.abs(out - ref.numpy()).max() / ref.abs().max())
    assert err < w4_tolerance(len(recipe.layers)), (family, err)
    assert float((hard(out) == hard(ref)).mean()) >= 0.99


LOW_BIT_KERNELS = {"w4": {"MatMulNBits"}, "w4a4": {"MatMulNBits"},
                   "int8": {"MatMulIntegerToFloat", "DynamicQuantizeMatMul"}}


@pytest.mark.parametrize("lowering", ["w4", "w4a4", "int8"])
def test_optimized_graph_runs_the_weights_low_bit(setup, compiled, lowering, tmp_path):
    family, model, recipe, _ = setup
    result = compiled[lowering]
    path = tmp_path / "optimized.onnx"
    session(result.models["detector"], optimized_model=str(path))
    graph = onnx.load(str(path)).graph
    ops = [n.op_type for n in graph.node]
    linears = sum(1 for n, m in layers_of(model).items() if isinstance(m, nn.Linear))
    kernels = sum(1 for op in ops if op in LOW_BIT_KERNELS[lowering])
    assert kernels >= linears, (family, lowering, ops)
    convs = sum(1 for m in layers_of(model).values() if isinstance(m, nn.Conv2d))
    if lowering == "int8":  # int8 convolutions run ConvInteger (slot and symbol-band stacks
        # once hoist-conv-rows hoists through the static steps); 4-bit ones stay fp32 Conv
        assert ops.count("ConvInteger") >= convs and "Conv" not in ops, (family, ops)
    producer = {o: n for n in graph.node for o in n.output}
    for n in graph.node:
        if n.op_type in ("MatMul", "Gemm", "FusedGemm", "FusedMatMul"):
            for i in n.input:
                assert i not in producer or producer[i].op_type != "DequantizeLinear", n.name
    # no float matrix as large as a Linear weight is left (4-bit convolutions stay fp32)
    smallest = min(m.weight.numel() for m in layers_of(model).values() if isinstance(m, nn.Linear))
    fp32_convs = lowering != "int8"
    readers: dict[str, set[str]] = {}
    for n in graph.node:
        for i in n.input:
            readers.setdefault(i, set()).add(n.op_type)
    for init in graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT and not (fp32_convs and all(
                "Conv" in op for op in readers.get(init.name, {"?"}))):
            assert int(np.prod(init.dims)) < smallest, (init.name, list(init.dims))
    layers = {entry["scope"]: entry for entry in result.manifest["layers"]}
    for name in recipe.layers:
        assert layers[name]["lowering"] == lowering and "weights" in layers[name]["quantized"]


def weight_bytes(model: onnx.ModelProto) -> int:
    """Bytes of the initializers holding the Linear layers' weights (codes, scales, zero
    points; fp32 matrices in the fp32 artifact); biases and small constants not counted."""
    total = 0
    for init in model.graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT and len(init.dims) == 2 and \
                not init.name.endswith("nbits_scales"):
            total += 4 * int(np.prod(init.dims))
        elif init.name.endswith((".nbits", ".nbits_scales")):  # also the ".k64.nbits" pieces
            total += onnx.numpy_helper.to_array(init).nbytes
    return total


@pytest.mark.parametrize("nt, nr", [(32, 64), (8, 16)])
def test_w4_weight_bytes_are_at_most_016_of_fp32(nt, nr):
    """DetNet sizes of the 32x64 benchmark (K = 3*64 + 128 = 320, block 64) and of the
    example 8x16 (K = 3*16 + 32 = 80: 0.167 as one kernel, <= 0.16 only cut into 64 + 16,
    ``Lowering.k_split``, the default), two blocks; the cut layer computes what the
    interpreter does; without the cut (``k_split=False``) the example is above 0.16."""
    assert Lowering("w4").k_split  # the default
    torch.manual_seed(0)
    model = build_detector("detnet", nt=nt, nr=nr, modulation="qpsk", layers=2).eval()
    layers = {}
    for name, layer in layers_of(model).items():
        layers[name] = LayerQuant(4, layer.weight.detach().abs().amax(1) / 7,
                                  ActQuant(4, "dynamic", 0.5, True))
    recipe = QuantRecipe("minmax", 4, layers)
    fp32 = compile_model(model).models["detector"]
    w4 = compile_model(model, quant=recipe, lowering="w4").models["detector"]
    ratio = weight_bytes(w4) / weight_bytes(fp32)
    assert ratio <= 0.16, ratio
    whole = weight_bytes(compile_model(model, quant=recipe, lowering=Lowering(
        "w4", k_split=False)).models["detector"])
    assert (whole / weight_bytes(fp32) > 0.16) == (nt == 8)
    if nt == 8:
        faithful = compile_model(model, quant=recipe, lowering="w4a4")
        entry = {ly["scope"]: ly for ly in faithful.manifest["layers"]}["blocks.1.fc1"]
        assert entry["quantized"]["weights"] == "MatMulNBits 4-bit, K 64 block 64 + K 16 block 16"
        H, y = random_link(nt, nr, batch=4, slot=14, seed=5)
        ref, = run(faithful.pipeline.graph, {"H": H, "y": y})
        out = session(faithful.models["detector"]).run(None, {"H": H.numpy(), "y": y.numpy()})[0]
        close = np.abs(out - ref.numpy()) <= 1e-5 * float(ref.abs().max())
        assert close.mean() >= 0.99


def test_lowering_options_reach_the_kernels():
    """A :class:`Lowering` is its name wherever a name goes (compile, manifest JSON) and
    carries the options the emitter reads: MatMulNBits accuracy_level (w4: 4, w4a4: 0 by
    default) and the K split; an unknown name is an EmitError and the options are fixed."""
    import json

    from mimoc.targets.onnx import EmitError, emit_model

    torch.manual_seed(0)
    model = build_detector("detnet", nt=2, nr=4, modulation="qpsk", layers=2).eval()
    recipe = QuantRecipe("minmax", 4, {name: LayerQuant(4, m.weight.detach().abs().amax(1) / 7)
                                       for name, m in layers_of(model).items()})
    result = compile_model(model, quant=recipe, lowering=Lowering("w4", accuracy_level=0))
    assert json.loads(result.artifact.files()["manifest.json"])["lowering"] == "w4"

    def levels(lowering):
        detector = emit_model(result.pipeline.graph, "d", lowering=lowering)
        return {attr.i for n in detector.graph.node if n.op_type == "MatMulNBits"
                for attr in n.attribute if attr.name == "accuracy_level"}

    assert levels(Lowering("w4", accuracy_level=0)) == {0}
    assert levels("w4") == {4} and levels("w4a4") == {0}
    assert Lowering("w4", k_split=False) == "w4" and {Lowering("int8")} == {"int8"}
    assert (Lowering("w4").matmul_accuracy, Lowering("int8").matmul_accuracy) == (4, None)
    with pytest.raises(EmitError, match="unknown lowering 'w5'; choose from fp32, w4"):
        Lowering("w5")
    with pytest.raises(AttributeError):
        Lowering("w4").k_split = False
