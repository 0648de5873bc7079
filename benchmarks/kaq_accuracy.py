"""Benchmark: accuracy of 4-bit quantized detectors, KAQ against LSQ and min-max (issue 5).

Models: the example DetNet (8x16 QPSK, Rayleigh, perfect CSI, trained at -6..4 dB) and the
example SDNet (8x32 QPSK, held-out multipath task 1004, LS CSI from 16 pilots at 8 dB,
trained at 4..12 dB), each on its own training link (the checkpoint's
``training["options"]``, as benchmarks/sdnet_learngene.py evaluates it).

Detectors, all W4A4 (4-bit per-channel weights, 4-bit layer inputs):

- ``fp32``: the trained model;
- ``kaq``: KAQ QAT (examples/models/*_kaq.pt, made by examples/quantize_models.py);
- ``kaq-ptq``: KAQ post-training (MMD-chosen multipliers; computed here, seconds);
- ``lsq``: LSQ QAT (examples/models/*_lsq.pt);
- ``minmax``: min-max post-training (computed here);
- ``ptq-plain`` (DetNet): ``kaq-ptq`` without the difference coding of the block input
  (``quantize(..., difference=False)``), to show what the coding buys without training.

DetNet's quantized models code each block's input as ``[H^T y - H^T H x, x, H^T H x, v]``
(mimoc/quant/spec.py, difference coding), all methods alike.

What it prints:

1. SER on an SNR grid, every detector on the same draws (one ``simulate`` call), with
   95% Wilson intervals, at the three report SNRs;
2. the SNR where each curve reaches the target SER (1e-3 for DetNet; 1e-2 for SDNet,
   whose LS-CSI link floors near 3e-3) by log-linear interpolation, with an interval from
   the curves of the intervals' bounds, and the gap to fp32; the acceptance check
   (KAQ within 0.5 dB of fp32 and closer than LSQ and min-max);
3. ablation (DetNet): dynamic vs static input steps, for PTQ (``kaq-ptq`` with dynamic
   vs static steps: same calibration, same MMD search) and for QAT (``kaq`` vs ``lsq``,
   which also differ by the MMD term; and ``*_kaq_static.pt`` when present: KAQ's
   training with static steps), SER and the RMS deviation of the soft output from fp32
   over a wide SNR range (training range -6..4 dB and beyond it).

Run from the repository root (one thread)::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/kaq_accuracy.py [--quick] [--only detnet]
        [--workers N]

``--workers N`` runs the Monte Carlo of [1] and [3] on N local Ray workers (the Ray
extra): every detector, trained or computed here, goes to them as a checkpoint file
(``save_quantized``), and the numbers printed are those of the serial run.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import torch

from mimoc.detectors.checkpoint import load_checkpoint, save_detector
from mimoc.quant import (
    QuantizedDetector,
    load_quantized,
    options_from_training,
    quantize,
    save_quantized,
)
from mimoc.sim.ber import BERPoint, from_module, simulate, snr_at

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "examples" / "models"


@dataclasses.dataclass
class Setup:
    source: str
    grid: tuple[float, ...]
    report: tuple[float, float, float]
    target: float
    max_symbols: int
    ablation_grid: tuple[float, ...] = ()


SETUPS = {
    "detnet": Setup("detnet_8x16_qpsk", (-2, -1, 0, 1, 2, 3), (-2, 0, 2), 1e-3, 160_000,
                    (-12, -8, -4, 0, 4, 8, 12)),
    "sdnet": Setup("sdnet_8x32_qpsk", (4, 8, 10, 12), (4, 8, 12), 1e-2, 96_000),
}
SEED = 5


def error_rates(pairs: dict, system, grid, max_symbols: int, workers: int):
    """SER/BER of every ``name: (model, recipe or None)`` on ``grid``, all on the same
    draws: here, or with ``workers > 1`` on Ray workers, each detector shipped as a
    checkpoint file (the workers rebuild it as this process would, so the counts are
    the same)."""
    settings = {"seed": SEED, "max_symbols": max_symbols, "min_errors": 10**9}
    if workers == 1:
        return simulate({k: from_module(detector(*pair)) for k, pair in pairs.items()},
                        system, grid, **settings)
    from mimoc.runtime.parallel import RayExecutor, file_spec

    specs, files = [], {}
    with tempfile.TemporaryDirectory() as folder:
        for k, (model, recipe) in pairs.items():
            path = Path(folder) / f"{len(specs)}.pt"
            if recipe is None:
                save_detector(model, path)
            else:
                save_quantized(model, recipe, path)
            spec, content = file_spec(k, "model", path)
            specs.append(spec)
            files[spec.digest] = content
    return simulate(dict.fromkeys(pairs), system, grid,
                    executor=RayExecutor(specs, system, files), **settings)


def detector(model, recipe):
    return model if recipe is None else QuantizedDetector(model, recipe).eval()


def crossing(points: list[BERPoint], target: float) -> tuple[float | None, float | None,
                                                              float | None]:
    """``(snr, lo, hi)`` at ``target``: the curve's, and those of its 95% bounds."""
    def bound(which: int) -> list[BERPoint]:
        return [dataclasses.replace(p, ser=p.ser_ci[which]) for p in points]

    return snr_at(points, target), snr_at(bound(0), target), snr_at(bound(1), target)


