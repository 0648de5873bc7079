"""The pieces of a budget verdict, on constructed inputs with hand-written answers: the
verdict rule, tail percentiles, the receiver workload and capacities, and the SNR loss of a
detector whose true loss is known (ZF at 1 dB less SNR)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mimoc.sim.detectors import get_classical_detector
from mimoc.sim.system import MIMOSystem
from mimoc.studies.budget import Latency, Loss, Tail, TargetBudget, Workload, decide
from mimoc.studies.budget.accuracy import (
    crossing,
    find_crossing,
    grid_offsets,
    simulate_slots,
    snr_losses,
)
from mimoc.studies.budget.table import format_loss, verdict_text
from mimoc.studies.budget.timing import time_stages
from mimoc.studies.budget.workload import (
    flops_capacity,
    linear_capacity,
    sequential_capacity,
)

US = 1e-6
BUDGET = 100 * US


def row(latency_us: float, loss: tuple[float, float, float] | None, *, bound: bool = False,
        samples: np.ndarray | None = None, max_loss: float = 0.5,
        budget: float = BUDGET) -> TargetBudget:
    """A row whose every slot takes ``latency_us`` (or ``samples`` seconds), with SNR loss
    ``(value, lo, hi)`` in dB (``None``: not measured)."""
    tail = None
    if not bound:
        values = np.full(5000, latency_us * US) if samples is None else samples
        tail = Tail.of(values, budget, 99.9)
    lat = Latency(latency_us * US / 2, latency_us * US / 2, 14,
                  "flops" if bound else "measured", "constructed", vectors=14, tail=tail,
                  lower_bound=bound)
    measured = None if loss is None else Loss(loss[0], (loss[1], loss[2]), (-1.0, 2.5), 1000)
    return TargetBudget("t", "processor" if bound else "onnx-cpu", budget, lat,
                        loss=measured, max_loss_db=max_loss)


# -- the verdict ------------------------------------------------------------------------------

@pytest.mark.parametrize("latency_us, loss, verdict, missed", [
    (50, (0.1, 0.0, 0.3), "meets", []),
    (150, (0.1, 0.0, 0.3), "misses", ["latency"]),
    (50, (1.0, 0.8, 1.2), "misses", ["accuracy"]),
    (150, (1.0, 0.8, 1.2), "misses", ["latency", "accuracy"]),
    (50, (0.4, 0.2, 0.7), "unknown", []),          # the interval straddles 0.5 dB
    (50, (0.5, 0.5, 0.5), "meets", []),            # on the limit is within
    (100, (0.0, 0.0, 0.0), "meets", []),           # on the budget is within
    (50, None, "unknown", []),                     # --max-symbols 0
    (150, None, "misses", ["latency"]),            # a known miss needs no SER
    (50, (math.inf, math.inf, math.inf), "misses", ["accuracy"]),  # never reaches the SER
    (50, (-math.inf, -math.inf, -math.inf), "meets", []),          # better than the grid
    (50, (2.0, 0.3, math.inf), "unknown", []),
])
def test_measured_rows_get_the_verdict_written_by_hand(latency_us, loss, verdict, missed):
    r = row(latency_us, loss)
    assert (r.verdict, r.missed) == (verdict, missed)
    assert r.to_dict()["verdict"] == verdict and r.to_dict()["misses"] == missed
    assert verdict_text(r) == (verdict if verdict != "misses" else "misses: " +
                               "+".join(missed))


@pytest.mark.parametrize("latency_us, loss, verdict, missed", [
    (50, (0.0, 0.0, 0.0), "unknown", []),          # a lower bound within proves nothing
    (150, (0.0, 0.0, 0.0), "misses", ["latency"]),
    (150, (1.0, 0.8, 1.2), "misses", ["latency", "accuracy"]),
    (50, (1.0, 0.8, 1.2), "misses", ["accuracy"]),
])
def test_flops_rows_are_lower_bounds(latency_us, loss, verdict, missed):
    r = row(latency_us, loss, bound=True)
    assert (r.verdict, r.missed) == (verdict, missed)
    assert r.to_dict()["latency_is_lower_bound"] is True
    assert r.to_dict()["latency_percentile"] is None


@settings(max_examples=200, deadline=None)
@given(st.floats(1e-3, 1e6), st.floats(1e-3, 1e6), st.floats(-3, 3), st.floats(0, 2))
def test_no_flops_row_ever_meets(latency_us, budget_us, loss, width):
    r = row(latency_us, (loss, loss - width, loss + width), bound=True, budget=budget_us * US,
            max_loss=5.0)
    assert r.verdict != "meets"
    assert r.meets_budget is not True


def test_decide_names_what_missed():
    assert decide(True, True) == ("meets", [])
    assert decide(False, True) == ("misses", ["latency"])
    assert decide(True, False) == ("misses", ["accuracy"])
    assert decide(False, False) == ("misses", ["latency", "accuracy"])
    assert decide(None, True) == decide(True, None) == decide(None, None) == ("unknown", [])
    assert decide(None, False) == ("misses", ["accuracy"])


def test_a_deadline_is_not_a_median():
    # 99.8% of the slots take 50 us, the slowest 0.2% take 400 us: the median meets, p99.9
    # does not
    samples = np.full(5000, 50 * US)
    samples[:10] = 400 * US
    r = row(50, (0.0, 0.0, 0.0), samples=samples)
    assert r.latency.tail.at(50) == pytest.approx(50 * US)
    assert r.latency.tail.at(99.9) == pytest.approx(400 * US)
    assert r.latency.tail.miss_fraction == pytest.approx(10 / 5000)
    assert (r.verdict, r.missed) == ("misses", ["latency"])
    assert "p99.9 400 us exceeds" in r.verdict_reason
    assert r.margin_s == pytest.approx(-300 * US)


def test_too_few_calls_can_prove_a_miss_only():
    few = row(50, (0.0, 0.0, 0.0), samples=np.full(200, 50 * US))
    assert few.verdict == "unknown" and "too few for p99.9" in few.verdict_reason
    slow = np.full(200, 50 * US)
    slow[0] = 150 * US
    assert row(50, (0.0, 0.0, 0.0), samples=slow).missed == ["latency"]


def test_reasons_say_why():
    assert "straddles the 0.5 dB limit" in row(50, (0.4, 0.2, 0.7)).verdict_reason
    assert "not measured" in row(50, None).verdict_reason
    assert "beyond the grid (> 2.50 dB)" in row(50, (math.inf, math.inf, math.inf)
                                                ).verdict_reason
    assert "lower bound" in row(50, (0.0, 0.0, 0.0), bound=True).verdict_reason
    assert row(50, (0.1, 0.0, 0.3)).verdict_reason == ""


def test_loss_text_and_json():
    assert format_loss(row(50, (0.123, -0.05, 0.3))) == "0.12 [-0.05, 0.30]"
    assert format_loss(row(50, (math.inf, 3.0, math.inf))) == "> 2.50 [3.00, > 2.50]"
    data = row(50, (math.inf, 3.0, math.inf)).to_dict()
    assert data["snr_loss_db"] is None and data["snr_loss_ci_db"] == [3.0, None]
    assert data["snr_loss_beyond_grid"] == "above" and data["accuracy_within"] is False
    assert format_loss(row(50, None)) == ""


# -- tails ------------------------------------------------------------------------------------

def test_tail_percentiles_are_order_statistics():
    tail = Tail.of(np.arange(1, 1001) * US, 900.5 * US, 99.9)
    assert tail.at(50) == pytest.approx(501 * US)      # never interpolated below a sample
    assert tail.at(99) == pytest.approx(991 * US)
    assert tail.at(99.9) == pytest.approx(1000 * US)
    assert tail.miss_fraction == pytest.approx(0.1)
    assert tail.resolves(99.9) and not Tail.of(np.ones(999), 1.0, 99.9).resolves(99.9)
    assert set(tail.to_dict()) >= {"count", "p50_s", "p99_s", "p99.9_s", "max_s",
                                   "miss_fraction"}


def test_timing_makes_the_calls_and_respects_the_time_limit():
    calls = []
    times = time_stages([lambda: calls.append(1), lambda: None], calls=50, min_time=1e-6,
                        max_time=10.0, warmup=2)
    assert times.shape == (50, 2) and len(calls) == 52 and (times >= 0).all()
    import time

    slow = time_stages([lambda: time.sleep(0.01)], calls=10_000, min_time=1e-6, max_time=0.1,
                       warmup=0)
    assert 7 <= len(slow) < 30


# -- the workload -----------------------------------------------------------------------------

def test_workload_of_a_100_mhz_carrier():
    w = Workload(3276, 12, 14)
    assert (w.channels, w.symbols_per_channel, w.vectors) == (273, 168, 45_864)
    one = Workload(1)
    assert (one.channels, one.symbols_per_channel, one.vectors) == (1, 14, 14)
    partial = Workload(100, 12, 14)                   # 8 whole resource blocks and 4 more
    assert (partial.channels, partial.vectors) == (9, 9 * 168)
    with pytest.raises(Exception, match="subcarriers"):
        Workload(0)


def test_capacities_by_hand():
    # 2 us per channel, 5 us per subcarrier, 12 per channel, 100 us: one channel (62 us),
    # then 38 us left: 2 us for the next channel and 7 of its subcarriers (35 us)
    assert sequential_capacity(2 * US, 5 * US, 12, BUDGET) == 19
    assert sequential_capacity(120 * US, 5 * US, 12, BUDGET) == 0
    assert linear_capacity(Workload(1), 215 * US, BUDGET) == 0
    assert linear_capacity(Workload(12), 50 * US, BUDGET) == 24
    # 1,200 FLOPs per channel, 100 per vector, 14 vectors: 100 + 1400 per subcarrier;
    # 100 us at 1.5 GFLOP/s = 150,000 FLOPs -> 100 subcarriers
    assert flops_capacity(1200, 100, Workload(1), 1.5e9, BUDGET) == 100


# -- the SNR loss -----------------------------------------------------------------------------

def test_a_known_loss_is_found_with_its_interval():
    """ZF on y plus noise that lowers the SNR by exactly 1 dB loses 1 dB to plain ZF (over 30
    seeds the interval held 1 dB 29 times; one seed is run here)."""
    system = MIMOSystem(nt=2, nr=4, modulation="qpsk", slot=7)
    constellation = system.constellation
    zf = get_classical_detector("zf")
    generator = torch.Generator().manual_seed(111)

    def plain(H, y, n0):
        return zf(H, y, n0, constellation)

    def one_db_worse(H, y, n0):
        extra = n0 * (10 ** 0.1 - 1)  # complex variance; N0/2 per real component
        noise = torch.randn(y.shape, generator=generator) * (extra / 2).sqrt()[:, None, None]
        return zf(H, y + noise, n0, constellation)

    target = 1e-2
    center, search = find_crossing(plain, system, 4.0, target, seed=11, max_symbols=20_000)
    assert center is not None and search[0].snr_db == 4.0
    grid = simulate_slots({"zf": plain, "worse": one_db_worse}, system,
                          [round(center, 1) + o for o in grid_offsets(0.5)], seed=11,
                          max_symbols=60_000)
    assert all(g.errors["zf"].shape == (g.slots,) for g in grid)
    losses = snr_losses(grid, ["zf", "worse"], "zf", target, seed=11)
    assert losses["zf"].value_db == 0.0 and losses["zf"].ci_db == (0.0, 0.0)
    worse = losses["worse"]
    assert 0.6 < worse.value_db < 1.4
    assert worse.ci_db[0] < 1.0 < worse.ci_db[1] and worse.ci_db[0] > 0.3
    assert worse.replicates >= 950


def test_crossing_is_log_linear_and_says_where_it_leaves_the_grid():
    assert crossing([0, 10], [1e-1, 1e-3], [1000, 1000], 1e-2) == pytest.approx(5.0)
    assert crossing([0, 10], [1e-1, 1e-2], [1000, 1000], 1e-3) == math.inf
    assert crossing([0, 10], [1e-4, 1e-5], [10**6, 10**6], 1e-3) == -math.inf
    # no error at the upper point counts half an error: 0.5 / 1000
    assert crossing([0, 1], [1e-2, 0.0], [1000, 1000], 1e-3) == pytest.approx(
        (math.log10(1e-3) - math.log10(1e-2)) / (math.log10(5e-4) - math.log10(1e-2)))
    assert grid_offsets(0.5) == [-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0]
