"""DetNet and the WeSNet family: shapes, gradients, profiles, depth, pruning, export, training."""

from __future__ import annotations

import math

import pytest
import torch

from mimoc.detectors.checkpoint import load_detector, save_detector
from mimoc.detectors.detnet import DetNet, DetNetConfig, soft_sign
from mimoc.detectors.flops import count_flops
from mimoc.detectors.wesnet import (
    LearnableProfile,
    WeSNet,
    WeSNetConfig,
    profile_coefficients,
    retained_units,
)
from mimoc.errors import UsageError
from mimoc.sim.system import MIMOSystem


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(1234)


def _batch(modulation="qpsk", nt=2, nr=4, slot=3, batch=6, snr_db=8.0, seed=0):
    system = MIMOSystem(nt=nt, nr=nr, modulation=modulation, slot=slot)
    return system.sample(batch, snr_db, torch.Generator().manual_seed(seed))


def _wesnet(**overrides):
    values = dict(nt=2, nr=4, modulation="qpsk", layers=4, hidden=16, v_dim=4)
    values.update(overrides)
    return WeSNet(WeSNetConfig(**values))


# -- DetNet --------------------------------------------------------------------


@pytest.mark.parametrize("modulation, one_hot", [("bpsk", False), ("qpsk", False),
                                                 ("16qam", True)])
def test_forward_shapes_and_head(modulation, one_hot):
    model = DetNet(DetNetConfig(nt=3, nr=5, modulation=modulation, layers=3))
    batch = _batch(modulation, nt=3, nr=5, slot=4, batch=7)
    x_hat = model(batch.H_est, batch.y)
    assert x_hat.shape == (7, 4, 6)
    assert model.config.one_hot is one_hot
    levels = model.constellation.levels.numel()
    assert model.blocks[0].fc2.out_features == 6 * (levels if one_hot else 1)
    # paper defaults: hidden 8K, v 2K, L as given
    assert model.blocks[0].fc1.out_features == 8 * 6
    assert model.blocks[0].fc3.out_features == 2 * 6
    # outputs stay inside the constellation's range (soft sign / expected level)
    assert float(x_hat.detach().abs().max()) <= float(model.constellation.levels.abs().max()) + 1e-6


def test_default_depth_is_three_k():
    model = DetNet(DetNetConfig(nt=2, nr=4))
    assert model.config.layers == 12 and len(model.blocks) == 12
    assert model.blocks[-1].fc3 is None  # the last v would never be used


def test_soft_sign_matches_definition():
    u = torch.linspace(-2, 2, 41)
    t = torch.tensor(0.5)
    expected = -1 + torch.relu(u + 0.5) / 0.5 - torch.relu(u - 0.5) / 0.5
    torch.testing.assert_close(soft_sign(u, t, 1.0), expected)
    torch.testing.assert_close(soft_sign(u, t, 0.7), 0.7 * expected)
    assert soft_sign(torch.tensor([5.0, -5.0]), t, 1.0).tolist() == [1.0, -1.0]


@pytest.mark.parametrize("factory", [
    lambda: DetNet(DetNetConfig(nt=2, nr=4, layers=3, hidden=12, v_dim=4)),
    lambda: DetNet(DetNetConfig(nt=2, nr=4, modulation="16qam", layers=3)),
    lambda: _wesnet(learnable_profile=True, retained=0.5, l1_lambda=1e-2),
])
def test_gradient_reaches_every_parameter(factory):
    model = factory()
    batch = _batch(model.config.modulation)
    model.training_loss(batch).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert bool(torch.isfinite(param.grad).all()), name
        assert float(param.grad.abs().sum()) > 0, name


def test_loss_is_log_weighted_and_zf_normalised():
    model = DetNet(DetNetConfig(nt=2, nr=4, layers=3))
    batch = _batch()
    outputs = model.block_outputs(batch.H_est, batch.y)
    H, y = batch.H_est.double(), batch.y.double()
    x_zf = torch.linalg.solve(H.mT @ H, (y @ H).mT).mT.float()
    ref = (batch.x - x_zf).square().sum(-1)
    expected = sum(math.log(k) * ((batch.x - out).square().sum(-1) / ref).mean()
                   for k, out in enumerate(outputs, start=1))
    torch.testing.assert_close(model.training_loss(batch), expected, rtol=1e-4, atol=1e-6)


