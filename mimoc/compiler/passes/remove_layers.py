"""remove-layers: keep the first ``n`` blocks of an unfolded detector (R-WeSNet).

R-WeSNet trains with a depth-growing L1 penalty so that trailing blocks end up with
small weights; at inference they are removed and the output is the estimate of the
last kept block (docs/design.md section 4). The depth is either given
(``RemoveLayers(keep_layers=n)``, ``--keep-layers``) or chosen by threshold
(``RemoveLayers(l1_threshold=...)``, ``--l1-threshold``):
trailing blocks whose profile-scaled L1 norm is below it are dropped, at least one
block stays. The threshold is absolute (``T``) or relative (``"Fx"``: ``F`` times the
largest block norm, as ``WeSNet.depth_for_threshold(F, relative=True)``). The norm is the paper's
``|beta_r W_r|`` (eqs. 28-30, as
:meth:`mimoc.detectors.wesnet.WeSNet.layer_l1_norms` computes it)::

    |beta_r W_r| = sum_j beta_j (sum_i |W1_ji| + sum_i |W2_ij| + sum_i |W3_ij|)

over the block's Linear layers: rows of the layer whose units a profile scales, columns
of the layers that read them (see :mod:`.prune` for how the profile is found);
unscaled layers (DetNet) count their plain L1 norm. Lossy (the output changes), reported.

How the IR is read:

- **blocks**: Linear layers whose scope is ``<prefix>.<i>.<layer>`` (``blocks.3.fc1``),
  grouped by the prefix with the most indices;
- **the estimate entering block n**: the graph output ``x_L`` is computed by block
  ``L-1``'s layer ``fc2`` (its nearest block layers); the value that block ``n`` reads
  (an operand of its first layer's input ``Concat``) of the same shape, computed by
  the same layer of block ``n-1``, and not derived from another such operand (``H^T H
  x_n`` is derived from ``x_n``), is ``x_n``. It becomes the output; what only the
  removed blocks needed (their layers, block ``n-1``'s ``v`` layer) is dropped.

The result equals the PyTorch model evaluated at depth ``n``
(``model.set_depth(n)``).

Example::

    >>> outcome = RemoveLayers(keep_layers=2).apply(graph)
    >>> outcome.notes[0]
    'kept blocks.0 .. blocks.1, removed blocks.2 .. blocks.5 (4 of 6 blocks)'
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

import torch

from mimoc.compiler.flops import count_flops
from mimoc.compiler.ir import Graph, Node
from mimoc.compiler.passes.base import (
    Pass,
    PassOutcome,
    check_keep_layers,
    check_one_depth_rule,
    normalized_l1_threshold,
    parse_l1_threshold,
)
from mimoc.compiler.passes.prune import find_profile_sites
from mimoc.errors import UsageError

NAME = "remove-layers"

_BLOCK_SCOPE = re.compile(r"^(?P<prefix>.*?)(?P<index>\d+)\.(?P<layer>[^.]+)$")


@dataclass(frozen=True)
class Blocks:
    """The unfolded blocks of a graph: ``layers[i]`` are block ``i``'s Linear nodes."""

    prefix: str  # "blocks."
    layers: tuple[tuple[Node, ...], ...]

    def __len__(self) -> int:
        return len(self.layers)

    def label(self, index: int) -> str:
        return f"{self.prefix}{index}"

    def index_of(self, node: Node) -> tuple[int, str] | None:
        """(block index, layer name) of a block layer, else None."""
        if node.op != "Linear":
            return None
        m = _BLOCK_SCOPE.match(node.scope)
        if m is None or m["prefix"] != self.prefix or int(m["index"]) >= len(self):
            return None
        return int(m["index"]), m["layer"]


