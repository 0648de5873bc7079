"""Matrices on arrays: which matrix each ``CrossbarMVM`` reads, its mapping and its tiles.

A matrix is stored in *crossbar orientation* ``G [in (+1), out]``: an MVM drives the
``in`` rows with the input vector and reads the ``out`` column currents, so
``out = x @ G``. ``Linear`` weights ``W [out, in]`` are stored as ``[W^T; b]`` and
convolution kernels ``W [O, C, kh, kw]`` (im2col) as ``[W.reshape(O, -1)^T; b]``: the bias
is one more row driven with a constant 1.

Mapping (docs/design.md section 7; the physics is :mod:`mimoc.hardware.programming`): a signed
matrix is a differential pair ``G+ - G-`` with ``G+ = Gmin + k max(W, 0)``,
``G- = Gmin + k max(-W, 0)`` and ``k = (Gmax - Gmin) / w_clip``; channel matrices (rate
``slot``) use ``w_clip = 3 sigma_h`` per matrix and slot with ``sigma_h`` the RMS of its
entries (as noise-aware training does), static weights ``w_clip = max|W|`` (or a percentile
of ``|W|``). From reset a cell takes ``n = clip(round(|W| / w_clip * P), 0, P)`` potentiation
pulses; only the side of the pair that carries the sign moves, so one signed integer per cell
(``+n`` on ``G+``, ``-n`` on ``G-``) describes both sides. The crossbar computes all of it in
float64 (the artifact's numbers and the simulator's must agree).

Tiling: ``G`` splits into tiles of at most ``R x C`` (the ``--array``); tile ``(i, j)``
holds rows ``i R .. (i+1) R`` and columns ``j C .. (j+1) C``. Partial sums of the row tiles
of one column block are added (analog summing amplifier or digitally), column blocks are
concatenated.

Example::

    >>> mats = collect_matrices(lowered)
    >>> [(m.id, m.role, m.rows, m.cols) for m in mats][:2]
    [('H', 'channel', 8, 4), ('blocks.0.fc1.weight.cols', 'static', 5, 32)]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from mimoc.compiler.ir import Graph, Rate
from mimoc.errors import UsageError
from mimoc.hardware import programming
from mimoc.hardware.devices import Device
from mimoc.targets.crossbar.config import CrossbarConfig

STATIC = "static"
CHANNEL = "channel"
#: Smallest channel ``w_clip``: keeps ``k = (Gmax - Gmin) / w_clip`` finite in float64 for an
#: all-zero matrix (its cells stay at ``Gmin``).
MIN_CHANNEL_CLIP = 1e-30


@dataclass
class Tile:
    id: str
    matrix: str
    index: tuple[int, int]
    rows: tuple[int, int]  # [start, stop) in the matrix rows
    cols: tuple[int, int]

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows[1] - self.rows[0], self.cols[1] - self.cols[0])


@dataclass
class Matrix:
    """One matrix held by arrays (shared by every ``CrossbarMVM`` that reads it)."""

    id: str
    role: str              # static | channel
    form: str              # matmul | linear | conv2d
    source: str            # the IR value (channel) or constant (static) it comes from
    bias: str | None       # constant added as the last row (linear / conv2d)
    rows: int              # rows incl. the bias row
    cols: int
    nodes: list[str] = field(default_factory=list)
    tiles: list[Tile] = field(default_factory=list)
    row_tiles: int = 1
    col_tiles: int = 1
    scope: str = ""

    @property
    def has_bias_row(self) -> bool:
        return self.bias is not None


def matrix_id(node) -> str:
    """The array set a ``CrossbarMVM`` reads: its matrix operand (with its bias, if any)."""
    return node.attrs["matrix"]


def collect_matrices(graph: Graph) -> list[Matrix]:
    """The matrices of a lowered graph's ``CrossbarMVM`` nodes, in first-use order."""
    found: dict[str, Matrix] = {}
    for node in graph.nodes:
        if node.op != "CrossbarMVM":
            continue
        key = matrix_id(node)
        if key in found:
            found[key].nodes.append(node.name)
            continue
        m_node = graph.node(node.inputs[1])
        form = node.attrs["form"]
        bias = node.inputs[2] if len(node.inputs) > 2 else None
        shape = m_node.shape
        if form == "matmul":
            lead = shape[1:-2] if m_node.rate == Rate.SLOT else shape[:-2]
            if any(not isinstance(d, int) or d != 1 for d in lead):
                raise UsageError(f"{node.name}: a stack of matrices {list(map(str, shape))} per "
                                 "slot is not supported by the crossbar target (one matrix per "
                                 "channel realisation)")
            rows, cols = int(shape[-2]), int(shape[-1])
        elif form == "linear":
            rows, cols = int(shape[1]), int(shape[0])
        else:
            rows, cols = int(shape[1] * shape[2] * shape[3]), int(shape[0])
        role = CHANNEL if m_node.rate == Rate.SLOT else STATIC
        found[key] = Matrix(key, role, form, node.inputs[1], bias, rows + (bias is not None),
                            cols, [node.name], scope=node.scope)
    return list(found.values())


