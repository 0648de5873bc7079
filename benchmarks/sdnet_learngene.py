"""Benchmark: SDNet with learngene on held-out channel tasks (issue 3 acceptance).

What it measures, with the learngene shipped in examples/models (made by
examples/train_sdnet.py):

1. the learngene: which collective layers, how many parameters, the
   transferred-parameter ratio into the individual model (paper's Table IV);
2. convergence on held-out tasks: two individual SDNets (Nconv = 4) with the
   same random initialisation, the same training draws and the same
   validation set; one inherits the learngene at its bottom and trains with
   the L2 pull, the other trains from scratch. Validation SER and training
   loss against the step go to benchmarks/figures/learngene_convergence.png;
3. SER against ZF and MMSE with the BER engine (mimoc.sim.ber.simulate: all
   detectors see the same channels, noise and LS channel estimates) on the
   held-out tasks, for both individuals and for the example model.

``--regime paper`` (issue 22) repeats 2 and 3 at the paper's operating point
(one fixed SNR of 25 dB, LS pilots at that SNR, each held-out task frozen to one
typical channel: on task 1000 ZF and LMMSE have SER 0.11 and 0.086 like the
paper's task B, on 1001..1004 none errs; SDNet beats LMMSE only on such narrow
tasks), 300 steps, with
the learngene of ``examples/train_sdnet.py --regime paper`` and a third arm,
plain transfer learning: the whole collective model that learngene came from
(kept in the temporary folder by that script, ``--collective``) fine-tuned on
the target task; evaluated at 20, 25 and 30 dB (pilots at each SNR).
``--regime paper-unfrozen`` does the same on the full task 1000 (1500 steps).
Every task gets the same seeds; the run ends with per-task and across-task
summaries: each arm against LMMSE and learngene's SER ratios (``summarise``, in
benchmarks/sdnet_learngene_stats.py). ``--snr S`` trains at a fixed S dB and evaluates at
S-5, S, S+5; ``--snr-range LO HI`` trains with the SNR uniform in [LO, HI] (pilots at the
middle) and evaluates at LO, the middle and HI (pilots at each SNR); ``--steps N`` trains
every arm N steps instead of the regime's.

Every finished task is written as JSON to the cache folder (``--cache``);
``--resume`` reuses those whose settings and input files match, so an
interrupted run continues where it stopped; ``--tasks 1002`` reruns one task.

Run from the repository root (580 s on the shared, loaded 2-core machine)::

    python benchmarks/sdnet_learngene.py
    python examples/train_sdnet.py --regime paper     # the learngene, collective, example
    python benchmarks/sdnet_learngene.py --regime paper --resume   # ~5 CPU-min per task
    python benchmarks/sdnet_learngene.py --regime paper-unfrozen
    python benchmarks/sdnet_learngene.py --quick     # smoke run, figures to /tmp
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from mimoc.detectors.checkpoint import load_checkpoint  # noqa: E402
from mimoc.detectors.learngene import (  # noqa: E402
    kendall_trend,
    load_learngene,
    task_system,
    train_individual,
    transferred_ratio,
)
from mimoc.detectors.sdnet import SDNet, SDNetConfig  # noqa: E402
from mimoc.detectors.training import TrainOptions, validation_set  # noqa: E402
from mimoc.fileio import atomic_write  # noqa: E402
from mimoc.sim import ber  # noqa: E402
from mimoc.sim.detectors.linear import lmmse, mmse, zf  # noqa: E402
from mimoc.sim.multipath import HELD_OUT_TASKS, channel_task, frozen_task  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the statistics module beside this script
from benchmarks.sdnet_learngene_stats import (  # noqa: E402
    geometric_mean_ratio,
    paired,
    summarise,
    vs_lmmse_cell,
)

__all__ = ["geometric_mean_ratio", "paired", "summarise", "vs_lmmse_cell"]  # re-exported
MODELS = ROOT / "examples" / "models"
FIGURES = ROOT / "benchmarks" / "figures"
INDIVIDUAL_NCONV = 4           # as examples/train_sdnet.py
PULL = 1e-3
INIT_SEED = 7
BER_SEED = 11
CACHE_VERSION = 1


@dataclass(frozen=True)
class Regime:
    """Link, tasks, schedule and files of one benchmark regime (module docstring)."""

    tasks: tuple[int, ...]
    snr_train: tuple[float, float]
    csi: str                    # training CSI
    snr_eval: tuple[float, ...]
    steps: int
    stem: str                   # the example files: <stem>.pt, <stem>_learngene.pt
    figure: str
    frozen: bool = False        # each task frozen to one typical channel (frozen_task)
    pilots_follow_snr: bool = False  # evaluation pilots at each evaluated SNR


REGIMES = {
    # held-out: an ill-conditioned and a moderate task
    "wide": Regime((1000, 1004), (4.0, 12.0), "ls:16@8", (4.0, 8.0, 12.0), 300,
                   "sdnet_8x32_qpsk", "learngene_convergence.png"),
    "paper": Regime(HELD_OUT_TASKS, (25.0, 25.0), "ls:16@25", (20.0, 25.0, 30.0), 300,
                    "sdnet_8x32_qpsk_25db", "learngene_convergence_25db.png", frozen=True,
                    pilots_follow_snr=True),
    # the same on the full task (channels redrawn every slot): SDNet ties ZF (issue 22)
    "paper-unfrozen": Regime((1000,), (25.0, 25.0), "ls:16@25", (20.0, 25.0, 30.0), 1500,
                             "sdnet_8x32_qpsk_25db", "learngene_convergence_25db_unfrozen.png",
                             pilots_follow_snr=True),
}


def options(steps: int, regime: Regime) -> TrainOptions:
    return TrainOptions(steps=steps, batch=128, snr_db=regime.snr_train, csi=regime.csi,
                        lr=3e-3, seed=3, val_every=max(1, steps // 12), val_batch=512,
                        log_every=5)


def eval_csi(regime: Regime, snr: float) -> str:
    """The wide regime keeps its pilots at 8 dB; the paper's puts them at the data SNR."""
    if regime.pilots_follow_snr:
        return f"ls:16@{snr:g}"
    return regime.csi


