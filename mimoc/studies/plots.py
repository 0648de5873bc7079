"""Plots as PNG, PDF or SVG files: error rates versus SNR, and latency budgets.

One curve per detector on a logarithmic error-rate axis, each point with its
95% interval (slot-clustered, mimoc.sim.stats) as an error bar. A point with no error at all has no
place on a log axis; it is drawn as a downward triangle at the upper end of
its interval ("the rate is below this"), so a curve never silently ends.

The figure is built with matplotlib's object API on the Agg canvas: no
display, no global ``pyplot`` state. The file's extension picks the format
(:data:`PLOT_FORMATS`: PNG for screens, PDF or SVG for papers); the same
figure gives the same bytes on every run (the PDF/SVG creation date is left
out). The file is written atomically (a temporary file in the same directory,
renamed into place), so a failed run never leaves a truncated file behind.
The legend sits outside the axes, so it never covers a curve.

:func:`plot_budget` draws a ``mimoc budget`` report: per target, the slot latency as
a bar of channel preparation and detection against the budget line, and the SNR loss with
its interval against the loss limit, with the joint verdict.

Example::

    >>> plot_error_rates(result, "ber.png")          # result: mimoc.sim.ber.BERResult
    >>> plot_error_rates(result, "ser.pdf", metric="ser")
    >>> plot_budget(report, "budget.png")            # report: mimoc.studies.budget.BudgetReport
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
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
    "ebno": "$E_b/N_0$ per stream, uncoded [dB]",
}
METRICS = {"ber": "Bit error rate (BER)", "ser": "Symbol error rate (SER)"}


#: File extension -> matplotlib format of the plots.
PLOT_FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg"}
#: Per format: metadata that would differ between runs, left out so that a figure's bytes
#: are reproducible (the PDF and SVG backends stamp the creation date by default).
_STABLE_METADATA = {"png": {}, "pdf": {"CreationDate": None}, "svg": {"Date": None}}
_EXTENSIONS = ", ".join(PLOT_FORMATS)


def check_writable_file(path: str | os.PathLike, what: str) -> Path:
    """Check that a file ``what`` (e.g. ``"plot"``) can be written at ``path`` before any
    work is done: not a directory, in an existing writable directory.

    Raises :class:`UsageError` otherwise.
    """
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"{what} path {str(path)!r} is a directory; give a file name")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"cannot write {what} {str(path)!r}: directory {str(folder)!r} does "
                         "not exist; create it first or choose another path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write {what} {str(path)!r}: directory {str(folder)!r} is not "
                         "writable; choose another path")
    return target


def check_plot_path(path: str | os.PathLike) -> Path:
    """Check that a plot can be written at ``path`` before any work is done.

    Raises :class:`UsageError` when the suffix is not one of :data:`PLOT_FORMATS`
    (``.png``, ``.pdf``, ``.svg``), the path is a directory, or its directory is missing
    or not writable.
    """
    target = Path(path)
    if target.suffix.lower() not in PLOT_FORMATS:
        raise UsageError(f"plot path {str(path)!r} must end in {_EXTENSIONS} (the extension "
                         "picks the image format)")
    return check_writable_file(target, "plot")


def save_figure(fig: Figure, target: Path) -> Path:
    """Write ``fig`` atomically in the format of ``target``'s extension, with the same
    bytes on every run."""
    fmt = PLOT_FORMATS[target.suffix.lower()]
    # SVG element ids are hashed with a salt that is random unless set; a fixed salt
    # (scoped to this call, no global change) keeps the file reproducible.
    with matplotlib.rc_context({"svg.hashsalt": "mimoc"}), atomic_write(target) as handle:
        fig.savefig(handle, format=fmt, metadata=_STABLE_METADATA[fmt])
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


def _rate_panel(ax, result: BERResult, metric: str) -> None:
    labels = curve_labels(list(result.curves))
    for index, (name, points) in enumerate(result.curves.items()):
        _draw_curve(ax, labels[name], points, metric, index)
    if any(getattr(p, metric) <= 0 for pts in result.curves.values() for p in pts):
        ax.plot([], [], linestyle="none", marker="v", color="grey", markerfacecolor="none",
                label="no errors: 95% upper bound")
    ax.set_yscale("log")
    ax.set_xlabel(SNR_AXIS_LABELS.get(result.system.snr_def, "SNR [dB]"))
    ax.set_ylabel(METRICS[metric])
    ax.grid(True, which="major", alpha=0.5)
    ax.grid(True, which="minor", alpha=0.2)


def draw_error_rates(result: BERResult, metric: str = "ber") -> Figure:
    """The figure of :func:`plot_error_rates`, not yet written (for tests and callers that
    want to adjust it): one axes per metric (``"both"``: BER left, SER right), the legend
    to the right of the axes, outside them."""
    if metric not in (*METRICS, "both"):
        raise UsageError(f"unknown metric {metric!r}; choose ber, ser or both")
    metrics = list(METRICS) if metric == "both" else [metric]
    fig = Figure(figsize=(5.0 * len(metrics) + 2.6, 4.8), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, name in zip(axes, metrics, strict=True):
        _rate_panel(ax, result, name)
    fig.suptitle(_title(result), fontsize="medium")
    handles, labels = axes[-1].get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: labels[i].startswith("no errors"))
    # Outside the axes, to the right: the curves keep all of the plot area.
    axes[-1].legend([handles[i] for i in order], [labels[i] for i in order],
                    title="detector (95% CI)", fontsize="small", title_fontsize="small",
                    loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    return fig


def plot_error_rates(result: BERResult, path: str | os.PathLike, metric: str = "ber") -> Path:
    """Write ``metric`` (``"ber"``, ``"ser"`` or ``"both"``, two panels) versus SNR for every
    curve as PNG, PDF or SVG (by ``path``'s extension).

    Returns the path written. Raises :class:`UsageError` for an unknown metric
    or an unwritable path (checked before drawing).
    """
    if metric not in (*METRICS, "both"):
        raise UsageError(f"unknown metric {metric!r}; choose ber, ser or both")
    target = check_plot_path(path)
    return save_figure(draw_error_rates(result, metric), target)


# -- latency budgets -----------------------------------------------------------------

#: Bar colours of the two parts of a slot (colour-blind safe pair).
BUDGET_COLOURS = {"preparation": "#E69F00", "detection": "#0072B2"}
#: Colour of each verdict's label.
VERDICT_COLOURS = {"meets": "#009E73", "misses": "#D55E00", "unknown": "#555555"}
#: Above this ratio between the longest and the shortest slot, the time axis is logarithmic.
LOG_AXIS_RATIO = 30.0


def _latency_panel(ax, report, rows) -> None:
    """Per target: preparation + detection stacked (typical slot), a diamond at the verdict's
    percentile, bounds hatched, the budget line."""
    from mimoc.studies.budget.table import format_us
    from mimoc.studies.budget.timing import percentile_key

    prep = [row.latency.preparation_s * 1e6 for row in rows]
    det = [row.latency.detection_s * 1e6 for row in rows]
    verdict = [row.verdict_latency_s * 1e6 for row in rows]
    budget = report.budget_s * 1e6
    values = [p + d for p, d in zip(prep, det, strict=True)] + verdict + [budget]
    log = max(values) / max(min(values), 1e-30) > LOG_AXIS_RATIO
    left = min(values) / 20 if log else 0.0  # where a bar starts on a log axis
    ypos = list(range(len(rows)))[::-1]  # first target on top
    hatch = ["//" if row.latency.lower_bound else None for row in rows]
    for y, p, d, h in zip(ypos, prep, det, hatch, strict=True):
        ax.barh(y, max(p, left) - left, left=left, height=0.6, hatch=h,
                color=BUDGET_COLOURS["preparation"], edgecolor="white")
        ax.barh(y, d, left=max(p, left), height=0.6, hatch=h,
                color=BUDGET_COLOURS["detection"], edgecolor="white")
    tails = [(y, v) for y, v, row in zip(ypos, verdict, rows, strict=True)
             if row.latency.tail is not None]
    if tails:
        ax.plot([v for _, v in tails], [y for y, _ in tails], linestyle="none", marker="D",
                color="black", markersize=5,
                label=f"{percentile_key(report.percentile)} of the slot")
    from matplotlib.patches import Patch

    handles = [Patch(color=BUDGET_COLOURS["preparation"], label="channel preparation"),
               Patch(color=BUDGET_COLOURS["detection"], label="detection"),
               Patch(facecolor="#BBBBBB", edgecolor="white", hatch="//",
                     label="lower bound (FLOPs / peak)")]
    ax.axvline(budget, color="#D55E00", linestyle="--", linewidth=1.5,
               label=f"budget {budget:g} µs")
    for y, v, row in zip(ypos, verdict, rows, strict=True):
        text = (">= " if row.latency.lower_bound else "") + f"{format_us(v * 1e-6)} µs"
        ax.annotate(text, (max(v, left), y), xytext=(6, 0), textcoords="offset points",
                    va="center", fontsize="x-small")
    ax.set_yticks(ypos, [row.target for row in rows])
    ax.set_ylim(-0.6, len(rows) - 0.4)
    if log:
        ax.set_xscale("log")
        ax.set_xlim(left, max(values) * 30)
    else:
        ax.set_xlim(0, max(values) * 1.4)
    ax.set_xlabel("latency per slot [µs]" + (" (log scale)" if log else ""))
    ax.grid(True, axis="x", which="major", alpha=0.4)
    lines, _ = ax.get_legend_handles_labels()
    ax.legend(handles=handles + lines, fontsize="x-small", loc="upper center",
              bbox_to_anchor=(0.5, -0.16), ncols=3, frameon=False)


def _loss_panel(ax, report, rows) -> None:
    """Per target: the SNR loss with its 95% interval, arrows where it leaves the grid, the
    limit line; the verdict next to each row."""
    import math

    ypos = list(range(len(rows)))[::-1]
    edges = [e for row in rows if row.loss is not None for e in row.loss.range_db
             if math.isfinite(e)]
    lo_edge, hi_edge = (min(edges), max(edges)) if edges else (-1.0, 3.0)
    for y, row in zip(ypos, rows, strict=True):
        loss = row.loss
        if loss is not None and loss.value_db is not None:
            def clip(v: float) -> float:
                return min(max(v, lo_edge), hi_edge)

            value = clip(loss.value_db)
            lo, hi = (clip(loss.ci_db[0]), clip(loss.ci_db[1])) if loss.ci_db else \
                (value, value)
            marker = ">" if math.isinf(loss.value_db) and loss.value_db > 0 else \
                "<" if math.isinf(loss.value_db) else "o"
            ax.errorbar([value], [y], xerr=[[value - lo], [hi - value]], marker=marker,
                        color="black", capsize=3, markersize=5)
            if math.isinf(loss.value_db):
                ax.annotate(f"{'>' if loss.value_db > 0 else '<'} {value:.1f} dB", (value, y),
                            xytext=(0, 7), textcoords="offset points", ha="center",
                            fontsize="x-small")
        ax.annotate(row.verdict if row.verdict != "misses" else
                    "misses: " + "+".join(row.missed), (1.02, y),
                    xycoords=("axes fraction", "data"), va="center", fontsize="small",
                    color=VERDICT_COLOURS[row.verdict])
    ax.axvline(report.max_loss_db, color="#D55E00", linestyle="--", linewidth=1.5,
               label=f"limit {report.max_loss_db:g} dB")
    ax.axvline(0.0, color="grey", linewidth=0.8)
    ax.set_xlim(lo_edge - 0.2, hi_edge + 0.2)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.tick_params(labelleft=False)
    ax.set_xlabel(f"SNR loss at SER {report.target_ser:g} vs fp32 [dB] (95% CI)")
    ax.grid(True, axis="x", alpha=0.4)
    ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.16),
              frameon=False)


def plot_budget(report, path: str | os.PathLike) -> Path:
    """Write a chart (PNG, PDF or SVG by ``path``'s extension) of each target's verdict:
    slot latency against the budget (left) and SNR loss against its limit (right).

    ``report`` is a :class:`mimoc.studies.budget.BudgetReport`. Left: one horizontal bar per
    available target (preparation, then detection; hatched where FLOPs / peak makes it a
    lower bound), a diamond at the verdict's percentile, the budget as a vertical line;
    logarithmic when the slots differ by more than :data:`LOG_AXIS_RATIO`. Right: the SNR
    loss with its 95% interval (arrows: beyond the grid) and the limit, the verdict beside
    it. Unavailable targets are named in the title.
    """
    target = check_plot_path(path)
    rows = [row for row in report.rows if row.available]
    missing = [row.target for row in report.rows if not row.available]
    if not rows:
        raise UsageError("no target could be costed, so there is nothing to plot; check "
                         "--target")
    fig = Figure(figsize=(11.0, 1.8 + 0.5 * len(rows)), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    latency_ax, loss_ax = fig.subplots(1, 2, sharey=True, width_ratios=[3, 2])
    _latency_panel(latency_ax, report, rows)
    _loss_panel(loss_ax, report, rows)
    m, w = report.model, report.workload
    title = (f"{m['family']} {m['nt']}x{m['nr']} {str(m['modulation']).upper()}, "
             f"{w.subcarriers:,} subcarrier{'s' if w.subcarriers > 1 else ''} per slot: meets = "
             f"latency within the budget and SNR loss within the limit")
    if missing:
        title += "\nnot shown (unavailable): " + ", ".join(missing)
    fig.suptitle(title, fontsize="medium")
    return save_figure(fig, target)
