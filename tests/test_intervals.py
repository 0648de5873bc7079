"""Cluster-robust error-rate intervals (mimoc/sim/stats.py) and how the BER engine
keeps and uses per-slot error statistics (mimoc/sim/ber.py, mimoc ber)."""

from __future__ import annotations

import math

import pytest
import torch
from json_docs import parse_output
from scipy.stats import t as student_t

from mimoc.cli import main
from mimoc.errors import UsageError
from mimoc.sim.ber import BERPoint, classical, point_seed, simulate
from mimoc.sim.stats import (
    SlotCounts,
    cluster_interval,
    design_effect,
    effective_trials,
    normal_quantile,
    ratio_variance,
    wilson_interval,
)
from mimoc.sim.system import MIMOSystem

NEVER = 10**9  # min_errors that is never reached


def counts_of(errors: list[int], trials: list[int]) -> SlotCounts:
    """Brute force: one ``add`` per slot, so slots may differ in size."""
    counts = SlotCounts()
    for e, n in zip(errors, trials, strict=True):
        counts = counts.add([e], n)
    return counts


# -- the statistics ------------------------------------------------------------

def test_delta_method_variance_by_hand_equal_slots():
    counts = SlotCounts().add([0, 2, 5, 1], trials_per_slot=10)
    # p = 8/40 = 0.2; e_i - p n_i = -2, 0, 3, -1; squares sum to 14; nbar = 10.
    assert counts.rate == 0.2
    assert ratio_variance(counts) == pytest.approx(14 / (4 * 3 * 10**2))
    deff = (14 / 1200) / (0.2 * 0.8 / 40)
    assert design_effect(counts) == pytest.approx(deff)
    # 3 slots with errors: the excess deff - 1 is inflated by (t_2 / z)^2 = 4.82, which
    # gives 40 / 10.24 = 3.91 effective trials, raised to the floor of one per slot.
    inflation = (student_t.ppf(0.975, 2) / 1.959963984540054) ** 2
    assert 40 / (1 + (deff - 1) * inflation) == pytest.approx(3.907, abs=1e-3)
    assert effective_trials(counts) == 4.0


def test_delta_method_variance_by_hand_unequal_slots():
    counts = counts_of([1, 4, 0, 3], [10, 20, 10, 20])
    # p = 8/60; residuals e_i - p n_i = -1/3, 4/3, -4/3, 1/3 -> sum of squares 34/9;
    # nbar = 15, m = 4.
    assert counts.rate == pytest.approx(8 / 60)
    assert ratio_variance(counts) == pytest.approx((34 / 9) / (4 * 3 * 15**2))


def test_interval_matches_the_delta_method_normal_interval_for_many_errors():
    generator = torch.Generator().manual_seed(4)
    # Bursty slots: a random per-slot error probability (a "channel"), 56 trials each.
    rates = torch.rand(5000, generator=generator) ** 4
    errors = torch.binomial(torch.full((5000,), 56.0), rates, generator=generator).long()
    counts = SlotCounts().add(errors, 56)
    lo, hi = cluster_interval(counts)
    half = normal_quantile(0.95) * math.sqrt(ratio_variance(counts))
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.01)
    assert lo < counts.rate < hi
    assert design_effect(counts) > 5  # and far wider than Wilson over the 280,000 trials
    wilson = wilson_interval(counts.errors, counts.trials)
    assert hi - lo > 2 * (wilson[1] - wilson[0])


def test_few_slots_with_errors_widen_the_interval_by_student_t():
    # 4 bursts among 2000 slots of 56: deff is estimated from 4 slots, so 3 degrees of freedom.
    counts = SlotCounts().add([2, 7, 4, 11] + [0] * 1996, 56)
    deff = design_effect(counts)
    inflation = (student_t.ppf(0.975, 3) / student_t.ppf(0.975, 10**9)) ** 2
    assert effective_trials(counts) == pytest.approx(counts.trials / (1 + (deff - 1) * inflation))
    assert 2000 < effective_trials(counts) < counts.trials / deff
    # The same bursts repeated 100 times: the correction fades (t_399 ~ z).
    many = SlotCounts().add([2, 7, 4, 11] * 100 + [0] * 199_600, 56)
    assert effective_trials(many) == pytest.approx(many.trials / design_effect(many), rel=0.02)


