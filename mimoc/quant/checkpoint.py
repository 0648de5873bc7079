"""Quantized checkpoints: a mimoc detector checkpoint plus a ``"quantization"`` section.

The file is :mod:`mimoc.detectors.checkpoint`'s dict with one more key,
``"quantization": QuantRecipe.to_dict()`` (:mod:`mimoc.quant.spec`): method, bits, per
layer the weight bits, the per-channel weight steps (tensors) and the input quantizer.
The state_dict holds the detector's fp32 weights (after QAT, the fine-tuned latent
weights); ``fake_quant_weight(W, scale, bits)`` gives the deployed ones. Loading is
``torch.load(weights_only=True)`` as for any mimoc checkpoint, so ``load_detector`` reads
a quantized file too (as its fp32 model), and nothing in it can run code.

Example::

    >>> recipe = quantize(model, "minmax", bits=4)
    >>> save_quantized(model, recipe, "detnet_q.pt")
    >>> model, recipe = load_quantized("detnet_q.pt")      # recipe is None for a plain file
    >>> QuantizedDetector(model, recipe)(H, y)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from mimoc.detectors.base import DetectorModule
from mimoc.detectors.checkpoint import Checkpoint, _plain, checkpoint_dict, load_checkpoint
from mimoc.errors import ModelFileError, UsageError
from mimoc.fileio import atomic_write
from mimoc.quant.detector import check_recipe_fits
from mimoc.quant.spec import QuantRecipe


def save_quantized(model: DetectorModule, recipe: QuantRecipe, path: str | os.PathLike,
                   training: Any = None) -> Path:
    """Write ``model`` with ``recipe`` as a quantized mimoc checkpoint, atomically.

    Args:
        model: the detector (fp32 weights; after QAT the fine-tuned ones).
        recipe: its :class:`QuantRecipe` (layers must be Linear/Conv2d of ``model``).
        path: the file to write (its folder must exist).
        training: the detector's training metadata (kept as in ``save_detector``).
    """
    if not isinstance(recipe, QuantRecipe):
        raise UsageError(f"save_quantized needs a QuantRecipe, got {type(recipe).__name__}")
    check_recipe_fits(model, recipe)
    path = Path(path)
    if not path.parent.is_dir():
        raise UsageError(f"cannot write {path}: folder {path.parent} does not exist")
    section = recipe.to_dict()
    section["info"] = _plain(section["info"])
    payload = checkpoint_dict(model, training, quantization=section)
    with atomic_write(path) as f:
        torch.save(payload, f)
    return path


def load_quantized(path: str | os.PathLike) -> tuple[DetectorModule, QuantRecipe | None]:
    """``(model, recipe)`` of a checkpoint; ``recipe`` is ``None`` for a plain (fp32) one.

    Raises :class:`ModelFileError` (one line) for a file that is not a valid checkpoint, a
    malformed quantization section, or a recipe that does not fit the model.
    """
    checkpoint = load_checkpoint(path)
    return checkpoint.model, recipe_of(checkpoint)


def recipe_of(checkpoint: Checkpoint) -> QuantRecipe | None:
    """The checked recipe of a loaded checkpoint (``None`` for a plain one); one-line
    :class:`ModelFileError` when it is malformed or does not fit the model."""
    if checkpoint.quantization is None:
        return None
    try:
        recipe = QuantRecipe.from_dict(checkpoint.quantization)
        check_recipe_fits(checkpoint.model, recipe)
    except (ModelFileError, UsageError) as err:
        message = " ".join(str(err).split())
        raise ModelFileError(f"{checkpoint.path}: {message}") from None
    return recipe