def linear_val_ser(system, opts: TrainOptions, config: SDNetConfig) -> dict[str, float]:
    """ZF, MMSE and LMMSE SER on the trainer's validation set (same draws as the curves)."""
    batches = validation_set(SDNet(config), system, opts)
    out = {}
    for name, detect in (("ZF", zf), ("MMSE", mmse), ("LMMSE", lmmse)):
        errors = symbols = 0
        for b in batches:
            x_hat = detect(b.H_est, b.y, b.noise_var, system.constellation)
            errors += int((system.constellation.indices_of_real(x_hat) != b.indices).sum())
            symbols += b.indices.numel()
        out[name] = errors / symbols
    return out


def curve(report: dict) -> tuple[list[int], list[float], list[int], list[float]]:
    history = report["history"]
    val = [h for h in history if h["val_ser"] is not None]
    return ([h["step"] for h in history], [h["loss"] for h in history],
            [h["step"] for h in val], [h["val_ser"] for h in val])


def first_step_below(report: dict, target: float) -> int | None:
    for h in report["history"]:
        if h["val_ser"] is not None and h["val_ser"] <= target:
            return h["step"]
    return None


def arms(gene, collective: Path | None) -> list[tuple[str, str]]:
    """(name, how it starts): inherit the learngene, random, or the whole collective."""
    out = [("learngene", "gene"), ("scratch", "random")]
    if collective is not None:
        out.append(("transfer", "collective"))
    return out


def start_model(how: str, config: SDNetConfig, collective: Path | None) -> SDNet:
    torch.manual_seed(INIT_SEED)  # the same initialisation for learngene and scratch
    model = SDNet(config)
    if how == "collective":
        model = load_checkpoint(collective).model
    return model