def test_one_trial_per_slot_is_exactly_wilson():
    # 0/1 slots: deff = m/(m-1) > 1, but a slot is worth at least one trial, so n_eff = N.
    m, k = 10_000, 120
    counts = SlotCounts().add([1] * k + [0] * (m - k), trials_per_slot=1)
    assert design_effect(counts) == pytest.approx(m / (m - 1))
    assert effective_trials(counts) == m
    assert cluster_interval(counts) == pytest.approx(wilson_interval(k, m), rel=1e-12)
    for few in (0, 1, 2, 5):
        sparse = SlotCounts().add([1] * few + [0] * (m - few), trials_per_slot=1)
        assert cluster_interval(sparse) == pytest.approx(wilson_interval(few, m), rel=1e-12)


def test_independent_errors_in_slots_give_about_wilson():
    generator = torch.Generator().manual_seed(1)
    errors = torch.binomial(torch.full((20_000,), 4.0), torch.full((20_000,), 0.05),
                            generator=generator).long()
    counts = SlotCounts().add(errors, 4)
    assert design_effect(counts) == pytest.approx(1.0, abs=0.05)
    lo, hi = cluster_interval(counts)
    w_lo, w_hi = wilson_interval(counts.errors, counts.trials)
    assert hi - lo == pytest.approx(w_hi - w_lo, rel=0.03)


def test_design_effect_is_at_least_one():
    # Exactly one error in every slot of 4: less spread than binomial, deff floored at 1.
    counts = SlotCounts().add([1] * 500, 4)
    assert ratio_variance(counts) == 0.0
    assert design_effect(counts) == 1.0
    assert cluster_interval(counts) == wilson_interval(500, 2000)


def test_zero_errors_bound_the_rate_by_the_slot_count():
    counts = SlotCounts().add([0] * 1000, 56)
    assert effective_trials(counts) == 1000
    assert math.isnan(design_effect(counts))
    z2 = normal_quantile(0.95) ** 2
    assert cluster_interval(counts) == (0.0, pytest.approx(z2 / (1000 + z2)))
    assert cluster_interval(counts) == wilson_interval(0, 1000)
    # ... which is meaningful (a small upper limit) and shrinks with more slots.
    assert cluster_interval(SlotCounts().add([0] * 4000, 56))[1] < cluster_interval(counts)[1]
    full = SlotCounts().add([56] * 1000, 56)
    assert cluster_interval(full) == (pytest.approx(1 - z2 / (1000 + z2)), 1.0)
    assert cluster_interval(SlotCounts()) == (0.0, 1.0)
    assert effective_trials(SlotCounts()) == 0.0
    # One slot with errors cannot show how errors cluster either: still one trial per slot,
    # and its upper bound lies above the zero-error one.
    one = SlotCounts().add([1] + [0] * 999, 56)
    assert effective_trials(one) == 1000
    assert cluster_interval(one)[1] > cluster_interval(counts)[1]


def test_a_single_slot_gives_no_variance_estimate():
    counts = SlotCounts().add([3], 10)
    assert ratio_variance(counts) == math.inf
    assert math.isnan(design_effect(counts))
    assert effective_trials(counts) == 1.0


def test_slot_counts_accumulate_across_batches_like_one_batch():
    generator = torch.Generator().manual_seed(2)
    errors = torch.randint(0, 9, (300,), generator=generator)
    whole = SlotCounts().add(errors, 8)
    batched = SlotCounts()
    for chunk in errors.split(37):
        batched = batched.add(chunk, 8)
    assert batched == whole
    assert SlotCounts().add(errors[:100], 8) + SlotCounts().add(errors[100:], 8) == whole
    assert whole == counts_of(errors.tolist(), [8] * 300)
    assert whole.error_slots == int((errors > 0).sum()) and whole.slots == 300
    with pytest.raises(UsageError):
        SlotCounts().add([9], 8)
    with pytest.raises(UsageError):
        SlotCounts().add([-1], 8)


