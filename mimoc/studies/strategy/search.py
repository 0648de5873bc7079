"""Search for the cheapest channel-programming strategy that meets a slot budget and a loss.

``mimoc compile MODEL --target crossbar --budget-us B --max-loss-db D`` (and ``mimoc
budget`` on a ``crossbar:DEVICE+search`` target) call :func:`search_strategy`:

1. **candidates**: every strategy of the list (:data:`DEFAULT_CANDIDATES`) is planned on the
   compiled schedule (:func:`mimoc.targets.crossbar.artifact.with_strategy`: the same bytes
   as compiling with it; the static arrays do not change);
2. **latency**: a candidate whose slot (the schedule's p99 over the Monte-Carlo channel
   draws, or the slowest draw for open-loop programming) exceeds ``B`` is over budget and
   not simulated;
3. **accuracy**: the others run in the IMC simulator at the device's C2C and the same
   program on the ideal device (``ideal=True``: the digital reference), all on the same
   seeded slots at a small SNR grid around the reference's crossing of the target SER
   (:mod:`mimoc.studies.budget.accuracy`: crossing, grid, slot-paired bootstrap interval;
   with ``workers > 1`` on Ray workers, which give the same numbers);
4. **choice**: the cheapest candidate (slot latency, then area, then energy:
   :func:`mimoc.targets.crossbar.costs.rank_key`) whose loss point estimate is within
   ``D``; the explored frontier is recorded in the chosen schedule (``strategy_search``).

Example::

    >>> found = search_strategy(built, device, budget_s=100e-6, max_loss_db=0.5)
    >>> found.built.schedule["strategy_search"]["chosen"]
    'verify'
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from mimoc.errors import UsageError
from mimoc.runtime.imc import IMCSchedule
from mimoc.sim.system import MIMOSystem
from mimoc.studies.budget.accuracy import (
    DEFAULT_MAX_LOSS_DB,
    DEFAULT_TARGET_SER,
    Loss,
    find_crossing,
    grid_offsets,
    simulate_slots,
    snr_losses,
)
from mimoc.targets.crossbar.artifact import BuiltSchedule, with_strategy
from mimoc.targets.crossbar.costs import rank_key
from mimoc.targets.crossbar.strategy import parse_strategy

#: Candidates tried by default: today's open loop, program-and-verify at three tolerances,
#: coarser levels, redundancy, a narrower mapping range and combinations.
DEFAULT_CANDIDATES = ("single", "levels=32", "levels=16", "r=4", "clip=2.5",
                      "verify:tol=0.04", "verify:tol=0.02", "verify", "verify:tol=0.005",
                      "verify:tol=0.02+r=2", "verify+clip=2.5", "levels=32+verify:tol=0.02")
DEFAULT_SYMBOLS = 100_000
REFERENCE = "ideal"
DEFAULT_START_DB = 10.0


@dataclass
class Candidate:
    """One strategy planned (and, when within the budget, simulated)."""

    spec: str
    built: BuiltSchedule
    loss: Loss | None = None
    note: str = ""

    @property
    def totals(self) -> dict[str, Any]:
        return self.built.schedule["totals"]

    @property
    def slot_s(self) -> float:
        """Expected per-slot latency (mean over the channel draws)."""
        return float(self.totals["per_slot_s"])

    @property
    def slot_high_s(self) -> float:
        """The slot at a high percentile: p99 of a strategy's draws, or the slowest draw."""
        t = self.totals
        if "per_slot_s_p99" in t:
            return float(t["per_slot_s_p99"])
        return float(t["per_slot_s"] - t["programming_s_per_slot"]
                     + t["programming_s_per_slot_max"])

    @property
    def record(self) -> dict[str, Any]:
        costs = self.built.schedule["costs"]
        counts = costs["per_slot"]["counts"]
        out = {"spec": self.spec, "slot_s": self.slot_s, "slot_s_high": self.slot_high_s,
               "programming_s_per_slot": float(self.totals["programming_s_per_slot"]),
               "counts": counts, "costs": costs}
        if self.loss is not None:
            out.update(self.loss.to_dict())
        if self.note:
            out["note"] = self.note
        return out

    def rank(self) -> tuple[float, float, float]:
        record = self.record
        return rank_key(self.slot_s, record["costs"])


@dataclass
class SearchResult:
    built: BuiltSchedule            # the chosen schedule, with strategy_search recorded
    chosen: Candidate
    candidates: list[Candidate] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def _within(loss: Loss | None, max_loss_db: float) -> bool:
    return loss is not None and loss.value_db is not None and loss.value_db <= max_loss_db


