"""DetNet: unfolded projected gradient descent (Samuel, Diskin, Wiesel, "Learning to Detect").

Each of the ``L`` blocks refines a soft estimate ``x_k`` of the ``K = 2 Nt``
real unknowns and an auxiliary state ``v_k`` (real-valued model of docs/design.md
section 2)::

    q_k     = [H^T y, x_k, H^T H x_k, v_k]                (3K + V inputs)
    z_k     = ReLU(W1_k q_k + b1_k)                        (hidden units)
    x_new   = psi_t(W2_k z_k + b2_k)                       (soft sign, or one-hot head)
    v_new   = W3_k z_k + b3_k
    x_{k+1} = (1 - a) x_new + a x_k,   v_{k+1} = (1 - a) v_new + a v_k

with ``x_0 = 0``, ``v_0 = 0`` and the soft sign
``psi_t(u) = s (-1 + ReLU(u + |t|)/|t| - ReLU(u - |t|)/|t|)`` (learnable ``t``
per block, ``s`` the largest PAM level of the constellation). Multi-level
constellations (16/64-QAM) use a one-hot head instead: ``W2 z + b2`` gives,
per real dimension, logits over the ``P`` PAM levels and ``x_new`` is the
expected level under their softmax. The residual mixing with ``a = 0.9`` is
applied to ``x`` and ``v`` as in the authors' code.

Training minimises ``sum_k log(k) ||x - x_k||^2 / ||x - x_ZF||^2`` (mean over
symbol vectors), the error of every block normalised by the zero-forcing error
of the same draw (computed from the receiver's ``H`` and ``y``; MMSE when
``Nt > Nr``, where ZF is undefined).

Rates: ``H^T H`` is computed once per slot, ``H^T y`` once per symbol vector,
so the compiler can split slot-rate from symbol-rate work. Both are divided by
``Nr`` (a constant the compiler folds) so that block inputs are O(1) for every
array size and the soft sign does not start saturated.

Example::

    >>> model = DetNet(DetNetConfig(nt=8, nr=16, modulation="qpsk", layers=10))
    >>> H, y = torch.randn(4, 32, 16), torch.randn(4, 14, 32)
    >>> model(H, y).shape
    torch.Size([4, 14, 16])
    >>> model.set_depth(6)   # evaluate with the trailing 4 blocks removed
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from mimoc.detectors.base import DetectorConfig, DetectorModule
from mimoc.detectors.flops import SLOT_SYMBOLS
from mimoc.errors import UsageError
from mimoc.sim.detectors.linear import mmse, zf
from mimoc.sim.modulation import get_constellation
from mimoc.sim.system import LinkBatch

# |t| is kept away from 0 so the soft sign's slopes 1/|t| stay finite.
_MIN_T = 1e-3
# Floor of the ZF error in the loss normaliser (a near-noiseless draw).
_MIN_ZF_ERROR = 1e-6


@dataclass
class DetNetConfig(DetectorConfig):
    """DetNet sizes and options; ``None`` sizes follow the conference paper.

    Attributes:
        layers: number of blocks ``L`` (default ``3K`` with ``K = 2 Nt``).
        hidden: hidden units per block (default ``8K``).
        v_dim: size of the auxiliary state ``v`` (default ``2K``).
        residual: residual mixing weight ``a`` of the previous estimate.
        t_init: initial soft-sign threshold ``t``.
        one_hot: use the one-hot (PAM-level softmax) head; ``None`` picks it
            for multi-level constellations (16/64-QAM).
        depth: blocks used at inference (``None``: all ``L``). Trailing blocks
            beyond it are removed; the output is the last kept block's.
    """

    layers: int | None = None
    hidden: int | None = None
    v_dim: int | None = None
    residual: float = 0.9
    t_init: float = 0.5
    one_hot: bool | None = None
    depth: int | None = None

    def validate(self) -> None:
        super().validate()
        for name in ("layers", "hidden", "v_dim"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise UsageError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 <= self.residual < 1.0:
            raise UsageError(f"residual must be in [0, 1), got {self.residual!r}")
        if not self.t_init > 0.0:
            raise UsageError(f"t_init must be positive, got {self.t_init!r}")
        if self.depth is not None:
            layers = self.layers if self.layers is not None else 3 * self.real_dims[1]
            if (isinstance(self.depth, bool) or not isinstance(self.depth, int)
                    or not 1 <= self.depth <= layers):
                raise UsageError(
                    f"depth must be an integer in 1..{layers} (the number of layers), "
                    f"got {self.depth!r}"
                )

    def resolved(self) -> DetNetConfig:
        """A copy with every ``None`` size replaced by its default."""
        k = self.real_dims[1]
        multi_level = get_constellation(self.modulation).levels.numel() > 2
        return replace(
            self,
            layers=self.layers if self.layers is not None else 3 * k,
            hidden=self.hidden if self.hidden is not None else 8 * k,
            v_dim=self.v_dim if self.v_dim is not None else 2 * k,
            one_hot=self.one_hot if self.one_hot is not None else multi_level,
        )


def soft_sign(u: torch.Tensor, t: torch.Tensor, scale: float) -> torch.Tensor:
    """``scale * (-1 + ReLU(u + |t|)/|t| - ReLU(u - |t|)/|t|)``: linear on ``|u| < |t|``."""
    at = t.abs().clamp_min(_MIN_T)
    return scale * (-1.0 + F.relu(u + at) / at - F.relu(u - at) / at)


class DetNetBlock(nn.Module):
    """One unfolded iteration: ``fc1`` (input sub-layer), ``fc2`` (x), ``fc3`` (v).

    The last block of a network has no ``fc3`` (its ``v`` would be unused);
    a one-hot head has no soft-sign threshold ``t``.
    ``coefficients()`` gives the per-hidden-unit scale applied before ``fc2``
    and ``fc3``; DetNet has none (``None``), WeSNet overrides it.
    """

    def __init__(self, k: int, hidden: int, v_dim: int, out_dim: int, t_init: float | None,
                 has_v: bool):
        super().__init__()
        self.fc1 = nn.Linear(3 * k + v_dim, hidden)
        self.fc2 = nn.Linear(hidden, out_dim)
        self.fc3 = nn.Linear(hidden, v_dim) if has_v else None
        self.t = None if t_init is None else nn.Parameter(torch.tensor(float(t_init)))

    def coefficients(self) -> torch.Tensor | None:
        """Profile coefficients of the hidden units ``[hidden]``, or ``None`` (all ones)."""
        return None

    def hidden_units(self, q: torch.Tensor) -> torch.Tensor:
        """``beta * ReLU(W1 q + b1)`` ``[..., hidden]``."""
        z = F.relu(self.fc1(q))
        beta = self.coefficients()
        return z if beta is None else z * beta


class DetNet(DetectorModule):
    """DetNet detector (see the module docstring for the model)."""

    family = "detnet"
    Config = DetNetConfig
    supports_real = True  # the paper's own system; WeSNet inherits it

    def __init__(self, config: DetNetConfig):
        super().__init__(config)
        self.config = config.resolved()
        cfg = self.config
        const = self.constellation
        self.k = cfg.real_dims[1]
        self.n_levels = const.levels.numel()
        out_dim = self.k * self.n_levels if cfg.one_hot else self.k
        self.register_buffer("levels", const.levels.to(torch.float32), persistent=False)
        self.level_scale = float(const.levels.abs().max())
        self.blocks = nn.ModuleList(
            self._make_block(index, out_dim) for index in range(cfg.layers)
        )

    def _make_block(self, index: int, out_dim: int) -> DetNetBlock:
        cfg = self.config
        return DetNetBlock(self.k, cfg.hidden, cfg.v_dim, out_dim, self.block_t_init,
                           has_v=index < cfg.layers - 1)

    @property
    def block_t_init(self) -> float | None:
        """Initial soft-sign threshold of the blocks (``None`` for the one-hot head)."""
        return None if self.config.one_hot else self.config.t_init

    # -- depth (layer removal) ------------------------------------------------

    @property
    def depth(self) -> int:
        """Blocks used by :meth:`forward` (``config.depth``, or all of them)."""
        return self.config.depth if self.config.depth is not None else self.config.layers

    def set_depth(self, depth: int | None) -> None:
        """Evaluate with the first ``depth`` blocks only (``None``: all ``L``)."""
        if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int)
                                  or not 1 <= depth <= self.config.layers):
            raise UsageError(
                f"depth must be an integer in 1..{self.config.layers}, got {depth!r}"
            )
        self.config.depth = depth

    # -- forward ---------------------------------------------------------------

    def channel_products(self, H: torch.Tensor, y: torch.Tensor):
        """Slot-rate ``H^T H / Nr`` ``[B, K, K]`` and symbol-rate ``H^T y / Nr`` ``[B, S, K]``."""
        scale = 1.0 / self.config.nr
        gram = (H.transpose(-1, -2) @ H) * scale
        hty = (y @ H) * scale
        return gram, hty

    def _check_shapes(self, H: torch.Tensor, y: torch.Tensor) -> None:
        # static sizes only, so torch.export traces through it
        rows, cols = self.config.real_dims[0], self.k
        if H.dim() != 3 or tuple(H.shape[1:]) != (rows, cols):
            raise UsageError(f"H must be [B, {rows}, {cols}] for this {self.family} "
                             f"({self.config.nt}x{self.config.nr}), got {list(H.shape)}")
        if y.dim() != 3 or y.shape[-1] != rows:
            raise UsageError(f"y must be [B, S, {rows}], got {list(y.shape)}")

    def _head(self, block: DetNetBlock, z: torch.Tensor) -> torch.Tensor:
        """The block's new estimate ``x_new`` ``[B, S, K]`` from hidden units ``z``."""
        u = block.fc2(z)
        if not self.config.one_hot:
            return soft_sign(u, block.t, self.level_scale)
        probs = torch.softmax(u.unflatten(-1, (self.k, self.n_levels)), dim=-1)
        return probs @ self.levels

    def block_outputs(self, H: torch.Tensor, y: torch.Tensor,
                      depth: int | None = None) -> list[torch.Tensor]:
        """Estimates ``x_1 .. x_depth`` ``[B, S, K]`` of the first ``depth`` blocks."""
        depth = self.config.layers if depth is None else depth
        self._check_shapes(H, y)
        gram, hty = self.channel_products(H, y)
        a = self.config.residual
        x = torch.zeros_like(hty)
        v = hty.new_zeros(hty.shape[:-1] + (self.config.v_dim,))
        outputs = []
        for index in range(depth):
            block = self.blocks[index]
            q = torch.cat([hty, x, x @ gram, v], dim=-1)
            z = block.hidden_units(q)
            x = (1.0 - a) * self._head(block, z) + a * x
            outputs.append(x)
            if index + 1 < depth:  # static: the last used block's v is never needed
                v = (1.0 - a) * block.fc3(z) + a * v
        return outputs

    def forward(self, H: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Soft estimate ``[B, S, 2Nt]`` of the transmitted real symbols."""
        return self.block_outputs(H, y, self.depth)[-1]

    def quant_input_differences(self) -> dict[str, tuple[int, int, int]]:
        """Every ``fc1`` quantizes ``[H^T y - H^T H x, x, H^T H x, v]``: the gradient step
        gets the 4-bit grid (:mod:`mimoc.quant.spec`, difference coding)."""
        return {f"blocks.{i}.fc1": (0, 2 * self.k, self.k) for i in range(len(self.blocks))}

    # -- training ------------------------------------------------------------

    def detection_loss(self, batch: LinkBatch) -> torch.Tensor:
        """``sum_k w_k mean(||x - x_k||^2 / ||x - x_ZF||^2)`` with ``w_k = log k``.

        A one-block network (whose only weight would be ``log 1 = 0``) uses weight 1.
        """
        outputs = self.block_outputs(batch.H_est, batch.y)
        with torch.no_grad():
            linear = zf if self.config.nt <= self.config.nr else mmse
            x_ref = linear(batch.H_est, batch.y, batch.noise_var, self.constellation)
            ref_error = (batch.x - x_ref).square().sum(-1).clamp_min(_MIN_ZF_ERROR)
        weights = [math.log(k) for k in range(1, len(outputs) + 1)]
        if len(outputs) == 1:
            weights = [1.0]
        loss = batch.x.new_zeros(())
        for weight, x_k in zip(weights, outputs, strict=True):
            if weight > 0.0:
                loss = loss + weight * ((batch.x - x_k).square().sum(-1) / ref_error).mean()
        return loss

    def training_loss(self, batch: LinkBatch) -> torch.Tensor:
        return self.detection_loss(batch)

    # -- complexity -------------------------------------------------------------

    def block_hidden_units(self, block: DetNetBlock) -> int:
        """Hidden units of ``block`` that remain after pruning zero coefficients."""
        beta = block.coefficients()
        return block.fc1.out_features if beta is None else int((beta != 0).sum())

    def complexity(self) -> dict:
        """Parameters and FLOPs of the network as deployed (current depth, pruned).

        FLOPs follow docs/design.md and :mod:`mimoc.detectors.flops` (2 x
        multiply-accumulates; biases, activations, the soft sign, the softmax
        and the residual mixing not counted). Unlike a trace of ``forward``,
        hidden units whose profile coefficient is 0 count as removed (the
        compiler's prune pass drops them; non-zero coefficients fold into
        ``fc2``/``fc3``), as do the blocks beyond :attr:`depth`; the last kept
        block's ``v`` layer is never computed. Slot rate: ``H^T H``; symbol
        rate: ``H^T y`` and the blocks; ``flops_per_slot`` is the slot-rate
        work plus ``SLOT_SYMBOLS`` (14) symbol vectors.

        Returns:
            ``{"params", "flops_per_symbol", "flops_slot_rate", "flops_per_slot",
            "layers": [...]}`` with, per kept block, ``name``, ``hidden``,
            ``params`` and ``flops`` (per symbol vector).
        """
        cfg = self.config
        k, n_rx = self.k, cfg.real_dims[0]
        out_dim = self.k * self.n_levels if cfg.one_hot else self.k
        layers = []
        for index in range(self.depth):
            hidden = self.block_hidden_units(self.blocks[index])
            has_v = index + 1 < self.depth
            macs = k * k + (3 * k + cfg.v_dim) * hidden + hidden * out_dim
            params = (3 * k + cfg.v_dim + 1) * hidden + (hidden + 1) * out_dim
            params += 0 if cfg.one_hot else 1  # the soft-sign threshold t
            if cfg.one_hot:
                macs += k * self.n_levels  # expected level
            if has_v:
                macs += hidden * cfg.v_dim
                params += (hidden + 1) * cfg.v_dim
            layers.append({"name": f"blocks.{index}", "hidden": hidden, "params": params,
                           "flops": 2 * macs})
        per_symbol = 2 * k * n_rx + sum(layer["flops"] for layer in layers)
        slot_rate = 2 * k * k * n_rx
        return {
            "params": sum(layer["params"] for layer in layers),
            "flops_per_symbol": per_symbol,
            "flops_slot_rate": slot_rate,
            "flops_per_slot": slot_rate + SLOT_SYMBOLS * per_symbol,
            "layers": layers,
        }
