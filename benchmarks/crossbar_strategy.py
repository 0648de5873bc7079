"""Channel-array programming strategies of the example DetNet on the three shipped devices
(issue 17).

The example DetNet (``examples/models/detnet_8x16_qpsk.pt``) is compiled once per device
(``ftj-luo2022``, ``rram-zeng2023``, ``fefet-jerry2017``; 128x128 arrays, 14-symbol slots)
and the strategy search (:func:`mimoc.studies.strategy.search_strategy`, what ``mimoc
compile --target crossbar --budget-us 100 --max-loss-db 0.5`` runs) plans every default
candidate (:data:`mimoc.studies.strategy.DEFAULT_CANDIDATES`) and simulates those within
the slot budget in the IMC simulator at the device's own C2C, against the same program on
the ideal device, all on the same seeded slots (one grid of SNRs around the ideal device's
crossing of SER 1e-3; slot-paired bootstrap intervals). Each row: the strategy, the
expected and p99 slot latency, channel programming time, area (cells) and energy proxy
(pulses + verify reads; ``mimoc.hardware.energy`` when present), and the SNR loss with
its 95% interval.

Usage::

    python benchmarks/crossbar_strategy.py [--device ftj-luo2022] [--symbols 100000]
        [--quick] [--workers N] [--json out.json]

``--quick``: a quarter of the symbols per SNR point (a check that it runs, not a result).
``--workers N`` runs the Monte Carlo on N local Ray workers (the Ray extra): every
candidate goes to them as its artifact's files, and the numbers printed are those of the
serial run (its timings aside).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "examples" / "models" / "detnet_8x16_qpsk.pt"
DEVICES = ("ftj-luo2022", "rram-zeng2023", "fefet-jerry2017")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_device(device_name: str, symbols: int, budget_us: float, max_loss_db: float,
               target_ser: float, workers: int = 1) -> dict:
    from mimoc import driver
    from mimoc.commands.crossbar_view import table
    from mimoc.commands.strategy_search import frontier_rows
    from mimoc.hardware.devices import load_device
    from mimoc.studies.strategy import search_strategy

    device = load_device(device_name)
    start, cpu0 = time.time(), cpu_seconds()
    built = driver.compile(str(MODEL), target="crossbar", device=device_name).artifact
    compiled = time.time() - start
    found = search_strategy(built, device, budget_s=budget_us * 1e-6,
                            max_loss_db=max_loss_db, target_ser=target_ser,
                            max_symbols=symbols, strict=False, workers=workers,
                            say=lambda text: print(f"  [{time.time() - start:6.0f} s] {text}",
                                                   file=sys.stderr, flush=True))
    record = found.built.schedule["strategy_search"]
    elapsed, cpu = time.time() - start, cpu_seconds() - cpu0
    print(f"\n{device_name}: C2C {device.c2c_potentiation:.2%}/{device.c2c_depression:.2%}, "
          f"{device.states} states, pulse {device.pulse_width_s * 1e9:g} ns; ideal device "
          f"crosses SER {target_ser:g} near {record.get('center_db')} dB; grid "
          f"{record.get('grid_db')} dB, {record.get('slots_per_point')} slots of 14 "
          f"symbols per point")
    print("\n".join(table(frontier_rows(record), right={1, 2, 3, 4, 5})))
    print(f"chosen: {record['chosen']} (feasible: {record['feasible']}); compile "
          f"{compiled:.1f} s, all {elapsed:.0f} s wall, {cpu:.0f} s CPU", flush=True)
    return {"device": device_name, "wall_s": elapsed, "cpu_s": cpu, **record}


def main() -> int:
    from mimoc.runtime.cpu import describe_cpu

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", action="append", choices=DEVICES,
                        help="device (repeat; default all three)")
    parser.add_argument("--symbols", type=int, default=100_000,
                        help="most scalar symbols per SNR point (default 100000)")
    parser.add_argument("--budget-us", type=float, default=100.0)
    parser.add_argument("--max-loss-db", type=float, default=0.5)
    parser.add_argument("--target-ser", type=float, default=1e-3)
    parser.add_argument("--quick", action="store_true",
                        help="a quarter of --symbols per SNR point")
    parser.add_argument("--workers", type=int, default=1,
                        help="local Ray workers for the Monte Carlo (default 1: here)")
    parser.add_argument("--json", default=None, help="write the frontiers as JSON here")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    symbols = args.symbols // (4 if args.quick else 1)
    where = f"{args.workers} Ray workers" if args.workers > 1 else "1 thread"
    print(f"CPU: {describe_cpu()}; torch {torch.__version__}, {where}")
    started = False
    if args.workers > 1:  # one local Ray for every device (the search reuses it)
        from mimoc.runtime.parallel import start_ray

        started = start_ray(args.workers)
    try:
        results = [run_device(d, symbols, args.budget_us, args.max_loss_db, args.target_ser,
                              args.workers) for d in (args.device or DEVICES)]
    finally:
        if started:
            from mimoc.runtime.parallel import stop_ray

            stop_ray()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
