"""WeSNet, L-WeSNet and R-WeSNet: DetNet with weight-scaling profiles.

From "Complexity scaling of DNN MIMO detectors" (paper 001). Each DetNet block
(see :mod:`mimoc.detectors.detnet`) multiplies its ``N`` hidden units by
monotone non-increasing profile coefficients ``beta_1 >= ... >= beta_N >= 0``
before the ``x`` and ``v`` sub-layers::

    z_k = beta ⊙ ReLU(W1_k q_k + b1_k),   x_new = psi_t(W2_k z_k + b2_k),   v_new = W3_k z_k + b3_k

Profiles (paper eqs. 23-24, ``i = 1 .. N``):

- linear: ``beta_i = 1 - i/N``;
- half-exponential: ``beta_i = 1`` for ``i <= N/2``, else ``exp(N/2 - i - 1)``.

A retained fraction ``f`` keeps the first ``round(f N)`` coefficients and sets
the rest to exactly 0 (training and inference), so the compiler's prune pass
can delete those units (rows of ``W1``, columns of ``W2``/``W3``) and fold the
others into ``W2``/``W3``: "WeSNet-HF-50%" is ``profile="half-exp",
retained=0.5``.

Where the profile acts: the paper scales the inputs of the first sub-layer
(eq. 25) and the hidden units feeding the ``v`` sub-layer (eq. 26). mimoc
scales the hidden units feeding both the ``x`` and the ``v`` sub-layers
(docs/design.md section 8): then a zero coefficient removes a whole hidden unit,
which is where the FLOP and parameter savings of the retained fraction come
from.

- **L-WeSNet** (``learnable_profile=True``): each block learns its own profile,
  monotone by construction: ``beta_i = ReLU(1 - sum_{j<=i} softplus(d_j))``
  for the retained units (initialised at the fixed profile), 0 beyond them.
- **R-WeSNet** (``l1_lambda > 0``): the loss adds the depth-growing log-L1
  penalty of paper eqs. 28-30,
  ``lambda * sum_r log(1 + (r - 1) |beta_r W_r|)`` with
  ``|beta_r W_r| = sum over the block's sub-layers of the profile-scaled
  absolute weights``, so trailing blocks can be removed at inference
  (:meth:`WeSNet.set_depth`, :meth:`WeSNet.depth_for_threshold`).

Example::

    >>> model = WeSNet(WeSNetConfig(nt=8, nr=16, layers=10, profile="half-exp",
    ...                             retained=0.5))
    >>> int((model.blocks[0].coefficients() == 0).sum())   # hidden = 8K = 128
    64
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mimoc.detectors.detnet import DetNet, DetNetBlock, DetNetConfig
from mimoc.errors import UsageError
from mimoc.sim.system import LinkBatch

PROFILES = ("linear", "half-exp")

# Smallest initial decrement of a learnable profile (softplus never reaches 0).
_MIN_DECREMENT = 1e-6


def retained_units(n: int, retained: float) -> int:
    """Number of leading units a retained fraction keeps: ``round(retained * n)``, at least 1."""
    return max(1, min(n, math.floor(retained * n + 0.5)))


def profile_coefficients(kind: str, n: int, retained: float = 1.0) -> torch.Tensor:
    """The fixed profile ``[n]`` (paper eqs. 23-24), zero beyond the retained units.

    >>> profile_coefficients("linear", 4)
    tensor([0.7500, 0.5000, 0.2500, 0.0000])
    """
    i = torch.arange(1, n + 1, dtype=torch.float64)
    if kind == "linear":
        beta = 1.0 - i / n
    elif kind == "half-exp":
        beta = torch.where(i <= n / 2, torch.ones_like(i), torch.exp(n / 2 - i - 1))
    else:
        raise UsageError(f"unknown profile {kind!r}; choose one of {', '.join(PROFILES)}")
    beta[retained_units(n, retained):] = 0.0
    return beta.to(torch.float32)


@dataclass
class WeSNetConfig(DetNetConfig):
    """DetNet sizes plus the profile options.

    Attributes:
        profile: ``"linear"`` or ``"half-exp"`` (paper eqs. 23-24).
        retained: fraction of hidden units kept (coefficient 0 beyond it).
        learnable_profile: L-WeSNet (a learnable monotone profile per block).
        l1_lambda: R-WeSNet regularisation weight ``lambda`` (0: none).
    """

    profile: str = "half-exp"
    retained: float = 0.5
    learnable_profile: bool = False
    l1_lambda: float = 0.0

    def validate(self) -> None:
        super().validate()
        if self.profile not in PROFILES:
            raise UsageError(
                f"unknown profile {self.profile!r}; choose one of {', '.join(PROFILES)}"
            )
        if not 0.0 < self.retained <= 1.0:
            raise UsageError(f"retained must be a fraction in (0, 1], got {self.retained!r}")
        if not self.l1_lambda >= 0.0:
            raise UsageError(f"l1_lambda must be >= 0, got {self.l1_lambda!r}")


class FixedProfile(nn.Module):
    """A constant profile (a buffer, so checkpoints carry it)."""

    def __init__(self, beta: torch.Tensor):
        super().__init__()
        self.register_buffer("beta", beta.clone())

    def forward(self) -> torch.Tensor:
        return self.beta


class LearnableProfile(nn.Module):
    """``beta_i = ReLU(1 - sum_{j<=i} softplus(d_j))`` for the kept units, 0 after them.

    Every decrement ``softplus(d_j)`` is positive, so the profile is
    non-increasing and at most 1 whatever the parameters; the ReLU keeps it
    non-negative (and lets a learned tail reach exact zeros).
    """

    def __init__(self, initial: torch.Tensor, kept: int):
        super().__init__()
        beta = initial[:kept].double()
        previous = torch.cat([beta.new_ones(1), beta[:-1]])
        decrements = (previous - beta).clamp_min(_MIN_DECREMENT)
        self.decrements = nn.Parameter(torch.log(torch.expm1(decrements)).float())
        self.register_buffer("tail", torch.zeros(initial.numel() - kept))

    def forward(self) -> torch.Tensor:
        kept = F.relu(1.0 - torch.cumsum(F.softplus(self.decrements), dim=0))
        return torch.cat([kept, self.tail])


class WeSNetBlock(DetNetBlock):
    """A DetNet block whose hidden units are scaled by ``profile()``."""

    def __init__(self, profile: nn.Module, **kwargs):
        super().__init__(**kwargs)
        self.profile = profile

    def coefficients(self) -> torch.Tensor:
        return self.profile()

    def scaled_l1(self) -> torch.Tensor:
        """``|beta W|``: profile-scaled absolute weights summed over the sub-layers."""
        beta = self.coefficients()
        total = (self.fc1.weight.abs().sum(1) * beta).sum()
        total = total + (self.fc2.weight.abs().sum(0) * beta).sum()
        if self.fc3 is not None:
            total = total + (self.fc3.weight.abs().sum(0) * beta).sum()
        return total


class WeSNet(DetNet):
    """WeSNet / L-WeSNet / R-WeSNet (see the module docstring)."""

    family = "wesnet"
    Config = WeSNetConfig

    def _make_block(self, index: int, out_dim: int) -> WeSNetBlock:
        cfg = self.config
        beta = profile_coefficients(cfg.profile, cfg.hidden, cfg.retained)
        if cfg.learnable_profile:
            profile = LearnableProfile(beta, retained_units(cfg.hidden, cfg.retained))
        else:
            profile = FixedProfile(beta)
        return WeSNetBlock(profile, k=self.k, hidden=cfg.hidden, v_dim=cfg.v_dim,
                           out_dim=out_dim, t_init=self.block_t_init,
                           has_v=index < cfg.layers - 1)

    # -- R-WeSNet --------------------------------------------------------------

    def layer_l1_norms(self) -> torch.Tensor:
        """``|beta_r W_r|`` of every block ``[L]`` (the quantity R-WeSNet penalises)."""
        with torch.no_grad():
            return torch.stack([block.scaled_l1() for block in self.blocks])

    def l1_penalty(self) -> torch.Tensor:
        """``sum_r log(1 + (r - 1) |beta_r W_r|)`` over all ``L`` blocks (without lambda)."""
        # enumerate counts from 0, i.e. r - 1 for the paper's 1-based r.
        terms = [torch.log1p(r_minus_1 * block.scaled_l1())
                 for r_minus_1, block in enumerate(self.blocks)]
        return torch.stack(terms).sum()

    def training_loss(self, batch: LinkBatch) -> torch.Tensor:
        loss = self.detection_loss(batch)
        if self.config.l1_lambda > 0.0:
            loss = loss + self.config.l1_lambda * self.l1_penalty()
        return loss

    def depth_for_threshold(self, threshold: float, relative: bool = False) -> int:
        """Depth left after removing the trailing blocks whose ``|beta_r W_r|`` < threshold.

        With ``relative=True`` the threshold is a fraction of the largest block
        norm. At least one block is always kept.
        """
        norms = self.layer_l1_norms()
        if relative:
            threshold = threshold * float(norms.max())
        depth = len(norms)
        while depth > 1 and float(norms[depth - 1]) < threshold:
            depth -= 1
        return depth

    # -- pruning -----------------------------------------------------------------

    def to_detnet(self) -> DetNet:
        """An equivalent DetNet without zero-coefficient units, the profile folded in.

        Each block keeps the units whose coefficient is non-zero (the leading
        ones, padded with zero-coefficient units up to the largest count over
        the blocks); ``beta`` multiplies the kept columns of ``W2`` and ``W3``.
        The result computes the same outputs (to float rounding).
        """
        cfg = self.config
        betas = [block.coefficients().detach() for block in self.blocks]
        # Profiles are non-increasing, so the non-zero coefficients lead.
        hidden = max(1, max(int((beta != 0).sum()) for beta in betas))
        pruned = DetNet(DetNetConfig(
            nt=cfg.nt, nr=cfg.nr, modulation=cfg.modulation, system=cfg.system,
            layers=cfg.layers,
            hidden=hidden, v_dim=cfg.v_dim, residual=cfg.residual, t_init=cfg.t_init,
            one_hot=cfg.one_hot, depth=cfg.depth,
        ))
        with torch.no_grad():
            for source, target, beta in zip(self.blocks, pruned.blocks, betas, strict=True):
                keep = beta[:hidden]
                target.fc1.weight.copy_(source.fc1.weight[:hidden])
                target.fc1.bias.copy_(source.fc1.bias[:hidden])
                target.fc2.weight.copy_(source.fc2.weight[:, :hidden] * keep)
                target.fc2.bias.copy_(source.fc2.bias)
                if source.fc3 is not None:
                    target.fc3.weight.copy_(source.fc3.weight[:, :hidden] * keep)
                    target.fc3.bias.copy_(source.fc3.bias)
                if source.t is not None:
                    target.t.copy_(source.t)
        return pruned.train(self.training)
