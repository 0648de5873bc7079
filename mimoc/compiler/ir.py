"""The IR: a typed SSA dataflow graph at layer level (docs/design.md section 3).

One node type. Every value is the output of exactly one :class:`Node` (graph inputs are
``Input`` nodes, trained weights are ``Const`` nodes whose tensors live in
``Graph.constants`` under the node's name). A node has an op (see :mod:`.ops` for the
schemas), operand names, attributes and a :class:`TensorType` with shape, dtype, rate and
an optional quantization annotation. Graphs are immutable by convention: passes build new
ones (``graph.replace(nodes=...)``) and never mutate nodes.

Rates (:class:`Rate`) order the values by how often they change:
``const < slot < symbol``. A node's rate is the highest rate of its operands, so a value
computed from ``H`` and weights only is slot-rate and can be hoisted out of the
per-symbol stage.

Example (text form, :mod:`.printer`)::

    %linear: f32[B,S,32] @symbol = Linear(%cat, W=fc1.weight[32x48], b=fc1.bias[32])  # fc1
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Any

import torch

from mimoc.compiler.dims import Shape
from mimoc.errors import MimocError


class IRError(MimocError):
    """A malformed IR graph (verifier failure, a pass produced an inconsistent graph)."""


class Rate(IntEnum):
    """How often a value changes: once per model, per coherence slot, per symbol."""

    CONST = 0
    SLOT = 1
    SYMBOL = 2

    def __str__(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Rate:
        try:
            return cls[text.upper()]
        except KeyError:
            raise IRError(f"unknown rate {text!r}; expected const, slot or symbol") from None


DTYPES = {"f32": torch.float32, "f64": torch.float64, "i64": torch.int64, "bool": torch.bool}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}


def dtype_name(dtype: torch.dtype) -> str:
    try:
        return DTYPE_NAMES[dtype]
    except KeyError:
        raise IRError(f"dtype {dtype} is not supported by the IR (f32, f64, i64, bool)") from None


@dataclass(frozen=True)
class Quant:
    """Quantization of a value: symmetric uniform ``bits``-bit integers times a scale.

    ``axis`` is the per-channel axis (``None``: per tensor); ``scale`` the step of each
    channel along ``axis`` (a 1-tuple per tensor), so a ``Const`` weight holding
    ``W_q = q * scale`` gives back its integer codes exactly as ``round(W_q / scale)``. Set
    by the quantize pass (:mod:`mimoc.compiler.passes.quantize`); fp32 passes leave
    ``TensorType.quant`` as ``None``.
    """

    bits: int
    signed: bool = True
    axis: int | None = None
    scale: tuple[float, ...] | None = None

    def __str__(self) -> str:
        kind = "i" if self.signed else "u"
        return f"{kind}{self.bits}" + ("" if self.axis is None else f"/axis{self.axis}")


@dataclass(frozen=True)
class TensorType:
    shape: Shape
    dtype: str = "f32"
    rate: Rate = Rate.SYMBOL
    quant: Quant | None = None

    @property
    def rank(self) -> int:
        return len(self.shape)


class Attrs(Mapping):
    """An immutable, hashable attribute mapping (values must be hashable)."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Any] | Iterable[tuple[str, Any]] = ()):
        items = dict(items)
        self._items = tuple(sorted((k, _freeze(v)) for k, v in items.items()))

    def __getitem__(self, key: str) -> Any:
        for k, v in self._items:
            if k == key:
                return v
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Attrs) and self._items == other._items

    def __repr__(self) -> str:
        return f"Attrs({dict(self._items)!r})"

    def updated(self, **changes: Any) -> Attrs:
        return Attrs({**dict(self._items), **changes})


def _freeze(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


@dataclass(frozen=True)
class Node:
    """One SSA value: ``name = op(inputs, attrs) : type``; ``scope`` is the module path."""

    name: str
    op: str
    inputs: tuple[str, ...]
    attrs: Attrs
    type: TensorType
    scope: str = ""

    def replace(self, **changes: Any) -> Node:
        if "attrs" in changes and not isinstance(changes["attrs"], Attrs):
            changes["attrs"] = Attrs(changes["attrs"])
        if "inputs" in changes:
            changes["inputs"] = tuple(changes["inputs"])
        return replace(self, **changes)

    @property
    def rate(self) -> Rate:
        return self.type.rate

    @property
    def shape(self) -> Shape:
        return self.type.shape


@dataclass(frozen=True)
class Graph:
    """Nodes in topological order, the output names and the constant tensors.

    ``constants[name]`` is the tensor of the ``Const`` node ``name``.
    """

    nodes: tuple[Node, ...]
    outputs: tuple[str, ...]
    constants: Mapping[str, torch.Tensor] = field(default_factory=dict)
    name: str = "detector"
    # typical sizes of symbolic dims other than B and S (RE-MIMO's user count U = nt),
    # recorded by the frontend from the example inputs; used for FLOP reports
    dim_sizes: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "_index", {n.name: n for n in self.nodes})

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def node(self, name: str) -> Node:
        try:
            return self._index[name]
        except KeyError:
            raise IRError(f"graph {self.name!r} has no value %{name}") from None

    def replace(self, **changes: Any) -> Graph:
        return replace(self, **changes)

    @property
    def inputs(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.op == "Input")

    def const(self, name: str) -> torch.Tensor:
        return self.constants[name]

    def users(self) -> dict[str, list[Node]]:
        """Value name -> nodes that read it (graph outputs not included)."""
        out: dict[str, list[Node]] = {n.name: [] for n in self.nodes}
        for n in self.nodes:
            for i in n.inputs:
                out.setdefault(i, []).append(n)
        return out

    def fresh_name(self, prefix: str, taken: set[str] | None = None) -> str:
        used = self._index.keys() | (taken or set())
        if prefix not in used:
            return prefix
        k = 1
        while f"{prefix}_{k}" in used:
            k += 1
        return f"{prefix}_{k}"

    def pruned(self) -> Graph:
        """Drop nodes no output depends on (inputs stay) and constants no node uses."""
        live = set(self.outputs)
        for n in reversed(self.nodes):
            if n.name in live:
                live.update(n.inputs)
        nodes = [n for n in self.nodes if n.name in live or n.op == "Input"]
        names = {n.name for n in nodes}
        constants = {k: v for k, v in self.constants.items() if k in names}
        return self.replace(nodes=tuple(nodes), constants=constants)

    def renamed(self, rename: Mapping[str, str]) -> Graph:
        """The same graph with values renamed (``rename[old] = new``; names must stay unique)."""
        if not rename:
            return self
        nodes = tuple(
            Node(rename.get(n.name, n.name), n.op, tuple(rename.get(i, i) for i in n.inputs),
                 n.attrs, n.type, n.scope) for n in self.nodes)
        constants = {rename.get(k, k): v for k, v in self.constants.items()}
        return self.replace(nodes=nodes, outputs=tuple(rename.get(o, o) for o in self.outputs),
                            constants=constants)

    def with_output_names(self, names: Iterable[str]) -> Graph:
        """Rename the computed nodes that produce the outputs to ``names`` where free."""
        rename: dict[str, str] = {}
        taken = set(self._index)
        for old, new in zip(self.outputs, names, strict=False):
            node = self.node(old)
            if old == new or node.op in ("Input", "Const") or new in taken or old in rename:
                continue
            rename[old] = new
            taken.add(new)
        return self.renamed(rename)
