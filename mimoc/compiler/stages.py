"""Cut a graph into its slot stage and its symbol stage (after split-channel).

- slot graph: inputs the slot-rate inputs (``H``), outputs the **slot state**: every
  slot-rate value a symbol-rate node reads (``H^T H``, ``H`` itself when ``y @ H`` needs
  it) and any slot-rate graph output;
- symbol graph: inputs the symbol-rate inputs (``y``) and the slot state (as slot-rate
  inputs with the same names), outputs the graph's outputs.

Const-rate computations (weights, ``Fill``) are copied into each stage that reads them.
Running the slot graph once per channel and the symbol graph per symbol gives the same
outputs as the whole graph (:func:`run_stages`).

Example::

    >>> stages = split_stages(split_channel.run(graph))
    >>> stages.state
    ('H', 'H_gram')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from mimoc.compiler.dims import symbols
from mimoc.compiler.interpreter import run_all
from mimoc.compiler.ir import Attrs, Graph, Node, Rate
from mimoc.compiler.verify import verify


@dataclass(frozen=True)
class Stages:
    slot: Graph
    symbol: Graph
    state: tuple[str, ...]


def slot_stage(graph: Graph) -> set[str]:
    """Names of the values the slot stage computes.

    A value belongs to the slot stage when it is const or slot rate, its operands are in the
    slot stage, and its shape uses only dims the slot inputs bind (``B``, not ``S``): a
    channel matrix broadcast over the symbols (``Expand`` to ``[B, S, ...]``) is layout work
    the symbol stage does, so the slot state stays independent of the slot length.
    """
    slot_dims: set[str] = set()
    for n in graph.inputs:
        if n.rate == Rate.SLOT:
            slot_dims |= symbols(n.shape)
    early: set[str] = set()
    for n in graph.nodes:
        if n.rate == Rate.SYMBOL:
            continue
        if n.op == "Input" or (symbols(n.shape) <= slot_dims
                               and all(i in early for i in n.inputs)):
            early.add(n.name)
    return early


def _ancestors(graph: Graph, wanted: set[str], within: set[str]) -> list[Node]:
    need = set(wanted)
    for node in reversed(graph.nodes):
        if node.name in need and node.name in within:
            need.update(node.inputs)
    return [n for n in graph.nodes if n.name in need and n.name in within]


def split_stages(graph: Graph) -> Stages:
    early = slot_stage(graph)
    late = [n for n in graph.nodes if n.name not in early]
    state: list[str] = []
    const_reads: set[str] = set()
    reads = [i for n in late for i in n.inputs] + list(graph.outputs)
    for i in reads:
        if i in early:
            if graph.node(i).rate == Rate.SLOT:
                if i not in state:
                    state.append(i)
            else:
                const_reads.add(i)

    slot_nodes = [n for n in _ancestors(graph, set(state), early) if n.op != "Input"]
    slot_inputs = [n for n in graph.inputs if n.rate == Rate.SLOT]
    slot = Graph(tuple(slot_inputs + slot_nodes), tuple(state),
                 {n.name: graph.constants[n.name] for n in slot_nodes if n.op == "Const"},
                 f"{graph.name}.slot", graph.dim_sizes)

    consts = _ancestors(graph, const_reads, {n for n in early if graph.node(n).rate == Rate.CONST})
    state_inputs = [Node(s, "Input", (), Attrs(), graph.node(s).type, graph.node(s).scope)
                    for s in state]
    symbol_inputs = [n for n in late if n.op == "Input"]
    body = [n for n in late if n.op != "Input"]
    symbol = Graph(tuple(symbol_inputs + state_inputs + consts + body), graph.outputs,
                   {n.name: graph.constants[n.name] for n in consts + body if n.op == "Const"},
                   f"{graph.name}.symbol", graph.dim_sizes)
    if state:
        verify(slot, after="split-stages (slot graph)")
    verify(symbol, after="split-stages (symbol graph)")
    return Stages(slot, symbol, tuple(state))


def run_stages(stages: Stages, inputs: Mapping[str, torch.Tensor], *,
               dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
    """Slot stage on the slot inputs, then the symbol stage on ``y`` and the slot state."""
    slot_inputs = {n.name: inputs[n.name] for n in stages.slot.inputs}
    state = run_all(stages.slot, slot_inputs, dtype=dtype) if stages.state else {}
    feed = {n.name: inputs[n.name] for n in stages.symbol.inputs if n.rate == Rate.SYMBOL}
    feed.update({s: state[s] for s in stages.state})
    values = run_all(stages.symbol, feed, dtype=dtype)
    return tuple(values[o] for o in stages.symbol.outputs)
