"""DetNet and the WeSNet family at the papers' own configurations (issue 22).

Models: the checkpoints of ``examples/train_paper_detnet.py`` in ``--models`` (missing ones
are skipped with a line). Links as in the authors' generators: i.i.d. N(0, 1) channel
entries, one channel per vector (slot of one symbol), the ``detnet`` SNR convention
(noise from ``tr(H^T H)``); the 30x60 BPSK system is real-valued (``x`` of dimension 30).
Every detector of an SNR point sees the same draws (seed 0). "ml" is the sphere decoder
(exact maximum likelihood), "lmmse" the unbiased LMMSE (for BPSK the biased and unbiased
estimates give the same decisions).

What it prints:

1. 30x60 BPSK: BER of ZF, LMMSE, ML, DetNet, WeSNet-HF-50%, L-WeSNet-50% at 8..13 dB
   (95% intervals over independent vectors);
2. the SNR at BER 1e-3 of each, and each WeSNet's SNR difference to DetNet at BER 1e-3
   with its 95% paired-bootstrap interval (negative: better than DetNet), next to its
   FLOPs per vector relative to DetNet;
3. R-WeSNet and DetNet 30x60 with trailing blocks removed (10, 20 and 30 of 90) on the
   same draws at 12 dB: the paper's R-WeSNet against the plain truncation of DetNet, with
   the block L1 norms R-WeSNet's penalty left;
4. 20x30 QPSK: BER and SER of ZF, LMMSE, ML and DetNet at 8..13 dB;
5. ``--part curve --checkpoints A.pt B.pt ...``: the BER at 10..13 dB of checkpoints of one
   model at different training budgets against the authors' numbers (how the gap to the
   authors' BER moves with training).

Usage::

    python benchmarks/detnet_paper.py [--models examples/models] [--symbols 3000000] [--quick]
    python benchmarks/detnet_paper.py --part curve --checkpoints 3000.pt 6000.pt
"""

from __future__ import annotations

import argparse
import copy
import math
import platform
import time
from pathlib import Path

import torch

from mimoc.detectors import load_checkpoint, load_detector
from mimoc.sim.ber import classical, from_module
from mimoc.sim.system import MIMOSystem
from mimoc.studies.budget.accuracy import crossing, simulate_slots, snr_losses

SNRS = [8.0, 9.0, 10.0, 11.0, 12.0, 13.0]
TARGET_BER = 1e-3
#: The DetNet authors' published test BERs at 8..13 dB, from the logs in their repository
#: (neevsamuel/LearningToDetect on GitHub: ``DetNet_HD_BPSK/bpsk_hd.txt`` and
#: ``DetNet_HD_QPSK/qpsk_hd_detnet.txt``; 200 x 1000 or 2000 test vectors per point). Their
#: BPSK run is 30x60 with L = 30, hidden 4K = 120, v 2K = 60 and one-hot outputs; their
#: QPSK run is 20x30 with L = 30, hidden 160, v 40 (our ``detnet_20x30_qpsk`` sizes); both
#: trained 200000 steps of 3000 vectors, SNR U(7, 14) dB.
AUTHORS_BER = {
    "bpsk": [1.1714125e-02, 4.99416666e-03, 1.807125e-03, 5.68375003e-04, 1.47250001e-04,
             3.25416665e-05],
    "qpsk": [2.89e-02, 1.2355e-02, 4.413e-03, 1.36075e-03, 3.35e-04, 6.95e-05],
}
BPSK_MODELS = {
    "detnet": "detnet_30x60_bpsk.pt",
    "wesnet-hf50": "wesnet_hf50_30x60_bpsk.pt",
    "lwesnet-hf50": "lwesnet_hf50_30x60_bpsk.pt",
}
RWESNET = {"rwesnet": "rwesnet_30x60_bpsk.pt"}
REMOVED_BLOCKS = (0, 10, 20, 30)
CURVE_SNRS = [10.0, 11.0, 12.0, 13.0]
QPSK_MODELS = {"detnet": "detnet_20x30_qpsk.pt"}


