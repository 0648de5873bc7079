"""Pipelines: explicit, named lists of passes, the verifier after each, IR dumps on request.

Example::

    >>> result = run_pipeline(graph, "canonicalize,split-channel", dump_after={"split-channel"})
    >>> print(result.dumps["split-channel"])       # the IR text after that pass
    >>> print(result.report())                     # nodes and FLOPs per pass
    >>> run_pipeline(graph, "canonicalize,remove-layers,prune",
    ...              options=PassOptions(keep_layers=4)).report()   # + what each pass removed

Default pass lists per target are in :data:`DEFAULT_PASSES`; a target adds its lowering
passes to :data:`PASSES` and its default list here. A pipeline is checked before it runs:
the passes' declared order (``must_precede`` / ``must_follow``) and that every option set
in :class:`PassOptions` is read by a pass in the list (:func:`configure_passes`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from mimoc.compiler.flops import FlopReport, count_flops
from mimoc.compiler.ir import Graph
from mimoc.compiler.passes import (
    canonicalize,
    conv_rows,
    cse,
    prune,
    quantize,
    remove_layers,
    split_channel,
    split_linear,
)
from mimoc.compiler.passes.base import Pass, PassOptions
from mimoc.compiler.printer import format_graph
from mimoc.compiler.verify import verify
from mimoc.errors import UsageError

#: name -> the pass with its default options (what ``--passes`` names)
PASSES: dict[str, Pass] = {p.name: p for p in (
    canonicalize.PASS, cse.PASS, split_channel.PASS, conv_rows.PASS, split_linear.PASS,
    prune.PASS, remove_layers.PASS, quantize.PASS, quantize.DROP_INPUT_QUANT)}

DEFAULT_PASSES: dict[str, tuple[str, ...]] = {
    "onnx": ("canonicalize", "split-channel", "hoist-conv-rows", "split-linear"),
    "reference": (),
}

FRONTEND = "frontend"  # dump_after name for the graph before any pass


@dataclass(frozen=True)
class PassRecord:
    name: str
    nodes_before: int
    nodes_after: int
    flops_before: FlopReport
    flops_after: FlopReport
    seconds: float
    notes: tuple[str, ...] = ()  # what the pass changed (units / blocks removed, ...)
    details: dict = field(default_factory=dict)  # the same as JSON-ready data

    def line(self) -> str:
        b, a = self.flops_before, self.flops_after
        text = (f"{self.name:<16} nodes {self.nodes_before:>5} -> {self.nodes_after:<5} "
                f"per-symbol FLOPs {b.per_symbol:>9} -> {a.per_symbol:<9} "
                f"per-slot FLOPs {b.per_slot:>9} -> {a.per_slot:<9} {self.seconds * 1e3:7.1f} ms")
        return "\n".join([text] + [f"  {self.name}: {note}" for note in self.notes])

    def to_dict(self) -> dict:
        b, a = self.flops_before, self.flops_after
        return {"pass": self.name, "nodes_before": self.nodes_before,
                "nodes_after": self.nodes_after,
                "flops_per_symbol_before": b.per_symbol, "flops_per_symbol_after": a.per_symbol,
                "flops_per_slot_before": b.per_slot, "flops_per_slot_after": a.per_slot,
                "seconds": self.seconds, "notes": list(self.notes), "details": self.details}


@dataclass
class PipelineResult:
    graph: Graph
    records: list[PassRecord] = field(default_factory=list)
    dumps: dict[str, str] = field(default_factory=dict)
    snapshots: dict[str, Graph] = field(default_factory=dict)  # the graphs behind ``dumps``

    def report(self) -> str:
        return "\n".join(r.line() for r in self.records)


def resolve_passes(spec: str | Iterable[str | Pass]) -> list[Pass]:
    """``"canonicalize,split-channel"`` or a list of names / :class:`Pass` objects."""
    items = [s.strip() for s in spec.split(",") if s.strip()] if isinstance(spec, str) else spec
    out: list[Pass] = []
    for item in items:
        if isinstance(item, Pass):
            out.append(item)
        elif item in PASSES:
            out.append(PASSES[item])
        else:
            raise UsageError(f"unknown pass {item!r}; available passes: {', '.join(PASSES)}")
    return out


def default_passes(target: str) -> list[Pass]:
    if target not in DEFAULT_PASSES:
        raise UsageError(f"unknown target {target!r}; targets: {', '.join(DEFAULT_PASSES)}")
    return resolve_passes(DEFAULT_PASSES[target])


def configure_passes(passes: Sequence[Pass], options: PassOptions) -> list[Pass]:
    """``passes`` with ``options`` set on the passes that read them (``--prune-threshold``
    -> ``Prune.threshold``, ...); an option that no pass in the list reads is a UsageError."""
    for option, value in options.set_options().items():
        if not any(option in p.option_fields for p in passes):
            reader = next(p.name for p in PASSES.values() if option in p.option_fields)
            flag = "--" + option.replace("_", "-")
            raise UsageError(f"{flag} {value} is an option of the {reader} pass, "
                             f"which is not in the pipeline; add it to --passes")
    return [p.configured(options) for p in passes]


def check_order(passes: Sequence[Pass]) -> None:
    """The passes' declared order: a UsageError naming the pass to move and a fixed list."""
    names = [p.name for p in passes]
    for i, early in enumerate(passes):
        for late in passes[i + 1:]:
            if early.name in late.must_precede or late.name in early.must_follow:
                fixed = [n for n in names if n != late.name]
                fixed.insert(fixed.index(early.name), late.name)
                raise UsageError(f"run {late.name} before {early.name}: --passes "
                                 f"{','.join(fixed)}")


