"""Crossbar schedules of DetNet-style detectors from N = 8 to 128 on the three devices (issue 6).

For N = Nt = Nr in ``--sizes`` (QPSK, real model K = 2N), a DetNet with the
example's proportions (hidden 8K, v 2K, ``--layers`` blocks, residual 0.5;
untrained weights, seed 0: the schedule does not depend on training) is
compiled for the crossbar target on each device of Table III, and the
schedule's numbers are printed (all from ``schedule.json``; nothing here is
timed on this machine):

- per-slot programming latency of the channel arrays (``H`` and ``H^T``,
  programmed from reset without verification, row by row; the expected value
  over the compiler's 32 seeded Rayleigh draws, with its std);
- computation latency per symbol (critical path of the analog stages, summed
  over the blocks) and per slot (programming + 14 symbols);
- one-time static programming with write-verify;
- tiles (differential pairs), physical arrays, memristors, peripheral circuits.

Blocks: compiling the example's 20 blocks at N = 128 means about 12,000
static tiles, each programmed with write-verify by the compiler: hours on a
shared 2-core machine. The blocks between the first and the last are
identical (same shapes, same tiling, same analog path), so the script
compiles ``--layers`` blocks (default 3: first, one middle, last) and also
prints the schedule of ``--extrapolate`` blocks (default 20) derived from it:
``symbol(L) = b_first + (L - 2) b_middle + b_last`` from the schedule's
per-block latencies, and the same for the static tiles and memristors counted
per block from the schedule's arrays. Peripheral counts are those of the
compiled network. ``--layers 20`` compiles the full network instead.

Two array configurations:

1. ``--array`` (default 128x128) with the compiler's default
   ``write_parallel=tile`` (every tile has its own write circuit);
2. the IM-MIMO paper's model, one array per channel matrix (arrays of
   2N x 2N, here ``256x256`` so that no matrix is split), for which the paper
   derives the ``O(N sqrt(log N))`` bound ("slightly faster than linear").

The growth of the per-slot programming latency with N is fitted as
``T = c N^b`` (least squares on log T vs log N) for each device and
configuration. Configuration 2 reports only the per-slot programming latency,
which depends on the channel arrays alone (not on the static weights), so it
is compiled with 2 blocks of 8 hidden units.

Usage::

    python benchmarks/crossbar_latency.py [--sizes 8,16,32,64,128] [--layers 20] [--quick]
"""

from __future__ import annotations

import argparse
import math
import re
import time
from pathlib import Path

import torch

import mimoc
from mimoc.detectors import DetNet, DetNetConfig
from mimoc.fileio import atomic_write
from mimoc.hardware.devices import list_devices, load_device

ROOT = Path(__file__).resolve().parent.parent
UNTILED = (256, 256)
#: Hidden units of configuration 2's network: its per-slot programming depends on H only.
CHANNEL_ONLY_HIDDEN = 8


def detnet(n: int, layers: int, hidden: int | None = None) -> DetNet:
    """DetNet-style with hidden 8K and v 2K (or ``hidden`` units and v 2)."""
    torch.manual_seed(0)
    k = 2 * n
    v_dim = 2 * k if hidden is None else 2
    return DetNet(DetNetConfig(nt=n, nr=n, modulation="qpsk", layers=layers,
                               hidden=8 * k if hidden is None else hidden, v_dim=v_dim,
                               residual=0.5))


def schedule_numbers(model, device: str, array, slot: int) -> dict:
    result = mimoc.compile(model, target="crossbar", device=device, array=array, slot=slot)
    s = result.schedule
    totals, per = s["totals"], s["peripherals"]
    channel = [a for a in s["arrays"] if a["role"] == "channel"]
    static = [a for a in s["arrays"] if a["role"] == "static"]
    return {
        "programming_s": totals["programming_s_per_slot"],
        "programming_std_s": totals["programming_s_per_slot_std"],
        "symbol_s": totals["symbol_s"],
        "per_slot_s": totals["per_slot_s"],
        "static_s": totals["static_programming_s"],
        "channel_tiles": len(channel), "static_tiles": len(static),
        "arrays": per["arrays"], "cells": per["cells"], "tias": per["tias"],
        "inverters": per["inverters"], "adders": per["adders"],
        "relus": per["relu_circuits"], "adcs": per["adcs"], "dacs": per["dacs"],
        "not_converged": s["programming"]["static"].get("cells_not_converged", 0),
        "block_latency_s": [b["latency_s"] for b in s["latency"]["blocks"]],
        **per_block_arrays(s),
    }


