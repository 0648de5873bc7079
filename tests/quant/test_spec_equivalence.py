"""QuantizedDetector computes exactly spec.py's fake quantization (bit for bit)."""

import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mimoc.quant import QuantizedDetector, quantizable_layers, quantize
from mimoc.quant.quantizers import feature_dims_of
from mimoc.quant.spec import difference_input, difference_weight, fake_quant_act, fake_quant_weight

from .conftest import tiny


def spec_forward(model, recipe, H, y):
    """The reference: every recipe layer patched to spec's functions, nothing else."""
    layers = quantizable_layers(model)
    try:
        for name, lq in recipe.layers.items():
            layer = layers[name]

            def forward(module, x, lq=lq):
                x = difference_input(x, lq.difference)
                if lq.act is not None:
                    x = fake_quant_act(x, lq.act, feature_dims_of(module))
                w = fake_quant_weight(difference_weight(module.weight, lq.difference),
                                      lq.weight_scale, lq.weight_bits)
                if isinstance(module, nn.Linear):
                    return F.linear(x, w, module.bias)
                return F.conv2d(x, w, module.bias, module.stride, module.padding)

            layer.forward = types.MethodType(forward, layer)
        with torch.no_grad():
            return model(H, y)
    finally:
        for layer in layers.values():
            layer.__dict__.pop("forward", None)


def draw(model, generator, slots=6, symbols=3):
    k, rows = 2 * model.config.nt, 2 * model.config.nr
    return torch.randn(slots, rows, k, generator=generator), \
        torch.randn(slots, symbols, rows, generator=generator)


@pytest.mark.parametrize("family", ["detnet", "wesnet", "sdnet", "remimo"])
@pytest.mark.parametrize("method,mode", [("minmax", None), ("kaq-ptq", "dynamic"),
                                         ("kaq-ptq", "static")])
def test_forward_equals_spec_bit_for_bit(family, method, mode, options, generator):
    model = tiny(family)
    recipe = quantize(model, method, options=options, act_mode=mode, calib_batches=2,
                      calib_batch=16, val_batch=0)
    assert set(recipe.layers) == set(quantizable_layers(model))
    H, y = draw(model, generator)
    got = QuantizedDetector(model, recipe)(H, y)
    want = spec_forward(model, recipe, H, y)
    assert torch.equal(got, want)
    with torch.no_grad():
        assert not torch.equal(got, model(H, y))  # it really quantizes


@pytest.mark.parametrize("family", ["detnet", "sdnet"])
def test_trainable_quantizers_forward_equals_spec(family, options, generator):
    """The QAT (learned-step, gradient-carrying) path rounds like spec too, after training."""
    model = tiny(family)
    recipe = quantize(model, "kaq", options=options, steps=3, calib_batches=2, calib_batch=16,
                      val_batch=0, batch=8)
    H, y = draw(model, generator)
    qdet = QuantizedDetector(model, recipe, learn=True)
    got = qdet(H, y).detach()
    assert torch.equal(got, spec_forward(model, recipe, H, y))
    assert qdet.recipe().layers.keys() == recipe.layers.keys()
    for name, lq in qdet.recipe().layers.items():
        assert torch.equal(lq.weight_scale, recipe.layers[name].weight_scale)
        assert lq.act == recipe.layers[name].act


def test_restores_the_detector(options, generator):
    model = tiny("detnet")
    H, y = draw(model, generator)
    with torch.no_grad():
        before = model(H, y)
    recipe = quantize(model, "minmax", options=options, calib_batches=1, calib_batch=8,
                      val_batch=0)
    QuantizedDetector(model, recipe)(H, y)
    with torch.no_grad():
        assert torch.equal(model(H, y), before)
    assert all("forward" not in m.__dict__ for m in model.modules())


def test_difference_coding_is_exact_before_rounding(generator):
    """``W' x' = W x``: the coding moves nothing until the grids round it."""
    x = torch.randn(5, 7, 20, generator=generator, dtype=torch.float64)
    w = torch.randn(9, 20, generator=generator, dtype=torch.float64)
    for diff in [(0, 8, 4), (12, 2, 6), (3, 10, 1)]:
        got = F.linear(difference_input(x, diff), difference_weight(w, diff))
        assert torch.allclose(got, F.linear(x, w), rtol=1e-12, atol=1e-12)
        t, r, n = diff
        coded = difference_input(x, diff)
        assert torch.equal(coded[..., t:t + n], x[..., t:t + n] - x[..., r:r + n])
        rest = [i for i in range(20) if not t <= i < t + n]
        assert torch.equal(coded[..., rest], x[..., rest])


@pytest.mark.parametrize("family", ["detnet", "wesnet"])
def test_detnet_block_inputs_are_difference_coded_unless_asked_not_to(family, options):
    model = tiny(family)
    k = 2 * model.config.nt
    coded = quantize(model, "minmax", options=options, calib_batches=1, calib_batch=8,
                     val_batch=0)
    plain = quantize(model, "minmax", options=options, calib_batches=1, calib_batch=8,
                     val_batch=0, difference=False)
    for name, lq in coded.layers.items():
        want = (0, 2 * k, k) if name.endswith("fc1") else None
        assert lq.difference == want, name
        assert plain.layers[name].difference is None
    assert coded.info["input_difference"] == [f"blocks.{i}.fc1" for i in range(2)]
    # the coded input's calibration sees H^T y - H^T H x, a different range
    assert coded.layers["blocks.1.fc1"].act != plain.layers["blocks.1.fc1"].act


def test_sdnet_and_remimo_code_nothing(options):
    for family in ("sdnet", "remimo"):
        recipe = quantize(tiny(family), "minmax", options=options, calib_batches=1,
                          calib_batch=8, val_batch=0)
        assert all(lq.difference is None for lq in recipe.layers.values())
