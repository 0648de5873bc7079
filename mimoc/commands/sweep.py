"""``mimoc sweep SPEC``: a resumable sweep of models x targets x devices x C2C x arrays x
quantization x SNR, run serially or on Ray."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from mimoc.commands import flags

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
  [link]   slot (default 14), channel, csi, snr_def (nt, nr, mod for classical
           detectors alone)
  [run]    seed, max_symbols, min_errors, min_error_slots, batch

The keys are the command line's (slot is --slot, batch is --batch, ...) with the
same defaults, and snr takes --snr's grammar ("-4:2:10", "0,3").

Each artifact is compiled once (DIR/artifacts, keyed by a hash of the model's
bytes, target and options). Every finished work unit (SNR point, batch) is
appended to DIR/results.jsonl; after a Ctrl-C or a crash, the same command with
--resume runs only the units not journaled and writes the same results.json as
an uninterrupted run (its "command" is recorded without --resume). An existing
DIR is refused unless --resume (continue) or --force (start over; the compile
cache is kept). The counts equal a serial run's (--workers 1) whatever the
number of workers: every unit is seeded by (seed, SNR, batch) alone.

Outputs: DIR/results.json (the mimoc-sweep/1 document, also printed by --json:
per link, the 'mimoc ber --json' object), DIR/results.txt (the table, also
printed), DIR/plots/LINK.png.

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
    from mimoc.commands.ber_parallel import add_parallel_arguments

    parser.add_argument("spec", metavar="SPEC", help="the sweep file (.toml or .json)")
    parser.add_argument("-o", "--output", required=True, metavar="DIR",
                        help="output folder (artifacts, journal, results, plots)")
    add_parallel_arguments(parser, NAME)
    flags.add(parser, "threads", NAME, help="CPU threads for torch in this process")
    parser.add_argument("--resume", action="store_true",
                        help="continue the sweep in DIR: journaled units are not rerun")
    parser.add_argument("--force", action="store_true",
                        help="start the sweep in an existing DIR over (its journal is "
                             "discarded, its compile cache kept)")
    parser.add_argument("--no-plots", action="store_true", help="do not draw the plots")
    parser.add_argument("--json", action="store_true",
                        help="print results.json's document on stdout instead of the table")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar of finished units (shown only on a terminal)")


def run(args: argparse.Namespace) -> int:
    from mimoc.commands.json_output import command_line, print_json
    from mimoc.fileio import refuse_input_overwrite
    from mimoc.studies.sweep import load_spec
    from mimoc.studies.sweep.run import TABLE, execute_sweep

    workers = _default_workers() if args.workers is None else args.workers
    flags.positive("--workers", workers)
    threads = flags.positive("--threads", args.threads)
    spec = load_spec(args.spec)
    # the spec and its models stay intact whatever -o, --force or --resume say
    refuse_input_overwrite(args.output, [args.spec, *spec.models])
    # recorded without --resume: a resumed run writes the bytes of an uninterrupted one
    argv = command_line(args)
    if argv is not None:
        # argparse takes abbreviations: --res is --resume too
        args._argv = argv = [a for a in argv if not (len(a) > 3 and "--resume".startswith(a))]
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        document, _ = execute_sweep(
            spec, args.output, workers=workers, address=args.ray_address,
            resume=args.resume, force=args.force, plots=not args.no_plots,
            progress=not args.no_progress, argv=argv)
    finally:
        torch.set_num_threads(previous)
    if args.json:
        envelope = {"schema", "mimoc_version", "command"}
        print_json(NAME, args, {k: v for k, v in document.items() if k not in envelope})
        return 0
    print((Path(args.output) / TABLE).read_text(), end="")
    print(f"results written to {args.output}")
    return 0
