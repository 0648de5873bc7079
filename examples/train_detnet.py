"""Train the example DetNet-family checkpoints in examples/models/.

Three 8x16 QPSK detectors of the same size (K = 16 real unknowns, hidden 8K =
128, v 2K = 32, L = 20 blocks), i.i.d. Rayleigh, perfect CSI, per-stream SNR:

- ``detnet_8x16_qpsk.pt``: DetNet;
- ``wesnet_hf50_8x16_qpsk.pt``: WeSNet-HF-50% (half-exponential profile, half
  of the hidden units kept);
- ``rwesnet_8x16_qpsk.pt``: R-WeSNet (half-exponential profile over all the
  hidden units, the log-L1 penalty with lambda = ``--rwesnet-lambda``), for
  evaluation with trailing blocks removed.

Why L = 20 rather than the conference paper's 3K = 48: the examples must train
on a shared 2-core CPU in under half an hour each; with 20 blocks the DetNet
already meets the issue's accuracy bar at 8x16 (benchmarks/detnet_wesnet.md).
The training SNR range covers the operating points of the benchmark (MMSE SER
1e-1 .. 1e-3 is about -6 .. 2 dB per stream for 8x16 QPSK).

The shipped checkpoints were trained with the defaults below (4000 steps of
500 slots, Adam 1e-3 with cosine decay to 5e-5, seed 0), the three in
parallel with one thread each on a shared 2-core machine: 1519 s, 1572 s and
1585 s (about 0.2 s per step on an idle core).

Usage (each model trains with one thread; run them in parallel if you have
the cores)::

    python examples/train_detnet.py                    # all three
    python examples/train_detnet.py --only detnet --steps 500 --out /tmp/models
    python examples/train_detnet.py --only detnet --resume --steps 2000 --lr 3e-4

``--resume`` continues from the checkpoint already in ``--out`` (a fresh Adam
and learning-rate schedule); the checkpoint then records every stage under
``training["stages"]``.
"""

from __future__ import annotations

import argparse
import json
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

# residual a = 0.5 rather than the authors' 0.9: with 20 blocks instead of 90, a = 0.9 lets
# each block move the estimate by only 10% (0.9^20 = 12% of the output is still x_0 = 0), and
# in a 1250-step trial at these sizes a = 0.5 reached a lower SER at every SNR
# (-2 dB: 9.2e-3 vs 1.17e-2; 0 dB: 2.1e-3 vs 3.3e-3).
SIZES = dict(nt=8, nr=16, modulation="qpsk", layers=20, hidden=128, v_dim=32, residual=0.5)

MODELS = {
    "detnet": ("detnet_8x16_qpsk.pt", lambda lam: DetNet(DetNetConfig(**SIZES))),
    "wesnet-hf50": ("wesnet_hf50_8x16_qpsk.pt",
                    lambda lam: WeSNet(WeSNetConfig(**SIZES, profile="half-exp", retained=0.5))),
    "rwesnet": ("rwesnet_8x16_qpsk.pt",
                lambda lam: WeSNet(WeSNetConfig(**SIZES, profile="half-exp", retained=1.0,
                                                l1_lambda=lam))),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(MODELS), action="append",
                        help="train only this model (repeatable); default: all three")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--snr-train", type=float, nargs=2, default=(-6.0, 4.0),
                        metavar=("LO", "HI"), help="per-stream training SNR range in dB")
    parser.add_argument("--rwesnet-lambda", type=float, default=0.5,
                        help="R-WeSNet log-L1 regularisation weight")
    parser.add_argument("--resume", action="store_true",
                        help="continue training the checkpoint already in --out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "models")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.only or list(MODELS):
        filename, build = MODELS[name]
        stages = []
        if args.resume:
            previous = load_checkpoint(args.out / filename)
            model = previous.model
            stages = list(previous.training.get("stages", [previous.training]))
        else:
            torch.manual_seed(args.seed)  # the initial weights
            model = build(args.rwesnet_lambda)
        options = TrainOptions(steps=args.steps, batch=args.batch, snr_db=tuple(args.snr_train),
                               lr=args.lr, seed=args.seed, val_every=250, val_batch=4000)
        start = time.perf_counter()

        def log(event, name=name, start=start):
            if event.step % 250 == 0:
                print(f"{name} step {event.step} loss {event.loss:.4g} lr {event.lr:.3g} "
                      f"{time.perf_counter() - start:.0f}s", flush=True)

        report = train_detector(model, options, progress=False, callback=log)
        training = report.to_dict()
        training["stages"] = stages + [report.to_dict()]
        path = save_detector(model, args.out / filename, training=training)
        print(report.summary(), flush=True)
        print(json.dumps({"model": name, "path": str(path), "val_ser": report.val_ser,
                          "seconds": round(report.seconds)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