def load_models(folder: Path, files: dict[str, str]) -> dict[str, torch.nn.Module]:
    models = {}
    for name, filename in files.items():
        path = folder / filename
        if path.exists():
            models[name] = load_detector(path)
        else:
            print(f"  ({name}: {path} not found, skipped)")
    return models


def describe(name: str, model) -> str:
    c = model.config
    return f"  {name}: layers {c.layers}, hidden {c.hidden}, v {c.v_dim}, residual {c.residual}"


def ber_table(grid, names) -> None:
    print(f"  {'SNR dB':>7}" + "".join(f"{n:>27}" for n in names))
    for g in grid:
        cells = []
        for n in names:
            p = g.point(n)
            cells.append(f"{p.ber:9.2e} [{p.ber_ci[0]:.1e},{p.ber_ci[1]:.1e}]")
        print(f"  {g.snr_db:7.1f}" + "".join(f"{c:>27}" for c in cells))


def ber_crossing(grid, name: str, target: float) -> float:
    """SNR where ``name``'s BER crosses ``target`` (log-linear; +-inf off the grid)."""
    return crossing([g.snr_db for g in grid],
                    [g.bit_errors[name].sum() / (g.symbols * g.bits_per_symbol) for g in grid],
                    [g.symbols * g.bits_per_symbol for g in grid], target)


def as_ber_grid(grid):
    """The grid with bit errors in place of symbol errors (for the SER-based loss code)."""
    out = []
    for g in grid:
        h = copy.copy(g)
        h.errors = g.bit_errors
        h.symbols_per_slot = g.symbols_per_slot * g.bits_per_symbol
        out.append(h)
    return out


def against_authors(grid, name: str, published: list[float]) -> None:
    """mimoc's BER of ``name`` next to the authors' at each SNR, with the ratio's interval."""
    print(f"  {'SNR dB':>7} {'authors':>10} {'mimoc':>10} {'95% CI':>21} {'mimoc/authors':>14}")
    for g, theirs in zip(grid, published, strict=True):
        p = g.point(name)
        lo, hi = (v / theirs for v in p.ber_ci)
        print(f"  {g.snr_db:7.1f} {theirs:10.3e} {p.ber:10.3e} [{p.ber_ci[0]:.2e}, "
              f"{p.ber_ci[1]:.2e}] {p.ber / theirs:7.2f}x [{lo:.2f}, {hi:.2f}]")


def flops(model) -> int:
    return int(model.complexity()["flops_per_symbol"])


def fmt_db(value: float) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "off grid"
    return f"{value:.2f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path("examples/models"))
    parser.add_argument("--symbols", type=int, default=3_000_000,
                        help="scalar symbols per SNR point at most")
    parser.add_argument("--min-errors", type=int, default=400,
                        help="a point ends once every detector has this many errors")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--part", choices=("all", "bpsk", "qpsk", "curve"), default="all",
                        help="run one system only, or the training curve of --checkpoints")
    parser.add_argument("--checkpoints", type=Path, nargs="+", default=[],
                        help="--part curve: checkpoints of one model (any training budgets)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 60000 symbols")
    args = parser.parse_args(argv)
    if args.quick:
        args.symbols, args.min_errors = 60_000, 50
    torch.set_num_threads(1)
    print(f"CPU: {platform.processor() or platform.machine()}; torch "
          f"{torch.__version__}, one thread; seed {args.seed}")
    start = time.perf_counter()

    if args.part in ("all", "bpsk"):
        bpsk(args)
    if args.part in ("all", "qpsk"):
        qpsk(args)
    if args.part == "curve":
        curve(args)
    print(f"\n(total {time.perf_counter() - start:.0f} s)")
    return 0


