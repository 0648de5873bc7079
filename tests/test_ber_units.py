"""The engine's work units: each (SNR point, batch) is seeded by itself, so any executor
order gives the serial numbers (the property that makes `--workers N` equal serial)."""

from __future__ import annotations

import random

import pytest
import torch

from mimoc.sim.ber import InProcessExecutor, Unit, classical, point_seed, run_unit, simulate
from mimoc.sim.system import MIMOSystem


class ShuffledExecutor:
    """Keeps ``window`` units in flight and finishes them in a seeded random order, like
    workers that run ahead and finish out of order."""

    def __init__(self, detectors, system, window, seed):
        self.inner = InProcessExecutor(detectors, system)
        self.window, self.pending, self.rng = window, [], random.Random(seed)
        self.ran = 0

    def submit(self, unit):
        self.pending.append(unit)

    def wait(self):
        unit = self.pending.pop(self.rng.randrange(len(self.pending)))
        self.ran += 1
        return [(unit, run_unit(self.inner.detectors, self.inner.system, unit))]

    def cancel(self):
        self.pending.clear()


@pytest.fixture
def link():
    system = MIMOSystem(nt=2, nr=3, modulation="qpsk", slot=2)
    c = system.constellation
    return system, {"zf": classical("zf", c), "mmse": classical("mmse", c)}


@pytest.mark.parametrize("window", [2, 7])
def test_out_of_order_units_give_the_serial_counts_and_stop_at_the_same_batch(link, window):
    system, detectors = link
    kwargs = {"seed": 11, "max_symbols": 6_000, "min_errors": 40, "batch_size": 30}
    snrs = [0.0, 4.0, 9.0]  # 0 dB stops early, 9 dB spends its budget
    serial = simulate(detectors, system, snrs, **kwargs)
    executor = ShuffledExecutor(detectors, system, window, seed=window)
    shuffled = simulate(detectors, system, snrs, executor=executor, **kwargs)
    assert shuffled.to_dict() == serial.to_dict()
    assert serial.curves["zf"][0].symbols < 6_000  # the stopping rule did stop a point
    assert executor.ran >= serial.curves["zf"][0].slots // 30  # units beyond it were dropped


def test_a_unit_depends_on_its_seed_alone(link):
    system, detectors = link
    unit = Unit(point=5, snr_db=3.0, batch=2, slots=40, seed=point_seed(1, 3.0, 2))
    first = run_unit(detectors, system, unit)
    run_unit(detectors, system, Unit(0, 3.0, 0, 40, point_seed(1, 3.0, 0)))  # other work
    assert run_unit(detectors, system, unit) == first
    assert point_seed(1, 3.0, 2) != point_seed(1, 3.0, 3) != point_seed(1, 3.0)
    assert point_seed(1, 3.0, 2) == point_seed(1, 3, 2)


def test_a_detector_with_its_own_noise_is_reseeded_per_unit(link):
    system, _ = link
    calls = []

    def noisy(H, y, noise_var):
        return y[..., : 2 * system.nt] + torch.randn(y.shape[:-1] + (2 * system.nt,),
                                                     generator=generator)

    generator = torch.Generator()
    noisy.reseed = lambda seed: (calls.append(seed), generator.manual_seed(seed))
    unit = Unit(0, 2.0, 1, 20, point_seed(0, 2.0, 1))
    first = run_unit({"noisy": noisy}, system, unit)
    generator.manual_seed(12345)  # whatever state the previous unit left
    assert run_unit({"noisy": noisy}, system, unit) == first
    assert calls == [unit.seed, unit.seed]


def test_without_ray_a_parallel_run_is_one_line_naming_the_extra(monkeypatch, capsys):
    import sys

    from mimoc.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # what a missing package looks like
    assert main(["ber", "--detector", "zf", "--nt", "2", "--nr", "2", "--snr", "0",
                 "--max-symbols", "100", "--workers", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install -e '.[ray]'" in err
    # the default, one worker, needs no Ray
    assert main(["ber", "--detector", "zf", "--nt", "2", "--nr", "2", "--snr", "0",
                 "--max-symbols", "100", "--no-progress"]) == 0
