"""Benchmark: is SDNet's KAQ-vs-LSQ gap seed noise or the method? (issue 5, seed study)

Trains LSQ, KAQ with a constant lambda 0.02 and KAQ with lambda 0.02 decaying to 0 on a
cosine (the shipped SDNet KAQ's settings; all 400 steps, lr 1e-4) from the example SDNet at
several seeds, plus two single-seed controls that separate KAQ's two parts (dynamic steps
without the MMD term; static steps with the constant MMD term), then scores every model and
fp32 on one common test set (same draws for all, a different simulation seed from
kaq_accuracy.py) and prints each model's SNR at SER 1e-2 and its gap to fp32.

Run from the repository root (one thread; about 15 minutes of training and 10 of
simulation on a quiet core; ``--only cosine`` trains only the variants whose name holds
"cosine")::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/kaq_seeds.py [--seeds 3] [--only TEXT] [--quick]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from kaq_accuracy import crossing, fmt

from mimoc.detectors.checkpoint import load_checkpoint
from mimoc.quant import QuantizedDetector, options_from_training, quantize
from mimoc.sim.ber import from_module, simulate

MODEL = Path(__file__).resolve().parents[1] / "examples" / "models" / "sdnet_8x32_qpsk.pt"
GRID = (6, 8, 10, 12)
TARGET = 1e-2
TEST_SEED = 11


def variants(seeds: int) -> dict[str, dict]:
    """name -> quantize() arguments."""
    runs = {}
    for seed in range(seeds):
        runs[f"lsq s{seed}"] = dict(method="lsq", seed=seed)
        runs[f"kaq s{seed}"] = dict(method="kaq", lam=0.02, seed=seed)
        runs[f"kaq cosine s{seed}"] = dict(method="kaq", lam=0.02, lam_schedule="cosine",
                                           seed=seed)
    runs["dynamic, lambda 0 s0"] = dict(method="kaq", lam=0.0, seed=0)
    runs["static + MMD s0"] = dict(method="kaq", lam=0.02, act_mode="static", seed=0)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", default="", metavar="TEXT",
                        help="train only the variants whose name contains TEXT")
    parser.add_argument("--quick", action="store_true", help="20 steps, 8,000 symbols")
    args = parser.parse_args()
    torch.set_num_threads(1)
    checkpoint = load_checkpoint(MODEL)
    model = checkpoint.model
    options = options_from_training(checkpoint.training)
    steps, symbols = (20, 8_000) if args.quick else (400, 120_000)
    detectors = {"fp32": model}
    for name, kwargs in variants(args.seeds).items():
        if args.only not in name:
            continue
        start = time.perf_counter()
        student = load_checkpoint(MODEL).model  # QAT fine-tunes in place: a fresh copy each
        recipe = quantize(student, bits=4, steps=steps, lr=1e-4, options=options, **kwargs)
        detectors[name] = QuantizedDetector(student, recipe).eval()
        print(f"trained {name}: validation SER {recipe.info['val_ser']:.4%} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
    result = simulate({k: from_module(m) for k, m in detectors.items()},
                      options.system(model), GRID, seed=TEST_SEED, max_symbols=symbols,
                      min_errors=10**9)
    print(f"\nSNR at SER {TARGET:g}, {symbols} symbols per point at "
          + ", ".join(f"{s:g}" for s in GRID) + " dB, same draws for all")
    ref = crossing(result.curves["fp32"], TARGET)[0]
    for name, points in result.curves.items():
        snr, lo, hi = crossing(points, TARGET)
        gap = None if snr is None or ref is None else snr - ref
        print(f"  {name:22s} {fmt(snr)} dB [{fmt(lo)}, {fmt(hi)}]  gap {fmt(gap, '+.2f')}  "
              + " ".join(f"{p.ser:.3e}" for p in points))


if __name__ == "__main__":
    main()
