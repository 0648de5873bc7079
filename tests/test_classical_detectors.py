"""Classical detectors: exactness (sphere == ML, K-best == ML), closed forms (ZF/MMSE),
error-rate ordering, AMP on a large system, shapes and the registry."""

import math

import numpy as np
import pytest
import torch

from mimoc.errors import UsageError
from mimoc.sim.channels import complex_matrix, complex_vector, real_vector
from mimoc.sim.detectors import CLASSICAL_DETECTORS, get_classical_detector
from mimoc.sim.detectors.amp import amp
from mimoc.sim.detectors.kbest import kbest
from mimoc.sim.detectors.linear import mmse, zf
from mimoc.sim.detectors.ml import ml
from mimoc.sim.detectors.sic import mmse_sic
from mimoc.sim.detectors.sphere import sphere
from mimoc.sim.system import MIMOSystem


def draw(nt, nr, modulation, snr_db, batch, slot, generator, dtype=torch.float64):
    system = MIMOSystem(nt, nr, modulation, slot=slot)
    return system.constellation, system.sample(batch, snr_db, generator, dtype)


def metric(H, y, x):
    """||y - H x||^2 per symbol ``[B, S]``."""
    return (y - x @ H.transpose(-1, -2)).square().sum(-1)


def assert_same_decisions(H, y, x_a, x_b):
    """Decisions agree, except on floating-point ties of the ML metric."""
    differ = (x_a != x_b).any(-1)
    if bool(differ.any()):
        m_a, m_b = metric(H, y, x_a)[differ], metric(H, y, x_b)[differ]
        assert torch.allclose(m_a, m_b, rtol=1e-9, atol=1e-9), (m_a, m_b)
    assert differ.float().mean().item() < 1e-3  # ties are rare with continuous noise


# (nt, nr, modulation, snr_db, slots, symbols per slot)
SPHERE_CASES = [
    (4, 4, "bpsk", 0.0, 500, 2),
    (6, 8, "bpsk", 6.0, 500, 2),
    (2, 2, "qpsk", 0.0, 500, 2),
    (3, 4, "qpsk", 10.0, 500, 2),
    (4, 4, "qpsk", 20.0, 500, 2),
    (5, 6, "qpsk", 5.0, 300, 2),
    (2, 2, "16qam", 5.0, 600, 2),
    (2, 3, "16qam", 20.0, 600, 2),
    (3, 3, "16qam", 12.0, 600, 2),
    (3, 4, "16qam", 25.0, 500, 2),
    (4, 4, "16qam", 15.0, 150, 2),
    (2, 2, "64qam", 20.0, 500, 2),
]


def test_sphere_cases_cover_ten_thousand_problems():
    total = sum(b * s for *_, b, s in SPHERE_CASES)
    qam16 = sum(b * s for _, _, mod, _, b, s in SPHERE_CASES if mod == "16qam")
    assert total >= 10_000 and qam16 >= 4_000


@pytest.mark.parametrize("nt,nr,mod,snr,batch,slot", SPHERE_CASES)
def test_sphere_equals_exhaustive_ml(nt, nr, mod, snr, batch, slot, generator):
    c, b = draw(nt, nr, mod, snr, batch, slot, generator)
    x_ml = ml(b.H, b.y, b.noise_var, c)
    x_sd = sphere(b.H, b.y, b.noise_var, c)
    assert_same_decisions(b.H, b.y, x_ml, x_sd)
    # ML really minimises the metric: no transmitted vector is closer than its decision.
    assert bool((metric(b.H, b.y, x_ml) <= metric(b.H, b.y, b.x) + 1e-9).all())


@pytest.mark.parametrize("nt,nr,mod,snr", [(3, 4, "qpsk", 5.0), (2, 3, "16qam", 10.0),
                                           (4, 4, "bpsk", 0.0)])
def test_kbest_with_all_candidates_equals_ml(nt, nr, mod, snr, generator):
    c, b = draw(nt, nr, mod, snr, 300, 2, generator)
    x_kb = kbest(b.H, b.y, b.noise_var, c, k=c.order**nt)
    assert_same_decisions(b.H, b.y, ml(b.H, b.y, b.noise_var, c), x_kb)


