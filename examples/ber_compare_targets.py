"""Error rates of one detector on every target, on the same channel and noise draws.

Curves: the PyTorch model, its fp32 ONNX artifact, its 4-bit-weight ONNX artifact (min-max
calibration, MatMulNBits) and the crossbar schedule in the IMC simulator at several
cycle-to-cycle (C2C) levels; MMSE as the classical reference. A target that this build of
mimoc lacks is skipped with the reason. Prints the table and writes a BER plot.

Usage::

    python examples/ber_compare_targets.py                        # bundled 8x16 DetNet
    python examples/ber_compare_targets.py --snr=-4,-2,0,2 --max-symbols 200000 --plot ber.png
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import mimoc
from mimoc.commands.ber import format_table, parse_snr_list
from mimoc.sim.ber import classical, from_module, simulate
from mimoc.studies.plots import plot_error_rates

HERE = Path(__file__).resolve().parent
MODEL = HERE / "models" / "detnet_8x16_qpsk.pt"


def target_detectors(model_path: Path, out: Path, device: str, c2c: list[float]) -> dict:
    """name -> engine detector for each target."""
    detectors = {}
    fp32 = mimoc.compile(model_path, target="onnx", out=out / "fp32", force=True)
    detectors["onnx fp32"] = mimoc.load_artifact(fp32.path).engine()
    w4 = mimoc.compile(model_path, target="onnx", out=out / "w4", force=True,
                       quant="minmax", lowering="w4")
    detectors["onnx w4 (min-max)"] = mimoc.load_artifact(w4.path).engine()
    from mimoc.runtime.imc import load_schedule

    mimoc.compile(model_path, target="crossbar", out=out / "xbar", force=True, device=device)
    schedule = load_schedule(out / "xbar")
    for level in c2c:
        detectors[f"{device} C2C {100 * level:g}%"] = schedule.engine(c2c=level, seed=0)
    return detectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=MODEL, help="a mimoc checkpoint")
    parser.add_argument("--snr", default="-4:2:2", help="SNR points in dB (per stream)")
    parser.add_argument("--c2c", default="0,0.02,0.04", help="crossbar C2C levels")
    parser.add_argument("--device", default="ftj-luo2022", help="crossbar device")
    parser.add_argument("--max-symbols", type=int, default=40_000, help="symbols per point")
    parser.add_argument("--plot", default=None, help="write the BER plot here (.png)")
    args = parser.parse_args()

    model = mimoc.load_detector(args.model)
    c = model.config
    system = mimoc.MIMOSystem(nt=c.nt, nr=c.nr, modulation=c.modulation, slot=14)
    with tempfile.TemporaryDirectory() as tmp:
        detectors = {"mmse": classical("mmse", system.constellation),
                     "pytorch": from_module(model)}
        detectors.update(target_detectors(args.model, Path(tmp), args.device,
                                          [float(v) for v in args.c2c.split(",")]))
        result = simulate(detectors, system, parse_snr_list(args.snr), seed=0,
                          max_symbols=args.max_symbols)
    print(format_table(result))
    if args.plot:
        print(f"plot written to {plot_error_rates(result, args.plot)}")


if __name__ == "__main__":
    main()
