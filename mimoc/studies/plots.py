"""Plots as PNGs: error rates versus SNR, and latency budgets.

One curve per detector on a logarithmic error-rate axis, each point with its
95% interval (slot-clustered, mimoc.sim.stats) as an error bar. A point with no error at all has no
place on a log axis; it is drawn as a downward triangle at the upper end of
its interval ("the rate is below this"), so a curve never silently ends.

The figure is built with matplotlib's object API on the Agg canvas: no
display, no global ``pyplot`` state. The file is written atomically (a
temporary file in the same directory, renamed into place), so a failed run
never leaves a truncated PNG behind.

:func:`plot_budget` draws a ``mimoc budget`` report: per target, the slot latency as
a bar of channel preparation and detection, against the budget line.

Example::

    >>> plot_error_rates(result, "ber.png")          # result: mimoc.sim.ber.BERResult
    >>> plot_budget(report, "budget.png")            # report: mimoc.studies.budget.BudgetReport
"""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mimoc.errors import UsageError
from mimoc.fileio import atomic_write
from mimoc.sim.ber import BERPoint, BERResult

#: x-axis label for each SNR convention of :mod:`mimoc.sim.snr`.
SNR_AXIS_LABELS = {
    "per-stream": "SNR per stream, $E_s/N_0$ [dB]",
    "per-rx": r"SNR per receive antenna, $N_t/N_0$ [dB]",
    "detnet": r"SNR, $\mathrm{tr}(H^T H)/(K\sigma^2)$ (DetNet) [dB]",
}
METRICS = {"ber": "Bit error rate (BER)", "ser": "Symbol error rate (SER)"}


def check_plot_path(path: str | os.PathLike) -> Path:
    """Check that a PNG can be written at ``path`` before any work is done.

    Raises :class:`UsageError` when the suffix is not ``.png``, the path is a
    directory, or its directory is missing or not writable.
    """
    target = Path(path)
    if target.suffix.lower() != ".png":
        raise UsageError(f"plot path {str(path)!r} must end in .png (the plot is a PNG image)")
    if target.is_dir():
        raise UsageError(f"plot path {str(path)!r} is a directory; give a file name ending in .png")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"cannot write plot {str(path)!r}: directory {str(folder)!r} does not "
                         "exist; create it first or choose another path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write plot {str(path)!r}: directory {str(folder)!r} is not "
                         "writable; choose another path")
    return target


def _title(result: BERResult) -> str:
    s = result.system
    channel = getattr(s.channel, "spec", str(s.channel))
    csi = getattr(s.csi, "spec", str(s.csi))
    slot = f", slot {s.slot}" if s.slot > 1 else ""
    return f"{s.nt}x{s.nr} {s.modulation.upper()}, {channel} channel, {csi} CSI{slot}"


#: Marker and line style per curve, in turn, so that curves lying on top of each other (a
#: compiled artifact and its PyTorch model make the same decisions) stay distinguishable.
CURVE_STYLES = [("o", "-"), ("s", "--"), ("^", "-."), ("D", ":"), ("v", "-"), ("P", "--"),
                ("X", "-."), ("*", ":")]


def curve_labels(names: list[str]) -> dict[str, str]:
    """Legend labels: a path (``examples/models/detnet.pt``, ``out/detnet_onnx``) becomes its
    last component, unless two curves would then share a label."""
    short = {name: Path(name).name if ("/" in name or os.sep in name) and Path(name).name
             else name for name in names}
    if len(set(short.values())) < len(short):
        return {name: name for name in names}
    return short


def _draw_curve(ax, label: str, points: list[BERPoint], metric: str, index: int = 0) -> None:
    points = sorted(points, key=lambda p: p.snr_db)
    rate = [getattr(p, metric) for p in points]
    ci = [getattr(p, f"{metric}_ci") for p in points]
    seen = [i for i, r in enumerate(rate) if r > 0]
    marker, style = CURVE_STYLES[index % len(CURVE_STYLES)]
    hollow = index % 2 == 1  # alternate filled and open markers: overlaps show both
    line = ax.errorbar(
        [points[i].snr_db for i in seen], [rate[i] for i in seen],
        yerr=[[rate[i] - ci[i][0] for i in seen], [ci[i][1] - rate[i] for i in seen]],
        marker=marker, markersize=6 if hollow else 4, capsize=3, linewidth=1.5,
        linestyle=style, label=label, **({"markerfacecolor": "none"} if hollow else {}),
    )
    unseen = [i for i, r in enumerate(rate) if r <= 0]
    if unseen:
        colour = line.lines[0].get_color()
        ax.plot([points[i].snr_db for i in unseen], [ci[i][1] for i in unseen],
                linestyle="none", marker="v", color=colour, markerfacecolor="none")


