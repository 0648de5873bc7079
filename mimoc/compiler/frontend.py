"""Frontend: a PyTorch detector -> IR, through ``torch.export``.

The detector is exported with dynamic batch ``B`` and slot length ``S`` (and any other
named dims, e.g. RE-MIMO's user count ``U``) and translated node by node, one handler per
ATen op family in :data:`HANDLERS`. A graph with ops that have no handler (in-place or
composite ops) is first decomposed to the functional inference ATen opset
(``run_decompositions({})``, which keeps ``linear``, ``conv2d``, ``matmul``, ``layer_norm``,
``softmax`` as single ops). An ATen op without a handler raises
:class:`UnsupportedOpError` naming the op, the user's source line, the module it came
from and the supported set — never a silent mis-translation. Nodes that depend only on
parameters, buffers and constants (not on ``H``/``y`` or their shapes) are evaluated with
torch at import time and become constants, so any op may appear there (L-WeSNet's
profile ``ReLU(1 - cumsum(softplus(d)))``). Every translated node's shape is checked
against the shape torch recorded for it.

Graph inputs: ``H [B, 2Nr, 2Nt]`` (slot rate) and ``y [B, S, 2Nr]`` (symbol rate); the
output is ``x_hat [B, S, 2Nt]``. Node names are the exported value names; ``scope`` is the
module path (``blocks.3.fc1``) for readable artifact node names.

Example::

    >>> graph = import_module(model)              # a zoo DetectorModule, shapes from its config
    >>> graph = import_module(model, (H, y))      # any module with forward(H, y)
"""

from __future__ import annotations

import operator
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx
from torch.export import Dim as TorchDim
from torch.export import ExportedProgram, export
from torch.export.graph_signature import InputKind

from mimoc.compiler import dims as D
from mimoc.compiler.builder import GraphBuilder
from mimoc.compiler.dims import Dim, Sym
from mimoc.compiler.ir import Graph, IRError, Rate, dtype_name
from mimoc.compiler.verify import verify
from mimoc.errors import MimocError, UsageError

aten = torch.ops.aten

# input name -> {axis: dim name or (dim name, multiplier)}
DimSpec = Mapping[str, Mapping[int, "str | tuple[str, int]"]]
DEFAULT_DIMS: dict[str, dict[int, str]] = {"H": {0: "B"}, "y": {0: "B", 1: "S"}}
INPUT_RATES = {"H": Rate.SLOT, "y": Rate.SYMBOL}
OUTPUT_NAMES = ("x_hat",)


class UnsupportedOpError(MimocError):
    """The model uses an operation the compiler cannot translate."""


class FrontendError(MimocError):
    """The model cannot be traced (export failed, wrong interface)."""


# ---------------------------------------------------------------- tracing

