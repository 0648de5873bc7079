"""``mimoc budget``: per-slot latency of a detector on each target against the 6G budget."""

from __future__ import annotations

import argparse
import json
import sys

from mimoc.errors import MimocError, UsageError

NAME = "budget"
HELP = "compare a detector's per-slot latency (and SER) on ONNX CPU, crossbars, processors"
DESCRIPTION = """\
Where does a detector meet the 6G air-interface latency target (default 100 us per
slot), and at what error rate? For each target, one coherence slot of S symbols
(--slot, default 14) costs

  per slot = preparation + detection      detection = S x per symbol

preparation: once per channel realisation (the ONNX slot stage H^T H ..., the
crossbar's programming of its channel arrays, the slot-rate FLOPs); detection:
the S symbol vectors. The table gives both, the per-symbol latency, throughput
(Mbit/s = S Nt log2(M) bits per slot time), whether the slot fits the budget and
by what margin, and the SER at one SNR on that target (all targets on the same
channel and noise draws).

Targets (--targets, comma-separated; default: onnx-cpu, onnx-cpu-w4,
crossbar:ftj-luo2022 and the three processors, those this build can run):
  onnx-cpu              fp32 ONNX, compiled and run by onnxruntime here
  onnx-cpu-w4           4-bit weights (MatMulNBits); also -w4a4, -int8; quantized
                        with min-max calibration (int8 for -int8) unless the
                        checkpoint carries its own recipe ('mimoc quantize'); append
                        :METHOD for another (onnx-cpu-w4:kaq-ptq)
  crossbar:DEVICE       memristor crossbar schedule (ftj-luo2022, rram-zeng2023,
                        fefet-jerry2017 or a device profile .json)
  dsp-c6678             TI TMS320C6678 DSP, 128 GFLOPS peak
  fpga-k7-480t          Xilinx Kintex-7 480T, 1.8 TFLOPS peak
  jetson-orin-nx        NVIDIA Jetson Orin NX 16 GB, 1.88 TFLOPS peak
  proc:FILE.json        your own processor: {"name": "my-dsp", "peak_gflops": 200,
                        "utilisation": 0.3} (utilisation optional, default 1.0 = peak)

Where the numbers come from (stated per target in the output):
  measured   onnxruntime on this CPU, batch 1, one thread (--threads), median of
             repeated runs of slot.onnx (preparation) and symbol.onnx on S symbols
  schedule   the crossbar schedule's totals: per-slot programming (preparation),
             S x per-symbol computation latency (detection); the one-time static
             programming with verify is reported apart
  flops      the compiler's FLOP count (2 x MACs; slot-rate and per-symbol parts)
             over the processor's peak x utilisation: at utilisation 1.0, a lower
             bound on the latency
SER: ONNX targets run the compiled artifact, crossbars the IMC simulator at the
device's cycle-to-cycle variation, processors the digital (PyTorch) model. The
default symbol budget is small (--ser-symbols 40000) so that a run takes well under
a minute; raise it for tighter intervals. A target this build cannot run is listed
as unavailable with the reason; one whose compiler refuses this model is listed as
failed with the error, the others are still costed, and the exit status is 1.

JSON output (--json) is one object:
  {"model": {"file", "family", "nt", "nr", "modulation"}, "slot_symbols", "budget_s",
   "snr_db", "snr_def", "ser_symbols", "seed", "sources": {...},
   "targets": [{"target", "kind", "available", "latency_source", "latency_how",
                "preparation_s", "detection_s", "per_slot_s", "per_symbol_s",
                "slot_symbols", "vectors_per_s", "bits_per_s", "budget_s",
                "meets_budget", "margin_s", "headroom", "ser": {point} | null,
                "ser_source", "details": {...}}
               | {"target", "kind", "available": false, "reason", "failed": true?}, ...],
   "notes": [...]}
Times in seconds; margin_s = budget_s - per_slot_s; headroom = budget_s / per_slot_s.

examples:
  mimoc budget examples/models/detnet_8x16_qpsk.pt
  mimoc budget detnet.pt --targets onnx-cpu,dsp-c6678 --budget-us 50 --snr 4
  mimoc budget detnet.pt --targets crossbar:ftj-luo2022,crossbar:rram-zeng2023,dsp-c6678
  mimoc budget detnet.pt --targets onnx-cpu,proc:my_dsp.json --json
  mimoc budget detnet.pt --plot budget.png --ser-symbols 0      # latency only
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mimoc.sim.snr import SNR_DEFINITIONS
    from mimoc.studies.budget import DEFAULT_SER_SYMBOLS

    parser.add_argument("model", metavar="MODEL", help="a mimoc detector checkpoint (.pt)")
    parser.add_argument("--targets", default=None, metavar="LIST",
                        help="comma-separated targets (list above; default: onnx-cpu, "
                             "onnx-cpu-w4, crossbar:ftj-luo2022 and the three processors)")
    parser.add_argument("--slot", type=int, default=14, metavar="S",
                        help="symbols per slot sharing one channel (default: 14, a 5G NR slot)")
    parser.add_argument("--budget-us", type=float, default=100.0, metavar="US",
                        help="latency budget per slot in microseconds (default: 100, the 6G "
                             "air-interface target)")
    parser.add_argument("--snr", type=float, default=None, metavar="DB",
                        help="SNR of the SER estimate in dB (default: the middle of the "
                             "model's training range)")
    parser.add_argument("--snr-def", default=None, choices=SNR_DEFINITIONS,
                        help="SNR convention (default: the model's training convention)")
    parser.add_argument("--ser-symbols", type=int, default=DEFAULT_SER_SYMBOLS, metavar="N",
                        help="scalar symbols per target for the SER estimate (default: "
                             f"{DEFAULT_SER_SYMBOLS}; 0 skips it)")
    parser.add_argument("--array", default="128x128", metavar="RxC",
                        help="crossbar maximum array size (default: 128x128)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--threads", type=int, default=1, metavar="N",
                        help="onnxruntime threads for the measured targets (default: 1)")
    parser.add_argument("--min-time", type=float, default=0.2, metavar="SECONDS",
                        help="minimum timed seconds per measurement (default: 0.2)")
    parser.add_argument("--keep", default=None, metavar="DIR",
                        help="keep the compiled artifacts in DIR (default: a temporary "
                             "directory)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--plot", default=None, metavar="PATH.png",
                        help="also write a stacked bar chart (preparation, detection) per "
                             "target with the budget line")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress output (shown only when stderr is a terminal)")


def parse_array(text: str) -> tuple[int, int]:
    """``"128x128"`` -> ``(128, 128)``."""
    rows, sep, cols = text.lower().partition("x")
    try:
        shape = (int(rows), int(cols))
    except ValueError:
        shape = (0, 0)
    if not sep or min(shape) < 1:
        raise UsageError(f"malformed --array {text!r}; write ROWSxCOLS, e.g. --array 128x128")
    return shape


def run(args: argparse.Namespace) -> int:
    from mimoc.progress import is_interactive
    from mimoc.studies.budget import format_budget, run_budget

    if args.plot:
        from mimoc.studies.plots import check_plot_path

        check_plot_path(args.plot)
    if not args.budget_us > 0 or args.budget_us == float("inf"):
        raise UsageError(f"--budget-us must be a positive number, got {args.budget_us:g}")
    if args.ser_symbols < 0:
        raise UsageError(f"--ser-symbols must be 0 or more, got {args.ser_symbols}")
    if args.keep:
        from mimoc.targets.output import check_output_directory

        check_output_directory(args.keep)
    show = is_interactive() and not args.no_progress

    def say(text: str) -> None:
        if show:
            print(f"\r{text:<60}", end="", file=sys.stderr, flush=True)

    try:
        report = run_budget(args.model, args.targets, slot=args.slot,
                            budget_s=args.budget_us * 1e-6, snr_db=args.snr,
                            snr_def=args.snr_def, ser_symbols=args.ser_symbols,
                            seed=args.seed, array=parse_array(args.array),
                            threads=args.threads, min_time=args.min_time, workdir=args.keep,
                            progress=show, say=say)
    finally:
        if show:
            print("\r" + " " * 60 + "\r", end="", file=sys.stderr, flush=True)
    if args.plot:
        from mimoc.studies.plots import plot_budget

        try:
            plot_budget(report, args.plot)
        except OSError as err:
            raise MimocError(f"cannot write plot {args.plot!r}: {err.strerror or err}; "
                             "choose another path") from None
    if args.json:
        print(json.dumps(report.to_dict()))
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
