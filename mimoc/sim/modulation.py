"""Gray-mapped modulations with unit average symbol energy.

A square M-QAM constellation is the product of two Gray-mapped PAM
constellations with ``sqrt(M)`` levels: the first half of a symbol's bit label
selects the in-phase level, the second half the quadrature level. BPSK is a
single real PAM-2 dimension (its quadrature part is always 0).

In the real-valued model (docs/design.md section 2) a complex vector ``x`` of
length ``Nt`` becomes ``x_r = [Re x; Im x]`` of length ``2 Nt``. Hard
decisions are separable per real dimension, so they cost one rounding per
dimension rather than a search over ``M`` points.

Example::

    >>> qam = get_constellation("16qam")
    >>> idx = torch.tensor([[0, 5, 15]])
    >>> x_r = qam.real_of_indices(idx)              # [1, 6]
    >>> bool((qam.indices_of_real(x_r) == idx).all())
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mimoc.errors import UsageError


def gray(i: torch.Tensor) -> torch.Tensor:
    """Binary-reflected Gray code of integer tensor ``i``."""
    return i ^ (i >> 1)


def inverse_gray(g: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`gray` (for labels of up to 16 bits)."""
    i = g.clone()
    shift = 1
    while shift < 16:
        i = i ^ (i >> shift)
        shift *= 2
    return i


