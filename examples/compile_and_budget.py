"""Compile a detector for an edge CPU and for a memristor crossbar, check both against the
PyTorch model, then compare their latency budgets with the reference processors.

With the Python API, the same steps as::

    mimoc compile MODEL --target onnx -o OUT/onnx
    mimoc compile MODEL --target crossbar --device ftj-luo2022 -o OUT/crossbar
    mimoc budget MODEL --target onnx,crossbar:ftj-luo2022,dsp-c6678,...

Usage::

    python examples/compile_and_budget.py                       # the bundled 8x16 DetNet
    python examples/compile_and_budget.py --model my.pt --out /tmp/mine --budget-us 50

The crossbar step is skipped (and said so) in a build of mimoc without the crossbar target.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

import mimoc
from mimoc.studies.budget import format_budget, run_budget

HERE = Path(__file__).resolve().parent
MODEL = HERE / "models" / "detnet_8x16_qpsk.pt"


def compile_and_check(model_path: Path, out: Path, device: str) -> list[str]:
    """Compile for both targets; print how far each artifact is from the PyTorch model.

    Returns the budget targets that compiled.
    """
    model = mimoc.load_detector(model_path)
    c = model.config
    system = mimoc.MIMOSystem(nt=c.nt, nr=c.nr, modulation=c.modulation, slot=14)
    batch = system.sample(64, 10.0, torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = model(batch.H_est, batch.y)

    onnx = mimoc.compile(model_path, target="onnx", out=out / "onnx", force=True)
    x_onnx = mimoc.load_artifact(onnx.path).detect(batch.H_est, batch.y)
    print(f"onnx: {onnx.path}/ ({onnx.manifest['flops']['per_symbol']:,} FLOPs per "
          f"symbol); max |x_hat - PyTorch| = {(x_onnx - reference).abs().max():.2e}")
    targets = ["onnx"]

    from mimoc.runtime.imc import load_schedule

    xbar = mimoc.compile(model_path, target="crossbar", out=out / "crossbar", force=True,
                         device=device, slot=14)
    schedule = load_schedule(out / "crossbar")
    totals = schedule.totals
    ideal = schedule.detect(batch.H_est, batch.y, c2c=0.0, seed=0)
    print(f"crossbar:{device}: {xbar.path}/ (programming {totals['programming_s_per_slot']:.3g}"
          f" s per slot, {totals['symbol_s']:.3g} s per symbol); max |x_hat - PyTorch| "
          f"without programming noise = {(ideal.float() - reference).abs().max():.2e} "
          "(the device's states and converters quantise)")
    targets.append(f"crossbar:{device}")
    return targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=MODEL, help="a mimoc checkpoint")
    parser.add_argument("--out", type=Path, default=None,
                        help="where the artifacts go (default: a temporary directory)")
    parser.add_argument("--device", default="ftj-luo2022", help="crossbar device")
    parser.add_argument("--budget-us", type=float, default=100.0, help="budget per slot")
    parser.add_argument("--max-symbols", type=int, default=20_000,
                        help="symbols for each target's SER estimate")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        targets = compile_and_check(args.model, out, args.device)
        report = run_budget(args.model, targets + ["dsp-c6678", "fpga-k7-480t",
                                                   "jetson-orin-nx"],
                            budget_s=args.budget_us * 1e-6, ser_symbols=args.max_symbols)
    print()
    print(format_budget(report))
    fits = [row.target for row in report.rows if row.meets_budget]
    print(f"\nwithin {args.budget_us:g} us per slot: {', '.join(fits) or 'none'}")


if __name__ == "__main__":
    main()
