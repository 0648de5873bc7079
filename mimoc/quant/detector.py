"""A zoo detector with fake-quantized layers: :class:`QuantizedDetector`.

Which layers are quantized (:func:`quantizable_layers`): every ``nn.Linear`` and
``nn.Conv2d`` of the detector, keyed by module path. That is all learned matrices of
DetNet / WeSNet (``blocks.i.fc1/fc2/fc3``) and SDNet (``convs.i``, ``fc``), and every
``nn.Linear`` of RE-MIMO (token projections, attention output, feed-forward, predictor);
RE-MIMO's attention products ``Q K^T`` / ``softmax V``, LayerNorms, softmaxes and the
channel arithmetic (``H^T H``, ``H^T y``, SDNet's pseudo-inverse) stay fp32.

Inputs (spec's ``signed``): a layer's input is quantized unsigned (grid ``0..2^b - 1``)
when every calibration input of it is ``>= 0`` (the inputs of DetNet's ``fc2``/``fc3``
after ``ReLU``, RE-MIMO's layers after ``ReLU``), signed narrow-range otherwise (DetNet's
``fc1`` input ``[H^T y, x, H^T H x, v]``, SDNet's image and ``tanh`` outputs).

Forward: the wrapped detector's own forward, with each quantized layer computing::

    Linear:  y = x_q W_q^T + b          Conv2d:  y = conv(x_q, W_q) + b

(``W_q``, ``x_q`` of :mod:`mimoc.quant.spec`; biases fp32). The wrapper shares the
detector's parameters (training the wrapper fine-tunes the detector) and leaves the
detector itself untouched outside its own forward.

Example::

    >>> qdet = QuantizedDetector(model, recipe)
    >>> x_hat = qdet(H, y)                         # fake-quantized forward
    >>> qdet.recipe().layers.keys() == recipe.layers.keys()
    True
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mimoc.errors import UsageError
from mimoc.quant.quantizers import LayerQuantizer
from mimoc.quant.spec import QuantRecipe, valid_difference

#: Called per quantized layer while collecting: ``(name, fp_out, q_out)``.
Observer = Callable[[str, torch.Tensor, torch.Tensor], None]


def quantizable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Module path -> every ``nn.Linear`` / ``nn.Conv2d`` of ``model``, in module order."""
    return {name: m for name, m in model.named_modules()
            if isinstance(m, (nn.Linear, nn.Conv2d)) and name}


def _key(name: str) -> str:
    return name.replace(".", "__")


def layer_function(layer: nn.Module) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``f(x, W) -> layer output`` with the layer's own bias, stride, padding..."""
    if isinstance(layer, nn.Linear):
        return lambda x, w: F.linear(x, w, layer.bias)
    if layer.padding_mode != "zeros":
        raise UsageError(f"cannot quantize a Conv2d with padding_mode={layer.padding_mode!r}")
    return lambda x, w: F.conv2d(x, w, layer.bias, layer.stride, layer.padding, layer.dilation,
                                 layer.groups)


def check_recipe_fits(model: nn.Module, recipe: QuantRecipe) -> None:
    """:class:`UsageError` unless every recipe layer is a Linear/Conv2d of ``model``
    with as many output channels as steps."""
    layers = quantizable_layers(model)
    for name, lq in recipe.layers.items():
        layer = layers.get(name)
        if layer is None:
            raise UsageError(f"the quantization recipe names layer {name!r}, which is not a "
                             f"Linear/Conv2d of this {type(model).__name__}")
        out = layer.weight.shape[0]
        if lq.weight_scale.numel() != out:
            raise UsageError(f"layer {name}: the recipe has {lq.weight_scale.numel()} weight "
                             f"steps for {out} output channels")
        if lq.difference is not None and not (
                isinstance(layer, nn.Linear)
                and valid_difference(lq.difference, layer.in_features)):
            raise UsageError(f"layer {name}: the recipe's difference coding "
                             f"{list(lq.difference)} does not fit this layer "
                             f"({type(layer).__name__}, {layer.weight.shape[1]} inputs)")


class QuantizedDetector(nn.Module):
    """``detector`` with the layers of ``recipe`` fake-quantized (module docstring).

    Args:
        model: a zoo detector (``forward(H [B, 2Nr, 2Nt], y [B, S, 2Nr]) -> [B, S, 2Nt]``).
        recipe: a :class:`QuantRecipe`; layers it does not name stay fp32.
        learn: make the steps trainable parameters (QAT).
        freeze_norm: keep BatchNorm layers in eval mode when training (QAT fine-tuning).
    """

    def __init__(self, model: nn.Module, recipe: QuantRecipe, *, learn: bool = False,
                 freeze_norm: bool = True):
        super().__init__()
        check_recipe_fits(model, recipe)
        self.detector = model
        self.method = recipe.method
        self.bits = recipe.bits
        self.info: dict[str, Any] = dict(recipe.info)
        layers = quantizable_layers(model)
        self.names = list(recipe.layers)
        self.quantizers = nn.ModuleDict({
            _key(name): LayerQuantizer.from_spec(layers[name], recipe.layers[name], learn)
            for name in self.names})
        self.freeze_norm = freeze_norm
        self._observer: Observer | None = None

    # -- the detector's attributes -------------------------------------------------
    @property
    def constellation(self):
        return self.detector.constellation

    @property
    def config(self):
        return self.detector.config

    @property
    def family(self) -> str:
        return getattr(self.detector, "family", type(self.detector).__name__)

    def quantizer(self, name: str) -> LayerQuantizer:
        return self.quantizers[_key(name)]

    def recipe(self, info: dict[str, Any] | None = None) -> QuantRecipe:
        """The recipe of the current steps (exactly what the forward uses)."""
        return QuantRecipe(self.method, self.bits,
                           {name: self.quantizer(name).spec() for name in self.names},
                           dict(self.info if info is None else info))

    def quantizer_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.quantizers.parameters() if p.requires_grad]

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.freeze_norm:
            for m in self.detector.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    # -- forward ----------------------------------------------------------------------
    @contextlib.contextmanager
    def active(self, observer: Observer | None = None) -> Iterator[None]:
        """Inside: the detector's quantized layers compute fake-quantized; ``observer``
        sees ``(name, fp32 output, quantized output)`` of each (same input)."""
        layers = quantizable_layers(self.detector)
        patched = []
        self._observer = observer
        try:
            for name in self.names:
                layer = layers[name]
                layer.forward = types.MethodType(self._quantized_forward(name, layer), layer)
                patched.append(layer)
            yield
        finally:
            for layer in patched:
                del layer.forward
            self._observer = None

    def _quantized_forward(self, name: str, layer: nn.Module):
        quantizer = self.quantizer(name)
        compute = layer_function(layer)

        def forward(module, x: torch.Tensor) -> torch.Tensor:
            out = compute(quantizer.quantize_input(x), quantizer.quantize_weight(module.weight))
            if self._observer is not None:
                with torch.no_grad():
                    reference = compute(x, module.weight)
                self._observer(name, reference, out)
            return out

        return forward

    def forward(self, H: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with self.active():
            return self.detector(H, y)

    def training_loss(self, batch) -> torch.Tensor:
        """The detector's own training loss, computed with the quantized layers."""
        with self.active():
            return self.detector.training_loss(batch)