def link_of(schedule: dict[str, Any]) -> MIMOSystem:
    """The schedule's link: the model's sizes and modulation, i.i.d. Rayleigh (the channel
    the compiler draws), ``S`` symbols per slot."""
    cfg = (schedule.get("model") or {}).get("config") or {}
    try:
        return MIMOSystem(nt=int(cfg["nt"]), nr=int(cfg["nr"]),
                          modulation=str(cfg.get("modulation", "qpsk")),
                          slot=int(schedule["config"]["slot"]),
                          system=str(cfg.get("system", "complex")))
    except (KeyError, TypeError, ValueError):
        raise UsageError("the schedule does not record the model's nt, nr and modulation: "
                         "the strategy search needs them; compile a mimoc checkpoint") from None


def search_strategy(built: BuiltSchedule, device: Any, *, budget_s: float | None = None,
                    max_loss_db: float = DEFAULT_MAX_LOSS_DB,
                    target_ser: float = DEFAULT_TARGET_SER,
                    candidates: Sequence[str] | None = None, seed: int = 0,
                    max_symbols: int = DEFAULT_SYMBOLS, start_db: float = DEFAULT_START_DB,
                    strict: bool = True, workers: int = 1,
                    say: Callable[[str], None] = lambda text: None) -> SearchResult:
    """The module docstring's search on a compiled schedule. ``strict``: raise a
    :class:`~mimoc.errors.UsageError` when no candidate meets both limits (otherwise the
    best loss is returned, marked ``feasible: false``). ``workers > 1``: the simulations
    run on Ray workers (a Ray this process already started, else a local one with
    ``workers`` CPUs, stopped at the end), the candidates shipped as artifact files; the
    numbers are those of the serial run."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UsageError(f"workers must be a positive integer, got {workers!r}")
    if budget_s is not None and not (math.isfinite(budget_s) and budget_s > 0):
        raise UsageError(f"--budget-us must be a positive number of microseconds, got "
                         f"{budget_s * 1e6:g}")
    if not (math.isfinite(max_loss_db) and max_loss_db >= 0):
        raise UsageError(f"--max-loss-db must be a number >= 0, got {max_loss_db:g}")
    if not 0 < target_ser < 1:
        raise UsageError(f"--target-ser must be in (0, 1), got {target_ser:g}")
    specs = list(dict.fromkeys(parse_strategy(c).spec
                               for c in (DEFAULT_CANDIDATES if candidates is None
                                         else candidates)))
    found = []
    for spec in specs:
        strategy = parse_strategy(spec)
        if strategy.levels is not None and strategy.levels > device.states:
            continue  # not a strategy this device can use
        say(f"planning strategy {spec}")
        found.append(Candidate(spec, with_strategy(built, device, strategy)))
    if not found:
        raise UsageError("no candidate strategy fits the device; give candidates with "
                         f"levels <= {device.states}")
    for c in found:
        if budget_s is not None and c.slot_high_s > budget_s:
            c.note = (f"over the budget: slot {c.slot_high_s * 1e6:.3g} us > "
                      f"{budget_s * 1e6:g} us (not simulated)")
    simulated = [c for c in found if not c.note]
    info: dict[str, Any] = {"target_ser": target_ser, "max_loss_db": max_loss_db,
                            "budget_s": budget_s, "seed": seed, "max_symbols": max_symbols,
                            "reference": "the same program on the ideal device "
                                         "(IMCSchedule ideal=True: no noise, 2^30 states, "
                                         "ideal converters)",
                            "c2c": "the device's own",
                            "rule": "cheapest (slot latency, area, energy) with loss point "
                                    "estimate <= max_loss_db and high-percentile slot <= "
                                    "budget"}
    if simulated:
        _measure(simulated, built, target_ser, max_loss_db, seed, max_symbols, start_db,
                 info, say, workers)
    feasible = [c for c in simulated if _within(c.loss, max_loss_db)]
    if feasible:
        chosen = min(feasible, key=Candidate.rank)
    else:
        finite = [c for c in simulated if c.loss is not None and c.loss.value_db is not None]
        best = min(finite, key=lambda c: c.loss.value_db) if finite else None
        if strict or best is None:
            if best is None:
                raise UsageError("no candidate strategy could be measured within the slot "
                                 "budget; raise --budget-us")
            raise UsageError(
                f"no programming strategy keeps the SNR loss within {max_loss_db:g} dB "
                + (f"within {budget_s * 1e6:g} us per slot" if budget_s else "")
                + f": best {best.spec} ({_loss_text(best.loss)}, slot "
                  f"{best.slot_s * 1e6:.3g} us); raise --max-loss-db or --budget-us, or "
                  "train for the device (mimoc train --c2c)")
        chosen = best
    frontier = []
    for c in found:
        record = c.record
        record["within_budget"] = not c.note.startswith("over the budget")
        record["feasible"] = c in feasible
        frontier.append(record)
    schedule = dict(chosen.built.schedule)
    schedule["strategy_search"] = {**info, "chosen": chosen.spec,
                                   "feasible": chosen in feasible, "frontier": frontier}
    result_built = BuiltSchedule(schedule, chosen.built.arrays, chosen.built.graph)
    return SearchResult(result_built, chosen, found, info)


def _loss_text(loss: Loss | None) -> str:
    if loss is None or loss.value_db is None:
        return "loss not measured"
    if not math.isfinite(loss.value_db):
        return "loss beyond the grid"
    return f"loss {loss.value_db:.2f} dB"


def _measure(simulated: list[Candidate], built: BuiltSchedule, target_ser: float,
             max_loss_db: float, seed: int, max_symbols: int, start_db: float,
             info: dict[str, Any], say: Callable[[str], None], workers: int = 1) -> None:
    """Every simulated candidate's loss against the ideal device, on the same slots."""
    system = link_of(dict(built.schedule))
    names = [c.spec for c in simulated]
    with contextlib.ExitStack() as stack:
        if workers > 1:
            stack.enter_context(_ray(workers))
            engines: dict[str, Any] = dict.fromkeys([REFERENCE, *names])
            crossing_executor, grid_executor = _ray_executors(simulated, system, seed)
        else:
            engines, crossing_executor, grid_executor = _engines(simulated, seed), None, None
        # find_crossing names its reference "the fp32 model"; here it is the ideal device
        center, points = find_crossing(
            engines[REFERENCE], system, start_db, target_ser, seed=seed,
            max_symbols=max_symbols, executor=crossing_executor,
            say=lambda text: say(text.replace("the fp32 model's", "the ideal device's")))
        if center is None:
            raise UsageError(f"the ideal device does not reach SER {target_ser:g} between "
                             f"{min(p.snr_db for p in points):g} and "
                             f"{max(p.snr_db for p in points):g} dB: no SNR loss to compare")
        center = round(center, 1)
        offsets = grid_offsets(max_loss_db)
        grid = simulate_slots(engines, system, [center + o for o in offsets], seed=seed,
                              max_symbols=max_symbols, say=say, executor=grid_executor)
    losses = snr_losses(grid, names, REFERENCE, target_ser, seed=seed)
    for c in simulated:
        c.loss = losses[c.spec]
    info.update(center_db=center, grid_db=[g.snr_db for g in grid],
                slots_per_point=[g.slots for g in grid],
                reference_ser=[float(g.errors[REFERENCE].sum() / g.symbols) for g in grid])