def tile(matrices: list[Matrix], config: CrossbarConfig) -> None:
    """Split every matrix into tiles of at most ``config.array`` (in place)."""
    R, C = config.array
    for m in matrices:
        m.row_tiles, m.col_tiles = math.ceil(m.rows / R), math.ceil(m.cols / C)
        m.tiles = [Tile(f"{m.id}#{i}.{j}", m.id, (i, j), (i * R, min((i + 1) * R, m.rows)),
                        (j * C, min((j + 1) * C, m.cols)))
                   for i in range(m.row_tiles) for j in range(m.col_tiles)]


def crossbar_matrix(m: Matrix, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``G [.., rows, cols]`` in crossbar orientation (module docstring) from the IR operands."""
    if m.form == "matmul":
        G = weight
        if m.role == CHANNEL:
            G = G.reshape(G.shape[0], G.shape[-2], G.shape[-1])
        else:
            G = G.reshape(G.shape[-2], G.shape[-1])
        return G
    W = weight.reshape(weight.shape[0], -1).transpose(0, 1)
    if bias is not None:
        W = torch.cat([W, bias.reshape(1, -1).expand(1, W.shape[1]).to(W.dtype)], dim=0)
    return W


def static_clip(G: torch.Tensor, config: CrossbarConfig) -> float:
    """``w_clip`` of a static matrix: ``max|W|`` or a percentile of ``|W|`` (> 0)."""
    a = G.abs().double().reshape(-1)
    if config.static_clip == "percentile":
        value = float(torch.quantile(a, config.static_percentile / 100.0))
    else:
        value = float(a.max()) if a.numel() else 0.0
    return value if value > 0 else 1.0


def channel_clip(G: torch.Tensor, sigmas: float = programming.CLIP_SIGMAS) -> torch.Tensor:
    """``w_clip = 3 sigma_h`` (``sigmas`` sigma_h) per matrix ``[B, 1, 1]`` (RMS of the
    entries; > 0)."""
    return programming.channel_clip(G.double(), floor=MIN_CHANNEL_CLIP, sigmas=sigmas)


def signed_pulses(G: torch.Tensor, w_clip: torch.Tensor | float, states: int) -> torch.Tensor:
    """``sign(W) clip(round(|W| / w_clip * P), 0, P)`` (int64): ``+n`` on ``G+``, ``-n`` on
    ``G-``."""
    n = programming.weight_pulses(G.double(), w_clip, states)
    return (torch.sign(G.double()) * n).to(torch.int64)


def target_conductances(G: torch.Tensor, w_clip: torch.Tensor | float, device: Device,
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(G+, G-)`` in µS of the exact mapping (clipped to ``[Gmin, Gmax]``)."""
    return programming.pair_conductances(G.double(), w_clip, device)


def pulse_dtype(states: int):
    return np.int16 if states <= np.iinfo(np.int16).max else np.int32


def write_groups(matrices: list[Matrix], role: str, policy: str) -> list[list[str]]:
    """Tiles programmed in sequence share a group; groups program in parallel."""
    tiles = [(m, t) for m in matrices if m.role == role for t in m.tiles]
    if policy == "tile":
        return [[t.id] for _, t in tiles]
    if policy == "matrix":
        return [[t.id for t in m.tiles] for m in matrices if m.role == role]
    return [[t.id for _, t in tiles]] if tiles else []