def measure(system: MIMOSystem, files: dict[str, str], args):
    """The models of ``files`` found in ``--models``, ZF, LMMSE and ML on ``system``: the
    models, the engine detectors and their slots at every SNR (the BER table printed)."""
    models = load_models(args.models, files)
    for name, model in models.items():
        print(describe(name, model))
    detectors = {n: classical(n, system.constellation) for n in ("zf", "lmmse", "sd")}
    detectors |= {n: from_module(m) for n, m in models.items()}
    grid = simulate_slots(detectors, system, SNRS, seed=args.seed, max_symbols=args.symbols,
                          min_errors=args.min_errors)
    ber_table(grid, list(detectors))
    return models, detectors, grid


def bpsk(args) -> None:
    system = MIMOSystem(30, 60, "bpsk", snr_def="detnet", system="real")
    print("\n[1] 30x60 BPSK (real), i.i.d. N(0,1), detnet SNR: BER (95% CI)")
    models, detectors, grid = measure(system, BPSK_MODELS, args)
    print(f"\n[2] SNR at BER {TARGET_BER:g}, and the WeSNets against DetNet (paired bootstrap)")
    at = {n: ber_crossing(grid, n, TARGET_BER) for n in detectors}
    for n in detectors:
        print(f"  {n:>13}: {fmt_db(at[n])} dB")
    if "detnet" in models:
        others = [n for n in models if n != "detnet"]
        losses = snr_losses(as_ber_grid(grid), others, "detnet", TARGET_BER) if others else {}
        base = flops(models["detnet"])
        print(f"  {'model':>13} {'vs DetNet dB':>13} {'95% CI':>17} {'FLOPs/vector':>13} "
              f"{'FLOPs vs DetNet':>16}")
        print(f"  {'detnet':>13} {'0':>13} {'':>17} {base:13d} {'0%':>16}")
        for n in others:
            loss = losses[n]
            ci = "n/a" if loss.ci_db is None else \
                f"[{fmt_db(loss.ci_db[0])}, {fmt_db(loss.ci_db[1])}]"
            print(f"  {n:>13} {fmt_db(loss.value_db):>13} {ci:>17} {flops(models[n]):13d} "
                  f"{100 * (flops(models[n]) / base - 1):+15.1f}%")

        print("\n  DetNet against the DetNet authors' published BER (their 30x60 BPSK run: "
              "L = 30, hidden 120)")
        against_authors(grid, "detnet", AUTHORS_BER["bpsk"])
        removed_blocks(system, models["detnet"], args)


def removed_blocks(system: MIMOSystem, detnet, args) -> None:
    """Section 3: R-WeSNet and DetNet with trailing blocks removed, same draws at 12 dB."""
    print("\n[3] R-WeSNet and DetNet 30x60 with trailing blocks removed, BER at 12 dB "
          "(same draws)")
    sources = {"detnet": detnet} | load_models(args.models, RWESNET)
    cut_models = {}
    for name, model in sources.items():
        for removed in REMOVED_BLOCKS:
            cut = copy.deepcopy(model)
            cut.set_depth(cut.config.layers - removed)
            cut_models[f"{name}-{removed}L"] = cut
    cut_grid = simulate_slots({n: from_module(m) for n, m in cut_models.items()}, system,
                              [12.0], seed=args.seed, max_symbols=args.symbols,
                              min_errors=args.min_errors)
    for n, model in cut_models.items():
        p = cut_grid[0].point(n)
        print(f"  {n:>13}: BER {p.ber:.3e} [{p.ber_ci[0]:.2e}, {p.ber_ci[1]:.2e}]  "
              f"{flops(model):9d} FLOPs/vector")
    if "rwesnet" in sources:
        norms = sources["rwesnet"].layer_l1_norms().detach()
        share = norms / norms.max()
        print("  R-WeSNet block L1 norms |beta W| / largest, blocks 1..90 in tens: " +
              " ".join(f"{float(v):.2f}" for v in share[::10]))
        for fraction in (0.05, 0.1, 0.2):
            depth = sources["rwesnet"].depth_for_threshold(fraction, relative=True)
            print(f"  --l1-threshold {fraction:g}x keeps {depth} of "
                  f"{sources['rwesnet'].config.layers} blocks")


