"""Error-rate plots: BER (or SER) versus SNR as a PNG.

One curve per detector on a logarithmic error-rate axis, each point with its
95% Wilson interval as an error bar. A point with no error at all has no
place on a log axis; it is drawn as a downward triangle at the upper end of
its interval ("the rate is below this"), so a curve never silently ends.

The figure is built with matplotlib's object API on the Agg canvas: no
display, no global ``pyplot`` state. The file is written atomically (a
temporary file in the same directory, renamed into place), so a failed run
never leaves a truncated PNG behind.

Example::

    >>> plot_error_rates(result, "ber.png")          # result: mimoc.sim.ber.BERResult
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


def _draw_curve(ax, label: str, points: list[BERPoint], metric: str) -> None:
    points = sorted(points, key=lambda p: p.snr_db)
    rate = [getattr(p, metric) for p in points]
    ci = [getattr(p, f"{metric}_ci") for p in points]
    seen = [i for i, r in enumerate(rate) if r > 0]
    line = ax.errorbar(
        [points[i].snr_db for i in seen], [rate[i] for i in seen],
        yerr=[[rate[i] - ci[i][0] for i in seen], [ci[i][1] - rate[i] for i in seen]],
        marker="o", markersize=4, capsize=3, linewidth=1.5, label=label,
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
    for name, points in result.curves.items():
        _draw_curve(ax, name, points, metric)
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
              title="detector (95% Wilson CI)", fontsize="small", title_fontsize="small")

    with atomic_write(target) as handle:
        fig.savefig(handle, format="png")
    return target