def test_a_few_training_steps_reduce_the_loss():
    model = DetNet(DetNetConfig(nt=2, nr=4, layers=3, hidden=16, v_dim=4))
    system = MIMOSystem(nt=2, nr=4, modulation="qpsk", slot=2)
    gen = torch.Generator().manual_seed(5)
    held_out = system.sample(512, 8.0, torch.Generator().manual_seed(99))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    with torch.no_grad():
        before = float(model.training_loss(held_out))
    for _ in range(60):
        optimizer.zero_grad()
        model.training_loss(system.sample(64, 8.0, gen)).backward()
        optimizer.step()
    with torch.no_grad():
        after = float(model.training_loss(held_out))
    assert after < 0.75 * before


# -- profiles --------------------------------------------------------------------


def test_linear_profile_is_paper_eq_23():
    beta = profile_coefficients("linear", 8)
    torch.testing.assert_close(beta, 1 - torch.arange(1, 9) / 8)


def test_half_exponential_profile_is_paper_eq_24():
    beta = profile_coefficients("half-exp", 8)
    expected = [1, 1, 1, 1] + [math.exp(4 - i - 1) for i in range(5, 9)]
    torch.testing.assert_close(beta, torch.tensor(expected, dtype=torch.float32))


@pytest.mark.parametrize("kind", ["linear", "half-exp"])
@pytest.mark.parametrize("n, retained", [(128, 0.5), (128, 0.2), (50, 0.3), (7, 1.0), (10, 0.01)])
def test_profile_monotone_with_exact_zero_tail(kind, n, retained):
    beta = profile_coefficients(kind, n, retained)
    kept = retained_units(n, retained)
    assert kept == max(1, round(retained * n))
    assert bool((beta[1:] <= beta[:-1]).all())
    assert bool((beta[:kept] > 0).all()) or (kind == "linear" and kept == n)
    assert bool((beta[kept:] == 0).all())
    # the linear profile's own last coefficient 1 - N/N is already 0
    own_zero = kind == "linear" and kept == n
    assert int((beta == 0).sum()) == n - kept + int(own_zero)


def test_learnable_profile_starts_at_fixed_profile_and_stays_monotone():
    fixed = profile_coefficients("half-exp", 20, 0.6)
    profile = LearnableProfile(fixed, retained_units(20, 0.6))
    torch.testing.assert_close(profile(), fixed, atol=2e-5, rtol=0)
    gen = torch.Generator().manual_seed(3)
    for scale in (0.1, 1.0, 5.0):
        with torch.no_grad():
            profile.decrements.add_(scale * torch.randn(profile.decrements.shape, generator=gen))
        beta = profile()
        assert bool((beta[1:] <= beta[:-1]).all())
        assert bool((beta >= 0).all()) and bool((beta <= 1).all())
        assert bool((beta[12:] == 0).all())


def test_l_wesnet_profile_monotone_after_training_steps():
    model = _wesnet(learnable_profile=True, retained=0.75, profile="linear")
    optimizer = torch.optim.SGD(model.parameters(), lr=5.0)  # large steps on purpose
    system = MIMOSystem(nt=2, nr=4, modulation="qpsk")
    gen = torch.Generator().manual_seed(1)
    start = [block.coefficients().detach().clone() for block in model.blocks]
    for _ in range(5):
        optimizer.zero_grad()
        model.training_loss(system.sample(32, 6.0, gen)).backward()
        optimizer.step()
    changed = False
    for block, beta0 in zip(model.blocks, start, strict=True):
        beta = block.coefficients()
        assert bool((beta[1:] <= beta[:-1]).all())
        assert bool((beta[12:] == 0).all())
        changed |= not torch.equal(beta, beta0)
    assert changed


# -- pruning ---------------------------------------------------------------------