def fmt(value: float | None, spec: str = ".2f") -> str:
    return "n/a" if value is None else format(value, spec)


def load_variant(source: str, suffix: str):
    path = MODELS / f"{source}_{suffix}.pt"
    if not path.exists():
        raise SystemExit(f"{path} is missing; make it with: OMP_NUM_THREADS=1 python "
                         f"examples/quantize_models.py")
    return load_quantized(path)


def accuracy(name: str, setup: Setup, quick: bool, workers: int) -> None:
    checkpoint = load_checkpoint(MODELS / f"{setup.source}.pt")
    model = checkpoint.model
    options = options_from_training(checkpoint.training)
    system = options.system(model)
    start = time.perf_counter()
    ptq = quantize(model, "kaq-ptq", options=options, val_batch=0)
    minmax = quantize(model, "minmax", options=options, val_batch=0)
    pairs = {"fp32": (model, None), "kaq": load_variant(setup.source, "kaq"),
             "kaq-ptq": (model, ptq), "lsq": load_variant(setup.source, "lsq"),
             "minmax": (model, minmax)}
    if model.quant_input_differences():  # the difference coding's effect, without training
        pairs["ptq-plain"] = (model, quantize(model, "kaq-ptq", options=options, val_batch=0,
                                              difference=False))
    max_symbols = setup.max_symbols // (8 if quick else 1)
    result = error_rates(pairs, system, setup.grid, max_symbols, workers)
    print(f"\n== {name}: {setup.source}, {system.nt}x{system.nr} {system.modulation}, "
          f"channel {options.channel}, CSI {options.csi}, {system.snr_def} SNR; "
          f"{max_symbols} symbols per point, same draws for all "
          f"({time.perf_counter() - start:.0f} s)")
    print("[1] SER [95% CI]")
    header = "  detector | " + " | ".join(f"{s:g} dB" for s in setup.report)
    print(header)
    for det, points in result.curves.items():
        by_snr = {p.snr_db: p for p in points}
        cells = [f"{by_snr[s].ser:.3e} [{by_snr[s].ser_ci[0]:.2e}, {by_snr[s].ser_ci[1]:.2e}]"
                 for s in setup.report]
        print(f"  {det:8s} | " + " | ".join(cells))
    print("  full grid: " + ", ".join(f"{s:g}" for s in setup.grid) + " dB")
    for det, points in result.curves.items():
        print(f"  {det:8s} " + " ".join(f"{p.ser:.3e}" for p in points))
    print(f"[2] SNR at SER {setup.target:g} (dB) [from the 95% bounds], gap to fp32")
    ref = crossing(result.curves["fp32"], setup.target)[0]
    gaps = {}
    for det, points in result.curves.items():
        snr, lo, hi = crossing(points, setup.target)
        gaps[det] = None if snr is None or ref is None else snr - ref
        print(f"  {det:8s} {fmt(snr)} [{fmt(lo)}, {fmt(hi)}]  gap {fmt(gaps[det], '+.2f')}")
    kaq, lsq, mm = gaps["kaq"], gaps["lsq"], gaps["minmax"]
    if kaq is not None:
        closer = all(other is None or abs(kaq) < abs(other) for other in (lsq, mm))
        verdict = "pass" if abs(kaq) <= 0.5 and closer else "FAIL"
        print(f"  acceptance: KAQ gap {kaq:+.2f} dB (<= 0.5), closer than LSQ "
              f"({fmt(lsq, '+.2f')}) and min-max ({fmt(mm, '+.2f')}): {verdict}")


