"""The state an ONNX emission builds up: nodes, initializers, symbolic-dim tensors.

:class:`EmitContext` is what each emitter of :mod:`.emitters` receives, with the
:class:`Lowering` it emits for (a name such as ``"w4"`` and its options). It hands out
deterministic names (value names from the IR, helper values ``<ir name>.<k>``, node
names ``<scope>/<ir name>/<OpType>``), stores compile-time tensors as initializers, and
computes symbolic dims (``B``, ``S``, ``U`` and products like ``B*S``) at run time from the
graph inputs' shapes, once per graph.

Example::

    >>> ctx = EmitContext(graph, Lowering("w4", k_split=False))
    >>> w = ctx.initializer("fc1.weight.T", weight.T)         # initializer name
    >>> out = ctx.node("MatMul", [x, w], node=ir_node)         # value name of the result
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from mimoc.compiler.dims import Dim, Sym
from mimoc.compiler.ir import Graph, Node
from mimoc.errors import MimocError
from mimoc.targets.onnx.layout import Layout

ONNX_DTYPES = {"f32": TensorProto.FLOAT, "f64": TensorProto.DOUBLE, "i64": TensorProto.INT64,
               "bool": TensorProto.BOOL}
NUMPY_DTYPES = {"f32": np.float32, "f64": np.float64, "i64": np.int64, "bool": np.bool_}
MS_DOMAIN = "com.microsoft"  # onnxruntime's contrib ops (Inverse)

LOWERINGS = ("fp32", "w4", "w4a4", "int8", "w4-int8")
#: MatMulNBits accuracy_level of the 4-bit lowerings: w4 computes in int8 (the kernel
#: quantizes its input per block: fast, not bit-faithful), w4a4 in fp32 on the dequantized
#: 4-bit weights (faithful to spec)
ACCURACY_LEVELS = {"w4": 4, "w4a4": 0}


class EmitError(MimocError):
    """The IR holds something the ONNX target cannot express."""


class Lowering(str):
    """A lowering (``fp32``, ``w4``, ``w4a4``, ``int8``, ``w4-int8``, :mod:`.quantized`) and
    its options.

    It is the lowering's name as a ``str`` (equal to, hashed and written to JSON as the
    name) so that it goes wherever a name goes, ``mimoc.compile(..., lowering=...)`` and
    the manifest included, and the emitter reads its options:

    - ``k_split`` (default on): cut a 4-bit layer's ``K`` into two MatMulNBits pieces where
      padding would waste > 10% of the bytes (:func:`.quantized.k_segments`). ``w4``
      exists to make the weights small (issue 5: at most 0.16 of fp32); on the example
      DetNet 8x16 the cut (K = 80 -> 64 + 16) brings its weight bytes from 0.167 to 0.144
      of fp32 for about 20% more latency on that model (1070 vs 880 and 580 vs 484 us in
      two session-3 runs): a Slice, an Add and a second kernel per block. Off: one kernel
      per layer (the faster, larger artifact);
    - ``accuracy_level``: MatMulNBits ``accuracy_level`` (``None``: the lowering's,
      :data:`ACCURACY_LEVELS`).

    Example::

        >>> mimoc.compile("detnet_kaq.pt", lowering=Lowering("w4", k_split=False))
    """

    k_split: bool
    accuracy_level: int | None

    def __new__(cls, name: str = "fp32", *, k_split: bool = True,
                accuracy_level: int | None = None) -> Lowering:
        if name not in LOWERINGS:
            raise EmitError(f"unknown lowering {name!r}; choose from {', '.join(LOWERINGS)}")
        self = super().__new__(cls, name)
        self.__dict__.update(k_split=bool(k_split), accuracy_level=accuracy_level)
        return self

    @classmethod
    def of(cls, lowering: str) -> Lowering:
        """``lowering`` as a :class:`Lowering` (a plain name gets the default options)."""
        return lowering if isinstance(lowering, Lowering) else cls(lowering)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a Lowering is immutable; make a new one")

    def __repr__(self) -> str:
        return (f"Lowering({str(self)!r}, k_split={self.k_split}, "
                f"accuracy_level={self.accuracy_level})")

    @property
    def matmul_accuracy(self) -> int | None:
        """The MatMulNBits ``accuracy_level`` to emit (``None`` for fp32 / int8)."""
        if self.accuracy_level is not None:
            return self.accuracy_level
        return ACCURACY_LEVELS.get(str(self))


def dim_param(d: Dim) -> str | int:
    """ONNX dim of a type: an int, or a symbolic name such as ``B``, ``S``, ``2*U``."""
    return d if isinstance(d, int) else str(d)


def value_info(name: str, node: Node) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, ONNX_DTYPES[node.type.dtype],
                                         [dim_param(d) for d in node.shape])


class EmitContext:
    """Accumulates one ONNX graph while the emitters translate an IR graph."""

    def __init__(self, graph: Graph, lowering: str = "fp32"):
        self.graph = graph
        self.lowering = Lowering.of(lowering)  # fp32 | w4 | w4a4 | int8 (:mod:`.quantized`)
        self.inputs: list[onnx.ValueInfoProto] = []  # the graph inputs, in graph order
        self.layer_lowerings: dict[str, dict[str, Any]] = {}  # scope -> what it got
        self.int8_inputs: dict[str, tuple[str, str, str]] = {}  # FakeQuant -> (q, scale, zero)
        self.users = graph.users()  # value -> readers (the graph does not change while emitting)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: dict[str, onnx.TensorProto] = {}
        self.values: dict[str, str] = {}  # IR value -> ONNX value name (IR layout)
        self.flat: dict[str, str] = {}  # IR value -> ONNX value in row layout [rows, n]
        self.domains: set[str] = set()
        self._counter: dict[str, int] = {}
        self._dims: dict[Dim, str] = {}
        self._shapes: dict[tuple[Dim, ...], str] = {}
        self._node_names: set[str] = set()
        self._dim_sources = self._find_dim_sources(graph)
        self._taken = {n.name for n in graph.nodes}

    # -- names ---------------------------------------------------------------------

    def value(self, ir_name: str) -> str:
        """The ONNX value holding IR value ``ir_name`` in its IR shape (emitted earlier; a
        ``Const`` becomes an initializer on first use; a value emitted in row layout is
        reshaped back once, under its IR name)."""
        if ir_name not in self.values:
            node = self.graph.node(ir_name)
            if node.op == "Const":
                self.values[ir_name] = self.initializer(ir_name, self.graph.constants[ir_name])
            elif ir_name in self.flat:
                self.values[ir_name] = self.node(
                    "Reshape", [self.flat[ir_name], self.shape(node.shape, wildcard=True)],
                    node=node, output=ir_name)
        return self.values[ir_name]

    def rows(self, ir_name: str) -> str:
        """The ONNX value holding IR value ``ir_name`` (``[..., n]``) as rows ``[-1, n]``
        (see :mod:`.rows`; reshaped from the IR layout once, on first use)."""
        if ir_name not in self.flat:
            node = self.graph.node(ir_name)
            self.flat[ir_name] = self.node(
                "Reshape", [self.value(ir_name), self.int64([-1, node.shape[-1]], "shape")],
                node=node, output=self.fresh(f"{ir_name}.rows"))
        return self.flat[ir_name]

    def operand(self, ir_name: str, layout: Layout) -> str:
        """An operand of a node emitted in ``layout``: as rows for :attr:`Layout.ROWS`,
        except a scalar / vector (rank <= 1), which broadcasts over rows as it is."""
        if layout is Layout.ROWS and len(self.graph.node(ir_name).shape) > 1:
            return self.rows(ir_name)
        return self.value(ir_name)

    def result(self, node: Node, layout: Layout) -> str:
        """The name of ``node``'s result in ``layout``: its IR name, or a fresh
        ``<name>.rows.k`` for rows (the IR name is kept for the IR layout)."""
        return self.fresh(f"{node.name}.rows") if layout is Layout.ROWS else node.name

    def any_layout(self, ir_name: str) -> str:
        """``ir_name`` in whichever layout exists (same elements in the same order): for
        ops that only need the element order, such as ``Reshape``."""
        if ir_name not in self.values and ir_name in self.flat:
            return self.flat[ir_name]
        return self.value(ir_name)

    def fresh(self, base: str) -> str:
        """A new value name ``base.k``, unique and deterministic."""
        k = self._counter.get(base, 0)
        while f"{base}.{k}" in self._taken:
            k += 1
        self._counter[base] = k + 1
        name = f"{base}.{k}"
        self._taken.add(name)
        return name

    # -- nodes ---------------------------------------------------------------------

    def node(self, op_type: str, inputs: Sequence[str], *, node: Node | None = None,
             output: str | None = None, domain: str = "", label: str | None = None,
             **attrs: Any) -> str:
        """Append ``op_type(inputs)``; return its output's name.

        ``node`` is the IR node being translated: the ONNX node is named
        ``<scope>/<ir name>/<op_type>`` so a profile or a viewer shows which block and layer
        it comes from. ``output`` defaults to a fresh helper name.
        """
        base = node.name if node is not None else (label or op_type.lower())
        out = output or self.fresh(base)
        scope = (node.scope if node is not None and node.scope else "graph")
        name = f"{scope}/{base}/{op_type}"
        if name in self._node_names:  # a second ONNX node for the same IR node and op
            name = f"{name}.{out}"
        self._node_names.add(name)
        if domain:
            self.domains.add(domain)
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=name,
                                           domain=domain or None, **attrs))
        return out

    # -- constants -------------------------------------------------------------------

    def initializer(self, name: str, value: torch.Tensor | np.ndarray) -> str:
        """Store a compile-time tensor as an initializer named ``name`` (reused if present)."""
        if name in self.initializers:
            return name
        array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
        array = np.array(array, order="C", copy=True)  # (ascontiguousarray makes 0-d 1-d)
        self.initializers[name] = numpy_helper.from_array(array, name)
        self._taken.add(name)
        return name

    def int64(self, values: Sequence[int], label: str) -> str:
        """A small int64 constant (axes, shapes, indices), shared by content."""
        name = "i64." + "_".join(str(v).replace("-", "m") for v in values) if values else \
            "i64.empty"
        return self.initializer(name, np.asarray(list(values), dtype=np.int64))

    def scalar(self, value: float, dtype: str = "f32") -> str:
        text = repr(float(value)).replace("-", "m").replace(".", "p").replace("+", "")
        name = f"{dtype}.{text}"
        return self.initializer(name, np.asarray(value, dtype=NUMPY_DTYPES[dtype]))

    # -- symbolic dims -----------------------------------------------------------------

    @staticmethod
    def _find_dim_sources(graph: Graph) -> dict[str, tuple[str, int, int]]:
        """Symbol name -> (input name, axis, coefficient) of a graph input that holds it."""
        sources: dict[str, tuple[str, int, int]] = {}
        for n in graph.inputs:
            for axis, d in enumerate(n.shape):
                if isinstance(d, Sym) and len(d.names) == 1 and d.names[0] not in sources:
                    sources[d.names[0]] = (n.name, axis, d.coeff)
        return sources

    def dim(self, d: Dim) -> str:
        """A 1-element int64 tensor holding ``d`` at run time (cached per graph)."""
        if isinstance(d, int):
            return self.int64([d], "dim")
        if d in self._dims:
            return self._dims[d]
        if d.coeff == 1 and len(d.names) == 1:
            name = d.names[0]
            if name not in self._dim_sources:
                raise EmitError(f"symbolic dimension {name} is not bound by any input of graph "
                                f"{self.graph.name!r}")
            source, axis, coeff = self._dim_sources[name]
            out = self.node("Shape", [self.value(source)], label=f"dim_{name}",
                            output=self.fresh(f"dim_{name}"), start=axis, end=axis + 1)
            if coeff != 1:
                out = self.node("Div", [out, self.int64([coeff], "dim")], label=f"dim_{name}")
        else:
            parts = [self.dim(Sym(1, (n,))) for n in d.names]
            out = parts[0]
            for p in parts[1:]:
                out = self.node("Mul", [out, p], label=f"dim_{d}".replace("*", "x"))
            if d.coeff != 1:
                out = self.node("Mul", [out, self.int64([d.coeff], "dim")],
                                label=f"dim_{d}".replace("*", "x"))
        self._dims[d] = out
        return out

    def shape(self, shape: Sequence[Dim], *, wildcard: bool = False) -> str:
        """An int64 shape tensor for ``shape``.

        ``wildcard``: for Reshape, a single symbolic dim becomes ``-1`` (a constant shape,
        no shape arithmetic at run time).
        """
        symbolic = [i for i, d in enumerate(shape) if not isinstance(d, int)]
        if not symbolic:
            return self.int64(list(shape), "shape")
        if wildcard and len(symbolic) == 1:
            return self.int64([-1 if i in symbolic else d for i, d in enumerate(shape)],
                              "shape")
        if tuple(shape) in self._shapes:
            return self._shapes[tuple(shape)]
        pieces: list[str] = []
        static: list[int] = []
        for d in shape:
            if isinstance(d, int):
                static.append(d)
                continue
            if static:
                pieces.append(self.int64(static, "shape"))
                static = []
            pieces.append(self.dim(d))
        if static:
            pieces.append(self.int64(static, "shape"))
        key = tuple(shape)
        if key not in self._shapes:
            self._shapes[key] = self.node("Concat", pieces, label="shape", axis=0)
        return self._shapes[key]
