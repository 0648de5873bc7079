"""The budget as text: a fixed-width table, then where each number comes from."""

from __future__ import annotations

import textwrap

from mimoc.studies.budget.results import BudgetReport, TargetBudget

TEXT_WIDTH = 100  # where format_budget wraps the lines that say where numbers come from


def format_us(seconds: float) -> str:
    """Microseconds with 3-4 significant digits (``342``, ``18.0``, ``0.0091``)."""
    us = round(seconds * 1e6, 9)  # 100e-6 s is 100 us, not 99.99999999999999
    if us >= 100:
        return f"{us:.0f}"
    if us >= 10:
        return f"{us:.1f}"
    if us >= 1:
        return f"{us:.2f}"
    return f"{us:.2g}"


def _verdict(row: TargetBudget) -> str:
    margin = row.margin_s
    assert margin is not None
    if row.meets_budget:
        return f"meets, {format_us(margin)} us spare"
    return f"misses by {format_us(-margin)} us"


def format_budget(report: BudgetReport) -> str:
    """The budget as a fixed-width table, then where each number comes from."""
    m = report.model
    lines = [f"{m['file']}: {m['family']} {m['nt']}x{m['nr']} {m['modulation']}; slot of "
             f"S={report.slot} symbols, budget {format_us(report.budget_s)} us per slot"]
    if report.snr_db is not None:
        lines.append(f"SER at {report.snr_db:g} dB ({report.snr_def}), same draws for every "
                     f"target, up to {report.ser_symbols:,} symbols each (a quick estimate: "
                     "--ser-symbols for tighter intervals)")
    header = ["target", "source", "prep us", "detect us", "slot us", "symbol us", "Mbit/s",
              f"budget {format_us(report.budget_s)} us", "SER [95% CI]"]
    table = [header]
    for row in report.rows:
        if not row.available:
            table.append([row.target, "failed" if row.failed else "unavailable",
                          "", "", "", "", "", "", ""])
            continue
        lat = row.latency
        assert lat is not None and row.vectors_per_s is not None
        ser = "" if row.ser is None else \
            f"{row.ser.ser:.2e} [{row.ser.ser_ci[0]:.1e}, {row.ser.ser_ci[1]:.1e}]"
        table.append([row.target, lat.source, format_us(lat.preparation_s),
                      format_us(lat.detection_s), format_us(lat.per_slot_s),
                      format_us(lat.per_symbol_s),
                      f"{row.vectors_per_s * row.bits_per_vector / 1e6:.3g}", _verdict(row),
                      ser])
    if report.snr_db is None:  # no SER estimate: no SER column
        table = [r[:-1] for r in table]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    right = {2, 3, 4, 5, 6}
    for i, r in enumerate(table):
        lines.append("  ".join(c.rjust(w) if j in right else c.ljust(w)
                               for j, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip())
        if i == 0:
            lines.append("-" * len(lines[-1]))
    lines.append("prep = channel preparation, once per slot (ONNX slot stage, crossbar "
                 "programming);")
    lines.append("detect = the S symbols; slot = prep + detect; Mbit/s = S Nt log2(M) bits "
                 "per slot time")
    lines.append("where the numbers come from:")
    sources = []
    for row in report.rows:
        if row.available:
            assert row.latency is not None
            ser = f"; SER: {row.ser_how}" if row.ser is not None else ""
            sources.append(f"{row.target}: {row.latency.how}{ser}")
        elif row.failed:
            sources.append(f"{row.target}: {row.reason}")
        else:
            sources.append(f"{row.target}: unavailable: {row.reason}")
    for text in sources:
        lines += textwrap.wrap(text, width=TEXT_WIDTH, initial_indent="  ",
                               subsequent_indent="      ", break_on_hyphens=False)
    lines += [f"note: {note}" for note in report.notes]
    return "\n".join(lines)

