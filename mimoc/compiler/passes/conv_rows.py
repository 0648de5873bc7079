"""hoist-conv-rows: compute the channel-only rows of a conv stack once per slot (SDNet).

SDNet (:mod:`mimoc.detectors.sdnet`) stacks per symbol an image of the ``2Nr`` rows of
``H`` and one zero-forcing row, ``R = 2Nr + 1`` rows of ``W = 2Nt`` pixels, and runs
3x3 convolutions (zero "same" padding), elementwise activations, a flatten and a fully
connected layer. Only the ZF row depends on ``y``. A conv with a ``k x k`` kernel and
padding ``p = (k-1)/2`` widens the rows that depend on ``y`` (the *symbol band*) by
``p`` rows on each side per layer; every other row depends on ``H`` only (docs/design.md
section 3). The pass rewrites::

    Reshape(Concat(Expand(H rows), zf row), [B*S, 1, R, W]) -> conv -> act -> ... -> Linear

into

- a **slot stack**: the same layers on the image with the symbol rows zeroed,
  ``[B, 1, R, W]``, once per channel; its rows outside the band are exact;
- a **symbol stack** on the band only: layer ``l`` computes its ``|band_l|`` rows
  from the previous band plus ``p`` context rows on each side, taken from the slot
  stack (or zero padding at the image border), with the conv's row padding set to 0;
- the **final FC split by columns**: ``W f = W_band f_band + W_slot f_slot``; the
  slot part (with the bias) is one ``[B, out]`` value per slot, added to the per-symbol
  part.

Per-symbol FLOPs (2 x MACs) go from ``sum_l 2 C_out C_in k^2 R W + 2 out C_L R W`` to
``sum_l 2 C_out C_in k^2 |band_l| W + 2 out C_L |band_L| W``; SDNet at its default size
(``Nt=8, Nr=32, Nconv=4, C=8``): 5,127,168 -> 358,144. Exact (the same sums, in the
same order per output element). When the band would cover every row, the stack
continues on full images from there.

Matched pattern: a ``Reshape`` of ``Concat([B, S, r_i, W] parts, axis=2)`` to
``[B*S, 1, R, W]`` whose slot-rate parts are ``Expand`` of a ``[B, 1, r_i, W]`` value
and whose symbol-rate parts form one contiguous band; then a single-use chain of
``Conv2d`` (row stride 1, dilation 1, "same" row padding), elementwise ops (with
constant operands that do not vary along batch or rows) and ``Reshape``-flatten +
``Linear``. A chain that ends otherwise is reassembled into full images there.

Quantized stacks (the ``quantize`` pass): a ``FakeQuant`` with a *static* step is an
elementwise op and hoists like one (``FakeQuant(0) = 0`` keeps the zero rows zero); the
window a band convolution reads (slot rows around the band) is quantized again, which
changes nothing (the values are on the grid already) and keeps the convolution's input a
``FakeQuant`` for the integer lowerings; a static ``FakeQuant`` between the flatten and the
final ``Linear`` is applied to both column parts. A *dynamic* step (``alpha * RMS`` over
the whole image) is a statistic of every row, so a chain stops there.

Example::

    >>> before = count_flops(graph).per_symbol
    >>> graph = conv_rows.run(graph)
    >>> count_flops(graph).per_symbol < before
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mimoc.compiler import dims as D
from mimoc.compiler.flops import count_flops
from mimoc.compiler.ir import Attrs, Graph, Node, Rate, TensorType
from mimoc.compiler.passes.base import FunctionPass, PassOutcome
from mimoc.compiler.passes.prune import ELEMENTWISE_UNARY
from mimoc.compiler.rewrite import Rewriter, rebuild

NAME = "hoist-conv-rows"

ELEMENTWISE_BINARY = frozenset({"Add", "Sub", "Mul", "Div", "Maximum", "Minimum", "Pow"})


@dataclass(frozen=True)
class Image:
    """The matched image: ``reshape`` = ``[B*S, 1, R, W]`` built from ``concat`` parts."""

    reshape: Node
    concat: Node
    parts: tuple[tuple[Node, int, int], ...]  # (part, first row, rows)
    lo: int  # symbol band rows lo..hi
    hi: int

    @property
    def rows(self) -> int:
        return self.concat.type.shape[2]


@dataclass(frozen=True)
class Chain:
    """The image, the hoistable nodes after it, and the node where the chain ends."""

    image: Image
    nodes: tuple[Node, ...]
    final_linear: Node | None  # the FC whose columns split, when the chain reaches one
    final_quant: Node | None = None  # a static FakeQuant between the flatten and the FC

    @property
    def end(self) -> Node:
        return self.final_linear or (self.nodes[-1] if self.nodes else self.image.reshape)


def _match_image(graph: Graph, node: Node) -> Image | None:
    if node.op != "Reshape" or node.type.rate != Rate.SYMBOL:
        return None
    concat = graph.node(node.inputs[0])
    if concat.op != "Concat" or concat.type.rank != 4 or concat.attrs["axis"] % 4 != 2:
        return None
    b, s, rows, width = concat.type.shape
    if not (isinstance(rows, int) and isinstance(width, int)):
        return None
    if node.type.shape != (D.mul(b, s), 1, rows, width):
        return None
    parts, start, symbol_rows = [], 0, []
    for name in concat.inputs:
        part = graph.node(name)
        count = part.type.shape[2]
        if part.rate == Rate.SYMBOL:
            symbol_rows += list(range(start, start + count))
        elif not (part.op == "Expand"
                  and graph.node(part.inputs[0]).type.shape == (b, 1, count, width)):
            return None
        parts.append((part, start, count))
        start += count
    if not symbol_rows or symbol_rows != list(range(symbol_rows[0], symbol_rows[-1] + 1)):
        return None
    return Image(node, concat, tuple(parts), symbol_rows[0], symbol_rows[-1])


def _row_preserving_const(graph: Graph, name: str) -> bool:
    """A constant operand that is the same for every image and every row."""
    node = graph.node(name)
    if node.rate != Rate.CONST:
        return False
    shape = node.type.shape
    aligned = (1,) * (4 - len(shape)) + tuple(shape) if len(shape) <= 4 else None
    return aligned is not None and aligned[0] == 1 and aligned[2] == 1


def _static_quant(node: Node) -> bool:
    return node.op == "FakeQuant" and node.attrs["mode"] == "static"


def _hoistable_conv(graph: Graph, node: Node, current: str) -> bool:
    """Row stride 1, no row dilation, "same" row padding: rows map one to one."""
    (stride, _), (pad, _), (dilation, _) = (node.attrs["stride"], node.attrs["padding"],
                                            node.attrs["dilation"])
    kernel = graph.node(node.inputs[1]).type.shape[2]
    return node.inputs[0] == current and stride == 1 and dilation == 1 and 2 * pad == kernel - 1


def find_chains(graph: Graph) -> list[Chain]:
    users = graph.users()
    outputs = set(graph.outputs)
    chains = []
    for node in graph.nodes:
        image = _match_image(graph, node)
        if image is None:
            continue
        nodes: list[Node] = []
        final = quant = None
        current = node
        while current.name not in outputs and len(users[current.name]) == 1:
            nxt = users[current.name][0]
            if nxt.op == "Conv2d":
                if not _hoistable_conv(graph, nxt, current.name):
                    break
            elif nxt.op in ELEMENTWISE_UNARY or _static_quant(nxt):
                pass
            elif nxt.op in ELEMENTWISE_BINARY and nxt.inputs.count(current.name) == 1 and all(
                    i == current.name or _row_preserving_const(graph, i) for i in nxt.inputs):
                pass
            elif nxt.op == "Reshape" and nxt.type.rank == 2 and len(users[nxt.name]) == 1 \
                    and nxt.name not in outputs:
                reader = users[nxt.name][0]
                if _static_quant(reader) and reader.name not in outputs \
                        and len(users[reader.name]) == 1:
                    quant, reader = reader, users[reader.name][0]
                if reader.op == "Linear" and reader.inputs[0] == (quant or nxt).name:
                    nodes.append(nxt)
                    final = reader
                else:
                    quant = None
                break
            else:
                break
            nodes.append(nxt)
            current = nxt
        if any(n.op == "Conv2d" for n in nodes):
            chains.append(Chain(image, tuple(nodes), final, quant))
    return chains


class _Builder:
    """Emits the slot stack and the band stack of one chain into a Rewriter."""

    def __init__(self, rw: Rewriter, chain: Chain):
        self.rw, self.chain = rw, chain
        image = chain.image
        self.b, self.s = image.concat.type.shape[:2]
        self.n = image.reshape.type.shape[0]
        self.rows = image.rows
        self.lo, self.hi = image.lo, image.hi

    # -- small factories
    def make(self, op, inputs, attrs=None, *, like, suffix):
        return self.rw.make(op, inputs, attrs, like=like, suffix=suffix)

    def zeros(self, like: Node, shape) -> str:
        shape = tuple(shape)
        node = Node(self.rw.fresh(f"{like.name}_pad"), "Fill", (),
                    Attrs({"value": 0.0, "shape": shape}),
                    TensorType(shape, like.type.dtype, Rate.CONST), like.scope)
        return self.rw.emit(node)

    def slot_rows(self, slot: str, start: int, end: int, like: Node) -> str:
        """Rows ``start..end-1`` of the slot stack, broadcast to every symbol ``[B*S, C, k, W]``."""
        rows = self.make("Slice", [slot], {"axis": 2, "start": start, "end": end, "step": 1},
                         like=like, suffix="_slot_rows")
        _, c, k, w = self.rw.type(rows).shape
        per_symbol = self.make("Unsqueeze", [rows], {"axis": 1}, like=like, suffix="_slot_rows")
        per_symbol = self.make("Expand", [per_symbol], {"shape": (self.b, self.s, c, k, w)},
                               like=like, suffix="_slot_rows")
        return self.make("Reshape", [per_symbol], {"shape": (self.n, c, k, w)}, like=like,
                         suffix="_slot_rows")

    def assemble(self, parts: list[str], like: Node, suffix: str) -> str:
        return parts[0] if len(parts) == 1 else self.make("Concat", parts, {"axis": 2},
                                                          like=like, suffix=suffix)

    # -- the stacks
    def image(self) -> tuple[str, str]:
        """(slot image ``[B, 1, R, W]``, band image ``[B*S, 1, |band|, W]``)."""
        image = self.chain.image
        slot_parts, band_parts = [], []
        for part, _, count in image.parts:
            if part.rate == Rate.SYMBOL:
                slot_parts.append(self.zeros(part, (self.b, 1, count, part.type.shape[3])))
                band_parts.append(part.name)
            else:
                slot_parts.append(part.inputs[0])
        slot = self.make("Concat", slot_parts, {"axis": 2}, like=image.concat, suffix="_slot")
        band = self.assemble(band_parts, image.concat, "_band")
        width = image.concat.type.shape[3]
        band = self.make("Reshape", [band], {"shape": (self.n, 1, self.hi - self.lo + 1, width)},
                         like=image.reshape, suffix="_band")
        return slot, band

    def conv(self, node: Node, slot: str, band: str) -> tuple[str, str]:
        pad_h, pad_w = node.attrs["padding"]
        weights = list(node.inputs[1:])
        slot_out = self.make("Conv2d", [slot, *weights], node.attrs, like=node, suffix="_slot")
        lo, hi = max(0, self.lo - pad_h), min(self.rows - 1, self.hi + pad_h)
        _, channels, _, width = self.rw.type(band).shape
        parts = []
        if pad_h - lo > 0:
            parts.append(self.zeros(node, (self.n, channels, pad_h - lo, width)))
        above = max(0, lo - pad_h)  # context rows above the band, from the slot stack
        if above < self.lo:
            parts.append(self.slot_rows(slot, above, self.lo, node))
        parts.append(band)
        below = min(self.rows, hi + pad_h + 1)  # ... and below it
        if below > self.hi + 1:
            parts.append(self.slot_rows(slot, self.hi + 1, below, node))
        if hi + pad_h > self.rows - 1:
            parts.append(self.zeros(node, (self.n, channels, hi + pad_h - self.rows + 1, width)))
        window = self.assemble(parts, node, "_window")
        source = self.rw.graph.node(node.inputs[0])
        if _static_quant(source) and len(parts) > 1:  # on the grid already: exact
            window = self.make("FakeQuant", [window], source.attrs, like=source,
                               suffix="_window")
        band_out = self.make("Conv2d", [window, *weights],
                             node.attrs.updated(padding=(0, pad_w)), like=node, suffix="_band")
        self.lo, self.hi = lo, hi
        return slot_out, band_out

    def elementwise(self, node: Node, current: str, slot: str, band: str) -> tuple[str, str]:
        def on(value: str, suffix: str) -> str:
            inputs = [value if i == current else i for i in node.inputs]
            return self.make(node.op, inputs, node.attrs, like=node, suffix=suffix)
        return on(slot, "_slot"), on(band, "_band")

    def full(self, like: Node, slot: str, band: str) -> str:
        """The full images ``[B*S, C, R, W]`` again: slot rows around the band."""
        parts = []
        if self.lo > 0:
            parts.append(self.slot_rows(slot, 0, self.lo, like))
        parts.append(band)
        if self.hi < self.rows - 1:
            parts.append(self.slot_rows(slot, self.hi + 1, self.rows, like))
        return self.assemble(parts, like, "_full")

    def quantized(self, value: str, suffix: str) -> str:
        """``value`` through the chain's static FakeQuant before the final FC, if any."""
        quant = self.chain.final_quant
        if quant is None:
            return value
        return self.make("FakeQuant", [value], quant.attrs, like=quant, suffix=suffix)

    def split_linear(self, flatten: Node, linear: Node, slot: str, band: str) -> str:
        """``Linear(flatten(x))`` = band columns per symbol + slot columns (and bias) per slot."""
        _, channels, _, width = self.rw.type(slot).shape
        weight = self.rw.constants[linear.inputs[1]]
        grid = torch.arange(channels * self.rows * width).reshape(channels, self.rows, width)
        band_rows = torch.arange(self.lo, self.hi + 1)
        slot_rows = torch.tensor([r for r in range(self.rows) if not self.lo <= r <= self.hi])
        quant = self.rw.type(linear.inputs[1]).quant  # per-row scales survive a column cut
        band_w = self.rw.new_const(f"{linear.inputs[1]}.band",
                                   weight[:, grid[:, band_rows].reshape(-1)], linear.scope, quant)
        slot_w = self.rw.new_const(f"{linear.inputs[1]}.slot",
                                   weight[:, grid[:, slot_rows].reshape(-1)], linear.scope, quant)
        band_flat = self.quantized(self.make(
            "Reshape", [band], {"shape": (self.n, len(band_rows) * channels * width)},
            like=flatten, suffix="_band"), "_band")
        per_symbol = self.make("Linear", [band_flat, band_w], like=linear, suffix="_band")
        parts = []
        if self.lo > 0:
            parts.append(self.make("Slice", [slot], {"axis": 2, "start": 0, "end": self.lo,
                                                     "step": 1}, like=flatten, suffix="_slot_rows"))
        if self.hi < self.rows - 1:
            parts.append(self.make("Slice", [slot], {"axis": 2, "start": self.hi + 1,
                                                     "end": self.rows, "step": 1},
                                   like=flatten, suffix="_slot_rows"))
        slot_img = self.assemble(parts, flatten, "_slot")
        slot_flat = self.quantized(self.make(
            "Reshape", [slot_img], {"shape": (self.b, len(slot_rows) * channels * width)},
            like=flatten, suffix="_slot"), "_slot")
        per_slot = self.make("Linear", [slot_flat, slot_w, *linear.inputs[2:]], like=linear,
                             suffix="_slot")
        out = weight.shape[0]
        per_symbol = self.make("Reshape", [per_symbol], {"shape": (self.b, self.s, out)},
                               like=linear, suffix="_band")
        per_slot = self.make("Unsqueeze", [per_slot], {"axis": 1}, like=linear, suffix="_slot")
        total = self.make("Add", [per_symbol, per_slot], like=linear, suffix="_sum")
        return self.make("Reshape", [total], {"shape": (self.n, out)}, like=linear,
                         suffix="_hoisted")

    def build(self) -> str:
        slot, band = self.image()
        current = self.chain.image.reshape.name
        covered = False
        nodes = self.chain.nodes
        for node in nodes:
            if node.op == "Conv2d" and not covered:
                pad_h = node.attrs["padding"][0]
                if self.lo - pad_h <= 0 and self.hi + pad_h >= self.rows - 1:
                    # the band would cover every row: continue on full images
                    band = self.full(node, slot, band)
                    covered = True
            if covered:
                if node.op == "Reshape" and self.chain.final_linear is not None:
                    band = self.quantized(self.make(node.op, [band], node.attrs, like=node,
                                                    suffix="_full"), "_full")
                    linear = self.chain.final_linear
                    return self.make("Linear", [band, *linear.inputs[1:]], like=linear,
                                     suffix="_full")
                inputs = [band if i == current else i for i in node.inputs]
                band = self.make(node.op, inputs, node.attrs, like=node, suffix="_full")
            elif node.op == "Conv2d":
                slot, band = self.conv(node, slot, band)
            elif node.op == "Reshape":  # the flatten before the final Linear
                return self.split_linear(node, self.chain.final_linear, slot, band)
            else:
                slot, band = self.elementwise(node, current, slot, band)
            current = node.name
        return band if covered else self.full(nodes[-1], slot, band)


