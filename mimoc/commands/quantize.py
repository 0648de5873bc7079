"""``mimoc quantize MODEL.pt --method M -o MODEL_q.pt``: a quantized mimoc checkpoint."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from mimoc.commands import flags
from mimoc.errors import UsageError

NAME = "quantize"
HELP = "quantize a detector (KAQ, KAQ-PTQ, LSQ, min-max, int8) into a quantized checkpoint"
DESCRIPTION = """\
Quantize every Linear / Conv2d of a trained detector: weights per output channel
(symmetric, narrow range), layer inputs signed or unsigned (post-ReLU) as calibrated,
and write a quantized mimoc checkpoint (the fp32 weights plus every step, see
mimoc/quant/spec.py) that 'mimoc compile' lowers to quantized ONNX.

Methods:
  kaq      QAT from the trained weights: learned per-channel weight steps, dynamic
           input steps alpha * RMS(x) computed at run time (alpha learned), loss = the
           detector's task loss + lambda * sum of per-layer MMD^2 between full-precision
           and quantized layer outputs (Gaussian kernel, learned bandwidth)
  kaq-ptq  no training: per-layer step multipliers that minimise MMD^2 on calibration
           batches over the training SNR range (dynamic input steps)
  lsq      QAT with learned static steps, task loss only
  minmax   post-training, static steps from calibration min/max (nothing clipped)
  int8     minmax with 8-bit weights and inputs

DetNet / WeSNet blocks quantize their input as [H^T y - H^T H x, x, H^T H x, v] (the
gradient step gets the grid; the layer's weights absorb the change, exactly), for every
method; --no-input-difference quantizes [H^T y, x, H^T H x, v] as it is.

Calibration and training batches come from the model's own training link (channel,
CSI, SNR range, SNR convention stored in the checkpoint). The summary gives the
validation SER of the fp32 and of the quantized model on the same draws.

examples:
  mimoc quantize detnet.pt --method kaq -o detnet_kaq.pt
  mimoc quantize detnet_kaq.pt --method kaq --resume --steps 400 -o detnet_kaq800.pt
  mimoc quantize detnet.pt --method kaq --bits 3 --steps 600 --lambda 0.05 -o detnet_w3.pt
  mimoc quantize sdnet.pt --method kaq --lambda 0.02 --lambda-schedule cosine -o sdnet_q.pt
  mimoc quantize sdnet.pt --method kaq-ptq -o sdnet_ptq.pt --json
  mimoc quantize detnet.pt --method int8 -o detnet_int8.pt
  mimoc compile detnet_kaq.pt --lowering w4a4 -o out/detnet-w4a4
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mimoc.quant.spec import LAMBDA_SCHEDULES, METHODS

    parser.add_argument("model", metavar="MODEL.pt", help="a mimoc checkpoint (mimoc train)")
    parser.add_argument("--method", required=True, choices=METHODS,
                        help="kaq | kaq-ptq | lsq | minmax | int8")
    parser.add_argument("--bits", type=int, default=None, metavar="N",
                        help="weight and input bits, 2..8 (default 4; int8: 8)")
    parser.add_argument("--steps", type=int, default=None, metavar="N",
                        help="fine-tuning steps of kaq / lsq (default 300)")
    parser.add_argument("--lambda", dest="lam", type=float, default=None, metavar="X",
                        help="weight of the MMD^2 term (kaq; default 0.1)")
    parser.add_argument("--lambda-schedule", dest="lam_schedule", default="constant",
                        choices=LAMBDA_SCHEDULES,
                        help="constant lambda (default), or cosine: lambda decays to 0 over "
                             "the run so the last steps train on the task loss alone (kaq)")
    parser.add_argument("--lr", type=float, default=1e-4, metavar="X",
                        help="learning rate of the weights during kaq / lsq (default 1e-4; "
                             "the steps learn at 1e-2, relative)")
    parser.add_argument("--act-mode", default=None, choices=["dynamic", "static"],
                        help="override the input-step mode of kaq / kaq-ptq / lsq")
    parser.add_argument("--input-difference", action=argparse.BooleanOptionalAction,
                        default=True,
                        help="code DetNet/WeSNet block inputs as H^T y - H^T H x before "
                             "quantizing them (default: on)")
    parser.add_argument("--resume", action="store_true",
                        help="MODEL is a quantized checkpoint (kaq / lsq): continue its "
                             "fine-tuning from its steps and weights for --steps more")
    flags.add(parser, "seed", NAME, help="seed of the calibration and training draws")
    parser.add_argument("-o", "--output", required=True, metavar="PATH.pt",
                        help="quantized checkpoint to write (atomically); an existing file "
                             "only with --force, never MODEL itself")
    parser.add_argument("--force", action="store_true", help="replace an existing -o file")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (shown only when stderr is a terminal)")
    flags.add(parser, "threads", NAME, help="CPU threads for torch (1: bit-reproducible; "
                                            "raise it for kaq / lsq training)")


