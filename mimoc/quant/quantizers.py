"""Trainable weight and activation quantizers that round exactly as :mod:`mimoc.quant.spec`.

Per quantized layer (``nn.Linear`` or ``nn.Conv2d``)::

    W_q = clamp(round(W / s_w[o]), -(2^(b-1) - 1), 2^(b-1) - 1) * s_w[o]      (per channel o)
    x_q = clamp(round(x / step), lo, hi) * step,
          step = alpha * sqrt(mean(x^2) + EPS)   (dynamic: over the feature dims)
          step = alpha                           (static)

The rounding is Brevitas' :class:`brevitas.core.quant.IntQuant` (``RoundSte``: round half
to even forward, identity gradient; ``TensorClamp``: no gradient outside the grid), so the
gradients are LSQ's: ``d x_q / d s = round(x/s) - x/s`` inside the grid and ``lo``/``hi``
outside. Zero point 0, so Brevitas' ``x / s + 0`` and ``(q - 0) * s`` are the same floats
as spec's ``round(x / s) * s``: the forward equals spec bit for bit (tests check it).

What Brevitas does not provide, and is written here: the *dynamic* step ``alpha * RMS(x)``
computed from the current input (KAQ; Brevitas' runtime-statistics scaling is a training
time running statistic, frozen at export, not a per-sample in-graph step) and the
parametrisation below. ``brevitas.nn.QuantLinear`` is not used because it replaces the
zoo's modules (their state_dict keys and module paths, which key the recipe) and derives
scales through injector chains whose float arithmetic is not spec's.

Parametrisation: a learned step is ``raw * unit`` with ``unit`` a fixed buffer (the initial
step, e.g. a recipe's) and ``raw`` the parameter (1 at initialisation), so Adam's roughly
constant step size acts as a *relative* change of the step for every layer alike, and a
recipe loaded back gives exactly its floats (``1 * s == s``).

Example::

    >>> q = LayerQuantizer.for_layer(nn.Linear(8, 4), bits=4, act=ActQuant(4, "dynamic", 0.3))
    >>> q.quantize_weight(torch.randn(4, 8)).shape
    torch.Size([4, 8])
"""

from __future__ import annotations

import torch
from brevitas.core.function_wrapper.misc import Identity
from brevitas.core.quant import IntQuant
from torch import nn

from mimoc.quant.spec import EPS, ActQuant, LayerQuant, difference_input, difference_weight

#: Smallest step a learned parameter can reach (keeps ``x / s`` finite).
MIN_STEP = 1e-10


def feature_dims_of(layer: nn.Module) -> int:
    """Dims the dynamic RMS runs over: the last for ``Linear``, ``(C, H, W)`` for ``Conv2d``."""
    return 3 if isinstance(layer, nn.Conv2d) else 1


class _Step(nn.Module):
    """A positive learned step ``raw * unit`` (see the module docstring); any shape."""

    def __init__(self, init: torch.Tensor, learn: bool = True):
        super().__init__()
        init = init.detach().float().clone()
        self.raw = nn.Parameter(torch.ones_like(init), requires_grad=learn)
        self.register_buffer("unit", init)

    def forward(self) -> torch.Tensor:
        return (self.raw * self.unit).clamp_min(MIN_STEP)


class WeightQuantizer(nn.Module):
    """Symmetric narrow-range ``bits``-bit per-output-channel weight quantizer, learned step."""

    def __init__(self, scale: torch.Tensor, bits: int, learn: bool = True):
        super().__init__()
        self.bits = int(bits)
        self.step = _Step(scale, learn)
        self.int_quant = IntQuant(narrow_range=True, signed=True, input_view_impl=Identity())
        self.register_buffer("bit_width", torch.tensor(float(bits)), persistent=False)
        self.register_buffer("zero", torch.tensor(0.0), persistent=False)

    def scale(self) -> torch.Tensor:
        """Per-channel steps ``[out]``."""
        return self.step()

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        s = self.scale().reshape((-1,) + (1,) * (weight.dim() - 1)).to(weight.dtype)
        return self.int_quant(s, self.zero, self.bit_width, weight)


