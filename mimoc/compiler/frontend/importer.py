"""The importer: an exported program -> a verified IR graph, node by node.

Placeholders become graph inputs (``H``, ``y``) or weight constants; parameters-only
nodes are folded (:mod:`.folding`); every other node goes to its handler in
:data:`~.handlers.HANDLERS`, and the shape of what it produced is checked against the
shape torch recorded. An ATen op without a handler raises :class:`UnsupportedOpError`
naming the op, the user's source line, the module it came from and the supported set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import fx
from torch.export import ExportedProgram
from torch.export.graph_signature import InputKind

from mimoc.compiler import dims as D
from mimoc.compiler.builder import GraphBuilder
from mimoc.compiler.dims import Sym
from mimoc.compiler.frontend.diagnostics import (
    FrontendError,
    op_name,
    source_location,
    unsupported,
)
from mimoc.compiler.frontend.folding import CONSTANT_INPUTS, constant_nodes, placeholder_tensor
from mimoc.compiler.frontend.handlers import HANDLERS, supported_ops
from mimoc.compiler.frontend.interface import DEFAULT_DIMS, INPUT_RATES, OUTPUT_NAMES, DimSpec
from mimoc.compiler.frontend.state import Importer, const
from mimoc.compiler.ir import Graph, IRError, Rate, dtype_name
from mimoc.compiler.verify import verify


def _name_symbols(ep: ExportedProgram, user: list[fx.Node], input_names: Sequence[str],
                  dims: DimSpec) -> dict[Any, str]:
    symbols: dict[Any, str] = {}
    for node, name in zip(user, input_names, strict=True):
        shape = node.meta["val"].shape
        for axis, spec in dims.get(name, {}).items():
            dim_name, mult = (spec, 1) if isinstance(spec, str) else spec
            d = shape[axis]
            if not isinstance(d, torch.SymInt):
                continue
            free = list(d.node.expr.free_symbols)
            if len(free) == 1:
                symbols.setdefault(free[0], dim_name)
    return symbols


def import_program(ep: ExportedProgram, *, input_names: Sequence[str] = ("H", "y"),
                   dims: DimSpec = DEFAULT_DIMS, rates: Mapping[str, Rate] | None = None,
                   output_names: Sequence[str] = OUTPUT_NAMES, name: str = "detector",
                   ) -> Graph:
    """Translate an exported program; raise :class:`UnsupportedOpError` on unknown ops."""
    rates = {**INPUT_RATES, **(rates or {})}
    foldable = constant_nodes(ep)
    if any(n.op == "call_function" and n.target not in HANDLERS and n not in foldable
           for n in ep.graph.nodes):
        # in-place, composite or higher-order ops: lower to the functional inference opset
        # (this costs about as much as the export, so only when the graph needs it)
        ep = ep.run_decompositions({})
        foldable = constant_nodes(ep)
    kinds = {spec.arg.name: spec for spec in ep.graph_signature.input_specs}
    placeholders = [n for n in ep.graph.nodes if n.op == "placeholder"]
    user = [n for n in placeholders if kinds[n.name].kind == InputKind.USER_INPUT]
    if len(user) != len(input_names):
        raise FrontendError(f"the model takes {len(user)} tensor inputs; expected "
                            f"{len(input_names)} ({', '.join(input_names)})")
    imp = Importer(ep, GraphBuilder(name), _name_symbols(ep, user, input_names, dims), {},
                   HANDLERS)
    for node in placeholders:
        spec = kinds[node.name]
        if spec.kind == InputKind.USER_INPUT:
            in_name = input_names[user.index(node)]
            val = node.meta["val"]
            imp.env[node] = imp.builder.input(in_name, imp.shape(node),
                                              rates.get(in_name, Rate.SYMBOL),
                                              dtype_name(val.dtype))
        elif spec.kind in CONSTANT_INPUTS:
            tensor = placeholder_tensor(ep, spec)
            imp.folded[node] = tensor
            imp.env[node] = const(imp, spec.target, tensor)
        else:
            raise FrontendError(f"unsupported input kind {spec.kind.name} ({node.name})")
    outputs: list[str] = []
    for node in ep.graph.nodes:
        if node in foldable and node.op == "call_function":
            imp.fold(node)  # parameters-only: a constant, materialised when the data path reads it
            continue
        if node.op == "call_function":
            handler = HANDLERS.get(node.target)
            if handler is None:
                raise unsupported(node, "not supported by mimoc; supported ATen ops: "
                                  + ", ".join(supported_ops()))
            result = handler(imp, node)
            imp.env[node] = result
            _check_shape(imp, node, result)
        elif node.op == "output":
            for arg in node.args[0]:
                outputs.append(imp.value(arg, node))
        elif node.op != "placeholder":
            raise FrontendError(f"unexpected node {node.op} {node.target} in the exported graph")
    graph = imp.builder.build(outputs).pruned()
    hints = {}
    for node in user:  # example sizes of the extra dims
        for d, size in zip(imp.shape(node), node.meta["val"].shape, strict=True):
            if isinstance(d, Sym) and len(d.names) == 1 and d.names[0] not in ("B", "S"):
                hints[d.names[0]] = int(size.node.hint) // d.coeff
    graph = graph.replace(dim_sizes=hints)
    graph = graph.with_output_names(output_names)
    return verify(graph, after="frontend")


def _check_shape(imp: Importer, node: fx.Node, result: Any) -> None:
    if not isinstance(result, str):
        return
    val = node.meta.get("val")
    if not isinstance(val, torch.Tensor):
        return
    got = imp.builder.type_of(result).shape
    want = imp.shape(node)
    if got != want:
        raise IRError(f"frontend mis-translated {op_name(node.target)} at "
                      f"{source_location(node)}: IR shape {D.fmt_shape(got)}, torch shape "
                      f"{D.fmt_shape(want)}")
