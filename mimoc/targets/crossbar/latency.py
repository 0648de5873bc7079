"""Computation latency (critical paths of analog stage delays) and peripheral counts.

Each node of a lowered graph has a delay (device stage delays, seconds):

- ``CrossbarMVM``: ``reads x (read + inverter + TIA [+ adder])``: the array read, the
  inverter on the ``G-`` side of the pair and the TIA; with more than one row tile the
  partial sums are added by an analog summing amplifier (``accumulation="analog"``) or go
  through ADCs, a digital add and DACs (``"digital"``: ``+ adc + dac``). ``reads`` is the
  number of sequential reads per symbol (a convolution reads its array once per output
  position);
- ``Relu`` and ``Clip``: a ReLU circuit; analog ``Add``/``Sub``: an adder; ``Neg``: an
  inverter; ``ADC``/``DAC``: a conversion; gains (``Mul``/``Div`` by a constant, folded into
  the TIA) and layout ops: 0; digital ops: 0 s here (their cost is counted as FLOPs in the
  schedule's ``digital`` section; a processor model turns it into time).

A symbol's latency is the critical (longest) path through the per-symbol nodes (values of
lower rates are ready); a block's is the critical path through its own nodes. Blocks come
from the module scopes (``blocks.3.fc1`` -> ``blocks.3``); nodes without a scope join the
block of their first operand that has one (else of their first reader).

Peripherals: per tile ``cols`` TIAs and ``cols`` inverters and two physical arrays; per
matrix with several row tiles ``cols`` adders (analog accumulation) or ``row_tiles x cols``
ADCs and ``cols`` DACs (digital); one circuit per element of one symbol's value for
``Relu`` (``Clip``: two), analog ``Add``/``Sub`` (an adder; ``Sub`` also an inverter),
``Neg`` (an inverter), ``ADC`` and ``DAC`` nodes.

Example::

    >>> lat = latency(lowered, matrices, device, config)
    >>> lat["symbol_s"], [b["block"] for b in lat["blocks"]][:2]
    (3.4e-08, ['blocks.0', 'blocks.1'])
"""

from __future__ import annotations

from math import prod
from typing import Any

from mimoc.compiler.dims import evaluate_shape
from mimoc.compiler.flops import count_flops
from mimoc.compiler.ir import Graph, Node, Rate
from mimoc.hardware.devices import Device
from mimoc.targets.crossbar.arrays import Matrix, matrix_id
from mimoc.targets.crossbar.config import CrossbarConfig
from mimoc.targets.crossbar.lower import ANALOG, LAYOUT_OPS, domains_of


def _elements(node: Node, sizes: dict[str, int]) -> int:
    return int(prod(evaluate_shape(node.shape, sizes)))


def node_delay(node: Node, domain: str, matrices: dict[str, Matrix], delays: dict[str, float],
               config: CrossbarConfig) -> tuple[float, list[str]]:
    """``(seconds, stages)`` of one node (module docstring)."""
    op = node.op
    if op == "CrossbarMVM":
        m = matrices[matrix_id(node)]
        stages = ["read", "inverter", "tia"]
        if m.row_tiles > 1:
            stages += ["adder"] if config.accumulation == "analog" else ["adc", "dac"]
        return node.attrs["reads"] * sum(delays[s] for s in stages), stages
    if op in ("ADC", "DAC"):
        return delays[op.lower()], [op.lower()]
    if domain != ANALOG or op in LAYOUT_OPS or op in ("Mul", "Div"):
        return 0.0, []
    stage = {"Relu": "relu", "Clip": "relu", "Add": "adder", "Sub": "adder",
             "Neg": "inverter"}.get(op)
    return (delays[stage], [stage]) if stage else (0.0, [])


def blocks_of(graph: Graph) -> dict[str, str]:
    """Block name of every computed node (module docstring)."""
    def from_scope(scope: str) -> str | None:
        if not scope:
            return None
        parts = scope.split(".")
        if len(parts) >= 2 and parts[1].isdigit():
            return ".".join(parts[:2])
        return parts[0]

    block: dict[str, str | None] = {}
    for n in graph.nodes:
        if n.op in ("Input", "Const", "Fill"):
            continue
        block[n.name] = from_scope(n.scope) or next(
            (block[i] for i in n.inputs if block.get(i)), None)
    users = graph.users()
    for n in reversed(graph.nodes):
        if n.name in block and block[n.name] is None:
            block[n.name] = next((block[u.name] for u in users.get(n.name, [])
                                  if block.get(u.name)), None)
    return {k: v or "io" for k, v in block.items()}


def _critical(nodes: list[Node], delay: dict[str, float]) -> float:
    finish: dict[str, float] = {}
    for n in nodes:
        finish[n.name] = delay[n.name] + max((finish.get(i, 0.0) for i in n.inputs), default=0.0)
    return max(finish.values(), default=0.0)


