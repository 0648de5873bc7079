"""Channel models and channel-state information at the receiver.

All channels have unit-variance entries, ``E|h_ij|^2 = 1``, so the SNR
conventions of :mod:`mimoc.sim.snr` hold for each of them.

- ``rayleigh``: ``H_ij ~ CN(0, 1)`` i.i.d.
- ``kronecker``: ``H = R_rx^{1/2} H_w R_tx^{1/2}`` with exponential correlation
  ``R_ij = rho^|i-j|`` at the receiver and/or the transmitter.

Imperfect CSI (:class:`CSIModel`):

- ``ls``: least-squares estimation from ``Np >= Nt`` orthogonal pilots (rows of
  a DFT matrix, unit energy per pilot symbol) at a pilot SNR ``rho_p`` per
  stream: ``Y_p = H P + N``, ``H_hat = Y_p P^H (P P^H)^-1``, so each entry of
  the error is ``CN(0, 1 / (rho_p Np))``;
- ``error``: additive estimation error ``H_hat = H + W`` with
  ``W_ij ~ CN(0, sigma_w^2)`` and ``CSI SNR = E||H||_F^2 / E||W||_F^2``
  (RE-MIMO's model), i.e. ``sigma_w^2 = 1 / csi_snr``.

Measured or externally simulated channels (Sionna): ``file:PATH.npy``, see
:mod:`mimoc.sim.channel_file`.

Block fading: one channel realisation per slot of ``S`` symbols; the sampler
in :mod:`mimoc.sim.system` draws ``H`` once per slot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mimoc.errors import UsageError
from mimoc.sim.channel_file import parse_file_channel
from mimoc.sim.gaussian import complex_normal
from mimoc.sim.multipath import parse_task


def real_matrix(H: torch.Tensor) -> torch.Tensor:
    """Complex ``[..., Nr, Nt]`` -> real ``[..., 2Nr, 2Nt] = [[Re, -Im], [Im, Re]]``."""
    top = torch.cat([H.real, -H.imag], dim=-1)
    bottom = torch.cat([H.imag, H.real], dim=-1)
    return torch.cat([top, bottom], dim=-2)


def real_vector(x: torch.Tensor) -> torch.Tensor:
    """Complex ``[..., N]`` -> real ``[..., 2N] = [Re x; Im x]``."""
    return torch.cat([x.real, x.imag], dim=-1)


def complex_vector(x_r: torch.Tensor) -> torch.Tensor:
    """Real ``[..., 2N]`` -> complex ``[..., N]`` (inverse of :func:`real_vector`)."""
    n = x_r.shape[-1] // 2
    return torch.complex(x_r[..., :n], x_r[..., n:])


def complex_matrix(H_r: torch.Tensor) -> torch.Tensor:
    """Real ``[..., 2Nr, 2Nt]`` -> complex ``[..., Nr, Nt]`` (inverse of :func:`real_matrix`)."""
    nr, nt = H_r.shape[-2] // 2, H_r.shape[-1] // 2
    return torch.complex(H_r[..., :nr, :nt], H_r[..., nr:, :nt])


def exponential_correlation(n: int, rho: float, dtype=torch.float64) -> torch.Tensor:
    """``R_ij = rho^|i-j|`` of size ``n x n``."""
    i = torch.arange(n, dtype=dtype)
    return rho ** (i[:, None] - i[None, :]).abs()


def _sqrtm_psd(R: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a positive semi-definite matrix."""
    w, V = torch.linalg.eigh(R)
    return (V * w.clamp_min(0).sqrt()) @ V.T