class SlotRecorder(ber.InProcessExecutor):
    """The engine's own serial executor, also keeping every slot's symbol errors.

    The engine keeps only per-detector sums; comparing two detectors slot by slot
    (a paired test) needs the per-slot counts on exactly the draws of the table.
    """

    def __init__(self, detectors, system):
        super().__init__(detectors, system)
        self.names = list(detectors)
        self.kept: dict[tuple[int, int], dict[str, np.ndarray]] = {}

    def submit(self, unit) -> None:
        super().submit(dataclasses.replace(unit, keep_slots=True))

    def wait(self):
        done = super().wait()
        for unit, counts in done:
            self.kept[(unit.point, unit.batch)] = {n: c.slot_errors[0] for n, c in counts.items()}
        return done

    def slot_errors(self, point: int) -> dict[str, list[int]]:
        batches = sorted(b for p, b in self.kept if p == point)
        return {n: np.concatenate([self.kept[(point, b)][n] for b in batches]).astype(int).tolist()
                for n in self.names}


def run_task(task_id: int, regime: Regime, steps: int, max_symbols: int, gene,
             collective: Path | None, config: SDNetConfig, models: Path) -> dict:
    """Train every arm on one task and evaluate it: the JSON record of the task."""
    task = (frozen_task if regime.frozen else channel_task)(task_id)
    opts = options(steps, regime)
    system = task_system(opts, config, task)
    reports, trained = {}, {}
    for name, how in arms(gene, collective):
        model = start_model(how, config, collective)
        report = train_individual(model, task, opts, gene if how == "gene" else None, PULL)
        reports[name] = {"steps": report.steps, "seconds": report.seconds,
                         "final_loss": report.final_loss, "val_ser": report.val_ser,
                         "history": [dict(h) for h in report.history]}
        trained[name] = model
        print(f"{task.spec} {name}: {report.steps} steps in {report.seconds:.0f} s, final loss "
              f"{report.final_loss:.4f}, validation SER {report.val_ser:.4g}", flush=True)
    detectors = {f"SDNet {name}": ber.from_module(model) for name, model in trained.items()}
    for name in ("ZF", "MMSE", "LMMSE"):
        detectors[name] = ber.classical(name.lower(), system.constellation)
    example_path = models / f"{regime.stem}.pt"
    if example_path.is_file():
        example = load_checkpoint(example_path)
        if example.training.get("channel_task") == task.spec:
            detectors["SDNet example"] = ber.from_module(example.model)
    points: dict[str, list[dict]] = {}
    slot_errors: dict[str, list[list[int]]] = {}
    for snr in regime.snr_eval:  # one system per point: the pilots may follow the SNR
        point_system = task_system(dataclasses.replace(opts, csi=eval_csi(regime, snr)),
                                   config, task)
        recorder = SlotRecorder(detectors, point_system)
        result = ber.simulate(detectors, point_system, [snr], seed=BER_SEED,
                              max_symbols=max_symbols, min_errors=max_symbols, executor=recorder)
        per_slot = recorder.slot_errors(0)
        for name, curve_points in result.curves.items():
            point = curve_points[0]
            if sum(per_slot[name]) != point.errors:  # every batch must have been kept
                raise RuntimeError(f"{name} at {snr:g} dB: slot errors do not add up")
            points.setdefault(name, []).append(point.to_dict())
            slot_errors.setdefault(name, []).append(per_slot[name])
    return {"task_id": task_id, "task": task.spec, "snr_db": list(regime.snr_eval),
            "reports": reports, "linear": linear_val_ser(system, opts, config),
            "points": points, "slot_errors": slot_errors}


# ----------------------------------------------------------------------------- cache

def file_digest(path: Path | None) -> str | None:
    if path is None or not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