@pytest.mark.parametrize("learnable", [False, True])
def test_zero_coefficient_units_contribute_nothing(learnable):
    model = _wesnet(retained=0.5, learnable_profile=learnable, modulation="16qam").eval()
    batch = _batch("16qam")
    reference = model(batch.H_est, batch.y)
    with torch.no_grad():  # scramble every weight of the dropped units
        for block in model.blocks:
            dead = block.coefficients() == 0
            assert int(dead.sum()) == 8
            block.fc1.weight[dead] = 100 * torch.randn_like(block.fc1.weight[dead])
            block.fc1.bias[dead] = 100.0
            block.fc2.weight[:, dead] = 100.0
            if block.fc3 is not None:
                block.fc3.weight[:, dead] = -100.0
    torch.testing.assert_close(model(batch.H_est, batch.y), reference, rtol=0, atol=0)
    pruned = model.to_detnet()
    assert pruned.config.hidden == 8
    torch.testing.assert_close(pruned(batch.H_est, batch.y), reference, rtol=1e-5, atol=1e-6)


def test_complexity_counts_pruned_units():
    cfg = dict(nt=8, nr=16, layers=4)
    detnet = DetNet(DetNetConfig(**cfg))
    wesnet = WeSNet(WeSNetConfig(**cfg, profile="half-exp", retained=0.5))
    full, half = detnet.complexity(), wesnet.complexity()
    k, hidden, v = 16, 128, 32
    block = 2 * (k * k + (3 * k + v) * hidden + hidden * k + hidden * v)
    last = block - 2 * hidden * v
    assert full["flops_per_symbol"] == 2 * k * 32 + 3 * block + last
    assert full["flops_slot_rate"] == 2 * k * k * 32
    assert full["flops_per_slot"] == full["flops_slot_rate"] + 14 * full["flops_per_symbol"]
    assert full["params"] == sum(p.numel() for p in detnet.parameters())
    assert half["params"] == sum(p.numel() for p in wesnet.to_detnet().parameters())
    assert [layer["hidden"] for layer in half["layers"]] == [64] * 4
    assert half["flops_per_symbol"] < 0.55 * full["flops_per_symbol"]


@pytest.mark.parametrize("modulation", ["qpsk", "16qam"])
def test_complexity_agrees_with_traced_flop_count(modulation):
    model = DetNet(DetNetConfig(nt=2, nr=3, modulation=modulation, layers=3))
    ours, traced = model.complexity(), count_flops(model)
    assert ours["flops_per_symbol"] == traced.flops_per_symbol
    assert ours["flops_slot_rate"] == traced.flops_slot_rate
    assert ours["params"] == traced.params


# -- R-WeSNet and depth --------------------------------------------------------------


def test_depth_n_equals_manual_truncation():
    model = _wesnet(layers=5, retained=1.0, l1_lambda=1e-3).eval()
    batch = _batch()
    full = model(batch.H_est, batch.y)
    model.set_depth(3)
    truncated = _wesnet(layers=3, retained=1.0).eval()
    state = {k: v for k, v in model.state_dict().items()
             if k.split(".")[1] in {"0", "1", "2"} and not k.startswith("blocks.2.fc3")}
    truncated.load_state_dict(state, strict=True)
    out = model(batch.H_est, batch.y)
    torch.testing.assert_close(out, truncated(batch.H_est, batch.y), rtol=0, atol=0)
    assert not torch.equal(out, full)
    assert model.config.depth == 3
    assert model.complexity()["layers"][-1]["name"] == "blocks.2"
    model.set_depth(None)
    torch.testing.assert_close(model(batch.H_est, batch.y), full, rtol=0, atol=0)


@pytest.mark.parametrize("depth", [0, 6, 2.5])
def test_bad_depth_is_a_usage_error(depth):
    model = _wesnet(layers=5)
    with pytest.raises(UsageError, match="depth"):
        model.set_depth(depth)
    with pytest.raises(UsageError, match="depth"):
        WeSNet(WeSNetConfig(nt=2, nr=4, layers=5, depth=depth))