def latency(graph: Graph, matrices: list[Matrix], device: Device,
            config: CrossbarConfig) -> dict[str, Any]:
    """Per-node delays, per-block and per-symbol critical paths, slot-rate analog time."""
    delays = device.stage_delays()
    by_id = {m.id: m for m in matrices}
    domains = domains_of(graph)
    computed = [n for n in graph.nodes if n.op not in ("Input", "Const", "Fill")]
    delay: dict[str, float] = {}
    path: list[dict[str, Any]] = []
    for n in computed:
        seconds, stages = node_delay(n, domains[n.name], by_id, delays, config)
        delay[n.name] = seconds
        if seconds > 0:
            entry = {"node": n.name, "op": n.op, "rate": str(n.rate), "stages": stages,
                     "delay_s": seconds}
            if n.op == "CrossbarMVM":
                entry.update(matrix=matrix_id(n), reads=n.attrs["reads"])
            path.append(entry)
    symbol_nodes = [n for n in computed if n.rate == Rate.SYMBOL]
    slot_nodes = [n for n in computed if n.rate == Rate.SLOT]
    block = blocks_of(graph)
    names: list[str] = []
    for n in symbol_nodes:
        if block[n.name] not in names:
            names.append(block[n.name])
    blocks = []
    for name in names:
        members = [n for n in symbol_nodes if block[n.name] == name]
        blocks.append({"block": name, "nodes": len(members),
                       "mvms": sum(1 for n in members if n.op == "CrossbarMVM"),
                       "latency_s": _critical(members, delay)})
    return {"stage_delays_s": delays, "symbol_s": _critical(symbol_nodes, delay),
            "slot_compute_s": _critical(slot_nodes, delay),
            "sum_of_blocks_s": sum(b["latency_s"] for b in blocks), "blocks": blocks,
            "nodes": path}


def peripherals(graph: Graph, matrices: list[Matrix], config: CrossbarConfig) -> dict[str, int]:
    sizes = {"B": 1, "S": 1, **dict(graph.dim_sizes)}
    domains = domains_of(graph)
    count = dict.fromkeys(("arrays", "tiles", "cells", "tias", "inverters", "adders",
                           "relu_circuits", "adcs", "dacs"), 0)
    for m in matrices:
        for t in m.tiles:
            r, c = t.shape
            count["tiles"] += 1
            count["arrays"] += 2
            count["cells"] += 2 * r * c
            count["tias"] += c
            count["inverters"] += c
        if m.row_tiles > 1:
            if config.accumulation == "analog":
                count["adders"] += m.cols
            else:
                count["adcs"] += m.row_tiles * m.cols
                count["dacs"] += m.cols
    for n in graph.nodes:
        if n.op in ("Input", "Const", "Fill"):
            continue
        e = _elements(n, sizes)
        if n.op == "ADC":
            count["adcs"] += e
        elif n.op == "DAC":
            count["dacs"] += e
        elif domains[n.name] == ANALOG:
            if n.op == "Relu":
                count["relu_circuits"] += e
            elif n.op == "Clip":
                count["relu_circuits"] += 2 * e
            elif n.op in ("Add", "Sub"):
                count["adders"] += e
                count["inverters"] += e if n.op == "Sub" else 0
            elif n.op == "Neg":
                count["inverters"] += e
    return count


def digital_work(graph: Graph) -> dict[str, Any]:
    """Ops left digital, with their FLOPs (2 x MACs) and elements, per symbol / per slot."""
    sizes = {"B": 1, "S": 1, **dict(graph.dim_sizes)}
    flops = count_flops(graph)
    domains = domains_of(graph)
    ops_list = []
    for n in graph.nodes:
        if (n.op in ("Input", "Const", "Fill", "ADC", "DAC") or n.op in LAYOUT_OPS
                or n.rate == Rate.CONST or domains[n.name] == ANALOG):
            continue
        ops_list.append({"node": n.name, "op": n.op, "rate": str(n.rate), "scope": n.scope,
                         "flops": int(flops.by_node.get(n.name, 0)),
                         "elements": _elements(n, sizes)})
    per_symbol = [o for o in ops_list if o["rate"] == "symbol"]
    per_slot = [o for o in ops_list if o["rate"] == "slot"]
    return {"ops": ops_list,
            "flops_per_symbol": sum(o["flops"] for o in per_symbol),
            "flops_slot_rate": sum(o["flops"] for o in per_slot),
            "elementwise_per_symbol": sum(o["elements"] for o in per_symbol if not o["flops"]),
            "elementwise_slot_rate": sum(o["elements"] for o in per_slot if not o["flops"]),
            "definition": "FLOPs = 2 x multiply-accumulates of the digital matrix ops; "
                          "elementwise = elements of the digital elementwise ops"}


def analog_macs(graph: Graph, matrices: list[Matrix]) -> dict[str, int]:
    by_id = {m.id: m for m in matrices}
    out = {"per_symbol": 0, "slot_rate": 0}
    for n in graph.nodes:
        if n.op == "CrossbarMVM":
            m = by_id[matrix_id(n)]
            key = "per_symbol" if n.rate == Rate.SYMBOL else "slot_rate"
            out[key] += n.attrs["reads"] * m.rows * m.cols
    return out