def curve(args) -> None:
    """Section 5: BER of checkpoints of one model at 10..13 dB against the authors'."""
    if not args.checkpoints:
        raise SystemExit("--part curve needs --checkpoints A.pt [B.pt ...]")
    print("\n[5] BER against the DetNet authors' at 10..13 dB by training budget")
    checkpoints = [load_checkpoint(path) for path in args.checkpoints]
    configs = {(c.config.nt, c.config.nr, c.config.modulation) for c in checkpoints}
    if len(configs) != 1:
        raise SystemExit(f"--checkpoints: one model's checkpoints please, got {configs}")
    nt, nr, modulation = configs.pop()
    key = {(30, 60, "bpsk"): "bpsk", (20, 30, "qpsk"): "qpsk"}.get((nt, nr, modulation))
    if key is None:  # the authors published these two systems only
        raise SystemExit(f"--checkpoints: {nt}x{nr} {modulation} has no published BER to "
                         "compare with; give 30x60 BPSK or 20x30 QPSK checkpoints")
    runs = {}
    for path, checkpoint in zip(args.checkpoints, checkpoints, strict=True):
        training = checkpoint.training or {}
        steps = training.get("total_steps", training.get("steps", 0))
        batch = training.get("options", {}).get("batch", 0)
        name = f"{steps} steps ({steps * batch / 1e6:g}M vectors)"
        runs[name if name not in runs else f"{name} {path.name}"] = checkpoint.model
    system = (MIMOSystem(nt, nr, "bpsk", snr_def="detnet", system="real") if key == "bpsk"
              else MIMOSystem(nt, nr, "qpsk", snr_def="detnet"))
    published = dict(zip(SNRS, AUTHORS_BER[key], strict=True))
    grid = simulate_slots({name: from_module(m) for name, m in runs.items()}, system, CURVE_SNRS,
                          seed=args.seed, max_symbols=args.symbols,
                          min_errors=args.min_errors)
    print(f"  {nt}x{nr} {modulation}; mimoc BER / authors' BER (95% CI), same draws")
    print(f"  {'training':>26}" + "".join(f"{s:>22.0f}" for s in CURVE_SNRS))
    for name in runs:
        cells = []
        for g in grid:
            p, theirs = g.point(name), published[g.snr_db]
            cells.append(f"{p.ber / theirs:5.2f}x [{p.ber_ci[0] / theirs:.2f}, "
                         f"{p.ber_ci[1] / theirs:.2f}]")
        print(f"  {name:>26}" + "".join(f"{c:>22}" for c in cells))

def qpsk(args) -> None:
    system = MIMOSystem(20, 30, "qpsk", snr_def="detnet")
    print("\n[4] 20x30 QPSK, i.i.d. CN(0,1) (real and imaginary parts N(0,1) in the authors' "
          "generator; the same SNR), detnet SNR: BER (95% CI); SER")
    models, detectors, grid = measure(system, QPSK_MODELS, args)
    print(f"  {'SNR dB':>7}" + "".join(f"{n + ' SER':>14}" for n in detectors))
    for g in grid:
        print(f"  {g.snr_db:7.1f}" + "".join(f"{g.point(n).ser:14.3e}" for n in detectors))
    if "detnet" in models:
        print("\n  DetNet against the DetNet authors' published BER (same sizes)")
        against_authors(grid, "detnet", AUTHORS_BER["qpsk"])
    at = {n: ber_crossing(grid, n, TARGET_BER) for n in detectors}
    print("  SNR at BER 1e-3: " + ", ".join(f"{n} {fmt_db(v)} dB" for n, v in at.items()))


if __name__ == "__main__":
    raise SystemExit(main())