def test_kbest_error_rate_falls_with_k(generator):
    c, b = draw(4, 4, "16qam", 18.0, 200, 2, generator)

    def ser(x):
        return (c.indices_of_real(x) != b.indices).float().mean().item()

    ser_ml = ser(ml(b.H, b.y, b.noise_var, c))
    ser_k1 = ser(kbest(b.H, b.y, b.noise_var, c, k=1))
    ser_k16 = ser(kbest(b.H, b.y, b.noise_var, c, k=16))
    assert ser_ml <= ser_k16 < ser_k1


def test_zf_and_mmse_match_complex_closed_forms(generator):
    c, b = draw(3, 5, "16qam", 8.0, 20, 4, generator)
    Hc = complex_matrix(b.H).numpy()
    yc = complex_vector(b.y).numpy()  # [B, S, Nr]
    n0 = b.noise_var.numpy()
    x_zf = np.einsum("bij,bsj->bsi", np.linalg.pinv(Hc), yc)
    Hh = np.conj(np.transpose(Hc, (0, 2, 1)))
    gram = Hh @ Hc + n0[:, None, None] * np.eye(3)
    x_mmse = np.einsum("bij,bsj->bsi", np.linalg.solve(gram, Hh), yc)
    assert np.allclose(zf(b.H, b.y, b.noise_var, c).numpy(), real_vector(torch.from_numpy(x_zf)),
                       atol=1e-9)
    assert np.allclose(mmse(b.H, b.y, b.noise_var, c).numpy(),
                       real_vector(torch.from_numpy(x_mmse)), atol=1e-9)


def test_ml_refuses_too_many_candidates(generator):
    c, b = draw(6, 6, "16qam", 10.0, 2, 1, generator)  # 16^6 = 16.8M candidates
    with pytest.raises(UsageError, match="'sd'"):
        ml(b.H, b.y, b.noise_var, c)
    with pytest.raises(UsageError, match="limit"):
        ml(b.H[:, :, :], b.y, b.noise_var, c, max_candidates=1000)
    # The limit is on the candidate count, so 8x8 QPSK (65536) still runs.
    c8, b8 = draw(8, 8, "qpsk", 10.0, 2, 1, generator)
    assert ml(b8.H, b8.y, b8.noise_var, c8).shape == (2, 1, 16)


def wilson(errors, trials, z=1.96):
    p = errors / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials**2)) / (1 + z * z / trials)
    return centre - half, centre + half


def test_ser_ordering_within_confidence_intervals(generator):
    c, b = draw(4, 4, "qpsk", 10.0, 2500, 4, generator, torch.float32)
    ci = {}
    for name in ("ml", "mmse-sic", "mmse", "zf"):
        x = get_classical_detector(name)(b.H, b.y, b.noise_var, c)
        errors = int((c.indices_of_real(x) != b.indices).sum())
        ci[name] = wilson(errors, b.indices.numel())

    def not_worse(better, worse):  # no significant violation of `better <= worse`
        assert ci[better][0] <= ci[worse][1], (better, worse, ci)

    def clearly_better(better, worse):
        assert ci[better][1] < ci[worse][0], (better, worse, ci)

    for better, worse in [("ml", "mmse-sic"), ("ml", "mmse"), ("mmse-sic", "zf"), ("mmse", "zf"),
                          ("mmse-sic", "mmse")]:
        not_worse(better, worse)
    clearly_better("ml", "zf")
    clearly_better("ml", "mmse")
    clearly_better("mmse-sic", "zf")


def test_amp_beats_zf_on_a_large_system(generator):
    c, b = draw(32, 32, "qpsk", 10.0, 150, 2, generator, torch.float32)
    trials = b.indices.numel()
    ser = {}
    for name, det in (("zf", zf), ("amp", amp)):
        ser[name] = wilson(int((c.indices_of_real(det(b.H, b.y, b.noise_var, c)) != b.indices)
                               .sum()), trials)
    assert ser["amp"][1] < ser["zf"][0], ser


# ----------------------------------------------------------------------------- shapes, slots


NONLINEAR = ("ml", "sd", "kbest", "mmse-sic", "amp")


