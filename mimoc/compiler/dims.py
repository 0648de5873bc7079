"""Symbolic tensor dimensions.

A dimension is an ``int`` or a :class:`Sym`, a monomial ``c * s1 * s2 ...`` over named
symbols (``B`` batch, ``S`` symbols per slot, ``U`` users for RE-MIMO). Monomials are
closed under the products and exact quotients that reshapes need (``[B, S, 16] ->
[B*S, 16]`` and back), which is all a MIMO detector's shapes use; a sum of symbols
(concatenating along a symbolic axis) is rejected by the shape rules that would need it.

Example::

    >>> B, S = Sym.of("B"), Sym.of("S")
    >>> str(mul(mul(B, S), 16)), div(mul(B, S), S)
    ('16*B*S', Sym(coeff=1, names=('B',)))
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from math import prod
from typing import Union


@dataclass(frozen=True)
class Sym:
    """``coeff * prod(names)``; ``names`` sorted, repeated for powers."""

    coeff: int
    names: tuple[str, ...]

    @staticmethod
    def of(name: str, coeff: int = 1) -> Sym:
        return Sym(coeff, (name,))

    def __str__(self) -> str:
        parts = ([str(self.coeff)] if self.coeff != 1 else []) + list(self.names)
        return "*".join(parts)

    def evaluate(self, sizes: Mapping[str, int]) -> int:
        missing = [n for n in self.names if n not in sizes]
        if missing:
            raise KeyError(f"no size given for symbolic dimension(s) {', '.join(missing)}")
        return self.coeff * prod(sizes[n] for n in self.names)


Dim = Union[int, Sym]  # noqa: UP007 - a runtime alias, not an annotation
Shape = tuple[Dim, ...]


def _parts(d: Dim) -> tuple[int, tuple[str, ...]]:
    return (d, ()) if isinstance(d, int) else (d.coeff, d.names)


def _make(coeff: int, names: Iterable[str]) -> Dim:
    names = tuple(sorted(names))
    return coeff if not names or coeff == 0 else Sym(coeff, names)


def mul(a: Dim, b: Dim) -> Dim:
    ca, na = _parts(a)
    cb, nb = _parts(b)
    return _make(ca * cb, na + nb)


def div(a: Dim, b: Dim) -> Dim | None:
    """Exact quotient ``a / b``, or ``None`` when it is not a monomial."""
    ca, na = _parts(a)
    cb, nb = _parts(b)
    if cb == 0 or ca % cb:
        return None
    rest = list(na)
    for n in nb:
        if n not in rest:
            return None
        rest.remove(n)
    return _make(ca // cb, rest)


def numel(shape: Iterable[Dim]) -> Dim:
    out: Dim = 1
    for d in shape:
        out = mul(out, d)
    return out


def is_static(shape: Iterable[Dim]) -> bool:
    return all(isinstance(d, int) for d in shape)


def evaluate(d: Dim, sizes: Mapping[str, int]) -> int:
    return d if isinstance(d, int) else d.evaluate(sizes)


def evaluate_shape(shape: Iterable[Dim], sizes: Mapping[str, int]) -> tuple[int, ...]:
    return tuple(evaluate(d, sizes) for d in shape)


def symbols(shape: Iterable[Dim]) -> set[str]:
    return {n for d in shape if isinstance(d, Sym) for n in d.names}


def fmt_dim(d: Dim) -> str:
    return str(d)


def fmt_shape(shape: Iterable[Dim]) -> str:
    return "[" + ",".join(fmt_dim(d) for d in shape) + "]"


def parse_dim(text: str) -> Dim:
    """Inverse of :func:`fmt_dim`: ``"16*B*S"`` -> ``Sym(16, ("B", "S"))``."""
    coeff, names = 1, []
    for part in text.split("*"):
        part = part.strip()
        if part.lstrip("-").isdigit():
            coeff *= int(part)
        else:
            names.append(part)
    return _make(coeff, names)


def broadcast(a: Iterable[Dim], b: Iterable[Dim]) -> Shape | None:
    """NumPy/torch broadcast of two shapes, or ``None`` when they do not broadcast."""
    a, b = tuple(a), tuple(b)
    n = max(len(a), len(b))
    a = (1,) * (n - len(a)) + a
    b = (1,) * (n - len(b)) + b
    out = []
    for x, y in zip(a, b, strict=True):
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            return None
    return tuple(out)
