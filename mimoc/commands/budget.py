"""``mimoc budget``: does a detector meet a receiver's slot deadline, at an accuracy worth
having, on each target?"""

from __future__ import annotations

import argparse
import sys

from mimoc.commands import flags
from mimoc.errors import UsageError

NAME = "budget"
HELP = ("one verdict per target (ONNX CPU, crossbars, processors, MMSE): slot latency at a "
        "percentile and SNR loss against the fp32 model")
DESCRIPTION = """\
Does a detector meet the slot deadline (default 100 us per slot, the 6G air-interface
target) at an accuracy worth having? Each target gets one verdict:

  meets    its p99.9 slot latency (--percentile) is within the budget AND its SNR
           loss at SER 1e-3 (--target-ser) against the fp32 model, all of its 95%
           interval, is within 0.5 dB (--max-loss-db)
  misses   the latency or the accuracy (or both: the row says which) is known to be
           beyond its limit
  unknown  neither is known to miss and one is not known: a lower bound within the
           budget, a loss interval that straddles the limit, no SER (--max-symbols 0)

The workload (5G NR numbers, mimoc/sim/numerology.py): a slot is S = 14 OFDM symbols
(--slot); N subcarriers are detected per slot (--subcarriers, default 1; a 100 MHz
carrier at 30 kHz spacing has 273 resource blocks of 12 = 3276), K of them sharing
one channel (--subcarriers-per-channel, default 12, a resource block): B = ceil(N/K)
channels per slot, each with S x min(K, N) symbol vectors (a last partial channel is
counted whole). Per slot = preparation (once per channel: the ONNX slot stage H^T H
..., a crossbar's programming of its channel arrays) + detection (every vector). Each
row says how many subcarriers the target detects within the budget (subc/slot).

Targets (--target, comma-separated; default: onnx, onnx-w4, crossbar:ftj-luo2022,
the three processors and mmse, those this build can run; the names of docs/cli.md,
shared with 'mimoc compile --target'; onnx-cpu... are deprecated aliases of onnx...):
  onnx                  fp32 ONNX, compiled and run by onnxruntime here
  onnx-w4               4-bit weights (MatMulNBits); also onnx-w4a4, onnx-int8;
                        quantized with min-max calibration (int8 for -int8) unless
                        the checkpoint carries its own recipe ('mimoc quantize');
                        append :METHOD for another (onnx-w4:kaq-ptq)
  crossbar[:DEVICE]     memristor crossbar schedule (ftj-luo2022, the default,
                        rram-zeng2023, fefet-jerry2017 or a device profile .json)
  dsp-c6678             TI TMS320C6678 DSP, 128 GFLOPS peak
  fpga-k7-480t          Xilinx Kintex-7 480T, 1.8 TFLOPS peak
  jetson-orin-nx        NVIDIA Jetson Orin NX 16 GB, 1.88 TFLOPS peak
  proc:FILE.json        your own processor: {"name": "my-dsp", "peak_gflops": 200,
                        "utilisation": 0.3} (utilisation optional, default 1.0 = peak)
  mmse                  the classical MMSE detector (batched torch on this CPU): the
                        reference a learned detector has to beat

Where the latencies come from (stated per target in the output):
  measured   onnxruntime (or torch, for mmse) on this CPU at the workload's batch,
             one thread (--threads), --calls timed calls (default 5000; at least
             --min-time seconds, at most --max-time): p50, p99, p99.9 of the slot
             and the share of slots over the budget; with fewer than 1/(1-q) calls
             the slowest stands in for percentile q and can prove a miss only
  schedule   a crossbar with one array set serving the channels one after another:
             per channel, the programming of its channel arrays (it depends on the
             draw) over 4096 channel draws of the model's link, then the symbols'
             critical path; more array sets multiply the area (the row says how many
             would cover the workload)
  flops      the compiler's FLOP count (2 x MACs) over the processor's peak x
             utilisation: a lower bound (">="), which can prove a miss, never a meet
Accuracy: ONNX targets run the compiled artifact, crossbars the IMC simulator at the
device's cycle-to-cycle variation, processors the digital model, mmse itself; all on
the same seeded slots at a grid of SNRs around where the fp32 model crosses the
target SER (found by a search from the middle of its training range; --snr sets the
grid's centre), --max-symbols scalar symbols per point (default 100000). The loss
is interpolated log-linearly; its 95% interval is a paired bootstrap over slots (a
slot's symbols share a channel: the slot is the independent unit). The link is the
model's training channel and CSI (task:ID channels included; --channel, --csi to
choose). A target this build cannot run is listed as unavailable; one whose compiler
refuses this model as failed with the error, the others are still costed, and the
exit status is 1.

JSON output (--json) is one object (schema "mimoc-budget/1", docs/json.md):
  {"schema", "mimoc_version", "command" (the envelope of every --json),
   "model": {"path", "family", "nt", "nr", "modulation"},
   "link": {"channel", "csi", "snr_def"}, "slot_symbols", "budget_s", "budget_us",
   "max_loss_db", "target_ser", "percentile",
   "workload": {"subcarriers", "subcarriers_per_channel", "slot_symbols", "channels",
                "symbols_per_channel", "vectors"},
   "numerology": {...}, "snr_db" (the grid's centre; null: no SER), "snr_def",
   "ser_symbols", "seed",
   "accuracy": {"reference", "center_db", "grid_db", "slots_per_point",
                "symbols_per_slot", "reference_crossing_db", "reference_ser",
                "search"?} | {},
   "sources": {...},
   "targets": [{"target", "kind", "available", "source", "latency_source",
                "latency_how", "latency_us" (at the percentile; a bound for flops),
                "latency_percentile" (null for flops), "latency_is_lower_bound",
                "preparation_s", "detection_s", "per_slot_s" (= preparation +
                detection: medians, means, or bounds), "per_symbol_s", "slot_symbols",
                "vectors_per_slot", "vectors_per_s", "bits_per_s",
                "tail": {"count", "unit", "p50_s", "p99_s", "p99.9_s", "max_s",
                         "mean_s", "miss_fraction", ...} | null,
                "budget_s", "meets_budget" (latency part: true/false/null),
                "margin_s", "headroom" (at the percentile),
                "snr_loss_db", "snr_loss_ci_db": [lo, hi] (null ends: beyond the
                grid), "snr_loss_beyond_grid": null/"above"/"below",
                "snr_loss_grid_db", "bootstrap_replicates", "snr_loss_note"?,
                "accuracy_within" (true/false/null),
                "verdict": "meets"/"misses"/"unknown", "misses": ["latency",
                "accuracy"], "verdict_reason",
                "subcarriers_per_slot", "subcarriers_per_slot_is_upper_bound",
                "covers_workload", "capacity_how", "array_sets", "replication",
                "ser": {point at snr_db} | null, "ser_source", "details": {...}}
               | {"target", "kind", "available": false, "reason", "failed": true?}, ...],
   "notes": [...]}
Times in seconds (latency_us in microseconds); margin_s = budget_s - latency at the
percentile; headroom = budget_s / that latency.

examples:
  mimoc budget examples/models/detnet_8x16_qpsk.pt
  mimoc budget detnet.pt --subcarriers 3276                # a 100 MHz carrier
  mimoc budget detnet.pt --target onnx,dsp-c6678,mmse --budget-us 50 --max-loss-db 1
  mimoc budget detnet.pt --target crossbar:ftj-luo2022,crossbar:rram-zeng2023
  mimoc budget detnet.pt --target onnx,proc:my_dsp.json --json
  mimoc budget detnet.pt --plot budget.png --max-symbols 0      # latency only
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mimoc.sim.snr import SNR_DEFINITIONS
    from mimoc.studies.budget import (
        DEFAULT_CALLS,
        DEFAULT_MAX_LOSS_DB,
        DEFAULT_PERCENTILE,
        DEFAULT_TARGET_SER,
    )
    from mimoc.studies.budget.timing import DEFAULT_MAX_TIME

    parser.add_argument("model", metavar="MODEL", help="a mimoc detector checkpoint (.pt)")
    flags.add(parser, "target", NAME, help="comma-separated targets (list above: onnx, "
                                           "onnx-w4, crossbar:ftj-luo2022, the three "
                                           "processors, mmse)")
    flags.add(parser, "slot", NAME, help="OFDM symbols per slot sharing one channel")
    parser.add_argument("--budget-us", type=float, default=100.0, metavar="US",
                        help="latency budget per slot in microseconds (default: 100, the 6G "
                             "air-interface target)")
    parser.add_argument("--percentile", type=float, default=DEFAULT_PERCENTILE, metavar="Q",
                        help="the slot-latency percentile the verdict uses (default: "
                             f"{DEFAULT_PERCENTILE:g})")
    parser.add_argument("--target-ser", type=float, default=DEFAULT_TARGET_SER, metavar="SER",
                        help=f"SER at which the SNR loss is measured (default: "
                             f"{DEFAULT_TARGET_SER:g})")
    parser.add_argument("--max-loss-db", type=float, default=DEFAULT_MAX_LOSS_DB, metavar="DB",
                        help="largest SNR loss against the fp32 model that meets (default: "
                             f"{DEFAULT_MAX_LOSS_DB:g})")
    parser.add_argument("--subcarriers", type=int, default=1, metavar="N",
                        help="subcarriers detected per slot (default: 1; 3276 = a 100 MHz "
                             "carrier at 30 kHz spacing)")
    parser.add_argument("--subcarriers-per-channel", type=int, default=12, metavar="K",
                        help="subcarriers sharing one channel realisation (default: 12, a "
                             "resource block)")
    flags.add(parser, "snr", NAME, help="centre of the accuracy grid in dB, one value "
                                        "(the shared list grammar, e.g. --snr -2)")
    parser.add_argument("--snr-def", default=None, choices=SNR_DEFINITIONS,
                        help="SNR convention (default: the model's training convention)")
    parser.add_argument("--channel", default=None, metavar="SPEC",
                        help="channel of the SER simulation (default: the model's training "
                             "channel; rayleigh, kronecker:..., task:ID, file:H.npy)")
    parser.add_argument("--csi", default=None, metavar="SPEC",
                        help="receiver's channel knowledge (default: the model's training "
                             "CSI; perfect, ls:NP@SNR, error:SNR)")
    flags.add(parser, "max-symbols", NAME,
              help="scalar symbols per SNR point of the accuracy grid, every target on the "
                   "same slots (0 skips it)")
    flags.add(parser, "array", NAME)
    flags.add(parser, "seed", NAME)
    flags.add(parser, "threads", NAME, help="threads of the measured targets")
    parser.add_argument("--calls", type=int, default=DEFAULT_CALLS, metavar="N",
                        help=f"timed calls per measured target (default: {DEFAULT_CALLS})")
    parser.add_argument("--min-time", type=float, default=0.2, metavar="SECONDS",
                        help="minimum timed seconds per measured target (default: 0.2)")
    parser.add_argument("--max-time", type=float, default=DEFAULT_MAX_TIME, metavar="SECONDS",
                        help="stop timing a target after this long even with fewer calls "
                             f"(default: {DEFAULT_MAX_TIME:g})")
    parser.add_argument("--keep", default=None, metavar="DIR",
                        help="keep the compiled artifacts in DIR (default: a temporary "
                             "directory)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--plot", default=None, metavar="PATH",
                        help="also write a chart: slot latency per target against the "
                             "budget, and SNR loss against its limit; the extension picks "
                             "the format: .png, .pdf or .svg")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress output (shown only when stderr is a terminal)")


def parse_array(text: str) -> tuple[int, int]:
    """``"128x128"`` -> ``(128, 128)``: the crossbar target's own rule (one grammar for
    ``--array`` in every command)."""
    from mimoc.targets.crossbar.config import parse_array as crossbar_array

    return crossbar_array(text)


def _check_flags(args: argparse.Namespace) -> None:
    if not args.budget_us > 0 or args.budget_us == float("inf"):
        raise UsageError(f"--budget-us must be a positive number, got {args.budget_us:g}")
    if args.max_symbols < 0:
        raise UsageError(f"--max-symbols must be 0 or more, got {args.max_symbols}")
    if not 0 < args.target_ser < 1:
        raise UsageError(f"--target-ser must lie in (0, 1), e.g. 1e-3, got {args.target_ser:g}")
    if not 0 <= args.max_loss_db < float("inf"):
        raise UsageError(f"--max-loss-db must be 0 or more, got {args.max_loss_db:g}")
    if not 50 <= args.percentile < 100:
        raise UsageError(f"--percentile must lie in [50, 100), e.g. 99.9, got "
                         f"{args.percentile:g}")
    for flag in ("subcarriers", "subcarriers_per_channel", "calls"):
        if getattr(args, flag) < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be 1 or more, got "
                             f"{getattr(args, flag)}")
    for flag in ("min_time", "max_time"):
        if not 0 < getattr(args, flag) < float("inf"):
            raise UsageError(f"--{flag.replace('_', '-')} must be a positive number of "
                             f"seconds, got {getattr(args, flag):g}")


def run(args: argparse.Namespace) -> int:
    from mimoc.progress import StepProgress, is_interactive
    from mimoc.studies.budget import format_budget, planned_steps, run_budget

    if args.plot:
        from mimoc.studies.plots import check_plot_path

        check_plot_path(args.plot)
    _check_flags(args)
    snr = None if args.snr is None else flags.one_value(
        flags.parse_number_list(args.snr, "--snr"), "--snr", "the centre of the accuracy grid")
    if args.keep:
        from mimoc.targets.output import check_output_directory

        check_output_directory(args.keep)
    show = is_interactive() and not args.no_progress
    targets = flags.warn_deprecated_targets(args, args.target)
    steps = planned_steps(targets, ser_symbols=args.max_symbols, snr_db=snr,
                          max_loss_db=args.max_loss_db)
    with StepProgress(steps, desc="budget", enabled=show) as say:
        report = run_budget(args.model, targets, slot=args.slot,
                            budget_s=args.budget_us / 1e6, snr_db=snr,
                            snr_def=args.snr_def, ser_symbols=args.max_symbols,
                            seed=args.seed, array=parse_array(args.array),
                            threads=args.threads, min_time=args.min_time, workdir=args.keep,
                            progress=show, say=say, subcarriers=args.subcarriers,
                            subcarriers_per_channel=args.subcarriers_per_channel,
                            percentile=args.percentile, calls=args.calls,
                            max_time=args.max_time, target_ser=args.target_ser,
                            max_loss_db=args.max_loss_db, channel=args.channel, csi=args.csi)
    if args.plot:
        from mimoc.commands.writing import one_line_on_write_error
        from mimoc.studies.plots import plot_budget

        with one_line_on_write_error("plot", args.plot):
            plot_budget(report, args.plot)
    if args.json:
        from mimoc.commands.json_output import print_json

        print_json(NAME, args, report.to_dict())
    else:
        print(format_budget(report))
        if args.plot:
            print(f"plot written to {args.plot}")
        if args.keep:
            print(f"artifacts kept in {args.keep}/")
    failed = [row.target for row in report.rows if row.failed]
    if failed:
        print(f"mimoc: error: {', '.join(failed)} failed on this model (reason in the "
              "output); the other targets are costed", file=sys.stderr)
        return 1
    return 0
