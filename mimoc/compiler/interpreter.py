"""Reference interpreter: executes an IR graph with torch, op by op, from the schemas.

Symbolic dims (``B``, ``S``, ...) are bound from the input tensors' shapes. ``dtype``
(default ``torch.float32``) is the precision every float value is computed in: pass
``torch.float64`` to check a pass or a frontend mapping without fp32 rounding noise.

Example::

    >>> x_hat, = run(graph, {"H": H, "y": y})
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from mimoc.compiler import ops
from mimoc.compiler.dims import Sym
from mimoc.compiler.ir import Graph, IRError
from mimoc.errors import UsageError


def bind_sizes(graph: Graph, inputs: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """Sizes of the symbolic dims, read from the input tensors; mismatches are UsageErrors."""
    sizes: dict[str, int] = {}
    for node in graph.inputs:
        if node.name not in inputs:
            raise UsageError(f"missing input {node.name!r} for graph {graph.name!r}")
        actual = tuple(inputs[node.name].shape)
        if len(actual) != len(node.shape):
            raise UsageError(f"input {node.name!r} has rank {len(actual)}, "
                             f"expected {len(node.shape)} ({list(node.shape)})")
        for want, got in zip(node.shape, actual, strict=True):
            if isinstance(want, int):
                if want != got:
                    raise UsageError(f"input {node.name!r} has shape {list(actual)}, "
                                     f"expected [{', '.join(map(str, node.shape))}]")
            elif len(want.names) == 1:
                name = want.names[0]
                if got % want.coeff:
                    raise UsageError(f"input {node.name!r}: size {got} is not a multiple of "
                                     f"{want.coeff} ({want})")
                value = got // want.coeff
                if sizes.setdefault(name, value) != value:
                    raise UsageError(f"inputs disagree on dimension {name}: "
                                     f"{sizes[name]} vs {value}")
    for node in graph.inputs:  # composite dims checked once every symbol is bound
        for want, got in zip(node.shape, inputs[node.name].shape, strict=True):
            if isinstance(want, Sym) and want.evaluate(sizes) != got:
                raise UsageError(f"input {node.name!r}: dimension {want} should be "
                                 f"{want.evaluate(sizes)}, got {got}")
    return sizes


def run_all(graph: Graph, inputs: Mapping[str, torch.Tensor], *,
            dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Every value of the graph by name (for debugging and per-value comparisons)."""
    sizes = bind_sizes(graph, inputs)
    values: dict[str, torch.Tensor] = {}

    def cast(t: torch.Tensor) -> torch.Tensor:
        return t.to(dtype) if t.is_floating_point() else t

    for node in graph.nodes:
        if node.op == "Input":
            value = cast(inputs[node.name])
        elif node.op == "Const":
            value = cast(graph.constants[node.name])
        else:
            args = [values[i] for i in node.inputs]
            try:
                value = ops.schema(node.op).execute(args, node.attrs, sizes)
            except RuntimeError as e:
                raise IRError(f"executing %{node.name} = {node.op} ({node.scope}): {e}") from e
            value = cast(value)
        values[node.name] = value
    return values


def run(graph: Graph, inputs: Mapping[str, torch.Tensor], *,
        dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
    """The graph's outputs, in order."""
    values = run_all(graph, inputs, dtype=dtype)
    return tuple(values[o] for o in graph.outputs)
