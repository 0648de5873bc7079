"""The sweep journal: every finished work unit's counts, one JSON line each, so that an
interrupted sweep resumes where it stopped.

A line is ``{"job": KEY, "snr": dB, "batch": k, "counts": {curve: [sym, bit]}}`` with
the seven sums of :class:`~mimoc.sim.stats.SlotCounts` for symbol and bit errors. A unit
is seeded by ``(seed, snr, batch)`` alone, so a journaled unit's counts are what a rerun
would give; :class:`JournalExecutor` answers those units from the journal and runs only
the others. ``KEY`` hashes everything that decides the numbers (link, curves and the
content hashes of their files, run settings), so a changed sweep never reuses old lines.
A line cut short by a kill is ignored (that unit runs again).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mimoc.errors import MimocError
from mimoc.sim.ber import UnitResult
from mimoc.sim.stats import SlotCounts


def _encode(counts: dict) -> dict:
    return {name: [list(part.symbols._fields()), list(part.bits._fields())]
            for name, part in counts.items()}


def _decode(data: dict) -> dict:
    return {name: UnitResult(SlotCounts(*sym), SlotCounts(*bit))
            for name, (sym, bit) in data.items()}


class Journal:
    """Append-only JSON lines at ``path``; ``resume`` reads the lines already there."""

    def __init__(self, path: str | os.PathLike, resume: bool) -> None:
        self.path = Path(path)
        self._done: dict[tuple[str, float, int], dict] = {}
        if resume and self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                    key = (entry["job"], float(entry["snr"]), int(entry["batch"]))
                    self._done[key] = _decode(entry["counts"])
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by a kill: its unit runs again
        try:
            self._file = self.path.open("a" if resume else "w")
        except OSError as err:
            raise MimocError(f"cannot write the sweep journal {str(self.path)!r}: "
                             f"{err.strerror or err}") from None

    def __len__(self) -> int:
        return len(self._done)

    def get(self, job: str, unit: Any) -> dict | None:
        return self._done.get((job, float(unit.snr_db), int(unit.batch)))

    def record(self, job: str, unit: Any, counts: dict) -> None:
        self._done[(job, float(unit.snr_db), int(unit.batch))] = counts
        line = json.dumps({"job": job, "snr": unit.snr_db, "batch": unit.batch,
                           "counts": _encode(counts)})
        self._file.write(line + "\n")
        self._file.flush()  # a Ctrl-C or kill right after loses nothing that finished

    def close(self) -> None:
        self._file.close()


class JournalExecutor:
    """Wraps an executor of :func:`mimoc.sim.ber.simulate`: units in the journal are
    answered from it, the others run on ``inner`` and are journaled as they finish
    (``on_unit(unit)`` after each, e.g. for progress or a test's interruption)."""

    def __init__(self, inner: Any, journal: Journal, job: str,
                 on_unit: Callable[[Any], None] | None = None) -> None:
        self.inner, self.journal, self.job, self.on_unit = inner, journal, job, on_unit
        self._known: list[tuple[Any, dict]] = []

    @property
    def window(self) -> int:  # the inner one's may change as it learns the units' cost
        return self.inner.window

    def submit(self, unit: Any) -> None:
        counts = self.journal.get(self.job, unit)
        if counts is None:
            self.inner.submit(unit)
        else:
            self._known.append((unit, counts))

    def wait(self) -> list[tuple[Any, dict]]:
        if self._known:
            known, self._known = self._known, []
            return known
        finished = self.inner.wait()
        for unit, counts in finished:
            self.journal.record(self.job, unit, counts)
            if self.on_unit is not None:
                self.on_unit(unit)
        return finished

    def cancel(self) -> None:
        self._known.clear()
        self.inner.cancel()