@torch.no_grad()
def soft_deviation(models: dict, system, snr: float, slots: int) -> dict[str, float]:
    """RMS of ``x_hat - x_hat_fp32`` over ``slots`` slots at ``snr``, per detector."""
    batch = system.sample(slots, snr, torch.Generator().manual_seed(SEED))
    ref = models["fp32"](batch.H_est, batch.y)
    return {k: float((m(batch.H_est, batch.y) - ref).square().mean().sqrt())
            for k, m in models.items() if k != "fp32"}


def ablation(setup: Setup, quick: bool, workers: int) -> None:
    checkpoint = load_checkpoint(MODELS / f"{setup.source}.pt")
    model = checkpoint.model
    options = options_from_training(checkpoint.training)
    system = options.system(model)
    pairs = {"fp32": (model, None), "kaq (dynamic)": load_variant(setup.source, "kaq"),
             "lsq (static)": load_variant(setup.source, "lsq")}
    if (MODELS / f"{setup.source}_kaq_static.pt").exists():
        pairs["kaq static"] = load_variant(setup.source, "kaq_static")
    else:
        print(f"\n(no {setup.source}_kaq_static.pt: the QAT static-step row is skipped; make "
              f"it with examples/quantize_models.py --variant kaq_static)")
    pairs |= {"ptq dynamic": (model, quantize(model, "kaq-ptq", options=options, val_batch=0)),
              "ptq static": (model, quantize(model, "kaq-ptq", act_mode="static",
                                             options=options, val_batch=0))}
    models = {k: detector(*pair) for k, pair in pairs.items()}
    max_symbols = 48_000 // (8 if quick else 1)
    result = error_rates(pairs, system, setup.ablation_grid, max_symbols, workers)
    lo, hi = options.snr_db
    print(f"\n[3] ablation: dynamic vs static input steps, {setup.source}, trained at "
          f"{lo:g}..{hi:g} dB; {max_symbols} symbols per point")
    print("  SER          " + " ".join(f"{s:>9g}" for s in setup.ablation_grid) + "  dB")
    for det, points in result.curves.items():
        print(f"  {det:13s}" + " ".join(f"{p.ser:9.2e}" for p in points))
    print("  SER / fp32 SER")
    ref = result.curves["fp32"]
    for det, points in result.curves.items():
        if det != "fp32":
            print(f"  {det:13s}" + " ".join(
                f"{p.ser / r.ser:9.2f}" if r.ser > 0 else f"{'n/a':>9s}"
                for p, r in zip(points, ref, strict=True)))
    print("  RMS soft-output deviation from fp32 (1024 slots per SNR)")
    rows = {k: [] for k in models if k != "fp32"}
    for snr in setup.ablation_grid:
        for k, v in soft_deviation(models, system, snr, 128 if quick else 1024).items():
            rows[k].append(v)
    for det, values in rows.items():
        print(f"  {det:13s}" + " ".join(f"{v:9.4f}" for v in values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1/8 of the symbols (smoke run)")
    parser.add_argument("--only", choices=sorted(SETUPS), action="append")
    parser.add_argument("--no-ablation", action="store_true")
    parser.add_argument("--workers", type=int, default=1,
                        help="Ray workers of the Monte Carlo (default 1: this process); the "
                             "same numbers")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    workers = max(1, args.workers)
    if workers > 1:
        from mimoc.runtime.parallel import start_ray

        start_ray(workers)
    try:
        for name in args.only or list(SETUPS):
            accuracy(name, SETUPS[name], args.quick, workers)
            if SETUPS[name].ablation_grid and not args.no_ablation:
                ablation(SETUPS[name], args.quick, workers)
    finally:
        if workers > 1:
            from mimoc.runtime.parallel import stop_ray

            stop_ray()
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
