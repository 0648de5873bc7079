"""``mimoc report``: one Markdown report of a detector on every target, with its figures.

The report directory (written atomically: all of it or nothing) holds

- ``report.md``: the model summary (``mimoc inspect``'s numbers), error-rate curves
  (the original PyTorch model, each compiled ONNX target and each crossbar at its
  device's cycle-to-cycle variation, all on the same channel and noise draws), each
  crossbar at several C2C levels, the budget (``mimoc budget``'s joint verdict per target:
  slot latency at a percentile and SNR loss against the fp32 model, and where the numbers
  come from) and the compile settings of every target;
- ``ber.png``, ``crossbar_<device>_c2c.png``, ``budget.png``: the figures it shows;
- ``report.json``: every number of the report, for scripts.

Example::

    >>> write_report("detnet.pt", "report/", targets="onnx,dsp-c6678",
    ...              snr_db=[0, 2, 4], max_symbols=20_000)
    PosixPath('report')
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mimoc import __version__
from mimoc.errors import UsageError
from mimoc.fileio import releases_claims
from mimoc.sim.ber import BERResult, classical, from_module, simulate
from mimoc.sim.detectors import get_classical_detector
from mimoc.studies import budget as budget_mod
from mimoc.tables import markdown_table
from mimoc.validation import output_envelope

ORIGINAL = "original (PyTorch)"
DEFAULT_C2C = (0.0, 0.01, 0.02, 0.04)
DEFAULT_MAX_SYMBOLS = 50_000


def default_snrs(training: dict[str, Any]) -> list[float]:
    """Six points over the model's training SNR range (``0:2:10`` when none is recorded)."""
    snr = training.get("snr_db")
    if isinstance(snr, list | tuple) and len(snr) == 2 and float(snr[1]) > float(snr[0]):
        lo, hi = float(snr[0]), float(snr[1])
        return [round(lo + i * (hi - lo) / 5, 2) for i in range(6)]
    return [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]


