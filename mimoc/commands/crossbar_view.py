"""``mimoc inspect DIR`` for a crossbar artifact: the schedule as tables (or ``--json``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mimoc.tables import text_table
from mimoc.targets.crossbar.artifact import read_schedule, verify_arrays_file


def describe(path: Path, args: argparse.Namespace | None = None) -> dict[str, Any]:
    """The schedule without its program (JSON-ready), plus the path and kind; refused if
    ``arrays.npz`` was modified after compiling, unless ``args.allow_modified``."""
    schedule = read_schedule(path)
    if not getattr(args, "allow_modified", False):
        verify_arrays_file(path, schedule)
    schedule.pop("program", None)
    return {"path": str(path), "kind": "crossbar", **schedule}


def table(rows: list[list[str]], right: set[int]) -> list[str]:
    """The lines of an indented text table whose first row is its header."""
    return text_table(rows[1:], rows[0], right=right, indent="  ").splitlines()


def _ns(seconds: float) -> str:
    return f"{seconds * 1e9:,.2f}"


def render(info: dict[str, Any]) -> str:
    t, dev, cfg = info["totals"], info["device"], info["config"]
    per_slot, static = info["programming"]["per_slot"], info["programming"]["static"]
    lines = [f"{info['path']}: mimoc crossbar schedule (format {info['format_version']}, "
             f"mimoc {info['mimoc_version']}) of {info['model'].get('name')}",
             f"  device       {dev['name']}: pulse {dev['pulse_width_s'] * 1e9:g} ns, C2C "
             f"{dev['c2c_potentiation']:.2%}/{dev['c2c_depression']:.2%}, G "
             f"{dev['g_min_us']:g}..{dev['g_max_us']:g} uS, {dev['states']} states",
             f"  arrays       max {cfg['array'][0]}x{cfg['array'][1]}, differential pairs, "
             f"{cfg['accumulation']} partial sums, write circuits per {cfg['write_parallel']}",
             "", "matrices"]
    rows = [["matrix", "role", "form", "rows x cols", "tiles", "used by"]]
    for m in info["matrices"]:
        rows.append([m["id"], m["role"], m["form"], f"{m['rows']}x{m['cols']}",
                     f"{m['row_tiles']}x{m['col_tiles']}", str(len(m["used_by"]))])
    lines += table(rows, right={4, 5})
    lines += ["", f"programming per slot (channel arrays; expected over {per_slot['draws']} "
              f"seeded channel draws, seed {per_slot['seed']})"]
    rows = [["array", "rows", "cols", "expected ns", "example ns", "max row pulses (ex.)"]]
    for tile in per_slot["tiles"]:
        rows.append([tile["array"], str(tile["rows"]), str(tile["cols"]),
                     _ns(tile["expected_time_s"]), _ns(tile["example_time_s"]),
                     str(max(tile["example_row_pulses"], default=0))])
    lines += table(rows, right={1, 2, 3, 4, 5}) if len(rows) > 1 else ["  (none)"]
    lines.append(f"  {len(per_slot['groups'])} parallel write group(s); per slot "
                 f"{_ns(per_slot['expected_s'])} ns expected (std {_ns(per_slot['std_s'])}, "
                 f"min {_ns(per_slot['min_s'])}, max {_ns(per_slot['max_s'])})")
    if info.get("strategy"):
        st = info["strategy"]
        counts = info.get("costs", {}).get("per_slot", {}).get("counts", {})
        lines.append(f"  strategy {st['spec']}: {per_slot.get('mode', '')}; "
                     f"{per_slot.get('mapping', '')}; p99 {_ns(per_slot.get('p99_s', 0.0))} ns; "
                     f"{counts.get('program_pulses', 0):,.0f} pulses and "
                     f"{counts.get('verify_reads', 0):,.0f} verify row reads per slot")
    else:
        lines.append("  strategy single (open loop from reset, three-sigma mapping)")
    lines.append(f"  static arrays: {len(static['tiles'])} tiles, program-and-verify once "
                 f"{static['time_s'] * 1e6:,.3f} us ({static['cells_not_converged']} cells "
                 "not within tolerance)")
    lat = info["latency"]
    lines += ["", "latency per symbol (critical path of the analog stages)"]
    rows = [["block", "nodes", "MVMs", "latency ns"]]
    rows += [[b["block"], str(b["nodes"]), str(b["mvms"]), _ns(b["latency_s"])]
             for b in lat["blocks"]]
    lines += table(rows, right={1, 2, 3})
    lines += [f"  per symbol {_ns(t['symbol_s'])} ns (sum of blocks {_ns(lat['sum_of_blocks_s'])}"
              f" ns); slot-rate analog work {_ns(t['slot_compute_s'])} ns",
              f"  per slot of {t['slot_symbols']} symbols: {_ns(t['programming_s_per_slot'])} "
              f"+ {t['slot_symbols']} x {_ns(t['symbol_s'])} = {_ns(t['per_slot_s'])} ns",
              "", "peripherals"]
    p = info["peripherals"]
    rows = [["arrays", "tiles", "cells", "TIAs", "inverters", "adders", "ReLU", "ADCs", "DACs"],
            [str(p[k]) for k in ("arrays", "tiles", "cells", "tias", "inverters", "adders",
                                 "relu_circuits", "adcs", "dacs")]]
    lines += table(rows, right=set(range(9)))
    costs = info.get("costs")
    if costs:  # artifacts of older versions have none
        slot, once = costs["per_slot"], costs["static_programming"]
        parts = ", ".join(f"{k} {v * 1e9:,.3f}" for k, v in slot["energy_breakdown_j"].items())
        area = ", ".join(f"{k} {v / 1e6:,.4f}" for k, v in costs["area_breakdown_um2"].items())
        lines += ["", f"energy per slot {slot['energy_j'] * 1e9:,.3f} nJ ({parts} nJ); static "
                      f"program-and-verify once {once['energy_j'] * 1e6:,.3f} uJ",
                  f"area {costs['area_um2'] / 1e6:,.4f} mm^2 ({area} mm^2; TIAs, adders and "
                  "drivers not counted); models: docs/devices.md"]
    search = info.get("strategy_search")
    if search:
        from mimoc.commands.strategy_search import frontier_rows

        budget = (f"slot <= {search['budget_s'] * 1e6:g} us" if search["budget_s"]
                  else "no slot budget")
        lines += ["", f"strategy search (target SER {search['target_ser']:g}, loss <= "
                      f"{search['max_loss_db']:g} dB vs the ideal device, {budget}; grid "
                      f"{', '.join(f'{v:g}' for v in search.get('grid_db', []))} dB): chosen "
                      f"{search['chosen']}" + ("" if search["feasible"] else
                                               " (none feasible: the best loss)")]
        lines += table(frontier_rows(search), right={1, 2, 3, 4, 5})
    d = info["digital"]
    lines += ["", f"digital work: {d['flops_per_symbol']:,} FLOPs per symbol, "
              f"{d['flops_slot_rate']:,} per slot; {len(d['ops'])} digital ops "
              f"({', '.join(sorted({o['op'] for o in d['ops']})) or 'none'}); analog MACs "
              f"{info['analog_macs']['per_symbol']:,} per symbol"]
    return "\n".join(lines)
