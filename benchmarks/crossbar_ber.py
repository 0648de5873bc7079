"""Error rates of the example DetNet on memristor crossbars under C2C variation (issue 6).

The example DetNet (``examples/models/detnet_8x16_qpsk.pt``, standard training)
and its noise-aware fine-tune (``detnet_8x16_qpsk_noiseaware.pt``,
``examples/train_noise_aware.py``) are compiled for the crossbar target
(``--device``, default ``ftj-luo2022``, the IM-MIMO paper's target device;
128x128 arrays; 14-symbol slots) and run through mimoc's IMC simulator
(``mimoc.runtime.imc``): static weights programmed once with write-verify,
the channel arrays (``H`` and ``H^T``) programmed every slot without
verification with cycle-to-cycle variation ``c2c`` per pulse, 8-bit ADCs and
DACs (the device profile's). Link: 8x16 QPSK, i.i.d. Rayleigh, perfect CSI,
per-stream SNR, the examples' training link. Parts 2 and 3 are two ``mimoc sweep``
runs (``examples/sweeps/crossbar_ber.toml`` and ``crossbar_c2c.toml``, built here from
the arguments): every detector of one SNR point sees the same channel and noise draws,
the crossbar engines' programming noise is seeded per work unit (seed 0), the artifacts
are compiled once for both, and ``--workers N`` runs them on N Ray workers with the
same numbers; ``--sweep-dir DIR`` keeps their journals, so that a rerun resumes.

What it prints:

1. a check that the simulator with an ideal device equals the PyTorch model;
2. SER and BER vs SNR of both models: digital (PyTorch) and on the crossbar
   at C2C 0, 1, 2, 3, 4%;
3. at a fixed SNR (``--snr``, default 0 dB), SER vs C2C on a finer grid and
   the C2C level each model tolerates before its SER doubles, against two
   references: the digital baseline (the standard model in PyTorch, what the
   paper's Fig. 5 compares with) and the model's own crossbar SER at C2C 0;
   the ratio of the two models' tolerances (the paper: 2.7x, 0.75% -> 2%).

The tolerance is interpolated between the two sweep points that bracket
``2 x reference``, linearly in C2C and in log SER.

Figures (``--figures``): ``crossbar_ber_standard.png``,
``crossbar_ber_noiseaware.png`` (BER vs SNR), ``crossbar_c2c_tolerance.png``
(SER vs C2C at the fixed SNR).

Usage::

    python benchmarks/crossbar_ber.py [--quick] [--device ftj-luo2022] [--snr 0]
        [--workers N] [--sweep-dir DIR]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch

from mimoc.detectors import load_checkpoint
from mimoc.fileio import atomic_write
from mimoc.runtime.imc import load_schedule
from mimoc.sim.ber import BERResult
from mimoc.sim.channels import CSIModel, parse_channel
from mimoc.sim.system import MIMOSystem
from mimoc.studies.plots import plot_error_rates
from mimoc.studies.sweep.run import compile_cached, execute_sweep
from mimoc.studies.sweep.spec import LINK_DEFAULTS, RUN_DEFAULTS, SweepSpec

ROOT = Path(__file__).resolve().parent.parent
MODELS = {"standard": "detnet_8x16_qpsk.pt", "noise-aware": "detnet_8x16_qpsk_noiseaware.pt"}
FIGURE_NAMES = {"standard": "crossbar_ber_standard.png",
                "noise-aware": "crossbar_ber_noiseaware.png"}
C2C_CURVES = (0.0, 0.01, 0.02, 0.03, 0.04)
C2C_SWEEP = (0.0, 0.0025, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.0175, 0.02, 0.025, 0.03,
             0.04)
SNR_GRID = (-6.0, -4.0, -2.0, 0.0, 2.0)
ARRAY = "128x128"


def crossing(levels, sers, reference: float) -> float | None:
    """The C2C level where ``sers`` first reaches ``2 * reference``.

    Linear in C2C and in ``log10(SER)`` between the two bracketing sweep
    points; ``None`` if the sweep never reaches it; the first level if it
    starts there.
    """
    target = 2.0 * reference
    if sers[0] >= target:
        return levels[0]
    for (c0, s0), (c1, s1) in zip(zip(levels, sers, strict=True),
                                  zip(levels[1:], sers[1:], strict=True), strict=True):
        if s0 < target <= s1:
            if s0 <= 0:
                return c1
            f = (math.log10(target) - math.log10(s0)) / (math.log10(s1) - math.log10(s0))
            return c0 + f * (c1 - c0)
    return None


def label(model: str, c2c: float | None) -> str:
    return f"{model} digital" if c2c is None else f"{model} xbar c2c {c2c:.2%}"


def fmt(value: float | None, spec: str = ".3e") -> str:
    return "n/a" if value is None else format(value, spec)


def plot_tolerance(levels, sers: dict[str, list[float]], references: dict[str, float],
                   snr: float, device: str, path: Path) -> Path:
    """SER vs C2C per model, with each model's 2x-reference line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for (name, values), color in zip(sers.items(), ("tab:blue", "tab:orange"), strict=False):
        ax.semilogy([100 * c for c in levels], values, "o-", color=color, label=name)
    ax.axhline(2 * references["digital baseline"], color="gray", ls="--",
               label="2 x digital baseline SER")
    ax.set_xlabel("C2C variation per programming pulse [% of Gmax - Gmin]")
    ax.set_ylabel("Symbol error rate (SER)")
    ax.set_title(f"DetNet 8x16 QPSK on {device} crossbars, {snr:g} dB per stream")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=120)
    return path