@releases_claims  # a call failing after its output check leaves no lock
def write_report(model_path: str | os.PathLike, out: str | os.PathLike, *,
                 targets: str | Sequence[str] | None = None,
                 snr_db: Sequence[float] | None = None,
                 c2c: Sequence[float] = DEFAULT_C2C, max_symbols: int = DEFAULT_MAX_SYMBOLS,
                 slot: int = budget_mod.DEFAULT_SLOT,
                 budget_s: float = budget_mod.DEFAULT_BUDGET_S, seed: int = 0,
                 array: tuple[int, int] = budget_mod.DEFAULT_ARRAY, min_time: float = 0.2,
                 force: bool = False, progress: bool = False,
                 say: Callable[[str], None] | None = None,
                 command: str | None = None, argv: Sequence[str] | None = None,
                 budget_options: Mapping[str, Any] | None = None,
                 baseline: Sequence[str] = ()) -> Path:
    """Write the report directory ``out`` (see the module docstring); returns its path.

    Args:
        model_path: a mimoc checkpoint.
        targets: as for ``mimoc budget`` (default: every default target this build has).
        snr_db: SNR points of the curves (default: :func:`default_snrs`).
        c2c: cycle-to-cycle levels (fractions) of the crossbar noise sweep.
        max_symbols: scalar symbols per SNR point and curve.
        slot, budget_s, array, min_time, seed: as for :func:`mimoc.studies.budget.run_budget`.
        force: replace a non-empty ``out``.
        command: the command line to print under "Reproduce".
        argv: the command line as a list, for report.json's ``command`` (None: made
            through the Python API).
        budget_options: more options of the budget (``subcarriers``,
            ``subcarriers_per_channel``, ``percentile``, ``calls``, ``max_time``,
            ``target_ser``, ``max_loss_db``: see :func:`mimoc.studies.budget.run_budget`);
            its accuracy uses ``max_symbols`` per SNR point.
        baseline: classical detectors (``mmse``, ``zf``, ``kbest:16``: names of
            :mod:`mimoc.sim.detectors`) drawn next to the model in the error-rate curves, on
            the same draws; one already among the targets (``mmse``) is drawn once.
    """
    from mimoc.detectors.summary import describe_checkpoint
    from mimoc.targets.output import check_output_directory, write_directory

    check_output_directory(out, force=force)
    if not isinstance(max_symbols, int) or max_symbols < 1:
        raise UsageError(f"max_symbols must be a positive integer, got {max_symbols!r}")
    levels = [float(c) for c in c2c]
    if any(not 0 <= c < 1 for c in levels):
        raise UsageError(f"C2C levels are fractions in [0, 1) (0.02 = 2%), got {list(c2c)}")
    specs = budget_mod.parse_targets(targets)
    baseline = [name.strip().lower() for name in baseline]
    for name in baseline:
        get_classical_detector(name)  # an unknown name fails before any slow work
    say = say or (lambda text: None)
    summary = describe_checkpoint(Path(model_path))
    with budget_mod.budget_context(model_path, slot=slot, array=array, min_time=min_time,
                                   seed=seed, say=say, budget_s=budget_s,
                                   **dict(budget_options or {})) as ctx, \
            tempfile.TemporaryDirectory(prefix="mimoc-report-") as tmp:
        snrs = sorted(float(s) for s in (snr_db if snr_db is not None
                                         else default_snrs(ctx.training)))
        prepared = budget_mod.prepare_all(specs, ctx)
        budget = budget_mod.evaluate(ctx, prepared, ser_symbols=max_symbols)

        curves = {ORIGINAL: from_module(ctx.model)}
        original = {"kind": "model", "spec": str(model_path), "path": str(model_path)}
        identities = {ORIGINAL: original}
        for target in prepared:
            if target.available and target.engine is not None:
                label = target.spec.name
                identity = _identity(target.spec)
                if target.spec.kind == "crossbar":
                    label += f" (C2C {target.c2c})"
                    identity["c2c"] = None  # the device's own
                curves[label], identities[label] = target.engine, identity
        constellation = ctx.system.constellation
        for name in baseline:
            curves.setdefault(name, classical(name, constellation))
        say("simulating the error-rate curves")
        ber = simulate(curves, ctx.system, snrs, seed=seed, max_symbols=max_symbols,
                       progress=progress)
        ber.identities = identities
        sweeps: dict[str, BERResult] = {}
        for target in prepared:
            if target.available and target.engine_at is not None:
                say(f"simulating {target.spec.name} at C2C {', '.join(f'{c:g}' for c in levels)}")
                engines = {ORIGINAL: from_module(ctx.model)}
                engines.update({f"C2C {100 * c:g}%": target.engine_at(c) for c in levels})
                sweeps[target.spec.name] = simulate(engines, ctx.system, snrs, seed=seed,
                                                    max_symbols=max_symbols, progress=progress)
                sweeps[target.spec.name].identities = {
                    ORIGINAL: original, **{f"C2C {100 * c:g}%": {**_identity(target.spec),
                                                                 "c2c": c} for c in levels}}

        from mimoc.studies.plots import plot_budget, plot_error_rates

        figures: dict[str, Path] = {"ber.png": plot_error_rates(ber, Path(tmp) / "ber.png")}
        for name, sweep in sweeps.items():
            file = f"crossbar_{_slug(name.partition(':')[2] or name)}_c2c.png"
            figures[file] = plot_error_rates(sweep, Path(tmp) / file)
        if any(row.available for row in budget.rows):
            figures["budget.png"] = plot_budget(budget, Path(tmp) / "budget.png")
        files = {name: path.read_bytes() for name, path in figures.items()}

    numbers = {**output_envelope("report", argv), "model": summary, "budget": budget.to_dict(),
               "ber": ber.to_dict(), "crossbar_c2c": {k: v.to_dict() for k, v in
                                                       sweeps.items()},
               "settings": {p.spec.name: p.settings for p in prepared if p.available},
               "baseline": list(dict.fromkeys(baseline)), "max_symbols": max_symbols,
               "seed": seed}
    files["report.json"] = (json.dumps(numbers, indent=1, default=str) + "\n").encode()
    files["report.md"] = render_markdown(summary, budget, ber, sweeps, prepared, figures,
                                         max_symbols=max_symbols, command=command,
                                         baseline=baseline).encode()
    say("writing the report")
    return write_directory(files, out, force=force)


