"""crossbar-lower: the IR after canonicalize + split-channel -> an analog/digital program.

Three steps, each a small function of the graph:

1. :func:`undo_gram` (rules): a crossbar has no use for ``H^T H`` at slot rate; ``H`` and
   ``H^T`` are programmed into arrays and ``H^T H x`` is two cascaded analog MVMs::

       MatMul(x, Gram(A))        -> MatMul(MatMul(x, Transpose(A)), A)
       MatMul(x, Mul(Gram(A), c)) -> Mul(MatMul(MatMul(x, Transpose(A)), A), c)
       MatMul(Gram(A), X)        -> MatMul(Transpose(A), MatMul(A, X))     (column form)

2. :func:`to_crossbar_mvms`: every product of a per-symbol (or per-slot) vector with a
   const weight or a slot-rate matrix becomes a ``CrossbarMVM`` (:mod:`.xops`):
   ``MatMul(x@symbol, M@slot|const)`` (``M`` on a *channel* array when slot rate, a
   *static* array when const), ``MatMul(M, X@symbol)`` through transposes, ``Linear`` and
   ``Conv2d`` (groups 1; im2col: one array read per output position). Products of two
   per-symbol values (RE-MIMO's attention scores) or two slot values (``inv(H^T H) H^T``)
   stay digital.

3. :func:`insert_conversions`: domain analysis (values are ``analog``, ``digital`` or
   ``const``) and explicit ``ADC``/``DAC`` nodes where a value crosses. Analog: array
   outputs, ``Relu``, ``Clip``, ``Neg``, ``Add``/``Sub`` (adders), ``Mul``/``Div`` by a
   constant (a gain, folded into the TIA), layout ops. Digital: everything else (``Tanh``,
   ``Softmax``, ``LayerNorm``, ``Inverse``, ``Pinv``, products of two values...). Graph
   inputs (``H``, ``y``) are digital; outputs leave through an ADC. A slot-rate analog
   value read per symbol is converted (ADC) once per slot and driven again (DAC).

Example::

    >>> lowered = lower.run(split_channel.run(canonicalize.run(graph)))
    >>> [n.op for n in lowered.nodes if n.op == "CrossbarMVM"][:1]
    ['CrossbarMVM']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mimoc.compiler import ops
from mimoc.compiler.dims import Sym
from mimoc.compiler.ir import Attrs, Graph, Node, Rate
from mimoc.compiler.passes import cse
from mimoc.compiler.passes.base import FunctionPass
from mimoc.compiler.passes.split_channel import infer_rates
from mimoc.compiler.rewrite import Rewriter, rebuild, rewrite, rule
from mimoc.compiler.verify import verify
from mimoc.targets.crossbar import xops  # noqa: F401  (registers CrossbarMVM, ADC, DAC)

NAME = "crossbar-lower"
ANALOG = "analog"
DIGITAL = "digital"
CONST = "const"

LAYOUT_OPS = frozenset({"Concat", "Reshape", "Transpose", "Slice", "Select", "Unsqueeze",
                        "Squeeze", "Expand", "Tile"})
ANALOG_UNARY = frozenset({"Relu", "Clip", "Neg"})
ANALOG_SUMS = frozenset({"Add", "Sub"})
ANALOG_GAINS = frozenset({"Mul", "Div"})


# ---------------------------------------------------------------- 1. undo the Gram rewrite

def _swap(rank: int) -> tuple[int, ...]:
    return tuple(range(rank - 2)) + (rank - 1, rank - 2)


def _gram_operand(name: str, rw: Rewriter) -> tuple[str, str | None] | None:
    """``(A, c)`` when ``name`` is ``Gram(A)`` (c None) or ``Mul(Gram(A), c)`` (c scalar)."""
    node = rw.producer(name)
    if node.op == "Gram":
        return node.inputs[0], None
    if node.op == "Mul":
        for g, c in (node.inputs, node.inputs[::-1]):
            inner = rw.producer(g)
            if inner.op == "Gram" and rw.const(c) is not None and rw.const(c).numel() == 1:
                return inner.inputs[0], c
    return None


def _transpose(rw: Rewriter, a: str, like: Node) -> str:
    """``Transpose(a)`` of the last two dims; of a graph input it is named ``<a>_T``
    (``H_T``: the array that holds ``H^T`` reads better in the schedule)."""
    attrs = {"perm": _swap(rw.type(a).rank)}
    if rw.producer(a).op != "Input":
        return rw.make("Transpose", [a], attrs, like=like, suffix="_t")
    full = ops.schema("Transpose").with_defaults(attrs)
    t = ops.infer_type("Transpose", [rw.type(a)], full)
    return rw.emit(Node(rw.fresh(f"{a}_T"), "Transpose", (a,), full, t, ""))


@rule("ungram-row", {"MatMul"}, "MatMul(x, c*Gram(A)) -> c*MatMul(MatMul(x, A^T), A)")
def ungram_row(node, rw):
    x, g = node.inputs
    found = _gram_operand(g, rw)
    if found is None or rw.type(x).rate <= rw.type(g).rate:
        return None
    a, c = found
    hx = rw.make("MatMul", [x, _transpose(rw, a, node)], like=node, suffix="_fwd")
    out = rw.make("MatMul", [hx, a], like=node, suffix="_back")
    return out if c is None else rw.make("Mul", [out, c], like=node, suffix="_scaled")


@rule("ungram-col", {"MatMul"}, "MatMul(c*Gram(A), X) -> c*MatMul(A^T, MatMul(A, X))")
def ungram_col(node, rw):
    g, x = node.inputs
    found = _gram_operand(g, rw)
    if found is None or rw.type(x).rate <= rw.type(g).rate:
        return None
    a, c = found
    ax = rw.make("MatMul", [a, x], like=node, suffix="_fwd")
    out = rw.make("MatMul", [_transpose(rw, a, node), ax], like=node, suffix="_back")
    return out if c is None else rw.make("Mul", [out, c], like=node, suffix="_scaled")


def undo_gram(graph: Graph) -> Graph:
    """The rules, then CSE (every block's ``Transpose(H)`` is one channel array)."""
    return cse.run(rewrite(infer_rates(graph), [ungram_row, ungram_col]))


# ---------------------------------------------------------------- 2. MVMs onto arrays

def sequential_reads(shape: Sequence[Any], sizes: Mapping[str, int]) -> int:
    """Array reads one symbol needs for a vector stack ``[..., in]``: the product of the
    leading dims that are not the batch ``B`` / slot ``S`` dims (RE-MIMO's users ``U``)."""
    reads = 1
    for d in shape[:-1]:
        if isinstance(d, int):
            reads *= d
        else:
            for name in d.names:
                if name not in ("B", "S"):
                    reads *= int(sizes.get(name, 1))
            reads *= d.coeff
    return reads


def _key(node: Node) -> str:
    """Array-set name of a weighted layer: the weight, or weight+bias when it has a bias
    (one weight with two different biases holds two array sets)."""
    return node.inputs[1] if len(node.inputs) < 3 else f"{node.inputs[1]}+{node.inputs[2]}"


def array_matrix(shape: Sequence[Any], rate: Rate) -> bool:
    """Whether a ``MatMul`` operand of this shape and rate can sit on arrays: static
    ``[in, out]``; a weight has no symbolic dim at all, a channel matrix only the batch
    ``B`` in front (one matrix per channel realisation: ``[B, in, out]``, ``[B, 1, in, out]``)."""
    if len(shape) < 2 or not all(isinstance(d, int) for d in shape[-2:]):
        return False
    lead = shape[:-2]
    if rate == Rate.CONST:
        return all(isinstance(d, int) for d in lead)
    if rate != Rate.SLOT or not lead:
        return False
    first, rest = lead[0], lead[1:]
    return (not isinstance(first, int) and first.names == ("B",) and first.coeff == 1
            and all(d == 1 for d in rest))


def to_crossbar_mvms(graph: Graph) -> Graph:
    sizes = dict(graph.dim_sizes)

    def replace(node: Node, rw: Rewriter) -> str | None:
        if node.op == "MatMul":
            a, b = node.inputs
            ra, rb = rw.type(a).rate, rw.type(b).rate
            if not array_matrix(rw.type(b).shape, rb):
                rb = Rate.SYMBOL  # b cannot be an array: only the column form may apply
            if not array_matrix(rw.type(a).shape, ra):
                ra = Rate.SYMBOL
            if ra == Rate.SYMBOL and rb < Rate.SYMBOL or ra == Rate.SLOT and rb == Rate.CONST:
                reads = sequential_reads(rw.type(a).shape, sizes)
                return rw.make("CrossbarMVM", [a, b], {"form": "matmul", "matrix": b,
                                                       "reads": reads}, like=node, suffix="_xb")
            if rb == Rate.SYMBOL and ra < Rate.SYMBOL or rb == Rate.SLOT and ra == Rate.CONST:
                # M @ X = (X^T M^T)^T: the columns of X are the vectors
                xt = _transpose(rw, b, node)
                mt = _transpose(rw, a, node)
                reads = sequential_reads(rw.type(xt).shape, sizes)
                mvm = rw.make("CrossbarMVM", [xt, mt], {"form": "matmul", "matrix": mt,
                                                         "reads": reads}, like=node, suffix="_xb")
                return _transpose(rw, mvm, node)
            return None
        if node.op == "Linear" and rw.type(node.inputs[0]).rate > Rate.CONST:
            reads = sequential_reads(rw.type(node.inputs[0]).shape, sizes)
            return rw.make("CrossbarMVM", list(node.inputs),
                           {"form": "linear", "matrix": _key(node), "reads": reads},
                           like=node, suffix="_xb")
        if (node.op == "Conv2d" and node.attrs["groups"] == 1
                and rw.type(node.inputs[0]).rate > Rate.CONST):
            t = ops.infer_type("Conv2d", [rw.type(i) for i in node.inputs], node.attrs)
            reads = int(t.shape[2]) * int(t.shape[3])
            attrs = {k: node.attrs[k] for k in ("stride", "padding", "dilation")}
            return rw.make("CrossbarMVM", list(node.inputs),
                           {"form": "conv2d", "matrix": _key(node), "reads": reads, **attrs},
                           like=node, suffix="_xb")
        return None

    return rebuild(graph, replace)


# ---------------------------------------------------------------- 3. ADC / DAC

def _is_const(graph_nodes: Mapping[str, Node], name: str) -> bool:
    return graph_nodes[name].rate == Rate.CONST


def analog_op(node: Node, domains: Mapping[str, str]) -> bool:
    """Whether ``node`` runs in the analog domain, given its operands' domains."""
    doms = [domains[i] for i in node.inputs]
    if node.op == "CrossbarMVM":
        return True
    if ANALOG not in doms:
        return False
    if node.op in ANALOG_UNARY or node.op in ANALOG_SUMS or node.op in LAYOUT_OPS:
        return True
    if node.op in ANALOG_GAINS:
        a, b = doms
        return (a == ANALOG and b == CONST) or (node.op == "Mul" and a == CONST and b == ANALOG)
    return False


def domains_of(graph: Graph) -> dict[str, str]:
    """Domain of every value of a lowered graph (after :func:`insert_conversions`)."""
    out: dict[str, str] = {}
    for node in graph.nodes:
        if node.op == "Input":
            out[node.name] = DIGITAL
        elif node.rate == Rate.CONST:
            out[node.name] = CONST
        elif node.op == "ADC":
            out[node.name] = DIGITAL
        elif node.op == "DAC":
            out[node.name] = ANALOG
        else:
            out[node.name] = ANALOG if analog_op(node, out) else DIGITAL
    return out


def insert_conversions(graph: Graph) -> Graph:
    nodes: list[Node] = []
    domains: dict[str, str] = {}
    by_name = {n.name: n for n in graph.nodes}
    taken = set(by_name)
    converted: dict[tuple[str, str], str] = {}
    types = {n.name: n.type for n in graph.nodes}
    rename: dict[str, str] = {}

    def fresh(prefix: str) -> str:
        name, k = prefix, 1
        while name in taken:
            name, k = f"{prefix}_{k}", k + 1
        taken.add(name)
        return name

    def convert(name: str, op: str, scope: str) -> str:
        key = (name, op)
        if key not in converted:
            t = ops.infer_type(op, [types[name]], ops.schema(op).with_defaults({}))
            new = fresh(f"{name}_{op.lower()}")
            node = Node(new, op, (name,), ops.schema(op).with_defaults({}), t, scope)
            nodes.append(node)
            types[new] = t
            domains[new] = DIGITAL if op == "ADC" else ANALOG
            converted[key] = new
        return converted[key]

    def as_analog(name: str, reader: Node) -> str:
        dom = domains[name]
        if dom == DIGITAL:
            return convert(name, "DAC", reader.scope)
        if dom == ANALOG and types[name].rate == Rate.SLOT and reader.rate == Rate.SYMBOL:
            return convert(convert(name, "ADC", reader.scope), "DAC", reader.scope)
        return name

    for node in graph.nodes:
        node = node.replace(inputs=[rename.get(i, i) for i in node.inputs])
        if node.op == "Input":
            domains[node.name] = DIGITAL
        elif node.rate == Rate.CONST:
            domains[node.name] = CONST
        elif analog_op(node, domains):
            if node.op == "CrossbarMVM":
                inputs = [as_analog(node.inputs[0], node), *node.inputs[1:]]
            else:
                inputs = [i if domains[i] == CONST else as_analog(i, node) for i in node.inputs]
            node = node.replace(inputs=inputs)
            domains[node.name] = ANALOG
        else:
            inputs = [convert(i, "ADC", node.scope) if domains[i] == ANALOG else i
                      for i in node.inputs]
            node = node.replace(inputs=inputs)
            domains[node.name] = DIGITAL
        nodes.append(node)
        types[node.name] = node.type
    outputs = []
    for o in graph.outputs:
        outputs.append(convert(o, "ADC", by_name[o].scope) if domains[o] == ANALOG else o)
    lowered = graph.replace(nodes=tuple(nodes), outputs=tuple(outputs))
    # keep the output names the user knows (x_hat) on the converted values
    return _rename_outputs(lowered, graph.outputs)


def _rename_outputs(graph: Graph, names: Sequence[str]) -> Graph:
    rename: dict[str, str] = {}
    for new, old in zip(graph.outputs, names, strict=True):
        if new != old:
            rename[old] = f"{old}_analog"
            rename[new] = old
    return graph.renamed(rename) if rename else graph


def run(graph: Graph) -> Graph:
    graph = to_crossbar_mvms(undo_gram(graph))
    return verify(insert_conversions(graph), after=NAME)


def set_full_scales(graph: Graph, full_scales: Mapping[str, float]) -> Graph:
    """The graph with ``ADC``/``DAC`` nodes' ``full_scale`` set (calibrated by the target)."""
    nodes = tuple(n.replace(attrs=Attrs({**dict(n.attrs),
                                         "full_scale": float(full_scales[n.name])}))
                  if n.op in ("ADC", "DAC") and n.name in full_scales else n
                  for n in graph.nodes)
    return graph.replace(nodes=nodes)


PASS = FunctionPass(NAME, run, "crossbar lowering: H^T (H x) on two arrays, MVMs -> CrossbarMVM, "
                    "ADC/DAC where values cross between analog and digital")

__all__ = ["ANALOG", "CONST", "DIGITAL", "NAME", "PASS", "Sym", "domains_of",
           "insert_conversions", "run", "sequential_reads", "set_full_scales",
           "to_crossbar_mvms", "undo_gram"]
