"""The generic trainer and the noise-aware (crossbar programming-noise) hook."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from json_docs import parse_output
from tiny_detector import TINY_CSI, TinyConfig, TinyDetector, tiny_config, zoo_families

import mimoc.detectors.training as training
from mimoc import cli
from mimoc.detectors import FAMILIES, build_detector, load_checkpoint, program_channel
from mimoc.detectors.training import (
    TrainOptions,
    TrainReport,
    draw_batch,
    mmse_symbol_error_rate,
    symbol_error_rate,
    train_detector,
    validation_set,
)
from mimoc.errors import MimocError, UsageError
from mimoc.sim.system import MIMOSystem


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _tiny(seed=0, **overrides):
    torch.manual_seed(seed)
    return TinyDetector(TinyConfig(**overrides))


def _options(**overrides):
    values = dict(steps=40, batch=64, val_every=20, val_batch=256, log_every=10, lr=1e-2,
                  snr_db=(10.0, 20.0))
    values.update(overrides)
    return TrainOptions(**values)


# -- the loop ------------------------------------------------------------------------------

def test_training_reduces_loss_and_validation_error():
    model = _tiny()
    before = symbol_error_rate(model, validation_set(model, _options().system(model), _options()))
    report = train_detector(model, _options(steps=80), progress=False)
    first, last = report.history[0]["loss"], report.history[-1]["loss"]
    assert last < 0.5 * first
    assert report.val_ser < before
    assert report.steps == 80 and report.final_loss == report.history[-1]["loss"]
    assert [h["step"] for h in report.history] == list(range(10, 81, 10))
    assert [h["step"] for h in report.history if h["val_ser"] is not None] == [20, 40, 60, 80]
    assert not model.training  # left ready for inference


def test_training_is_deterministic_for_a_seed():
    runs = []
    for _ in range(2):
        model = _tiny(seed=3)
        report = train_detector(model, _options(seed=7), progress=False)
        runs.append(([h["loss"] for h in report.history], report.val_ser, model.state_dict()))
    (loss_a, ser_a, state_a), (loss_b, ser_b, state_b) = runs
    assert loss_a == loss_b and ser_a == ser_b
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)

    other = train_detector(_tiny(seed=3), _options(seed=8), progress=False)
    assert [h["loss"] for h in other.history] != loss_a


def test_training_leaves_the_global_rng_alone():
    model = _tiny()
    state = torch.get_rng_state()
    train_detector(model, _options(steps=5), progress=False)
    assert torch.equal(state, torch.get_rng_state())


def test_validation_set_is_fixed_and_spans_the_snr_range():
    model = _tiny()
    options = _options(val_batch=100, batch=64)
    a = validation_set(model, options.system(model), options)
    b = validation_set(model, options.system(model), options.__class__(
        **{**options.to_dict(), "seed": 99}))
    assert [len(x.y) for x in a] == [64, 36]
    assert all(torch.equal(x.y, y.y) for x, y in zip(a, b, strict=True))  # independent of seed
    snrs = torch.cat([x.snr_db for x in a])
    assert snrs[0] == 10.0 and snrs[-1] == 20.0 and bool((snrs.diff() > 0).all())


def test_cosine_schedule_decays_to_the_final_fraction():
    report = train_detector(_tiny(), _options(steps=50, log_every=1, val_batch=0, lr=1e-2,
                                              lr_final=0.1), progress=False)
    lrs = [h["lr"] for h in report.history]
    assert lrs[0] == pytest.approx(1e-2)
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))
    assert lrs[-1] == pytest.approx(1e-3 + 0.9e-2 * 0.5 * (1 + math.cos(math.pi * 49 / 50)))
    assert report.val_ser is None

    flat = train_detector(_tiny(), _options(steps=10, log_every=1, val_batch=0,
                                            lr_schedule="constant"), progress=False)
    assert {h["lr"] for h in flat.history} == {1e-2}


def test_callback_sees_gradients_and_can_stop():
    seen = []

    def callback(event):
        grads = [p.grad for p in event.model.parameters() if p.grad is not None]
        seen.append((event.step, len(grads), event.grad_norm))
        return event.step == 7

    report = train_detector(_tiny(), _options(), progress=False, callback=callback)
    assert [s for s, _, _ in seen] == list(range(1, 8))
    assert all(n > 0 and g > 0 for _, n, g in seen)
    assert report.steps == 7 and report.history[-1]["step"] == 7
    assert report.history[-1]["val_ser"] is not None


def test_custom_loss_and_system():
    system = MIMOSystem(2, 4, "qpsk", slot=3)
    calls = []

    def loss_fn(model, batch):
        calls.append(batch.y.shape)
        return model.training_loss(batch) + 0.0 * model.gain

    train_detector(_tiny(), _options(steps=3, batch=5, val_batch=0), progress=False,
                   system=system, loss_fn=loss_fn)
    assert calls == [torch.Size([5, 3, 8])] * 3


def test_divergence_is_reported():
    model = _tiny()
    model.training_loss = lambda batch: torch.tensor(float("nan"), requires_grad=True)
    with pytest.raises(MimocError, match="diverged at step 1"):
        train_detector(model, _options(), progress=False)


@pytest.mark.parametrize("bad", [
    dict(snr_db=(10.0, 0.0)), dict(snr_db=(0.0, math.inf)), dict(steps=0), dict(batch=-1),
    dict(lr=0.0), dict(c2c=-0.1), dict(lr_schedule="step"), dict(channel="ricean"),
    dict(csi="ls:x"), dict(snr_def="per-bit"), dict(states=0), dict(val_every=True),
])
def test_bad_options_are_usage_errors(bad):
    with pytest.raises(UsageError):
        TrainOptions(**bad)


def test_report_dict_is_plain_data():
    report = train_detector(_tiny(), _options(steps=10), progress=False)
    data = report.to_dict()
    assert data["snr_db"] == [10.0, 20.0] and data["seed"] == 0 and data["steps"] == 10
    assert data["options"]["batch"] == 64 and data["family"] == "tiny"
    assert "validation SER" in report.summary() and "10 steps" in report.summary()
    assert data["mmse_val_ser"] == report.mmse_val_ser


# -- the MMSE reference on the validation slots ---------------------------------------------

def test_mmse_reference_is_measured_on_the_validation_slots():
    model = _tiny()
    options = _options(steps=5, snr_db=(0.0, 10.0))
    report = train_detector(model, options, progress=False)
    slots = validation_set(model, options.system(model), options)
    assert report.mmse_val_ser == mmse_symbol_error_rate(slots, model.constellation)
    assert 0.0 < report.mmse_val_ser < 0.2  # 2x4 QPSK at 0..10 dB: MMSE errs, but rarely
    assert report.to_dict()["mmse_val_ser"] == report.mmse_val_ser
    line = next(line for line in report.summary().splitlines() if "MMSE SER" in line)
    assert f"{report.mmse_val_ser:.4g} on the same slots" in line


def test_mmse_reference_detects_from_the_receivers_channel_estimate():
    model = _tiny()
    options = _options(val_batch=128)
    slots = validation_set(model, options.system(model), options)
    assert mmse_symbol_error_rate(slots, model.constellation) < 0.01  # 10..20 dB
    # given -H it estimates -x: every QPSK symbol wrong, so H_est is what it used
    flipped = [dataclasses.replace(b, H_est=-b.H_est) for b in slots]
    assert mmse_symbol_error_rate(flipped, model.constellation) == 1.0


def test_no_validation_means_no_mmse_reference():
    report = train_detector(_tiny(), _options(steps=3, val_batch=0), progress=False)
    assert report.mmse_val_ser is None and not report.worse_than_mmse
    assert "MMSE" not in report.summary()


@pytest.mark.parametrize("model_ser,mmse_ser,worse,words", [
    (0.2, 0.01, True, "the model makes 20x MMSE's errors"),
    (0.005, 0.01, False, "the model makes 0.5x MMSE's errors"),
    (0.01, 0.01, False, "the model ties MMSE"),
    (0.01, 0.0, True, "MMSE made no error"),
])
def test_report_compares_the_model_with_mmse(model_ser, mmse_ser, worse, words):
    report = TrainReport(steps=1, seconds=1.0, final_loss=0.0, val_ser=model_ser,
                         mmse_val_ser=mmse_ser)
    assert report.worse_than_mmse is worse
    assert words in report.summary()


@pytest.fixture
def tiny_family(monkeypatch):
    monkeypatch.setitem(FAMILIES, "tiny", TinyDetector)


def _train_cli(tmp_path, *extra):
    path = tmp_path / "tiny.pt"
    argv = ["train", "tiny", "--nt", "2", "--nr", "4", "--batch", "32", "--val-batch", "256",
            "--snr-train", "0:10", "--seed", "3", "--no-progress", "-o", str(path), *extra]
    return path, cli.main(argv)


def test_train_warns_when_the_model_is_worse_than_mmse(tmp_path, capsys, tiny_family):
    path, status = _train_cli(tmp_path, "--steps", "1", "--lr", "1e-6")  # all but untrained
    out, err = capsys.readouterr()
    assert status == 0 and path.exists()
    training_info = load_checkpoint(path).training
    assert training_info["val_ser"] > training_info["mmse_val_ser"] > 0
    assert err.count("\n") == 1 and err.startswith("mimoc: warning: tiny.pt is worse than MMSE")
    assert f"SER {training_info['val_ser']:.4g} vs {training_info['mmse_val_ser']:.4g}" in err
    assert "MMSE SER" in out and "warning" not in out


def test_train_is_quiet_when_the_model_beats_mmse(tmp_path, capsys, tiny_family, monkeypatch):
    # an MMSE that errs on every symbol: any trained model beats it
    monkeypatch.setattr(training, "mmse_symbol_error_rate", lambda batches, const: 1.0)
    _, status = _train_cli(tmp_path, "--steps", "1", "--json")
    out, err = capsys.readouterr()
    summary = parse_output("train", out)
    assert status == 0 and err == ""
    assert summary["mmse_val_ser"] == 1.0 and summary["val_ser"] < 1.0


# -- noise-aware hook ------------------------------------------------------------------------

def test_program_channel_without_noise_quantises_on_the_pulse_grid():
    H = torch.randn(4, 8, 6, generator=torch.Generator().manual_seed(1))
    states = 32
    out = program_channel(H, c2c=0.0, states=states)
    w_clip = 3 * H.square().mean(dim=(-2, -1), keepdim=True).sqrt()
    pulses = out.abs() / (w_clip / states)
    assert torch.allclose(pulses, pulses.round(), atol=1e-4)  # whole pulses
    inside = H.abs() <= w_clip
    assert bool(((out - H).abs()[inside] <= w_clip.expand_as(H)[inside] / (2 * states) + 1e-6)
                .all())
    assert bool((out.abs() <= w_clip + 1e-6).all())
    assert bool((torch.sign(out) * torch.sign(H) >= 0).all())  # no sign flips


def test_program_channel_noise_statistics_match_the_pulse_model():
    sigma_h, states, c2c, value = 2 ** -0.5, 150, 0.01, 1.0
    H = torch.full((1, 300, 300), value, dtype=torch.float64)
    out = program_channel(H, c2c, states, torch.Generator().manual_seed(0), sigma_h=sigma_h)
    w_clip = 3 * sigma_h
    n = round(value / w_clip * states)
    assert out.mean().item() == pytest.approx(n * w_clip / states, abs=1e-3)
    assert out.std().item() == pytest.approx(c2c * w_clip * math.sqrt(n), rel=0.02)

    negative = program_channel(-H, c2c, states, torch.Generator().manual_seed(0),
                               sigma_h=sigma_h)
    assert torch.equal(negative, -out)


def test_program_channel_clips_and_scales():
    H = torch.tensor([[[10.0, -10.0], [0.1, 0.0]]])
    out = program_channel(H, 0.0, 100, sigma_h=1.0)
    assert out[0, 0].tolist() == [3.0, -3.0] and out[0, 1, 1] == 0.0
    # with the per-matrix estimate the model is scale-equivariant
    G = torch.randn(3, 8, 4, generator=torch.Generator().manual_seed(2))
    a = program_channel(G, 0.03, 64, torch.Generator().manual_seed(5))
    b = program_channel(10 * G, 0.03, 64, torch.Generator().manual_seed(5))
    assert torch.allclose(10 * a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("c2c,states", [(-0.01, 150), (math.nan, 150), (0.01, 0), (0.01, 1.5)])
def test_program_channel_refuses_bad_parameters(c2c, states):
    with pytest.raises(UsageError):
        program_channel(torch.zeros(1, 2, 2), c2c, states)


def test_noise_aware_batches_perturb_only_the_receivers_channel():
    model = _tiny()
    system = MIMOSystem(2, 4, "qpsk")
    clean = draw_batch(model, system, 16, (5.0, 5.0), torch.Generator().manual_seed(0))
    noisy = draw_batch(model, system, 16, (5.0, 5.0), torch.Generator().manual_seed(0),
                       c2c=0.01, states=32)
    assert torch.equal(clean.H, noisy.H) and torch.equal(clean.y, noisy.y)
    assert not torch.equal(clean.H_est, noisy.H_est)
    relative = (noisy.H_est - clean.H_est).norm() / clean.H_est.norm()
    assert 0.01 < relative < 0.3


def test_noise_aware_training_runs_and_is_deterministic():
    reports = [train_detector(_tiny(), _options(steps=20, c2c=0.02, states=64), progress=False)
               for _ in range(2)]
    assert reports[0].history == [dict(h, seconds=g["seconds"]) for h, g in
                                  zip(reports[1].history, reports[0].history, strict=True)]
    assert "noise-aware" in reports[0].summary()


# -- every family of the zoo ---------------------------------------------------------------

@pytest.mark.parametrize("family", zoo_families())
def test_every_family_trains_with_the_generic_loop(family):
    torch.manual_seed(0)
    model = build_detector(family, **tiny_config(family))
    options = _options(steps=6, batch=16, val_every=3, val_batch=32, log_every=3, lr=1e-3,
                       csi=TINY_CSI.get(family, "perfect"))
    report = train_detector(model, options, progress=False)
    assert report.steps == 6 and math.isfinite(report.final_loss)
    assert 0.0 <= report.val_ser <= 1.0
    # MMSE from the same estimate (LS for SDNet), each RE-MIMO chunk with its own user count
    assert 0.0 <= report.mmse_val_ser <= 1.0
    assert [h["step"] for h in report.history] == [3, 6]
    assert report.family == family
