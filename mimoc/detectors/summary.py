"""What a checkpoint holds, as JSON-ready data: ``mimoc inspect``'s numbers, also the model
section of ``mimoc report``.

:func:`describe_checkpoint` returns one dict::

    {"path", "kind": "checkpoint", "family", "nt", "nr", "modulation", "config",
     "params", "flops_per_symbol", "flops_slot_rate", "flops_per_slot", "slot_symbols",
     "layers": [{"name", "type", "params", "flops_per_symbol", "flops_slot_rate",
                 "flops_per_slot"}, ...],
     "uncounted_ops", "training": {...}, "mimoc_version", "format_version"}

FLOPs are 2 x multiply-accumulates of the module's forward pass
(:func:`mimoc.detectors.flops.count_flops`). The training record keeps everything but its
loss history, which is summarised by its length (``history_points``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from mimoc.detectors.checkpoint import load_checkpoint
from mimoc.detectors.flops import count_flops


def describe_checkpoint(path: Path) -> dict[str, Any]:
    """The JSON-ready description of the checkpoint at ``path`` (format above)."""
    ckpt = load_checkpoint(path)
    flops = count_flops(ckpt.model)
    config = dataclasses.asdict(ckpt.config)
    training = {k: v for k, v in ckpt.training.items() if k != "history"}
    if "history" in ckpt.training:
        training["history_points"] = len(ckpt.training["history"])
    return {
        "path": str(path),
        "kind": "checkpoint",
        "family": ckpt.family,
        "nt": ckpt.config.nt,
        "nr": ckpt.config.nr,
        "modulation": ckpt.config.modulation,
        "config": config,
        "params": flops.params,
        "flops_per_symbol": flops.flops_per_symbol,
        "flops_slot_rate": flops.flops_slot_rate,
        "flops_per_slot": flops.flops_per_slot,
        "slot_symbols": flops.slot_symbols,
        "layers": [dataclasses.asdict(layer) for layer in flops.layers],
        "uncounted_ops": flops.uncounted,
        "training": training,
        "mimoc_version": ckpt.mimoc_version,
        "format_version": ckpt.format_version,
    }
