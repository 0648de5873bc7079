"""Throughput of the classical detectors, in symbol vectors (detections) per second.

For each system (4x8 QPSK and 16x32 QPSK by default, i.i.d. Rayleigh, per-stream
SNR) and each registry detector, it draws one fixed batch of slots, runs the
detector once to warm up and then ``--repeats`` times, and reports the median
of ``B * S / seconds``. Exhaustive ML is skipped (``n/a``) where its candidate
set ``M^Nt`` exceeds the ML limit. Both ``S = 1`` (one symbol per channel,
every detection pays the slot-rate work) and ``S = 14`` (a 5G NR slot) are
measured.

Usage::

    python benchmarks/detector_throughput.py [--threads 1] [--snr 10] [--repeats 5] [--json]

The machine may be shared: medians damp, but do not remove, interference from
other processes.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from mimoc.sim.detectors import CLASSICAL_DETECTORS
from mimoc.sim.detectors.ml import ML_MAX_CANDIDATES, candidate_count
from mimoc.sim.system import MIMOSystem

SYSTEMS = [(4, 8, "qpsk"), (16, 32, "qpsk")]
DETECTORS = ["zf", "mmse", "mmse-sic", "amp", "kbest", "sd", "ml"]
# Symbol vectors per timed call: large enough for stable GEMM timings, small enough to be quick.
VECTORS = {(4, 8): 20_000, (16, 32): 4_000}


def measure(detect, batch, constellation, repeats: int) -> float:
    """Median symbol vectors per second of ``detect`` on ``batch``."""
    vectors = batch.y.shape[0] * batch.y.shape[1]
    detect(batch.H_est, batch.y, batch.noise_var, constellation)  # warm-up (caches, allocator)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        detect(batch.H_est, batch.y, batch.noise_var, constellation)
        rates.append(vectors / (time.perf_counter() - start))
    return statistics.median(rates)


def run(snr_db: float, repeats: int, slots: tuple[int, ...], seed: int = 0) -> list[dict]:
    rows = []
    for nt, nr, modulation in SYSTEMS:
        for slot in slots:
            system = MIMOSystem(nt, nr, modulation, slot=slot)
            batch = system.sample(VECTORS[(nt, nr)] // slot, snr_db,
                                  torch.Generator().manual_seed(seed))
            constellation = system.constellation
            for name in DETECTORS:
                row = {"system": f"{nt}x{nr} {modulation}", "slot": slot, "detector": name}
                count = candidate_count(constellation, nt)
                if name == "ml" and count > ML_MAX_CANDIDATES:
                    row["vectors_per_s"] = None
                    row["note"] = f"n/a (M^Nt = {constellation.order}^{nt} = {count:.3g})"
                else:
                    row["vectors_per_s"] = measure(CLASSICAL_DETECTORS[name], batch,
                                                   constellation, repeats)
                rows.append(row)
    return rows


def table(rows: list[dict], slots: tuple[int, ...]) -> str:
    header = "| system | detector | " + " | ".join(f"S={s} (vectors/s)" for s in slots) + " |"
    lines = [header, "|" + "---|" * (2 + len(slots))]
    keys = list(dict.fromkeys((r["system"], r["detector"]) for r in rows))
    for system, detector in keys:
        cells = []
        for slot in slots:
            (row,) = [r for r in rows if (r["system"], r["detector"], r["slot"])
                      == (system, detector, slot)]
            rate = row["vectors_per_s"]
            cells.append(row["note"] if rate is None else f"{rate:,.0f}")
        lines.append(f"| {system} | {detector} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1 avoids oversubscribing a shared machine)")
    parser.add_argument("--snr", type=float, default=10.0, help="per-stream SNR in dB")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per cell (median)")
    parser.add_argument("--slots", default="1,14", help="symbols per slot to measure")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    slots = tuple(int(s) for s in args.slots.split(","))
    rows = run(args.snr, args.repeats, slots)
    meta = {"threads": args.threads, "snr_db": args.snr, "snr_def": "per-stream",
            "channel": "rayleigh", "repeats": args.repeats, "torch": torch.__version__,
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip()}
    if args.json:
        print(json.dumps({"meta": meta, "rows": rows}))
        return
    print(f"# classical detector throughput, {meta}")
    print(table(rows, slots))
    ml_rates = [r["vectors_per_s"] for r in rows
                if r["system"] == "4x8 qpsk" and r["detector"] == "ml"]
    verdict = "reaches" if min(ml_rates) >= 100_000 else "does NOT reach"
    print(f"\nexhaustive ML on 4x8 QPSK {verdict} 100,000 vectors/s "
          f"(min over S: {min(ml_rates):,.0f})")


if __name__ == "__main__":
    main()
