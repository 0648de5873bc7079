"""Paired statistics of benchmarks/sdnet_learngene.py: each SDNet arm against LMMSE and
the arms against each other, per task and across tasks, from the per-slot error counts
of a task record (what ``run_task`` returns)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

BOOTSTRAP = 2000               # paired bootstrap resamples of the slots
BOOTSTRAP_SEED = 5

# Why these tests: within a task every detector sees the same slots (same noise, pilots
# and symbols; the frozen channel is the same in all), so two detectors are compared
# slot by slot. The slots are independent and identically drawn, so a bootstrap that
# resamples slots, the same resample for every detector, gives valid paired intervals
# for a difference or a ratio of two SERs (it keeps their correlation, which the two
# separate intervals ignore). Across tasks the geometric mean of the per-task ratios gets
# a stratified bootstrap (slots resampled within each task, independently per task): an
# interval for these tasks' mean, not for a population of tasks. Resampling the tasks
# themselves would need many more than five, most of which have no errors here.

def resampled_totals(record: dict, snr_index: int, names: list[str]) -> np.ndarray:
    """``[BOOTSTRAP, len(names)]`` error totals over resampled slots (same resample for all)."""
    errors = np.array([record["slot_errors"][n][snr_index] for n in names], dtype=float).T
    snr_key = round(1000 * record["snr_db"][snr_index]) % 2**32  # seeds are unsigned
    seed = [BOOTSTRAP_SEED, int(record["task_id"]), snr_key]
    rng = np.random.default_rng(seed)  # the task's own stream: independent of --tasks
    slots, out = errors.shape[0], []
    for _ in range(0, BOOTSTRAP, 250):  # chunks keep the weight matrix small
        weights = rng.multinomial(slots, np.full(slots, 1.0 / slots), size=250)
        out.append(weights @ errors)
    return np.concatenate(out)[:BOOTSTRAP]


def quantiles(values: np.ndarray) -> tuple[float, float]:
    return tuple(float(q) for q in np.quantile(values, [0.025, 0.975], method="inverted_cdf"))


@dataclass(frozen=True)
class Paired:
    """Detector ``a`` against ``b`` at one task and SNR, on the same slots."""

    errors: tuple[int, int]
    ser: tuple[float, float]
    diff_ci: tuple[float, float]          # SER_a - SER_b, paired bootstrap
    ratio_ci: tuple[float, float] | None  # SER_a / SER_b, when b has errors
    disjoint: str                          # the engine's separate intervals: better/worse/overlap

    @property
    def ratio(self) -> float | None:
        return self.ser[0] / self.ser[1] if self.errors[1] else None

    @property
    def verdict(self) -> str:
        if self.errors == (0, 0):
            return "tie (no errors)"
        if self.diff_ci[1] < 0:
            return "better"
        if self.diff_ci[0] > 0:
            return "worse"
        return "tie"


def paired(record: dict, snr_index: int, a: str, b: str) -> Paired:
    totals = resampled_totals(record, snr_index, [a, b])
    pa, pb = (record["points"][n][snr_index] for n in (a, b))
    symbols = pa["symbols"]
    ratios = np.divide(totals[:, 0], totals[:, 1], out=np.full(len(totals), np.inf),
                       where=totals[:, 1] > 0)
    disjoint = ("better" if pa["ser_ci"][1] < pb["ser_ci"][0] else
                "worse" if pa["ser_ci"][0] > pb["ser_ci"][1] else "overlap")
    return Paired((pa["errors"], pb["errors"]), (pa["ser"], pb["ser"]),
                  quantiles((totals[:, 0] - totals[:, 1]) / symbols),
                  quantiles(ratios) if pb["errors"] else None, disjoint)


MIN_RATIO_ERRORS = 10  # a task enters a geometric mean only with this many errors per arm


def geometric_mean_ratio(records: list[dict], snr_index: int, a: str, b: str
                         ) -> tuple[float, tuple[float, float], list[str]] | None:
    """Geometric mean over tasks of SER_a / SER_b with its stratified-bootstrap interval."""
    used = [r for r in records
            if min(r["points"][n][snr_index]["errors"] for n in (a, b)) >= MIN_RATIO_ERRORS]
    if not used:
        return None
    observed, replicates = [], []
    for r in used:
        totals = np.maximum(resampled_totals(r, snr_index, [a, b]), 0.5)  # rare zero: +0.5
        observed.append(math.log(r["points"][a][snr_index]["errors"] /
                                 r["points"][b][snr_index]["errors"]))
        replicates.append(np.log(totals[:, 0] / totals[:, 1]))
    return (math.exp(sum(observed) / len(observed)),
            quantiles(np.exp(np.mean(replicates, axis=0))), [r["task"] for r in used])


def vs_lmmse_cell(p: Paired) -> str:
    if p.errors[1]:
        return f"{p.ratio:.2f}x [{p.ratio_ci[0]:.2f}, {p.ratio_ci[1]:.2f}] {p.verdict}"
    return f"{p.errors[0]} vs 0 errors: {p.verdict}"


def ratio_cell(p: Paired) -> str:
    if p.ratio is None or p.errors[0] == 0:
        return f"n/a ({p.errors[0]} vs {p.errors[1]} errors)"
    return f"{p.ratio:.3f} [{p.ratio_ci[0]:.3f}, {p.ratio_ci[1]:.3f}]"


def summarise(records: list[dict]) -> None:
    arm_list = [n for n in records[0]["points"] if n.startswith("SDNet ") and n != "SDNet example"]
    snrs = records[0]["snr_db"]
    print(f"== per-task summary: SDNet SER / LMMSE SER [95% paired bootstrap over slots, "
          f"{BOOTSTRAP} resamples] and verdict (paired SER difference); learngene's SER "
          f"ratios to the other arms")
    pairs = [("SDNet learngene", other) for other in arm_list if other != "SDNet learngene"]
    header = (["task", "SNR", "LMMSE SER"] + [f"{n[6:]} vs LMMSE" for n in arm_list] +
              [f"{a[6:]}/{b[6:]}" for a, b in pairs])
    print(" | ".join(header))
    tally = {n: {"better": 0, "tie": 0, "tie (no errors)": 0, "worse": 0, "disjoint": 0}
             for n in arm_list}
    for r in records:
        for i, snr in enumerate(snrs):
            cells = [r["task"], f"{snr:g} dB", f"{r['points']['LMMSE'][i]['ser']:.4g}"]
            for n in arm_list:
                p = paired(r, i, n, "LMMSE")
                tally[n][p.verdict] += 1
                tally[n]["disjoint"] += p.disjoint == "better"
                cells.append(vs_lmmse_cell(p))
            cells += [ratio_cell(paired(r, i, a, b)) for a, b in pairs]
            print(" | ".join(cells))
    cases = len(records) * len(snrs)
    print(f"== across {len(records)} task(s) x {len(snrs)} SNRs = {cases} cases: against LMMSE")
    for n, t in tally.items():
        print(f"  {n:<16} better {t['better']}, tie {t['tie']}, both error-free "
              f"{t['tie (no errors)']}, worse {t['worse']} (paired); better with disjoint "
              f"intervals {t['disjoint']}")
    print(f"== geometric mean of the per-task SER ratios (tasks with >= {MIN_RATIO_ERRORS} "
          f"errors in both arms; [95% stratified bootstrap])")
    for a, b in pairs:
        for i, snr in enumerate(snrs):
            g = geometric_mean_ratio(records, i, a, b)
            text = ("no task with errors in both arms" if g is None else
                    f"{g[0]:.3f} [{g[1][0]:.3f}, {g[1][1]:.3f}] over {len(g[2])} task(s): "
                    + ", ".join(g[2]))
            print(f"  {a[6:]}/{b[6:]} at {snr:g} dB: {text}")