@pytest.mark.parametrize("name", list(CLASSICAL_DETECTORS))
@pytest.mark.parametrize("mod", ["bpsk", "16qam"])
def test_shapes_dtype_and_bpsk_zero_imaginary(name, mod, generator):
    c, b = draw(3, 4, mod, 10.0, 5, 3, generator, torch.float32)
    x = CLASSICAL_DETECTORS[name](b.H, b.y, b.noise_var, c)
    assert x.shape == (5, 3, 6) and x.dtype == torch.float32
    if name in NONLINEAR:  # hard decisions: exact constellation points
        assert torch.equal(c.nearest_real(x), x)
    if mod == "bpsk" and name in NONLINEAR:
        assert bool((x[..., 3:] == 0).all())


@pytest.mark.parametrize("name", NONLINEAR)
@pytest.mark.parametrize("mod", ["bpsk", "qpsk", "16qam"])
def test_noiseless_recovery(name, mod, generator):
    c, b = draw(3, 5, mod, 80.0, 20, 2, generator)
    x = CLASSICAL_DETECTORS[name](b.H, b.y, b.noise_var, c)
    assert torch.equal(x, b.x)


@pytest.mark.parametrize("name", NONLINEAR)
def test_slot_sharing_equals_per_symbol_detection(name, generator):
    """Slot-rate work reused across S symbols gives the same decisions as S separate slots."""
    c, b = draw(3, 4, "16qam", 12.0, 40, 3, generator)
    detect = CLASSICAL_DETECTORS[name]
    together = detect(b.H, b.y, b.noise_var, c)
    H_rep = b.H.repeat_interleave(3, dim=0)
    separate = detect(H_rep, b.y.reshape(120, 1, -1), b.noise_var.repeat_interleave(3), c)
    assert torch.equal(together.reshape(120, 1, -1), separate)


def test_sic_detects_in_mmse_order(generator):
    """With one stream much stronger, MMSE-SIC takes it first and cancels it exactly."""
    from mimoc.sim.detectors.common import effective_system
    from mimoc.sim.detectors.sic import sic_filters

    c, b = draw(3, 6, "bpsk", 10.0, 8, 1, generator)
    H = b.H.clone()
    H[:, :, 1] *= 10.0
    eff = effective_system(H, b.y, b.noise_var, c)
    order, filters, cols = sic_filters(eff)
    assert bool((order[:, 0] == 1).all())
    assert torch.allclose((filters * cols).sum(-1), torch.ones(8, 3, dtype=H.dtype))  # unbiased
    assert torch.equal(order.sort(-1).values, torch.arange(3).expand(8, 3))


# ----------------------------------------------------------------------------- registry, errors


def test_registry_names_and_specs(generator):
    assert set(CLASSICAL_DETECTORS) == {"zf", "mmse", "lmmse", "ml", "sd", "kbest", "mmse-sic",
                                        "amp"}
    assert get_classical_detector("ml") is ml
    assert get_classical_detector("mmse-sic") is mmse_sic
    k32 = get_classical_detector("kbest:32")
    assert k32.__name__ == "kbest:32" and k32.keywords == {"k": 32}
    assert get_classical_detector("amp:5").keywords == {"iterations": 5}
    c, b = draw(2, 3, "16qam", 5.0, 50, 1, generator)
    assert torch.equal(k32(b.H, b.y, b.noise_var, c), kbest(b.H, b.y, b.noise_var, c, k=32))
    for bad, message in [("mlx", "unknown detector"), ("kbest:0", "malformed"),
                         ("kbest:many", "malformed"), ("ml:3", "takes no parameter")]:
        with pytest.raises(UsageError, match=message):
            get_classical_detector(bad)


def test_bad_inputs_raise_usage_errors(generator):
    c, b = draw(4, 2, "qpsk", 10.0, 3, 1, generator)  # Nt > Nr
    for detect in (sphere, kbest):
        with pytest.raises(UsageError, match="use ml"):
            detect(b.H, b.y, b.noise_var, c)
    with pytest.raises(UsageError, match="does not match"):
        ml(b.H, b.y[..., :2], b.noise_var, c)
    with pytest.raises(UsageError, match="slot dimension"):
        ml(b.H, b.y[:, 0], b.noise_var, c)
    with pytest.raises(UsageError):
        kbest(b.H, b.y, b.noise_var, c, k=0)
    with pytest.raises(UsageError):
        amp(b.H, b.y, b.noise_var, c, damping=1.5)
    # Underdetermined systems still work for ML, SIC and AMP.
    for detect in (ml, mmse_sic, amp):
        assert detect(b.H, b.y, b.noise_var, c).shape == (3, 1, 8)
