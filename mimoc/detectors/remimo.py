"""RE-MIMO: a recurrent, permutation-equivariant transformer detector.

Pratik, Rao and Welling, "RE-MIMO: Recurrent and Permutation Equivariant
Neural MIMO Detection". Users are tokens; a transformer encoder lets every
user attend to every other one, so the detector treats users as a set: one
model serves any number of users ``Nt`` (trained on ``nt_min..nt``) and
permuting the users permutes its outputs.

Model (real-valued form, docs/design.md section 2). User ``i`` of the complex
system owns the real columns ``i`` and ``i + Nt`` of ``H [B, 2Nr, 2Nt]``;
column ``i`` is ``h_i = [Re h_i; Im h_i]`` (column ``i + Nt`` is its 90-degree
rotation, so it carries nothing new). Every iteration ``t = 1..T`` shares one
encoder and one predictor:

* **likelihood module** (per symbol vector, from the previous estimate
  ``z^{t-1}``; ``z^0 = 0``)::

      dy    = (y - H z^{t-1}) / sqrt(e),      e = mean_rows sum_cols H_r^2 / 2
      g_i   = h_i^H (y - H z^{t-1}) / ||h_i||^2          (2 reals per user)
      sigma = rms(dy)                                     (residual level)

  ``e`` is the received signal power per real dimension (``Nt / 2`` on
  average for CN(0,1) channels), the data-driven form of the paper's
  ``dy / sqrt(2 Nt)``: it keeps the input variance constant across ``Nt``
  and also follows channels that are not unit-variance. ``g_i`` is the
  paper's per-user log-likelihood gradient ``h_i^H dy / sigma^2`` with the
  gradient step chosen per user (``1 / ||h_i||^2``) instead of ``1/sigma^2``,
  so ``z_i + g_i`` is a single-user least-squares update; the paper passes
  ``h_i`` and ``dy`` and lets the network combine them, we pass those too.
* **encoder**: token ``phi_i = [s_i, p_i, z_i, dy, h_i / sqrt(2 p), g_i]``
  (state, class probabilities, current estimate, residual, normalised channel
  column with ``p`` the mean power of ``H_r``'s entries, gradient) ->
  ``s' = LN(s + MHSA(phi))``, ``s = LN(s' + FF(s'))``; multi-head
  self-attention over users, no positional encoding.
* **predictor** (per user, shared weights): ``[s_i, p_i, z_i, dy, h_i, g_i,
  sigma] -> MLP (2 hidden ReLU layers) -> logits``. The classifier works per
  real dimension over the ``sqrt(M)`` PAM levels (Gray QAM is a product of
  two PAMs, so this is exact for the hard decision and needs ``2 sqrt(M)``
  instead of ``M`` outputs); ``z_i`` is the expected level under the softmax,
  so soft outputs lie within the constellation's range.
* **initial state**: ``s_i^0 = LN(MLP([y / sqrt(e), h_i, TE(Nt)]))`` with the
  paper's sinusoidal "transmitters encoding" of ``Nt``.

Noise level: the paper feeds the noise standard deviation ``sigma`` to the
predictor, but ``forward(H, y)`` has no noise input (the deployed detector
sees only ``H`` and ``y``). We estimate it in-graph from the residual energy
``rms(y - H z^{t-1})``: once the estimate is good that residual *is* the
noise (plus what is left of the interference, which the predictor must
weigh too), it costs nothing beyond the residual the likelihood module
computes anyway, and it needs no matrix inverse (a projection-based noise
estimate would add a slot-rate inversion to the compiled graph).

Loss: ``sum_t w_t CE(logits^t, true level)`` averaged over users, real
dimensions and symbols, ``w_t = t^gamma / sum_t t^gamma`` (``loss_growth``
gamma; later iterations weigh more, ``gamma = 0`` is the uniform weighting of
the paper's experiments).

Every linear map on a concatenation is written as a sum of per-part maps
(:class:`TokenProjection`), which is the same function: the channel part
(``h_i``) then depends only on ``H`` and the residual part only on the symbol
vector, so the compiler's rate inference hoists the former to the slot stage
and computes the latter once per symbol rather than once per user.

Shapes: ``H [B, 2Nr, 2Nt]``, ``y [B, S, 2Nr]`` -> ``x_hat [B, S, 2Nt]`` for
any ``Nt`` (accuracy is what training gave for ``nt_min <= Nt <= nt``).

Example::

    >>> model = REMIMO(REMIMOConfig(nt=8, nt_min=4, nr=16, modulation="16qam"))
    >>> batch = MIMOSystem(nt=5, nr=16, modulation="16qam").sample(2, 10.0)
    >>> model(batch.H_est, batch.y).shape
    torch.Size([2, 1, 10])
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mimoc.detectors.base import DetectorConfig, DetectorModule
from mimoc.errors import UsageError
from mimoc.sim.system import LinkBatch, MIMOSystem

NT_SAMPLING = ("triangular", "uniform")
TINY = 1e-12  # floor of the energies the inputs are normalised by


@dataclass
class REMIMOConfig(DetectorConfig):
    """Sizes of a RE-MIMO detector.

    Attributes:
        nt: the largest number of users the model is trained for.
        nt_min: the smallest number of users it is trained for (each training
            batch draws its ``Nt`` in ``[nt_min, nt]``).
        nr: receive antennas (fixed: the channel columns are token features).
        d_model: state size per user.
        heads: attention heads (``d_model`` must be divisible by it).
        ff: hidden size of the encoder's feed-forward sub-layer.
        predictor_hidden: first hidden layer of the predictor (the second is half).
        embed_hidden: hidden layer of the initial-state network.
        iterations: recurrent encoder-predictor iterations ``T``.
        te_dim: size of the transmitters encoding of ``Nt`` (0: none).
        loss_growth: exponent ``gamma`` of the iteration weights ``w_t ~ t^gamma``.
        nt_sampling: ``triangular`` (``P(Nt) ~ Nt - nt_min + 1``, mode at ``nt``
            as in the paper: more users interfere more) or ``uniform``.
    """

    nt: int = 8
    nr: int = 16
    modulation: str = "16qam"
    nt_min: int = 4
    d_model: int = 64
    heads: int = 4
    ff: int = 128
    predictor_hidden: int = 64
    embed_hidden: int = 128
    iterations: int = 6
    te_dim: int = 8
    loss_growth: float = 1.0
    nt_sampling: str = "triangular"

    def validate(self) -> None:
        super().validate()
        for name in ("nt_min", "d_model", "heads", "ff", "predictor_hidden", "embed_hidden",
                     "iterations"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UsageError(f"RE-MIMO {name} must be a positive integer, got {value!r}")
        if self.nt_min > self.nt:
            raise UsageError(
                f"RE-MIMO nt_min={self.nt_min} exceeds nt={self.nt}; nt is the largest "
                "user count, nt_min the smallest"
            )
        if self.d_model % self.heads:
            raise UsageError(
                f"RE-MIMO d_model={self.d_model} is not divisible by heads={self.heads}"
            )
        if not isinstance(self.te_dim, int) or self.te_dim < 0 or self.te_dim % 2:
            raise UsageError(f"RE-MIMO te_dim must be an even integer >= 0, got {self.te_dim!r}")
        if not isinstance(self.loss_growth, (int, float)) or self.loss_growth < 0:
            raise UsageError(f"RE-MIMO loss_growth must be >= 0, got {self.loss_growth!r}")
        if self.nt_sampling not in NT_SAMPLING:
            raise UsageError(
                f"unknown nt_sampling {self.nt_sampling!r}; choose {' or '.join(NT_SAMPLING)}"
            )


class TokenProjection(nn.Module):
    """``W [a; b; ...] + c`` written as ``W_a a + W_b b + ... + c``.

    Parts may broadcast: a part shared by all users (``[B, S, 1, d]``) is
    projected once and broadcast, a part shared by all symbols
    (``[B, 1, Nt, d]``) once per slot.
    """

    def __init__(self, sizes: dict[str, int], out: int):
        super().__init__()
        # one bias for the sum: the first part's
        self.parts = nn.ModuleDict({
            name: nn.Linear(size, out, bias=(i == 0))
            for i, (name, size) in enumerate(sizes.items())
        })

    def forward(self, **parts: torch.Tensor) -> torch.Tensor:
        total = None
        for name, layer in self.parts.items():
            term = layer(parts[name])
            total = term if total is None else total + term
        return total


class SelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention over the user axis (-2).

    ``softmax(Q K^T / sqrt(d_k)) V`` per head, heads concatenated and mixed by
    ``W_o``; no positional encoding, so it is permutation-equivariant.
    """

    def __init__(self, sizes: dict[str, int], d_model: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = TokenProjection(sizes, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, **parts: torch.Tensor) -> torch.Tensor:
        qkv = self.qkv(**parts)  # [B, S, Nt, 3d]
        q, k, v = qkv.unflatten(-1, (3, self.heads, -1)).movedim(-3, 0).transpose(-2, -3)
        # q, k, v: [B, S, heads, Nt, d_k]
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        mixed = torch.softmax(scores, dim=-1) @ v
        return self.out(mixed.transpose(-2, -3).flatten(-2))


class Encoder(nn.Module):
    """``s' = LN(s + MHSA(phi))``, ``s'' = LN(s' + FF(s'))``."""

    def __init__(self, sizes: dict[str, int], d_model: int, heads: int, ff: int):
        super().__init__()
        self.attention = SelfAttention(sizes, d_model, heads)
        self.norm1 = nn.LayerNorm(d_model)
        self.feed_forward = nn.Sequential(nn.Linear(d_model, ff), nn.ReLU(), nn.Linear(ff, d_model))
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, **parts: torch.Tensor) -> torch.Tensor:
        state = self.norm1(parts["state"] + self.attention(**parts))
        return self.norm2(state + self.feed_forward(state))