def settings_of(regime_name: str, regime: Regime, steps: int, max_symbols: int,
                gene_path: Path, collective: Path | None, example: Path) -> dict:
    """What a cached task must have been made with to be reused (JSON-equal)."""
    return {"version": CACHE_VERSION, "regime": regime_name, "steps": steps,
            "max_symbols": max_symbols, "snr_eval": list(regime.snr_eval),
            "snr_train": list(regime.snr_train), "csi": regime.csi, "frozen": regime.frozen,
            "seeds": [INIT_SEED, options(steps, regime).seed, BER_SEED], "pull": PULL,
            "nconv": INDIVIDUAL_NCONV, "learngene": file_digest(gene_path),
            "collective": file_digest(collective), "example": file_digest(example)}


RECORD_KEYS = set("task_id task snr_db reports linear points slot_errors settings".split())


def cache_file(folder: Path, task_id: int) -> Path:
    return folder / f"task_{task_id}.json"


def load_cached(folder: Path, task_id: int, settings: dict) -> dict | None:
    """The cached record of ``task_id``, or None (with the reason) if it cannot be reused."""
    path = cache_file(folder, task_id)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:  # a damaged cache only costs a retraining
        print(f"{path}: unreadable ({exc}); the task is trained again")
        return None
    if not isinstance(record, dict) or not RECORD_KEYS <= record.keys():
        print(f"{path}: not a task record of this script; the task is trained again")
        return None
    if record["settings"] != settings or record["task_id"] != task_id:
        print(f"{path}: made with other settings or input files; the task is trained again")
        return None
    return record


def save_cached(folder: Path, record: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = cache_file(folder, record["task_id"])
    with atomic_write(path) as f:  # a run killed while writing leaves no half record
        f.write(json.dumps(record).encode())
    return path


# ----------------------------------------------------------------------------- output

def print_convergence(record: dict) -> None:
    reports, linear, spec = record["reports"], record["linear"], record["task"]
    print(f"{spec} validation set: " + ", ".join(f"{k} SER {v:.4g}" for k, v in linear.items()))
    names = list(reports)
    curves = {name: curve(reports[name]) for name in names}
    print(f"{spec} validation SER by step ({' / '.join(names)}):")
    for i, step in enumerate(curves[names[0]][2]):
        print(f"  step {step:>4}: " + " / ".join(f"{curves[n][3][i]:.4f}" for n in names))
    for target_name, target in linear.items():
        print(f"  first validation step at or below {target_name} ({target:.4g}): " +
              ", ".join(f"{n} {first_step_below(reports[n], target)}" for n in names))


def draw_figure(records: list[dict], gene, figure: Path) -> None:
    fig, axes = plt.subplots(2, len(records), figsize=(5.5 * len(records), 7), squeeze=False)
    for col, record in enumerate(records):
        ax_ser, ax_loss = axes[0][col], axes[1][col]
        for name, style in zip(record["reports"], ("o-", "s-", "^-"), strict=False):
            steps, loss, vsteps, vser = curve(record["reports"][name])
            ax_ser.semilogy(vsteps, vser, style, label=name)
            ax_loss.semilogy(steps, loss, label=name)
        for (name, value), style in zip(record["linear"].items(), (":", "--", "-."),
                                        strict=True):
            if value > 0:  # an error-free line has no place on a log axis
                ax_ser.axhline(value, color="gray", linestyle=style, label=name)
        ax_ser.set(title=f"held-out {record['task']}", xlabel="step", ylabel="validation SER")
        ax_ser.legend(fontsize=8)
        ax_loss.set(xlabel="step", ylabel="training loss (MSE, + pull)")
        ax_loss.legend(fontsize=8)
    fig.suptitle(f"SDNet 8x32 QPSK, learngene {gene.layers} vs other starts\n"
                 f"(same data and validation set)", fontsize=10)
    fig.tight_layout()
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=110)
    plt.close(fig)
    print(f"figure -> {figure}")