def _identity(spec) -> dict[str, Any]:
    """A budget target's curve in report.json's ``ber`` (``mimoc ber``'s detector
    identity): compiled to a temporary artifact, so no path."""
    if spec.kind == "classical":
        return {"kind": "classical", "spec": spec.name}
    target = "crossbar" if spec.kind == "crossbar" else "onnx"
    return {"kind": "artifact", "spec": spec.name, "target": target}


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(text).stem)


# ---------------------------------------------------------------- Markdown

def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    return markdown_table(rows, header, right=right).splitlines()


def _model_section(summary: dict[str, Any]) -> list[str]:
    config = ", ".join(f"{k}={v}" for k, v in summary["config"].items()
                       if k not in ("nt", "nr", "modulation"))
    training = summary.get("training") or {}
    options = training.get("options") if isinstance(training.get("options"), dict) else {}
    trained = "none recorded"
    if training:
        parts = [f"{training['steps']} steps" if "steps" in training else ""]
        snr = training.get("snr_db")
        if isinstance(snr, list | tuple) and len(snr) == 2:
            parts.append(f"SNR {snr[0]:g}..{snr[1]:g} dB {options.get('snr_def', '')}".strip())
        if isinstance(training.get("val_ser"), int | float):
            parts.append(f"validation SER {training['val_ser']:.4g}")
        if training.get("system"):
            parts.append(f"on {training['system']}")
        trained = ", ".join(p for p in parts if p)
    rows = [["family", summary["family"]],
            ["link", f"Nt={summary['nt']} x Nr={summary['nr']}, {summary['modulation']}"],
            ["config", config or "(defaults)"],
            ["parameters", f"{summary['params']:,}"],
            ["FLOPs per symbol vector", f"{summary['flops_per_symbol']:,}"],
            ["FLOPs per slot", f"{summary['flops_per_slot']:,} (S={summary['slot_symbols']}; "
                               f"{summary['flops_slot_rate']:,} of them once per slot)"],
            ["training", trained]]
    return ["## Model", "", *_md_table(["", ""], rows, set()), "",
            "FLOPs are 2 x multiply-accumulates of the PyTorch module (`mimoc inspect`); the "
            "latency budget uses the compiler's count after its passes (below).", ""]


def _curve_table(result: BERResult) -> list[str]:
    rows = []
    for name, points in result.curves.items():
        for p in points:
            rows.append([name, f"{p.snr_db:g}", f"{p.ser:.3e}",
                         f"[{p.ser_ci[0]:.2e}, {p.ser_ci[1]:.2e}]", f"{p.ber:.3e}",
                         f"{p.symbols:,}", f"{p.errors:,}"])
    return _md_table(["curve", "SNR [dB]", "SER", "SER 95% CI", "BER", "symbols", "errors"],
                     rows, {1, 2, 4, 5, 6})


