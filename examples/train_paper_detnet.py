"""Train DetNet and the WeSNet family at the papers' own configurations (issue 22).

Models (file names in ``--out``, default ``examples/models/``):

- ``detnet-20x30-qpsk`` -> ``detnet_20x30_qpsk.pt``: 20 users, 30 receive antennas, QPSK
  (real dimension 2K = 40), L = 30 blocks, hidden 4 x 2K = 160, v 2K = 40, residual 0.9;
- ``detnet-30x60-bpsk`` -> ``detnet_30x60_bpsk.pt``: the DetNet and WeSNet papers' real
  30x60 BPSK system, L = 90, hidden 8K = 240, v 2K = 60, residual 0.9;
- ``wesnet-hf50-30x60-bpsk``: WeSNet-HF-50% of the same size (half-exponential profile,
  half of the hidden units kept);
- ``lwesnet-hf50-30x60-bpsk``: L-WeSNet-50% (a learnable monotone profile per block);
- ``rwesnet-30x60-bpsk``: R-WeSNet (profile over all units, log-L1 penalty), for layer removal.

Link as in the authors' generator: i.i.d. N(0, 1) channel entries, symbols of unit energy per
real dimension, the ``detnet`` SNR convention (noise from ``tr(H^T H)``), training SNR uniform
in ``--snr-train`` (default 7-14 dB as the published DetNet code; the WeSNet paper uses 8-14).

Training budget. The authors train 20000-25000 steps of 5000 samples on a GPU or for 17-19 hours
on a desktop CPU; these defaults fit a shared 2-core machine (``--steps`` x ``--batch`` is the
budget, stated in every checkpoint). Training runs in stages of ``--stage-steps``; after each
stage the checkpoint is written (atomically), so an interrupted run continues with ``--resume``
and a finished one can be extended with a larger ``--steps``. The learning rate follows one
cosine from ``--lr`` to ``--lr * 0.05`` over ``--steps``, each stage taking its segment of that
cosine; Adam's moments restart at each stage (the one difference from a single run).

Usage::

    python examples/train_paper_detnet.py --only detnet-30x60-bpsk --out /tmp/paper
    python examples/train_paper_detnet.py --only detnet-30x60-bpsk --out /tmp/paper --resume
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from mimoc.detectors import (
    DetNet,
    DetNetConfig,
    TrainOptions,
    WeSNet,
    WeSNetConfig,
    load_checkpoint,
    save_detector,
    train_detector,
)

QPSK_20X30 = dict(nt=20, nr=30, modulation="qpsk", layers=30, hidden=160, v_dim=40, residual=0.9)
BPSK_30X60 = dict(nt=30, nr=60, modulation="bpsk", layers=90, hidden=240, v_dim=60, residual=0.9,
                  system="real")

MODELS = {
    "detnet-20x30-qpsk": ("detnet_20x30_qpsk.pt", lambda: DetNet(DetNetConfig(**QPSK_20X30))),
    "detnet-30x60-bpsk": ("detnet_30x60_bpsk.pt", lambda: DetNet(DetNetConfig(**BPSK_30X60))),
    "wesnet-hf50-30x60-bpsk": (
        "wesnet_hf50_30x60_bpsk.pt",
        lambda: WeSNet(WeSNetConfig(**BPSK_30X60, profile="half-exp", retained=0.5))),
    "lwesnet-hf50-30x60-bpsk": (
        "lwesnet_hf50_30x60_bpsk.pt",
        lambda: WeSNet(WeSNetConfig(**BPSK_30X60, profile="half-exp", retained=0.5,
                                    learnable_profile=True))),
    "rwesnet-30x60-bpsk": (
        "rwesnet_30x60_bpsk.pt",
        lambda: WeSNet(WeSNetConfig(**BPSK_30X60, profile="half-exp", retained=1.0,
                                    l1_lambda=0.5))),
}

LR_FINAL = 0.05  # the cosine ends at 5% of the initial rate


def cosine_lr(lr: float, step: int, total: int) -> float:
    """The learning rate of one cosine from ``lr`` to ``lr * LR_FINAL`` at ``step`` of ``total``."""
    fraction = min(step, total) / total
    return lr * (LR_FINAL + (1.0 - LR_FINAL) * 0.5 * (1.0 + math.cos(math.pi * fraction)))


def train_one(name: str, args) -> None:
    filename, build = MODELS[name]
    path = args.out / filename
    stages: list[dict] = []
    if args.resume and path.exists():
        previous = load_checkpoint(path)
        model = previous.model
        stages = list(previous.training.get("stages", []))
    else:
        torch.manual_seed(args.seed)  # the initial weights
        model = build()
    done = sum(stage["options"]["steps"] for stage in stages)
    start = time.perf_counter()
    while done < args.steps:
        steps = min(args.stage_steps, args.steps - done)
        lr_start = cosine_lr(args.lr, done, args.steps)
        lr_end = cosine_lr(args.lr, done + steps, args.steps)
        # each stage draws fresh data: its seed is the run's seed plus the stage's first step
        options = TrainOptions(steps=steps, batch=args.batch, snr_db=tuple(args.snr_train),
                               snr_def="detnet", lr=lr_start, lr_final=lr_end / lr_start,
                               seed=args.seed + done, val_every=0, val_batch=2000)
        report = train_detector(model, options, progress=False)
        done += steps
        stages.append(report.to_dict())
        training = dict(report.to_dict(), stages=stages, total_steps=done,
                        schedule=f"cosine {args.lr:g} -> {args.lr * LR_FINAL:g} over {args.steps}")
        save_detector(model, path, training=training)
        print(json.dumps({"model": name, "step": done, "of": args.steps,
                          "loss": round(report.history[-1]["loss"], 5) if report.history else None,
                          "val_ser": report.val_ser, "lr": round(lr_end, 7),
                          "seconds": round(time.perf_counter() - start)}), flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(MODELS), action="append", required=True,
                        help="model to train (repeatable; trained one after the other)")
    parser.add_argument("--steps", type=int, default=6000, help="total optimizer steps")
    parser.add_argument("--stage-steps", type=int, default=250,
                        help="steps between checkpoints")
    parser.add_argument("--batch", type=int, default=1000, help="samples per step")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--snr-train", type=float, nargs=2, default=(7.0, 14.0),
                        metavar=("LO", "HI"), help="training SNR range in dB (detnet convention)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the checkpoint in --out (up to --steps in all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "models")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.only:
        train_one(name, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