def find_blocks(graph: Graph) -> Blocks:
    """Group the Linear layers by block; a graph without repeated blocks is a UsageError."""
    groups: dict[str, dict[int, list[Node]]] = defaultdict(lambda: defaultdict(list))
    for node in graph.nodes:
        m = _BLOCK_SCOPE.match(node.scope) if node.op == "Linear" else None
        if m is not None:
            groups[m["prefix"]][int(m["index"])].append(node)
    candidates = [(len(g), p) for p, g in groups.items() if len(g) >= 2]
    if not candidates:
        raise UsageError("remove-layers: no repeated blocks in this model (Linear layers "
                         "scoped like blocks.<i>.<layer>); it applies to unfolded detectors "
                         "such as DetNet and WeSNet")
    _, prefix = max(candidates)
    found = groups[prefix]
    count = max(found) + 1
    missing = [i for i in range(count) if i not in found]
    if missing:
        raise UsageError(f"remove-layers: blocks {prefix}{missing[0]} has no layer in the "
                         f"graph (blocks must be numbered 0..{count - 1})")
    return Blocks(prefix, tuple(tuple(found[i]) for i in range(count)))


def block_l1_norms(graph: Graph, blocks: Blocks) -> list[float]:
    """``|beta_r W_r|`` per block (module docstring)."""
    rows: dict[str, torch.Tensor] = {}  # producer Linear -> beta over its output rows
    cols: dict[str, torch.Tensor] = {}  # reader Linear -> beta over its input columns
    for site in find_profile_sites(graph):
        rows[site.producer.name] = site.beta.abs()
        for reader in site.consumers:
            cols[reader.name] = site.beta.abs()
    norms = []
    for layers in blocks.layers:
        total = 0.0
        for layer in layers:
            weight = graph.constants[layer.inputs[1]].abs().double()
            if layer.name in rows:
                total += float((weight.sum(1) * rows[layer.name].double()).sum())
            if layer.name in cols:
                total += float((weight.sum(0) * cols[layer.name].double()).sum())
            if layer.name not in rows and layer.name not in cols:
                total += float(weight.sum())
        norms.append(total)
    return norms


def depth_for_threshold(norms: list[float], threshold: float) -> int:
    """Blocks left after dropping the trailing ones with norm < threshold (at least 1)."""
    depth = len(norms)
    while depth > 1 and norms[depth - 1] < threshold:
        depth -= 1
    return depth


def _last_block_layers(graph: Graph, blocks: Blocks, name: str,
                       memo: dict[str, tuple[int, frozenset[str]]]) -> tuple[int, frozenset[str]]:
    """(highest block index, its layer names) among the nearest block layers above ``name``."""
    if name in memo:
        return memo[name]
    node = graph.node(name)
    found = blocks.index_of(node)
    if found is not None:
        result = (found[0], frozenset({found[1]}))
    else:
        result = (-1, frozenset())
        for i in node.inputs:
            index, layers = _last_block_layers(graph, blocks, i, memo)
            if index > result[0]:
                result = (index, layers)
            elif index == result[0]:
                result = (index, result[1] | layers)
    memo[name] = result
    return result


def _ancestors(graph: Graph, name: str) -> set[str]:
    seen, stack = set(), [name]
    while stack:
        for i in graph.node(stack.pop()).inputs:
            if i not in seen:
                seen.add(i)
                stack.append(i)
    return seen


def estimate_entering(graph: Graph, blocks: Blocks, n: int) -> str:
    """The value block ``n`` reads as the estimate of blocks ``0..n-1`` (``x_n``)."""
    if len(graph.outputs) != 1:
        raise UsageError(f"remove-layers: the graph has {len(graph.outputs)} outputs; "
                         "expected one estimate")
    memo: dict[str, tuple[int, frozenset[str]]] = {}
    output = graph.node(graph.outputs[0])
    out_index, out_layers = _last_block_layers(graph, blocks, output.name, memo)
    if out_index != len(blocks) - 1:
        raise UsageError(f"remove-layers: the output is not computed by the last block "
                         f"{blocks.label(len(blocks) - 1)}")
    entry = blocks.layers[n][0]
    source = graph.node(entry.inputs[0])
    operands = source.inputs if source.op == "Concat" else (source.name,)
    candidates = [o for o in dict.fromkeys(operands)
                  if graph.node(o).type.shape == output.type.shape
                  and _last_block_layers(graph, blocks, o, memo) == (n - 1, out_layers)]
    upstream = [c for c in candidates
                if not any(other in _ancestors(graph, c) for other in candidates if other != c)]
    if len(upstream) != 1:
        raise UsageError(f"remove-layers: cannot tell which value {blocks.label(n)} reads as "
                         f"the estimate of the blocks before it (found {len(upstream)}: "
                         f"{', '.join(upstream) or 'none'}); run remove-layers on the "
                         "imported or canonicalized graph")
    return upstream[0]