def print_ser_table(records: list[dict], regime: Regime, max_symbols: int) -> None:
    print(f"== SER (BER engine, same draws for all; per-stream SNR, CSI "
          f"{eval_csi(regime, float('nan')).replace('nan', 'SNR')}, {max_symbols} symbols "
          f"per point; [95% slot-clustered interval])")
    print(f"{'task':>16} | {'detector':<16} | " + " | ".join(f"{s:g} dB" for s in regime.snr_eval))
    for record in records:
        for name, points in record["points"].items():
            print(f"{record['task']:>16} | {name:<16} | " + " | ".join(
                f"{p['ser']:.3e} [{p['ser_ci'][0]:.2e}, {p['ser_ci'][1]:.2e}]" for p in points))


def progress_line(i: int, n: int, record: dict, seconds: float, source: str,
                  elapsed: float, fresh: list[float]) -> str:
    mid = len(record["snr_db"]) // 2
    sers = ", ".join(f"{name.removeprefix('SDNet ')} {pts[mid]['ser']:.4g}"
                     for name, pts in record["points"].items()
                     if name.startswith("SDNet") or name == "LMMSE")
    left = (n - i) * sum(fresh) / len(fresh) if fresh else 0.0
    return (f"[task {i}/{n}] {record['task']} {source} in {seconds:.0f} s; SER at "
            f"{record['snr_db'][mid]:g} dB: {sers}; elapsed {elapsed:.0f} s, about "
            f"{left:.0f} s left")


