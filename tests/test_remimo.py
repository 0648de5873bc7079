"""RE-MIMO: shapes over user counts, permutation equivariance, export, training."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mimoc.detectors.remimo import REMIMO, REMIMOConfig
from mimoc.errors import UsageError
from mimoc.sim.system import MIMOSystem

SMALL = dict(nt=6, nt_min=3, nr=8, modulation="16qam", d_model=16, heads=2, ff=32,
             predictor_hidden=16, embed_hidden=32, iterations=3, te_dim=4)


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return REMIMO(REMIMOConfig(**SMALL)).eval()


def draw(nt: int, gen: torch.Generator, batch: int = 4, slot: int = 3, snr_db: float = 8.0,
         modulation: str = "16qam", nr: int = 8):
    return MIMOSystem(nt=nt, nr=nr, modulation=modulation, slot=slot).sample(batch, snr_db, gen)


def permute_users(H: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Permute the complex users of a real channel: columns ``j`` and ``j + Nt`` move together."""
    nt = H.shape[-1] // 2
    return H[..., torch.cat([perm, perm + nt])]


@pytest.mark.parametrize("nt", [1, 3, 5, 6])
def test_one_model_serves_several_user_counts(model, gen, nt):
    batch = draw(nt, gen)
    x_hat = model(batch.H_est, batch.y)
    assert x_hat.shape == (4, 3, 2 * nt)
    assert torch.isfinite(x_hat).all()


def test_permuting_users_permutes_outputs(model, gen):
    batch = draw(6, gen, batch=8)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    x_hat = model(batch.H_est, batch.y)
    x_perm = model(permute_users(batch.H_est, perm), batch.y)
    expected = x_hat[..., torch.cat([perm, perm + 6])]
    assert (x_perm - expected).abs().max().item() < 1e-5
    # and the model is not trivially symmetric: users get different outputs
    assert (x_hat[..., 0] - x_hat[..., 1]).abs().max().item() > 1e-3


def test_outputs_lie_within_the_constellation_range(model, gen):
    levels = model.constellation.levels
    batch = draw(5, gen, snr_db=-5.0)
    x_hat = model(batch.H_est, batch.y * 100.0)  # saturate the classifier
    assert x_hat.min().item() >= float(levels[0]) - 1e-6
    assert x_hat.max().item() <= float(levels[-1]) + 1e-6


def test_a_silent_user_with_a_zero_channel_gives_finite_outputs(model, gen):
    batch = draw(4, gen)
    H = batch.H_est.clone()
    H[..., [1, 5]] = 0.0  # user 1's two real columns
    assert torch.isfinite(model(H, batch.y)).all()
    assert torch.isfinite(model(torch.zeros_like(H), batch.y)).all()


def test_bpsk_has_no_quadrature_part(gen):
    torch.manual_seed(0)
    bpsk = REMIMO(REMIMOConfig(**{**SMALL, "modulation": "bpsk"}))
    batch = draw(4, gen, modulation="bpsk")
    x_hat = bpsk(batch.H_est, batch.y)
    assert torch.equal(x_hat[..., 4:], torch.zeros_like(x_hat[..., 4:]))
    assert bpsk.training_loss(batch).isfinite()


def test_gradients_reach_every_parameter(gen):
    torch.manual_seed(0)
    net = REMIMO(REMIMOConfig(**SMALL))
    net.training_loss(draw(5, gen)).backward()
    missing = [n for n, p in net.named_parameters()
               if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
    assert missing == []


def test_iteration_weights_grow_and_sum_to_one():
    w = REMIMO(REMIMOConfig(**{**SMALL, "iterations": 4})).iteration_weights()
    assert torch.allclose(w, torch.tensor([1.0, 2.0, 3.0, 4.0]) / 10.0)
    flat = REMIMO(REMIMOConfig(**{**SMALL, "iterations": 4, "loss_growth": 0.0}))
    assert torch.allclose(flat.iteration_weights(), torch.full((4,), 0.25))


def test_training_system_draws_user_counts_in_range(model):
    base = MIMOSystem(nt=6, nr=8, modulation="16qam")
    gen = torch.Generator().manual_seed(0)
    counts = [model.training_system(base, gen).nt for _ in range(400)]
    assert set(counts) == {3, 4, 5, 6}
    # triangular: the largest count is drawn most often, the smallest least
    assert counts.count(6) > counts.count(3) * 2
    assert model.training_system(base, gen).nr == 8


def test_a_few_training_steps_reduce_the_loss(gen):
    torch.manual_seed(0)
    net = REMIMO(REMIMOConfig(**{**SMALL, "modulation": "qpsk"}))
    batch = MIMOSystem(nt=4, nr=8, modulation="qpsk").sample(64, 10.0, gen)
    optimizer = torch.optim.Adam(net.parameters(), lr=5e-3)
    first = net.training_loss(batch).item()
    for _ in range(15):
        loss = net.training_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert net.training_loss(batch).item() < 0.6 * first


def test_export_with_dynamic_batch_slot_and_users(gen):
    from torch.export import Dim, export

    torch.manual_seed(0)  # two iterations: the second consumes the first's estimate
    model = REMIMO(REMIMOConfig(**{**SMALL, "iterations": 2})).eval()
    batch = draw(4, gen, batch=3, slot=2)
    users = Dim("users", min=1, max=16)
    dims = {"H": {0: Dim("batch", min=1, max=1024), 2: 2 * users},
            "y": {0: Dim("batch", min=1, max=1024), 1: Dim("slot", min=1, max=64)}}
    # the two "batch" Dims are one symbol: torch.export ties equal names
    program = export(model, (batch.H_est, batch.y), dynamic_shapes=dims)
    for nt, b, s in [(4, 3, 2), (6, 5, 1), (2, 1, 7)]:
        other = draw(nt, gen, batch=b, slot=s)
        got = program.module()(other.H_est, other.y)
        torch.testing.assert_close(got, model(other.H_est, other.y), atol=1e-5, rtol=1e-5)


def test_config_errors_are_usage_errors():
    bad = [dict(nt_min=7), dict(heads=3), dict(iterations=0), dict(te_dim=3),
           dict(nt_sampling="gaussian"), dict(loss_growth=-1.0)]
    for change in bad:
        with pytest.raises(UsageError):
            REMIMO(REMIMOConfig(**{**SMALL, **change}))


def test_wrong_receiver_count_is_refused(model, gen):
    batch = draw(4, gen, nr=6)
    with pytest.raises(UsageError, match="Nr=8"):
        model(batch.H_est, batch.y)


def test_config_round_trip():
    config = REMIMOConfig(**SMALL)
    assert REMIMOConfig.from_dict(dataclasses.asdict(config)) == config
