"""RE-MIMO acceptance benchmark (issue 3): permutation equivariance and one model's
SER across user counts, next to (unbiased L)MMSE, ordered MMSE-SIC and ML (sphere decoder).

Run (about 3 minutes on an idle CPU core, one thread)::

    python benchmarks/remimo.py                       # the example checkpoint
    python benchmarks/remimo.py --model other.pt --nt 2,4,8,10 --snr 0,4,8

1. **Equivariance.** For every ``Nt``: 128 slots of 14 symbols at 6 dB and
   three random user permutations ``P``; a user's real columns ``j`` and
   ``j + Nt`` move together. Printed: ``max |f(H P, y) - P^T f(H, y)|`` over all
   outputs in float32 and with the model cast to float64 (what is left there
   is rounding), and the fraction of hard decisions that differ.
2. **SER.** :func:`mimoc.sim.ber.simulate` with the same channel and noise draws
   for all detectors (i.i.d. Rayleigh, perfect CSI, per-stream SNR, one symbol
   per slot), one RE-MIMO checkpoint for every ``Nt``. Per ``Nt``: the SNR at
   which each detector reaches SER 1e-2 (log-linear interpolation) and the
   RE-MIMO gain over LMMSE there.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from mimoc.detectors import load_detector
from mimoc.detectors.checkpoint import load_checkpoint
from mimoc.sim.ber import classical, from_module, simulate, snr_at
from mimoc.sim.system import MIMOSystem

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = ROOT / "examples" / "models" / "remimo_16rx_4to8_16qam.pt"
#: The unbiased LMMSE (as the field computes MMSE): the biased form pulls outer 16-QAM
#: points inward and loses 5-9% SER it need not.
BASELINES = {"lmmse": "lmmse", "mmse-sic": "mmse-sic", "ml": "sd"}


def permute_users(H: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """``H P`` in the real model: user ``j``'s columns ``j`` and ``j + Nt`` move together."""
    nt = H.shape[-1] // 2
    return H[..., torch.cat([perm, perm + nt])]


@torch.no_grad()
def equivariance(model, nt: int, generator: torch.Generator, slots: int = 128,
                 trials: int = 3) -> tuple[float, float]:
    """Max abs deviation in float32 and in float64, and the fraction of changed hard
    decisions (float32), over ``trials`` permutations."""
    config = model.config
    data = MIMOSystem(nt, config.nr, config.modulation, slot=14).sample(slots, 6.0, generator)
    reference = model(data.H_est, data.y)
    reference64 = model.double()(data.H_est.double(), data.y.double())
    model.float()
    const = model.constellation
    worst, worst64, changed = 0.0, 0.0, 0.0
    for _ in range(trials):
        perm = torch.randperm(nt, generator=generator)
        order = torch.cat([perm, perm + nt])
        H_perm = permute_users(data.H_est, perm)
        permuted = model(H_perm, data.y)
        worst = max(worst, (permuted - reference[..., order]).abs().max().item())
        permuted64 = model.double()(H_perm.double(), data.y.double())
        model.float()
        worst64 = max(worst64, (permuted64 - reference64[..., order]).abs().max().item())
        same = const.indices_of_real(permuted) == const.indices_of_real(reference[..., order])
        changed = max(changed, 1.0 - same.float().mean().item())
    return worst, worst64, changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--nt", default="4,5,6,7,8", help="user counts, comma-separated")
    parser.add_argument("--snr", default="2,4,6,8", help="per-stream SNRs in dB")
    parser.add_argument("--max-symbols", type=int, default=300_000)
    parser.add_argument("--min-errors", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()

    torch.set_num_threads(1)
    model = load_detector(args.model)
    config = model.config
    counts = [int(v) for v in args.nt.split(",")]
    snrs = [float(v) for v in args.snr.split(",")]
    # the checkpoint reader checks the zip CRCs and unpickles nothing beyond tensors
    training = load_checkpoint(args.model).training or {}
    print(f"model {args.model.name}: Nr={config.nr}, {config.modulation}, trained for "
          f"Nt={config.nt_min}..{config.nt}, d_model={config.d_model}, T={config.iterations}, "
          f"{sum(p.numel() for p in model.parameters())} parameters, "
          f"{training.get('steps', '?')} steps in {training.get('seconds', 0) / 60:.1f} min")

    print("\n## permutation equivariance\n")
    print("| Nt | max abs deviation, float32 | same, float64 | changed hard decisions |")
    print("|---:|---:|---:|---:|")
    gen = torch.Generator().manual_seed(args.seed)
    equi = {}
    for nt in counts:
        deviation, deviation64, changed = equivariance(model, nt, gen)
        equi[nt] = {"max_abs_deviation": deviation, "max_abs_deviation_float64": deviation64,
                    "changed_decisions": changed}
        print(f"| {nt} | {deviation:.2e} | {deviation64:.2e} | {changed:.2e} |")

    print(f"\n## SER (i.i.d. Rayleigh, perfect CSI, per-stream SNR, seed {args.seed}, "
          f"up to {args.max_symbols} symbols or {args.min_errors} errors per point)\n")
    names = ["remimo", *BASELINES]
    print("| Nt | SNR dB | " + " | ".join(names) + " | LMMSE / RE-MIMO |")
    print("|---:|---:|" + "---:|" * (len(names) + 1))
    curves, crossings = {}, {}
    start = time.perf_counter()
    for nt in counts:
        system = MIMOSystem(nt, config.nr, config.modulation)
        detectors = {"remimo": from_module(model)}
        detectors.update({name: classical(spec, system.constellation)
                          for name, spec in BASELINES.items()})
        result = simulate(detectors, system, snrs, seed=args.seed, max_symbols=args.max_symbols,
                          min_errors=args.min_errors)
        curves[nt] = {name: [p.to_dict() for p in pts] for name, pts in result.curves.items()}
        for i, snr in enumerate(snrs):
            sers = [result.curves[name][i].ser for name in names]
            ratio = sers[1] / sers[0] if sers[0] > 0 else float("inf")
            print(f"| {nt} | {snr:g} | " + " | ".join(f"{s:.3g}" for s in sers)
                  + f" | {ratio:.2f} |")
        crossings[nt] = {name: snr_at(result.curves[name], 1e-2) for name in names}

    print("\n## SNR (dB) at SER 1e-2\n")
    print("| Nt | " + " | ".join(names) + " | RE-MIMO gain over LMMSE | RE-MIMO loss to ML |")
    print("|---:|" + "---:|" * (len(names) + 2))
    for nt in counts:
        at = crossings[nt]
        cells = [f"{at[n]:.2f}" if at[n] is not None else "-" for n in names]
        gain = at["lmmse"] - at["remimo"] if None not in (at["lmmse"], at["remimo"]) else None
        loss = at["remimo"] - at["ml"] if None not in (at["ml"], at["remimo"]) else None
        print(f"| {nt} | " + " | ".join(cells)
              + f" | {'-' if gain is None else f'{gain:.2f} dB'}"
              + f" | {'-' if loss is None else f'{loss:.2f} dB'} |")
    print(f"\nsimulation time {time.perf_counter() - start:.0f} s")

    if args.json:
        args.json.write_text(json.dumps({"model": str(args.model), "equivariance": equi,
                                         "curves": curves, "snr_at_1e-2": crossings}, indent=1))


if __name__ == "__main__":
    main()
