"""``mimoc compile``: a trained detector -> an ONNX artifact directory."""

from __future__ import annotations

import argparse
import json
import sys

from mimoc.commands.pass_flags import add_pass_option_arguments, pass_options
from mimoc.errors import UsageError

NAME = "compile"
HELP = "compile a detector to ONNX for edge CPUs (slot.onnx, symbol.onnx, detector.onnx)"
DESCRIPTION = """\
Compile a trained detector into an artifact directory for onnxruntime:

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

Passes run in the order given (default: canonicalize,split-channel); the ONNX target
then applies its own lowering (onnx-fuse). --dump-after PASS prints the IR after a
pass (or 'frontend', or 'all') to stderr. The directory is written atomically: a
failed or interrupted compile leaves nothing; the same input gives byte-identical
files.

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
docs/crossbar.md.

examples:
  mimoc compile detnet.pt -o out/detnet
  mimoc compile detnet.pt --target crossbar --device ftj-luo2022 --array 128x128 -o out/xb
  mimoc compile detnet.pt -o out/detnet-w4 --quant minmax
  mimoc compile detnet_kaq.pt -o out/detnet-w4a4 --lowering w4a4
  mimoc compile detnet.pt -o out/detnet-int8 --quant int8
  mimoc compile detnet.pt -o out/detnet-mobile --static-shapes B=1,S=14
  mimoc compile rwesnet.pt -o out/r --passes canonicalize,remove-layers,split-channel \\
      --keep-layers 6 --json
  mimoc compile mydetector.pt2 -o out/mine --dump-after split-channel
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mimoc.targets import TARGETS

    parser.add_argument("model", metavar="MODEL",
                        help="mimoc checkpoint (.pt) or torch.export program (.pt2)")
    parser.add_argument("--target", default="onnx", choices=list(TARGETS),
                        help="target (default: onnx, fp32; crossbar: memristor arrays, see "
                             "the crossbar options below and docs/crossbar.md; iree: native "
                             "CPU code, docs/edge.md)")
    parser.add_argument("-o", "--output", required=True, metavar="DIR",
                        help="artifact directory to write")
    parser.add_argument("--passes", default=None, metavar="LIST",
                        help="comma-separated passes in order (default onnx: "
                             "canonicalize,split-channel,hoist-conv-rows,split-linear; "
                             "crossbar: canonicalize,split-channel,split-linear)")
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
                        help="print the manifest as JSON instead of a summary")


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
    group.add_argument("--array", default=None, metavar="RxC",
                       help="maximum array size, rows x columns (default 128x128)")
    group.add_argument("--slot", type=int, default=None, metavar="S",
                       help="symbols per coherence slot for the per-slot totals (default 14)")
    group.add_argument("--accumulation", default=None, choices=ACCUMULATIONS,
                       help="partial sums of row tiles: analog adder (default) or digital")
    group.add_argument("--static-clip", default=None, choices=STATIC_CLIPS,
                       help="w_clip of static weights: max-abs (default) or percentile")
    group.add_argument("--write-parallel", default=None, choices=WRITE_PARALLEL,
                       help="write circuits: one per tile (default), per matrix, or one")
    group.add_argument("--mc-draws", type=int, default=None, metavar="N",
                       help="channel draws for the expected programming time (default 32)")


#: the flags of every target, by their keyword in mimoc.compile (the target refuses those
#: that are not its own, naming the target they belong to)
TARGET_FLAGS = ("quant", "lowering", "bits", "static_shapes", "device", "array", "slot",
                "accumulation", "static_clip", "write_parallel", "mc_draws", "cpu")


def onnx_summary(result) -> str:
    m = result.manifest
    f = m["flops"]
    state = ", ".join(f"{s['name']} {s['shape']}" for s in m["slot_state"])
    lines = [f"compiled {m['model'].get('name')} -> {result.path}/ "
             f"(slot.onnx, symbol.onnx, detector.onnx, manifest.json)",
             result.report(),
             f"per symbol {f['per_symbol']} FLOPs, slot rate {f['slot_rate']} FLOPs, per slot "
             f"of {f['slot_symbols']} symbols {f['per_slot']} FLOPs",
             f"slot state: {state}"]
    q = m.get("quantization")
    if q:
        lines.append(f"quantized: {q['method']} {q['bits']}-bit, {q['layers']} layers, "
                     f"lowering {q['lowering']} (faithful: {q['faithful']})")
    return "\n".join(line for line in lines if line)


def crossbar_summary(result) -> str:
    s = result.schedule
    t, p = s["totals"], s["peripherals"]
    roles = {"static": 0, "channel": 0}
    for a in s["arrays"]:
        roles[a["role"]] += 1
    lines = [f"compiled {s['model'].get('name')} for crossbar ({s['device']['name']}, arrays "
             f"{s['config']['array'][0]}x{s['config']['array'][1]}) -> {result.path}/ "
             "(schedule.json, arrays.npz)",
             result.report(),
             f"tiles: {roles['channel']} channel (programmed per slot), {roles['static']} "
             f"static; {p['arrays']} physical arrays, {p['cells']:,} cells",
             f"programming per slot {t['programming_s_per_slot'] * 1e9:.1f} ns (expected over "
             f"{s['programming']['per_slot']['draws']} channel draws), symbol "
             f"{t['symbol_s'] * 1e9:.1f} ns, per slot of {t['slot_symbols']} symbols "
             f"{t['per_slot_s'] * 1e9:.1f} ns; static program-and-verify once "
             f"{t['static_programming_s'] * 1e6:.2f} us",
             "mimoc inspect DIR shows the tables; mimoc ber DIR --c2c ... simulates it"]
    return "\n".join(line for line in lines if line)


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


def run(args: argparse.Namespace) -> int:
    from mimoc.api import compile as compile_model

    if args.passes is not None and not args.passes.strip():
        raise UsageError("--passes is empty; give e.g. --passes canonicalize,split-channel")

    def dump(name: str, text: str) -> None:
        print(f"# IR after {name}\n{text}", file=sys.stderr)

    flags = {name: getattr(args, name, None) for name in TARGET_FLAGS}
    result = compile_model(args.model, target=args.target, out=args.output, passes=args.passes,
                           dump_after=args.dump_after, on_dump=dump, force=args.force,
                           options=pass_options(args), progress=True, **flags)
    summary = SUMMARIES.get(result.target)
    if args.json or summary is None:
        from mimoc.targets import get_target

        index = get_target(result.target).artifact_index
        manifest = (json.loads((result.path / index).read_text()) if index
                    else dict(result.manifest))
        manifest.pop("program", None)  # the crossbar's lowered program: see mimoc inspect
        print(json.dumps({"path": str(result.path), **manifest}))
    else:
        print(summary(result))
    return 0
