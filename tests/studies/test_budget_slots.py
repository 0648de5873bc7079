"""The per-slot grid of the budget's accuracy (simulate_slots): the units of simulate, seeded
per batch, whatever executor runs them."""

from __future__ import annotations

import numpy as np
import pytest

from mimoc.sim.ber import InProcessExecutor, Unit, classical, point_seed, run_unit, simulate
from mimoc.sim.system import MIMOSystem
from mimoc.studies.budget.accuracy import TARGET_SYMBOLS_PER_BATCH, simulate_slots

SYSTEM = MIMOSystem(nt=2, nr=4, modulation="qpsk", slot=7)
SNRS = [0.0, 6.0, 14.0]  # the first stops on its errors, the last spends its budget
SETTINGS = {"seed": 3, "max_symbols": 40_000, "min_errors": 200}


def _detectors():
    c = SYSTEM.constellation
    return {"zf": classical("zf", c), "mmse": classical("mmse", c)}


def _assert_same_slots(a, b):
    assert [g.snr_db for g in a] == [g.snr_db for g in b]
    for x, y in zip(a, b, strict=True):
        assert x.errors.keys() == y.errors.keys()
        for name in x.errors:
            np.testing.assert_array_equal(x.errors[name], y.errors[name])
            np.testing.assert_array_equal(x.bit_errors[name], y.bit_errors[name])


def test_the_slots_are_simulates_draws_under_the_same_stopping_rule():
    said = []
    grid = simulate_slots(_detectors(), SYSTEM, SNRS, say=said.append, **SETTINGS)
    assert said == [f"simulating the SER at {s:g} dB" for s in SNRS]
    # one rule for all detectors: a point ends on min_errors errors alone
    counts = simulate(_detectors(), SYSTEM, SNRS, min_error_slots=1, **SETTINGS)
    for p, g in enumerate(grid):
        for name in g.errors:
            assert g.point(name) == counts.curves[name][p]
    per_slot = SYSTEM.slot * SYSTEM.nt
    budget = -(-SETTINGS["max_symbols"] // per_slot)
    assert grid[0].slots < budget and all(e.sum() >= 200 for e in grid[0].errors.values())
    assert grid[-1].slots == budget and grid[-1].errors["zf"].sum() < 200
    # batch 0 of a point is drawn from point_seed(seed, snr, 0), TARGET_SYMBOLS_PER_BATCH
    # symbols of it: the first slots of the grid are that unit's, slot by slot
    batch = TARGET_SYMBOLS_PER_BATCH // per_slot
    unit = Unit(1, SNRS[1], 0, batch, point_seed(SETTINGS["seed"], SNRS[1], 0),
                keep_slots=True)
    first = run_unit(_detectors(), SYSTEM, unit)
    for name, result in first.items():
        np.testing.assert_array_equal(grid[1].errors[name][:batch], result.slot_errors[0])
        np.testing.assert_array_equal(grid[1].bit_errors[name][:batch], result.slot_errors[1])
        assert result.symbols.errors == int(result.slot_errors[0].sum())


@pytest.mark.parametrize("window", [2, 5])
def test_an_executor_running_ahead_gives_the_serial_slots(window):
    serial = simulate_slots(_detectors(), SYSTEM, SNRS, **SETTINGS)
    executor = InProcessExecutor(_detectors(), SYSTEM)
    executor.window = window  # units of later points and past a point's stop run ahead
    ran = []
    wait = executor.wait

    def counting_wait():
        done = wait()
        ran.extend(unit for unit, _ in done)
        return done

    executor.wait = counting_wait
    ahead = simulate_slots(dict.fromkeys(_detectors()), SYSTEM, SNRS, executor=executor,
                           **SETTINGS)
    _assert_same_slots(serial, ahead)
    assert all(unit.keep_slots for unit in ran)
    batch = TARGET_SYMBOLS_PER_BATCH // (SYSTEM.slot * SYSTEM.nt)
    consumed = sum(-(-g.slots // batch) for g in serial)
    assert len(ran) > consumed  # some ran past a stop and were dropped


def test_a_sum_of_unit_results_keeps_slots_only_when_both_have_them():
    unit = Unit(0, 4.0, 0, 5, 17, keep_slots=True)
    a = run_unit(_detectors(), SYSTEM, unit)["zf"]
    b = run_unit(_detectors(), SYSTEM, Unit(0, 4.0, 1, 3, 18, keep_slots=True))["zf"]
    both = a + b
    assert [len(part) for part in both.slot_errors] == [8, 8]
    np.testing.assert_array_equal(both.slot_errors[0], np.concatenate([a.slot_errors[0],
                                                                       b.slot_errors[0]]))
    assert both.symbols.errors == int(both.slot_errors[0].sum())
    plain = run_unit(_detectors(), SYSTEM, Unit(0, 4.0, 0, 5, 17))["zf"]
    assert plain.slot_errors is None and (a + plain).slot_errors is None
    assert plain.symbols == a.symbols  # the same draws either way


@pytest.mark.slow
def test_ray_workers_give_the_serial_slots():
    pytest.importorskip("ray")
    from mimoc.runtime.parallel import RayExecutor, detector_specs, start_ray, stop_ray

    serial = simulate_slots(_detectors(), SYSTEM, SNRS, **SETTINGS)
    started = start_ray(workers=2)
    try:
        specs, files = detector_specs(["zf", "mmse"], [None])
        parallel = simulate_slots(dict.fromkeys(_detectors()), SYSTEM, SNRS,
                                  executor=RayExecutor(specs, SYSTEM, files), **SETTINGS)
    finally:
        if started:
            stop_ray()
    _assert_same_slots(serial, parallel)
