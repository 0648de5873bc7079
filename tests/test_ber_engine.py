"""The BER/SER engine against closed forms that do not come from mimoc's code,
plus its statistics, determinism and bookkeeping.

The closed-form checks use a 99.9% Wilson interval rather than the reported
95% one: a dozen independent 95% checks would fail together about half the
time for a correct engine. A 0.5 dB error in the SNR convention still moves
every checked rate well outside the 99.9% interval at these sample sizes.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import binomtest, norm

from mimoc.errors import UsageError
from mimoc.sim.ber import (
    BERPoint,
    BERResult,
    classical,
    from_module,
    point_seed,
    simulate,
    snr_at,
)
from mimoc.sim.stats import wilson_interval
from mimoc.sim.system import MIMOSystem

FIXED_BUDGET = 10**9  # min_errors that is never reached: every point spends max_symbols


# -- closed forms (textbook results, independent of mimoc) ---------------------

def mrc_bpsk_ber(rho: float, branches: int) -> float:
    """BPSK over L-branch MRC in i.i.d. Rayleigh fading, average SNR ``rho`` per branch
    (Proakis, Digital Communications, eq. 14.4-15)."""
    mu = math.sqrt(rho / (1.0 + rho))
    return ((1 - mu) / 2) ** branches * sum(
        math.comb(branches - 1 + k, k) * ((1 + mu) / 2) ** k for k in range(branches))


def q_function(x: float) -> float:
    return float(norm.sf(x))


def assert_rate_matches(errors: int, trials: int, expected: float, what: str) -> None:
    lo, hi = wilson_interval(errors, trials, confidence=0.999)
    assert lo <= expected <= hi, (
        f"{what}: closed form {expected:.4e} outside the 99.9% Wilson interval "
        f"[{lo:.4e}, {hi:.4e}] of {errors}/{trials} = {errors / trials:.4e}")


def run_one(detector: str, nt: int, nr: int, modulation: str, snr_db: float, symbols: int,
            system: MIMOSystem | None = None, seed: int = 1) -> BERPoint:
    system = system or MIMOSystem(nt=nt, nr=nr, modulation=modulation)
    result = simulate({detector: classical(detector, system.constellation)}, system, [snr_db],
                      seed=seed, max_symbols=symbols, min_errors=FIXED_BUDGET)
    return result.curves[detector][0]


@pytest.mark.parametrize(("nt", "nr", "snr_db"), [
    (1, 1, 10.0),   # L = 1
    (2, 2, 12.0),   # L = 1, with interference nulled
    (3, 4, 6.0),    # L = 2
    (2, 4, 3.0),    # L = 3
    (4, 8, 0.0),    # L = 5
])
def test_zf_bpsk_on_rayleigh_equals_mrc_with_nr_minus_nt_plus_1_branches(nt, nr, snr_db):
    # Post-ZF SNR of each stream is rho / [(H^H H)^-1]_kk ~ rho * Gamma(Nr - Nt + 1, 1),
    # the SNR of (Nr - Nt + 1)-branch MRC (Winters, Salz, Gitlin 1994).
    point = run_one("zf", nt, nr, "bpsk", snr_db, symbols=400_000)
    branches = nr - nt + 1
    expected = mrc_bpsk_ber(10 ** (snr_db / 10), branches)
    assert point.bit_errors == point.errors  # one bit per BPSK symbol
    assert_rate_matches(point.bit_errors, point.symbols, expected, f"ZF {nt}x{nr} BPSK")
    # The check has teeth: an SNR off by 0.5 dB either way falls outside the interval.
    lo, hi = wilson_interval(point.bit_errors, point.symbols, confidence=0.999)
    for shift_db in (-0.5, 0.5):
        assert not lo <= mrc_bpsk_ber(10 ** ((snr_db + shift_db) / 10), branches) <= hi


def test_zf_single_stream_qpsk_is_mrc_at_half_the_snr_per_bit():
    # Gray QPSK = two BPSK streams, each with half the symbol energy.
    snr_db, nr = 8.0, 2
    point = run_one("zf", 1, nr, "qpsk", snr_db, symbols=200_000)
    expected = mrc_bpsk_ber(10 ** (snr_db / 10) / 2, nr)
    assert_rate_matches(point.bit_errors, 2 * point.symbols, expected, "ZF 1x2 QPSK BER")


@pytest.mark.parametrize(("modulation", "nr", "snr_db"), [("bpsk", 1, 10.0), ("bpsk", 3, 2.0),
                                                          ("qpsk", 2, 8.0)])
def test_single_stream_ml_equals_mrc_with_nr_branches(modulation, nr, snr_db):
    point = run_one("ml", 1, nr, modulation, snr_db, symbols=200_000)
    rho = 10 ** (snr_db / 10) / (1 if modulation == "bpsk" else 2)
    bits = point.symbols * (1 if modulation == "bpsk" else 2)
    assert_rate_matches(point.bit_errors, bits, mrc_bpsk_ber(rho, nr), f"ML 1x{nr} {modulation}")


class IdentityChannel:
    """``H = I`` every slot: the link becomes parallel AWGN channels."""

    spec = "identity"

    def sample(self, batch, nr, nt, generator=None, dtype=torch.complex64):
        return torch.eye(nr, nt, dtype=dtype).expand(batch, nr, nt).clone()


def test_16qam_on_awgn_matches_exact_gray_ser_and_ber():
    # Square 16-QAM = two Gray 4-PAM dimensions with d/sigma = sqrt(Es/N0 / 5).
    snr_db = 14.0
    a = math.sqrt(10 ** (snr_db / 10) / 5)
    q1, q3, q5 = (q_function(k * a) for k in (1, 3, 5))
    pam_ser = 1.5 * q1
    ser = 1 - (1 - pam_ser) ** 2
    ber = (3 * q1 + 2 * q3 - q5) / 4
    system = MIMOSystem(nt=2, nr=2, modulation="16qam", channel=IdentityChannel())
    point = run_one("zf", 2, 2, "16qam", snr_db, symbols=200_000, system=system)
    assert_rate_matches(point.errors, point.symbols, ser, "16-QAM AWGN SER")
    assert_rate_matches(point.bit_errors, 4 * point.symbols, ber, "16-QAM AWGN BER")


# -- statistics ----------------------------------------------------------------

@pytest.mark.parametrize(("errors", "trials"), [(0, 10), (1, 1_000_000), (12, 1000), (5, 7),
                                                (50, 100), (100, 100)])
def test_wilson_interval_matches_scipy(errors, trials):
    expected = binomtest(errors, trials).proportion_ci(confidence_level=0.95, method="wilson")
    lo, hi = wilson_interval(errors, trials)
    assert lo == pytest.approx(expected.low, rel=1e-9, abs=1e-15)
    assert hi == pytest.approx(expected.high, rel=1e-9, abs=1e-15)


def test_wilson_interval_known_value_and_edges():
    # 12 in 1000: Wilson's interval (0.00688, 0.02086), as tabulated by e.g. Newcombe (1998).
    lo, hi = wilson_interval(12, 1000)
    assert (round(lo, 5), round(hi, 5)) == (0.00688, 0.02086)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(0, 100)[0] == 0.0 and wilson_interval(100, 100)[1] == 1.0
    with pytest.raises(UsageError):
        wilson_interval(5, 3)


def test_points_carry_slot_clustered_intervals_of_their_counts():
    # Slot 1: the unit is one vector of Nt = 2 streams sharing a channel; the interval is
    # Wilson's on the effective sample size, between the vector count and the symbol count.
    point = run_one("mmse", 2, 4, "qpsk", 4.0, symbols=20_000)
    assert point.slots == 10_000 and point.slots <= point.effective_symbols <= point.symbols
    wilson = wilson_interval(point.errors, point.symbols)
    assert point.ser_ci[0] <= wilson[0] < wilson[1] <= point.ser_ci[1]
    assert point.ser_ci[1] - point.ser_ci[0] < 1.5 * (wilson[1] - wilson[0])  # deff near 1
    assert point.ser == point.errors / point.symbols
    assert point.errors <= point.bit_errors <= 2 * point.errors


# -- determinism and shared draws -------------------------------------------------

def _counts(result: BERResult):
    return {name: [(p.snr_db, p.symbols, p.errors, p.bit_errors) for p in points]
            for name, points in result.curves.items()}


@pytest.fixture
def system():
    return MIMOSystem(nt=2, nr=3, modulation="qpsk")


def test_same_seed_same_result_and_other_seed_other_draws(system):
    det = {"mmse": classical("mmse", system.constellation)}
    kwargs = {"max_symbols": 20_000, "min_errors": FIXED_BUDGET}
    first = simulate(det, system, [2.0, 6.0], seed=7, **kwargs)
    again = simulate(det, system, [2.0, 6.0], seed=7, **kwargs)
    other = simulate(det, system, [2.0, 6.0], seed=8, **kwargs)
    assert _counts(first) == _counts(again)
    assert _counts(first) != _counts(other)


def test_point_draws_do_not_depend_on_the_other_points(system):
    det = {"zf": classical("zf", system.constellation)}
    kwargs = {"seed": 3, "max_symbols": 30_000, "min_errors": 50}
    alone = simulate(det, system, [4.0], **kwargs).curves["zf"][0]
    among = simulate(det, system, [8.0, 0.0, 4.0], **kwargs).curves["zf"]
    assert [p.snr_db for p in among] == [8.0, 0.0, 4.0]  # list order is kept
    assert among[2] == alone
    assert point_seed(3, 4) == point_seed(3, 4.0) == point_seed(3, 0.1 * 40)
    assert point_seed(3, 0.0) == point_seed(3, -0.0) != point_seed(4, 0.0)


def test_all_detectors_see_the_same_draws(system):
    seen: dict[str, list] = {"a": [], "b": []}

    def recorder(name):
        def detect(H, y, noise_var):
            seen[name].append((H.clone(), y.clone(), noise_var.clone()))
            return y[..., : 2 * system.nt]  # any estimate of the right shape
        return detect

    simulate({"a": recorder("a"), "b": recorder("b")}, system, [0.0, 5.0],
             max_symbols=5_000, min_errors=FIXED_BUDGET, batch_size=300)
    assert len(seen["a"]) == len(seen["b"]) == 2 * math.ceil(5_000 / (300 * system.nt))
    for (Ha, ya, na), (Hb, yb, nb) in zip(seen["a"], seen["b"], strict=True):
        assert torch.equal(Ha, Hb) and torch.equal(ya, yb) and torch.equal(na, nb)


def test_a_detector_curve_is_the_same_alone_or_next_to_others(system):
    c = system.constellation
    kwargs = {"seed": 5, "max_symbols": 20_000, "min_errors": FIXED_BUDGET}
    alone = simulate({"zf": classical("zf", c)}, system, [3.0], **kwargs)
    together = simulate({"zf": classical("zf", c), "mmse": classical("mmse", c)}, system,
                        [3.0], **kwargs)
    assert alone.curves["zf"] == together.curves["zf"]
    # Same draws: MMSE is never worse than ZF by more than noise on the same samples.
    assert together.curves["mmse"][0].errors <= together.curves["zf"][0].errors


# -- stopping rule and bookkeeping -------------------------------------------------

def test_point_stops_once_every_detector_has_min_errors(system):
    c = system.constellation
    batch = 250  # slots; 500 symbols per batch
    result = simulate({"zf": classical("zf", c), "mmse": classical("mmse", c)}, system, [6.0],
                      max_symbols=10**7, min_errors=40, min_error_slots=1, batch_size=batch)
    zf, mmse = result.curves["zf"][0], result.curves["mmse"][0]
    assert zf.symbols == mmse.symbols and zf.symbols % (batch * system.nt) == 0
    assert min(zf.errors, mmse.errors) >= 40
    # One batch less would not have been enough for the slower detector.
    rerun = simulate({"zf": classical("zf", c), "mmse": classical("mmse", c)}, system, [6.0],
                     max_symbols=zf.symbols - batch * system.nt, min_errors=10**9,
                     batch_size=batch)
    assert min(p[0].errors for p in rerun.curves.values()) < 40


def test_budget_counts_scalar_symbols_in_whole_slots():
    system = MIMOSystem(nt=3, nr=4, modulation="qpsk", slot=5)  # 15 symbols per slot
    result = simulate({"mmse": classical("mmse", system.constellation)}, system, [30.0],
                      max_symbols=1000, min_errors=FIXED_BUDGET, batch_size=8)
    assert result.curves["mmse"][0].symbols == math.ceil(1000 / 15) * 15


def test_simulate_rejects_bad_arguments(system):
    det = {"zf": classical("zf", system.constellation)}
    for kwargs in ({"max_symbols": 0}, {"min_errors": 0}, {"batch_size": -1}):
        with pytest.raises(UsageError):
            simulate(det, system, [0.0], **kwargs)
    with pytest.raises(UsageError):
        simulate(det, system, [])
    with pytest.raises(UsageError):
        simulate(det, system, [float("nan")])
    with pytest.raises(UsageError):
        simulate({}, system, [0.0])
    with pytest.raises(UsageError):
        classical("no-such-detector", system.constellation)


def test_to_dict_has_a_list_of_curves_for_one_or_several_detectors(system):
    c = system.constellation
    one = simulate({"mmse": classical("mmse", c)}, system, [0.0, 2.0], max_symbols=2_000).to_dict()
    (curve,) = one["curves"]
    assert curve["detector"] == {"name": "mmse", "kind": "classical", "spec": "mmse"}
    assert (one["nt"], one["nr"], one["modulation"], one["snr_def"]) == \
        (2, 3, "qpsk", "per-stream")
    assert [p["snr_db"] for p in curve["points"]] == [0.0, 2.0]
    assert set(curve["points"][0]) >= {"snr_db", "ser", "ber", "ser_ci", "ber_ci", "symbols",
                                     "errors", "bit_errors", "slots", "error_slots",
                                     "effective_symbols", "effective_bits"}
    assert one["min_errors"] == 100 and one["min_error_slots"] == 30
    two = simulate({"zf": classical("zf", c), "mmse": classical("mmse", c)}, system, [0.0],
                   max_symbols=2_000).to_dict()
    assert [curve["detector"]["name"] for curve in two["curves"]] == ["zf", "mmse"]
    module = simulate({"mine": from_module(LeastSquares())}, system, [0.0],
                      max_symbols=2_000)
    assert module.to_dict()["curves"][0]["detector"] == {"name": "mine", "kind": "module"}
    module.identities = {"mine": {"kind": "model", "path": "mine.pt"}}
    assert module.to_dict()["curves"][0]["detector"] == {"name": "mine", "kind": "model",
                                                         "path": "mine.pt"}


# -- wrappers ------------------------------------------------------------------------

class LeastSquares(torch.nn.Module):
    """A zoo-style module: ``forward(H, y)``, here plain least squares (= ZF)."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, H, y):
        x = torch.linalg.lstsq(H, y.transpose(-1, -2)).solution.transpose(-1, -2)
        return self.scale * x


