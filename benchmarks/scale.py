"""Serial vs Ray workers on one CPU-bound BER sweep: the same counts, and the speed-up (issue 21).

The sweep: the example DetNet (``examples/models/detnet_8x16_qpsk.pt``) with ZF and MMSE
on the same draws, 8x16 QPSK, i.i.d. Rayleigh, perfect CSI, a fixed budget per SNR point
(``--symbols``; no early stop, so every run does the same work), seed 0. It is run

1. serially, in this process (``mimoc ber`` with ``--workers 1``): detectors built here;
2. on a local Ray with ``--workers`` CPUs (``mimoc ber --workers N``): detectors rebuilt
   on the workers from their specs (``mimoc.runtime.parallel``).

Printed: the CPU, Ray's start-up (``ray.init``), the workers' warm-up (the first
parallel run: worker processes importing torch and loading the model), the steady
parallel time (a second run on the warm workers), the serial time (detectors already
loaded; their loading is printed apart), the speed-ups, and
whether the error and symbol counts are identical (they must be). Run it on an otherwise
idle machine: other load steals the workers' CPUs.

Usage::

    python benchmarks/scale.py [--workers 2] [--symbols 400000] [--quick]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from mimoc.runtime.cpu import describe_cpu
from mimoc.runtime.parallel import RayExecutor, build_detector, detector_specs, start_ray, stop_ray
from mimoc.sim.ber import simulate
from mimoc.sim.system import MIMOSystem

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "examples" / "models" / "detnet_8x16_qpsk.pt"
SNR_GRID = (-4.0, -2.0, 0.0, 2.0, 4.0, 6.0)


def counts(result) -> dict:
    return {name: [(p.snr_db, p.symbols, p.errors, p.bit_errors, p.slots) for p in points]
            for name, points in result.curves.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--symbols", type=int, default=400_000,
                        help="symbols per SNR point (default 400000)")
    parser.add_argument("--batch", type=int, default=None,
                        help="slots per work unit (default: the engine's, about 16k symbols); "
                             "the same for the serial and the parallel runs")
    parser.add_argument("--quick", action="store_true", help="a smoke run (20000 symbols)")
    args = parser.parse_args()
    symbols = 20_000 if args.quick else args.symbols
    torch.set_num_threads(1)

    system = MIMOSystem(nt=8, nr=16, modulation="qpsk")
    entries = ["zf", "mmse", str(MODEL)]
    settings = {"seed": 0, "max_symbols": symbols, "min_errors": 10**9,
                "batch_size": args.batch}
    print(f"CPU: {describe_cpu()}")
    print(f"sweep: ZF, MMSE, DetNet ({MODEL.name}); 8x16 QPSK; SNR {list(SNR_GRID)} dB; "
          f"{symbols} symbols per point; seed 0; batch "
          f"{args.batch or 'the engine default'} slots")

    start = time.perf_counter()
    specs, files = detector_specs(entries, [None])
    detectors = {s.name: build_detector(s, system) for s in specs}
    t_load = time.perf_counter() - start
    start = time.perf_counter()
    serial = simulate(detectors, system, SNR_GRID, **settings)
    t_serial = time.perf_counter() - start
    print(f"serial: loading the detectors:  {t_load:7.2f} s")
    print(f"serial (1 process, 1 thread):   {t_serial:7.2f} s")

    start = time.perf_counter()
    start_ray(args.workers)
    t_init = time.perf_counter() - start
    try:
        runs = []
        for _ in range(2):
            start = time.perf_counter()
            result = simulate(dict.fromkeys(detectors), system, SNR_GRID,
                              executor=RayExecutor(specs, system, files), **settings)
            runs.append((time.perf_counter() - start, result))
    finally:
        stop_ray()
    (t_cold, cold), (t_warm, warm) = runs
    print(f"Ray start-up (ray.init, {args.workers} CPUs): {t_init:7.2f} s")
    print(f"{args.workers} workers, first run:        {t_cold:7.2f} s "
          "(workers start, import torch, load the model)")
    print(f"{args.workers} workers, warm run:         {t_warm:7.2f} s")
    print(f"speed-up, warm workers:         {t_serial / t_warm:7.2f}x")
    print(f"speed-up, first run:            {t_serial / t_cold:7.2f}x")
    print(f"speed-up, start-up included:    "
          f"{(t_load + t_serial) / (t_init + t_cold):7.2f}x (serial with its loading)")
    same = counts(cold) == counts(serial) == counts(warm)
    print(f"error and symbol counts identical to serial: {'yes' if same else 'NO'}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
