"""``mimoc compile --target crossbar --budget-us B --max-loss-db D``: the strategy search.

The compile runs without writing, :func:`mimoc.studies.strategy.search_strategy` plans and
simulates the candidate strategies, and the chosen schedule (with the explored frontier in
``strategy_search``) is written. Also the summary lines of a schedule's strategy.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from typing import Any

from mimoc.errors import UsageError


def check_search_flags(args: argparse.Namespace, target: str | None = None) -> None:
    """Refuse flag combinations before the slow part (one line, exit 2); ``target``: the
    resolved target name (``crossbar:DEVICE`` names ``crossbar``)."""
    from mimoc.targets.output import check_output_directory

    if (target or args.target) != "crossbar":
        raise UsageError("--budget-us, --max-loss-db and --target-ser search the crossbar's "
                         "programming strategies: add --target crossbar")
    if args.strategy is not None:
        raise UsageError("give --strategy SPEC or the search flags (--budget-us, "
                         "--max-loss-db), not both")
    if args.budget_us is not None and not (math.isfinite(args.budget_us)
                                           and args.budget_us > 0):
        raise UsageError(f"bad --budget-us {args.budget_us:g}: give a positive number of "
                         "microseconds, e.g. --budget-us 100")
    if args.max_loss_db is not None and not (math.isfinite(args.max_loss_db)
                                             and args.max_loss_db >= 0):
        raise UsageError(f"bad --max-loss-db {args.max_loss_db:g}: give a number >= 0, e.g. "
                         "--max-loss-db 0.5")
    if args.target_ser is not None and not 0 < args.target_ser < 1:
        raise UsageError(f"bad --target-ser {args.target_ser:g}: give a SER in (0, 1), e.g. "
                         "--target-ser 1e-3")
    check_output_directory(args.output, force=args.force)


def search_and_write(result: Any, args: argparse.Namespace) -> Any:
    """Search the strategies on the compiled (unwritten) schedule and write the chosen one."""
    from mimoc.hardware.devices import device_from_dict
    from mimoc.studies.budget.accuracy import DEFAULT_MAX_LOSS_DB, DEFAULT_TARGET_SER
    from mimoc.studies.strategy import search_strategy
    from mimoc.targets import get_target

    device = device_from_dict(result.schedule["device"])
    found = search_strategy(
        result.artifact, device,
        budget_s=None if args.budget_us is None else args.budget_us * 1e-6,
        max_loss_db=DEFAULT_MAX_LOSS_DB if args.max_loss_db is None else args.max_loss_db,
        target_ser=DEFAULT_TARGET_SER if args.target_ser is None else args.target_ser,
        say=lambda text: print(f"strategy search: {text}", file=sys.stderr, flush=True))
    path = get_target("crossbar").write(found.built, args.output, force=args.force)
    return dataclasses.replace(result, path=path, artifact=found.built)


def _loss(entry: dict[str, Any]) -> str:
    if "snr_loss_db" not in entry:
        return "-"
    value, beyond = entry["snr_loss_db"], entry.get("snr_loss_beyond_grid")
    if value is None:
        return {"above": "> grid", "below": "< grid"}.get(beyond, "n/a")
    ci = entry.get("snr_loss_ci_db") or [None, None]
    text = [f"{v:.2f}" if v is not None else "inf" for v in ci]
    return f"{value:.2f} [{text[0]}, {text[1]}]"


def frontier_rows(search: dict[str, Any]) -> list[list[str]]:
    """The explored candidates as table rows (header first)."""
    rows = [["strategy", "slot us", "slot us (p99)", "program us", "area", "energy",
             "loss dB [95% CI]", "feasible"]]
    for e in search["frontier"]:
        costs = e["costs"]
        area = f"{costs['area_um2'] / 1e6:.4g} mm2"
        energy = f"{costs['per_slot']['energy_j'] * 1e9:.4g} nJ"
        mark = "chosen" if e["spec"] == search["chosen"] else (
            "yes" if e["feasible"] else ("over budget" if not e["within_budget"] else "no"))
        rows.append([e["spec"], f"{e['slot_s'] * 1e6:.3f}", f"{e['slot_s_high'] * 1e6:.3f}",
                     f"{e['programming_s_per_slot'] * 1e6:.3f}", area, energy, _loss(e),
                     mark])
    return rows


def strategy_summary(schedule: dict[str, Any]) -> str:
    """One or two lines on the channel strategy and the search ('' for today's default)."""
    strategy, search = schedule.get("strategy"), schedule.get("strategy_search")
    lines = []
    if strategy:
        t = schedule["totals"]
        lines.append(f"channel strategy {strategy['spec']}: programming per slot "
                     f"{t['programming_s_per_slot'] * 1e9:.1f} ns expected, "
                     f"{t.get('programming_s_per_slot_p99', 0) * 1e9:.1f} ns p99")
    if search:
        lines.append(f"strategy search: {len(search['frontier'])} candidates, chosen "
                     f"{search['chosen']} (target SER {search['target_ser']:g}, loss <= "
                     f"{search['max_loss_db']:g} dB"
                     + (f", slot <= {search['budget_s'] * 1e6:g} us" if search["budget_s"]
                        else "") + "); mimoc inspect DIR shows the frontier")
    return "\n".join(lines)
