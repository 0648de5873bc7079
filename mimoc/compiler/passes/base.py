"""What every pass is: a name, a pure ``run(graph) -> graph`` and a one-line summary.

Passes with options (``prune``, ``remove-layers``) also take :class:`PassOptions` and
report what they changed: ``configure(graph, options) -> PassOutcome`` (a graph plus
lines of notes and a JSON-ready ``details`` dict). :func:`mimoc.compiler.pipeline.run_pipeline`
calls :meth:`Pass.apply`, which works for both kinds.

Example::

    >>> outcome = PASSES["remove-layers"].apply(graph, PassOptions(keep_layers=3))
    >>> outcome.notes
    ('removed blocks.3 .. blocks.5 (3 of 6 blocks); ...',)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from mimoc.compiler.ir import Graph
from mimoc.errors import UsageError

# option -> the pass that reads it (an option set for a pass not in the pipeline is an error)
OPTION_PASSES = {"prune_threshold": "prune", "keep_layers": "remove-layers",
                 "l1_threshold": "remove-layers"}


def parse_l1_threshold(value: float | str) -> tuple[float, bool]:
    """``2.5`` or ``"2.5"`` -> ``(2.5, False)`` (absolute |beta W|); ``"0.1x"`` ->
    ``(0.1, True)`` (a fraction of the largest block norm). Both finite and >= 0."""
    relative = isinstance(value, str) and value.strip().lower().endswith("x")
    text = value.strip()[:-1] if relative else value
    try:
        if isinstance(text, bool):
            raise ValueError
        number = float(text)
    except (TypeError, ValueError):
        number = math.nan
    if not number >= 0 or math.isinf(number):
        raise UsageError(f"--l1-threshold must be a finite number >= 0 (absolute |beta W|) or "
                         f"a fraction of the largest block norm such as 0.1x, got {value!r}")
    return number, relative


@dataclass(frozen=True)
class PassOptions:
    """Options of the configurable passes (``mimoc compile`` / ``mimoc inspect`` flags).

    Attributes:
        prune_threshold: ``prune`` drops the hidden units whose profile coefficient has
            ``|beta| <= prune_threshold`` (0: exact zeros only, which is lossless).
        keep_layers: ``remove-layers`` keeps the first ``keep_layers`` blocks.
        l1_threshold: ``remove-layers`` drops trailing blocks whose profile-scaled L1
            weight norm ``|beta_r W_r|`` is below it (R-WeSNet): a number ``T`` (absolute),
            or ``"Fx"`` (relative: ``F`` times the largest block norm, as
            ``WeSNet.depth_for_threshold(F, relative=True)``). The string ``"2.5"`` is
            stored as the number 2.5, ``"0.10x"`` as ``"0.1x"``.
    """

    prune_threshold: float = 0.0
    keep_layers: int | None = None
    l1_threshold: float | str | None = None

    def __post_init__(self) -> None:
        t = self.prune_threshold
        if isinstance(t, bool) or not isinstance(t, int | float) or not t >= 0 or math.isinf(t):
            raise UsageError(f"--prune-threshold must be a finite number >= 0, got {t!r}")
        k = self.keep_layers
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise UsageError(f"--keep-layers must be a positive integer, got {k!r}")
        if self.l1_threshold is not None:
            value, relative = parse_l1_threshold(self.l1_threshold)
            object.__setattr__(self, "l1_threshold", f"{value:g}x" if relative else value)
        if self.keep_layers is not None and self.l1_threshold is not None:
            raise UsageError("give either --keep-layers or --l1-threshold, not both")

    def l1_rule(self) -> tuple[float, bool] | None:
        """``(value, relative)`` of ``l1_threshold``, or ``None`` when it is not set."""
        return None if self.l1_threshold is None else parse_l1_threshold(self.l1_threshold)

    def set_options(self) -> dict[str, Any]:
        """The options that differ from their defaults."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) != f.default}


@dataclass(frozen=True)
class PassOutcome:
    """A pass's result graph and its report: one line per change, and the same as data."""

    graph: Graph
    notes: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Pass:
    name: str
    run: Callable[[Graph], Graph]
    doc: str
    exact: bool = True  # False for lossy passes (prune with threshold, remove-layers, quantize)
    # passes with options or a report: (graph, options) -> PassOutcome; run() uses defaults
    configure: Callable[[Graph, PassOptions], PassOutcome] | None = None

    def __call__(self, graph: Graph) -> Graph:
        return self.run(graph)

    def apply(self, graph: Graph, options: PassOptions | None = None) -> PassOutcome:
        """Run with ``options`` (defaults when ``None``) and return graph and report."""
        if self.configure is None:
            return PassOutcome(self.run(graph))
        return self.configure(graph, options or PassOptions())


def configurable(name: str, configure: Callable[[Graph, PassOptions], PassOutcome], doc: str,
                 exact: bool = True) -> Pass:
    """A :class:`Pass` whose ``run(graph)`` is ``configure(graph, PassOptions()).graph``."""
    return Pass(name, lambda graph: configure(graph, PassOptions()).graph, doc, exact, configure)