def parse_tasks(text: str) -> tuple[int, ...]:
    try:
        tasks = tuple(int(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of task ids: {text!r}") from None
    outside = [t for t in tasks if t not in HELD_OUT_TASKS]
    if outside:
        raise argparse.ArgumentTypeError(f"tasks {outside} are not held out (the collective may "
                                         f"have seen them); choose among {HELD_OUT_TASKS}")
    return tasks


def snr_range_regime(parser, args, regime: Regime) -> tuple[Regime, str]:
    """The regime trained over ``--snr-range`` and its cache/figure suffix (bad range: exit 2)."""
    lo, hi = args.snr_range
    if not args.regime.startswith("paper"):
        parser.error("--snr-range applies to the paper regimes only")
    if args.snr is not None:
        parser.error("give --snr or --snr-range, not both")
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        parser.error(f"--snr-range needs finite LO < HI in dB, got {lo:g} {hi:g} "
                     f"(for one SNR use --snr)")
    # The trainer draws each slot's SNR in [lo, hi] but has one pilot SNR: the middle.
    mid = (lo + hi) / 2
    at = f"_range{lo:g}to{hi:g}db"
    return dataclasses.replace(regime, snr_train=(lo, hi), csi=f"ls:16@{mid:g}",
                               snr_eval=(lo, mid, hi),
                               figure=regime.figure.replace(".png", f"{at}.png")), at


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (few steps, /tmp)")
    parser.add_argument("--models", type=Path, default=MODELS)
    parser.add_argument("--regime", choices=sorted(REGIMES), default="wide")
    parser.add_argument("--collective", type=Path, default=None,
                        help="collective model for the transfer-learning arm (paper regime; "
                             "default: the one examples/train_sdnet.py --regime paper leaves "
                             "in the temporary folder)")
    parser.add_argument("--tasks", type=parse_tasks, default=None,
                        help="held-out task ids, comma-separated (default: the regime's)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="folder of the per-task JSON results (default: in the "
                             "temporary folder, one per regime)")
    parser.add_argument("--resume", action="store_true",
                        help="reuse the cached tasks made with the same settings and files")
    parser.add_argument("--snr", type=float, default=None,
                        help="paper regimes: train at this fixed SNR (pilots at it), evaluate "
                             "5 dB below, at and above it (the learngene stays the 25 dB one)")
    parser.add_argument("--snr-range", type=float, nargs=2, metavar=("LO", "HI"), default=None,
                        help="paper regimes: train with the SNR uniform in [LO, HI] dB (pilots "
                             "at the middle), evaluate at LO, the middle and HI")
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps of every arm (default: the regime's: 300 for "
                             "paper and wide, 1500 for paper-unfrozen)")
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be a positive count, got {args.steps}")
    regime, at = REGIMES[args.regime], ""
    if args.snr_range is not None:
        regime, at = snr_range_regime(parser, args, regime)
    if args.snr is not None:  # the well-conditioned tasks are error-free at 20-30 dB
        if not args.regime.startswith("paper"):
            parser.error("--snr applies to the paper regimes only")
        at = f"_at{args.snr:g}db"
        regime = dataclasses.replace(
            regime, snr_train=(args.snr, args.snr), csi=f"ls:16@{args.snr:g}",
            snr_eval=(args.snr - 5, args.snr, args.snr + 5),
            figure=regime.figure.replace(".png", f"{at}.png"))
    if args.steps is not None and args.steps != regime.steps:
        at += f"_{args.steps}steps"
        figure_name = regime.figure.replace(".png", f"_{args.steps}steps.png")
        regime = dataclasses.replace(regime, steps=args.steps, figure=figure_name)
    torch.set_num_threads(1)
    steps, max_symbols, figure = regime.steps, 40_000, FIGURES / regime.figure
    if args.quick:  # a given --steps still counts
        steps, max_symbols = args.steps or 4, 2_000
        figure = Path("/tmp") / f"mimoc_{regime.figure}"
    tasks = args.tasks or regime.tasks
    name = f"mimoc_sdnet_learngene_{args.regime}{at}{'_quick' if args.quick else ''}"
    cache = args.cache or Path(tempfile.gettempdir()) / name
    collective = args.collective
    if args.regime.startswith("paper") and collective is None:
        collective = Path(tempfile.gettempdir()) / f"mimoc_{regime.stem}_collective.pt"
    if collective is not None and not collective.is_file():
        print(f"no collective model at {collective}: the transfer-learning arm is skipped "
              f"(run examples/train_sdnet.py --regime {args.regime} first)")
        collective = None
    start = time.perf_counter()

    gene_path = args.models / f"{regime.stem}_learngene.pt"
    gene = load_learngene(gene_path)
    config = SDNetConfig(nt=8, nr=32, modulation="qpsk", nconv=INDIVIDUAL_NCONV)
    history = torch.tensor(gene.significance)
    print(f"== learngene ({args.regime} regime)")
    print(f"collective: Nconv={gene.source['nconv']}, {len(gene.tasks)} tasks, tau={gene.tau:.3g}")
    print("gradient significance rho_k^l (rows: tasks, columns: " + " ".join(gene.candidates) + ")")
    for task, row in zip(gene.tasks, gene.significance, strict=True):
        print(f"  {task:>9}  " + "  ".join(f"{r:.3f}" for r in row))
    print("  Kendall trend " + "  ".join(f"{t:+.2f}" for t in kendall_trend(history).tolist()))
    probe = SDNet(config)
    print(f"learngene layers {gene.layers} -> individual "
          f"{probe.middle_layers[-len(gene.layers):]}: {gene.n_params} of "
          f"{sum(p.numel() for p in probe.parameters())} parameters, transferred-parameter "
          f"ratio {100 * transferred_ratio(gene, probe):.1f}%")

    settings = settings_of(args.regime, regime, steps, max_symbols, gene_path, collective,
                           args.models / f"{regime.stem}.pt")
    records, fresh = [], []
    for i, task_id in enumerate(tasks, 1):
        began = time.perf_counter()
        record = load_cached(cache, task_id, settings) if args.resume else None
        if record is None:
            record = run_task(task_id, regime, steps, max_symbols, gene, collective, config,
                              args.models)
            record["settings"] = settings
            path = save_cached(cache, record)
            fresh.append(time.perf_counter() - began)
            source = f"trained (-> {path})"
        else:
            source = f"from {cache_file(cache, task_id)}"
        print_convergence(record)
        records.append(record)
        print(progress_line(i, len(tasks), record, time.perf_counter() - began, source,
                            time.perf_counter() - start, fresh), flush=True)

    draw_figure(records, gene, figure)
    print_ser_table(records, regime, max_symbols)
    summarise(records)
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
