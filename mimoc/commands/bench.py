"""``mimoc bench``: latency and throughput, PyTorch eager vs ONNX export vs mimoc's artifact."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from mimoc.commands import flags
from mimoc.commands.artifact_flags import add_allow_modified_argument, verify_artifacts
from mimoc.commands.json_output import print_json
from mimoc.errors import UsageError

NAME = "bench"
HELP = "time a detector: PyTorch eager, plain torch.onnx.export, mimoc's artifact"
DESCRIPTION = """\
Per-slot latency and throughput of one detector, run three ways in the same process
on the same inputs (one slot of S symbols per channel realisation, at each batch size):

  pytorch      the PyTorch module in eager mode (--threads threads)
  onnx-export  torch.onnx.export of the module, onnxruntime with default settings
  mimoc        the artifact through mimoc.runtime: detector.onnx, one session call
  mimoc-staged the artifact's slot.onnx, then symbol.onnx (streaming form)

Medians over repeated calls; ratios (time of the other path / time of mimoc) from the
same run; achieved GFLOP/s of the useful work (manifest FLOPs, 2 x MACs) against a
single-core fp32 GEMM peak measured in the same run.

TARGET is an ONNX artifact directory (its model file, named in the manifest, is looked
up beside the artifact or given with --model; without it only the artifact is timed) or
a model (.pt/.pt2), compiled first with the default passes into a temporary directory.

A crossbar artifact directory (mimoc compile --target crossbar) is reported as the
device latency its schedule models for a slot of --slot symbols (programming of the
channel arrays + S x the per-symbol critical path) and the wall time of the IMC
simulator per slot at each batch size on this CPU (the cost of a BER study, not the
device's latency).

examples:
  mimoc bench out/detnet --model detnet.pt
  mimoc bench detnet.pt --batch 1,64 --json
  mimoc bench out/xb --batch 1,64
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="ARTIFACT_DIR|MODEL",
                        help="artifact directory from 'mimoc compile', or a model file")
    parser.add_argument("--model", metavar="PATH", default=None,
                        help="the PyTorch model of an artifact (default: the source file named "
                             "in its manifest, if found beside the artifact)")
    flags.add(parser, "batch", NAME,
              help="batch sizes, a comma list (slots, i.e. channel realisations, per call)")
    flags.add(parser, "slot", NAME)
    flags.add(parser, "threads", NAME, help="threads for PyTorch and mimoc's runtime")
    parser.add_argument("--min-time", type=float, default=0.5, metavar="SECONDS",
                        help="minimum timed seconds per measurement (default: 0.5)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (it is shown only when stderr is a terminal)")
    add_allow_modified_argument(parser)


def _batches(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"malformed --batch {text!r}; e.g. --batch 1,64") from None
    if not values or any(v < 1 for v in values):
        raise UsageError(f"--batch needs positive integers, got {text!r}")
    return values


def _find_source(artifact, explicit: str | None):
    from mimoc.compiler.source import file_digest, load_source

    if explicit is not None:
        return load_source(explicit)
    source = artifact.manifest.get("source") or {}
    name = source.get("file")
    if not name:
        return None
    for candidate in (artifact.path.parent / name, Path(name)):
        if candidate.is_file() and file_digest(candidate) == source.get("sha256"):
            return load_source(candidate)
    return None


def run(args: argparse.Namespace) -> int:
    from mimoc.progress import StepProgress
    from mimoc.runtime import is_artifact, load, load_artifact
    from mimoc.runtime.bench import PATHS, format_bench, run_bench
    from mimoc.targets import artifact_target

    batches = _batches(args.batch)
    if args.slot < 1 or args.threads < 1 or not args.min_time > 0:
        raise UsageError("--slot and --threads must be positive integers, --min-time positive")
    target = Path(args.target)
    if artifact_target(target) == "crossbar":
        return _bench_crossbar(args, target, batches)
    with tempfile.TemporaryDirectory(prefix="mimoc-bench-") as tmp:
        if is_artifact(target):
            artifact = load(target, threads=args.threads,  # onnx or iree
                            verify=verify_artifacts(args))
            model = _find_source(artifact, args.model)
        else:
            from mimoc.api import compile as compile_model
            from mimoc.compiler.source import load_source

            model = load_source(target)
            compile_model(model, out=Path(tmp) / "artifact", progress=not args.no_progress)
            artifact = load_artifact(Path(tmp) / "artifact", threads=args.threads)
        if model is not None and not hasattr(model, "forward"):
            model = model.module()  # an ExportedProgram: time its module
        if model is None:
            print("mimoc: note: the artifact's model file was not found (use --model); timing "
                  "the artifact only", file=sys.stderr)

        # one step per path and batch (onnx-export is one fewer where the exporter fails)
        steps = len(batches) * (len(PATHS) if model is not None else 2)
        with StepProgress(steps, desc="bench", enabled=not args.no_progress) as progress:
            result = run_bench(model, artifact, batches=batches, slot=args.slot,
                               threads=args.threads, min_time=args.min_time, progress=progress)
    if args.json:
        print_json(NAME, args, result.to_dict())
    else:
        print(format_bench(result))
    return 0


def _bench_crossbar(args: argparse.Namespace, target: Path, batches: list[int]) -> int:
    from mimoc.progress import StepProgress
    from mimoc.runtime.imc import load_schedule
    from mimoc.runtime.imc_bench import format_crossbar_bench, run_crossbar_bench

    if args.model is not None:
        raise UsageError("--model is for ONNX artifacts; a crossbar artifact is timed by its "
                         "schedule and the IMC simulator")
    torch_threads(args.threads)
    schedule = load_schedule(target, verify=verify_artifacts(args))
    with StepProgress(len(batches), desc="bench", enabled=not args.no_progress) as progress:
        result = run_crossbar_bench(schedule, batches=batches, slot=args.slot,
                                    min_time=args.min_time, progress=progress)
    if args.json:
        print_json(NAME, args, result.to_dict())
    else:
        print(format_crossbar_bench(result))
    return 0


def torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
