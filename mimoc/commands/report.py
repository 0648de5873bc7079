"""``mimoc report``: a Markdown report (with figures) of a detector on every target."""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from mimoc.commands import flags
from mimoc.errors import UsageError

NAME = "report"
HELP = "write a Markdown report: model summary, BER curves per target, latency budget"
DESCRIPTION = """\
Write a report directory about one detector, for a paper or a design review:

  report.md            the model summary (mimoc inspect's numbers); BER/SER curves of
                       the original model, each compiled ONNX target and each crossbar
                       at its device's C2C, all on the same draws; each crossbar at
                       several C2C levels; the budget (mimoc budget's verdict per
                       target: slot latency at a percentile and SNR loss against the
                       fp32 model, and where each number comes from); the compile
                       settings
  ber.png              error rates versus SNR, log axis, 95% intervals (with the
                       --baseline classical detectors on the same draws)
  crossbar_*_c2c.png   one crossbar under programming noise at --c2c levels
  budget.png           slot latency by target against the budget, SNR loss against
                       its limit, the verdicts
  report.json          every number above

Targets, workload and verdict limits as for 'mimoc budget' (default: every default
target this build can run); the budget's accuracy uses --max-symbols per SNR point.
The directory is written atomically: a failed or interrupted run leaves nothing.

examples:
  mimoc report examples/models/detnet_8x16_qpsk.pt -o report/
  mimoc report detnet.pt -o report/ --baseline mmse,zf
  mimoc report detnet.pt -o report/ --target onnx,crossbar:ftj-luo2022,dsp-c6678 \\
      --snr 0:2:10 --c2c 0,0.02,0.04 --max-symbols 200000
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="a mimoc detector checkpoint (.pt)")
    parser.add_argument("-o", "--output", required=True, metavar="DIR",
                        help="report directory to write")
    flags.add(parser, "target", NAME, help="comma-separated targets, as for 'mimoc budget'")
    flags.add(parser, "snr", NAME, help="SNR points in dB (0,2,4, 0:2:10 or -4:2:10)")
    flags.add(parser, "c2c", NAME, help="C2C levels of the crossbar noise sweep, as "
                                        "fractions (0,0.02,0.04 or 0:0.02:0.04)")
    parser.add_argument("--baseline", default="", metavar="LIST",
                        help="comma-separated classical detectors (mmse, zf, kbest:16, ...) "
                             "drawn next to the model on the same draws (default: none)")
    flags.add(parser, "max-symbols", NAME, help="scalar symbols per SNR point")
    flags.add(parser, "slot", NAME)
    parser.add_argument("--budget-us", type=float, default=100.0, metavar="US",
                        help="latency budget per slot in microseconds (default: 100)")
    parser.add_argument("--percentile", type=float, default=99.9, metavar="Q",
                        help="slot-latency percentile of the verdict (default: 99.9)")
    parser.add_argument("--target-ser", type=float, default=1e-3, metavar="SER",
                        help="SER at which the SNR loss is measured (default: 0.001)")
    parser.add_argument("--max-loss-db", type=float, default=0.5, metavar="DB",
                        help="largest SNR loss against the fp32 model that meets (default: "
                             "0.5)")
    parser.add_argument("--subcarriers", type=int, default=1, metavar="N",
                        help="subcarriers detected per slot (default: 1)")
    parser.add_argument("--subcarriers-per-channel", type=int, default=12, metavar="K",
                        help="subcarriers sharing one channel (default: 12)")
    flags.add(parser, "array", NAME)
    flags.add(parser, "seed", NAME)
    parser.add_argument("--min-time", type=float, default=0.2, metavar="SECONDS",
                        help="minimum timed seconds per latency measurement (default: 0.2)")
    parser.add_argument("--force", action="store_true",
                        help="replace an existing non-empty output directory")
    parser.add_argument("--json", action="store_true",
                        help="print report.json's content instead of a summary")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress output (shown only when stderr is a terminal)")


def _c2c_levels(text: str) -> list[float]:
    return flags.parse_number_list(text, "--c2c", sort=False, low=0.0, high=1.0,
                                   example="0,0.02,0.04")


def _baseline_list(text: str) -> list[str]:
    from mimoc.sim.detectors import get_classical_detector

    names = [name.strip() for name in text.split(",")] if text.strip() else []
    if any(not name for name in names):
        raise UsageError(f"malformed --baseline {text!r}: empty item; e.g. --baseline mmse,zf")
    for name in names:
        get_classical_detector(name)  # an unknown name: one line naming the choices
    return names


def _planned_steps(args: argparse.Namespace) -> int:
    """The budget's steps, the curves, one C2C sweep per crossbar, writing the files."""
    from mimoc.studies.budget import parse_targets, planned_steps

    crossbars = sum(spec.kind == "crossbar" for spec in parse_targets(args.target))
    return planned_steps(args.target, ser_symbols=args.max_symbols,
                         max_loss_db=args.max_loss_db) + 2 + crossbars


def run(args: argparse.Namespace) -> int:
    from mimoc.commands.ber import parse_snr_list
    from mimoc.commands.budget import parse_array
    from mimoc.fileio import refuse_input_overwrite
    from mimoc.progress import StepProgress, is_interactive
    from mimoc.studies.report import write_report

    refuse_input_overwrite(args.output, [args.model])  # even with --force
    snrs = parse_snr_list(args.snr) if args.snr is not None else None
    baseline = _baseline_list(args.baseline)
    if not args.budget_us > 0 or args.budget_us == float("inf"):
        raise UsageError(f"--budget-us must be a positive number, got {args.budget_us:g}")
    show = is_interactive() and not args.no_progress
    command = "mimoc report " + " ".join(shlex.quote(a) for a in sys.argv[2:]) \
        if sys.argv[1:2] == ["report"] else None
    targets = flags.warn_deprecated_targets(args, args.target)
    with StepProgress(_planned_steps(args), desc="report", enabled=show) as say:
        path = write_report(args.model, args.output, targets=targets, snr_db=snrs,
                            c2c=_c2c_levels(args.c2c), max_symbols=args.max_symbols,
                            slot=args.slot, budget_s=args.budget_us / 1e6, seed=args.seed,
                            array=parse_array(args.array), min_time=args.min_time,
                            force=args.force, progress=show, say=say, command=command,
                            argv=getattr(args, "_argv", None),
                            baseline=baseline,
                            budget_options={
                                "percentile": args.percentile, "target_ser": args.target_ser,
                                "max_loss_db": args.max_loss_db,
                                "subcarriers": args.subcarriers,
                                "subcarriers_per_channel": args.subcarriers_per_channel})
    if args.json:
        from mimoc.commands.json_output import print_json

        print_json(NAME, args, json.loads((path / "report.json").read_text()))
    else:
        names = sorted(p.name for p in path.iterdir())
        print(f"report written to {path}/ ({', '.join(names)})")
    return 0
