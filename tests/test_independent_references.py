"""Independent references for the exact searches and the quantizers: a numpy brute force
over every candidate vector (written here from the textbook model, not from mimoc's
``ml``), and hand-computed quantization codes written out literally."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from mimoc.quant.quantizers import ActQuantizer, WeightQuantizer
from mimoc.quant.spec import ActQuant, fake_quant_act, fake_quant_weight
from mimoc.sim.detectors import get_classical_detector
from mimoc.sim.modulation import get_constellation

#: Real PAM levels per dimension, by hand: unit average complex energy.
LEVELS = {
    "bpsk": np.array([-1.0, 1.0]),
    "qpsk": np.array([-1.0, 1.0]) / math.sqrt(2.0),
    "16qam": np.array([-3.0, -1.0, 1.0, 3.0]) / math.sqrt(10.0),
}


def brute_force_ml(H: np.ndarray, y: np.ndarray, modulation: str) -> np.ndarray:
    """``argmin_x ||y - H x||^2`` over every real candidate ``x [2Nt]`` of the
    constellation (BPSK: imaginary parts 0), for each slot and symbol: ``[B, S, 2Nt]``."""
    nt = H.shape[-1] // 2
    levels = LEVELS[modulation]
    if modulation == "bpsk":
        cands = np.array([list(c) + [0.0] * nt for c in itertools.product(levels, repeat=nt)])
    else:
        cands = np.array(list(itertools.product(levels, repeat=2 * nt)))
    out = np.empty(y.shape[:2] + (2 * nt,))
    for b in range(H.shape[0]):
        residual = y[b][:, None, :] - (cands @ H[b].T)[None, :, :]   # [S, C, 2Nr]
        out[b] = cands[np.argmin((residual ** 2).sum(-1), axis=1)]
    return out


def link(nt: int, nr: int, modulation: str, snr_db: float, batch: int, slot: int, seed: int):
    """A seeded real-valued link drawn with numpy only."""
    rng = np.random.default_rng(seed)
    Hc = (rng.standard_normal((batch, nr, nt)) + 1j * rng.standard_normal((batch, nr, nt)))
    Hc /= math.sqrt(2.0)
    H = np.block([[Hc.real, -Hc.imag], [Hc.imag, Hc.real]])
    levels = LEVELS[modulation]
    x = rng.choice(levels, size=(batch, slot, 2 * nt))
    if modulation == "bpsk":
        x[..., nt:] = 0.0
    n0 = 10.0 ** (-snr_db / 10.0)
    y = x @ np.swapaxes(H, 1, 2) + rng.standard_normal((batch, slot, 2 * nr)) * math.sqrt(n0 / 2)
    return H, y, np.full(batch, n0)


CASES = [  # nt, nr, modulation, snr_db, batch, slot, seed
    (2, 2, "qpsk", 4.0, 60, 3, 1),
    (3, 3, "qpsk", 6.0, 40, 3, 2),
    (2, 2, "16qam", 10.0, 40, 3, 3),
    (3, 4, "bpsk", 0.0, 40, 3, 4),
]


@pytest.mark.parametrize("detector", ["sd", "ml"])
@pytest.mark.parametrize("nt, nr, mod, snr, batch, slot, seed", CASES)
def test_exact_search_equals_numpy_brute_force(detector, nt, nr, mod, snr, batch, slot, seed):
    H, y, n0 = link(nt, nr, mod, snr, batch, slot, seed)
    expected = brute_force_ml(H, y, mod)
    got = get_classical_detector(detector)(torch.from_numpy(H), torch.from_numpy(y),
                                           torch.from_numpy(n0), get_constellation(mod))
    assert np.allclose(got.numpy(), expected, atol=1e-12)
    assert not np.allclose(expected, expected[:, :1])  # the cases have varied decisions


@pytest.mark.parametrize("nt, nr, mod, snr, batch, slot, seed", CASES)
def test_kbest_with_every_candidate_kept_equals_numpy_brute_force(nt, nr, mod, snr, batch,
                                                                  slot, seed):
    H, y, n0 = link(nt, nr, mod, snr, batch, slot, seed)
    every = get_constellation(mod).order ** nt  # K = M^Nt: nothing is ever pruned
    got = get_classical_detector(f"kbest:{every}")(torch.from_numpy(H), torch.from_numpy(y),
                                                   torch.from_numpy(n0), get_constellation(mod))
    assert np.allclose(got.numpy(), brute_force_ml(H, y, mod), atol=1e-12)


def test_the_brute_force_reference_finds_the_sent_symbols_without_noise():
    H, y, n0 = link(2, 2, "16qam", 300.0, 5, 2, 7)
    rng = np.random.default_rng(7)  # the same draws as link(): H first, then x
    rng.standard_normal((5, 2, 2))
    rng.standard_normal((5, 2, 2))
    x = rng.choice(LEVELS["16qam"], size=(5, 2, 4))
    assert np.allclose(brute_force_ml(H, y, "16qam"), x)


# -- quantizers: hand-computed codes ------------------------------------------------------

# Powers of two as steps so that every quotient below is exact in float32.
WEIGHT = [[0.125, 0.375, 0.625, -2.0, 1.9, -0.3],   # step 0.25
          [0.25, 0.75, -0.25, 3.0, 0.1, -0.8]]      # step 0.5
# 4 bits: codes -7..7; round half to even (0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -0.5 -> 0)
WEIGHT_CODES = [[0, 2, 2, -7, 7, -1],               # -8 and 7.6 clamp to -7 and 7
                [0, 2, 0, 6, 0, -2]]
WEIGHT_EXPECTED = [[0.0, 0.5, 0.5, -1.75, 1.75, -0.25],
                   [0.0, 1.0, 0.0, 3.0, 0.0, -1.0]]


def test_fake_quant_weight_gives_hand_computed_codes():
    weight = torch.tensor(WEIGHT)
    scale = torch.tensor([0.25, 0.5])
    got = fake_quant_weight(weight, scale, 4)
    assert got.tolist() == WEIGHT_EXPECTED
    assert (got / scale[:, None]).tolist() == [[float(c) for c in r] for r in WEIGHT_CODES]
    brevitas = WeightQuantizer(scale, 4, learn=False)(weight)
    assert brevitas.tolist() == WEIGHT_EXPECTED


@pytest.mark.parametrize("act, x, expected", [
    # signed 3 bits, codes -3..3, step 0.5: x/step = 0.4, 0.5, 1.6, -2.6, 4
    (ActQuant(3, "static", 0.5, True), [0.2, 0.25, 0.8, -1.3, 2.0], [0.0, 0.0, 1.0, -1.5, 1.5]),
    # unsigned 2 bits, codes 0..3 (the full grid), step 0.5: x/step = -0.8, 0.6, 1.5, 10
    (ActQuant(2, "static", 0.5, False), [-0.4, 0.3, 0.75, 5.0], [0.0, 0.5, 1.0, 1.5]),
    # dynamic, 4 bits: RMS([3, -4]) = sqrt(12.5), step = sqrt(12.5)/2, x/step = 1.70, -2.26
    (ActQuant(4, "dynamic", 0.5, True), [3.0, -4.0], [math.sqrt(12.5), -math.sqrt(12.5)]),
    # dynamic: RMS(1, 1, 1, 1) = 1, step 0.25, codes 4 (the top code 7 is not reached)
    (ActQuant(4, "dynamic", 0.25, True), [1.0, 1.0, 1.0, -1.0], [1.0, 1.0, 1.0, -1.0]),
    # dynamic, clamped: RMS(0.1, 8) ~ 5.657, step ~ 0.707, 8/step = 11.3 -> 7
    (ActQuant(4, "dynamic", 0.125, True), [0.1, 8.0],
     [0.0, 7 * 0.125 * math.sqrt((0.01 + 64.0) / 2)]),
])
def test_fake_quant_act_gives_hand_computed_codes(act, x, expected):
    x = torch.tensor([x], dtype=torch.float64)
    assert torch.allclose(fake_quant_act(x, act), torch.tensor([expected], dtype=torch.float64),
                          rtol=1e-12, atol=1e-12)
    brevitas = ActQuantizer(act, feature_dims=1, learn=False)(x.float())
    assert torch.allclose(brevitas.double(), torch.tensor([expected], dtype=torch.float64),
                          rtol=1e-6, atol=1e-6)
