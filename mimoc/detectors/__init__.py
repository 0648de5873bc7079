"""The trainable detector zoo (docs/design.md section 8).

:data:`FAMILIES` maps a family name to its :class:`DetectorModule` subclass;
it is written out by hand (no folder scanning), so a new family is one import
and one line here. Every family takes ``forward(H [B, 2Nr, 2Nt], y [B, S, 2Nr])
-> x_hat [B, S, 2Nt]`` and is rebuilt from its ``Config`` dataclass.

Example::

    >>> from mimoc.detectors import build_detector, train_detector, TrainOptions, save_detector
    >>> model = build_detector("detnet", nt=4, nr=8, modulation="qpsk")
    >>> report = train_detector(model, TrainOptions(steps=500))
    >>> save_detector(model, "detnet.pt", training=report)
    >>> load_detector("detnet.pt")
"""

from __future__ import annotations

from typing import Any

from mimoc.detectors.base import DetectorConfig, DetectorModule
from mimoc.detectors.checkpoint import (
    Checkpoint,
    config_from_dict,
    load_checkpoint,
    load_detector,
    save_detector,
)
from mimoc.detectors.detnet import DetNet, DetNetConfig
from mimoc.detectors.families import FAMILIES, get_family
from mimoc.detectors.flops import FlopReport, count_flops, count_params
from mimoc.detectors.noise_aware import program_channel
from mimoc.detectors.remimo import REMIMO, REMIMOConfig
from mimoc.detectors.sdnet import SDNet, SDNetConfig
from mimoc.detectors.training import TrainOptions, TrainReport, train_detector
from mimoc.detectors.wesnet import WeSNet, WeSNetConfig


def build_detector(family: str, **config: Any) -> DetectorModule:
    """A fresh (untrained) detector of ``family`` with the given config fields.

    Unset fields take the family's defaults; names and types are checked
    (:class:`UsageError` on an unknown field or a wrong type).
    """
    cls = get_family(family)
    return cls(config_from_dict(cls.Config, config))


__all__ = [
    "FAMILIES", "Checkpoint", "DetNet", "DetNetConfig", "DetectorConfig", "DetectorModule",
    "FlopReport", "REMIMO", "REMIMOConfig", "SDNet", "SDNetConfig", "TrainOptions",
    "TrainReport", "WeSNet", "WeSNetConfig", "build_detector", "config_from_dict",
    "count_flops", "count_params", "get_family", "load_checkpoint", "load_detector",
    "program_channel", "save_detector", "train_detector",
]