class ActQuantizer(nn.Module):
    """Input quantizer: ``bits``, ``signed``, ``mode`` dynamic (``alpha * RMS(x)``) or static."""

    def __init__(self, act: ActQuant, feature_dims: int, learn: bool = True):
        super().__init__()
        self.bits = int(act.bits)
        self.mode = act.mode
        self.signed = bool(act.signed)
        self.feature_dims = int(feature_dims)
        self.alpha = _Step(torch.tensor(float(act.alpha)), learn)
        # Brevitas' narrow range also drops the top code of an unsigned grid (0..2^b - 2);
        # spec's unsigned grid is the full 0..2^b - 1
        self.int_quant = IntQuant(narrow_range=self.signed, signed=self.signed,
                                  input_view_impl=Identity())
        self.register_buffer("bit_width", torch.tensor(float(act.bits)), persistent=False)
        self.register_buffer("zero", torch.tensor(0.0), persistent=False)
        self.enabled = True

    def step_of(self, x: torch.Tensor) -> torch.Tensor:
        """``alpha * sqrt(mean(x^2) + EPS)`` over the feature dims (keepdim), or ``alpha``."""
        alpha = self.alpha().to(x.dtype)
        if self.mode == "static":
            return alpha
        dims = tuple(range(-self.feature_dims, 0))
        return alpha * torch.sqrt(x.square().mean(dim=dims, keepdim=True) + EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        return self.int_quant(self.step_of(x), self.zero, self.bit_width, x)

    def spec(self) -> ActQuant:
        return ActQuant(self.bits, self.mode, float(self.alpha().detach()), self.signed)


class LayerQuantizer(nn.Module):
    """The weight quantizer and (optional) input quantizer of one Linear / Conv2d, and its
    difference coding ``(t, r, n)`` (spec): then ``W'`` and ``x'`` are what is quantized."""

    def __init__(self, weight: WeightQuantizer, act: ActQuantizer | None,
                 difference: tuple[int, int, int] | None = None):
        super().__init__()
        self.weight = weight
        self.act = act
        self.difference = difference

    @classmethod
    def from_spec(cls, layer: nn.Module, lq: LayerQuant, learn: bool = True) -> LayerQuantizer:
        """Quantizers of ``layer`` starting at (and, untrained, exactly equal to) ``lq``."""
        weight = WeightQuantizer(lq.weight_scale, lq.weight_bits, learn)
        act = None if lq.act is None else ActQuantizer(lq.act, feature_dims_of(layer), learn)
        return cls(weight, act, lq.difference)

    @classmethod
    def for_layer(cls, layer: nn.Module, bits: int, act: ActQuant | None,
                  weight_scale: torch.Tensor | None = None, learn: bool = True,
                  difference: tuple[int, int, int] | None = None) -> LayerQuantizer:
        """Fresh quantizers; the weight step defaults to LSQ's ``2 mean|W'_o| / sqrt(Qp)``."""
        if weight_scale is None:
            weight_scale = lsq_weight_init(difference_weight(layer.weight, difference), bits)
        weight = WeightQuantizer(weight_scale, bits, learn)
        return cls(weight, None if act is None else ActQuantizer(act, feature_dims_of(layer),
                                                                 learn), difference)

    def quantize_weight(self, weight: torch.Tensor) -> torch.Tensor:
        """``W'_q`` of the layer's fp32 weight ``W``."""
        return self.weight(difference_weight(weight, self.difference))

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x'_q`` of the layer's input ``x`` (``x'`` when there is no input quantizer)."""
        x = difference_input(x, self.difference)
        return x if self.act is None else self.act(x)

    def spec(self) -> LayerQuant:
        """This layer's entry of the recipe (the exact floats the forward uses)."""
        return LayerQuant(self.weight.bits, self.weight.scale().detach().clone(),
                          None if self.act is None else self.act.spec(), self.difference)


def lsq_weight_init(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """LSQ's initial step per output channel, ``2 mean|W_o| / sqrt(2^(b-1) - 1)`` ``[out]``."""
    qp = 2 ** (bits - 1) - 1
    mean_abs = weight.detach().abs().flatten(1).mean(1)
    return (2.0 * mean_abs / qp ** 0.5).clamp_min(1e-8)


def minmax_weight_scale(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """``max|W_o| / (2^(b-1) - 1)`` ``[out]``: no weight is clipped."""
    qp = 2 ** (bits - 1) - 1
    return (weight.detach().abs().flatten(1).amax(1) / qp).clamp_min(1e-8)
