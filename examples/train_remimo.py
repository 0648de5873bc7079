"""Train the example RE-MIMO: one model for Nr = 16 and 4..8 users, 16-QAM.

The checkpoint ``examples/models/remimo_16rx_4to8_16qam.pt`` was made with::

    python examples/train_remimo.py      # 5000 steps, about 12 min of CPU time on one thread

Link: i.i.d. Rayleigh, perfect CSI, per-stream SNR uniform in 0..12 dB (where
MMSE's SER on these links runs from about 1e-1 down to 1e-4), one symbol per
slot. Each batch has one user count drawn from 4..8 with a triangular law
(mode at 8, as in the paper). ``benchmarks/remimo.py`` evaluates the result.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from mimoc.detectors import REMIMO, REMIMOConfig, TrainOptions, save_detector, train_detector

OUT = Path(__file__).resolve().parent / "models" / "remimo_16rx_4to8_16qam.pt"

CONFIG = REMIMOConfig(nt=8, nt_min=4, nr=16, modulation="16qam", d_model=64, heads=4, ff=128,
                      predictor_hidden=64, embed_hidden=128, iterations=6, te_dim=8,
                      loss_growth=1.0, nt_sampling="triangular")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--snr-train", default="0:12", help="training SNR range LO:HI in dB")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--out", type=Path, default=OUT)
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    model = REMIMO(CONFIG)
    lo, hi = (float(v) for v in args.snr_train.split(":"))
    options = TrainOptions(steps=args.steps, batch=args.batch, snr_db=(lo, hi), lr=args.lr,
                           seed=args.seed, val_every=250, val_batch=1024, log_every=50)
    cpu_start = time.process_time()
    report = train_detector(model, options, progress=True)
    print(report.summary())
    print(f"  CPU time        {time.process_time() - cpu_start:.0f} s (one thread; wall time "
          f"grows when other jobs share the core)")
    for entry in report.history:
        if entry["val_ser"] is not None:
            print(f"  step {entry['step']:5d}  loss {entry['loss']:.4f}  "
                  f"val SER {entry['val_ser']:.4g}  ({entry['seconds']:.0f} s)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_detector(model, args.out, training=report)
    print(f"saved {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
