"""The number-list grammar shared by the command line and the sweep files.

``"0,2,4"``, ``"0:2:10"`` (inclusive), ``"-4:2:10"``: one parser, so that ``--snr`` and a
sweep file's ``snr`` read the same text the same way. Pure (no argparse), below every layer
that needs it; :mod:`mimoc.commands.flags` re-exports it.
"""

from __future__ import annotations

import math

from mimoc.errors import UsageError

#: More values than this in one list is almost certainly a typo in a range.
MAX_LIST_POINTS = 1000


def parse_number_list(text: str, flag: str, *, sort: bool = True, example: str = "0,2,4",
                      low: float | None = None, high: float | None = None) -> list[float]:
    """A comma list of numbers and inclusive ranges ``START:STEP:STOP`` / ``START:STOP``.

    ``"0,2,4"`` -> ``[0, 2, 4]``; ``"0:2:10"`` -> ``[0, 2, ..., 10]`` (the end is included
    when the steps land on it, like MATLAB); ``"0:3"`` -> ``[0, 1, 2, 3]``; items mix
    (``"0:5:10,12"``). Sorted when ``sort``; a duplicate, a non-finite value, or one
    outside ``[low, high)`` is a :class:`UsageError`.
    """
    values: list[float] = []
    items = [item.strip() for item in str(text).split(",")]
    if not str(text).strip() or any(not item for item in items):
        raise UsageError(f"malformed {flag} {text!r}: empty item; use e.g. {flag} {example} "
                         f"or {flag} 0:2:10")
    for item in items:
        parts = item.split(":")
        try:
            numbers = [float(part) for part in parts]
        except ValueError:
            raise UsageError(f"malformed {flag} item {item!r}: not a number; use e.g. "
                             f"{flag} {example} or {flag} 0:2:10 (START:STEP:STOP)") from None
        if not all(math.isfinite(n) for n in numbers):
            raise UsageError(f"malformed {flag} item {item!r}: values must be finite")
        if len(numbers) == 1:
            values.append(numbers[0])
            continue
        if len(numbers) == 2:
            numbers = [numbers[0], 1.0, numbers[1]]
        if len(numbers) != 3:
            raise UsageError(f"malformed {flag} range {item!r}: write START:STEP:STOP or "
                             "START:STOP, e.g. 0:2:10")
        start, step, stop = numbers
        if step == 0 or (stop - start) * step < 0:
            raise UsageError(f"{flag} range {item!r} never reaches {stop:g} from {start:g} in "
                             f"steps of {step:g}; e.g. 0:2:10 or 10:-2:0")
        count = math.floor((stop - start) / step + 1e-9) + 1
        if len(values) + count > MAX_LIST_POINTS:
            raise UsageError(f"{flag} {text!r} has more than {MAX_LIST_POINTS} points; "
                             "use a larger step")
        values.extend(round(start + i * step, 9) for i in range(count))
    values = [v + 0.0 for v in values]  # -0.0 -> 0.0
    duplicates = sorted({v for v in values if values.count(v) > 1})
    if duplicates:
        raise UsageError(f"{flag} lists {', '.join(f'{v:g}' for v in duplicates)} more than "
                         "once; give each value once")
    outside = [v for v in values if (low is not None and v < low)
               or (high is not None and v >= high)]
    if outside:
        raise UsageError(f"{flag} {text!r}: {outside[0]:g} is outside [{low:g}, {high:g}); "
                         f"e.g. {flag} {example}")
    return sorted(values) if sort else values