def plot_error_rates(result: BERResult, path: str | os.PathLike, metric: str = "ber") -> Path:
    """Write a PNG of ``metric`` (``"ber"`` or ``"ser"``) versus SNR for every curve.

    Returns the path written. Raises :class:`UsageError` for an unknown metric
    or an unwritable path (checked before drawing).
    """
    if metric not in METRICS:
        raise UsageError(f"unknown metric {metric!r}; choose ber or ser")
    target = check_plot_path(path)

    fig = Figure(figsize=(6.4, 4.8), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    labels = curve_labels(list(result.curves))
    for index, (name, points) in enumerate(result.curves.items()):
        _draw_curve(ax, labels[name], points, metric, index)
    if any(getattr(p, metric) <= 0 for pts in result.curves.values() for p in pts):
        ax.plot([], [], linestyle="none", marker="v", color="grey", markerfacecolor="none",
                label="no errors: 95% upper bound")
    ax.set_yscale("log")
    ax.set_xlabel(SNR_AXIS_LABELS.get(result.system.snr_def, "SNR [dB]"))
    ax.set_ylabel(METRICS[metric])
    ax.set_title(_title(result), fontsize="medium")
    ax.grid(True, which="major", alpha=0.5)
    ax.grid(True, which="minor", alpha=0.2)
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: labels[i].startswith("no errors"))
    ax.legend([handles[i] for i in order], [labels[i] for i in order],
              title="detector (95% CI)", fontsize="small", title_fontsize="small")

    with atomic_write(target) as handle:
        fig.savefig(handle, format="png")
    return target


# -- latency budgets -----------------------------------------------------------------

#: Bar colours of the two parts of a slot (colour-blind safe pair).
BUDGET_COLOURS = {"preparation": "#E69F00", "detection": "#0072B2"}
#: Above this ratio between the longest and the shortest slot, the time axis is logarithmic.
LOG_AXIS_RATIO = 30.0


def plot_budget(report, path: str | os.PathLike) -> Path:
    """Write a PNG of each target's slot latency, preparation and detection stacked.

    ``report`` is a :class:`mimoc.studies.budget.BudgetReport`. One horizontal bar per
    available target (preparation, then the ``S`` symbols of detection), the budget as a
    vertical line, each bar labelled with its total and its latency source. The time axis
    is in microseconds, logarithmic when the slots differ by more than
    :data:`LOG_AXIS_RATIO`. Unavailable targets are named under the chart.
    """
    target = check_plot_path(path)
    rows = [row for row in report.rows if row.available]
    missing = [row.target for row in report.rows if not row.available]
    if not rows:
        raise UsageError("no target could be costed, so there is nothing to plot; check "
                         "--targets")
    prep = [row.latency.preparation_s * 1e6 for row in rows]
    det = [row.latency.detection_s * 1e6 for row in rows]
    total = [p + d for p, d in zip(prep, det, strict=True)]
    budget = report.budget_s * 1e6
    spread = max(total + [budget]) / max(min(total + [budget]), 1e-30)
    log = spread > LOG_AXIS_RATIO

    fig = Figure(figsize=(8.0, 1.6 + 0.55 * len(rows)), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ypos = list(range(len(rows)))[::-1]  # first target on top
    left = min(total + [budget]) / 20 if log else 0.0  # where a bar starts on a log axis
    ax.barh(ypos, [max(p, left) - left for p in prep], left=left, height=0.6,
            color=BUDGET_COLOURS["preparation"],
            label="channel preparation (once per slot)")
    ax.barh(ypos, det, left=[max(p, left) for p in prep], height=0.6,
            color=BUDGET_COLOURS["detection"], label=f"detection ({report.slot} symbols)")
    ax.axvline(budget, color="#D55E00", linestyle="--", linewidth=1.5,
               label=f"budget {budget:g} µs per slot")
    from mimoc.studies.budget.table import format_us

    for y, row, t in zip(ypos, rows, total, strict=True):
        lat = row.latency
        mark = "meets" if row.meets_budget else "misses"
        ax.annotate(f"{format_us(lat.preparation_s)} + {format_us(lat.detection_s)} = "
                    f"{format_us(lat.per_slot_s)} µs, {mark} ({lat.source})",
                    (max(t, left), y), xytext=(4, 0), textcoords="offset points",
                    va="center", fontsize="small",
                    bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "alpha": 0.8,
                          "linewidth": 0})
    ax.set_yticks(ypos, [row.target for row in rows])
    ax.set_ylim(-0.6, len(rows) - 0.4)
    if log:
        ax.set_xscale("log")
        ax.set_xlim(left, max(total + [budget]) * 300)
    else:
        ax.set_xlim(0, max(total + [budget]) * 1.8)
    ax.set_xlabel(f"latency per slot of {report.slot} symbols [µs]"
                  + (" (log scale)" if log else ""))
    m = report.model
    title = (f"{m['family']} {m['nt']}x{m['nr']} {str(m['modulation']).upper()}: "
             "per-slot latency = preparation + detection")
    if missing:
        title += "\nnot shown (unavailable): " + ", ".join(missing)
    ax.set_title(title, fontsize="medium")
    ax.grid(True, axis="x", which="major", alpha=0.4)
    fig.legend(loc="outside lower center", ncols=3, fontsize="small", frameon=False)
    with atomic_write(target) as handle:
        fig.savefig(handle, format="png")
    return target
