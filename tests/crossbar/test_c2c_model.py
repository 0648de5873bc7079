"""The C2C definition (Device.c2c_model): per-pulse (sqrt(n)) and per-write (one draw per
programming operation) against closed-form variances, in the target / simulator function
(program_from_reset), noise-aware training (program_channel) and the verify loop."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from mimoc.detectors.noise_aware import program_channel
from mimoc.errors import UsageError
from mimoc.hardware.devices import DeviceError, load_device
from mimoc.hardware.programming import (
    c2c_spread,
    program_from_reset,
    program_with_verify,
    programmed_level,
)

DRAWS = 40_000


def wide(model: str):
    """A device whose C2C noise never reaches the clip at Gmin/Gmax for mid-range counts."""
    return dataclasses.replace(load_device("ftj-luo2022"), g_min_us=0.0, g_max_us=100.0,
                               states=100, c2c_potentiation=0.002, c2c_model=model)


@pytest.mark.parametrize("model, n, want_std", [
    ("per-pulse", 25, 0.2 * 5), ("per-pulse", 4, 0.2 * 2),
    ("per-write", 25, 0.2), ("per-write", 4, 0.2), ("per-write", 0, 0.0),
    ("per-pulse", 0, 0.0),
])
def test_program_from_reset_variance_matches_closed_form(model, n, want_std):
    dev = wide(model)                                   # sigma = 0.002 * 100 = 0.2 uS
    z = torch.randn(DRAWS, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    G = program_from_reset(torch.full((DRAWS,), float(n), dtype=torch.float64), dev, z)
    assert float(G.mean()) == pytest.approx(n * dev.step_us, abs=0.02)
    assert float(G.std()) == pytest.approx(want_std, rel=0.02, abs=1e-12)


@pytest.mark.parametrize("model", ["per-pulse", "per-write"])
def test_noise_aware_training_uses_the_same_definition(model):
    # every entry the same magnitude: n = round(|W| / w_clip * P) pulses, w_clip = 3 RMS = 3
    H = torch.ones(DRAWS, 1, 1, dtype=torch.float64)
    out = program_channel(H, c2c=0.002, states=150, generator=torch.Generator().manual_seed(5),
                          c2c_model=model)
    n = 50                                              # 1/3 * 150
    want = 0.002 * 3.0 * (n ** 0.5 if model == "per-pulse" else 1.0)
    assert float(out.std()) == pytest.approx(want, rel=0.02)
    same = programmed_level(torch.full((DRAWS, 1, 1), float(n), dtype=torch.float64),
                            torch.randn(DRAWS, 1, 1, generator=torch.Generator().manual_seed(5),
                                        dtype=torch.float64),
                            low=0, step=3.0 / 150, sigma=0.006, high=3.0, c2c_model=model)
    torch.testing.assert_close(out, same)


def test_verify_corrections_follow_the_definition():
    """RRAM's C2C per pulse is 11 steps: per-pulse corrections of k pulses scatter by
    sqrt(k) 11 steps, per-write ones by 11: per-write converges in fewer rounds."""
    rram = load_device("rram-zeng2023")
    target = torch.full((16, 16), rram.g_min_us + 0.7 * rram.range_us, dtype=torch.float64)
    rounds = {}
    for model in ("per-pulse", "per-write"):
        dev = dataclasses.replace(rram, c2c_model=model)
        out = program_with_verify(target, dev, torch.Generator().manual_seed(0))
        assert bool(out.converged.all())
        rounds[model] = float(out.iterations.double().mean())
    assert rounds["per-write"] < 0.5 * rounds["per-pulse"]


def test_unknown_model_is_refused_naming_the_field(tmp_path):
    with pytest.raises(UsageError, match="c2c_model"):
        c2c_spread(torch.ones(2), "per-cycle")
    data = load_device("ftj-luo2022").to_dict() | {"c2c_model": "per-cycle"}
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DeviceError) as err:
        load_device(str(path))
    assert "c2c_model" in str(err.value) and "\n" not in str(err.value)
    path.write_text(json.dumps(data | {"c2c_model": "per-write"}))
    assert load_device(str(path)).c2c_model == "per-write"
    assert load_device("ftj-luo2022").c2c_model == "per-pulse"
