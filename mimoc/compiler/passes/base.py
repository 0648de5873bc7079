"""What every pass is: a name, ``run(graph) -> graph or PassOutcome`` and its ordering rules.

A pass is a small frozen dataclass whose fields are its options (``Prune(threshold=0.1)``,
``RemoveLayers(keep_layers=3)``, ``Quantize(recipe)``); a pass without options is a
:class:`FunctionPass` around a function. ``run`` returns the new graph, or a
:class:`PassOutcome` (the graph plus lines of notes and a JSON-ready ``details`` dict) for a
pass that reports what it changed; :meth:`Pass.apply` always gives a :class:`PassOutcome`.
Ordering rules are declared (``must_precede`` / ``must_follow``: pass names) and checked by
:func:`mimoc.compiler.pipeline.run_pipeline`, so a pass need not look for other passes.

:class:`PassOptions` is the user-facing way to set options (the ``mimoc compile`` /
``mimoc inspect`` flags): each pass declares which of its fields a :class:`PassOptions`
field sets (``option_fields``), and :meth:`Pass.configured` applies them.

Example::

    >>> outcome = PASSES["remove-layers"].apply(graph, PassOptions(keep_layers=3))
    >>> outcome.notes
    ('removed blocks.3 .. blocks.5 (3 of 6 blocks); ...',)
    >>> RemoveLayers(keep_layers=3).apply(graph).notes          # the same
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar

from mimoc.compiler.ir import Graph
from mimoc.errors import UsageError


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


def normalized_l1_threshold(value: float | str) -> float | str:
    """The stored form of an L1 threshold: ``"2.5"`` -> ``2.5``, ``"0.10x"`` -> ``"0.1x"``."""
    number, relative = parse_l1_threshold(value)
    return f"{number:g}x" if relative else number


def check_prune_threshold(t: Any) -> None:
    if isinstance(t, bool) or not isinstance(t, int | float) or not t >= 0 or math.isinf(t):
        raise UsageError(f"--prune-threshold must be a finite number >= 0, got {t!r}")


def check_keep_layers(k: Any) -> None:
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise UsageError(f"--keep-layers must be a positive integer, got {k!r}")


def check_one_depth_rule(keep_layers: Any, l1_threshold: Any) -> None:
    if keep_layers is not None and l1_threshold is not None:
        raise UsageError("give either --keep-layers or --l1-threshold, not both")


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
        check_prune_threshold(self.prune_threshold)
        check_keep_layers(self.keep_layers)
        if self.l1_threshold is not None:
            object.__setattr__(self, "l1_threshold", normalized_l1_threshold(self.l1_threshold))
        check_one_depth_rule(self.keep_layers, self.l1_threshold)

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


class Pass:
    """The interface of every pass (subclasses are frozen dataclasses).

    Class attributes (a :class:`FunctionPass` has them as fields): ``name`` (what
    ``--passes`` and the reports call it), ``doc`` (one line), ``exact`` (``False`` for
    lossy passes), ``must_precede`` / ``must_follow`` (names of passes that, when they are
    in the same pipeline, must run after / before this one), ``option_fields``
    (:class:`PassOptions` field -> this pass's field it sets).
    """

    name: ClassVar[str]
    doc: ClassVar[str] = ""
    exact: ClassVar[bool] = True
    must_precede: ClassVar[tuple[str, ...]] = ()
    must_follow: ClassVar[tuple[str, ...]] = ()
    option_fields: ClassVar[Mapping[str, str]] = {}

    def run(self, graph: Graph) -> Graph | PassOutcome:
        raise NotImplementedError

    def apply(self, graph: Graph, options: PassOptions | None = None) -> PassOutcome:
        """Run (with ``options`` set first, when given) and return graph and report."""
        chosen = self if options is None else self.configured(options)
        result = chosen.run(graph)
        return result if isinstance(result, PassOutcome) else PassOutcome(result)

    def __call__(self, graph: Graph) -> Graph:
        return self.apply(graph).graph

    def configured(self, options: PassOptions) -> Pass:
        """This pass with the :class:`PassOptions` it reads set (options left at their
        defaults, and those other passes read, change nothing)."""
        changes = {self.option_fields[option]: value
                   for option, value in options.set_options().items()
                   if option in self.option_fields}
        return replace(self, **changes) if changes else self


@dataclass(frozen=True)
class FunctionPass(Pass):
    """A pass without options: ``function(graph)`` returns the graph or a PassOutcome."""

    name: str
    function: Callable[[Graph], Graph | PassOutcome]
    doc: str
    exact: bool = True
    must_precede: tuple[str, ...] = ()
    must_follow: tuple[str, ...] = ()

    def run(self, graph: Graph) -> Graph | PassOutcome:
        return self.function(graph)
