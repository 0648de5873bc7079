"""split-linear: split a Linear over a Concat by columns (zero parts, channel-only parts).

``Linear(Concat(p_1, ..., p_k), W, b) = sum_i p_i W_i^T + b`` with ``W_i`` the columns of
``W`` that read part ``i``. Two rules use it:

- **zero parts**: a part that is ``Fill(0)`` contributes nothing; its columns go.
  DetNet's first block reads ``[H^T y, x_0, H^T H x_0, v_0]`` with ``x_0 = v_0 = 0``, so
  its first layer shrinks from ``3K + V`` to ``K`` inputs.
- **channel-only parts**: a part that is a slot-rate value broadcast over the symbols,
  ``Expand(u)`` with ``u`` free of the symbol dim, is multiplied once per slot:
  ``Linear(u, W_i)`` (slot stage) is added to the per-symbol rest.

Both are exact up to float summation order. Applied only when the per-symbol FLOPs drop.

Example::

    >>> graph = split_linear.run(graph)    # Linear(Concat(hty, 0, 0, 0)) -> Linear(hty)
"""

from __future__ import annotations

import torch

from mimoc.compiler.dims import symbols
from mimoc.compiler.flops import count_flops
from mimoc.compiler.ir import Graph, Node, Rate
from mimoc.compiler.passes.base import FunctionPass, PassOutcome
from mimoc.compiler.rewrite import Rewriter, rewrite, rule

NAME = "split-linear"


def _parts(node: Node, rw: Rewriter) -> tuple[Node, list[tuple[str, int, int]]] | None:
    """The Concat read by a Linear (along its last axis) and its parts (name, first col, cols)."""
    concat = rw.producer(node.inputs[0])
    if concat.op != "Concat" or concat.attrs["axis"] % concat.type.rank != concat.type.rank - 1:
        return None
    parts, start = [], 0
    for name in concat.inputs:
        width = rw.type(name).shape[-1]
        if not isinstance(width, int):
            return None
        parts.append((name, start, width))
        start += width
    return concat, parts


def _columns(weight: torch.Tensor, parts: list[tuple[str, int, int]]) -> torch.Tensor:
    return torch.cat([weight[:, start:start + width] for _, start, width in parts], dim=1)


def _linear_of(parts, node: Node, concat: Node, rw: Rewriter, bias: list[str]) -> str:
    weight = rw.constants[node.inputs[1]]
    w = rw.new_const(f"{node.inputs[1]}.cols", _columns(weight, parts), node.scope,
                     rw.type(node.inputs[1]).quant)  # per-row scales survive a column cut
    names = [p[0] for p in parts]
    x = names[0] if len(names) == 1 else rw.make("Concat", names, concat.attrs, like=concat,
                                                 suffix="_kept")
    return rw.make("Linear", [x, w, *bias], like=node, suffix="_split")


@rule("zero-parts", {"Linear"},
      "Linear(Concat(a, 0, b), W, c) -> Linear(Concat(a, b), W[:, a|b], c)")
def zero_parts(node, rw):
    found = _parts(node, rw)
    if found is None:
        return None
    concat, parts = found
    kept = [p for p in parts if rw.uniform_value(p[0]) != 0.0]
    if len(kept) == len(parts) or not kept:
        return None
    return _linear_of(kept, node, concat, rw, list(node.inputs[2:]))


def _channel_only(name: str, rw: Rewriter) -> str | None:
    """``u`` when ``name`` is ``Expand(u)`` of a slot-rate ``u`` without the symbol dims."""
    part = rw.producer(name)
    if part.op != "Expand" or part.type.rate != Rate.SLOT:
        return None
    u = part.inputs[0]
    broadcast = symbols(part.type.shape) - symbols(rw.type(u).shape)
    return u if broadcast and rw.type(u).rank == part.type.rank else None


@rule("channel-parts", {"Linear"},
      "Linear(Concat(s, Expand(u@slot)), W, c) -> Add(Linear(s, W_s, c), Linear(u, W_u))")
def channel_parts(node, rw):
    found = _parts(node, rw)
    if found is None or node.type.rate != Rate.SYMBOL:
        return None
    concat, parts = found
    slot = [p for p in parts if _channel_only(p[0], rw) is not None]
    rest = [p for p in parts if _channel_only(p[0], rw) is None]
    if not slot or not rest:
        return None
    total = _linear_of(rest, node, concat, rw, list(node.inputs[2:]))
    for name, start, width in slot:  # one slot-rate product per channel-only part
        per_slot = _linear_of([(_channel_only(name, rw), start, width)], node, concat, rw, [])
        total = rw.make("Add", [total, per_slot], like=node, suffix="_hoisted")
    return total


RULES = (zero_parts, channel_parts)


def split(graph: Graph) -> PassOutcome:
    """The rewritten graph and the report (the FLOPs; unchanged when they would not drop)."""
    out = rewrite(graph, RULES)
    before, after = count_flops(graph), count_flops(out)
    if after.per_symbol >= before.per_symbol:
        return PassOutcome(graph, ("no Linear over zero or channel-only parts; unchanged",))
    return PassOutcome(out, (f"per-symbol FLOPs {before.per_symbol} -> {after.per_symbol}, "
                             f"per-slot FLOPs {before.per_slot} -> {after.per_slot}",),
                       {"flops_per_symbol_before": before.per_symbol,
                        "flops_per_symbol_after": after.per_symbol})


def run(graph: Graph) -> Graph:
    return split(graph).graph


PASS = FunctionPass(NAME, split, "Linear over a Concat: drop zero parts' columns, multiply "
                    "channel-only parts once per slot")
