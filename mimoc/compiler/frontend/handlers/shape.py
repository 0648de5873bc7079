"""Handlers of layout ATen ops: concatenation, reshapes, permutations, size-1 dims,
slicing and indexing, broadcasting and tiling."""

from __future__ import annotations

from typing import Any

import torch
from torch import fx

from mimoc.compiler.dims import Sym
from mimoc.compiler.frontend.diagnostics import unsupported
from mimoc.compiler.frontend.state import Handler

aten = torch.ops.aten


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
        raise unsupported(node, "slice bounds that depend on a dynamic size")
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
            raise unsupported(node, f"a partial slice of the dynamic dim {size}")
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
        raise unsupported(node, f"indexing the dynamic dim {shape[axis]}")
    return imp.emit("Select", [x], {"axis": axis, "index": index % shape[axis]}, node)


def _unbind(imp, node):
    x = imp.value(node.args[0], node)
    shape = imp.builder.type_of(x).shape
    axis = int(imp.arg(node, 1, "dim", 0)) % len(shape)
    if not isinstance(shape[axis], int):
        raise unsupported(node, f"unbinding the dynamic dim {shape[axis]}")
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
        raise unsupported(node, "repeat counts that depend on a dynamic size")
    return imp.emit("Tile", [imp.value(node.args[0], node)], {"repeats": reps}, node)


HANDLERS: dict[Any, Handler] = {
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
}
