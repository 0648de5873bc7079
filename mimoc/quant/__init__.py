"""Quantization: KAQ (kernel-based adaptive quantization), KAQ-PTQ, LSQ, min-max and int8.

:mod:`mimoc.quant.spec` is the recipe format shared with the compiler. The torch side:

- :func:`quantize` (:mod:`mimoc.quant.methods`): choose / train a :class:`QuantRecipe`;
- :class:`QuantizedDetector` (:mod:`mimoc.quant.detector`): a zoo detector whose
  Linear / Conv2d layers compute with fake-quantized weights and inputs, exactly as spec;
- :func:`save_quantized` / :func:`load_quantized` (:mod:`mimoc.quant.checkpoint`).

Example::

    >>> from mimoc.quant import quantize, QuantizedDetector, save_quantized, load_quantized
    >>> recipe = quantize(model, "kaq", bits=4, steps=300, options=options)
    >>> save_quantized(model, recipe, "model_q.pt")
    >>> model, recipe = load_quantized("model_q.pt")
    >>> x_hat = QuantizedDetector(model, recipe)(H, y)
"""

from mimoc.quant.checkpoint import load_quantized, save_quantized
from mimoc.quant.detector import QuantizedDetector, quantizable_layers
from mimoc.quant.methods import options_from_training, quantize
from mimoc.quant.spec import (
    METHODS,
    ActQuant,
    LayerQuant,
    QuantRecipe,
    fake_quant_act,
    fake_quant_weight,
)

__all__ = [
    "METHODS", "ActQuant", "LayerQuant", "QuantRecipe", "QuantizedDetector",
    "fake_quant_act", "fake_quant_weight", "load_quantized", "options_from_training",
    "quantizable_layers", "quantize", "save_quantized",
]
