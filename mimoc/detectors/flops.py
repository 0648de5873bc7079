"""FLOP counting for detectors, split into slot-rate and symbol-rate work.

Convention (docs/design.md section 2): FLOPs = 2 x multiply-accumulates; biases,
activations, normalisations and other elementwise work are not counted. The
counts are of what the module's ``forward`` executes on one slot (batch 1),
with the per-op formulas of :class:`torch.utils.flop_counter.FlopCounterMode`
(matmuls, convolutions, attention) extended with formulas for ops it does not
know (below). Each op is credited to the innermost module running it, so the
per-layer rows add up to the totals (FlopCounterMode credits every enclosing
module, which over-counts when a parent calls a child's submodules directly).

Rate split. A detector sees ``S`` symbols per channel realisation; its work is
affine in ``S``::

    flops(S) = F_slot + S * F_symbol

where ``F_slot`` depends on ``H`` only (e.g. ``H^T H`` or ``pinv(H)`` computed
once per slot) and ``F_symbol`` is repeated for every received vector. Two
forward passes with ``S = 1`` and ``S = 2`` give
``F_symbol = flops(2) - flops(1)`` and ``F_slot = flops(1) - F_symbol``.
:class:`FlopReport` reports ``flops_per_symbol = F_symbol`` and
``flops_per_slot = F_slot + 14 F_symbol`` (a 5G NR slot of 14 OFDM symbols).

Extra formulas (``n x n`` systems, ``k`` right-hand sides, per batch element):
``mv``/``addmv`` ``2mn``; ``dot`` ``2n``; ``linalg.inv`` ``2n^3``
(Gauss-Jordan); ``linalg.solve`` ``2n^3/3 + 2n^2 k`` (LU + two triangular
solves); ``cholesky`` ``n^3/3``; ``cholesky_solve`` ``2n^2 k``; triangular
solve ``n^2 k``; ``pinv`` of an ``m x n`` matrix (``m >= n``) as the normal
equations ``(A^T A)^-1 A^T``: ``4mn^2 + 2n^3``; CPU flash attention
``2 L S (E + E_v)`` per head. Matrix ops without a formula (an SVD, an
eigendecomposition...) are listed in :attr:`FlopReport.uncounted`.

Example::

    >>> report = count_flops(model)
    >>> report.flops_per_symbol, report.flops_per_slot, report.params
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry, shape_wrapper

from mimoc.detectors.base import DetectorModule
from mimoc.sim.numerology import SLOT_SYMBOLS

#: Symbols per slot used for ``flops_per_slot`` (14 OFDM symbols in a 5G NR slot).

aten = torch.ops.aten


@dataclass
class LayerFlops:
    """One row of the per-layer table: a module's own parameters and FLOPs
    (its children's are in their own rows, so the rows add up to the totals)."""

    name: str
    type: str
    params: int
    flops_per_symbol: int
    flops_slot_rate: int
    flops_per_slot: int


@dataclass
class FlopReport:
    """FLOPs and parameters of a detector (see the module docstring).

    Attributes:
        flops_per_symbol: symbol-rate FLOPs, repeated for every received vector.
        flops_slot_rate: channel-only FLOPs, once per slot.
        flops_per_slot: ``flops_slot_rate + slot_symbols * flops_per_symbol``.
        slot_symbols: symbols per slot used for ``flops_per_slot`` (14).
        params: trainable and frozen parameters (shared ones counted once).
        layers: per-module rows.
        uncounted: matrix ops that ran but have no FLOP formula.
    """

    flops_per_symbol: int
    flops_slot_rate: int
    flops_per_slot: int
    slot_symbols: int
    params: int
    layers: list[LayerFlops] = field(default_factory=list)
    uncounted: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def count_params(model: nn.Module) -> int:
    """Number of parameter entries, each shared tensor counted once."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: DetectorModule, *, slot_symbols: int = SLOT_SYMBOLS,
                nt: int | None = None, nr: int | None = None) -> FlopReport:
    """Count ``model``'s FLOPs per symbol and per slot, with a per-layer breakdown.

    Args:
        model: a detector with ``forward(H [B, 2Nr, 2Nt], y [B, S, 2Nr])``.
        slot_symbols: ``S`` of ``flops_per_slot``.
        nt, nr: sizes to count at (default: the model's config; RE-MIMO
            counts at its configured ``nt``).
    """
    nt = model.config.nt if nt is None else nt
    nr = model.config.nr if nr is None else nr
    gen = torch.Generator().manual_seed(0)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    scale = 1 if getattr(model.config, "system", "complex") == "real" else 2  # H [Nr, Nt]
    H = torch.randn(1, scale * nr, scale * nt, generator=gen, dtype=dtype) / math.sqrt(scale)
    y = torch.randn(1, 2, scale * nr, generator=gen, dtype=dtype)

    was_training = model.training
    model.eval()
    try:
        one = _count_by_module(model, H, y[:, :1])
        two = _count_by_module(model, H, y)
    finally:
        model.train(was_training)

    layers = []
    for name, module in model.named_modules():
        own_1, own_2 = one.flops.get(name, 0), two.flops.get(name, 0)
        params = sum(p.numel() for p in module.parameters(recurse=False))
        if params == 0 and own_1 == 0 and own_2 == 0:
            continue
        symbol = own_2 - own_1
        slot_rate = own_1 - symbol
        layers.append(LayerFlops(name or "(top)", type(module).__name__, params, symbol,
                                 slot_rate, slot_rate + slot_symbols * symbol))

    total_1, total_2 = sum(one.flops.values()), sum(two.flops.values())
    symbol = total_2 - total_1
    slot_rate = total_1 - symbol
    uncounted = sorted(str(op) for op in (one.ops | two.ops) if _is_uncounted_matrix_op(op))
    return FlopReport(flops_per_symbol=symbol, flops_slot_rate=slot_rate,
                      flops_per_slot=slot_rate + slot_symbols * symbol,
                      slot_symbols=slot_symbols, params=count_params(model),
                      layers=layers, uncounted=uncounted)


def _count_by_module(model: nn.Module, H: torch.Tensor, y: torch.Tensor) -> _ModuleFlopCounter:
    """Run ``model(H, y)`` once, counting every op's FLOPs for the innermost module running it."""
    counter = _ModuleFlopCounter(model)
    pre = torch.nn.modules.module.register_module_forward_pre_hook(counter.enter)
    post = torch.nn.modules.module.register_module_forward_hook(counter.leave)
    try:
        with torch.no_grad(), counter:
            model(H, y)
    finally:
        pre.remove()
        post.remove()
    return counter


class _ModuleFlopCounter(TorchDispatchMode):
    """FLOPs per module name (``""`` = the root), each op counted once, for the innermost
    module of the model that is running when it executes.

    The formulas are FlopCounterMode's (``torch.utils.flop_counter.flop_registry``) plus
    :data:`EXTRA_FORMULAS`. FlopCounterMode itself credits an op to every enclosing module,
    which cannot be undone when a parent calls a child's submodules directly; a module
    stack kept by global forward hooks gives exact per-module rows instead.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.names = {}
        for name, module in model.named_modules():
            self.names.setdefault(id(module), name)
        self.stack: list[tuple[nn.Module, str]] = []
        self.flops: dict[str, int] = {}
        self.ops: set = set()

    def enter(self, module, args):
        name = self.names.get(id(module))
        if name is not None:
            self.stack.append((module, name))

    def leave(self, module, args, output):
        if self.stack and self.stack[-1][0] is module:
            self.stack.pop()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func.overloadpacket
        self.ops.add(packet)
        formula = _FORMULAS.get(packet)
        if formula is not None:
            where = self.stack[-1][1] if self.stack else ""
            self.flops[where] = self.flops.get(where, 0) + int(formula(*args, **kwargs,
                                                                        out_val=out))
        return out


_MATRIX_OP = re.compile(
    r"^_*linalg_|(^|_)(svd|eigh?|qr|lstsq|cholesky|inverse|inv|pinv|solve|convolution|attention"
    r"|fft\w*|lu|matmul|einsum|tensordot|det|slogdet)(_|$)|mm$|^(add)?mv$|dot$")
_NOT_COMPUTE = {"_linalg_check_errors"}


def _is_uncounted_matrix_op(op) -> bool:
    name = str(op).removeprefix("aten.")
    return op not in flop_registry and op not in EXTRA_FORMULAS \
        and name not in _NOT_COMPUTE and bool(_MATRIX_OP.search(name))


# ----------------------------------------------------------------------------- formulas
# FlopCounterMode calls these with tensor arguments replaced by their shapes.

def _batch(shape, core: int) -> int:
    return math.prod(shape[:-core]) if len(shape) > core else 1


def _mv_flop(a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    m, n = a_shape
    return 2 * m * n


def _addmv_flop(bias_shape, a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    return _mv_flop(a_shape, b_shape)


def _dot_flop(a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * a_shape[0]


def _inv_flop(a_shape, *args, out_shape=None, **kwargs) -> int:
    n = a_shape[-1]
    return _batch(a_shape, 2) * 2 * n**3


def _rhs(b_shape, n: int) -> int:
    """Right-hand-side columns of ``B`` (a vector counts as one)."""
    return b_shape[-1] if len(b_shape) >= 2 and b_shape[-2] == n else 1


def _solve_flop(a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    n = a_shape[-1]
    batch = max(_batch(a_shape, 2), _batch(b_shape, 2))
    return batch * round(2 * n**3 / 3 + 2 * n**2 * _rhs(b_shape, n))


def _cholesky_flop(a_shape, *args, out_shape=None, **kwargs) -> int:
    n = a_shape[-1]
    return _batch(a_shape, 2) * round(n**3 / 3)


def _cholesky_solve_flop(b_shape, l_shape, *args, out_shape=None, **kwargs) -> int:
    n = l_shape[-1]
    return max(_batch(b_shape, 2), _batch(l_shape, 2)) * 2 * n**2 * b_shape[-1]


def _triangular_solve_flop(a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    # linalg_solve_triangular(A, B); triangular_solve(B, A) has them swapped: n from the square one
    square, rhs = (a_shape, b_shape) if a_shape[-1] == a_shape[-2] else (b_shape, a_shape)
    n = square[-1]
    return max(_batch(square, 2), _batch(rhs, 2)) * n**2 * rhs[-1]


def _pinv_flop(a_shape, *args, out_shape=None, **kwargs) -> int:
    m, n = max(a_shape[-2:]), min(a_shape[-2:])
    return _batch(a_shape, 2) * (4 * m * n**2 + 2 * n**3)


def _cpu_attention_flop(q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs) -> int:
    *lead, length, e = q_shape
    source, e_v = k_shape[-2], v_shape[-1]
    return math.prod(lead) * 2 * length * source * (e + e_v)


EXTRA_FORMULAS = {
    aten.mv: _mv_flop,
    aten.addmv: _addmv_flop,
    aten.dot: _dot_flop,
    aten.vdot: _dot_flop,
    aten.linalg_inv_ex: _inv_flop,
    aten._linalg_solve_ex: _solve_flop,
    aten.linalg_cholesky_ex: _cholesky_flop,
    aten.cholesky_solve: _cholesky_solve_flop,
    aten.linalg_solve_triangular: _triangular_solve_flop,
    aten.triangular_solve: _triangular_solve_flop,
    aten.linalg_pinv: _pinv_flop,
    aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flop,
}

# Registered FlopCounterMode formulas take the raw arguments; ours take shapes.
_FORMULAS = {**flop_registry, **{op: shape_wrapper(f) for op, f in EXTRA_FORMULAS.items()}}