class Predictor(nn.Module):
    """Per-user classifier: features -> ReLU -> ReLU -> logits over the PAM levels."""

    def __init__(self, sizes: dict[str, int], hidden: int, outputs: int):
        super().__init__()
        self.first = TokenProjection(sizes, hidden)
        self.rest = nn.Sequential(
            nn.ReLU(), nn.Linear(hidden, hidden // 2), nn.ReLU(), nn.Linear(hidden // 2, outputs)
        )

    def forward(self, **parts: torch.Tensor) -> torch.Tensor:
        return self.rest(self.first(**parts))


class REMIMO(DetectorModule):
    """RE-MIMO detector for ``nt_min..nt`` users (see the module docstring)."""

    family = "remimo"
    Config = REMIMOConfig

    def __init__(self, config: REMIMOConfig):
        super().__init__(config)
        const = self.constellation
        self.n_dims = 1 if const.is_real else 2  # real dimensions carrying a PAM symbol
        n_levels = const.levels.numel()
        self.register_buffer("levels", const.levels.to(torch.float32), persistent=False)
        half = torch.arange(config.te_dim // 2, dtype=torch.float32)
        te_freq = (2.0 * config.nr) ** (-2.0 * half / max(config.te_dim, 1))
        self.register_buffer("te_freq", te_freq, persistent=False)

        d, two_nr = config.d_model, 2 * config.nr
        embed_parts = {"received": two_nr, "channel": two_nr}
        if config.te_dim:
            embed_parts["te"] = config.te_dim
        self.embedding_in = TokenProjection(embed_parts, config.embed_hidden)
        self.embedding_out = nn.Sequential(nn.ReLU(), nn.Linear(config.embed_hidden, d),
                                           nn.LayerNorm(d))
        likelihood = {"state": d, "probs": self.n_dims * n_levels, "z": 2, "channel": two_nr,
                      "residual": two_nr, "gradient": 2}
        self.encoder = Encoder(likelihood, d, config.heads, config.ff)
        self.predictor = Predictor({**likelihood, "sigma": 1}, config.predictor_hidden,
                                   self.n_dims * n_levels)

    # -- the model ----------------------------------------------------------
    def forward(self, H: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Soft estimate ``x_hat [B, S, 2Nt]`` (expected PAM levels of the last iteration)."""
        return self._real_of_users(self.iterate(H, y)[-1][1])

    def iterate(self, H: torch.Tensor, y: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Run the ``T`` iterations.

        Returns:
            per iteration ``(logits [B, S, Nt, n_dims, L], z [B, S, Nt, 2])``.
        """
        self._check_shapes(H, y)
        # clamps: an all-zero channel (or a silent user's zero column) gives zeros, not NaN
        mean_power = H.square().mean(dim=(-2, -1))[:, None, None].clamp_min(TINY)  # [B, 1, 1]
        signal = H.square().sum(-1).mean(-1)[:, None, None] / 2  # e: rx power per real dim
        y_scale = signal.clamp_min(TINY).sqrt()
        columns = H.unflatten(-1, (2, -1))[..., 0, :].transpose(-1, -2)  # [B, Nt, 2Nr]
        channel = (columns / (2 * mean_power).sqrt())[:, None]  # [B, 1, Nt, 2Nr]
        column_energy = columns.square().sum(-1)[:, None, :, None].clamp_min(TINY)  # [B,1,Nt,1]

        n_users = torch.ones_like(H[:, 0, :]).sum(-1) / 2  # [B], Nt as data (export-friendly)
        state = self._initial_state(y / y_scale, channel, n_users)

        batch, symbols, users = y.shape[0], y.shape[1], columns.shape[1]
        n_levels = self.levels.numel()
        logits = y.new_zeros((batch, symbols, users, self.n_dims, n_levels))
        z = y.new_zeros((batch, symbols, users, 2))
        outputs = []
        for _ in range(self.config.iterations):
            residual = y - self._real_of_users(z) @ H.transpose(-1, -2)  # [B, S, 2Nr]
            gradient = (residual @ H).unflatten(-1, (2, -1)).transpose(-1, -2) / column_energy
            residual = (residual / y_scale)[:, :, None, :]  # [B, S, 1, 2Nr]
            probs = torch.softmax(logits, dim=-1).flatten(-2)
            parts = dict(probs=probs, z=z, channel=channel, residual=residual, gradient=gradient)
            state = self.encoder(state=state, **parts)
            sigma = residual.square().mean(-1, keepdim=True).sqrt()
            logits = self.predictor(state=state, sigma=sigma, **parts)
            logits = logits.unflatten(-1, (self.n_dims, n_levels))
            z = self._expected_symbol(logits)
            outputs.append((logits, z))
        return outputs

    def _initial_state(self, y: torch.Tensor, channel: torch.Tensor,
                       n_users: torch.Tensor) -> torch.Tensor:
        """``s^0_i = LN(MLP([y, h_i, TE(Nt)]))`` -> ``[B, S, Nt, d]``."""
        parts = {"received": y[:, :, None, :], "channel": channel}
        if self.config.te_dim:
            angle = n_users[:, None] * self.te_freq  # [B, te_dim/2]
            te = torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(-2)  # sin/cos pairs
            parts["te"] = te[:, None, None, :]
        hidden = self.embedding_in(**parts)  # broadcasts to [B, S, Nt, embed_hidden]
        return self.embedding_out(hidden)

    def _expected_symbol(self, logits: torch.Tensor) -> torch.Tensor:
        """Expected PAM level per real dimension -> ``z [B, S, Nt, 2]`` (BPSK: Im = 0)."""
        z = torch.softmax(logits, dim=-1) @ self.levels.to(logits.dtype)
        if self.n_dims == 1:
            z = torch.cat([z, torch.zeros_like(z)], dim=-1)
        return z

    @staticmethod
    def _real_of_users(z: torch.Tensor) -> torch.Tensor:
        """Per-user ``[..., Nt, 2]`` (Re, Im) -> real model order ``[..., 2Nt]``."""
        return z.transpose(-1, -2).flatten(-2)

    def _check_shapes(self, H: torch.Tensor, y: torch.Tensor) -> None:
        two_nr = 2 * self.config.nr
        if H.dim() != 3 or y.dim() != 3 or H.shape[-2] != two_nr or y.shape[-1] != two_nr:
            raise UsageError(
                f"RE-MIMO for Nr={self.config.nr} expects H [B, {two_nr}, 2Nt] and "
                f"y [B, S, {two_nr}], got H {list(H.shape)} and y {list(y.shape)}"
            )

    # -- training -----------------------------------------------------------
    def iteration_weights(self) -> torch.Tensor:
        """``w_t = t^gamma / sum_t t^gamma`` for ``t = 1..T``."""
        t = torch.arange(1, self.config.iterations + 1, dtype=torch.float32)
        w = t ** float(self.config.loss_growth)
        return w / w.sum()

    def training_loss(self, batch: LinkBatch) -> torch.Tensor:
        """Iteration-weighted cross-entropy over the PAM levels of every real dimension."""
        x_users = batch.x.unflatten(-1, (2, -1)).transpose(-1, -2)[..., : self.n_dims]
        target = self.constellation.level_indices(x_users)  # [B, S, Nt, n_dims]
        outputs = self.iterate(batch.H_est, batch.y)
        loss = batch.y.new_zeros(())
        for weight, (logits, _) in zip(self.iteration_weights().tolist(), outputs, strict=True):
            loss = loss + weight * F.cross_entropy(logits.flatten(0, -2), target.flatten())
        return loss

    def training_system(self, system: MIMOSystem, generator: torch.Generator) -> MIMOSystem:
        """``system`` with a random ``Nt`` in ``[nt_min, nt]`` (one per batch)."""
        counts = torch.arange(self.config.nt_min, self.config.nt + 1)
        if self.config.nt_sampling == "triangular":
            weights = (counts - self.config.nt_min + 1).double()
        else:
            weights = torch.ones(counts.numel(), dtype=torch.float64)
        pick = torch.multinomial(weights, 1, generator=generator).item()
        return dataclasses.replace(system, nt=int(counts[pick]))