@dataclass(frozen=True, eq=False)
class Constellation:
    """A Gray-mapped constellation with unit average energy.

    Attributes:
        name: ``bpsk``, ``qpsk``, ``16qam`` or ``64qam``.
        bits_per_symbol: ``k = log2(M)``.
        levels: the real PAM levels of one dimension, ascending, already scaled
            so that the complex constellation has unit average energy.
        is_real: ``True`` for BPSK and M-PAM (quadrature dimension always 0).
        real_system: ``True`` in a real-valued system (``--system real``): a symbol
            vector is ``[..., Nt]`` of PAM levels, with no quadrature half at all.
    """

    name: str
    bits_per_symbol: int
    levels: torch.Tensor
    is_real: bool
    real_system: bool = False

    @property
    def dims_per_symbol(self) -> int:
        """Real dimensions of one symbol in the detectors' vectors: 1 in a real system, else 2."""
        return 1 if self.real_system else 2

    @property
    def order(self) -> int:
        """Number of points ``M``."""
        return 2**self.bits_per_symbol

    @property
    def bits_per_dim(self) -> int:
        """Bits carried by one real dimension (the in-phase one for BPSK)."""
        return self.bits_per_symbol if self.is_real else self.bits_per_symbol // 2

    @property
    def points(self) -> torch.Tensor:
        """Complex points ``[M]``; point ``i`` carries the bit label ``i`` (MSB first)."""
        idx = torch.arange(self.order)
        x_r = self.real_of_indices(idx[None, :])[0]
        if self.real_system:
            return torch.complex(x_r, torch.zeros_like(x_r))
        n = self.order
        return torch.complex(x_r[:n], x_r[n:])

    # -- bits <-> indices ---------------------------------------------------
    def bits_of_indices(self, idx: torch.Tensor) -> torch.Tensor:
        """Symbol indices ``[...]`` -> bits ``[..., k]`` (MSB first, int64)."""
        shifts = torch.arange(self.bits_per_symbol - 1, -1, -1, device=idx.device)
        return (idx[..., None] >> shifts) & 1

    def indices_of_bits(self, bits: torch.Tensor) -> torch.Tensor:
        """Bits ``[..., k]`` (MSB first) -> symbol indices ``[...]``."""
        if bits.shape[-1] != self.bits_per_symbol:
            raise UsageError(
                f"{self.name} carries {self.bits_per_symbol} bits per symbol, "
                f"got a last dimension of {bits.shape[-1]}"
            )
        weights = 2 ** torch.arange(self.bits_per_symbol - 1, -1, -1, device=bits.device)
        return (bits.long() * weights).sum(-1)

    # -- indices <-> real-valued vectors -------------------------------------
    def _split(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Index -> (in-phase level index, quadrature level index)."""
        if self.is_real:
            return inverse_gray(idx), torch.zeros_like(idx)
        half = self.bits_per_dim
        return inverse_gray(idx >> half), inverse_gray(idx & ((1 << half) - 1))

    def real_of_indices(self, idx: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
        """Symbol indices ``[..., Nt]`` -> real-valued symbols ``[..., 2Nt]`` (``[..., Nt]``
        in a real system)."""
        li, lq = self._split(idx)
        levels = self.levels.to(dtype=dtype, device=idx.device)
        re = levels[li]
        if self.real_system:
            return re
        im = torch.zeros_like(re) if self.is_real else levels[lq]
        return torch.cat([re, im], dim=-1)

    def level_indices(self, x: torch.Tensor) -> torch.Tensor:
        """Nearest PAM level index of every real entry of ``x``."""
        n = self.levels.numel()
        step = float(self.levels[1] - self.levels[0])
        pos = (x - float(self.levels[0])) / step
        return torch.clamp(torch.round(pos), 0, n - 1).long()

    def indices_of_real(self, x_r: torch.Tensor) -> torch.Tensor:
        """Nearest-point hard decision: real ``[..., 2Nt]`` (``[..., Nt]`` in a real
        system) -> indices ``[..., Nt]``."""
        if self.real_system:
            return gray(self.level_indices(x_r))
        nt = x_r.shape[-1] // 2
        label_i = gray(self.level_indices(x_r[..., :nt]))
        if self.is_real:
            return label_i
        label_q = gray(self.level_indices(x_r[..., nt:]))
        return (label_i << self.bits_per_dim) | label_q

    def nearest_real(self, x_r: torch.Tensor) -> torch.Tensor:
        """Nearest constellation point of each complex entry, in real form ``[..., 2Nt]``."""
        levels = self.levels.to(dtype=x_r.dtype, device=x_r.device)
        out = levels[self.level_indices(x_r)]
        if self.is_real and not self.real_system:
            out[..., x_r.shape[-1] // 2 :] = 0.0
        return out

    def __repr__(self) -> str:
        return f"Constellation({self.name})"


def _pam_levels(n_levels: int, scale: float) -> torch.Tensor:
    # on the CPU explicitly: the first lookup may run under a meta-device build (checkpoints)
    levels = torch.arange(n_levels, dtype=torch.float64, device="cpu")
    return (2.0 * levels - (n_levels - 1)) * scale


def _make(name: str, real_system: bool) -> Constellation:
    if name in PAM_MODULATIONS:
        n_levels = 2 if name == "bpsk" else int(name[: -len("pam")])
        energy = (n_levels**2 - 1) / 3.0  # mean x^2 of the unscaled PAM levels
        return Constellation(name, n_levels.bit_length() - 1,
                             _pam_levels(n_levels, 1.0 / math.sqrt(energy)), is_real=True,
                             real_system=real_system)
    if real_system:
        raise UsageError(f"a real system carries real PAM symbols; {name} is complex "
                         f"(choose one of {', '.join(PAM_MODULATIONS)})")
    k = {"qpsk": 2, "16qam": 4, "64qam": 6}[name]
    n_levels = 2 ** (k // 2)
    energy = 2.0 * (n_levels**2 - 1) / 3.0  # mean |x|^2 of the unscaled square QAM
    return Constellation(name, k, _pam_levels(n_levels, 1.0 / math.sqrt(energy)), is_real=False)


MODULATIONS = ("bpsk", "qpsk", "16qam", "64qam")
#: The real modulations: BPSK (2-PAM) and M-PAM with unit mean energy, the symbols of a
#: real system (``real_system=True``); in a complex system they ride the in-phase axis.
PAM_MODULATIONS = ("bpsk", "4pam", "8pam")
_ALIASES = {"2pam": "bpsk", "pam2": "bpsk", "pam4": "4pam", "pam8": "8pam",
            "4qam": "qpsk", "qam4": "qpsk", "qam16": "16qam", "16-qam": "16qam",
            "qam64": "64qam", "64-qam": "64qam"}
_CACHE: dict[tuple[str, bool], Constellation] = {}


def get_constellation(name: str, real_system: bool = False) -> Constellation:
    """Look up a modulation by name (``bpsk``, ``qpsk``, ``16qam``, ``64qam``, ``4pam``,
    ``8pam``); ``real_system=True`` gives its form in a real system (PAM only)."""
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in MODULATIONS and key not in PAM_MODULATIONS:
        raise UsageError(f"unknown modulation {name!r}; choose one of {', '.join(MODULATIONS)}"
                         + f", {', '.join(PAM_MODULATIONS[1:])}")
    if (key, bool(real_system)) not in _CACHE:
        _CACHE[key, bool(real_system)] = _make(key, bool(real_system))
    return _CACHE[key, bool(real_system)]