def _engines(simulated: list[Candidate], seed: int) -> dict[str, Any]:
    """The ideal device's engine and every candidate's, here (the static arrays, which do
    not depend on the strategy, programmed once for all)."""
    cache: dict = {}
    schedules = {c.spec: IMCSchedule(f"<strategy {c.spec}>", schedule=c.built.schedule,
                                     arrays=c.built.arrays, static_cache=cache)
                 for c in simulated}
    reference = next(iter(schedules.values())).engine(ideal=True, seed=seed)
    return {REFERENCE: reference, **{spec: xb.engine(seed=seed)
                                     for spec, xb in schedules.items()}}


@contextlib.contextmanager
def _ray(workers: int) -> Iterator[None]:
    """A Ray for the executors: this process's own if started, else a local one with
    ``workers`` CPUs, stopped on exit."""
    from mimoc.runtime.parallel import start_ray, stop_ray

    started = start_ray(workers)
    try:
        yield
    finally:
        if started:
            stop_ray()


def _ray_executors(simulated: list[Candidate], system: MIMOSystem, seed: int):
    """Ray executors of the crossing search (the reference alone, named ``fp32`` as
    :func:`find_crossing` names it) and of the grid (the reference and every candidate).
    A candidate goes as its artifact's files (never a pickled object), which the workers
    load as the CLI loads an artifact; the reference is the first candidate's program on
    the ideal device, as :func:`_engines` makes it."""
    from mimoc.runtime.parallel import DetectorSpec, RayExecutor, content_digest

    files: dict[str, dict] = {}
    specs = []
    for c in simulated:
        content = dict(c.built.files())
        digest = content_digest(content)
        files[digest] = content
        specs.append(DetectorSpec(c.spec, "artifact", f"<strategy {c.spec}>", digest,
                                  seed=seed))
    reference = replace(specs[0], name=REFERENCE, ideal=True)
    own = {reference.digest: files[reference.digest]}
    return (RayExecutor([replace(reference, name="fp32")], system, own),
            RayExecutor([reference, *specs], system, files))


__all__ = ["DEFAULT_CANDIDATES", "Candidate", "SearchResult", "link_of", "search_strategy"]