def subset(result: BERResult, names: list[str]) -> BERResult:
    return BERResult(result.system, {n: result.curves[n] for n in names}, result.seed,
                     result.max_symbols, result.min_errors, result.batch_size)


def sweep_spec(args, levels, snrs, symbols: int) -> SweepSpec:
    """Both models, digital and on the crossbar at ``levels``, as one ``mimoc sweep``."""
    return SweepSpec(models=[args.models / file for file in MODELS.values()],
                     targets=["pytorch", "crossbar"], devices=[args.device], arrays=[ARRAY],
                     c2c=list(levels), snr=list(snrs), link={**LINK_DEFAULTS, "slot": 14},
                     run={**RUN_DEFAULTS, "max_symbols": symbols, "min_errors": 10**9})


def run_labelled(spec: SweepSpec, out: Path, args) -> BERResult:
    """Run ``spec`` (resumable in ``out``) and name its curves as this script prints them."""
    names = {}
    for name, file in MODELS.items():
        stem = Path(file).stem
        names[f"{stem}/pytorch"] = label(name, None)
        for c2c in spec.c2c:
            names[f"{stem}/crossbar-{args.device}-{ARRAY}@c2c={c2c:g}"] = label(name, c2c)
    _, (result,) = execute_sweep(spec, out, workers=args.workers, resume=True, plots=False,
                                 progress=True, artifacts_dir=out.parent / "artifacts")
    order = [label(name, c) for name in MODELS for c in (None, *spec.c2c)]
    curves = {names[n]: points for n, points in result.curves.items()}
    return BERResult(result.system, {n: curves[n] for n in order}, result.seed,
                     result.max_symbols, result.min_errors, result.batch_size)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=ROOT / "examples" / "models")
    parser.add_argument("--device", default="ftj-luo2022")
    parser.add_argument("--snr", type=float, default=0.0,
                        help="SNR of the C2C sweep, dB per stream (default 0)")
    parser.add_argument("--symbols", type=int, default=300_000,
                        help="symbols per SNR point of the curves (default 300000)")
    parser.add_argument("--sweep-symbols", type=int, default=600_000,
                        help="symbols per C2C level of the sweep (default 600000)")
    parser.add_argument("--figures", type=Path, default=ROOT / "benchmarks" / "figures")
    parser.add_argument("--quick", action="store_true", help="few symbols: a smoke run")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1,
                        help="Ray workers of the two sweeps (default 1: this process)")
    parser.add_argument("--sweep-dir", type=Path, default=None,
                        help="keep the sweeps' folders (artifacts, journals) here; a rerun "
                             "resumes them (default: a temporary folder)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.symbols, args.sweep_symbols = 5_600, 5_600

    system = MIMOSystem(8, 16, "qpsk", parse_channel("rayleigh"), CSIModel.parse("perfect"),
                        "per-stream", slot=14)
    print("link: 8x16 qpsk, rayleigh, perfect CSI, per-stream SNR, 14-symbol slots, seed 0")
    print(f"crossbar: {args.device}, 128x128 arrays, analog accumulation, device ADC/DAC bits")
    models = {name: load_checkpoint(args.models / file).model for name, file in MODELS.items()}
    with tempfile.TemporaryDirectory(prefix="mimoc-xbar-ber-") as tmp:
        root = args.sweep_dir or Path(tmp)
        curves_spec = sweep_spec(args, C2C_CURVES, SNR_GRID, args.symbols)
        schedules = {}
        for (name, file), curve in zip(MODELS.items(), [
                c for c in curves_spec.curves() if c.target == "crossbar" and c.c2c == 0.0],
                strict=True):
            start = time.perf_counter()
            # the sweeps' own compile cache: they reuse these artifacts
            schedules[name] = load_schedule(compile_cached(curve, root / "artifacts"))
            print(f"compiled {file} in {time.perf_counter() - start:.0f} s")

        # [1] the ideal device reproduces the PyTorch model
        gen = torch.Generator().manual_seed(5)
        batch = system.sample(64, 0.0, gen, torch.float64)
        print("\n[1] ideal device vs PyTorch (64 slots x 14 symbols, 0 dB)")
        for name, model in models.items():
            with torch.no_grad():
                ref = model.double()(batch.H_est, batch.y)
            model.float()
            got = schedules[name].detect(batch.H_est, batch.y, ideal=True).double()
            print(f"  {name:12s} max |x_hat_imc - x_hat_torch (float64)| = "
                  f"{float((got - ref).abs().max()):.2e}")

        # [2] curves: examples/sweeps/crossbar_ber.toml
        start = time.perf_counter()
        curves = run_labelled(curves_spec, root / "curves", args)
        print(f"\n[2] SER / BER vs SNR ({args.symbols} symbols per point; "
              f"{time.perf_counter() - start:.0f} s)")
        names = list(curves.curves)
        print("  " + "detector".ljust(30) + "".join(f"{s:>11g}" for s in SNR_GRID))
        for metric in ("ser", "ber"):
            print(f"  {metric.upper()}")
            for n in names:
                print("  " + n.ljust(30) + "".join(
                    f"{getattr(p, metric):11.3e}" for p in curves.curves[n]))
        args.figures.mkdir(parents=True, exist_ok=True)
        for name in models:
            picked = [n for n in names if n.startswith(name + " ")]
            if name == "noise-aware":
                picked = [label("standard", None)] + picked
            path = plot_error_rates(subset(curves, picked), args.figures / FIGURE_NAMES[name])
            print(f"  wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")

        # [3] C2C sweep at a fixed SNR: examples/sweeps/crossbar_c2c.toml
        start = time.perf_counter()
        sweep = run_labelled(sweep_spec(args, C2C_SWEEP, [args.snr], args.sweep_symbols),
                             root / "c2c", args)
        print(f"\n[3] SER vs C2C at {args.snr:g} dB ({args.sweep_symbols} symbols per level, "
              f"{time.perf_counter() - start:.0f} s)")
        point = {n: pts[0] for n, pts in sweep.curves.items()}
        digital = point[label("standard", None)].ser
        print(f"  digital baseline (standard model, PyTorch): SER {digital:.3e} "
              f"95% CI [{point[label('standard', None)].ser_ci[0]:.3e}, "
              f"{point[label('standard', None)].ser_ci[1]:.3e}]")
        print(f"  noise-aware model in PyTorch:               SER "
              f"{point[label('noise-aware', None)].ser:.3e}")
        print("  " + "C2C".ljust(8) + "".join(f"{name:>30s}" for name in models))
        sers = {name: [point[label(name, c)].ser for c in C2C_SWEEP] for name in models}
        for c in C2C_SWEEP:
            cells = []
            for name in models:
                p = point[label(name, c)]
                cells.append(f"{p.ser:.3e} [{p.ser_ci[0]:.2e},{p.ser_ci[1]:.2e}]")
            print("  " + f"{c:.2%}".ljust(8) + "".join(f"{cell:>30s}" for cell in cells))
        print("\n  C2C tolerated before the SER doubles")
        tolerance = {}
        for name in models:
            own = sers[name][0]
            tolerance[name] = (crossing(C2C_SWEEP, sers[name], digital),
                               crossing(C2C_SWEEP, sers[name], own))
            print(f"  {name:12s} vs digital baseline ({2 * digital:.3e}): "
                  f"{fmt(tolerance[name][0] and 100 * tolerance[name][0], '.2f')}%   "
                  f"vs own C2C-0 SER ({2 * own:.3e}): "
                  f"{fmt(tolerance[name][1] and 100 * tolerance[name][1], '.2f')}%")
        for i, ref in enumerate(("digital baseline", "own C2C-0 SER")):
            a, b = tolerance["standard"][i], tolerance["noise-aware"][i]
            ratio = f"{b / a:.2f}x" if a and b else "n/a"
            print(f"  noise-aware / standard tolerance ({ref}): {ratio} (paper: 2.7x)")
        path = plot_tolerance(C2C_SWEEP, sers, {"digital baseline": digital}, args.snr,
                              args.device, args.figures / "crossbar_c2c_tolerance.png")
        print(f"  wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
