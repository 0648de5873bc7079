"""The budget as text: what was asked, a fixed-width table with each row's verdict, why each
row that does not meet misses or is unknown, then where each number comes from."""

from __future__ import annotations

import math
import textwrap

from mimoc.studies.budget.results import BudgetReport, TargetBudget
from mimoc.studies.budget.timing import REPORTED_PERCENTILES, percentile_key
from mimoc.studies.budget.units import format_db, format_us
from mimoc.studies.budget.verdict import MISSES
from mimoc.tables import text_table

TEXT_WIDTH = 100  # where format_budget wraps the lines that say where numbers come from

__all__ = ["format_budget", "format_db", "format_loss", "format_us", "verdict_text"]


def verdict_text(row: TargetBudget) -> str:
    """``meets``, ``misses: latency+accuracy``, ``unknown``."""
    return f"{MISSES}: {'+'.join(row.missed)}" if row.verdict == MISSES else row.verdict


def format_loss(row: TargetBudget) -> str:
    """``0.12 [0.05, 0.20]``, ``> 3.21 [> 3.21]`` (beyond the grid), or empty."""
    loss = row.loss
    if loss is None or loss.value_db is None:
        return ""

    def one(v: float) -> str:
        if math.isinf(v):
            edge = loss.range_db[1] if v > 0 else loss.range_db[0]
            return f"{'>' if v > 0 else '<'} {format_db(edge)}"
        return format_db(v)

    if loss.ci_db is None:
        return one(loss.value_db)
    return f"{one(loss.value_db)} [{one(loss.ci_db[0])}, {one(loss.ci_db[1])}]"


def _percentiles(report: BudgetReport) -> list[float]:
    return sorted(set(REPORTED_PERCENTILES) | {report.percentile})


def _latency_cells(row: TargetBudget, levels: list[float], verdict_level: float) -> list[str]:
    lat = row.latency
    assert lat is not None
    if lat.tail is None:  # a bound (FLOPs): one number, in the verdict's column
        return [f">= {format_us(lat.per_slot_s)}" if q == verdict_level else "-" for q in levels]
    return [format_us(lat.tail.at(q)) for q in levels]


def _miss(row: TargetBudget) -> str:
    tail = row.latency.tail if row.latency is not None else None
    if tail is None:
        return "-"
    share = 100 * tail.miss_fraction
    return f"{share:.0f}" if share in (0, 100) or share >= 10 else f"{share:.2g}"


def _capacity(row: TargetBudget) -> str:
    cap = row.capacity
    if cap is None:
        return ""
    return f"<= {cap.subcarriers_per_slot:,}" if cap.upper_bound else \
        f"{cap.subcarriers_per_slot:,}"


def _header(report: BudgetReport) -> list[str]:
    m, w = report.model, report.workload
    link = report.link
    lines = [f"{m['path']}: {m['family']} {m['nt']}x{m['nr']} {m['modulation']}, "
             f"{link.get('channel', '?')} channel, {link.get('csi', '?')} CSI; budget "
             f"{format_us(report.budget_s)} us per slot; workload {w.describe()}"]
    acc = report.accuracy
    if report.snr_db is not None and acc:
        grid = acc.get("grid_db") or [report.snr_db]
        crossing = acc.get("reference_crossing_db")
        where = "" if crossing is None else f", which reaches it at {crossing:.2f} dB"
        slots = acc.get("slots_per_point") or [0]
        count = f"{min(slots):,}" if min(slots) == max(slots) else \
            f"{min(slots):,} to {max(slots):,}"
        lines.append(f"accuracy: SNR loss at SER {report.target_ser:g} against the fp32 "
                     f"model{where}; every target on the same slots at {grid[0]:g}..{grid[-1]:g} "
                     f"dB {report.snr_def} SNR ({len(grid)} points, {count} slots of "
                     f"{acc.get('symbols_per_slot', 0)} symbols each), 95% interval by a paired "
                     "bootstrap over slots")
    lines.append(f"verdict: meets = {percentile_key(report.percentile)} slot latency <= "
                 f"{format_us(report.budget_s)} us and SNR loss <= {report.max_loss_db:g} dB "
                 "(all of its interval); FLOPs rows are lower bounds (>=): misses or unknown")
    return lines


def format_budget(report: BudgetReport) -> str:
    """The budget as text (module docstring)."""
    lines = _header(report)
    levels = _percentiles(report)
    ser_col = report.snr_db is not None
    header = ["target", "source", "prep us", "detect us",
              *[f"{percentile_key(q)} us" for q in levels], "miss %",
              *([f"SER @ {report.snr_db:g} dB"] if ser_col else []),
              "loss dB [95% CI]", "subc/slot", "verdict"]
    table: list[list[str]] = [header]
    for row in report.rows:
        if not row.available:
            table.append([row.target, "failed" if row.failed else "unavailable",
                          *[""] * (len(header) - 2)])
            continue
        lat = row.latency
        assert lat is not None
        bound = ">= " if lat.lower_bound else ""
        ser = [] if not ser_col else [
            "" if row.ser is None else f"{row.ser.ser:.2e}"]
        table.append([row.target, lat.source, bound + format_us(lat.preparation_s),
                      bound + format_us(lat.detection_s),
                      *_latency_cells(row, levels, report.percentile), _miss(row), *ser,
                      format_loss(row), _capacity(row), verdict_text(row)])
    right = set(range(2, len(header) - 1)) - {len(header) - 3}
    lines += text_table(table[1:], header, right=right, rule=True).splitlines()
    lines.append("prep = channel preparation (ONNX slot stage, crossbar programming), detect = "
                 "the symbol vectors; p50..: per-slot latency")
    lines.append("percentiles; miss % = slots over the budget; subc/slot = subcarriers "
                 "detected within the budget")
    reasons = [(row.target, row.verdict_reason) for row in report.rows
               if row.available and row.verdict != "meets" and row.verdict_reason]
    if reasons:
        lines.append("why not meets:")
        for target, reason in reasons:
            lines += textwrap.wrap(f"{target}: {reason}", width=TEXT_WIDTH, initial_indent="  ",
                                   subsequent_indent="      ", break_on_hyphens=False)
    lines.append("where the numbers come from:")
    for row in report.rows:
        if row.available:
            assert row.latency is not None
            text = f"{row.target}: {row.latency.how}"
            if row.ser is not None:
                text += f"; SER: {row.ser_how}"
            if row.capacity is not None:
                text += f"; subc/slot: {row.capacity.how}"
        else:
            text = f"{row.target}: {'' if row.failed else 'unavailable: '}{row.reason}"
        lines += textwrap.wrap(text, width=TEXT_WIDTH, initial_indent="  ",
                               subsequent_indent="      ", break_on_hyphens=False)
    lines += [f"note: {note}" for note in report.notes]
    return "\n".join(lines)
