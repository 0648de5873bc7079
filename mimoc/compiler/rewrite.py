"""Local rewrite rules as data, and the engine that applies them to a fixpoint.

A :class:`Rule` names the ops it looks at and a function ``apply(node, rw)`` that returns
the name of a value to use instead of ``node`` (an existing value or one it built with
``rw.make``), or ``None`` when the rule does not match. Each rule's ``doc`` is its
one-line ``before -> after``. The engine sweeps the graph in order, renames uses of
replaced values, re-infers the types of nodes whose operands changed, drops dead nodes,
and repeats until a sweep changes nothing.

Example::

    @rule("double-neg", {"Neg"}, "Neg(Neg(x)) -> x")
    def double_neg(node, rw):
        inner = rw.producer(node.inputs[0])
        return inner.inputs[0] if inner.op == "Neg" else None

    graph = rewrite(graph, [double_neg])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from mimoc.compiler import ops
from mimoc.compiler.ir import (
    Attrs,
    Graph,
    IRError,
    Node,
    Quant,
    Rate,
    TensorType,
    dtype_name,
)


@dataclass(frozen=True)
class Rule:
    name: str
    ops: frozenset[str] | None  # None: every op
    apply: Callable[[Node, Rewriter], str | None]
    doc: str = ""


def rule(name: str, on: Iterable[str] | None, doc: str,
         ) -> Callable[[Callable[[Node, Rewriter], str | None]], Rule]:
    """Decorator: ``@rule("double-neg", {"Neg"}, "Neg(Neg(x)) -> x")`` over ``apply``."""
    def wrap(apply: Callable[[Node, Rewriter], str | None]) -> Rule:
        return Rule(name, None if on is None else frozenset(on), apply, doc)
    return wrap


class Rewriter:
    """One sweep's state: the nodes emitted so far, constants, and node factories."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.nodes: list[Node] = []
        self.index: dict[str, Node] = {}
        self.constants: dict[str, torch.Tensor] = dict(graph.constants)
        self.use_counts = {name: len(users) for name, users in graph.users().items()}
        for o in graph.outputs:
            self.use_counts[o] = self.use_counts.get(o, 0) + 1
        self.taken = {n.name for n in graph.nodes}
        self.applied: dict[str, int] = {}

    # -- queries
    def producer(self, name: str) -> Node:
        return self.index[name]

    def type(self, name: str) -> TensorType:
        return self.index[name].type

    def const(self, name: str) -> torch.Tensor | None:
        node = self.index.get(name)
        return self.constants.get(name) if node is not None and node.op == "Const" else None

    def uniform_value(self, name: str) -> float | None:
        """The value of a constant whose entries are all equal (a Fill, a scalar), else None."""
        node = self.index.get(name)
        if node is None:
            return None
        if node.op == "Fill":
            return float(node.attrs["value"])
        tensor = self.const(name)
        if tensor is None or tensor.numel() == 0 or tensor.numel() > 4096:
            return None
        first = tensor.reshape(-1)[0]
        return float(first) if bool((tensor == first).all()) else None

    def single_use(self, name: str) -> bool:
        return self.use_counts.get(name, 0) <= 1

    # -- factories
    def fresh(self, prefix: str) -> str:
        name, k = prefix, 1
        while name in self.taken:
            name, k = f"{prefix}_{k}", k + 1
        self.taken.add(name)
        return name

    def emit(self, node: Node) -> str:
        self.nodes.append(node)
        self.index[node.name] = node
        self.taken.add(node.name)
        return node.name

    def make(self, op: str, inputs: Sequence[str], attrs: Mapping[str, Any] | None = None, *,
             like: Node, suffix: str = "") -> str:
        """A new ``op`` node, named after ``like`` and in its scope, with an inferred type."""
        full = ops.schema(op).with_defaults(attrs or {})
        t = ops.infer_type(op, [self.type(i) for i in inputs], full)
        name = self.fresh(f"{like.name}{suffix}" if suffix else op.lower())
        return self.emit(Node(name, op, tuple(inputs), full, t, like.scope))

    def new_const(self, prefix: str, tensor: torch.Tensor, scope: str = "",
                  quant: Quant | None = None) -> str:
        """A new ``Const``; ``quant``: its quantization (a quantized weight derived from one)."""
        name = self.fresh(prefix)
        self.constants[name] = tensor.detach()
        t = TensorType(tuple(tensor.shape), dtype_name(tensor.dtype), Rate.CONST, quant)
        return self.emit(Node(name, "Const", (), Attrs(), t, scope))

    def fill(self, value: float, like: Node) -> str:
        shape = like.shape
        attrs = Attrs({"value": float(value), "shape": shape})
        t = TensorType(shape, like.type.dtype, Rate.CONST)
        return self.emit(Node(self.fresh(f"{like.name}_fill"), "Fill", (), attrs, t, like.scope))