def hoist(graph: Graph) -> PassOutcome:
    """The hoisted graph and the report (one line per conv stack, the FLOPs)."""
    chains = find_chains(graph)
    if not chains:
        return PassOutcome(graph, ("no conv stack over an image of channel rows and "
                                   "symbol rows; nothing hoisted",), {"stacks": 0})
    ends = {chain.end.name: chain for chain in chains}

    def replace(node: Node, rw: Rewriter) -> str | None:
        chain = ends.get(node.name)
        return None if chain is None else _Builder(rw, chain).build()

    hoisted = rebuild(graph, replace)
    before, after = count_flops(graph), count_flops(hoisted)
    if after.per_symbol >= before.per_symbol:
        return PassOutcome(graph, ("hoisting conv rows would not lower the per-symbol FLOPs; "
                                   "graph unchanged",), {"stacks": 0})
    notes = []
    for chain in chains:
        convs = sum(1 for n in chain.nodes if n.op == "Conv2d")
        image = chain.image
        notes.append(f"{image.concat.name}: image of {image.rows} rows, symbol rows "
                     f"{image.lo}..{image.hi}; {convs} convolutions on the symbol band, "
                     + ("final FC split into slot and symbol columns"
                        if chain.final_linear is not None else "no FC split"))
    notes.append(f"per-symbol FLOPs {before.per_symbol} -> {after.per_symbol}, per-slot FLOPs "
                 f"{before.per_slot} -> {after.per_slot}")
    return PassOutcome(hoisted, tuple(notes), {
        "stacks": len(chains), "flops_per_symbol_before": before.per_symbol,
        "flops_per_symbol_after": after.per_symbol, "flops_per_slot_before": before.per_slot,
        "flops_per_slot_after": after.per_slot})


def run(graph: Graph) -> Graph:
    return hoist(graph).graph


PASS = FunctionPass(NAME, hoist, "SDNet partial hoisting: conv rows and FC columns that depend "
                    "on the channel only are computed once per slot")
