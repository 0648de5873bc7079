"""Ray runs (`--workers`, `mimoc sweep`): the counts equal a serial run's, and a unit whose
worker dies is rerun with the same counts. One local Ray (2 CPUs) serves the module."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import ray

from mimoc.cli import main
from mimoc.runtime.parallel import (
    DetectorSpec,
    RayExecutor,
    build_detector,
    detector_specs,
    start_ray,
    worker_pool,
)
from mimoc.sim.ber import simulate
from mimoc.sim.system import MIMOSystem
from mimoc.studies.sweep import load_spec, run_sweep

# Ray's start-up and its workers' first imports take ~10 s: CI runs these (-m "slow or not slow")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
DETNET = str(ROOT / "examples" / "models" / "detnet_8x16_qpsk.pt")
SETTINGS = {"seed": 2, "max_symbols": 12_000, "min_errors": 40, "batch_size": 60}


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    # tests/ importable on the workers too: the dying detector lives there
    path = os.pathsep.join([str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])
    assert start_ray(workers=2, env={"PYTHONPATH": path})
    assert not start_ray(workers=2)  # an initialised Ray is reused, not restarted
    yield
    ray.shutdown()


def test_two_workers_give_the_serial_counts_of_classical_and_trained_detectors():
    system = MIMOSystem(nt=8, nr=16, modulation="qpsk")
    specs, files = detector_specs(["zf", "mmse", DETNET], [None])
    serial = simulate({s.name: build_detector(s, system) for s in specs}, system,
                      [-2.0, 2.0, 6.0], **SETTINGS)
    parallel = simulate(dict.fromkeys(s.name for s in specs), system, [-2.0, 2.0, 6.0],
                        executor=RayExecutor(specs, system, files), **SETTINGS)
    assert parallel.to_dict() == serial.to_dict()
    assert serial.curves["zf"][0].symbols < SETTINGS["max_symbols"]  # a point stopped early


def test_short_units_go_several_to_a_call_with_the_serial_counts():
    system = MIMOSystem(nt=2, nr=4, modulation="qpsk")
    settings = {**SETTINGS, "batch_size": 4}  # units of a fraction of a millisecond
    specs, _ = detector_specs(["zf", "mmse"], [None])
    executor = RayExecutor(specs, system)
    parallel = simulate(dict.fromkeys(s.name for s in specs), system, [0.0, 10.0, 20.0],
                        executor=executor, **settings)
    assert executor.units_per_call > 1 and executor.window > 2 * executor.units_per_call
    serial = simulate({s.name: build_detector(s, system) for s in specs}, system,
                      [0.0, 10.0, 20.0], **settings)
    assert parallel.to_dict() == serial.to_dict()
    assert serial.curves["zf"][0].symbols < settings["max_symbols"]  # a point stopped early


def test_a_unit_whose_worker_dies_is_rerun_with_the_same_counts(tmp_path):
    system = MIMOSystem(nt=2, nr=4, modulation="qpsk")
    marker = tmp_path / "died"
    dying = DetectorSpec("mmse", "callable", "dying_detector:dying_mmse",
                         options=(("marker", str(marker)),))
    parallel = simulate({"mmse": None}, system, [0.0, 4.0],
                        executor=RayExecutor([dying], system), **SETTINGS)
    assert marker.exists()  # a worker did die
    serial = simulate({"mmse": build_detector(DetectorSpec("mmse", "classical", "mmse"),
                                              system)}, system, [0.0, 4.0], **SETTINGS)
    assert parallel.to_dict() == serial.to_dict()


def test_cli_workers_and_a_sweep_on_ray_equal_their_serial_runs(tmp_path, capsys):
    flags = ["ber", "--detector", "zf,mmse", "--nt", "2", "--nr", "3", "--snr", "0:3:9",
             "--max-symbols", "6000", "--min-errors", "30", "--batch", "50", "--json",
             "--no-progress"]
    assert main(flags) == 0
    serial = json.loads(capsys.readouterr().out)
    assert main([*flags, "--workers", "2"]) == 0
    on_workers = json.loads(capsys.readouterr().out)
    # everything but the recorded command line
    assert on_workers.pop("command")[-2:] == ["--workers", "2"]
    serial.pop("command")
    assert on_workers == serial

    sweep = tmp_path / "sweep.toml"
    sweep.write_text('detectors = ["zf", "mmse"]\nsnr = "0:3:9"\n[link]\nnt = 2\nnr = 3\n'
                     "slot = 14\n[run]\nmax_symbols = 6000\nmin_errors = 30\nbatch = 50\n")
    spec = load_spec(sweep)
    on_ray = run_sweep(spec, tmp_path / "ray", workers=2, plots=False)
    assert on_ray == run_sweep(spec, tmp_path / "serial", workers=1, plots=False)
    assert on_ray["jobs"][0]["result"]["curves"] == serial["curves"]


def test_a_file_a_worker_cannot_load_is_its_one_line_error(tmp_path):
    from mimoc.errors import MimocError

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    system = MIMOSystem(nt=2, nr=4, modulation="qpsk")
    specs, files = detector_specs([str(bad)], [None])
    with pytest.raises(MimocError) as caught:
        simulate({str(bad): None}, system, [0.0], executor=RayExecutor(specs, system, files),
                 **SETTINGS)
    assert "\n" not in str(caught.value) and "checkpoint" in str(caught.value)


def test_the_runners_outlive_an_executor_and_run_one_thread_each():
    pool = worker_pool()
    assert len(pool) == 2 and worker_pool() == pool  # one per CPU, kept for the session
    system = MIMOSystem(nt=2, nr=4, modulation="qpsk")
    specs, _ = detector_specs(["zf"], [None])
    simulate({"zf": None}, system, [0.0], executor=RayExecutor(specs, system), **SETTINGS)
    described = ray.get([runner.describe.remote() for runner in pool])
    assert [(d["omp_threads"], d["torch_threads"]) for d in described] == [("1", 1)] * 2
    assert len({d["pid"] for d in described}) == 2
