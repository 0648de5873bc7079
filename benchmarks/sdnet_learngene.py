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

Run from the repository root (580 s on the shared, loaded 2-core machine)::

    python benchmarks/sdnet_learngene.py
    python benchmarks/sdnet_learngene.py --quick     # smoke run, figures to /tmp
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
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
from mimoc.sim import ber  # noqa: E402
from mimoc.sim.detectors.linear import mmse, zf  # noqa: E402
from mimoc.sim.multipath import channel_task  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "examples" / "models"
FIGURE = ROOT / "benchmarks" / "figures" / "learngene_convergence.png"
TASKS = (1000, 1004)            # held-out: an ill-conditioned and a moderate one
INDIVIDUAL_NCONV = 4           # as examples/train_sdnet.py
SNR_EVAL = (4.0, 8.0, 12.0)
SNR_TRAIN = (4.0, 12.0)
CSI = "ls:16@8"
PULL = 1e-3
INIT_SEED = 7


def options(steps: int) -> TrainOptions:
    return TrainOptions(steps=steps, batch=128, snr_db=SNR_TRAIN, csi=CSI, lr=3e-3, seed=3,
                        val_every=max(1, steps // 12), val_batch=512, log_every=5)


def linear_val_ser(system, opts: TrainOptions, config: SDNetConfig) -> dict[str, float]:
    """ZF and MMSE SER on the trainer's validation set (same draws as the curves)."""
    batches = validation_set(SDNet(config), system, opts)
    out = {}
    for name, detect in (("ZF", zf), ("MMSE", mmse)):
        errors = symbols = 0
        for b in batches:
            x_hat = detect(b.H_est, b.y, b.noise_var, system.constellation)
            errors += int((system.constellation.indices_of_real(x_hat) != b.indices).sum())
            symbols += b.indices.numel()
        out[name] = errors / symbols
    return out


def curve(report) -> tuple[list[int], list[float], list[int], list[float]]:
    steps = [h["step"] for h in report.history]
    loss = [h["loss"] for h in report.history]
    vsteps = [h["step"] for h in report.history if h["val_ser"] is not None]
    vser = [h["val_ser"] for h in report.history if h["val_ser"] is not None]
    return steps, loss, vsteps, vser


def first_step_below(report, target: float) -> int | None:
    for h in report.history:
        if h["val_ser"] is not None and h["val_ser"] <= target:
            return h["step"]
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (few steps, /tmp)")
    parser.add_argument("--models", type=Path, default=MODELS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    steps, max_symbols, figure = 300, 40_000, FIGURE
    if args.quick:
        steps, max_symbols, figure = 4, 2_000, Path("/tmp/mimoc_learngene_convergence.png")
    start = time.perf_counter()

    gene = load_learngene(args.models / "sdnet_8x32_qpsk_learngene.pt")
    config = SDNetConfig(nt=8, nr=32, modulation="qpsk", nconv=INDIVIDUAL_NCONV)
    history = torch.tensor(gene.significance)
    print("== learngene")
    print(f"collective: Nconv={gene.source['nconv']}, {len(gene.tasks)} tasks, tau={gene.tau:.3g}")
    print("gradient significance rho_k^l (rows: tasks, columns: " + " ".join(gene.candidates) + ")")
    for task, row in zip(gene.tasks, gene.significance, strict=True):
        print(f"  {task:>9}  " + "  ".join(f"{r:.3f}" for r in row))
    print("  Kendall trend " + "  ".join(f"{t:+.2f}" for t in kendall_trend(history).tolist()))
    probe = SDNet(config)
    total = sum(p.numel() for p in probe.parameters())
    targets = probe.middle_layers[-len(gene.layers):]
    ratio = transferred_ratio(gene, probe)
    print(f"learngene layers {gene.layers} -> individual {targets}: {gene.n_params} of "
          f"{total} parameters, transferred-parameter ratio {100 * ratio:.1f}%")

    fig, axes = plt.subplots(2, len(TASKS), figsize=(5.5 * len(TASKS), 7), squeeze=False)
    ser_rows = []
    for col, task_id in enumerate(TASKS):
        task = channel_task(task_id)
        opts = options(steps)
        system = task_system(opts, config, task)
        reports = {}
        models = {}
        for name, inherit_gene in (("learngene", gene), ("scratch", None)):
            torch.manual_seed(INIT_SEED)  # the same initialisation for both
            model = SDNet(config)
            reports[name] = train_individual(model, task, opts, inherit_gene, PULL)
            models[name] = model
            print(f"task:{task_id} {name}: {reports[name].steps} steps in "
                  f"{reports[name].seconds:.0f} s, final loss {reports[name].final_loss:.4f}, "
                  f"validation SER {reports[name].val_ser:.4g}", flush=True)
        linear = linear_val_ser(system, opts, config)
        print(f"task:{task_id} validation set: ZF SER {linear['ZF']:.4g}, "
              f"MMSE SER {linear['MMSE']:.4g}")
        print(f"task:{task_id} validation SER by step (learngene / scratch):")
        lg, sc = curve(reports["learngene"]), curve(reports["scratch"])
        for step, a, b in zip(lg[2], lg[3], sc[3], strict=True):
            print(f"  step {step:>4}: {a:.4f} / {b:.4f}")
        for target_name, target in linear.items():
            print(f"  first validation step at or below {target_name} ({target:.4g}): "
                  f"learngene {first_step_below(reports['learngene'], target)}, "
                  f"scratch {first_step_below(reports['scratch'], target)}")

        ax_ser, ax_loss = axes[0][col], axes[1][col]
        ax_ser.semilogy(lg[2], lg[3], "o-", label="learngene (inherited, L2 pull)")
        ax_ser.semilogy(sc[2], sc[3], "s-", label="from scratch")
        for (name, value), style in zip(linear.items(), (":", "--"), strict=True):
            ax_ser.axhline(value, color="gray", linestyle=style, label=name)
        ax_ser.set(title=f"held-out task:{task_id}", xlabel="step", ylabel="validation SER")
        ax_ser.legend(fontsize=8)
        ax_loss.semilogy(lg[0], lg[1], label="learngene")
        ax_loss.semilogy(sc[0], sc[1], label="from scratch")
        ax_loss.set(xlabel="step", ylabel="training loss (MSE, + pull)")
        ax_loss.legend(fontsize=8)

        detectors = {"SDNet learngene": ber.from_module(models["learngene"]),
                     "SDNet scratch": ber.from_module(models["scratch"]),
                     "ZF": ber.classical("zf", system.constellation),
                     "MMSE": ber.classical("mmse", system.constellation)}
        example = load_checkpoint(args.models / "sdnet_8x32_qpsk.pt")  # read when needed
        if example.training.get("channel_task") == f"task:{task_id}":
            detectors["SDNet example"] = ber.from_module(example.model)
        result = ber.simulate(detectors, system, SNR_EVAL, seed=11, max_symbols=max_symbols,
                              min_errors=max_symbols)
        for name, points in result.curves.items():
            ser_rows.append((f"task:{task_id}", name, [p.ser for p in points]))

    fig.suptitle(f"SDNet 8x32 QPSK, learngene {gene.layers} vs from scratch "
                 f"(same init, data and validation set)")
    fig.tight_layout()
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=110)
    print(f"figure -> {figure}")

    print(f"== SER (BER engine, same draws for all; per-stream SNR, CSI {CSI}, "
          f"{max_symbols} symbols per point)")
    print(f"{'task':>9} | {'detector':<16} | " + " | ".join(f"{s:g} dB" for s in SNR_EVAL))
    for task, name, sers in ser_rows:
        print(f"{task:>9} | {name:<16} | " + " | ".join(f"{s:.3e}" for s in sers))
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