def test_l1_penalty_is_depth_growing_log_l1():
    model = _wesnet(layers=3, retained=0.5, l1_lambda=0.1)
    expected = 0.0
    for r, block in enumerate(model.blocks, start=1):
        beta = block.coefficients()
        norm = (block.fc1.weight.abs() * beta[:, None]).sum()
        norm += (block.fc2.weight.abs() * beta).sum()
        if block.fc3 is not None:
            norm += (block.fc3.weight.abs() * beta).sum()
        norm = float(norm.detach())
        expected += math.log(1 + (r - 1) * norm)
        assert math.isclose(float(model.layer_l1_norms()[r - 1]), norm, rel_tol=1e-5)
    assert math.isclose(float(model.l1_penalty().detach()), expected, rel_tol=1e-5)
    batch = _batch()
    torch.testing.assert_close(model.training_loss(batch),
                               model.detection_loss(batch) + 0.1 * model.l1_penalty())


def test_depth_for_threshold_removes_small_trailing_blocks():
    model = _wesnet(layers=5, retained=1.0)
    with torch.no_grad():
        for block in model.blocks[3:]:
            for layer in (block.fc1, block.fc2, block.fc3):
                if layer is not None:
                    layer.weight.mul_(1e-3)
        model.blocks[1].fc1.weight.mul_(1e-3)  # a small block in the middle stays
    norms = model.layer_l1_norms()
    assert model.depth_for_threshold(float(norms[:3].min()) / 2) == 3
    assert model.depth_for_threshold(0.01, relative=True) == 3
    assert model.depth_for_threshold(1e9) == 1
    assert model.depth_for_threshold(0.0) == 5


# -- config and export -------------------------------------------------------------


@pytest.mark.parametrize("overrides, match", [
    (dict(profile="cubic"), "profile"),
    (dict(retained=0.0), "retained"),
    (dict(retained=1.5), "retained"),
    (dict(l1_lambda=-1.0), "l1_lambda"),
    (dict(residual=1.0), "residual"),
    (dict(hidden=0), "hidden"),
])
def test_bad_config_is_a_usage_error(overrides, match):
    with pytest.raises(UsageError, match=match):
        _wesnet(**overrides)


def test_config_round_trips_through_dict():
    model = _wesnet(learnable_profile=True, l1_lambda=0.01, depth=3)
    again = WeSNet(WeSNetConfig.from_dict(model.config.to_dict()))
    assert again.config == model.config
    assert again.state_dict().keys() == model.state_dict().keys()


@pytest.mark.parametrize("factory", [
    lambda: DetNet(DetNetConfig(nt=2, nr=4, layers=2, hidden=8, v_dim=4)),
    lambda: _wesnet(layers=2, modulation="16qam", learnable_profile=True, depth=1),
])
def test_torch_export_with_dynamic_batch_and_slot(factory):
    model = factory().eval()
    batch = _batch(model.config.modulation, batch=3, slot=2)
    dims = (torch.export.Dim("batch"), torch.export.Dim("slot"))
    program = torch.export.export(model, (batch.H_est, batch.y),
                                  dynamic_shapes=({0: dims[0]}, {0: dims[0], 1: dims[1]}))
    other = _batch(model.config.modulation, batch=5, slot=7, seed=4)
    torch.testing.assert_close(program.module()(other.H_est, other.y),
                               model(other.H_est, other.y))


@pytest.mark.parametrize("factory", [
    lambda: DetNet(DetNetConfig(nt=2, nr=4, modulation="16qam", layers=3, residual=0.5)),
    lambda: _wesnet(learnable_profile=True, l1_lambda=0.1, depth=3),
])
def test_checkpoint_round_trip_is_bit_exact(factory, tmp_path):
    model = factory().eval()
    batch = _batch(model.config.modulation)
    path = save_detector(model, tmp_path / "model.pt")
    again = load_detector(path)
    assert type(again) is type(model) and again.config == model.config
    assert torch.equal(again(batch.H_est, batch.y), model(batch.H_est, batch.y))


def test_wrong_input_sizes_are_usage_errors():
    model = DetNet(DetNetConfig(nt=2, nr=4, layers=2))
    with pytest.raises(UsageError, match=r"H must be \[B, 8, 4\]"):
        model(torch.zeros(1, 8, 6), torch.zeros(1, 1, 8))
    with pytest.raises(UsageError, match=r"y must be \[B, S, 8\]"):
        model(torch.zeros(1, 8, 4), torch.zeros(1, 8))