def example_inputs(model: torch.nn.Module, batch: int = 2, slot: int = 3,
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ``(H, y)`` for a zoo detector, sized from ``model.config`` (nt, nr).

    ``batch`` and ``slot`` must differ from 1 (torch.export specialises size-1 dims).
    """
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "nt") or not hasattr(config, "nr"):
        raise UsageError("the model has no config with nt/nr: pass example inputs (H, y)")
    gen = torch.Generator().manual_seed(0)
    H = torch.randn(batch, 2 * config.nr, 2 * config.nt, generator=gen)
    y = torch.randn(batch, slot, 2 * config.nr, generator=gen)
    return H, y


def default_dims(model: torch.nn.Module) -> tuple[DimSpec, dict[str, tuple[int, int]]]:
    """Dynamic dims of a detector and their bounds: ``B`` and ``S`` always; a model whose
    config has ``nt_min < nt`` (RE-MIMO: one model for a range of user counts) also gets a
    dynamic user count ``U`` with ``H [B, 2Nr, 2U]``."""
    config = getattr(model, "config", None)
    nt_min, nt = getattr(config, "nt_min", None), getattr(config, "nt", None)
    if isinstance(nt_min, int) and isinstance(nt, int) and nt_min < nt:
        dims = {"H": {0: "B", 2: ("U", 2)}, "y": {0: "B", 1: "S"}}
        return dims, {"U": (max(nt_min, 2), None)}
    return DEFAULT_DIMS, {}


def export_detector(model: torch.nn.Module, example: Sequence[torch.Tensor],
                    dims: DimSpec = DEFAULT_DIMS, input_names: Sequence[str] = ("H", "y"),
                    bounds: Mapping[str, tuple[int, int]] | None = None) -> ExportedProgram:
    """``torch.export`` with the named dims of ``dims`` dynamic (``bounds[name] = (lo, hi)``,
    default ``lo = 2``: torch.export specialises dims of size 0 and 1)."""
    torch_dims: dict[str, Any] = {}
    bounds = bounds or {}

    def torch_dim(spec: str | tuple[str, int]) -> Any:
        name, mult = (spec, 1) if isinstance(spec, str) else spec
        if name not in torch_dims:
            lo, hi = bounds.get(name, (2, None))
            torch_dims[name] = TorchDim(name, min=lo, max=hi)
        return torch_dims[name] * mult if mult != 1 else torch_dims[name]

    dynamic = {n: {axis: torch_dim(s) for axis, s in dims.get(n, {}).items()}
               for n in input_names}
    shapes = tuple(dynamic[n] for n in input_names)
    try:
        with warnings.catch_warnings():  # torch-internal deprecation noise, not the user's
            warnings.filterwarnings("ignore", category=FutureWarning)
            return export(model.eval(), tuple(example), dynamic_shapes=shapes, strict=False)
    except MimocError:
        raise
    except Exception as e:  # torch raises many types here; the message is what helps
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FrontendError(f"torch.export could not trace the model: {first}") from e


def import_module(model: torch.nn.Module, example: Sequence[torch.Tensor] | None = None, *,
                  dims: DimSpec | None = None, input_names: Sequence[str] = ("H", "y"),
                  bounds: Mapping[str, tuple[int, int]] | None = None,
                  name: str | None = None) -> Graph:
    """Export ``model`` and translate it to a verified IR graph.

    ``dims``/``bounds`` default to :func:`default_dims`; ``example`` to
    :func:`example_inputs` (zoo detectors).
    """
    if dims is None:
        dims, auto_bounds = default_dims(model)
        bounds = bounds if bounds is not None else auto_bounds
    example = tuple(example) if example is not None else example_inputs(model)
    ep = export_detector(model, example, dims, input_names, bounds)
    graph_name = name or getattr(model, "family", None) or type(model).__name__
    return import_program(ep, input_names=input_names, dims=dims, name=graph_name)


# ---------------------------------------------------------------- translation state

def source_location(node: fx.Node) -> str:
    """``file:line (code)`` of the innermost user frame in the node's stack trace."""
    trace = node.meta.get("stack_trace") or ""
    lines = trace.strip().splitlines()
    torch_dir = os.path.dirname(torch.__file__)
    best = ""
    for i, line in enumerate(lines):
        line = line.strip()
        if line.startswith("File ") and torch_dir not in line:
            parts = line.split('"')
            if len(parts) >= 3:
                lineno = line.split("line ")[-1].split(",")[0]
                code = lines[i + 1].strip() if i + 1 < len(lines) else ""
                best = f"{parts[1]}:{lineno}" + (f" ({code})" if code else "")
    return best or "unknown location"


def module_scope(node: fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    paths = [v[0] for v in stack.values() if isinstance(v, tuple) and v and v[0]]
    return paths[-1] if paths else ""


def _op_name(target: Any) -> str:
    if isinstance(target, torch._ops.OpOverload):
        return f"aten.{target._schema.name.split('::')[-1]}.{target._overloadname}"
    return getattr(target, "__name__", str(target))


@dataclass
class _Importer:
    ep: ExportedProgram
    builder: GraphBuilder
    symbols: dict[Any, str]  # sympy symbol -> dim name
    env: dict[fx.Node, Any]
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
                    f"{_op_name(node.target)} at {source_location(node)}: a tensor operand is "
                    "a shape value; compute with tensors only")
            return v
        if isinstance(arg, bool | int | float):
            return self.scalar(float(arg), node)
        raise UnsupportedOpError(f"{_op_name(node.target)} at {source_location(node)}: "
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
            raise _unsupported(self, node, f"evaluating this parameters-only operation at "
                                           f"import time failed: {e}") from e

    def materialize(self, node: fx.Node) -> str | None:
        """The IR value of a folded node a data-path node reads.

        Copies and aliases name the tensor they copy (``blocks.0.t``, not ``clone_3``);
        constructors with a handler (``zeros(4, 4)``) keep their IR form (``Fill``), which
        the passes propagate; anything else becomes a ``Const`` named after the node.
        """
        source = node
        while (source.op == "call_function" and HANDLERS.get(source.target) is _passthrough
               and isinstance(source.args[0], fx.Node)):
            source = source.args[0]
        if source is not node:
            return self.value(source, node)
        has_operands = bool(node.all_input_nodes)
        if not has_operands and node.target in HANDLERS:
            return HANDLERS[node.target](self, node)
        tensor = self.folded[node]
        if not isinstance(tensor, torch.Tensor):
            raise _unsupported(self, node, "a data-path operation reads a non-tensor value "
                                           "computed from the parameters")
        if not tensor.is_floating_point():
            raise _unsupported(self, node, f"a data-path operation reads a {tensor.dtype} "
                                           "tensor computed from the parameters; use float "
                                           "tensors")
        scope = module_scope(node)
        return _const(self, f"{scope}.{node.name}" if scope else node.name, tensor,
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


Handler = Callable[[_Importer, fx.Node], Any]


# ---------------------------------------------------------------- handlers

def _unsupported(imp: _Importer, node: fx.Node, why: str) -> UnsupportedOpError:
    scope = module_scope(node)
    where = source_location(node) + (f" in module {scope}" if scope else "")
    return UnsupportedOpError(f"{_op_name(node.target)} at {where}: {why}")


def _passthrough(imp, node):
    return imp.value(node.args[0], node)


def _dropout(imp, node):
    if imp.arg(node, 2, "train", False):
        raise _unsupported(imp, node, "dropout in training mode; call model.eval()")
    return _passthrough(imp, node)


def _to_copy(imp, node):
    dtype = node.kwargs.get("dtype")
    src = node.args[0].meta["val"].dtype
    if dtype is not None and dtype != src:
        raise _unsupported(imp, node, f"casts {src} to {dtype}; mimoc graphs stay in one "
                                      "float dtype")
    return _passthrough(imp, node)


def _unary(op: str) -> Handler:
    return lambda imp, node: imp.emit(op, [imp.value(node.args[0], node)], None, node)


def _binary(op: str) -> Handler:
    def handle(imp, node):
        alpha = node.kwargs.get("alpha", 1)
        a, b = imp.value(node.args[0], node), imp.value(node.args[1], node)
        if alpha != 1:
            b = imp.emit("Mul", [b, imp.scalar(float(alpha), node)], None, node, "_alpha")
        return imp.emit(op, [a, b], None, node)
    return handle


def _rsub(imp, node):  # rsub(x, other, alpha) = other - alpha * x
    x, other = imp.value(node.args[0], node), imp.value(node.args[1], node)
    alpha = node.kwargs.get("alpha", 1)
    if alpha != 1:
        x = imp.emit("Mul", [x, imp.scalar(float(alpha), node)], None, node, "_alpha")
    return imp.emit("Sub", [other, x], None, node)


def _pow(imp, node):
    x, exponent = node.args[0], node.args[1]
    if exponent == 2:
        return imp.emit("Square", [imp.value(x, node)], None, node)
    if exponent == 0.5:
        return imp.emit("Sqrt", [imp.value(x, node)], None, node)
    if exponent == 1:
        return imp.value(x, node)
    return imp.emit("Pow", [imp.value(x, node), imp.value(exponent, node)], None, node)


def _clip(imp, node):
    lo = imp.arg(node, 1, "min")
    hi = imp.arg(node, 2, "max")
    if node.target == aten.clamp_min.default:
        lo, hi = node.args[1], None
    elif node.target == aten.clamp_max.default:
        lo, hi = None, node.args[1]
    elif node.target == aten.hardtanh.default:
        lo, hi = imp.arg(node, 1, "min_val", -1.0), imp.arg(node, 2, "max_val", 1.0)
    attrs = {"min": None if lo is None else float(lo), "max": None if hi is None else float(hi)}
    return imp.emit("Clip", [imp.value(node.args[0], node)], attrs, node)


def _gelu(imp, node):
    return imp.emit("Gelu", [imp.value(node.args[0], node)],
                    {"approximate": node.kwargs.get("approximate", "none")}, node)


def _linear(imp, node):
    inputs = [imp.value(a, node) for a in node.args[:3] if a is not None]
    return imp.emit("Linear", inputs, None, node)


def _matmul(imp, node):
    a, b = imp.value(node.args[0], node), imp.value(node.args[1], node)
    ra, rb = imp.builder.type_of(a).rank, imp.builder.type_of(b).rank
    if ra == 1 and rb == 1:
        raise _unsupported(imp, node, "dot products of two vectors are not supported; "
                                      "use a matrix operand")
    if ra == 1:
        a = imp.emit("Unsqueeze", [a], {"axis": 0}, node, "_row")
        out = imp.emit("MatMul", [a, b], None, node, "_mm")
        return imp.emit("Squeeze", [out], {"axis": -2 % (imp.builder.type_of(out).rank)}, node)
    if rb == 1:
        b = imp.emit("Unsqueeze", [b], {"axis": 1}, node, "_col")
        out = imp.emit("MatMul", [a, b], None, node, "_mm")
        return imp.emit("Squeeze", [out], {"axis": imp.builder.type_of(out).rank - 1}, node)
    return imp.emit("MatMul", [a, b], None, node)


def _addmm(imp, node):
    if node.kwargs.get("beta", 1) != 1 or node.kwargs.get("alpha", 1) != 1:
        raise _unsupported(imp, node, "addmm with beta/alpha other than 1")
    bias, a, b = (imp.value(x, node) for x in node.args[:3])
    out = imp.emit("MatMul", [a, b], None, node, "_mm")
    return imp.emit("Add", [out, bias], None, node)


def _pair(v: Any) -> tuple[int, int]:
    v = tuple(v) if isinstance(v, list | tuple) else (v,)
    return (int(v[0]), int(v[-1]))


def _conv2d(imp, node):
    x, w = imp.value(node.args[0], node), imp.value(node.args[1], node)
    if imp.builder.type_of(x).rank != 4:
        raise _unsupported(imp, node, "only batched 4-D (NCHW) conv2d input is supported")
    bias = imp.arg(node, 2, "bias")
    padding = imp.arg(node, 4, "padding", 0)
    if isinstance(padding, str):
        raise _unsupported(imp, node, f"padding={padding!r}; give explicit integer padding")
    if node.target == aten.convolution.default:
        if node.args[6] or any(node.args[7]):
            raise _unsupported(imp, node, "transposed convolution is not supported")
        groups = node.args[8]
    else:
        groups = imp.arg(node, 6, "groups", 1)
    attrs = {"stride": _pair(imp.arg(node, 3, "stride", 1)), "padding": _pair(padding),
             "dilation": _pair(imp.arg(node, 5, "dilation", 1)), "groups": int(groups)}
    if len(_pair(imp.arg(node, 3, "stride", 1))) != 2:
        raise _unsupported(imp, node, "conv2d stride must be an int or a pair")
    inputs = [x, w] + ([imp.value(bias, node)] if bias is not None else [])
    return imp.emit("Conv2d", inputs, attrs, node)


def _batch_norm(imp, node):
    if node.target == aten.batch_norm.default:
        x, w, b, mean, var, training, _, eps = node.args[:8]
        if training:
            raise _unsupported(imp, node, "BatchNorm in training mode; call model.eval()")
    else:  # _native_batch_norm_legit_no_training(x, w, b, mean, var, momentum, eps)
        x, w, b, mean, var, _, eps = node.args[:7]
    xv = imp.value(x, node)
    channels = imp.builder.type_of(xv).shape[1]
    scale = imp.value(w, node) if w is not None else imp.builder.const(
        f"{node.name}_scale", torch.ones(channels), module_scope(node))
    shift = imp.value(b, node) if b is not None else imp.builder.const(
        f"{node.name}_shift", torch.zeros(channels), module_scope(node))
    out = imp.emit("BatchNorm", [xv, scale, shift, imp.value(mean, node), imp.value(var, node)],
                   {"eps": float(eps), "axis": 1}, node)
    return (out, None, None) if node.target != aten.batch_norm.default else out


def _layer_norm(imp, node):
    x, shape = node.args[0], node.args[1]
    w, b = imp.arg(node, 2, "weight"), imp.arg(node, 3, "bias")
    eps = imp.arg(node, 4, "eps", 1e-5)
    if w is None and b is not None:
        raise _unsupported(imp, node, "layer_norm with a bias but no weight")
    inputs = [imp.value(x, node)] + [imp.value(t, node) for t in (w, b) if t is not None]
    out = imp.emit("LayerNorm", inputs, {"ndim": len(shape), "eps": float(eps)}, node)
    return (out, None, None) if node.target == aten.native_layer_norm.default else out


def _softmax(op: str) -> Handler:
    def handle(imp, node):
        x = imp.value(node.args[0], node)
        axis = int(node.args[1]) % imp.builder.type_of(x).rank
        return imp.emit(op, [x], {"axis": axis}, node)
    return handle


def _cat(imp, node):
    tensors = [imp.value(t, node) for t in node.args[0]]
    rank = imp.builder.type_of(tensors[0]).rank
    axis = int(imp.arg(node, 1, "dim", 0)) % rank
    return imp.emit("Concat", tensors, {"axis": axis}, node)


def _stack(imp, node):
    tensors = [imp.value(t, node) for t in node.args[0]]
    rank = imp.builder.type_of(tensors[0]).rank + 1
    axis = int(imp.arg(node, 1, "dim", 0)) % rank
    parts = [imp.emit("Unsqueeze", [t], {"axis": axis}, node, f"_{i}")
             for i, t in enumerate(tensors)]
    return imp.emit("Concat", parts, {"axis": axis}, node)


def _reshape(imp, node):
    return imp.emit("Reshape", [imp.value(node.args[0], node)], {"shape": imp.shape(node)}, node)


def _transpose(imp, node):
    x = imp.value(node.args[0], node)
    rank = imp.builder.type_of(x).rank
    perm = list(range(rank))
    if node.target == aten.permute.default:
        perm = [int(p) % rank for p in node.args[1]]
    elif node.target == aten.t.default:
        perm = perm[::-1]
    else:
        i, j = int(node.args[1]) % rank, int(node.args[2]) % rank
        perm[i], perm[j] = perm[j], perm[i]
    return imp.emit("Transpose", [x], {"perm": tuple(perm)}, node)


def _movedim(imp, node):
    x = imp.value(node.args[0], node)
    rank = imp.builder.type_of(x).rank
    src, dst = node.args[1], node.args[2]
    src = [int(s) % rank for s in (src if isinstance(src, list | tuple) else [src])]
    dst = [int(d) % rank for d in (dst if isinstance(dst, list | tuple) else [dst])]
    perm: list[int | None] = [None] * rank
    for s_, d_ in zip(src, dst, strict=True):
        perm[d_] = s_
    rest = iter(i for i in range(rank) if i not in src)
    perm = [p if p is not None else next(rest) for p in perm]
    return imp.emit("Transpose", [x], {"perm": tuple(perm)}, node)


def _unsqueeze(imp, node):
    x = imp.value(node.args[0], node)
    axis = int(node.args[1]) % (imp.builder.type_of(x).rank + 1)
    return imp.emit("Unsqueeze", [x], {"axis": axis}, node)


def _squeeze(imp, node):
    x = imp.value(node.args[0], node)
    shape = imp.builder.type_of(x).shape
    if len(node.args) < 2:
        axes = [i for i, d in enumerate(shape) if d == 1]
    else:
        dims = node.args[1]
        axes = sorted({int(a) % len(shape) for a in (dims if isinstance(dims, list | tuple)
                                                        else [dims])})
    for k, axis in enumerate(reversed(axes)):
        if shape[axis] == 1:
            x = imp.emit("Squeeze", [x], {"axis": axis}, node, "" if k == len(axes) - 1
                         else f"_{axis}")
    return x


def _slice(imp, node):
    x = imp.value(node.args[0], node)
    shape = imp.builder.type_of(x).shape
    axis = int(imp.arg(node, 1, "dim", 0)) % len(shape)
    start = imp.arg(node, 2, "start", None)
    end = imp.arg(node, 3, "end", None)
    step = int(imp.arg(node, 4, "step", 1))
    if isinstance(start, fx.Node) or isinstance(end, fx.Node):
        raise _unsupported(imp, node, "slice bounds that depend on a dynamic size")
    start = 0 if start is None else int(start)
    size = shape[axis]
    if isinstance(size, int):
        start, end, step = slice(start, end, step).indices(size)
        if start == 0 and end == size and step == 1:
            return x
        if end == size:
            end = None
    else:
        if start < 0 or (end is not None and end < 2**62) or step != 1:
            raise _unsupported(imp, node, f"a partial slice of the dynamic dim {size}")
        if start == 0:
            return x
        end = None
    return imp.emit("Slice", [x], {"axis": axis, "start": start, "end": end, "step": step}, node)


def _select(imp, node):
    x = imp.value(node.args[0], node)
    shape = imp.builder.type_of(x).shape
    axis = int(node.args[1]) % len(shape)
    index = int(node.args[2])
    if not isinstance(shape[axis], int):
        raise _unsupported(imp, node, f"indexing the dynamic dim {shape[axis]}")
    return imp.emit("Select", [x], {"axis": axis, "index": index % shape[axis]}, node)


def _unbind(imp, node):
    x = imp.value(node.args[0], node)
    shape = imp.builder.type_of(x).shape
    axis = int(imp.arg(node, 1, "dim", 0)) % len(shape)
    if not isinstance(shape[axis], int):
        raise _unsupported(imp, node, f"unbinding the dynamic dim {shape[axis]}")
    return tuple(imp.emit("Select", [x], {"axis": axis, "index": k}, node, f"_{k}")
                 for k in range(shape[axis]))


def _expand(imp, node):
    x = imp.value(node.args[0], node)
    shape = imp.shape(node)
    if shape == imp.builder.type_of(x).shape:
        return x
    return imp.emit("Expand", [x], {"shape": shape}, node)


def _repeat(imp, node):
    reps = tuple(int(imp.dim(r)) if not isinstance(imp.dim(r), Sym) else None
                 for r in node.args[1])
    if None in reps:
        raise _unsupported(imp, node, "repeat counts that depend on a dynamic size")
    return imp.emit("Tile", [imp.value(node.args[0], node)], {"repeats": reps}, node)


def _reduce(op: str) -> Handler:
    def handle(imp, node):
        x = imp.value(node.args[0], node)
        rank = imp.builder.type_of(x).rank
        dims = imp.arg(node, 1, "dim", None)
        if node.target in (aten.sum.default, aten.mean.default):
            dims = None
        keepdim = bool(imp.arg(node, 2, "keepdim", False))
        axes = tuple(sorted(int(d) % rank for d in dims)) if dims else ()
        if imp.arg(node, 3, "dtype", None) not in (None, node.meta["val"].dtype):
            raise _unsupported(imp, node, "reductions with a dtype cast")
        return imp.emit(op, [x], {"axes": axes, "keepdim": keepdim}, node)
    return handle


def _solve(imp, node):
    if not imp.arg(node, 2, "left", True):
        raise _unsupported(imp, node, "linalg.solve(left=False)")
    a, b = imp.value(node.args[0], node), imp.value(node.args[1], node)
    if imp.builder.type_of(b).rank == 1 or (imp.builder.type_of(b).rank
                                            == imp.builder.type_of(a).rank - 1):
        raise _unsupported(imp, node, "linalg.solve with a vector right-hand side; "
                                      "give B as a matrix [..., n, k]")
    return imp.emit("Solve", [a, b], None, node)


def _pinv(imp, node):
    tolerances = [a for a in node.args[1:3] if a is not None]
    if tolerances or node.kwargs.get("hermitian") or (len(node.args) > 3 and node.args[3]):
        raise _unsupported(imp, node, "pinv with explicit tolerances or hermitian=True")
    return imp.emit("Pinv", [imp.value(node.args[0], node)], None, node)


def _fill(value: float | None) -> Handler:
    def handle(imp, node):
        val = node.meta["val"]
        if not val.dtype.is_floating_point:
            raise _unsupported(imp, node, f"creates a {val.dtype} tensor; use float tensors")
        v = value
        if v is None:  # full / full_like / new_full
            target = node.target
            v = node.args[2] if target == aten.new_full.default else node.args[1]
        return imp.builder.fill(float(v), imp.shape(node), name=node.name,
                                scope=module_scope(node))
    return handle


def _eye(imp, node):
    val = node.meta["val"]
    if not all(isinstance(d, int) for d in val.shape):
        raise _unsupported(imp, node, "an identity matrix of dynamic size")
    return imp.builder.const(node.name, torch.eye(*val.shape, dtype=val.dtype),
                             module_scope(node))


def _no_value(imp, node):
    """Runtime assertions torch.export records (dtype/shape checks): nothing to compute."""
    return None


def _sym(imp, node):
    return imp.dim(node)


def _getitem(imp, node):
    source = imp.env[node.args[0]]
    out = source[node.args[1]]
    if out is None:
        raise _unsupported(imp, node, "uses an auxiliary output (statistics) of a norm layer")
    return out


HANDLERS: dict[Any, Handler] = {
    # layers
    aten.linear.default: _linear,
    aten.matmul.default: _matmul,
    aten.bmm.default: _matmul,
    aten.mm.default: _matmul,
    aten.addmm.default: _addmm,
    aten.conv2d.default: _conv2d,
    aten.convolution.default: _conv2d,
    aten.batch_norm.default: _batch_norm,
    aten._native_batch_norm_legit_no_training.default: _batch_norm,
    aten.layer_norm.default: _layer_norm,
    aten.native_layer_norm.default: _layer_norm,
    aten.softmax.int: _softmax("Softmax"),
    aten._softmax.default: _softmax("Softmax"),
    aten.log_softmax.int: _softmax("LogSoftmax"),
    aten._log_softmax.default: _softmax("LogSoftmax"),
    # linear algebra
    aten.linalg_inv.default: _unary("Inverse"),
    aten.inverse.default: _unary("Inverse"),
    aten.linalg_solve.default: _solve,
    aten.linalg_pinv.atol_rtol_tensor: _pinv,
    # elementwise
    aten.relu.default: _unary("Relu"),
    aten.tanh.default: _unary("Tanh"),
    aten.sigmoid.default: _unary("Sigmoid"),
    aten.abs.default: _unary("Abs"),
    aten.neg.default: _unary("Neg"),
    aten.sqrt.default: _unary("Sqrt"),
    aten.rsqrt.default: _unary("Rsqrt"),
    aten.square.default: _unary("Square"),
    aten.exp.default: _unary("Exp"),
    aten.log.default: _unary("Log"),
    aten.reciprocal.default: _unary("Reciprocal"),
    aten.sign.default: _unary("Sign"),
    aten.sin.default: _unary("Sin"),
    aten.cos.default: _unary("Cos"),
    aten.gelu.default: _gelu,
    aten.hardtanh.default: _clip,
    aten.clamp.default: _clip,
    aten.clamp_min.default: _clip,
    aten.clamp_max.default: _clip,
    aten.add.Tensor: _binary("Add"),
    aten.add.Scalar: _binary("Add"),
    aten.sub.Tensor: _binary("Sub"),
    aten.sub.Scalar: _binary("Sub"),
    aten.rsub.Scalar: _rsub,
    aten.mul.Tensor: _binary("Mul"),
    aten.mul.Scalar: _binary("Mul"),
    aten.div.Tensor: _binary("Div"),
    aten.div.Scalar: _binary("Div"),
    aten.pow.Tensor_Scalar: _pow,
    aten.pow.Tensor_Tensor: _binary("Pow"),
    aten.maximum.default: _binary("Maximum"),
    aten.minimum.default: _binary("Minimum"),
    # layout
    aten.cat.default: _cat,
    aten.stack.default: _stack,
    aten.view.default: _reshape,
    aten.reshape.default: _reshape,
    aten._unsafe_view.default: _reshape,
    aten.flatten.using_ints: _reshape,
    aten.unflatten.int: _reshape,
    aten.transpose.int: _transpose,
    aten.permute.default: _transpose,
    aten.t.default: _transpose,
    aten.movedim.int: _movedim,
    aten.movedim.intlist: _movedim,
    aten.unsqueeze.default: _unsqueeze,
    aten.squeeze.dim: _squeeze,
    aten.squeeze.dims: _squeeze,
    aten.squeeze.default: _squeeze,
    aten.slice.Tensor: _slice,
    aten.select.int: _select,
    aten.unbind.int: _unbind,
    aten.expand.default: _expand,
    aten.repeat.default: _repeat,
    # reductions
    aten.sum.dim_IntList: _reduce("ReduceSum"),
    aten.sum.default: _reduce("ReduceSum"),
    aten.mean.dim: _reduce("ReduceMean"),
    aten.mean.default: _reduce("ReduceMean"),
    aten.amax.default: _reduce("ReduceMax"),
    # constructors
    aten.zeros.default: _fill(0.0),
    aten.zeros_like.default: _fill(0.0),
    aten.new_zeros.default: _fill(0.0),
    aten.ones.default: _fill(1.0),
    aten.ones_like.default: _fill(1.0),
    aten.new_ones.default: _fill(1.0),
    aten.full.default: _fill(None),
    aten.full_like.default: _fill(None),
    aten.new_full.default: _fill(None),
    aten.eye.default: _eye,
    # no-ops in an inference graph
    aten.clone.default: _passthrough,
    aten.alias.default: _passthrough,
    aten.contiguous.default: _passthrough,
    aten.detach.default: _passthrough,
    aten.detach_.default: _passthrough,
    aten.lift_fresh_copy.default: _passthrough,
    aten.dropout.default: _dropout,
    aten._to_copy.default: _to_copy,
    aten.to.dtype: _to_copy,
    aten._assert_tensor_metadata.default: _no_value,
    # shape arithmetic (evaluated symbolically, no IR nodes)
    aten.sym_size.int: _sym,
    operator.mul: _sym,
    operator.floordiv: _sym,
    operator.getitem: _getitem,
}


def supported_ops() -> list[str]:
    """The ATen op families the frontend translates (for error messages and docs)."""
    overloads = [t for t in HANDLERS if isinstance(t, torch._ops.OpOverload)]
    return sorted({_op_name(t).rsplit(".", 1)[0] for t in overloads})


# ---------------------------------------------------------------- program -> graph

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
    imp = _Importer(ep, GraphBuilder(name), _name_symbols(ep, user, input_names, dims), {})
    for node in placeholders:
        spec = kinds[node.name]
        if spec.kind == InputKind.USER_INPUT:
            in_name = input_names[user.index(node)]
            val = node.meta["val"]
            imp.env[node] = imp.builder.input(in_name, imp.shape(node),
                                              rates.get(in_name, Rate.SYMBOL),
                                              dtype_name(val.dtype))
        elif spec.kind in _CONSTANT_INPUTS:
            tensor = _placeholder_tensor(ep, spec)
            imp.folded[node] = tensor
            imp.env[node] = _const(imp, spec.target, tensor)
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
                raise _unsupported(imp, node, "not supported by mimoc; supported ATen ops: "
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


_CONSTANT_INPUTS = (InputKind.PARAMETER, InputKind.BUFFER, InputKind.CONSTANT_TENSOR)


def _placeholder_tensor(ep: ExportedProgram, spec: Any) -> torch.Tensor:
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
            if kinds.get(node.name) in _CONSTANT_INPUTS:
                constant.add(node)
        elif node.op == "call_function":
            tags = getattr(node.target, "tags", ())
            if torch.Tag.nondeterministic_seeded in tags:
                continue
            if all(arg in constant for arg in node.all_input_nodes):
                constant.add(node)
    return constant


def _const(imp: _Importer, target: str, tensor: torch.Tensor, scope: str = "") -> str | None:
    if not tensor.is_floating_point():
        return None  # e.g. BatchNorm's num_batches_tracked: never read by inference ops
    if not torch.isfinite(tensor).all():
        raise UsageError(f"weight {target} contains NaN or Inf; the model cannot be compiled")
    return imp.builder.const(target, tensor.to(torch.float32) if tensor.dtype != torch.float64
                             else tensor, scope)


def _check_shape(imp: _Importer, node: fx.Node, result: Any) -> None:
    if not isinstance(result, str):
        return
    val = node.meta.get("val")
    if not isinstance(val, torch.Tensor):
        return
    got = imp.builder.type_of(result).shape
    want = imp.shape(node)
    if got != want:
        raise IRError(f"frontend mis-translated {_op_name(node.target)} at "
                      f"{source_location(node)}: IR shape {D.fmt_shape(got)}, torch shape "
                      f"{D.fmt_shape(want)}")
