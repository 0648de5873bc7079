"""Learngene for SDNet: extract a reusable block of layers from a collective model.

Procedure (Zhang et al., section IV-E, after Wang et al., "Learngene", AAAI 2022):

1. **Collective model.** A larger SDNet (``Nconv_col`` middle layers) is trained
   on channel tasks ``D_1 .. D_K`` one after the other
   (:func:`train_collective`).
2. **Gradient significance.** At the end of task ``k`` the gradient of the
   task loss is measured on a fresh batch of that task (and recorded); for each candidate
   layer ``l`` (the C -> C convolutions ``convs.1 .. convs.Nconv``: the first
   and last convs, whose shapes differ, the BatchNorms and the FC are left
   out as in the paper)::

       g_ik^l   = |d L(Theta_col; D_k) / d theta_i^l|
       rho_k^l  = (1 / |Theta^l|) sum_i 1[g_ik^l > tau]       (gradient_significance)

   with ``tau`` by default the median of all recorded magnitudes (see
   :func:`train_collective`).

3. **Selection.** A layer whose significance keeps decreasing over the
   tasks has settled on knowledge that the tasks share. mimoc measures "keeps
   decreasing" with Kendall's rank correlation between ``k`` and
   ``rho_k^l`` (``trend <= -min_trend``) and takes, among the blocks of
   ``M`` consecutive layers that all keep decreasing, the one with the
   lowest late significance (mean over the last third of the tasks)
   (:func:`select_learngene`). A block, because the layers are inherited
   together as one functional segment of the conv stack.
4. **Extraction.** The block's conv weights and biases (not its BatchNorms,
   whose statistics belong to the training data — the paper found inheriting
   them no better) form the :class:`Learngene`; it is stored on its own
   (:func:`save_learngene`), a few kilobytes.
5. **Inheritance.** A smaller individual SDNet (``Nconv_ind`` middle layers)
   copies the learngene into its *bottom* ``M`` middle layers — the ones
   nearest the output, the paper's best "bottom inheriting" strategy — the
   rest is randomly initialised (:func:`inherit`), and it trains on the new
   task with an L2 pull towards the inherited values (:class:`L2Pull`)::

       L_ind = L(Theta_ind; D_{K+1}) + (lambda / 2) sum_m ||Theta_lg^m' - Theta_lg^m||^2

The transferred-parameter ratio is ``|Theta_lg| / |Theta_ind|``
(:func:`transferred_ratio`; 10.8 % in the paper's Table IV).

Example::

    >>> collective = SDNet(SDNetConfig(nt=8, nr=32, nconv=6))
    >>> options = TrainOptions(steps=40, batch=128, snr_db=(6.0, 10.0), csi="ls:16@8")
    >>> report = train_collective(collective, [channel_task(k) for k in range(12)], options)
    >>> gene = extract_learngene(collective, report, n_layers=2)
    >>> individual = SDNet(SDNetConfig(nt=8, nr=32, nconv=4))
    >>> anchors = inherit(individual, gene)
    >>> pull = L2Pull(anchors, weight=1e-3)
    >>> train_detector(individual, options, system=task_system(options, individual.config, task),
    ...                loss_fn=pull.loss)            # or train_individual(...)
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mimoc.detectors.sdnet import SDNet, SDNetConfig
from mimoc.detectors.training import (
    TrainOptions,
    TrainReport,
    draw_batch,
    make_optimizer,
    train_detector,
    train_steps,
)
from mimoc.errors import MimocError, ModelFileError, UsageError
from mimoc.fileio import check_zip_integrity
from mimoc.sim.channels import CSIModel
from mimoc.sim.system import LinkBatch, MIMOSystem

FORMAT = "mimoc-learngene"
FORMAT_VERSION = 1


# ----------------------------------------------------------------------------- significance

def layer_parameters(model: nn.Module, layer: str) -> list[nn.Parameter]:
    """The trainable parameters of submodule ``layer`` (e.g. ``convs.3``)."""
    try:
        module = model.get_submodule(layer)
    except AttributeError:
        raise UsageError(f"the model has no layer {layer!r}") from None
    return [p for p in module.parameters() if p.requires_grad]


def gradient_significance(model: nn.Module, layers: Sequence[str], tau: float) -> torch.Tensor:
    """``rho^l`` per layer ``[L]``: the fraction of the layer's parameters whose current
    ``.grad`` magnitude exceeds ``tau`` (a parameter without a gradient counts as 0)."""
    rho = []
    for layer in layers:
        params = layer_parameters(model, layer)
        total = sum(p.numel() for p in params)
        if total == 0:
            raise UsageError(f"layer {layer!r} has no trainable parameters")
        above = sum(int((p.grad.abs() > tau).sum()) for p in params if p.grad is not None)
        rho.append(above / total)
    return torch.tensor(rho, dtype=torch.float64)


def gradient_magnitudes(model: nn.Module, layers: Sequence[str]) -> torch.Tensor:
    """``|grad|`` of every parameter of the given layers ``[L, P]`` (layers of equal size,
    such as SDNet's middle convolutions; weights then bias, in parameter order)."""
    rows = [torch.cat([p.grad.detach().abs().flatten() if p.grad is not None
                       else torch.zeros(p.numel()) for p in layer_parameters(model, layer)])
            for layer in layers]
    if len({r.numel() for r in rows}) > 1:
        raise UsageError("gradient magnitudes can only be stacked for layers of equal size")
    return torch.stack(rows)


def significance_from_magnitudes(magnitudes: torch.Tensor, tau: float) -> torch.Tensor:
    """``rho [..., L]`` from recorded gradient magnitudes ``[..., L, P]`` and threshold ``tau``."""
    return (magnitudes > tau).to(torch.float64).mean(-1)


def kendall_trend(values: torch.Tensor) -> torch.Tensor:
    """Kendall's rank correlation between the task index and each column of ``values``
    ``[K, L]``: -1 for a strictly decreasing sequence, +1 for an increasing one; ties
    count as neither. Returns ``[L]``."""
    k = values.shape[0]
    if k < 2:
        raise UsageError("a significance trend needs at least two tasks")
    diff = values[None, :, :] - values[:, None, :]            # [K, K, L]: v_j - v_i
    upper = torch.triu(torch.ones(k, k, dtype=torch.bool), diagonal=1)
    signs = torch.sign(diff)[upper]                           # pairs i < j, [K(K-1)/2, L]
    return signs.sum(0) / signs.shape[0]


def select_learngene(history: torch.Tensor, n_layers: int, min_trend: float = 0.5,
                     tail: float = 1 / 3) -> list[int]:
    """Indices of the layers that form the learngene (selection rule of the module docstring).

    Args:
        history: gradient significance ``rho [K, L]`` (task, candidate layer).
        n_layers: ``M``, the number of consecutive layers to select.
        min_trend: a layer keeps decreasing when its Kendall trend is ``<= -min_trend``.
        tail: fraction of the last tasks over which the late significance is averaged.

    Returns:
        ``M`` consecutive column indices, ascending.

    Raises:
        MimocError: no block of ``M`` consecutive layers keeps decreasing.
    """
    history = torch.as_tensor(history, dtype=torch.float64)
    if history.ndim != 2:
        raise UsageError(f"significance history must be [tasks, layers], "
                         f"got {tuple(history.shape)}")
    n_tasks, n_cand = history.shape
    if not isinstance(n_layers, int) or not 1 <= n_layers <= n_cand:
        raise UsageError(f"n_layers must be an integer in 1..{n_cand}, got {n_layers!r}")
    trend = kendall_trend(history)
    decreasing = trend <= -min_trend
    late = history[-max(1, math.ceil(tail * n_tasks)):].mean(0)
    best: tuple[float, int] | None = None
    for start in range(n_cand - n_layers + 1):
        block = slice(start, start + n_layers)
        if not bool(decreasing[block].all()):
            continue
        score = float(late[block].mean())
        if best is None or score <= best[0]:  # ties go to the deeper (bottom) block
            best = (score, start)
    if best is None:
        trends = ", ".join(f"{t:+.2f}" for t in trend.tolist())
        raise MimocError(
            f"no block of {n_layers} consecutive layers whose gradient significance keeps "
            f"decreasing (Kendall trends per layer: {trends}); train over more tasks, "
            f"lower min_trend ({min_trend}) or select fewer layers")
    return list(range(best[1], best[1] + n_layers))


# ----------------------------------------------------------------------------- the learngene

@dataclass
class Learngene:
    """An extracted block of conv layers and how it was found.

    Attributes:
        layers: the collective model's layer names, top (input side) to bottom.
        weights: ``"<layer>.weight"`` / ``"<layer>.bias"`` -> tensor, for those layers.
        source: the collective model's config (``SDNetConfig`` as a dict).
        candidates: the collective's candidate layers (columns of ``significance``).
        significance: ``rho [K, L]`` as nested lists (task-major).
        tau: the gradient threshold used.
        tasks: names of the training tasks, in training order.
        gradients: the recorded ``|grad| [K, L, P]`` (to recompute ``rho`` for another tau).
    """

    layers: list[str]
    weights: dict[str, torch.Tensor]
    source: dict[str, Any]
    candidates: list[str]
    significance: list[list[float]]
    tau: float
    tasks: list[str] = field(default_factory=list)
    gradients: torch.Tensor | None = None

    @property
    def n_params(self) -> int:
        return sum(t.numel() for t in self.weights.values())

    def layer_weights(self, layer: str) -> dict[str, torch.Tensor]:
        """``{"weight": ..., "bias": ...}`` of one of :attr:`layers`."""
        prefix = layer + "."
        return {k[len(prefix):]: v for k, v in self.weights.items() if k.startswith(prefix)}


def extract_learngene(model: SDNet, report: CollectiveReport, n_layers: int,
                      min_trend: float = 0.5) -> Learngene:
    """Select (:func:`select_learngene`) and copy the learngene out of a collective model."""
    chosen = select_learngene(torch.tensor(report.significance), n_layers, min_trend)
    layers = [report.layers[i] for i in chosen]
    weights = {}
    for layer in layers:
        module = model.get_submodule(layer)
        for name, tensor in module.named_parameters():
            weights[f"{layer}.{name}"] = tensor.detach().clone()
    return Learngene(layers, weights, model.config.to_dict(), list(report.layers),
                     [list(row) for row in report.significance], report.tau,
                     list(report.tasks), report.magnitudes)


def inherit(model: SDNet, learngene: Learngene,
            position: str = "bottom") -> dict[str, torch.Tensor]:
    """Copy the learngene's conv weights into ``model``'s middle layers, in order.

    ``position="bottom"`` fills the last ``M`` middle layers (nearest the output),
    ``"top"`` the first ``M``. BatchNorms and all other layers keep their values.

    Returns:
        anchors: the model's parameter names -> inherited values, for :class:`L2Pull`.
    """
    m = len(learngene.layers)
    middle = model.middle_layers
    if m > len(middle):
        raise UsageError(f"the learngene has {m} layers but the model only {len(middle)} middle "
                         f"conv layers; build it with nconv >= {m}")
    if position not in ("bottom", "top"):
        raise UsageError(f"inheritance position must be 'bottom' or 'top', got {position!r}")
    targets = middle[-m:] if position == "bottom" else middle[:m]
    anchors = {}
    with torch.no_grad():
        for source, target in zip(learngene.layers, targets, strict=True):
            module = model.get_submodule(target)
            for name, value in learngene.layer_weights(source).items():
                param = getattr(module, name)
                if param.shape != value.shape:
                    raise UsageError(
                        f"learngene layer {source}.{name} has shape {tuple(value.shape)} but "
                        f"{target}.{name} has {tuple(param.shape)}; the models need the same "
                        f"number of channels")
                param.copy_(value)
                anchors[f"{target}.{name}"] = value.detach().clone()
    return anchors


class L2Pull:
    """``(weight / 2) * sum ||theta - theta_anchor||^2`` over the anchored parameters.
    :meth:`loss` is the individual model's training loss (a ``loss_fn`` for
    :func:`~mimoc.detectors.training.train_detector`)."""

    def __init__(self, anchors: Mapping[str, torch.Tensor], weight: float):
        if weight < 0:
            raise UsageError(f"the L2 pull weight must be non-negative, got {weight}")
        self.anchors = {k: v.detach().clone() for k, v in anchors.items()}
        self.weight = float(weight)

    def __call__(self, model: nn.Module) -> torch.Tensor:
        params = dict(model.named_parameters())
        missing = sorted(set(self.anchors) - set(params))
        if missing:
            raise UsageError(f"the model has no parameter(s) {', '.join(missing)} to pull")
        total = sum(((params[k] - a.to(params[k])) ** 2).sum() for k, a in self.anchors.items())
        return 0.5 * self.weight * total

    def loss(self, model: nn.Module, batch: LinkBatch) -> torch.Tensor:
        """Task loss plus the pull: ``model.training_loss(batch) + self(model)``."""
        return model.training_loss(batch) + self(model)


def transferred_ratio(learngene: Learngene, model: nn.Module) -> float:
    """Transferred parameters over the model's trainable parameters (paper's Table IV)."""
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return learngene.n_params / total


def save_learngene(learngene: Learngene, path: str | os.PathLike) -> Path:
    """Write a learngene file that ``torch.load(..., weights_only=True)`` reads."""
    path = Path(path)
    if not path.parent.is_dir():
        raise UsageError(f"cannot write {path}: folder {path.parent} does not exist")
    from mimoc import __version__

    torch.save({
        "format": FORMAT, "format_version": FORMAT_VERSION, "mimoc_version": __version__,
        "layers": list(learngene.layers),
        "weights": {k: v.detach().cpu().clone() for k, v in learngene.weights.items()},
        "source": dict(learngene.source), "candidates": list(learngene.candidates),
        "significance": [list(map(float, row)) for row in learngene.significance],
        "tau": float(learngene.tau), "tasks": list(learngene.tasks),
        "gradients": (None if learngene.gradients is None
                      else learngene.gradients.detach().cpu().to(torch.float32).clone()),
    }, path)
    return path


def load_learngene(path: str | os.PathLike) -> Learngene:
    """Read a file written by :func:`save_learngene`; anything else is refused."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such learngene file; check the path")
    if zipfile.is_zipfile(path):  # torch.load does not check CRCs: damaged weights would load
        check_zip_integrity(path)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any failure of a foreign file is the user's
        raise ModelFileError(f"{path} is not a readable learngene file (torch cannot load it "
                             f"as plain data); write it with save_learngene") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a mimoc learngene file; write it with "
                             f"save_learngene")
    if raw.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{path}: learngene format version {raw.get('format_version')!r} "
                             f"is not supported (this mimoc reads {FORMAT_VERSION})")
    weights = raw.get("weights")
    layers = raw.get("layers")
    if (not isinstance(weights, dict) or not isinstance(layers, list)
            or not all(isinstance(v, torch.Tensor) for v in weights.values())
            or {k.rsplit(".", 1)[0] for k in weights} != set(layers)):
        raise ModelFileError(f"{path}: the learngene's layers and weights do not match; "
                             f"the file is damaged, extract the learngene again")
    return Learngene(layers, dict(weights), dict(raw["source"]), list(raw["candidates"]),
                     [list(r) for r in raw["significance"]], float(raw["tau"]),
                     list(raw.get("tasks", [])), raw.get("gradients"))


# ----------------------------------------------------------------------------- procedure

def task_system(options: TrainOptions, config: SDNetConfig, channel: Any) -> MIMOSystem:
    """The link of one channel task: ``options``' CSI, SNR convention and slot, with
    ``channel`` (anything with ``.sample(B, nr, nt, generator)``) in place of
    ``options.channel``."""
    return MIMOSystem(config.nt, config.nr, config.modulation, channel,
                      CSIModel.parse(options.csi), options.snr_def, options.slot)


@dataclass
class CollectiveReport:
    """What sequential training recorded: gradient magnitudes and significance per task
    and layer, final losses."""

    layers: list[str]
    tasks: list[str]
    significance: list[list[float]]
    losses: list[float]
    tau: float
    seconds: float
    magnitudes: torch.Tensor | None = None  # |grad| [K, L, P] at the end of each task

    def to_dict(self) -> dict[str, Any]:
        """Plain values; the magnitudes reduced to their mean per task and layer."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name != "magnitudes"}
        if self.magnitudes is not None:
            out["mean_gradient"] = self.magnitudes.mean(-1).tolist()
        return out


def measure_gradients(model: SDNet, system: MIMOSystem, snr_db: tuple[float, float],
                      generator: torch.Generator, batch: int) -> torch.Tensor:
    """``|grad|`` of the training loss w.r.t. ``model.middle_layers`` ``[L, P]``, on one
    fresh batch of ``batch`` slots at SNRs uniform in ``snr_db``."""
    data = draw_batch(model, system, batch, snr_db, generator)
    model.train()  # the gradient of the training loss, as during training
    model.zero_grad(set_to_none=True)
    model.training_loss(data).backward()
    magnitudes = gradient_magnitudes(model, model.middle_layers)
    model.zero_grad(set_to_none=True)
    return magnitudes


def train_collective(model: SDNet, tasks: Sequence[Any], options: TrainOptions,
                     tau: float | None = None, measure_batch: int = 1024,
                     log: Callable[[str], None] | None = None) -> CollectiveReport:
    """Train ``model`` on ``tasks`` (channel models) one after the other, ``options.steps``
    steps each, recording the gradient magnitudes of its middle layers at the end of
    each task (:func:`measure_gradients`), and their significance.

    One Adam optimiser (constant learning rate ``options.lr``, the trainer's gradient
    clipping) runs through all tasks, as one model trained task after task would.
    ``options.channel`` is ignored: the tasks replace it. ``tau=None`` sets the
    threshold to the median of all recorded magnitudes (all tasks, all layers), so
    that ``rho`` averages 1/2 and separates the layers at every stage of training
    rather than saturating at 0 or 1 (the paper's fixed 1e-4 presumes its gradient
    scale). The magnitudes stay in the report: ``rho`` for another ``tau`` is
    :func:`significance_from_magnitudes`.
    """
    if not tasks:
        raise UsageError("sequential training needs at least one channel task")
    if model.config.nconv < 1:
        raise UsageError("the collective model needs nconv >= 1 middle layers")
    constant = dataclasses.replace(options, lr_schedule="constant")
    generator = torch.Generator().manual_seed(options.seed)
    optimizer, _ = make_optimizer(model, constant)
    magnitudes, losses, names = [], [], []
    start = time.perf_counter()
    with torch.random.fork_rng():
        torch.manual_seed(options.seed)
        for k, task in enumerate(tasks):
            system = task_system(options, model.config, task)
            log_entries = train_steps(
                model, lambda s=system: draw_batch(model, s, options.batch, options.snr_db,
                                                   generator),
                options.steps, optimizer, grad_clip=options.grad_clip,
                log_every=options.steps, start_step=k * options.steps)
            magnitudes.append(measure_gradients(model, system, options.snr_db, generator,
                                                measure_batch))
            losses.append(log_entries[-1]["loss"])
            names.append(getattr(task, "spec", type(task).__name__))
            if log is not None:
                log(f"task {k + 1}/{len(tasks)} {names[-1]}: loss {losses[-1]:.4f}, "
                    "mean |grad| " + " ".join(f"{g:.2e}" for g in magnitudes[-1].mean(-1)))
    model.eval()
    stacked = torch.stack(magnitudes)                                   # [K, L, P]
    if tau is None:
        tau = float(stacked.median())
    rho = significance_from_magnitudes(stacked, tau)
    return CollectiveReport(model.middle_layers, names, rho.tolist(), losses, float(tau),
                            time.perf_counter() - start, stacked)


def train_individual(model: SDNet, channel: Any, options: TrainOptions,
                     learngene: Learngene | None = None, pull: float = 0.0,
                     progress: bool = False) -> TrainReport:
    """Train an individual model on one target task with the generic trainer.

    With a ``learngene`` the model first inherits it at its bottom (:func:`inherit`)
    and trains with the L2 pull of weight ``pull``; without one it trains from
    its current (e.g. random) initialisation: the from-scratch baseline.
    """
    loss_fn = None
    if learngene is not None:
        loss_fn = L2Pull(inherit(model, learngene), pull).loss
    return train_detector(model, options, progress=progress,
                          system=task_system(options, model.config, channel), loss_fn=loss_fn)