# -- the engine's per-slot statistics ----------------------------------------------

def brute_force_slots(system: MIMOSystem, snr_db: float, seed: int, max_symbols: int,
                      batch_size: int) -> tuple[list[int], list[int]]:
    """Per-slot symbol and bit errors of ZF, every slot kept, replaying the engine's draws
    (batch k from a generator seeded by (seed, snr, k))."""
    zf = classical("zf", system.constellation)
    c = system.constellation
    per_slot = system.slot * system.nt
    symbol_errors, bit_errors = [], []
    sent = 0
    while sent < max_symbols:
        slots = min(batch_size, math.ceil((max_symbols - sent) / per_slot))
        generator = torch.Generator().manual_seed(point_seed(seed, snr_db, len(symbol_errors)
                                                             // batch_size))
        batch = system.sample(slots, snr_db, generator)
        decided = c.indices_of_real(zf(batch.H_est, batch.y, batch.noise_var))
        for b in range(slots):
            wrong = decided[b] != batch.indices[b]
            symbol_errors.append(int(wrong.sum()))
            bit_errors.append(int(c.bits_of_indices(decided[b] ^ batch.indices[b]).sum()))
        sent += slots * per_slot
    return symbol_errors, bit_errors


def test_engine_per_slot_statistics_match_a_brute_force_over_every_slot():
    system = MIMOSystem(nt=3, nr=3, modulation="16qam", slot=5)
    kwargs = {"seed": 9, "max_symbols": 4000, "batch_size": 7}  # last batch is partial
    point = simulate({"zf": classical("zf", system.constellation)}, system, [12.0],
                     min_errors=NEVER, **kwargs).curves["zf"][0]
    sym, bits = brute_force_slots(system, 12.0, kwargs["seed"], kwargs["max_symbols"],
                                  kwargs["batch_size"])
    sym_counts = counts_of(sym, [15] * len(sym))
    bit_counts = counts_of(bits, [60] * len(bits))
    assert point.slots == len(sym) == math.ceil(4000 / 15)
    assert (point.errors, point.bit_errors) == (sum(sym), sum(bits))
    assert point.error_slots == sum(e > 0 for e in sym)
    assert point == BERPoint.from_slot_counts(12.0, sym_counts, bit_counts)
    assert point.ser_ci == cluster_interval(sym_counts)
    assert point.effective_symbols == pytest.approx(effective_trials(sym_counts))
    assert point.effective_bits == pytest.approx(effective_trials(bit_counts))
    assert 1 < point.symbols / point.effective_symbols  # ZF errors cluster by channel


def test_measured_intervals_contain_the_wilson_interval():
    # deff >= 1, so n_eff <= N and the Wilson interval on n_eff nests the one on N.
    system = MIMOSystem(nt=4, nr=4, modulation="qpsk", slot=14)
    point = simulate({"zf": classical("zf", system.constellation)}, system, [10.0],
                     max_symbols=28_000, min_errors=NEVER).curves["zf"][0]
    for (lo, hi), (w_lo, w_hi) in ((point.ser_ci, wilson_interval(point.errors, point.symbols)),
                                   (point.ber_ci,
                                    wilson_interval(point.bit_errors, 2 * point.symbols))):
        assert lo <= w_lo < w_hi <= hi
    # The case: errors cluster so strongly that the interval is ~3x Wilson's.
    assert point.symbols / point.effective_symbols > 5


def test_from_counts_keeps_independent_symbol_wilson_intervals():
    point = BERPoint.from_counts(3.0, 10_000, 50, 60, 2)
    assert point.ser_ci == wilson_interval(50, 10_000)
    assert point.ber_ci == wilson_interval(60, 20_000)
    assert (point.slots, point.effective_symbols, point.effective_bits) == (10_000, 10_000, 20_000)


# -- the stopping rule -----------------------------------------------------------

class IdentityChannel:
    """``H = I`` every slot: at high SNR ZF makes no error."""

    spec = "identity"

    def sample(self, batch, nr, nt, generator=None, dtype=torch.complex64):
        return torch.eye(nr, nt, dtype=dtype).expand(batch, nr, nt).clone()


def one_bad_slot_detector(system: MIMOSystem):
    """ZF, except that every symbol of the very first slot comes out negated (wrong)."""
    zf = classical("zf", system.constellation)
    calls = []

    def detect(H, y, noise_var):
        x_hat = zf(H, y, noise_var)
        if not calls:
            x_hat = x_hat.clone()
            x_hat[0] = -x_hat[0]
        calls.append(1)
        return x_hat

    return detect


def test_min_error_slots_keeps_running_when_all_errors_come_from_one_slot():
    system = MIMOSystem(nt=4, nr=4, modulation="qpsk", slot=14, channel=IdentityChannel())
    kwargs = {"max_symbols": 56 * 200, "min_errors": 50, "batch_size": 10}
    fooled = simulate({"bad": one_bad_slot_detector(system)}, system, [40.0],
                      min_error_slots=1, **kwargs).curves["bad"][0]
    assert (fooled.errors, fooled.error_slots, fooled.slots) == (56, 1, 10)  # first batch
    kept = simulate({"bad": one_bad_slot_detector(system)}, system, [40.0],
                    **kwargs).curves["bad"][0]  # default: min(30, min_errors) slots
    assert (kept.errors, kept.error_slots, kept.slots) == (56, 1, 200)  # the whole budget
    # One slot, one effective error: the interval is that of 1 bad slot in 200, not that of
    # 56 independent errors, about 4x higher.
    assert kept.effective_symbols == pytest.approx(kept.symbols / 56, rel=0.01)
    assert kept.ser_ci == pytest.approx(wilson_interval(1, 200), rel=0.01)
    assert kept.ser_ci[1] > 4 * wilson_interval(56, kept.symbols)[1]


def test_min_error_slots_is_part_of_the_result_and_checked():
    system = MIMOSystem(nt=2, nr=2)
    det = {"zf": classical("zf", system.constellation)}
    assert simulate(det, system, [0.0], max_symbols=500).min_error_slots == 30
    assert simulate(det, system, [0.0], max_symbols=500, min_errors=5).min_error_slots == 5
    result = simulate(det, system, [0.0], max_symbols=500, min_error_slots=7)
    assert result.to_dict()["min_error_slots"] == 7
    for bad in (0, -1, 2.5):
        with pytest.raises(UsageError):
            simulate(det, system, [0.0], max_symbols=500, min_error_slots=bad)


# -- mimoc ber --------------------------------------------------------------------

def test_json_reports_slots_and_effective_sample_sizes(capsys):
    code = main(["ber", "--detector", "zf", "--nt", "2", "--nr", "2", "--slot", "3",
                 "--snr", "0,10", "--max-symbols", "3000", "--min-error-slots", "4",
                 "--json", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = parse_output("ber", out)
    assert data["min_error_slots"] == 4
    for p in data["curves"][0]["points"]:
        assert p["slots"] * 3 * 2 == p["symbols"]
        assert 0 < p["error_slots"] <= p["slots"]
        assert p["slots"] <= p["effective_symbols"] <= p["symbols"]
        assert 0 < p["effective_bits"] <= 2 * p["symbols"]
        assert {"ser", "ber", "ser_ci", "ber_ci", "errors", "bit_errors"} <= set(p)


def test_cli_rejects_a_bad_min_error_slots(capsys):
    code = main(["ber", "--detector", "zf", "--min-error-slots", "0", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.count("\n") == 1 and "--min-error-slots" in err
