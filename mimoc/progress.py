"""Progress bars for long-running commands (Monte Carlo, training, compilation).

A thin layer over :mod:`tqdm` with one rule: a bar is drawn only when it is
enabled *and* stderr is a terminal. In pipes, CI logs, ``--json`` runs
captured by a script and tests it is silent, so nothing but the command's own
output ever reaches a log. The returned object is always a ``tqdm`` (a
disabled one when silent), so callers use ``update``, ``set_postfix``,
``set_description`` and ``close`` without checking.

Example::

    >>> with progress_bar(total=1000, desc="SNR 4 dB", unit="sym", enabled=True) as bar:
    ...     bar.update(500)
    ...     bar.set_postfix(errors=12)
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def is_interactive(stream=None) -> bool:
    """Whether ``stream`` (stderr by default) is a terminal a person is watching."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):  # a closed or detached stream
        return False


def progress_bar(total: float | None = None, *, desc: str = "", unit: str = "it",
                 enabled: bool = True, unit_scale: bool = False, leave: bool = False) -> tqdm:
    """A ``tqdm`` bar on stderr, disabled unless ``enabled`` and stderr is a TTY.

    Args:
        total: the expected number of units (``None`` for an open-ended bar).
        desc: text in front of the bar.
        unit: name of one unit (``"sym"``, ``"step"``).
        enabled: the caller's switch (e.g. ``progress=`` of an API, or a
            ``--no-progress`` flag).
        unit_scale: print large counts with SI prefixes (``1.2M``).
        leave: keep the finished bar on screen.
    """
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit_scale, leave=leave,
                file=sys.stderr, dynamic_ncols=True,
                disable=not (enabled and is_interactive()))


def track(iterable: Iterable[T], *, total: int | None = None, desc: str = "", unit: str = "it",
          enabled: bool = True) -> Iterator[T]:
    """Iterate over ``iterable`` with a bar (silent under the rules of :func:`progress_bar`)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with progress_bar(total, desc=desc, unit=unit, enabled=enabled) as bar:
        for item in iterable:
            yield item
            bar.update(1)


class StepProgress:
    """A k/N bar over the named steps of a long command (compile a target, time it, simulate
    an SNR point), driven by the ``say(text)`` callbacks the studies already take.

    Each call starts the next step: the one before counts as done and ``text`` shows beside
    the bar. ``total`` is the planned number of steps; where a step was not foreseen (a
    search that needs one more point) the total grows with it, so the bar never reads past
    its end. Silent under the rules of :func:`progress_bar`.

    Example::

        >>> with StepProgress(3, desc="budget") as say:
        ...     say("compiling onnx-cpu")
        ...     say("timing onnx-cpu")
    """

    def __init__(self, total: int | None, *, desc: str = "", enabled: bool = True):
        self.bar = progress_bar(total, desc=desc, unit="step", enabled=enabled)
        self.steps = 0  # steps started, for callers and tests (the bar may be silent)

    def __call__(self, text: str) -> None:
        if self.steps:
            self.bar.update(1)
        self.steps += 1
        if self.bar.total is not None and self.steps > self.bar.total:
            self.bar.total = self.steps
        self.bar.set_postfix_str(text)

    def close(self) -> None:
        if self.steps and self.bar.n < self.steps:  # the last step is done
            self.bar.update(1)
        self.bar.close()

    def __enter__(self) -> StepProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
