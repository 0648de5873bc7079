"""Noise-aware training, the crossbar target and the IMC simulator program cells through
mimoc.hardware.programming: on seeded examples each gives exactly what the shared functions
give, and the weight-domain and conductance-domain forms agree to float precision."""

from __future__ import annotations

import pytest
import torch

from mimoc.compiler.frontend import import_module
from mimoc.compiler.pipeline import run_pipeline
from mimoc.detectors import build_detector
from mimoc.detectors.noise_aware import program_channel
from mimoc.hardware.devices import load_device
from mimoc.hardware.programming import (
    channel_clip,
    mapping_gain,
    pair_conductances,
    program_from_reset,
    programmed_level,
    pulses_from_reset,
    weight_pulses,
)
from mimoc.runtime.imc import load_schedule
from mimoc.targets.crossbar import lower
from mimoc.targets.crossbar.arrays import (
    MIN_CHANNEL_CLIP,
    signed_pulses,
    target_conductances,
)
from mimoc.targets.crossbar.arrays import channel_clip as crossbar_channel_clip
from mimoc.targets.crossbar.artifact import build_schedule, write_artifact
from mimoc.targets.crossbar.config import CrossbarConfig
from mimoc.targets.crossbar.target import DEFAULT_PASSES

C2C = 0.02


def _channels(dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(21)
    return (torch.randn(6, 8, 4, generator=g) / 2 ** 0.5).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_noise_aware_training_is_the_shared_model_in_weight_units(dtype):
    H = _channels(dtype)
    states = 150
    got = program_channel(H, C2C, states, torch.Generator().manual_seed(4))
    w_clip = channel_clip(H)
    assert w_clip.dtype == dtype
    n = weight_pulses(H, w_clip, states)
    z = torch.randn(H.shape, generator=torch.Generator().manual_seed(4), dtype=dtype)
    want = torch.sign(H) * programmed_level(n, z, low=0, step=w_clip / states,
                                            sigma=C2C * w_clip, high=w_clip)
    assert torch.equal(got, want)
    # the same cells in conductances (a device with those states and C2C), back in weights
    device = load_device("ftj-luo2022").with_c2c(C2C)
    G = program_from_reset(n.double(), device, z.double())
    back = torch.sign(H.double()) * (G - device.g_min_us) / mapping_gain(w_clip.double(), device)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert torch.allclose(got.double(), back, rtol=0, atol=tol * float(w_clip.max()))


def test_crossbar_mapping_is_the_shared_mapping_in_float64():
    H = _channels(torch.float32)
    device = load_device("rram-zeng2023")
    w_clip = crossbar_channel_clip(H)
    assert torch.equal(w_clip, channel_clip(H.double(), floor=MIN_CHANNEL_CLIP))
    pulses = signed_pulses(H, w_clip, device.states)
    assert pulses.dtype == torch.int64
    assert torch.equal(pulses.abs().double(), weight_pulses(H.double(), w_clip, device.states))
    pos, neg = target_conductances(H, w_clip, device)
    want_pos, want_neg = pair_conductances(H.double(), w_clip, device)
    assert torch.equal(pos, want_pos) and torch.equal(neg, want_neg)
    # the weight-domain pulse count is the conductance-domain one of the mapped targets
    assert torch.equal(pulses_from_reset(pos, device) - pulses_from_reset(neg, device), pulses)
    # an all-zero matrix stays at Gmin with a finite mapping gain
    zero = torch.zeros(1, 3, 2)
    w0 = crossbar_channel_clip(zero)
    assert torch.isfinite(torch.as_tensor(mapping_gain(w0, device))).all()
    assert (target_conductances(zero, w0, device)[0] == device.g_min_us).all()


def test_simulator_programs_channel_arrays_with_the_shared_model(tmp_path):
    torch.manual_seed(1)
    model = build_detector("detnet", nt=2, nr=4, modulation="qpsk", layers=2).eval()
    graph = run_pipeline(import_module(model), list(DEFAULT_PASSES) + [lower.PASS]).graph
    built = build_schedule(graph, load_device("fefet-jerry2017"), CrossbarConfig(mc_draws=2),
                           model={"name": model.family, "config": model.config.to_dict()})
    write_artifact(built, tmp_path / "xb")
    xb = load_schedule(tmp_path / "xb")
    device = xb.device_for(C2C)
    m = xb.matrices["H"]
    H = _channels()
    programmed, _ = xb.program_channel(m, H, device, torch.Generator().manual_seed(8))
    dG = torch.cat([block for _, _, block, _ in programmed.row_tiles], dim=-2)
    k = programmed.row_tiles[0][3]

    w_clip = channel_clip(H, floor=MIN_CHANNEL_CLIP)
    n = weight_pulses(H, w_clip, device.states)
    n_pos, n_neg = n * (H > 0), n * (H < 0)
    g = torch.Generator().manual_seed(8)
    z_pos = torch.randn(H.shape, generator=g, dtype=torch.float64)   # G+ first, then G-
    z_neg = torch.randn(H.shape, generator=g, dtype=torch.float64)
    want = program_from_reset(n_pos, device, z_pos) - program_from_reset(n_neg, device, z_neg)
    assert torch.equal(dG, want)
    assert torch.equal(k, mapping_gain(w_clip, device))
    # in weight units it is the noise-aware model with the moving side's draws
    z = torch.where(H > 0, z_pos, z_neg)
    weights = torch.sign(H) * programmed_level(n, z, low=0, step=w_clip / device.states,
                                               sigma=C2C * w_clip, high=w_clip)
    assert torch.allclose(dG / k, weights, rtol=0, atol=1e-12 * float(w_clip.max()))