def _budget_section(budget, figures) -> list[str]:
    from mimoc.studies.budget.timing import percentile_key

    us = budget_mod.format_us
    w = budget.workload
    key = percentile_key(budget.percentile)
    lines = ["## Latency budget and verdict", "",
             f"Workload: {w.describe()}; budget {us(budget.budget_s)} us per slot. A target "
             f"**meets** only when its {key} slot latency is within the budget and its SNR "
             f"loss at SER {budget.target_ser:g} against the fp32 model is within "
             f"{budget.max_loss_db:g} dB (all of its 95% interval, a paired bootstrap over "
             "slots); it **misses** when either is known to exceed its limit; otherwise it is "
             "**unknown**. FLOPs over a peak is a lower bound (>=): it can prove a miss, never "
             "a meet.", ""]
    if "budget.png" in figures:
        lines += ["![slot latency and SNR loss by target](budget.png)", ""]
    levels = sorted({50.0, 99.0, 99.9, budget.percentile})
    rows = []
    for row in budget.rows:
        if not row.available:
            rows.append([row.target, "unavailable", *[""] * (len(levels) + 6), row.reason])
            continue
        lat = row.latency
        bound = ">= " if lat.lower_bound else ""
        tail = [us(lat.tail.at(q)) if lat.tail is not None else
                (bound + us(lat.per_slot_s) if q == budget.percentile else "-")
                for q in levels]
        miss = "-" if lat.tail is None else f"{100 * lat.tail.miss_fraction:.3g}"
        cap = row.capacity
        capacity = "" if cap is None else \
            ("<= " if cap.upper_bound else "") + f"{cap.subcarriers_per_slot:,}"
        rows.append([row.target, lat.source, bound + us(lat.preparation_s),
                     bound + us(lat.detection_s), *tail, miss,
                     budget_mod.format_loss(row), capacity, budget_mod.verdict_text(row),
                     row.verdict_reason])
    lines += _md_table(["target", "source", "preparation [us]", "detection [us]",
                        *[f"{percentile_key(q)} [us]" for q in levels], "slots over [%]",
                        "SNR loss [dB] (95% CI)", "subcarriers per slot", "verdict", "why"],
                       rows, set(range(2, len(levels) + 5)) | {len(levels) + 6})
    lines += ["", "Where the numbers come from:", ""]
    for row in budget.rows:
        if row.available:
            capacity = "" if row.capacity is None else \
                f" Subcarriers per slot: {row.capacity.how}."
            lines.append(f"- `{row.target}`: {row.latency.how}.{capacity}")
    lines += [f"- note: {note}" for note in budget.notes]
    return lines + [""]


def _settings_section(prepared) -> list[str]:
    lines = ["## Compile settings", ""]
    for target in prepared:
        if not target.available:
            continue
        lines += [f"### `{target.spec.name}`", "", "```json",
                  json.dumps(target.settings, indent=1, default=str), "```", ""]
    return lines


def render_markdown(summary, budget, ber: BERResult, sweeps: dict[str, BERResult], prepared,
                    figures, *, max_symbols: int, command: str | None,
                    baseline: Sequence[str] = ()) -> str:
    """The text of ``report.md``."""
    s = ber.system
    baselines = [name for name in baseline if name in ber.curves]
    title = (f"# mimoc report: {summary['family']} {summary['nt']}x{summary['nr']} "
             f"{str(summary['modulation']).upper()} ({Path(summary['path']).name})")
    lines = [title, "", f"Written by mimoc {__version__} from `{summary['path']}`.", ""]
    lines += _model_section(summary)
    lines += ["## Error rates", "",
              f"{s.nt}x{s.nr} {s.modulation}, {s.channel.spec} channel, {s.csi.spec} CSI, "
              f"slots of {s.slot} symbols, SNR {s.snr_def}; every curve on the same channel "
              f"and noise draws (seed {ber.seed}), up to {max_symbols:,} symbols per point. "
              "The compiled ONNX targets run their artifact in onnxruntime; each crossbar runs "
              "in mimoc's IMC simulator at its device's cycle-to-cycle (C2C) variation."
              + (f" Classical baselines: {', '.join(baselines)}." if baselines else ""), "",
              "![bit error rate versus SNR](ber.png)", "", *_curve_table(ber), ""]
    for name, sweep in sweeps.items():
        file = next(f for f in figures if f.startswith("crossbar_") and
                    _slug(name.partition(":")[2] or name) in f)
        lines += [f"### `{name}` under programming noise", "",
                  "The IMC simulator at several C2C levels (per-pulse conductance noise, "
                  "as a fraction of Gmax - Gmin), next to the original model.", "",
                  f"![{name} at several C2C levels]({file})", "", *_curve_table(sweep), ""]
    lines += _budget_section(budget, figures)
    lines += _settings_section(prepared)
    if command:
        lines += ["## Reproduce", "", "```sh", command, "```", ""]
    return "\n".join(lines)


__all__ = ["DEFAULT_C2C", "default_snrs", "render_markdown", "write_report"]