def _retyped(node: Node, rw: Rewriter) -> Node:
    if ops.OPS[node.op].source:
        return node
    t = ops.infer_type(node.op, [rw.type(i) for i in node.inputs], node.attrs)
    t = TensorType(t.shape, t.dtype, t.rate, node.type.quant)
    return node if t == node.type else node.replace(type=t)


def sweep(graph: Graph, rules: Sequence[Rule]) -> tuple[Graph, dict[str, int]]:
    """One pass over the graph; returns the rewritten graph and rule -> times applied."""
    rw = Rewriter(graph)
    rename: dict[str, str] = {}
    for node in graph.nodes:
        if any(i in rename for i in node.inputs):
            node = _retyped(node.replace(inputs=[rename.get(i, i) for i in node.inputs]), rw)
        elif node.op not in ("Input", "Const", "Fill"):
            node = _retyped(node, rw)
        replacement = None
        for rule in rules:
            if rule.ops is not None and node.op not in rule.ops:
                continue
            try:
                replacement = rule.apply(node, rw)
            except IRError as e:
                raise IRError(f"rule {rule.name!r} on %{node.name}: {e}") from e
            if replacement is not None and replacement != node.name:
                rw.applied[rule.name] = rw.applied.get(rule.name, 0) + 1
                break
            replacement = None
        if replacement is None:
            rw.emit(node)
        else:
            rename[node.name] = replacement
    outputs = tuple(rename.get(o, o) for o in graph.outputs)
    out = graph.replace(nodes=tuple(rw.nodes), outputs=outputs, constants=rw.constants).pruned()
    return out.with_output_names(graph.outputs), rw.applied


def rewrite(graph: Graph, rules: Sequence[Rule], max_sweeps: int = 50) -> Graph:
    """Apply ``rules`` until nothing changes."""
    for _ in range(max_sweeps):
        graph, applied = sweep(graph, rules)
        if not applied:
            return graph
    raise IRError(f"rewrite did not converge in {max_sweeps} sweeps "
                  f"(rules: {', '.join(r.name for r in rules)})")


def rebuild(graph: Graph, replace: Callable[[Node, Rewriter], str | None]) -> Graph:
    """One ordered pass for structural rewrites that change shapes along a chain.

    Each node (operands renamed to their replacements) is offered to
    ``replace(node, rw)`` *before* its type is re-inferred; it may build new nodes with
    ``rw`` and return the value to use instead, or ``None`` to keep the node (re-typed).
    Unlike :func:`sweep`, a node whose operand changed shape can be rebuilt here (a pruned
    ``Linear`` gets new weights). Dead nodes and constants are dropped at the end.
    """
    rw = Rewriter(graph)
    rename: dict[str, str] = {}
    for node in graph.nodes:
        if any(i in rename for i in node.inputs):
            node = node.replace(inputs=[rename.get(i, i) for i in node.inputs])
        replacement = replace(node, rw)
        if replacement is None:
            rw.emit(_retyped(node, rw))
        elif replacement != node.name:
            rename[node.name] = replacement
    outputs = tuple(rename.get(o, o) for o in graph.outputs)
    out = graph.replace(nodes=tuple(rw.nodes), outputs=outputs, constants=rw.constants).pruned()
    return out.with_output_names(graph.outputs)
