"""``mimoc compile``: a trained detector -> an ONNX artifact directory."""

from __future__ import annotations

import argparse
import json
import sys
import time

from mimoc.commands import flags
from mimoc.commands.pass_flags import add_pass_option_arguments, pass_options
from mimoc.errors import UsageError

NAME = "compile"
HELP = ("compile a detector for a target: ONNX for edge CPUs (fp32, int8, 4-bit) or a "
        "memristor-crossbar schedule")
DESCRIPTION = """\
Compile a trained detector into an artifact directory for a target (--target):
ONNX for onnxruntime on edge CPUs (the default) or a memristor-crossbar schedule
(--target crossbar, below). The ONNX artifact:

  manifest.json   model and config, shapes (symbolic dims B, S, U), rates, the passes
                  and what each reported, FLOPs per symbol and per slot, lowering per
                  layer (fp32), mimoc version
  slot.onnx       H [B, 2Nr, 2Nt] -> slot state (H^T H, pinv(H), ...): once per channel
  symbol.onnx     y [B, S, 2Nr] + slot state -> x_hat [B, S, 2Nt]: per symbol
  detector.onnx   H, y -> x_hat (both stages in one file)

MODEL is a mimoc checkpoint (.pt from 'mimoc train' or save_detector; loaded safely)
or a torch.export program saved with torch.export.save (.pt2) for a detector outside
the zoo with forward(H, y) -> x_hat, exported with dynamic B and S. A whole pickled
model (torch.save(model)) is refused.

Every ONNX file carries metadata_props (mimoc.family, mimoc.nt, mimoc.nr,
mimoc.modulation, mimoc.stage, mimoc.lowering, mimoc.version, mimoc.source_sha256,
mimoc.snr_def when the checkpoint records it) and inferred shapes. B and S are dynamic;
--static-shapes B=1,S=14 fixes them for NNAPI / CoreML (docs/onnx.md).

Passes run in the order given (--passes; each target's default is listed under
--passes below); the target then applies its own lowering (ONNX: onnx-fuse).
--dump-after PASS prints the IR after a pass (or 'frontend', or 'all') to stderr.
The directory is written atomically: a failed or interrupted compile leaves nothing;
the same input gives byte-identical files. The command prints a summary (files and
sizes, nodes, FLOPs or arrays and latency, time taken); -v adds the pass log, one line
per pass with what it changed.

Target names are those of 'mimoc budget --target' (docs/cli.md): onnx, onnx-w4[:METHOD]
(= --target onnx --lowering w4 --quant METHOD), onnx-w4a4[:METHOD], onnx-int8[:METHOD],
crossbar[:DEVICE] (= --target crossbar --device DEVICE).

Quantized ONNX (--quant METHOD, or a checkpoint from 'mimoc quantize', which carries
its recipe): the quantize pass runs first, then --lowering picks the kernels:
  auto   (default) time the candidates below on this CPU and keep the fastest whose hard
         decisions match the quantized model's on a seeded check set; the manifest's
         lowering_selection records the timings, the agreement and the CPU
  w4     4-bit weights as com.microsoft.MatMulNBits, inputs quantized to int8 inside the
         kernel (smallest artifact; not bit-faithful to 4-bit activations)
  w4-int8  the 4-bit codes in int8 kernels (MatMulIntegerToFloat u8 x s8), input codes
         computed in-graph (faithful; int8 weight bytes)
  w4a4   4-bit weights, the recipe's 4-bit activation quantizers emulated in-graph
         (reproduces the quantized PyTorch model)
  int8   int8 weights (MatMulIntegerToFloat / DynamicQuantizeMatMul), static 8-bit inputs
         by QuantizeLinear
kaq-ptq, minmax and int8 calibrate here (--bits N, default 4 / 8); kaq and lsq train,
so run 'mimoc quantize MODEL.pt --method kaq -o model_q.pt' first and compile that.

Crossbar (--target crossbar): schedule.json + arrays.npz for memristor arrays (per-slot
channel arrays for H and H^T, static arrays for the weights, pulse counts, programming
and computation latency, peripherals), run by 'mimoc ber DIR --c2c ...'; see
docs/crossbar.md. --strategy SPEC chooses how the channel arrays are programmed every slot
(single, verify:tol=T, r=R, clip=C, levels=L, joined by '+'); --budget-us B --max-loss-db D
simulates the candidate strategies and writes the cheapest that meets both.

examples:
  mimoc compile detnet.pt -o out/detnet
  mimoc compile detnet.pt --target crossbar --device ftj-luo2022 --array 128x128 -o out/xb
  mimoc compile detnet.pt --target crossbar --budget-us 100 --max-loss-db 0.5 -o out/xb
  mimoc compile detnet.pt -o out/detnet-w4 --quant minmax
  mimoc compile detnet.pt -o out/detnet-w4 --target onnx-w4:minmax   # the same
  mimoc compile detnet_kaq.pt -o out/detnet-w4a4 --lowering w4a4
  mimoc compile detnet.pt -o out/detnet-int8 --quant int8
  mimoc compile detnet.pt -o out/detnet-mobile --static-shapes B=1,S=14
  mimoc compile rwesnet.pt -o out/r --passes canonicalize,remove-layers,split-channel \\
      --keep-layers 6 --json
  mimoc compile mydetector.pt2 -o out/mine --dump-after split-channel
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mimoc.targets import TARGETS, get_target

    parser.add_argument("model", metavar="MODEL",
                        help="mimoc checkpoint (.pt) or torch.export program (.pt2)")
    flags.add(parser, "target", NAME,
              help=f"one target: {', '.join(TARGETS)} (fp32 ONNX; crossbar: memristor arrays, "
                   "see the crossbar options below and docs/crossbar.md; iree: native CPU "
                   "code, docs/edge.md), or a shorthand onnx-w4[:METHOD], "
                   "onnx-w4a4[:METHOD], onnx-int8[:METHOD], crossbar:DEVICE")
    parser.add_argument("-o", "--output", required=True, metavar="DIR",
                        help="artifact directory to write (an existing non-empty one only "
                             "with --force, never one holding MODEL)")
    defaults = "; ".join(f"{name}: {','.join(get_target(name).default_passes)}"
                         for name in TARGETS)
    parser.add_argument("--passes", default=None, metavar="LIST",
                        help=f"comma-separated passes in order (default {defaults}); the "
                             "target's own lowering runs after them")
    parser.add_argument("--dump-after", default="", metavar="PASS[,PASS]",
                        help="print the IR after these passes (frontend, a pass name, all)")
    add_pass_option_arguments(parser)
    add_onnx_arguments(parser)
    add_crossbar_arguments(parser)
    parser.add_argument_group("iree target (--target iree)").add_argument(
        "--cpu", default=None, metavar="CPU",
        help="processor of the IREE modules: host (default), aarch64, x86-64-v3, or an LLVM "
             "core name such as cortex-a76 (see docs/edge.md); --static-shapes defaults to "
             "B=1,S=14 there")
    parser.add_argument("--force", action="store_true",
                        help="replace an existing non-empty output directory")
    parser.add_argument("--json", action="store_true",
                        help="print the artifact's index (manifest.json or schedule.json) "
                             "as one JSON object instead of a summary (docs/json.md)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="print the pass log too: one line per pass, what it changed")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (it is shown only when stderr is a terminal)")


def add_onnx_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("onnx target")
    group.add_argument("--quant", default=None, metavar="METHOD",
                       choices=["kaq", "kaq-ptq", "lsq", "minmax", "int8"],
                       help="quantize: kaq|kaq-ptq|lsq|minmax|int8 (kaq and lsq need a "
                            "checkpoint from 'mimoc quantize')")
    group.add_argument("--lowering", default=None,
                       choices=["auto", "w4", "w4a4", "int8", "w4-int8"],
                       help="quantized kernels: auto (default: the fastest correct one on "
                            "this CPU), w4 (smallest), w4a4 (faithful), int8, w4-int8 (4-bit "
                            "codes in int8 kernels)")
    group.add_argument("--bits", type=int, default=None, metavar="N",
                       help="bit width for a calibration method (2..8; default 4, int8: 8)")
    group.add_argument("--static-shapes", default=None, metavar="DIM=N[,DIM=N]",
                       help="fix dims in the models, e.g. B=1,S=14 (dims B, S, U), for "
                            "execution providers that need static shapes (NNAPI, CoreML; "
                            "see docs/onnx.md); the runtime then refuses other sizes")


def add_crossbar_arguments(parser: argparse.ArgumentParser) -> None:
    from mimoc.targets.crossbar.config import ACCUMULATIONS, STATIC_CLIPS, WRITE_PARALLEL

    group = parser.add_argument_group("crossbar target (--target crossbar)")
    group.add_argument("--device", default=None, metavar="ID|PATH",
                       help="device profile: ftj-luo2022 (default), rram-zeng2023, "
                            "fefet-jerry2017, or the path of a JSON profile")
    flags.add(group, "array", NAME, help="maximum array size, rows x columns")
    flags.add(group, "slot", NAME, help="symbols per coherence slot for the per-slot totals")
    group.add_argument("--accumulation", default=None, choices=ACCUMULATIONS,
                       help="partial sums of row tiles: analog adder (default) or digital")
    group.add_argument("--static-clip", default=None, choices=STATIC_CLIPS,
                       help="w_clip of static weights: max-abs (default) or percentile")
    group.add_argument("--write-parallel", default=None, choices=WRITE_PARALLEL,
                       help="write circuits: one per tile (default), per matrix, or one")
    group.add_argument("--mc-draws", type=int, default=None, metavar="N",
                       help="channel draws for the expected programming time (default 32)")
    group.add_argument("--strategy", default=None, metavar="SPEC",
                       help="programming strategy of the channel arrays: single (default, "
                            "open loop), verify[:tol=T,iters=N], redundancy:r=R, clip=C, "
                            "levels=L, joined by '+' (docs/crossbar.md)")
    group.add_argument("--budget-us", type=float, default=None, metavar="B",
                       help="search the strategies: slot latency at most B us (with "
                            "--max-loss-db; simulates the candidates, docs/crossbar.md)")
    group.add_argument("--max-loss-db", type=float, default=None, metavar="D",
                       help="search the strategies: SNR loss at the target SER at most D dB "
                            "against the ideal device (default 0.5 with --budget-us)")
    group.add_argument("--target-ser", type=float, default=None, metavar="P",
                       help="the strategy search's target SER (default 1e-3)")


#: the flags of every target, by their keyword in mimoc.compile (the target refuses those
#: that are not its own, naming the target they belong to)
TARGET_FLAGS = ("quant", "lowering", "bits", "static_shapes", "device", "array", "slot",
                "accumulation", "static_clip", "write_parallel", "mc_draws", "strategy", "cpu")


def _size(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


def _shape(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _files(result) -> str:
    files = sorted(p for p in result.path.iterdir() if p.is_file())
    return ", ".join(f"{p.name} {_size(p.stat().st_size)}" for p in files)


def _graph_line(result) -> str:
    records = result.pipeline.records
    if not records:
        return "  graph        no passes"
    return (f"  graph        {records[0].nodes_before:,} -> {records[-1].nodes_after:,} nodes "
            f"after {len(records)} passes ({', '.join(r.name for r in records)})")


def onnx_summary(result, seconds: float) -> str:
    m = result.manifest
    f = m["flops"]
    state = ", ".join(f"{s['name']} {_shape(s['shape'])}" for s in m["slot_state"])
    lines = [f"compiled {m['model'].get('name')} for onnx ({m.get('lowering', 'fp32')}) in "
             f"{seconds:.1f} s -> {result.path}/",
             f"  files        {_files(result)}",
             _graph_line(result),
             f"  FLOPs        {f['per_symbol']:,} per symbol, {f['slot_rate']:,} slot rate, "
             f"{f['per_slot']:,} per slot of {f['slot_symbols']} symbols",
             f"  slot state   {state}"]
    q = m.get("quantization")
    if q:
        lines.append(f"  quantized    {q['method']} {q['bits']}-bit, {q['layers']} layers, "
                     f"lowering {q['lowering']} (faithful: {q['faithful']})")
    return "\n".join(lines)


def crossbar_summary(result, seconds: float) -> str:
    s = result.schedule
    t, p = s["totals"], s["peripherals"]
    roles = {"static": 0, "channel": 0}
    for a in s["arrays"]:
        roles[a["role"]] += 1
    lines = [f"compiled {s['model'].get('name')} for crossbar ({s['device']['name']}, arrays "
             f"{s['config']['array'][0]}x{s['config']['array'][1]}) in {seconds:.1f} s -> "
             f"{result.path}/",
             f"  files        {_files(result)}",
             _graph_line(result),
             f"  tiles        {roles['channel']} channel (programmed per slot), "
             f"{roles['static']} static; {p['arrays']} physical arrays, {p['cells']:,} cells",
             f"  latency      programming per slot {t['programming_s_per_slot'] * 1e9:.1f} ns "
             f"(expected over {s['programming']['per_slot']['draws']} channel draws), symbol "
             f"{t['symbol_s'] * 1e9:.1f} ns, per slot of {t['slot_symbols']} symbols "
             f"{t['per_slot_s'] * 1e9:.1f} ns",
             f"  static       program-and-verify once {t['static_programming_s'] * 1e6:.2f} us",
             _strategy_line(s),
             "mimoc inspect DIR shows the tables; mimoc ber DIR --c2c ... simulates it"]
    return "\n".join(lines)


def pass_log(records) -> str:
    """The passes that ran, one line each: nodes, FLOPs before -> after, time, what changed."""
    from mimoc.tables import text_table

    rows = [[r.name, f"{r.nodes_before:,} -> {r.nodes_after:,}",
             f"{r.flops_before.per_symbol:,} -> {r.flops_after.per_symbol:,}",
             f"{r.flops_before.per_slot:,} -> {r.flops_after.per_slot:,}",
             f"{r.seconds * 1e3:.1f}", "; ".join(r.notes)] for r in records]
    return text_table(rows, ["pass", "nodes", "FLOPs per symbol", "FLOPs per slot", "ms",
                             "what changed"], right={1, 2, 3, 4}, indent="  ")


def _strategy_line(schedule) -> str:
    from mimoc.commands.strategy_search import strategy_summary

    return strategy_summary(schedule)


def iree_summary(result) -> str:
    m = result.manifest
    sizes = ",".join(f"{k}={v}" for k, v in m["static_shapes"].items())
    return "\n".join(line for line in [
        f"compiled {m['model'].get('name')} for IREE ({m['iree']['cpu']}, "
        f"{m['iree']['triple']}, {sizes}) -> {result.path}/ (slot.vmfb, symbol.vmfb, "
        "detector.vmfb, manifest.json)", result.report(),
        f"per symbol {m['flops']['per_symbol']} FLOPs; mimoc ber / bench / budget run it "
        "on a CPU of this architecture"] if line)


#: the text summary of each built-in target's artifact (another target prints its
#: manifest as JSON)
SUMMARIES = {"onnx": onnx_summary, "crossbar": crossbar_summary, "iree": iree_summary}


def resolve_target(name: str, options: dict) -> str:
    """``--target NAME``: a registered target's name, or a shorthand of the shared target
    names (``onnx-w4:minmax``, ``crossbar:ftj-luo2022``), whose lowering, method and device
    are merged into ``options``; a list, a target that does not compile (a processor,
    mmse) or a shorthand that contradicts an explicit flag is a one-line UsageError."""
    from mimoc.studies.budget.target_names import canonical_name, parse_target
    from mimoc.targets import TARGETS

    name = canonical_name(name)
    if name in TARGETS:
        return name
    if "," in name:
        raise UsageError(f"--target {name!r}: compile takes one target; run it once per "
                         "target (or use 'mimoc budget --target LIST')")
    spec = parse_target(name)
    if spec.kind == "onnx-cpu":
        target, implied = "onnx", {"lowering": spec.lowering, "quant": spec.quant}
    elif spec.kind == "crossbar":
        target, implied = "crossbar", {"device": name.partition(":")[2] or None}
    else:
        raise UsageError(f"--target {name!r} is not a compile target ({spec.kind}); compile "
                         f"for {', '.join(TARGETS)}, onnx-w4[:METHOD], onnx-w4a4[:METHOD], "
                         "onnx-int8[:METHOD] or crossbar:DEVICE")
    for key, value in implied.items():
        if value is None:
            continue
        given = options.get(key)
        if given is not None and given != value:
            raise UsageError(f"--target {name} means --{key} {value}, but --{key} {given} is "
                             f"given; drop one of them")
        options[key] = value
    return target


def run(args: argparse.Namespace) -> int:
    from mimoc.api import compile as compile_model
    from mimoc.fileio import refuse_input_overwrite

    if args.passes is not None and not args.passes.strip():
        raise UsageError("--passes is empty; give e.g. --passes canonicalize,split-channel")

    def dump(name: str, text: str) -> None:
        print(f"# IR after {name}\n{text}", file=sys.stderr)

    # the shared flags with a default (--slot, --array) reach the target only when given:
    # a target refuses the options of another (their defaults are the crossbar's own)
    options = {name: getattr(args, name, None) for name in TARGET_FLAGS
               if name not in ("slot", "array") or flags.given(args, name)}
    target = resolve_target(flags.warn_deprecated_targets(args, args.target), options)
    refuse_input_overwrite(args.output, [args.model])  # even with --force
    searching = any(getattr(args, k, None) is not None
                    for k in ("budget_us", "max_loss_db", "target_ser"))
    if searching:
        from mimoc.commands.strategy_search import check_search_flags

        check_search_flags(args, target)
    start = time.perf_counter()
    result = compile_model(args.model, target=target,
                           out=None if searching else args.output, passes=args.passes,
                           dump_after=args.dump_after, on_dump=dump, force=args.force,
                           options=pass_options(args), progress=not args.no_progress,
                           **options)
    if searching:
        from mimoc.commands.strategy_search import search_and_write

        result = search_and_write(result, args)
    seconds = time.perf_counter() - start
    summary = SUMMARIES.get(result.target)
    if args.json or summary is None:
        from mimoc.targets import get_target

        index = get_target(result.target).artifact_index
        manifest = (json.loads((result.path / index).read_text()) if index
                    else dict(result.manifest))
        manifest.pop("program", None)  # the crossbar's lowered program: see mimoc inspect
        from mimoc.commands.json_output import print_json

        print_json(NAME, args, {"path": str(result.path), "target": result.target,
                                "artifact": manifest})
    else:
        print(summary(result, seconds))
        if args.verbose:
            print("passes\n" + pass_log(result.pipeline.records))
    return 0