def remove_layers(graph: Graph, keep_layers: int | None = None,
                  l1_threshold: float | str | None = None) -> PassOutcome:
    """The graph cut after ``keep_layers`` blocks or after the depth ``l1_threshold`` gives,
    and the report."""
    if keep_layers is None and l1_threshold is None:
        raise UsageError("remove-layers needs a target: --keep-layers N (blocks to keep) "
                         "or --l1-threshold T|Fx (drop trailing blocks with |beta W| < T, or "
                         "< F times the largest block norm)")
    blocks = find_blocks(graph)
    norms = block_l1_norms(graph, blocks)
    total = len(blocks)
    if keep_layers is not None:
        depth = keep_layers
        if depth > total:
            raise UsageError(f"--keep-layers {depth}: the model has only {total} blocks")
        reason = f"--keep-layers {depth}"
    else:
        l1_threshold = normalized_l1_threshold(l1_threshold)  # "0.10x" is reported as "0.1x"
        value, relative = parse_l1_threshold(l1_threshold)
        threshold = value * max(norms) if relative else value
        depth = depth_for_threshold(norms, threshold)
        reason = (f"--l1-threshold {l1_threshold} = {threshold:.4g}" if relative
                  else f"--l1-threshold {value:g}")
    details = {"blocks": total, "kept": depth, "removed": total - depth,
               "l1_norms": [round(v, 6) for v in norms], "reason": reason}
    norm_text = ", ".join(f"{v:.4g}" for v in norms)
    if depth == total:
        return PassOutcome(graph, (f"kept all {total} blocks ({reason}); "
                                   f"block L1 norms |beta W|: {norm_text}",),
                           {**details, "flops_saved_per_symbol": 0, "flops_saved_per_slot": 0})
    estimate = estimate_entering(graph, blocks, depth)
    cut = graph.replace(outputs=(estimate,)).pruned().with_output_names(graph.outputs)
    before, after = count_flops(graph), count_flops(cut)
    saved_symbol = before.per_symbol - after.per_symbol
    saved_slot = before.per_slot - after.per_slot
    notes = (
        f"kept {blocks.label(0)} .. {blocks.label(depth - 1)}, removed "
        f"{blocks.label(depth)} .. {blocks.label(total - 1)} ({total - depth} of {total} "
        f"blocks, {reason}); output from {blocks.label(depth - 1)}",
        f"block L1 norms |beta W|: {norm_text}",
        f"saved {saved_symbol} FLOPs per symbol ({before.per_symbol} -> {after.per_symbol}), "
        f"{saved_slot} per slot",
    )
    return PassOutcome(cut, notes, {**details, "flops_saved_per_symbol": saved_symbol,
                                    "flops_saved_per_slot": saved_slot})


@dataclass(frozen=True)
class RemoveLayers(Pass):
    """``remove-layers``: keep ``keep_layers`` blocks, or drop the trailing blocks whose
    ``|beta W|`` is below ``l1_threshold`` (a number, or ``"Fx"``: F times the largest)."""

    keep_layers: int | None = None
    l1_threshold: float | str | None = None

    name = NAME
    doc = ("drop trailing blocks (R-WeSNet) by --keep-layers N or --l1-threshold T|Fx; the "
           "output is the last kept block's")
    exact = False
    option_fields = {"keep_layers": "keep_layers", "l1_threshold": "l1_threshold"}

    def __post_init__(self) -> None:
        check_keep_layers(self.keep_layers)
        if self.l1_threshold is not None:
            object.__setattr__(self, "l1_threshold", normalized_l1_threshold(self.l1_threshold))
        check_one_depth_rule(self.keep_layers, self.l1_threshold)

    def run(self, graph: Graph) -> PassOutcome:
        return remove_layers(graph, self.keep_layers, self.l1_threshold)


def run(graph: Graph) -> Graph:
    """The pass without a depth rule: a UsageError that asks for one."""
    return remove_layers(graph).graph


PASS = RemoveLayers()