def summary_line(recipe, output: Path) -> str:
    """One line: method, bits, layers, steps, validation SER before/after, output."""
    info = recipe.info

    def ser(value) -> str:
        return "n/a" if value is None else f"{value:.4g}"

    steps = f"{info['steps']} steps" if "steps" in info else "no training"
    lo, hi = info["snr_db"]
    return (f"{recipe.method} W{recipe.bits}A{recipe.bits}: {len(recipe.layers)} layers, "
            f"{steps}, validation SER {ser(info['val_ser_fp32'])} (fp32) -> "
            f"{ser(info['val_ser'])} over {info['val_slots']} slots at {lo:g}..{hi:g} dB; "
            f"wrote {output} in {info['seconds']:.1f} s")


def run(args: argparse.Namespace) -> int:
    import torch

    from mimoc.detectors.checkpoint import load_checkpoint
    from mimoc.fileio import check_output_file, write_error
    from mimoc.quant import options_from_training, quantize, save_quantized

    output = check_output_file(args.output, inputs=[args.model], force=args.force)  # claimed
    if args.lam is not None and not math.isfinite(args.lam):
        raise UsageError(f"--lambda must be a finite number >= 0, got {args.lam}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise UsageError(f"--lr must be a finite number > 0, got {args.lr}")
    torch.set_num_threads(flags.positive("--threads", args.threads))
    checkpoint = load_checkpoint(args.model)
    init = None
    if args.resume:
        from mimoc.quant import load_quantized

        _, init = load_quantized(args.model)  # checks the recipe against the model
        if init is None:
            raise UsageError(f"--resume needs a quantized checkpoint; {args.model} has no "
                             f"quantization section")
    recipe = quantize(checkpoint.model, args.method, bits=args.bits, steps=args.steps,
                      seed=args.seed, progress=not args.no_progress,
                      options=options_from_training(checkpoint.training), lam=args.lam,
                      act_mode=args.act_mode, lr=args.lr, init=init,
                      difference=args.input_difference, lam_schedule=args.lam_schedule)
    try:
        save_quantized(checkpoint.model, recipe, output, training=checkpoint.training)
    except OSError as err:  # a full disk, a folder made read-only meanwhile
        raise write_error(output, err) from None
    if args.json:
        from mimoc.commands.json_output import print_json

        info = {k: v for k, v in recipe.info.items() if k not in ("history", "search")}
        layers = {name: {"weight_bits": lq.weight_bits,
                         "act": None if lq.act is None else {
                             "bits": lq.act.bits, "mode": lq.act.mode, "alpha": lq.act.alpha,
                             "signed": lq.act.signed},
                         "difference": None if lq.difference is None else list(lq.difference)}
                  for name, lq in recipe.layers.items()}
        print_json(NAME, args, {"output": str(output), "method": recipe.method,
                                "bits": recipe.bits, "layers": layers,
                                **{k: v for k, v in info.items()
                                   if k not in ("method", "bits", "layers")},
                                "layer_count": len(recipe.layers)})
    else:
        print(summary_line(recipe, output))
    sys.stdout.flush()
    return 0
