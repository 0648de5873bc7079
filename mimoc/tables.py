"""Every table the commands print, as text or GitHub Markdown, drawn by :mod:`tabulate`.

One place fixes the project's conventions, so that ``ber``, ``inspect``, ``devices``,
``budget``, ``bench`` and ``report`` look alike:

- cells are strings the caller formatted (``1,234``, ``3.2e-04``): numbers are never
  re-parsed or re-formatted here, except plain floats, which get ``floatfmt``;
- a missing value (``None``) prints as ``missing`` (blank by default);
- columns are left-aligned, those named in ``right`` right-aligned (numbers);
- text tables have no trailing spaces; ``rule=True`` underlines the header.

Example::

    >>> print(text_table([["mmse", "1,024"]], ["detector", "symbols"], right={1}))
    detector  symbols
    mmse        1,024
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from tabulate import tabulate

#: how a missing value (``None``) reads in a Markdown table: an em dash, so that an empty
#: cell is not mistaken for a rendering fault
MARKDOWN_MISSING = "\N{EM DASH}"


def _cells(rows: Sequence[Sequence[Any]], missing: str, floatfmt: str) -> list[list[str]]:
    def cell(value: Any) -> str:
        if value is None:
            return missing
        if isinstance(value, float):
            return format(value, floatfmt)
        return str(value)

    return [[cell(v) for v in row] for row in rows]


def _align(width: int, right: Collection[int]) -> list[str]:
    return ["right" if i in right else "left" for i in range(width)]


def text_table(rows: Sequence[Sequence[Any]], headers: Sequence[str] | None = None, *,
               right: Collection[int] = (), indent: str = "", rule: bool = False,
               missing: str = "", floatfmt: str = "g") -> str:
    """A fixed-width text table: columns two spaces apart, ``headers`` on the first line
    (``None``: no header line), underlined across the table's width when ``rule``, each line
    prefixed by ``indent``."""
    body = _cells(([headers] if headers is not None else []) + list(rows), missing, floatfmt)
    width = max((len(r) for r in body), default=0)
    if width == 0:
        return ""
    # The header goes in as a row: tabulate would pad header cells by two more spaces.
    text = tabulate(body, tablefmt="plain", colalign=_align(width, right),
                    disable_numparse=True)
    lines = [(indent + line).rstrip() for line in text.splitlines()]
    if rule and headers is not None:
        lines.insert(1, indent + "-" * (max(len(line) for line in lines) - len(indent)))
    return "\n".join(lines)


def markdown_table(rows: Sequence[Sequence[Any]], headers: Sequence[str], *,
                   right: Collection[int] = (), missing: str = MARKDOWN_MISSING,
                   floatfmt: str = "g") -> str:
    """A GitHub-flavoured Markdown (pipe) table; ``right`` columns carry ``---:``; a ``|``
    inside a cell is escaped so that it cannot split the cell."""
    body = [[c.replace("|", "\\|") for c in row] for row in _cells(rows, missing, floatfmt)]
    return tabulate(body, headers=[h.replace("|", "\\|") for h in headers], tablefmt="pipe",
                    colalign=_align(len(headers), right), disable_numparse=True)
