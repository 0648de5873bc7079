"""The translation state handlers work on: IR values of the exported nodes, dims, folded
constants, and emitting IR nodes.

A handler is ``handler(imp, node) -> IR value`` (:data:`Handler`) for one ATen op family;
it reads its operands with :meth:`Importer.value` (folded parameters-only nodes are
materialised as IR constants on first read) and appends nodes with :meth:`Importer.emit`.
The importer (:mod:`.importer`) gives the state its handler table; this module knows no
particular handler except :func:`passthrough`, whose chains it follows to name copies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx
from torch.export import ExportedProgram

from mimoc.compiler import dims as D
from mimoc.compiler.builder import GraphBuilder
from mimoc.compiler.dims import Dim, Sym
from mimoc.compiler.frontend.diagnostics import (
    UnsupportedOpError,
    module_scope,
    op_name,
    source_location,
    unsupported,
)
from mimoc.compiler.ir import IRError
from mimoc.errors import UsageError


@dataclass
class Importer:
    """Translation state of one exported program (see the module docstring)."""

    ep: ExportedProgram
    builder: GraphBuilder
    symbols: dict[Any, str]  # sympy symbol -> dim name
    env: dict[fx.Node, Any]
    handlers: Mapping[Any, Handler]  # ATen op -> handler (materialize translates constructors)
    # values of the nodes that depend only on parameters, buffers and constants
    folded: dict[fx.Node, Any] = field(default_factory=dict)

    # -- values
    def value(self, arg: Any, node: fx.Node) -> str:
        """IR value of a tensor argument; Python numbers become scalar constants."""
        if isinstance(arg, fx.Node):
            if arg not in self.env and arg in self.folded:
                self.env[arg] = self.materialize(arg)
            v = self.env[arg]
            if not isinstance(v, str):
                raise UnsupportedOpError(
                    f"{op_name(node.target)} at {source_location(node)}: a tensor operand is "
                    "a shape value; compute with tensors only")
            return v
        if isinstance(arg, bool | int | float):
            return self.scalar(float(arg), node)
        raise UnsupportedOpError(f"{op_name(node.target)} at {source_location(node)}: "
                                 f"unsupported operand {arg!r}")

    def scalar(self, value: float, node: fx.Node) -> str:
        return self.builder.const(f"{node.name}_c", torch.tensor(value, dtype=torch.float32),
                                  module_scope(node))

    def dim(self, value: Any) -> Dim:
        """A Python int or SymInt (from the node's recorded value) as an IR dim."""
        if isinstance(value, fx.Node):
            value = value.meta.get("val")
        if isinstance(value, int):
            return value
        if isinstance(value, torch.SymInt):
            return self.sym_expr(value.node.expr)
        raise IRError(f"not a dimension: {value!r}")

    def sym_expr(self, expr: Any) -> Dim:
        import sympy

        if expr.is_Integer:
            return int(expr)
        if expr.is_Symbol:
            if expr not in self.symbols:
                self.symbols[expr] = f"D{len(self.symbols)}"
            return Sym.of(self.symbols[expr])
        if expr.is_Mul:
            out: Dim = 1
            for factor in expr.args:
                out = D.mul(out, self.sym_expr(factor))
            return out
        if isinstance(expr, sympy.Pow) and expr.exp.is_Integer and int(expr.exp) > 0:
            base = self.sym_expr(expr.base)
            out = 1
            for _ in range(int(expr.exp)):
                out = D.mul(out, base)
            return out
        raise UnsupportedOpError(f"symbolic shape {expr} is not a product of dims "
                                 "(concatenating along B or S is not supported)")

    def shape(self, node: fx.Node) -> tuple[Dim, ...]:
        val = node.meta.get("val")
        return tuple(self.dim(d) for d in val.shape)

    # -- constant subgraphs
    def fold(self, node: fx.Node) -> None:
        """Evaluate a parameters-only node with torch (any ATen op is fine here)."""
        args, kwargs = fx.node.map_arg((node.args, node.kwargs), lambda n: self.folded[n])
        try:
            with torch.no_grad():
                self.folded[node] = node.target(*args, **kwargs)
        except Exception as e:  # torch raises many types; say which node and where
            raise unsupported(node, f"evaluating this parameters-only operation at "
                                    f"import time failed: {e}") from e

    def materialize(self, node: fx.Node) -> str | None:
        """The IR value of a folded node a data-path node reads.

        Copies and aliases name the tensor they copy (``blocks.0.t``, not ``clone_3``);
        constructors with a handler (``zeros(4, 4)``) keep their IR form (``Fill``), which
        the passes propagate; anything else becomes a ``Const`` named after the node.
        """
        source = node
        while (source.op == "call_function" and self.handlers.get(source.target) is passthrough
               and isinstance(source.args[0], fx.Node)):
            source = source.args[0]
        if source is not node:
            return self.value(source, node)
        has_operands = bool(node.all_input_nodes)
        if not has_operands and node.target in self.handlers:
            return self.handlers[node.target](self, node)
        tensor = self.folded[node]
        if not isinstance(tensor, torch.Tensor):
            raise unsupported(node, "a data-path operation reads a non-tensor value "
                                    "computed from the parameters")
        if not tensor.is_floating_point():
            raise unsupported(node, f"a data-path operation reads a {tensor.dtype} "
                                    "tensor computed from the parameters; use float "
                                    "tensors")
        scope = module_scope(node)
        return const(self, f"{scope}.{node.name}" if scope else node.name, tensor,
                     scope=scope)

    # -- nodes
    def emit(self, op: str, inputs: Sequence[str], attrs: Mapping[str, Any] | None,
             node: fx.Node, suffix: str = "") -> str:
        return self.builder.add(op, list(inputs), attrs, name=node.name + suffix,
                                scope=module_scope(node))

    def arg(self, node: fx.Node, index: int, name: str, default: Any = None) -> Any:
        if index < len(node.args):
            return node.args[index]
        return node.kwargs.get(name, default)


Handler = Callable[[Importer, fx.Node], Any]


def passthrough(imp: Importer, node: fx.Node) -> str:
    """Copies and aliases (``clone``, ``detach``, ...): the operand's IR value."""
    return imp.value(node.args[0], node)


def const(imp: Importer, target: str, tensor: torch.Tensor, scope: str = "") -> str | None:
    """A weight as an IR ``Const`` (fp64 kept, other floats as fp32); ``None`` for integer
    tensors, which inference ops never read."""
    if not tensor.is_floating_point():
        return None  # e.g. BatchNorm's num_batches_tracked: never read by inference ops
    if not torch.isfinite(tensor).all():
        raise UsageError(f"weight {target} contains NaN or Inf; the model cannot be compiled")
    return imp.builder.const(target, tensor.to(torch.float32) if tensor.dtype != torch.float64
                             else tensor, scope)
