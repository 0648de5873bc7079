"""Build IR graphs node by node, with types inferred from the op schemas.

Used by the frontend, by passes that create nodes and by tests that hand-build graphs.

Example::

    >>> b = GraphBuilder()
    >>> H = b.input("H", ("B", 8, 4), Rate.SLOT)
    >>> y = b.input("y", ("B", "S", 8), Rate.SYMBOL)
    >>> hty = b.add("MatMul", [y, H])            # [B, S, 4] @symbol
    >>> graph = b.build([hty])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from mimoc.compiler import ops
from mimoc.compiler.dims import Dim, Sym
from mimoc.compiler.ir import Attrs, Graph, IRError, Node, Rate, TensorType, dtype_name


def as_dim(d: Dim | str) -> Dim:
    return Sym.of(d) if isinstance(d, str) else d


class GraphBuilder:
    """Append-only node list with fresh names; ``build`` returns an immutable :class:`Graph`."""

    def __init__(self, name: str = "detector"):
        self.name = name
        self.nodes: list[Node] = []
        self.constants: dict[str, torch.Tensor] = {}
        self._types: dict[str, TensorType] = {}

    def fresh(self, prefix: str) -> str:
        prefix = prefix or "v"
        if prefix not in self._types:
            return prefix
        k = 1
        while f"{prefix}_{k}" in self._types:
            k += 1
        return f"{prefix}_{k}"

    def type_of(self, name: str) -> TensorType:
        try:
            return self._types[name]
        except KeyError:
            raise IRError(f"value %{name} is used before it is defined") from None

    def append(self, node: Node) -> str:
        if node.name in self._types:
            raise IRError(f"value %{node.name} is defined twice")
        self.nodes.append(node)
        self._types[node.name] = node.type
        return node.name

    def input(self, name: str, shape: Sequence[Dim | str], rate: Rate,
              dtype: str = "f32") -> str:
        shape = tuple(as_dim(d) for d in shape)
        return self.append(Node(name, "Input", (), Attrs(), TensorType(shape, dtype, rate)))

    def const(self, name: str, tensor: torch.Tensor, scope: str = "") -> str:
        name = self.fresh(name)
        tensor = tensor.detach()
        self.constants[name] = tensor
        t = TensorType(tuple(tensor.shape), dtype_name(tensor.dtype), Rate.CONST)
        return self.append(Node(name, "Const", (), Attrs(), t, scope))

    def fill(self, value: float, shape: Sequence[Dim | str], name: str = "fill",
             scope: str = "") -> str:
        shape = tuple(as_dim(d) for d in shape)
        attrs = Attrs({"value": float(value), "shape": shape})
        t = TensorType(shape, "f32", Rate.CONST)
        return self.append(Node(self.fresh(name), "Fill", (), attrs, t, scope))

    def add(self, op: str, inputs: Sequence[str], attrs: Mapping[str, Any] | None = None, *,
            name: str | None = None, scope: str = "") -> str:
        """Append ``op(inputs, attrs)`` (defaults filled in) and return its value name."""
        schema = ops.schema(op)
        full = schema.with_defaults(attrs or {})
        t = ops.infer_type(op, [self.type_of(i) for i in inputs], full)
        return self.append(Node(self.fresh(name or op.lower()), op, tuple(inputs), full, t, scope))

    def build(self, outputs: Sequence[str]) -> Graph:
        for o in outputs:
            self.type_of(o)
        return Graph(tuple(self.nodes), tuple(outputs), dict(self.constants), self.name)