@dataclass(frozen=True)
class ChannelModel:
    """A fading channel model. ``spec`` strings: ``rayleigh``, ``kronecker:RHO``
    (same RHO at both ends) or ``kronecker:rx=RHO,tx=RHO``."""

    kind: str = "rayleigh"
    rho_rx: float = 0.0
    rho_tx: float = 0.0

    def __post_init__(self):
        if self.kind not in ("rayleigh", "kronecker"):
            raise UsageError(f"unknown channel {self.kind!r}; use rayleigh or kronecker:RHO")
        for name in ("rho_rx", "rho_tx"):
            rho = getattr(self, name)
            if not 0.0 <= rho < 1.0:
                raise UsageError(f"kronecker correlation {name}={rho} must lie in [0, 1)")

    @classmethod
    def parse(cls, spec: str) -> ChannelModel:
        """Parse a CLI spec such as ``kronecker:0.5`` or ``kronecker:rx=0.7,tx=0``."""
        kind, _, args = spec.strip().lower().partition(":")
        if kind == "rayleigh":
            if args:
                raise UsageError(f"channel 'rayleigh' takes no parameters, got {spec!r}")
            return cls()
        if kind != "kronecker":
            raise UsageError(f"unknown channel {spec!r}; use rayleigh, kronecker:RHO, task:ID "
                             "or file:H.npy")
        if not args:
            raise UsageError(
                "kronecker needs a correlation, e.g. kronecker:0.5 or kronecker:rx=0.5"
            )
        values = {"rx": 0.0, "tx": 0.0}
        items = [f"rx={args}", f"tx={args}"] if "=" not in args else args.split(",")
        for item in items:
            key, _, value = (part.strip() for part in item.partition("="))
            if key not in values:
                raise UsageError(f"kronecker takes rx= and tx=, got {key!r}")
            try:
                values[key] = float(value)
            except ValueError:
                raise UsageError(
                    f"malformed channel spec {spec!r}; e.g. kronecker:0.5 or kronecker:rx=0.5,tx=0"
                ) from None
        return cls("kronecker", values["rx"], values["tx"])

    @property
    def spec(self) -> str:
        if self.kind == "rayleigh":
            return "rayleigh"
        if self.rho_rx == self.rho_tx:
            return f"kronecker:{self.rho_rx:g}"
        return f"kronecker:rx={self.rho_rx:g},tx={self.rho_tx:g}"

    def sample(self, batch: int, nr: int, nt: int, generator=None,
               dtype=torch.complex64) -> torch.Tensor:
        """Draw ``batch`` complex channels ``[batch, Nr, Nt]``."""
        H = complex_normal((batch, nr, nt), generator, dtype)
        if self.kind == "kronecker":
            if self.rho_rx > 0:
                H = _sqrtm_psd(exponential_correlation(nr, self.rho_rx)).to(dtype) @ H
            if self.rho_tx > 0:
                H = H @ _sqrtm_psd(exponential_correlation(nt, self.rho_tx)).to(dtype)
        return H


def dft_pilots(nt: int, n_pilots: int, dtype=torch.complex64) -> torch.Tensor:
    """Orthogonal pilot matrix ``P [Nt, Np]`` (rows of a DFT), ``P P^H = Np I``."""
    k = torch.arange(nt, dtype=torch.float64)[:, None]
    n = torch.arange(n_pilots, dtype=torch.float64)[None, :]
    return torch.polar(torch.ones(nt, n_pilots, dtype=torch.float64),
                       -2 * math.pi * k * n / n_pilots).to(dtype)


@dataclass(frozen=True)
class CSIModel:
    """What the receiver knows of ``H``. ``spec`` strings: ``perfect``,
    ``ls:NP@SNR_DB`` (LS from NP pilots at a pilot SNR) or ``error:SNR_DB``."""

    kind: str = "perfect"
    pilots: int = 0
    snr_db: float = math.inf

    def __post_init__(self):
        if self.kind not in ("perfect", "ls", "error"):
            raise UsageError(
                f"unknown CSI model {self.kind!r}; use perfect, ls:NP@SNR or error:SNR"
            )
        if self.kind == "ls" and self.pilots < 1:
            raise UsageError("LS channel estimation needs at least one pilot per stream")

    @classmethod
    def parse(cls, spec: str) -> CSIModel:
        kind, _, args = spec.strip().lower().partition(":")
        try:
            if kind == "perfect" and not args:
                return cls()
            if kind == "ls":
                pilots, _, snr = args.partition("@")
                return cls("ls", int(pilots), float(snr))
            if kind == "error":
                return cls("error", 0, float(args))
        except ValueError:
            pass
        raise UsageError(f"malformed CSI spec {spec!r}; use perfect, ls:NP@SNR_DB or error:SNR_DB")

    @property
    def spec(self) -> str:
        if self.kind == "perfect":
            return "perfect"
        if self.kind == "ls":
            return f"ls:{self.pilots}@{self.snr_db:g}"
        return f"error:{self.snr_db:g}"

    def estimate(self, H: torch.Tensor, generator=None) -> torch.Tensor:
        """Receiver's estimate of complex channels ``H [B, Nr, Nt]``."""
        if self.kind == "perfect":
            return H
        snr = 10.0 ** (self.snr_db / 10.0)
        if self.kind == "error":
            return H + complex_normal(H.shape, generator, H.dtype) / math.sqrt(snr)
        batch, nr, nt = H.shape
        if self.pilots < nt:
            raise UsageError(f"LS estimation needs at least Nt={nt} pilots, got {self.pilots}")
        P = dft_pilots(nt, self.pilots, H.dtype)
        noise = complex_normal((batch, nr, self.pilots), generator, H.dtype) / math.sqrt(snr)
        Y_p = H @ P + noise
        return Y_p @ P.conj().T / self.pilots


def parse_channel(spec: str):
    """Any channel spec the CLI accepts: ``rayleigh``, ``kronecker:...``, a
    geometric multipath task ``task:ID`` (:mod:`mimoc.sim.multipath`) or
    realisations from a file ``file:PATH.npy[,normalize]`` (:mod:`mimoc.sim.channel_file`)."""
    if spec.strip().lower().startswith("file:"):
        return parse_file_channel(spec)
    if spec.strip().lower().startswith("task:"):
        return parse_task(spec)
    return ChannelModel.parse(spec)
