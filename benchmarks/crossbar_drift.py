"""SER of the example DetNet against the time since its static arrays were programmed (issue 17).

Conductance drift: ``G(t) = G_prog ((t + t0) / t0)^(-nu)`` (IBM aihwkit's PCM law,
``mimoc.hardware.variability``), applied by the IMC simulator to the static arrays (the
weights, programmed once with write-verify); the channel arrays are programmed every slot
and read microseconds later, so they do not drift. The shipped profiles set no drift (their
sources give none), so this study uses ``ftj-luo2022`` with an *assumed* PCM-like drift from
aihwkit's ``PCMLikeNoiseModel`` (``t0 = 20 s``; ``nu`` between 0.049 and 0.1 with a spread
of 0.008 to 0.045 across conductances there): ``drift_nu = 0.06`` with
``drift_nu_std = 0`` (every cell the same: pure scaling) and ``0.02`` (spread across cells).

The example DetNet (``examples/models/detnet_8x16_qpsk.pt``) is compiled for each variant
(128x128 arrays, 14-symbol slots) and simulated at ``t`` = 0 (read at once), 1 s,
1 min, 10 min, 1 h, 6 h and 1 day, without and with a global drift compensation (the
readout gain divided by the mean drift factor, as aihwkit's ``GlobalDriftCompensation``
estimates it from a reference read), with the channel arrays' C2C set to 0 (``--c2c``) so that
drift is the only programming error that changes with ``t``; 8-bit converters (the
profile's), 8x16 QPSK, i.i.d. Rayleigh, perfect CSI, per-stream SNR; every detector of a
point sees the same channel and noise draws (``mimoc.sim.ber.simulate``, seed 0,
slot-clustered 95% intervals), each engine its own generator (seed 1).

Then the cost of reprogramming the static arrays every ``T`` (the schedule's static
program-and-verify time and its ``costs`` energy, ``mimoc.hardware.energy.slot_costs``):
the duty cycle ``static_programming_s / T`` and the average power ``E_static / T`` next to
the power of the per-slot work run back to back (``E_slot / per_slot_s``).

Usage::

    python benchmarks/crossbar_drift.py [--symbols 400000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

import mimoc
from mimoc.detectors import load_checkpoint
from mimoc.hardware.devices import load_device
from mimoc.runtime.cpu import describe_cpu
from mimoc.runtime.imc import load_schedule
from mimoc.sim.ber import from_module, simulate
from mimoc.sim.channels import CSIModel, parse_channel
from mimoc.sim.system import MIMOSystem

ROOT = Path(__file__).resolve().parent.parent
MODEL = "detnet_8x16_qpsk.pt"
TIMES_S = (0.0, 1.0, 60.0, 600.0, 3600.0, 21600.0, 86400.0)
VARIANTS = {"nu 0.06": {"drift_nu": 0.06, "drift_nu_std": 0.0, "drift_t0_s": 20.0},
            "nu 0.06 +- 0.02": {"drift_nu": 0.06, "drift_nu_std": 0.02, "drift_t0_s": 20.0}}
SNRS = (0.0, 4.0)
REPROGRAM_EVERY_S = (60.0, 600.0, 3600.0, 21600.0, 86400.0)
ENGINE_SEED = 1


def when(seconds: float) -> str:
    for unit, scale in (("d", 86400.0), ("h", 3600.0), ("min", 60.0), ("s", 1.0)):
        if seconds >= scale:
            return f"{seconds / scale:g} {unit}"
    return "0"


def name(variant: str, compensate: bool, t: float) -> str:
    return f"{variant}{' comp.' if compensate else ''} t={when(t)}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=ROOT / "examples" / "models")
    parser.add_argument("--device", default="ftj-luo2022")
    parser.add_argument("--c2c", type=float, default=0.0,
                        help="C2C of the per-slot channel arrays (default 0: drift only)")
    parser.add_argument("--symbols", type=int, default=300_000,
                        help="symbols per time and SNR (default 300000)")
    parser.add_argument("--quick", action="store_true", help="few symbols: a smoke run")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.quick:
        args.symbols = 5_600
    print(f"cpu: {describe_cpu()} (one thread)")
    system = MIMOSystem(8, 16, "qpsk", parse_channel("rayleigh"), CSIModel.parse("perfect"),
                        "per-stream", slot=14)
    print(f"link: 8x16 qpsk, rayleigh, perfect CSI, per-stream SNR {list(SNRS)} dB, 14-symbol "
          f"slots, seed 0; {args.symbols} symbols per point; channel-array C2C {args.c2c:g}")
    start_cpu, start_wall = time.process_time(), time.perf_counter()
    dets = {"digital": from_module(load_checkpoint(args.models / MODEL).model)}
    schedules = {}
    with tempfile.TemporaryDirectory(prefix="mimoc-drift-") as tmp:
        base = load_device(args.device).to_dict()
        for variant, fields in VARIANTS.items():
            profile = Path(tmp) / f"{len(schedules)}.json"
            profile.write_text(json.dumps(base | {"name": f"{args.device} {variant}", **fields}))
            out = Path(tmp) / f"xb{len(schedules)}"
            mimoc.compile(args.models / MODEL, target="crossbar", out=out,
                          device=str(profile), array=(128, 128), slot=14)
            xb = schedules[variant] = load_schedule(out)
            for compensate in (False, True):
                for t in TIMES_S:
                    dets[name(variant, compensate, t)] = xb.engine(
                        c2c=args.c2c, seed=ENGINE_SEED, time_s=t, compensate_drift=compensate)
        result = simulate(dets, system, list(SNRS), max_symbols=args.symbols,
                          min_errors=10**9)
    curves = result.curves
    print("\nSER [95% CI] vs time since the static arrays were programmed")
    header = "  " + "detector".ljust(30) + "".join(f"{f'{s:g} dB':>30s}" for s in SNRS)
    print(header)
    for label, points in curves.items():
        cells = [f"{p.ser:.3e} [{p.ser_ci[0]:.2e},{p.ser_ci[1]:.2e}]" for p in points]
        print("  " + label.ljust(30) + "".join(f"{c:>30s}" for c in cells))
    digital = curves["digital"]
    print("\nlongest time since programming with SER <= 2 x digital (drift factor "
          "((t + 20) / 20)^-0.06 at that time)")
    for variant in VARIANTS:
        for compensate in (False, True):
            cells = []
            for i, snr in enumerate(SNRS):
                last = None  # the last time of the run of times from 0 that pass
                for t in TIMES_S:
                    if curves[name(variant, compensate, t)][i].ser > 2 * max(
                            digital[i].ser, 1 / args.symbols):
                        break
                    last = t
                cells.append(f"{'none' if last is None else when(last)} at {snr:g} dB")
            print(f"  {variant}{', compensated' if compensate else ''}: " + ", ".join(cells))

    schedule = schedules[next(iter(VARIANTS))].schedule
    totals, costs = schedule["totals"], schedule["costs"]
    static_s = float(totals["static_programming_s"])
    static_j = float(costs["static_programming"]["energy_j"])
    slot_j, slot_s = float(costs["per_slot"]["energy_j"]), float(totals["per_slot_s"])
    slot_w = slot_j / slot_s
    tiles = len(schedule["programming"]["static"]["tiles"])
    print(f"\nreprogramming the static arrays: {static_s * 1e6:.1f} us and "
          f"{static_j * 1e6:.2f} uJ per reprogramming (program-and-verify of {tiles} tiles); "
          f"per slot {slot_j * 1e9:.2f} nJ in {slot_s * 1e6:.3f} us = {slot_w * 1e3:.3f} mW "
          "back to back")
    print("  every T      duty cycle     reprogramming power   share of the slot power")
    for period in REPROGRAM_EVERY_S:
        power = static_j / period
        print(f"  {when(period):>8s}   {static_s / period:12.3e}   {power * 1e9:14.4g} nW   "
              f"{power / slot_w:14.3e}")
    print(f"\ntime: {time.process_time() - start_cpu:.0f} CPU-s, "
          f"{time.perf_counter() - start_wall:.0f} s wall")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
