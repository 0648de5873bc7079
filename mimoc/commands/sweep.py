"""``mimoc sweep SPEC``: a resumable sweep of models x targets x devices x C2C x arrays x
quantization x SNR, run serially or on Ray."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from mimoc.errors import UsageError

NAME = "sweep"
HELP = "run a sweep file (models, targets, devices, C2C, SNR...) on Ray, resumably"
DESCRIPTION = """\
Run every combination of the axes of a sweep file (TOML, or JSON by the .json
extension) and write one table, one JSON and the plots into -o DIR:

  models = ["detnet.pt"]             # checkpoints, relative to the sweep file
  detectors = ["mmse"]               # classical baselines, on the same draws
  targets = ["pytorch", "onnx", "crossbar"]
  quant = ["none", "kaq"]            # onnx quantization methods
  devices = ["ftj-luo2022"]          # crossbar device profiles
  arrays = ["128x128"]               # crossbar array sizes
  c2c = [0, 0.02]                    # crossbar cycle-to-cycle levels
  snr = "0:2:10"                     # or a list of dB values
  [link]   channel, csi, snr_def, slot (nt, nr, mod for classical detectors alone)
  [run]    seed, max_symbols, min_errors, min_error_slots, batch_size

Each artifact is compiled once (DIR/artifacts, keyed by a hash of the model's
bytes, target and options). Every finished work unit (SNR point, batch) is
appended to DIR/results.jsonl; after a Ctrl-C or a crash, the same command with
--resume runs only the units not journaled and writes the same results.json as
an uninterrupted run. The counts equal a serial run's (--workers 1) whatever the
number of workers: every unit is seeded by (seed, SNR, batch) alone.

Outputs: DIR/results.json (per link: the 'mimoc ber --json' object), DIR/results.txt
(the table, also printed), DIR/plots/LINK.png.

examples:
  mimoc sweep crossbar.toml -o out/sweep --workers 4
  mimoc sweep crossbar.toml -o out/sweep --workers 4 --resume      # after a Ctrl-C
  mimoc sweep crossbar.toml -o out/sweep --ray-address auto        # on a cluster
"""


def _default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", metavar="SPEC", help="the sweep file (.toml or .json)")
    parser.add_argument("-o", "--output", required=True, metavar="DIR",
                        help="output folder (artifacts, journal, results, plots)")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="local Ray workers (default: the CPUs of this machine); 1 runs "
                             "in this process without Ray")
    parser.add_argument("--ray-address", default=None, metavar="ADDR",
                        help="run on the existing Ray cluster at ADDR instead of a local one")
    parser.add_argument("--resume", action="store_true",
                        help="continue the sweep in DIR: journaled units are not rerun")
    parser.add_argument("--no-plots", action="store_true", help="do not draw the plots")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar of finished units (shown only on a terminal)")


def run(args: argparse.Namespace) -> int:
    from mimoc.studies.sweep import load_spec, run_sweep
    from mimoc.studies.sweep.run import TABLE

    workers = _default_workers() if args.workers is None else args.workers
    if workers < 1:
        raise UsageError(f"--workers must be a positive integer, got {workers}")
    spec = load_spec(args.spec)
    run_sweep(spec, args.output, workers=workers, address=args.ray_address,
              resume=args.resume, plots=not args.no_plots, progress=not args.no_progress)
    print((Path(args.output) / TABLE).read_text(), end="")
    print(f"results written to {args.output}")
    return 0
