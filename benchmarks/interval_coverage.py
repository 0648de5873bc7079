"""Coverage of mimoc's 95% SER/BER intervals against exact error rates.

ZF on an i.i.d. Rayleigh ``Nt x Nr`` link has an exact error rate: the post-ZF
SNR of every stream is ``gamma = rho / [(H^H H)^-1]_kk ~ rho * Gamma(L, 1)``,
``L = Nr - Nt + 1`` (Winters, Salz & Gitlin 1994), with ``rho = Es/N0`` the
per-stream SNR of mimoc's default convention. Given ``gamma`` (unit-energy
Gray constellations, complex noise variance ``1/gamma`` after ZF),

    QPSK:   SER = 2 Q(sqrt(g)) - Q(sqrt(g))^2,  BER = Q(sqrt(g))
    16-QAM: a = sqrt(g / 5), P = 1.5 Q(a),  SER = 1 - (1 - P)^2,
            BER = (3 Q(a) + 2 Q(3a) - Q(5a)) / 4

and the exact rates are their averages over the Gamma density, integrated
numerically (scipy.integrate.quad). The script first checks each reference
against a large mimoc run, then runs many independent seeds of a fixed-size
run (no early stop) at slot 1 and slot 14 and counts how often the 95%
interval contains the exact rate: the cluster-robust interval mimoc reports
now, and the Wilson interval over symbols (bits) it reported before. Last, it
measures runs that stop at ``min_errors = 100`` with and without the
``min_error_slots`` rule.

    python benchmarks/interval_coverage.py            # about 8 minutes on one core
    python benchmarks/interval_coverage.py --seeds 200

Needs scipy (the test extra).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import time
from dataclasses import dataclass

import torch
from scipy import integrate, stats

from mimoc.sim.ber import BERPoint, classical, simulate
from mimoc.sim.stats import wilson_interval
from mimoc.sim.system import MIMOSystem

SYMBOLS = 28_000   # per run, as in the issue: 500 slots of 14 x 4 symbols
CHECK_SYMBOLS = 4_000_000
FIXED = 10**9      # min_errors never reached: every run spends its budget


@dataclass(frozen=True)
class Case:
    nt: int
    nr: int
    modulation: str
    snr_db: float

    @property
    def label(self) -> str:
        return f"ZF {self.nt}x{self.nr} {self.modulation} {self.snr_db:g} dB"


def q(x: float) -> float:
    return float(stats.norm.sf(x))


def conditional_rates(gamma: float, modulation: str) -> tuple[float, float]:
    """(SER, BER) of one stream at post-detection SNR ``gamma`` (Es/N0)."""
    if modulation == "qpsk":
        q1 = q(math.sqrt(gamma))
        return 2.0 * q1 - q1 * q1, q1
    if modulation == "16qam":
        a = math.sqrt(gamma / 5.0)
        q1, q3, q5 = q(a), q(3.0 * a), q(5.0 * a)
        pam = 1.5 * q1
        return 1.0 - (1.0 - pam) ** 2, (3.0 * q1 + 2.0 * q3 - q5) / 4.0
    raise ValueError(modulation)


def exact_rates(case: Case) -> tuple[float, float]:
    """Exact ZF (SER, BER) on i.i.d. Rayleigh: conditional rates averaged over Gamma(L, rho)."""
    rho = 10.0 ** (case.snr_db / 10.0)
    density = stats.gamma(a=case.nr - case.nt + 1, scale=rho).pdf
    out = []
    for which in (0, 1):
        value, _ = integrate.quad(lambda g, w=which: conditional_rates(g, case.modulation)[w]
                                  * density(g), 0.0, math.inf, limit=200, epsabs=0.0,
                                  epsrel=1e-10)
        out.append(value)
    return out[0], out[1]


def run(case: Case, slot: int, seed: int, symbols: int = SYMBOLS, min_errors: int = FIXED,
        min_error_slots: int | None = None, batch_size: int | None = None) -> BERPoint:
    system = MIMOSystem(nt=case.nt, nr=case.nr, modulation=case.modulation, slot=slot)
    result = simulate({"zf": classical("zf", system.constellation)}, system, [case.snr_db],
                      seed=seed, max_symbols=symbols, min_errors=min_errors,
                      min_error_slots=min_error_slots, batch_size=batch_size)
    return result.curves["zf"][0]


def check_reference(case: Case, exact: tuple[float, float]) -> None:
    point = run(case, 1, seed=10**6, symbols=CHECK_SYMBOLS)
    for name, rate, ci, reference in (("SER", point.ser, point.ser_ci, exact[0]),
                                      ("BER", point.ber, point.ber_ci, exact[1])):
        se = (ci[1] - ci[0]) / (2 * 1.96)
        print(f"  {name}: exact {reference:.5e}  Monte Carlo {rate:.5e} ({CHECK_SYMBOLS:.0e} "
              f"symbols, 95% CI [{ci[0]:.4e}, {ci[1]:.4e}])  z = {(rate - reference) / se:+.2f}")


def coverage_row(case: Case, slot: int, seeds: int, exact: tuple[float, float]) -> dict:
    covered = {"ser": 0, "ser_wilson": 0, "ber": 0, "ber_wilson": 0}
    sers, half_cluster, half_wilson, deffs = [], [], [], []
    for seed in range(seeds):
        p = run(case, slot, seed)
        wilson_ser = wilson_interval(p.errors, p.symbols)
        bits = p.symbols * round(math.log2({"qpsk": 4, "16qam": 16}[case.modulation]))
        wilson_ber = wilson_interval(p.bit_errors, bits)
        covered["ser"] += p.ser_ci[0] <= exact[0] <= p.ser_ci[1]
        covered["ser_wilson"] += wilson_ser[0] <= exact[0] <= wilson_ser[1]
        covered["ber"] += p.ber_ci[0] <= exact[1] <= p.ber_ci[1]
        covered["ber_wilson"] += wilson_ber[0] <= exact[1] <= wilson_ber[1]
        sers.append(p.ser)
        half_cluster.append((p.ser_ci[1] - p.ser_ci[0]) / 2)
        half_wilson.append((wilson_ser[1] - wilson_ser[0]) / 2)
        deffs.append(p.symbols / p.effective_symbols)
    mean = sum(sers) / seeds
    sd = math.sqrt(sum((s - mean) ** 2 for s in sers) / (seeds - 1))
    row = {k: v / seeds for k, v in covered.items()}
    row.update(sd=sd, bias_z=(mean - exact[0]) / (sd / math.sqrt(seeds)),
               sd_over_wilson=sd / (sum(half_wilson) / seeds / 1.96),
               sd_over_cluster=sd / (sum(half_cluster) / seeds / 1.96),
               deff=sum(deffs) / seeds, errors=mean * SYMBOLS)
    return row


def stopping_row(case: Case, slot: int, seeds: int, exact: float, min_error_slots: int,
                 batch_size: int) -> dict:
    covered, covered_wilson, symbols, error_slots, widths = 0, 0, 0, [], []
    for seed in range(seeds):
        p = run(case, slot, seed, symbols=10**7, min_errors=100,
                min_error_slots=min_error_slots, batch_size=batch_size)
        covered += p.ser_ci[0] <= exact <= p.ser_ci[1]
        wilson = wilson_interval(p.errors, p.symbols)
        covered_wilson += wilson[0] <= exact <= wilson[1]
        symbols += p.symbols
        error_slots.append(p.error_slots)
        widths.append((p.ser_ci[1] - p.ser_ci[0]) / p.ser)
    return {"coverage": covered / seeds, "wilson": covered_wilson / seeds,
            "symbols": symbols / seeds,
            "error_slots": sum(error_slots) / seeds, "fewest": min(error_slots),
            "under_10": sum(k < 10 for k in error_slots) / seeds,
            "width": sorted(widths)[len(widths) // 2], "widest": max(widths)}


def cpu_summary() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown CPU"
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    model = fields.get("Model name", "?").strip()
    flags = set(fields.get("Flags", "").split())
    simd = [f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "amx_tile")
            if f in flags]
    return f"{model}, {fields.get('CPU(s)', '?').strip()} CPUs, SIMD: {' '.join(simd)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2000,
                        help="independent runs per configuration (default: 2000)")
    parser.add_argument("--stop-seeds", type=int, default=300,
                        help="runs per stopping-rule configuration (default: 300)")
    parser.add_argument("--parts", default="1,2,3",
                        help="which parts to run: 1 references, 2 coverage, 3 stopping rule")
    args = parser.parse_args()
    parts = {int(part) for part in args.parts.split(",")}
    torch.set_num_threads(1)
    start = time.time()
    print(f"CPU: {cpu_summary()}; torch {torch.__version__}, 1 thread, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    cases = [Case(4, 4, "qpsk", 10.0), Case(4, 4, "qpsk", 20.0), Case(4, 8, "16qam", 8.0),
             Case(4, 4, "qpsk", 30.0)]
    exact = {}
    print(f"\n[1] exact references, checked against one {CHECK_SYMBOLS:.0e}-symbol run "
          "at slot 1")
    for case in cases:
        exact[case] = exact_rates(case)
        print(f"{case.label}: exact SER {exact[case][0]:.5e}, BER {exact[case][1]:.5e}")
        if 1 in parts:
            check_reference(case, exact[case])

    if 2 in parts:
        coverage_table(cases, exact, args.seeds)
    if 3 in parts:
        stopping_table(cases[3], exact[cases[3]][0], args.stop_seeds)
    print(f"\ntotal {time.time() - start:.0f} s")


def coverage_table(cases: list[Case], exact: dict, seeds: int) -> None:
    band = 1.96 * math.sqrt(0.95 * 0.05 / seeds)
    print(f"\n[2] coverage of the 95% intervals over {seeds} seeds of {SYMBOLS} symbols "
          f"(no early stop); a correct interval lands in 95% +- {100 * band:.1f}%")
    header = (f"{'case':<24} {'slot':>4} {'errors':>7} {'deff':>5} {'SER cov':>8} "
              f"{'Wilson':>7} {'BER cov':>8} {'Wilson':>7} {'sd/Wilson':>9} {'sd/new':>7} "
              f"{'bias z':>6}")
    print(header)
    print("-" * len(header))
    for case in cases:
        for slot in (1, 14):
            r = coverage_row(case, slot, seeds, exact[case])
            print(f"{case.label:<24} {slot:>4} {r['errors']:>7.0f} {r['deff']:>5.2f} "
                  f"{100 * r['ser']:>7.1f}% {100 * r['ser_wilson']:>6.1f}% "
                  f"{100 * r['ber']:>7.1f}% {100 * r['ber_wilson']:>6.1f}% "
                  f"{r['sd_over_wilson']:>9.2f} {r['sd_over_cluster']:>7.2f} "
                  f"{r['bias_z']:>+6.2f}", flush=True)


def stopping_table(case: Case, exact_ser: float, seeds: int) -> None:
    batch = 8  # slots: small batches, so that the rule, not the batch size, ends a run
    print(f"\n[3] stopping at min_errors = 100, {case.label}, slot 14, batches of {batch} "
          f"slots, {seeds} seeds: SER coverage of the (new) interval")
    for slots in (1, 30):
        r = stopping_row(case, 14, seeds, exact_ser, slots, batch)
        print(f"  min_error_slots = {slots:>2}: coverage {100 * r['coverage']:.1f}% "
              f"(Wilson {100 * r['wilson']:.1f}%), "
              f"mean {r['symbols']:.0f} symbols, slots with errors: mean {r['error_slots']:.1f}, "
              f"fewest {r['fewest']}, under 10 in {100 * r['under_10']:.1f}% of runs; "
              f"interval width / SER: median {r['width']:.2f}, largest {r['widest']:.2f}",
              flush=True)


if __name__ == "__main__":
    main()