def per_block_arrays(s: dict) -> dict:
    """Static tiles and memristors of each block, and the channel arrays' memristors."""
    blocks = len(s["latency"]["blocks"])
    tiles, cells = [0] * blocks, [0] * blocks
    channel_cells = 0
    for a in s["arrays"]:
        count = a["shape"][0] * a["shape"][1] * a["physical_arrays"]
        if a["role"] == "channel":
            channel_cells += count
            continue
        match = re.match(r"blocks\.(\d+)\.", a["matrix"])
        if match is None:
            raise SystemExit(f"static matrix {a['matrix']!r} is not in a block")
        tiles[int(match.group(1))] += 1
        cells[int(match.group(1))] += count
    return {"block_tiles": tiles, "block_cells": cells, "channel_cells": channel_cells}


def extrapolate(values: list, layers: int):
    """``first + (layers - 2) * middle + last`` of a per-block list (>= 3 blocks)."""
    if len(values) == layers:
        return sum(values)
    return values[0] + (layers - 2) * values[1] + values[-1]


def fit_exponent(sizes, times) -> tuple[float, float]:
    """Least-squares ``log T = log c + b log N``: returns ``(b, c)``."""
    xs = [math.log(n) for n in sizes]
    ys = [math.log(t) for t in times]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / \
        sum((x - mx) ** 2 for x in xs)
    return b, math.exp(my - b * mx)


def si(value: float, unit: str = "s") -> str:
    for prefix, scale in (("", 1.0), ("m", 1e-3), ("u", 1e-6), ("n", 1e-9), ("p", 1e-12)):
        if abs(value) >= scale:
            return f"{value / scale:.4g} {prefix}{unit}"
    return f"{value:g} {unit}"


