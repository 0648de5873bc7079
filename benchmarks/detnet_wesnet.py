"""Benchmark of the example DetNet, WeSNet-HF-50% and R-WeSNet (issue 3 acceptance).

Link: 8x16 QPSK, i.i.d. Rayleigh, perfect CSI, per-stream SNR (the examples'
training link). Every detector of one SNR point sees the same channel and
noise draws (mimoc.sim.ber.simulate; the draws depend only on the seed and the
SNR, so separate runs at one SNR share them too).

What it prints:

1. SER curves of MMSE, the sphere decoder (exact ML), DetNet, WeSNet-HF-50% and
   R-WeSNet on an SNR grid;
2. at the SNR where MMSE's SER is 1e-2 (interpolated on the grid, then
   measured there with more symbols): every detector's SER and DetNet's gain
   over MMSE (target: at least 3x);
3. the SNR at which DetNet and ML reach SER 1e-3 and the gap (target: at most
   1.5 dB);
4. parameters and FLOPs (docs/design.md convention) of DetNet and WeSNet-HF-50%
   as deployed (zero-coefficient units pruned) and the savings;
5. R-WeSNet: per-block L1 norms, SER and FLOPs against the number of removed
   trailing blocks, next to the unregularised DetNet with the same blocks removed.

Usage::

    python benchmarks/detnet_wesnet.py [--models examples/models] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch

from mimoc.detectors import count_flops, load_detector
from mimoc.sim.ber import classical, from_module, simulate, snr_at
from mimoc.sim.system import MIMOSystem

MODELS = {
    "detnet": "detnet_8x16_qpsk.pt",
    "wesnet-hf50": "wesnet_hf50_8x16_qpsk.pt",
    "rwesnet": "rwesnet_8x16_qpsk.pt",
}


def ml_detector(constellation):
    """The sphere decoder (exact ML) for the engine."""
    try:
        return classical("sd", constellation)
    except Exception:  # noqa: BLE001 - registry without "sd": call the function directly
        from mimoc.sim.detectors.sphere import sphere

        return lambda H, y, noise_var: sphere(H, y, noise_var, constellation)


def fmt(value: float | None, spec: str = ".3e") -> str:
    return "n/a" if value is None else format(value, spec)


def print_curves(result, names) -> None:
    snrs = [p.snr_db for p in result.curves[names[0]]]
    print(f"{'SNR dB':>8}" + "".join(f"{name:>14}" for name in names))
    for i, snr in enumerate(snrs):
        print(f"{snr:8.1f}" + "".join(f"{result.curves[n][i].ser:14.3e}" for n in names))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path,
                        default=Path(__file__).resolve().parent.parent / "examples" / "models")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="fewer symbols (a smoke run)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()

    grid_symbols, point_symbols, min_errors = (
        (40_000, 80_000, 50) if args.quick else (480_000, 1_600_000, 400))
    models = {name: load_detector(args.models / file) for name, file in MODELS.items()}
    detnet, wesnet, rwesnet = models["detnet"], models["wesnet-hf50"], models["rwesnet"]
    cfg = detnet.config
    system = MIMOSystem(cfg.nt, cfg.nr, cfg.modulation)
    const = system.constellation
    print(f"link: {cfg.nt}x{cfg.nr} {cfg.modulation}, rayleigh, perfect CSI, per-stream SNR, "
          f"seed {args.seed}")
    for name, model in models.items():
        c = model.config
        extra = ""
        if name != "detnet":
            extra = (f", profile {c.profile} retained {c.retained:g}, "
                     f"l1_lambda {c.l1_lambda:g}")
        print(f"{name}: layers {c.layers}, hidden {c.hidden}, v {c.v_dim}, residual "
              f"{c.residual:g}{extra}")

    # 1. curves on a grid -------------------------------------------------------------
    engine = {"mmse": classical("mmse", const), "ml": ml_detector(const)}
    engine.update({name: from_module(model) for name, model in models.items()})
    names = list(engine)
    grid = [-6.0, -5.0, -4.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0]
    result = simulate(engine, system, grid, seed=args.seed, max_symbols=grid_symbols,
                      min_errors=min_errors)
    print("\nml = the sphere decoder (exact maximum likelihood)")
    print(f"\n[1] SER on the grid (up to {grid_symbols} symbols or {min_errors} errors "
          f"per detector and point)")
    print_curves(result, names)

    # 2. DetNet vs MMSE where MMSE's SER is 1e-2 -------------------------------------------
    snr_1e2 = snr_at(result.curves["mmse"], 1e-2)
    snr_1e2 = round(snr_1e2, 1)
    point = simulate(engine, system, [snr_1e2], seed=args.seed, max_symbols=point_symbols,
                     min_errors=10 * min_errors)
    print(f"\n[2] at {snr_1e2:.1f} dB (MMSE SER ~1e-2 on the grid), up to {point_symbols} "
          f"symbols")
    mmse_ser = point.curves["mmse"][0].ser
    for name in names:
        p = point.curves[name][0]
        print(f"  {name:12s} SER {p.ser:.3e}  95% CI [{p.ser_ci[0]:.3e}, {p.ser_ci[1]:.3e}]  "
              f"({p.errors} errors / {p.symbols} symbols)  MMSE/this {mmse_ser / p.ser:.2f}x")
    gain = mmse_ser / point.curves["detnet"][0].ser
    print(f"  DetNet gain over MMSE: {gain:.2f}x (target >= 3x): "
          f"{'PASS' if gain >= 3 else 'FAIL'}")

    # 3. distance to ML at SER 1e-3 ---------------------------------------------------------
    print("\n[3] SNR at SER 1e-3 (log-linear interpolation on the grid)")
    at_1e3 = {name: snr_at(result.curves[name], 1e-3) for name in names}
    for name in names:
        print(f"  {name:12s} {fmt(at_1e3[name], '.2f')} dB")
    if at_1e3["detnet"] is not None and at_1e3["ml"] is not None:
        gap = at_1e3["detnet"] - at_1e3["ml"]
        print(f"  DetNet - ML gap: {gap:.2f} dB (target <= 1.5 dB): "
              f"{'PASS' if gap <= 1.5 else 'FAIL'}")
    for name in ("wesnet-hf50", "rwesnet"):
        if at_1e3[name] is not None and at_1e3["detnet"] is not None:
            print(f"  {name} - DetNet: {at_1e3[name] - at_1e3['detnet']:+.2f} dB")

    # 4. complexity ----------------------------------------------------------------------
    print("\n[4] complexity as deployed (FLOPs = 2 x MACs; zero-coefficient units pruned)")
    full = detnet.complexity()
    print(f"  {'model':14s}{'params':>10}{'FLOPs/symbol':>14}{'slot-rate':>11}"
          f"{'FLOPs/slot(14)':>16}{'params saved':>14}{'FLOPs saved':>13}")
    for name, model in models.items():
        c = model.complexity()
        print(f"  {name:14s}{c['params']:>10}{c['flops_per_symbol']:>14}"
              f"{c['flops_slot_rate']:>11}{c['flops_per_slot']:>16}"
              f"{1 - c['params'] / full['params']:>14.2%}"
              f"{1 - c['flops_per_symbol'] / full['flops_per_symbol']:>13.2%}")
    traced = count_flops(detnet)
    print(f"  cross-check, traced DetNet forward (mimoc.detectors.flops): "
          f"{traced.flops_per_symbol} FLOPs/symbol, {traced.params} params")
    pruned = wesnet.to_detnet()
    traced_pruned = count_flops(pruned)
    print(f"  cross-check, traced WeSNet-HF-50% after pruning (to_detnet, hidden "
          f"{pruned.config.hidden}): {traced_pruned.flops_per_symbol} FLOPs/symbol, "
          f"{traced_pruned.params} params")

    # 5. R-WeSNet layer removal ---------------------------------------------------------
    layers = rwesnet.config.layers
    norms = rwesnet.layer_l1_norms()
    print("\n[5] R-WeSNet: per-block L1 norm |beta_r W_r|")
    print("  " + " ".join(f"{i}:{float(n):.0f}" for i, n in enumerate(norms)))
    for rel in (0.05, 0.1, 0.2):
        print(f"  depth kept at threshold {rel:g} x max norm: "
              f"{rwesnet.depth_for_threshold(rel, relative=True)}")
    removed_list = [0, 2, 4, 6, 8, 10, 12, 14, 16]
    truncated = {}
    for removed in removed_list:  # R-WeSNet and, for comparison, the unregularised DetNet
        for name, source in (("rwesnet", rwesnet), ("detnet", detnet)):
            model = copy.deepcopy(source)
            model.set_depth(source.config.layers - removed)
            truncated[f"{name}-{removed}"] = model
    snrs = [snr_1e2, snr_1e2 + 2.0]
    removal = simulate({k: from_module(m) for k, m in truncated.items()}, system, snrs,
                       seed=args.seed, max_symbols=grid_symbols, min_errors=min_errors)
    print(f"  SER vs removed trailing blocks (same draws; up to {grid_symbols} symbols)")
    print(f"  {'removed':>8}{'depth':>7}"
          + "".join(f"{'R-WeSNet ' + format(s, '.1f') + 'dB':>19}" for s in snrs)
          + "".join(f"{'DetNet ' + format(s, '.1f') + 'dB':>17}" for s in snrs)
          + f"{'FLOPs/symbol':>14}{'FLOPs saved':>13}")
    base = truncated["rwesnet-0"].complexity()["flops_per_symbol"]
    for removed in removed_list:
        flops = truncated[f"rwesnet-{removed}"].complexity()["flops_per_symbol"]
        sers = "".join(f"{p.ser:>19.3e}" for p in removal.curves[f"rwesnet-{removed}"])
        sers += "".join(f"{p.ser:>17.3e}" for p in removal.curves[f"detnet-{removed}"])
        print(f"  {removed:>8}{layers - removed:>7}{sers}{flops:>14}{1 - flops / base:>13.2%}")
    print(f"\n(total {time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
