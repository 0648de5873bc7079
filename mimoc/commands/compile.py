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

Passes run in the order given (default: canonicalize,split-channel); the ONNX target
then applies its own lowering (onnx-fuse). --dump-after PASS prints the IR after a
pass (or 'frontend', or 'all') to stderr. The directory is written atomically: a
failed or interrupted compile leaves nothing; the same input gives byte-identical
files.

Quantized ONNX (--quant METHOD, or a checkpoint from 'mimoc quantize', which carries
its recipe): the quantize pass runs first, then --lowering picks the kernels:
  w4     4-bit weights as com.microsoft.MatMulNBits, inputs quantized to int8 inside the
         kernel (fast; not bit-faithful to 4-bit activations; default for 4-bit methods)
  w4a4   4-bit weights, the recipe's 4-bit activation quantizers emulated in-graph
         (reproduces the quantized PyTorch model)
  int8   int8 weights (MatMulIntegerToFloat / DynamicQuantizeMatMul), static 8-bit inputs
         by QuantizeLinear (default for --quant int8)
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
  mimoc compile rwesnet.pt -o out/r --passes canonicalize,remove-layers,split-channel \\
      --keep-layers 6 --json
  mimoc compile mydetector.pt2 -o out/mine --dump-after split-channel
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL",
                        help="mimoc checkpoint (.pt) or torch.export program (.pt2)")
    parser.add_argument("--target", default="onnx", choices=["onnx", "crossbar"],
                        help="target (default: onnx, fp32; crossbar: memristor arrays, see "
                             "the crossbar options below and docs/crossbar.md)")
    parser.add_argument("-o", "--output", required=True, metavar="DIR",
                        help="artifact directory to write")
    parser.add_argument("--passes", default=None, metavar="LIST",
                        help="comma-separated passes in order (default: "
                             "canonicalize,split-channel,hoist-conv-rows,split-linear)")
    parser.add_argument("--dump-after", default="", metavar="PASS[,PASS]",
                        help="print the IR after these passes (frontend, a pass name, all)")
    add_pass_option_arguments(parser)
    parser.add_argument("--quant", default=None, metavar="METHOD",
                        choices=["kaq", "kaq-ptq", "lsq", "minmax", "int8"],
                        help="quantize: kaq|kaq-ptq|lsq|minmax|int8 (kaq and lsq need a "
                             "checkpoint from 'mimoc quantize')")
    parser.add_argument("--lowering", default=None, choices=["w4", "w4a4", "int8"],
                        help="quantized kernels: w4 (fast, default for 4-bit), w4a4 "
                             "(faithful), int8")
    parser.add_argument("--bits", type=int, default=None, metavar="N",
                        help="bit width for a calibration method (2..8; default 4, int8: 8)")
    from mimoc.targets.crossbar.cli import add_crossbar_arguments

    add_crossbar_arguments(parser)
    parser.add_argument("--force", action="store_true",
                        help="replace an existing non-empty output directory")
    parser.add_argument("--json", action="store_true",
                        help="print the manifest as JSON instead of a summary")


def summary(result) -> str:
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


def run(args: argparse.Namespace) -> int:
    from mimoc.api import compile as compile_model

    if args.passes is not None and not args.passes.strip():
        raise UsageError("--passes is empty; give e.g. --passes canonicalize,split-channel")

    def dump(name: str, text: str) -> None:
        print(f"# IR after {name}\n{text}", file=sys.stderr)

    if args.target == "crossbar":
        from mimoc.targets.crossbar.cli import run_crossbar_compile

        return run_crossbar_compile(args, dump)
    from mimoc.targets.crossbar.cli import reject_crossbar_flags

    reject_crossbar_flags(args)
    result = compile_model(args.model, target=args.target, out=args.output, passes=args.passes,
                           dump_after=args.dump_after, on_dump=dump, force=args.force,
                           options=pass_options(args), quant=args.quant,
                           lowering=args.lowering, bits=args.bits, progress=True)
    if args.json:
        manifest = json.loads((result.path / "manifest.json").read_text())
        print(json.dumps({"path": str(result.path), **manifest}))
    else:
        print(summary(result))
    return 0
