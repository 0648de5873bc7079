"""The generic trainer of the detector zoo.

Every step draws a fresh batch of ``batch`` slots from the link (online
training, as in the source papers: the channel model is the data set)::

    snr_b   ~ U(lo, hi) dB, one per slot
    batch   = model.training_system(system, gen).sample(batch, snr, gen)
    H_est  <- program_channel(H_est, c2c, states)          # only when c2c > 0
    loss    = model.training_loss(batch)                     # family-specific
    Adam step with global gradient-norm clipping and a cosine learning-rate decay

Learning-rate schedule (``lr_schedule``): ``cosine`` (default) decays from
``lr`` to ``lr * lr_final`` over ``steps`` with
``lr_t = lr (f + (1 - f)(1 + cos(pi t / steps)) / 2)``; ``constant`` keeps
``lr``. Validation: every ``val_every`` steps and at the end, the symbol error
rate on a fixed set of ``val_batch`` slots drawn once, with a fixed seed
(:data:`VALIDATION_SEED`, the same for every run so runs are comparable), at
SNRs evenly spaced over ``[lo, hi]``, through the same link as training
(programming noise included when ``c2c > 0``).

Reference: classical MMSE, as the field computes it -- the unbiased LMMSE
(:func:`mimoc.sim.detectors.linear.lmmse`; for BPSK/QPSK its decisions are those
of the biased form, a positive per-stream scale keeping every sign) -- detects the
same validation slots -- same channels, symbols, noise and SNRs -- from what
the model is given, the receiver's ``H_est`` (so the LS or erroneous estimate
under imperfect CSI, the programmed channel under ``c2c > 0``, each RE-MIMO
chunk with its own user count), plus the true noise variance, which the model
is not told. Its SER is :attr:`TrainReport.mmse_val_ser`: a trained detector
worse than it on the same draws is not worth deploying.

Runs are deterministic for a given seed and initial model: the data generator
is seeded with ``seed`` and any use of the global RNG inside the loop is
confined (``torch.random.fork_rng``) and seeded with it too.

Building blocks for family-specific procedures (learngene's sequential
multi-task training trains one model on several links in turn):
:func:`draw_batch`, :func:`validation_set`, :func:`symbol_error_rate`,
:func:`mmse_symbol_error_rate` and :func:`train_steps` (N optimizer steps on
any batch source).

Example::

    >>> model = build_detector("detnet", nt=4, nr=8, modulation="qpsk")
    >>> report = train_detector(model, TrainOptions(steps=2000, snr_db=(4.0, 14.0)))
    >>> print(report.summary())
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from mimoc.detectors.base import DetectorModule
from mimoc.detectors.noise_aware import program_channel
from mimoc.errors import MimocError, UsageError
from mimoc.progress import progress_bar
from mimoc.sim.channels import CSIModel, parse_channel
from mimoc.sim.detectors.linear import lmmse
from mimoc.sim.modulation import Constellation
from mimoc.sim.snr import check_snr_def
from mimoc.sim.system import LinkBatch, MIMOSystem

#: Seed of the validation set: fixed, so that validation SERs of different runs compare.
VALIDATION_SEED = 20240917
LR_SCHEDULES = ("cosine", "constant")


@dataclass
class TrainOptions:
    """How to train a detector (all fields are plain values, stored in the checkpoint).

    Attributes:
        steps: optimizer steps.
        batch: slots (channel realisations) per step.
        slot: symbols per slot sharing one channel.
        snr_db: training SNR range ``(lo, hi)`` in dB; each slot's SNR is uniform in it.
        snr_def: SNR convention: ``per-stream``, ``per-rx`` or ``detnet``.
        channel: channel spec (``rayleigh``, ``kronecker:0.5``...).
        csi: CSI spec (``perfect``, ``ls:8@10``, ``error:20``).
        lr: initial Adam learning rate.
        lr_schedule: ``cosine`` or ``constant``.
        lr_final: final learning rate as a fraction of ``lr`` (cosine schedule).
        grad_clip: maximum global gradient L2 norm; ``0`` disables clipping.
        seed: seed of the training data (and of the global RNG inside the loop).
        c2c: noise-aware training: crossbar cycle-to-cycle variation applied to
            ``H_est`` (e.g. 0.01 for 1%); ``0`` turns it off.
        states: programming states of the device for the noise model.
        val_every: validate every this many steps (``0``: only at the end).
        val_batch: validation slots (``0``: no validation).
        log_every: steps per history entry (the entry's loss is their mean).
    """

    steps: int = 2000
    batch: int = 256
    slot: int = 1
    snr_db: tuple[float, float] = (0.0, 15.0)
    snr_def: str = "per-stream"
    channel: str = "rayleigh"
    csi: str = "perfect"
    lr: float = 1e-3
    lr_schedule: str = "cosine"
    lr_final: float = 0.05
    grad_clip: float = 1.0
    seed: int = 0
    c2c: float = 0.0
    states: int = 150
    val_every: int = 200
    val_batch: int = 2048
    log_every: int = 10

    def __post_init__(self):
        for name, least in (("steps", 1), ("batch", 1), ("slot", 1), ("states", 1),
                            ("val_every", 0), ("val_batch", 0), ("log_every", 1), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise UsageError(f"training option {name} must be an integer >= {least}, "
                                 f"got {value!r}")
        try:
            lo, hi = (float(v) for v in self.snr_db)
        except (TypeError, ValueError):
            raise UsageError(f"snr_db must be a pair (lo, hi) in dB, got {self.snr_db!r}") from None
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise UsageError(f"training SNR range must be finite with lo <= hi, got {lo}:{hi}")
        self.snr_db = (lo, hi)
        for name, positive in (("lr", True), ("lr_final", False), ("grad_clip", False),
                               ("c2c", False)):
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) \
                and math.isfinite(value) and (value > 0 if positive else value >= 0)
            if not ok:
                raise UsageError(f"training option {name} must be a finite number "
                                 f"{'> 0' if positive else '>= 0'}, got {value!r}")
            setattr(self, name, float(value))
        if self.lr_schedule not in LR_SCHEDULES:
            raise UsageError(f"unknown learning-rate schedule {self.lr_schedule!r}; "
                             f"choose one of {', '.join(LR_SCHEDULES)}")
        check_snr_def(self.snr_def)
        parse_channel(self.channel)
        CSIModel.parse(self.csi)

    def system(self, model: DetectorModule) -> MIMOSystem:
        """The link these options describe for ``model``'s sizes and modulation."""
        config = model.config
        return MIMOSystem(config.nt, config.nr, config.modulation,
                          parse_channel(self.channel), CSIModel.parse(self.csi),
                          self.snr_def, self.slot, system=getattr(config, "system", "complex"))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class StepEvent:
    """What a ``callback`` sees after every optimizer step.

    ``model``'s parameters still hold this step's gradients in ``.grad``
    (after clipping; ``grad_norm`` is the norm before clipping; set
    ``grad_clip=0`` to see raw gradients). A callback that returns ``True``
    stops training after this step (validated and logged as the last one).
    """

    step: int
    loss: float
    grad_norm: float
    lr: float
    model: DetectorModule
    optimizer: torch.optim.Optimizer


@dataclass
class TrainReport:
    """The outcome of :func:`train_detector`.

    Attributes:
        steps: optimizer steps done.
        seconds: wall time of the loop (validation included).
        final_loss: mean training loss since the previous history entry (the
            last ``log_every`` steps, or fewer when validation or a stop logged in between).
        val_ser: validation symbol error rate at the end (``None`` without validation).
        history: entries ``{step, loss, val_ser, lr, seconds}`` every ``log_every``
            steps (``val_ser`` is ``None`` where no validation ran).
        options: the options trained with.
        family: the model's family; system: the link trained on, in words.
        mmse_val_ser: SER of classical MMSE on the same validation slots and
            noise (``None`` without validation): the bar the model should clear.
    """

    steps: int
    seconds: float
    final_loss: float
    val_ser: float | None
    history: list[dict[str, Any]] = field(default_factory=list)
    options: TrainOptions = field(default_factory=TrainOptions)
    family: str = ""
    system: str = ""
    mmse_val_ser: float | None = None

    @property
    def worse_than_mmse(self) -> bool:
        """Whether the model made more validation errors than MMSE on the same slots."""
        return (self.val_ser is not None and self.mmse_val_ser is not None
                and self.val_ser > self.mmse_val_ser)

    def to_dict(self) -> dict[str, Any]:
        """Plain values for the checkpoint's ``training`` entry and ``--json``."""
        return {
            "steps": self.steps,
            "seconds": self.seconds,
            "final_loss": self.final_loss,
            "val_ser": self.val_ser,
            "mmse_val_ser": self.mmse_val_ser,
            "snr_db": list(self.options.snr_db),
            "seed": self.options.seed,
            "family": self.family,
            "system": self.system,
            "options": self.options.to_dict(),
            "history": [dict(entry) for entry in self.history],
        }

    def _window(self) -> int:
        """Steps averaged in the last history entry."""
        if len(self.history) < 2:
            return self.history[-1]["step"] if self.history else 0
        return self.history[-1]["step"] - self.history[-2]["step"]

    def _versus_mmse(self) -> str:
        if self.val_ser == self.mmse_val_ser:
            return "the model ties MMSE"
        if self.mmse_val_ser == 0:
            return "MMSE made no error"
        ratio = self.val_ser / self.mmse_val_ser
        return f"the model makes {ratio:.2g}x MMSE's errors"

    def summary(self) -> str:
        """A few human-readable lines."""
        o = self.options
        rate = self.steps / self.seconds if self.seconds > 0 else float("inf")
        lines = [
            f"trained {self.family or 'detector'} on {self.system} for {self.steps} steps "
            f"in {self.seconds:.1f} s ({rate:.1f} steps/s, {o.batch} slots x {o.slot} symbols)",
            f"  final loss      {self.final_loss:.6g} (mean of the last {self._window()} steps)",
        ]
        if self.val_ser is None:
            lines.append("  validation SER  not measured (val_batch 0)")
        else:
            lines.append(f"  validation SER  {self.val_ser:.4g} over {o.val_batch} slots at "
                         f"{o.snr_db[0]:g}..{o.snr_db[1]:g} dB ({o.snr_def})")
        if self.val_ser is not None and self.mmse_val_ser is not None:
            lines.append(f"  MMSE SER        {self.mmse_val_ser:.4g} on the same slots and noise "
                         f"({self._versus_mmse()})")
        if o.c2c > 0:
            lines.append(f"  noise-aware     C2C {o.c2c:g}, {o.states} states")
        return "\n".join(lines)


def describe_system(system: MIMOSystem) -> str:
    channel = getattr(system.channel, "spec", type(system.channel).__name__)
    csi = getattr(system.csi, "spec", type(system.csi).__name__)
    real = " (real system)" if system.real else ""
    return f"{system.nt}x{system.nr} {system.modulation}{real}, {channel}, CSI {csi}"


# ----------------------------------------------------------------------------- data

def draw_batch(model: DetectorModule, system: MIMOSystem, batch: int,
               snr_db: torch.Tensor | tuple[float, float], generator: torch.Generator,
               *, c2c: float = 0.0, states: int = 150) -> LinkBatch:
    """One training batch: SNRs per slot, the family's link, optional programming noise.

    Args:
        snr_db: a ``[batch]`` tensor of SNRs, or a range ``(lo, hi)`` to draw
            them uniformly from.
        c2c, states: when ``c2c > 0``, ``H_est`` is replaced by
            :func:`~mimoc.detectors.noise_aware.program_channel` of it.
    """
    if not isinstance(snr_db, torch.Tensor):
        lo, hi = snr_db
        snr_db = lo + (hi - lo) * torch.rand(batch, generator=generator, dtype=torch.float64)
    link = model.training_system(system, generator)
    data = link.sample(batch, snr_db, generator)
    if c2c > 0:
        data = dataclasses.replace(data, H_est=program_channel(data.H_est, c2c, states, generator))
    return data


def batch_to(batch: LinkBatch, device: torch.device) -> LinkBatch:
    """``batch`` with every tensor on ``device`` (itself when already there)."""
    if batch.y.device == device:
        return batch
    return LinkBatch(**{f.name: getattr(batch, f.name).to(device)
                        for f in dataclasses.fields(batch)})


def validation_set(model: DetectorModule, system: MIMOSystem, options: TrainOptions,
                   seed: int = VALIDATION_SEED) -> list[LinkBatch]:
    """``options.val_batch`` slots at SNRs evenly spaced over the training range,
    in chunks of ``options.batch``, drawn with a fixed ``seed``."""
    total = options.val_batch
    if total == 0:
        return []
    gen = torch.Generator().manual_seed(seed)
    snrs = torch.linspace(*options.snr_db, total, dtype=torch.float64)
    return [draw_batch(model, system, len(chunk), chunk, gen, c2c=options.c2c,
                       states=options.states)
            for chunk in snrs.split(options.batch)]


@torch.no_grad()
def symbol_error_rate(model: DetectorModule, batches: list[LinkBatch]) -> float:
    """Fraction of wrongly detected symbols (nearest constellation point of ``x_hat``)."""
    was_training = model.training
    model.eval()
    errors = symbols = 0
    try:
        for data in batches:
            x_hat = model(data.H_est, data.y)
            detected = model.constellation.indices_of_real(x_hat)
            errors += int((detected != data.indices).sum())
            symbols += data.indices.numel()
    finally:
        model.train(was_training)
    return errors / symbols


@torch.no_grad()
def mmse_symbol_error_rate(batches: list[LinkBatch], constellation: Constellation) -> float:
    """SER of classical MMSE (the unbiased LMMSE) on ``batches``, given ``H_est`` (what a
    trained model sees) and the true noise variance: the reference a trained detector should
    beat."""
    errors = symbols = 0
    for data in batches:
        x_hat = lmmse(data.H_est, data.y, data.noise_var, constellation)
        errors += int((constellation.indices_of_real(x_hat) != data.indices).sum())
        symbols += data.indices.numel()
    return errors / symbols


# ----------------------------------------------------------------------------- loop

def make_optimizer(model: DetectorModule, options: TrainOptions):
    """Adam over the trainable parameters, with the options' learning-rate schedule."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise UsageError(f"{type(model).__name__} has no trainable parameters")
    # foreach: one fused update over all tensors; the zoo's many small ones make it faster
    optimizer = torch.optim.Adam(params, lr=options.lr, foreach=True)
    if options.lr_schedule == "cosine":
        final, steps = options.lr_final, options.steps

        def factor(step: int) -> float:
            progress = min(step, steps) / steps
            return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        def factor(step: int) -> float:
            return 1.0
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_steps(model: DetectorModule, next_batch: Callable[[], LinkBatch], steps: int,
                optimizer: torch.optim.Optimizer, *, scheduler=None, grad_clip: float = 0.0,
                loss_fn: Callable[[DetectorModule, LinkBatch], torch.Tensor] | None = None,
                validate: Callable[[], float] | None = None, val_every: int = 0,
                log_every: int = 10, callback: Callable[[StepEvent], Any] | None = None,
                bar=None, start_step: int = 0) -> list[dict[str, Any]]:
    """Run ``steps`` optimizer steps; return the history entries.

    Args:
        next_batch: returns the next training batch.
        loss_fn: ``loss_fn(model, batch)``; default ``model.training_loss(batch)``.
        validate: returns a validation SER; called every ``val_every`` steps
            (``0``: never) and after the last step.
        bar: a progress bar to update (``None``: silent).
        start_step: step number before the first step (for chained calls).

    Raises:
        MimocError: the loss became NaN or infinite (training diverged).
    """
    loss_fn = loss_fn or (lambda m, b: m.training_loss(b))
    history: list[dict[str, Any]] = []
    window: list[float] = []
    start = time.perf_counter()
    model.train()
    for i in range(1, steps + 1):
        step = start_step + i
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model, next_batch())
        value = float(loss.detach())
        if not math.isfinite(value):
            raise MimocError(f"training diverged at step {step} (loss {value}); lower the "
                             f"learning rate or enable gradient clipping")
        loss.backward()
        params = [p for group in optimizer.param_groups for p in group["params"]]
        grad_norm = float(torch.nn.utils.clip_grad_norm_(
            params, grad_clip if grad_clip > 0 else math.inf))
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        window.append(value)

        stop = callback is not None and callback(
            StepEvent(step, value, grad_norm, lr, model, optimizer)) is True
        last = i == steps or stop
        val_ser = None
        if validate is not None and (last or (val_every and step % val_every == 0)):
            val_ser = validate()
        if last or step % log_every == 0 or val_ser is not None:
            history.append({"step": step, "loss": sum(window) / len(window), "val_ser": val_ser,
                            "lr": lr, "seconds": time.perf_counter() - start})
            window = []
            if bar is not None:
                postfix = {"loss": f"{history[-1]['loss']:.4g}"}
                seen = [h["val_ser"] for h in history if h["val_ser"] is not None]
                if seen:
                    postfix["val_ser"] = f"{seen[-1]:.3g}"
                bar.set_postfix(postfix, refresh=False)
        if bar is not None:
            bar.update(1)
        if stop:
            break
    return history


def train_detector(model: DetectorModule, options: TrainOptions | None = None,
                   progress: bool = True, callback: Callable[[StepEvent], Any] | None = None,
                   *, system: MIMOSystem | None = None,
                   loss_fn: Callable[[DetectorModule, LinkBatch], torch.Tensor] | None = None
                   ) -> TrainReport:
    """Train ``model`` in place on batches drawn from its link; leave it in eval mode.

    Args:
        model: a :class:`DetectorModule`.
        options: :class:`TrainOptions` (defaults if ``None``).
        progress: draw a progress bar on stderr (only when it is a terminal).
        callback: called with a :class:`StepEvent` after every step; returning
            ``True`` stops training.
        system: the link to train on (default: ``options.system(model)``);
            pass one to train on a channel model of your own.
        loss_fn: ``loss_fn(model, batch)`` instead of ``model.training_loss``
            (e.g. a task loss plus a pull towards inherited weights).

    Returns:
        A :class:`TrainReport` (``report.to_dict()`` goes into the checkpoint).
    """
    if not isinstance(model, DetectorModule):
        raise UsageError(f"train_detector needs a mimoc DetectorModule, got {type(model).__name__}")
    options = options or TrainOptions()
    system = system or options.system(model)
    start = time.perf_counter()
    with torch.random.fork_rng():
        torch.manual_seed(options.seed)
        gen = torch.Generator().manual_seed(options.seed)
        # data is drawn on the CPU (reproducible draws) and moved to the model's device
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
        val_batches = [batch_to(b, device) for b in validation_set(model, system, options)]
        mmse_ser = (mmse_symbol_error_rate(val_batches, model.constellation)
                    if val_batches else None)
        optimizer, scheduler = make_optimizer(model, options)

        def next_batch() -> LinkBatch:
            return batch_to(draw_batch(model, system, options.batch, options.snr_db, gen,
                                       c2c=options.c2c, states=options.states), device)

        def validate() -> float:
            return symbol_error_rate(model, val_batches)

        desc = f"train {getattr(model, 'family', type(model).__name__)}"
        with progress_bar(options.steps, desc=desc, unit="step", enabled=progress) as bar:
            history = train_steps(model, next_batch, options.steps, optimizer,
                                  scheduler=scheduler, grad_clip=options.grad_clip,
                                  loss_fn=loss_fn, validate=validate if val_batches else None,
                                  val_every=options.val_every, log_every=options.log_every,
                                  callback=callback, bar=bar)
    model.eval()
    val_sers = [h["val_ser"] for h in history if h["val_ser"] is not None]
    return TrainReport(steps=history[-1]["step"], seconds=time.perf_counter() - start,
                       final_loss=history[-1]["loss"], val_ser=val_sers[-1] if val_sers else None,
                       history=history, options=options,
                       family=getattr(model, "family", ""), system=describe_system(system),
                       mmse_val_ser=mmse_ser)
