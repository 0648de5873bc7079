"""prune: drop the hidden units that a profile coefficient switches off (WeSNet).

WeSNet (:mod:`mimoc.detectors.wesnet`) scales the hidden units of each block by profile
coefficients before the ``x`` and ``v`` sub-layers::

    z = beta ⊙ act(W1 q + b1),   x_new = psi(W2 z + b2),   v_new = W3 z + b3

A unit with ``beta_j = 0`` contributes nothing, so row ``j`` of ``W1``/``b1`` and column
``j`` of ``W2``/``W3`` can go: exact for zero coefficients. With a threshold
(``Prune(threshold=...)``, ``--prune-threshold``) units with ``|beta_j| <= threshold`` go
too (lossy).

The structure is found in the IR, not in model metadata: a **profile site** is

    Mul(act(Linear(q, W1, b1)), beta)  read only by Linear layers (as their input)

with ``beta`` a constant vector over the hidden units and ``act`` a chain of
single-use elementwise ops. Matching the IR works for any model with this shape
(a ``.pt2`` export, a user's own detector, a WeSNet whose scopes were renamed) and is
checked against what the pass rewrites; model metadata would tie the pass to the zoo's
module names and would not see what earlier passes changed. Run it after
``canonicalize`` so a profile computed from parameters is folded to a constant.

The kept coefficients stay as the ``Mul`` (not folded into ``W2``/``W3``), so the
output keeps the model's own arithmetic and ``remove-layers`` still sees the profile
for its L1 norms.

Example::

    >>> outcome = Prune().apply(graph)
    >>> outcome.notes[0]
    'blocks.0.fc1: removed 8 of 16 hidden units (|beta| <= 0)'
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mimoc.compiler import ops
from mimoc.compiler.flops import count_flops
from mimoc.compiler.ir import Graph, Node
from mimoc.compiler.passes.base import Pass, PassOutcome, check_prune_threshold
from mimoc.compiler.rewrite import Rewriter, rebuild

NAME = "prune"

# elementwise ops of one operand: unit j of the output depends on unit j of the input only
ELEMENTWISE_UNARY = frozenset({
    "Relu", "Tanh", "Sigmoid", "Abs", "Neg", "Sqrt", "Rsqrt", "Square", "Exp", "Log",
    "Reciprocal", "Sign", "Sin", "Cos", "Gelu", "Clip",
})


@dataclass(frozen=True)
class ProfileSite:
    """``scale = Mul(chain(producer), beta)`` read by the ``consumers`` (Linear x operand)."""

    producer: Node
    chain: tuple[Node, ...]
    scale: Node
    coefficients: str  # the Const node holding beta
    beta: torch.Tensor  # [hidden]
    consumers: tuple[Node, ...]

    @property
    def label(self) -> str:
        return self.producer.scope or self.producer.name


def _coefficient_vector(graph: Graph, name: str, units: int) -> torch.Tensor | None:
    """The const ``name`` as a vector over the last axis, if it only varies along it."""
    node = graph.node(name)
    if node.op != "Const":
        return None
    tensor = graph.constants[name]
    if tensor.dim() == 0 or tensor.shape[-1] != units or tensor.numel() != units:
        return None
    return tensor.reshape(units)


def find_profile_sites(graph: Graph) -> list[ProfileSite]:
    """Every ``Mul(act(Linear(..)), const vector)`` read only by Linear layers."""
    users = graph.users()
    outputs = set(graph.outputs)

    def only_user(name: str) -> Node | None:
        readers = users.get(name, [])
        if name in outputs or len(readers) != 1:
            return None
        return readers[0]

    sites = []
    for mul in graph.nodes:
        if mul.op != "Mul" or mul.name in outputs or not mul.type.shape:
            continue
        units = mul.type.shape[-1]
        for value, coeff in (mul.inputs, mul.inputs[::-1]):
            beta = _coefficient_vector(graph, coeff, units) if isinstance(units, int) else None
            if beta is None or graph.node(value).type.shape != mul.type.shape:
                continue
            chain: list[Node] = []
            node = graph.node(value)
            while node.op in ELEMENTWISE_UNARY and only_user(node.name) is not None:
                chain.append(node)
                node = graph.node(node.inputs[0])
            if (node.op != "Linear" or only_user(node.name) is None
                    or graph.constants[node.inputs[1]].shape[0] != units):
                continue
            readers = users.get(mul.name, [])
            if not readers or any(r.op != "Linear" or r.inputs[0] != mul.name
                                  or mul.name in r.inputs[1:] for r in readers):
                continue
            sites.append(ProfileSite(node, tuple(reversed(chain)), mul, coeff, beta,
                                     tuple(readers)))
            break
    return sites


def kept_units(beta: torch.Tensor, threshold: float) -> torch.Tensor:
    """Indices of the units to keep: ``|beta| > threshold``; at least the largest one
    (its column is then exactly what the model computes: a zero unit times zero)."""
    keep = torch.nonzero(beta.abs() > threshold).reshape(-1)
    if keep.numel() == 0:
        keep = beta.abs().argmax().reshape(1)
    return keep


def _plan(sites: list[ProfileSite], threshold: float) -> dict[str, list]:
    """name of every node to rebuild -> [(site, kept indices)] (a Linear can read one site
    and feed the next one: then it loses columns and rows)."""
    plan: dict[str, list] = {}
    for site in sites:
        keep = kept_units(site.beta, threshold)
        if keep.numel() == site.beta.numel():
            continue
        for node in (site.producer, *site.chain, site.scale, *site.consumers):
            plan.setdefault(node.name, []).append((site, keep))
    return plan


def _rebuilt(node: Node, rw: Rewriter, roles: list) -> str:
    """The node with its unit axes cut to the kept units (same name and scope)."""
    inputs = list(node.inputs)

    def cut(index: int, tensor: torch.Tensor, base: str) -> None:
        inputs[index] = rw.new_const(f"{base}.pruned", tensor, node.scope)

    for site, keep in roles:
        if node.name == site.producer.name:  # rows of W1 and b1
            cut(1, rw.constants[inputs[1]][keep], site.producer.inputs[1])
            if len(inputs) > 2:
                cut(2, rw.constants[inputs[2]][keep], site.producer.inputs[2])
        elif node.name == site.scale.name:  # the coefficients themselves
            index = inputs.index(site.coefficients)
            beta = rw.constants[site.coefficients]
            shape = beta.shape[:-1] + (keep.numel(),)
            cut(index, beta.reshape(-1)[keep].reshape(shape), site.coefficients)
        elif node.name in {c.name for c in site.consumers}:  # columns of W2, W3
            cut(1, rw.constants[inputs[1]][:, keep], node.inputs[1])
    t = ops.infer_type(node.op, [rw.type(i) for i in inputs], node.attrs)
    return rw.emit(node.replace(inputs=inputs, type=t))


def prune(graph: Graph, threshold: float = 0.0) -> PassOutcome:
    """The graph without the units whose coefficient has ``|beta| <= threshold``, and the
    report (per layer and in total)."""
    threshold = float(threshold)
    sites = find_profile_sites(graph)
    if not sites:
        return PassOutcome(graph, ("no profile coefficients found (Mul of a Linear's "
                                   "activations by a constant vector); nothing pruned",),
                           {"sites": []})
    plan = _plan(sites, threshold)

    def replace(node: Node, rw: Rewriter) -> str | None:
        if node.name not in plan:
            return None
        return _rebuilt(node, rw, plan[node.name])

    pruned = rebuild(graph, replace) if plan else graph
    before, after = count_flops(graph), count_flops(pruned)
    notes, details = [], []
    for site in sites:
        keep = kept_units(site.beta, threshold)
        removed = site.beta.numel() - keep.numel()
        details.append({"layer": site.label, "units": site.beta.numel(), "removed": removed,
                        "kept": keep.numel()})
        notes.append(f"{site.label}: removed {removed} of {site.beta.numel()} hidden units "
                     f"(|beta| <= {threshold:g})")
    saved_symbol = before.per_symbol - after.per_symbol
    saved_slot = before.per_slot - after.per_slot
    notes.append(f"removed {sum(d['removed'] for d in details)} of "
                 f"{sum(d['units'] for d in details)} hidden units in {len(sites)} layers; "
                 f"saved {saved_symbol} FLOPs per symbol ({before.per_symbol} -> "
                 f"{after.per_symbol}), {saved_slot} per slot")
    return PassOutcome(pruned, tuple(notes), {
        "threshold": threshold, "sites": details, "flops_saved_per_symbol": saved_symbol,
        "flops_saved_per_slot": saved_slot})


@dataclass(frozen=True)
class Prune(Pass):
    """``prune``; ``threshold``: also drop units with ``|beta| <= threshold`` (lossy)."""

    threshold: float = 0.0

    name = NAME
    doc = "drop hidden units whose profile coefficient is ~0 (WeSNet); exact for zero coefficients"
    option_fields = {"prune_threshold": "threshold"}

    def __post_init__(self) -> None:
        check_prune_threshold(self.threshold)

    def run(self, graph: Graph) -> PassOutcome:
        return prune(graph, self.threshold)


def run(graph: Graph) -> Graph:
    """The pass with its default threshold (0: exact zeros only)."""
    return prune(graph).graph


PASS = Prune()
