"""Parameters-only subgraphs: the nodes the frontend evaluates with torch at import time.

A node that depends only on parameters, buffers and constant tensors (not on ``H``/``y``,
not even on their shapes) becomes a constant, so any ATen op may appear there. The
translation state (:class:`~.state.Importer`) folds such nodes and materialises them as
IR constants when the data path reads them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import fx
from torch.export import ExportedProgram
from torch.export.graph_signature import InputKind

CONSTANT_INPUTS = (InputKind.PARAMETER, InputKind.BUFFER, InputKind.CONSTANT_TENSOR)


def placeholder_tensor(ep: ExportedProgram, spec: Any) -> torch.Tensor:
    """The tensor of a parameter, buffer or constant placeholder of ``ep``."""
    state = ep.state_dict
    return state[spec.target] if spec.target in state else ep.constants[spec.target]


def constant_nodes(ep: ExportedProgram) -> set[fx.Node]:
    """Nodes of ``ep`` that depend only on parameters, buffers and constant tensors.

    They do not depend on ``H`` or ``y`` (not even on their shapes), so the frontend
    evaluates them with torch at import time: a parameters-only subgraph may use any ATen
    op (L-WeSNet's profile ``ReLU(1 - cumsum(softplus(d)))``). Random ops are not
    constants (``nondeterministic_seeded``) and stay on the translated path.
    """
    kinds = {spec.arg.name: spec.kind for spec in ep.graph_signature.input_specs}
    constant: set[fx.Node] = set()
    for node in ep.graph.nodes:
        if node.op == "placeholder":
            if kinds.get(node.name) in CONSTANT_INPUTS:
                constant.add(node)
        elif node.op == "call_function":
            tags = getattr(node.target, "tags", ())
            if torch.Tag.nondeterministic_seeded in tags:
                continue
            if all(arg in constant for arg in node.all_input_nodes):
                constant.add(node)
    return constant