def test_from_module_runs_without_grad_in_eval_mode_and_restores_mode(system):
    model = LeastSquares().train()
    modes = []
    model.register_forward_hook(lambda m, i, o: modes.append((m.training, o.requires_grad)))
    kwargs = {"seed": 2, "max_symbols": 10_000, "min_errors": FIXED_BUDGET}
    via_module = simulate({"ls": from_module(model)}, system, [4.0], **kwargs).curves["ls"]
    via_zf = simulate({"zf": classical("zf", system.constellation)}, system, [4.0],
                      **kwargs).curves["zf"]
    assert [(p.errors, p.bit_errors) for p in via_module] == [(p.errors, p.bit_errors)
                                                               for p in via_zf]
    assert modes and all(m == (False, False) for m in modes)
    assert model.training


def test_detector_with_wrong_output_shape_is_a_usage_error(system):
    with pytest.raises(UsageError, match="shape"):
        simulate({"bad": lambda H, y, n: y}, system, [0.0], max_symbols=100)


# -- snr_at ---------------------------------------------------------------------------

def _curve(pairs):
    return [BERPoint.from_counts(snr, 1_000_000, errors, errors, 2) for snr, errors in pairs]


def test_snr_at_interpolates_log_linearly():
    curve = _curve([(0, 100_000), (4, 10_000), (8, 100)])
    assert snr_at(curve, 1e-2) == pytest.approx(4.0)
    assert snr_at(curve, 1e-3) == pytest.approx(6.0)  # halfway in log between 1e-2 and 1e-4
    assert snr_at(curve, math.sqrt(1e-1 * 1e-2)) == pytest.approx(2.0)
    assert snr_at(list(reversed(curve)), 1e-3) == pytest.approx(6.0)  # order does not matter


def test_snr_at_returns_none_when_the_target_is_not_bracketed():
    curve = _curve([(0, 100_000), (4, 10_000), (8, 0)])
    assert snr_at(curve, 0.5) is None      # starts below the target
    assert snr_at(curve, 1e-4) is None     # drops to zero errors: no log interpolation
    assert snr_at(_curve([(0, 1000)]), 1e-2) is None
    with pytest.raises(UsageError):
        snr_at(curve, 0.0)