def run_pipeline(graph: Graph, passes: str | Sequence[str | Pass], *,
                 dump_after: Iterable[str] | str = (),
                 on_dump: Callable[[str, str], None] | None = None,
                 sizes: dict[str, int] | None = None,
                 options: PassOptions | None = None) -> PipelineResult:
    """Run ``passes`` in order with the verifier after each.

    ``options`` configures ``prune`` and ``remove-layers`` (:class:`PassOptions`); an option
    set for a pass that is not in the list, or passes out of their declared order, are a
    :class:`UsageError`. What each pass changed is in ``result.records[i].notes`` (and
    ``result.report()``).
    ``dump_after``: pass names (or ``"all"``; ``"frontend"`` is the input graph) whose
    resulting IR text is kept in ``result.dumps`` and passed to ``on_dump(name, text)``.
    ``sizes`` are the dim sizes FLOPs are counted at (default ``B=1, S=1``).
    """
    chosen = resolve_passes(passes)
    names = {p.name for p in chosen} | {FRONTEND}
    wanted = set(dump_after.split(",")) if isinstance(dump_after, str) else set(dump_after)
    wanted.discard("")
    if "all" in wanted:
        wanted = names
    unknown = sorted(wanted - names)
    if unknown:
        raise UsageError(f"--dump-after {', '.join(unknown)}: not in the pipeline "
                         f"({', '.join([FRONTEND] + [p.name for p in chosen])})")
    chosen = configure_passes(chosen, options or PassOptions())
    check_order(chosen)
    result = PipelineResult(verify(graph, after=FRONTEND))

    def dump(name: str, g: Graph) -> None:
        if name in wanted:
            text = format_graph(g)
            result.dumps[name] = text
            result.snapshots[name] = g
            if on_dump is not None:
                on_dump(name, text)

    dump(FRONTEND, graph)
    for p in chosen:
        before, flops_before = result.graph, count_flops(result.graph, sizes)
        start = time.perf_counter()
        outcome = p.apply(before)
        after = verify(outcome.graph, after=p.name)
        seconds = time.perf_counter() - start
        result.records.append(PassRecord(p.name, len(before), len(after), flops_before,
                                         count_flops(after, sizes), seconds, outcome.notes,
                                         dict(outcome.details)))
        result.graph = after
        dump(p.name, after)
    return result
