"""Serial vs Ray workers on one CPU-bound BER sweep: the same counts, and the speed-up (issue 21).

The sweep: the example DetNet (``examples/models/detnet_8x16_qpsk.pt``) with ZF and MMSE
on the same draws, 8x16 QPSK, i.i.d. Rayleigh, perfect CSI, a fixed budget per SNR point
(``--symbols``; no early stop, so every run does the same work), seed 0. It is run

1. serially, in this process (what ``mimoc ber`` does with ``--workers 1``): detectors
   built here once;
2. on a local Ray with ``--workers`` CPUs (``mimoc ber --workers N``): the same call of
   :func:`mimoc.sim.ber.simulate` with :class:`mimoc.runtime.parallel.RayExecutor`,
   detectors rebuilt on the workers (long-lived Ray actors, one per CPU) from their specs.

The start-up is measured once and printed apart: Ray's start (``ray.init``) and the
first parallel run, whose workers start, import torch and load the model. Then serial
and warm parallel runs alternate (``--repeats`` pairs: serial, parallel, serial,
parallel, ...), so that a change in the machine's speed hits both alike; printed: each
pair, the medians, the speed-up of the medians (the issue's bar: at least 1.8x with 2
workers on 2 cores), the start-up-included speed-up of a single run, the driver's CPU
share, and whether every run's error and symbol counts are identical (they must be; the
script exits 1 if not). Run it on an otherwise idle machine: other load steals the
workers' CPUs (the load average is printed first).

Usage::

    python benchmarks/scale.py [--workers 2] [--symbols 400000] [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import ray
import torch

from mimoc.runtime.cpu import describe_cpu
from mimoc.runtime.parallel import (
    RayExecutor,
    build_detector,
    detector_specs,
    start_ray,
    stop_ray,
    worker_pool,
)
from mimoc.sim.ber import simulate
from mimoc.sim.system import MIMOSystem

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "examples" / "models" / "detnet_8x16_qpsk.pt"
SNR_GRID = (-4.0, -2.0, 0.0, 2.0, 4.0, 6.0)


def counts(result) -> dict:
    return {name: [(p.snr_db, p.symbols, p.errors, p.bit_errors, p.slots) for p in points]
            for name, points in result.curves.items()}


def timed(run):
    """(wall seconds, CPU seconds of this process, all its threads, result) of ``run()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--symbols", type=int, default=400_000,
                        help="symbols per SNR point (default 400000)")
    parser.add_argument("--batch", type=int, default=None,
                        help="slots per work unit (default: the engine's, about 16k symbols); "
                             "the same for the serial and the parallel runs")
    parser.add_argument("--repeats", type=int, default=3,
                        help="serial/parallel pairs after the start-up (default 3)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run (20000 symbols, 1 pair)")
    args = parser.parse_args()
    symbols, repeats = (20_000, 1) if args.quick else (args.symbols, args.repeats)
    torch.set_num_threads(1)

    system = MIMOSystem(nt=8, nr=16, modulation="qpsk")
    entries = ["zf", "mmse", str(MODEL)]
    settings = {"seed": 0, "max_symbols": symbols, "min_errors": 10**9,
                "batch_size": args.batch}
    print(f"CPU: {describe_cpu()}; {os.cpu_count()} logical CPUs; load average "
          f"{os.getloadavg()[0]:.2f} (should be near 0)")
    print(f"sweep: ZF, MMSE, DetNet ({MODEL.name}); 8x16 QPSK; SNR {list(SNR_GRID)} dB; "
          f"{symbols} symbols per point; seed 0; batch "
          f"{args.batch or 'the engine default'} slots")

    start = time.perf_counter()
    specs, files = detector_specs(entries, [None])
    detectors = {s.name: build_detector(s, system) for s in specs}
    t_load = time.perf_counter() - start
    names = dict.fromkeys(detectors)

    def serial():
        return simulate(detectors, system, SNR_GRID, **settings)

    def parallel():
        return simulate(names, system, SNR_GRID,
                        executor=RayExecutor(specs, system, files), **settings)

    t_init, _, _ = timed(lambda: start_ray(args.workers))
    try:
        t_first, _, first = timed(parallel)
        pool = worker_pool()
        nice = sorted({d["nice"] for d in ray.get([r.describe.remote() for r in pool])})
        pairs = []
        for _ in range(repeats):
            pairs.append((timed(serial), timed(parallel)))
    finally:
        stop_ray()

    print(f"start-up: loading the detectors here  {t_load:7.2f} s (serial runs need it once)")
    print(f"start-up: Ray (ray.init, {args.workers} CPUs)      {t_init:7.2f} s")
    print(f"start-up: first parallel run          {t_first:7.2f} s (workers start, import "
          "torch, load the model, then the sweep)")
    print(f"workers: {len(pool)} Ray actors, niceness {nice}")
    for k, ((t_s, _, _), (t_p, cpu_p, _)) in enumerate(pairs, 1):
        print(f"pair {k}: serial {t_s:7.2f} s, {args.workers} warm workers {t_p:7.2f} s, "
              f"{t_s / t_p:5.2f}x (driver CPU {100 * cpu_p / t_p:4.1f}% of a core)")
    med_s = statistics.median(t for (t, _, _), _ in pairs)
    med_p = statistics.median(t for _, (t, _, _) in pairs)
    print(f"median: serial {med_s:7.2f} s, {args.workers} warm workers {med_p:7.2f} s")
    print(f"speed-up, warm workers (medians):     {med_s / med_p:5.2f}x")
    print(f"speed-up, one run with start-up:      "
          f"{(t_load + med_s) / (t_init + t_first):5.2f}x (serial with its loading; "
          "parallel: ray.init and the first run)")
    results = [first, *(r for pair in pairs for (_, _, r) in pair)]
    same = all(counts(r) == counts(results[0]) for r in results)
    print(f"error and symbol counts identical in all {len(results)} runs: "
          f"{'yes' if same else 'NO'}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
