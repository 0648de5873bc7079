"""The quantization methods: what each chooses, argument checks, QAT moves the steps."""

import itertools

import pytest
import torch

from mimoc.errors import UsageError
from mimoc.quant import quantizable_layers, quantize
from mimoc.quant.mmd import LearnedBandwidth, mmd2
from mimoc.quant.ptq import ALPHA_MULTIPLIERS, WEIGHT_MULTIPLIERS
from mimoc.quant.qat import QATSettings, lambda_at
from mimoc.quant.spec import difference_weight

from .conftest import tiny

FAST = dict(calib_batches=2, calib_batch=16, val_batch=0)


def test_minmax_does_not_clip_and_signs_follow_relu(options):
    model = tiny("detnet")
    recipe = quantize(model, "minmax", options=options, **FAST)
    layers = quantizable_layers(model)
    for name, lq in recipe.layers.items():
        w = difference_weight(layers[name].weight.detach(), lq.difference)  # W' for fc1
        assert torch.allclose(lq.weight_scale * 7, w.abs().amax(1), rtol=1e-6)
        assert lq.act.mode == "static"
        # fc1 sees [H^T y - H^T H x, x, H^T H x, v] (signed); fc2 / fc3 see ReLU outputs
        assert lq.act.signed == name.endswith("fc1")


def test_int8_is_eight_bit_and_refuses_other_bits(options):
    model = tiny("sdnet")
    recipe = quantize(model, "int8", options=options, **FAST)
    assert recipe.bits == 8 and {lq.act.bits for lq in recipe.layers.values()} == {8}
    with pytest.raises(UsageError, match="int8 is 8-bit"):
        quantize(model, "int8", bits=4, options=options, **FAST)


@pytest.mark.parametrize("bits", [2, 3, 6, 8])
def test_bits_is_a_parameter(bits, options):
    recipe = quantize(tiny("detnet"), "minmax", bits=bits, options=options, **FAST)
    assert {lq.weight_bits for lq in recipe.layers.values()} == {bits}


@pytest.mark.parametrize("kwargs,needle", [
    (dict(method="gptq"), "unknown quantization method"),
    (dict(method="minmax", bits=9), "bits"),
    (dict(method="minmax", bits=1), "bits"),
    (dict(method="minmax", steps=10), "does not train"),
    (dict(method="kaq", steps=0), "steps"),
    (dict(method="lsq", lam=0.1), "kaq only"),
    (dict(method="kaq", lam=float("nan")), "lambda"),
    (dict(method="minmax", act_mode="dynamic"), "act_mode"),
    (dict(method="kaq", lam_schedule="linear"), "unknown lambda schedule"),
    (dict(method="lsq", lam_schedule="cosine"), "kaq only"),
])
def test_bad_arguments(kwargs, needle, options):
    with pytest.raises(UsageError, match=needle):
        quantize(tiny("detnet"), options=options, **FAST, **kwargs)


def test_kaq_ptq_picks_grid_multipliers_and_dynamic_steps(options):
    recipe = quantize(tiny("detnet"), "kaq-ptq", options=options, **FAST)
    for name, lq in recipe.layers.items():
        found = recipe.info["search"][name]
        assert found["weight_multiplier"] in WEIGHT_MULTIPLIERS
        assert found["alpha_multiplier"] in ALPHA_MULTIPLIERS
        assert lq.act.mode == "dynamic"


def test_remimo_tiny_inputs_stay_static_under_kaq(options):
    recipe = quantize(tiny("remimo"), "kaq-ptq", options=options, **FAST)
    modes = {name: lq.act.mode for name, lq in recipe.layers.items()}
    assert modes["predictor.first.parts.sigma"] == "static"  # one feature: RMS = |x|
    assert modes["encoder.feed_forward.0"] == "dynamic"


@pytest.mark.parametrize("method,mode", [("kaq", "dynamic"), ("lsq", "static")])
def test_qat_trains_steps_and_weights(method, mode, options):
    model = tiny("detnet")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    recipe = quantize(model, method, options=options, steps=4, batch=8, **FAST)
    assert {lq.act.mode for lq in recipe.layers.values()} == {mode}
    assert recipe.info["steps"] == 4 and len(recipe.info["history"]) >= 1
    assert recipe.info["qat"]["lam"] == (0.1 if method == "kaq" else 0.0)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed  # fine-tuned in place
    init = quantize(tiny("detnet"), "kaq-ptq", options=options, act_mode=mode, **FAST)
    assert any(lq.act.alpha != init.layers[n].act.alpha for n, lq in recipe.layers.items())


def test_lambda_schedules():
    constant = QATSettings(steps=100, lam=0.2)
    assert {lambda_at(constant, t) for t in (0, 50, 99, 100)} == {0.2}
    cosine = QATSettings(steps=100, lam=0.2, lam_schedule="cosine")
    values = [lambda_at(cosine, t) for t in range(101)]
    assert values[0] == 0.2 and values[50] == pytest.approx(0.1) and values[100] == 0.0
    assert all(a > b for a, b in itertools.pairwise(values))


def test_cosine_schedule_reaches_the_loss(options):
    def weights(schedule):
        model = tiny("detnet")
        quantize(model, "kaq", options=options, steps=3, batch=8, lam=5.0,
                 lam_schedule=schedule, **FAST)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    constant, cosine = weights("constant"), weights("cosine")
    assert torch.isfinite(cosine).all() and not torch.equal(constant, cosine)


def test_mmd_is_zero_for_equal_samples_and_grows_with_shift(generator):
    a = torch.randn(64, 8, generator=generator)
    h = torch.tensor(1.0)
    assert float(mmd2(a, a.clone(), h)) == pytest.approx(0.0, abs=1e-6)
    small = float(mmd2(a, a + 0.1, h))
    large = float(mmd2(a, a + 1.0, h))
    assert 0 < small < large


def test_bandwidth_gradient_ascends(generator):
    a = torch.randn(64, 4, generator=generator)
    q = a + 0.5 * torch.randn(64, 4, generator=generator)
    bandwidth = LearnedBandwidth(1.0)
    mmd2(a, q, bandwidth()).backward()
    h = torch.tensor(1.0, requires_grad=True)
    mmd2(a, q, h).backward()
    # the parameter's gradient has the opposite sign of dMMD/dh (times dh/dlog h = h = 1)
    assert float(bandwidth.log_h.grad) == pytest.approx(-float(h.grad), rel=1e-5)


def test_qat_resumes_from_a_recipe(options):
    model = tiny("detnet")
    first = quantize(model, "kaq", options=options, steps=2, batch=8, **FAST)
    again = quantize(model, "kaq", options=options, steps=2, batch=8, init=first, **FAST)
    assert again.info["resumed_from"] == {"method": "kaq", "steps": 2}
    assert again.layers.keys() == first.layers.keys()
    with pytest.raises(UsageError, match="resuming applies to kaq and lsq"):
        quantize(model, "minmax", options=options, init=first, **FAST)
    with pytest.raises(UsageError, match="keeps the recipe's 4 bits"):
        quantize(model, "kaq", bits=3, options=options, init=first, **FAST)