def plot(sizes, results: dict, path: Path) -> Path:
    """Per-slot programming latency vs N, per device and configuration, log-log."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    colors = dict(zip(sorted({d for d, _ in results}), ("tab:blue", "tab:orange", "tab:green"),
                      strict=False))
    for (device, config), rows in results.items():
        times = [rows[n]["programming_s"] for n in sizes]
        b, _ = fit_exponent(sizes, times)
        ax.loglog(sizes, [t * 1e6 for t in times], "o-" if config == "tiled" else "s--",
                  color=colors[device], label=f"{device}, {config} (N^{b:.2f})")
    ax.set_xlabel("N = Nt = Nr")
    ax.set_ylabel("programming latency per slot [us]")
    ax.set_title("Channel-array programming without verification (expected)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=120)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="8,16,32,64,128")
    parser.add_argument("--layers", type=int, default=3,
                        help="DetNet blocks compiled in configuration 1 (default 3; >= 3)")
    parser.add_argument("--extrapolate", type=int, default=20,
                        help="blocks of the derived full network (default 20, the example's)")
    parser.add_argument("--array", default="128x128")
    parser.add_argument("--devices", default=",".join(list_devices()))
    parser.add_argument("--slot", type=int, default=14)
    parser.add_argument("--figures", type=Path, default=ROOT / "benchmarks" / "figures")
    parser.add_argument("--quick", action="store_true", help="sizes 8,16, 2 blocks")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.quick:
        sizes = [8, 16]
    if args.layers < 3 or args.extrapolate < 3:
        raise SystemExit("--layers and --extrapolate must be at least 3 (first, middle, last)")
    devices = [load_device(d).name for d in args.devices.split(",")]
    array = tuple(int(v) for v in args.array.lower().split("x"))

    print(f"DetNet-style detectors: N = Nt = Nr, QPSK, hidden 8K, v 2K, K = 2N; "
          f"slot {args.slot} symbols")
    print(f"configuration 1 ('tiled'): arrays at most {array[0]}x{array[1]}, a write circuit "
          f"per tile, {args.layers} blocks")
    print(f"configuration 2 ('one array per matrix'): arrays at most "
          f"{UNTILED[0]}x{UNTILED[1]} (no channel matrix split), 2 blocks of "
          f"{CHANNEL_ONLY_HIDDEN} hidden units (only its channel programming is reported)")
    results: dict[tuple[str, str], dict[int, dict]] = {}
    for n in sizes:
        full, small = detnet(n, args.layers), detnet(n, 2, hidden=CHANNEL_ONLY_HIDDEN)
        for device in devices:
            start = time.perf_counter()
            results.setdefault((device, "tiled"), {})[n] = schedule_numbers(
                full, device, array, args.slot)
            results.setdefault((device, "one array per matrix"), {})[n] = schedule_numbers(
                small, device, UNTILED, args.slot)
            r = results[(device, "tiled")][n]
            u = results[(device, "one array per matrix")][n]
            print(f"  N={n} {device}: programming/slot {si(r['programming_s'])} (tiled), "
                  f"{si(u['programming_s'])} (one array per matrix), symbol "
                  f"{si(r['symbol_s'])}, static {si(r['static_s'])}, tiles "
                  f"{r['channel_tiles']}/{r['static_tiles']}, cells {r['cells']} "
                  f"[compiled in {time.perf_counter() - start:.0f} s]", flush=True)

    for device in devices:
        dev = load_device(device)
        print(f"\n== {device}: pulse {si(dev.pulse_width_s)}, {dev.states} states, "
              f"C2C {dev.c2c_potentiation:.2%} ==")
        rows = results[(device, "tiled")]
        untiled = results[(device, "one array per matrix")]
        print("  N    prog/slot tiled   (std)       prog/slot 1-array   symbol      "
              "slot (prog+14 sym)  static (verify)  not conv.")
        for n in sizes:
            r, u = rows[n], untiled[n]
            print(f"  {n:<4d} {si(r['programming_s']):>12s}  ({si(r['programming_std_s']):>9s})"
                  f"  {si(u['programming_s']):>14s}    {si(r['symbol_s']):>9s}   "
                  f"{si(r['per_slot_s']):>12s}      {si(r['static_s']):>10s}   "
                  f"{r['not_converged']:>6d}")
        print(f"  compiled {args.layers} blocks:")
        print("  N    tiles ch/static  arrays   memristors  TIAs    inverters  adders  "
              "ReLUs   ADCs  DACs")
        for n in sizes:
            r = rows[n]
            print(f"  {n:<4d} {r['channel_tiles']:>5d}/{r['static_tiles']:<7d}  "
                  f"{r['arrays']:>6d}  {r['cells']:>10d}  {r['tias']:>6d}  {r['inverters']:>9d}"
                  f"  {r['adders']:>6d}  {r['relus']:>6d}  {r['adcs']:>4d}  {r['dacs']:>4d}")
        L = args.extrapolate
        print(f"  derived for {L} blocks (first + {L - 2} x middle + last block):")
        print("  N    symbol      slot (prog+14 sym)  static tiles  memristors  "
              "block latencies first/middle/last")
        for n in sizes:
            r = rows[n]
            symbol = extrapolate(r["block_latency_s"], L)
            slot = r["programming_s"] + args.slot * symbol
            lat = r["block_latency_s"]
            print(f"  {n:<4d} {si(symbol):>9s}   {si(slot):>12s}        "
                  f"{extrapolate(r['block_tiles'], L):>8d}  "
                  f"{r['channel_cells'] + extrapolate(r['block_cells'], L):>12d}  "
                  f"{si(lat[0])} / {si(lat[1])} / {si(lat[-1])}")
        for config in ("tiled", "one array per matrix"):
            times = [results[(device, config)][n]["programming_s"] for n in sizes]
            b, c = fit_exponent(sizes, times)
            ratio = " ".join(f"{t / (n * math.sqrt(math.log(n))) * 1e9:.3g}"
                             for n, t in zip(sizes, times, strict=True))
            print(f"  fit ({config}): programming per slot = {c * 1e9:.4g} ns x N^{b:.3f}; "
                  f"T / (N sqrt(ln N)) [ns]: {ratio}")
    args.figures.mkdir(parents=True, exist_ok=True)
    path = plot(sizes, results, args.figures / "crossbar_programming_latency.png")
    print(f"\nwrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
