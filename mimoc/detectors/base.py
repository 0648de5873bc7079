"""What every trainable detector of the zoo shares.

Interface (docs/design.md section 2)::

    forward(H [B, 2Nr, 2Nt], y [B, S, 2Nr]) -> x_hat [B, S, 2Nt]

``H`` is the channel the receiver knows (the estimate under imperfect CSI),
``x_hat`` a soft real-valued estimate; hard decisions are the nearest
constellation points. ``forward`` takes tensors only, so that
``torch.export`` can trace it for the compiler.

A family is a :class:`DetectorModule` subclass with a ``family`` name and a
``Config`` dataclass that holds everything needed to rebuild it (the
checkpoint stores ``asdict(config)``). Training calls
:meth:`DetectorModule.training_loss` on batches drawn by
:meth:`DetectorModule.training_system`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from mimoc.errors import UsageError
from mimoc.sim.modulation import get_constellation
from mimoc.sim.system import SYSTEMS, LinkBatch, MIMOSystem


@dataclass
class DetectorConfig:
    """Fields every family has; families subclass it and add their own.

    ``system``: ``complex`` (``H [2Nr, 2Nt]``) or ``real`` (a real-valued link,
    ``H [Nr, Nt]``, real PAM symbols; see :mod:`mimoc.sim.system`). Keyword-only, so the
    families' positional fields keep their places; left out of :meth:`to_dict` when
    ``complex`` so that complex checkpoints and artifacts stay as they were.
    """

    nt: int = 4
    nr: int = 8
    modulation: str = "qpsk"
    system: str = field(default="complex", kw_only=True)

    @property
    def real(self) -> bool:
        return self.system == "real"

    @property
    def real_dims(self) -> tuple[int, int]:
        """The rows and columns of the ``H`` the detector takes: ``(2Nr, 2Nt)``, or
        ``(Nr, Nt)`` in a real system."""
        scale = 1 if self.real else 2
        return scale * self.nr, scale * self.nt

    def validate(self) -> None:
        """Raise :class:`UsageError` on nonsense values (called by ``DetectorModule``)."""
        for name in ("nt", "nr"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise UsageError(f"{name} must be a positive integer, got {value!r}")
        if self.system not in SYSTEMS:
            raise UsageError(f"system must be one of {', '.join(SYSTEMS)}, got {self.system!r}")
        get_constellation(self.modulation, self.real)

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        if values.get("system") == "complex":
            del values["system"]
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        """Rebuild from :meth:`to_dict`; unknown or missing keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise UsageError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
        config = cls(**values)
        config.validate()
        return config


class DetectorModule(nn.Module):
    """Base class of the zoo's detectors."""

    family: ClassVar[str]
    Config: ClassVar[type[DetectorConfig]]
    #: Whether the family can be built for a real system (``system="real"``).
    supports_real: ClassVar[bool] = False

    def __init__(self, config: DetectorConfig):
        super().__init__()
        config.validate()
        if config.real and not self.supports_real:
            raise UsageError(f"{self.family} is built for complex systems only; "
                             "real systems take detnet or wesnet")
        self.config = config

    @property
    def constellation(self):
        return get_constellation(self.config.modulation, self.config.real)

    def forward(self, H: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def training_loss(self, batch: LinkBatch) -> torch.Tensor:
        """Scalar training loss on one batch (task loss plus any regulariser)."""
        raise NotImplementedError  # pragma: no cover

    def training_system(self, system: MIMOSystem, generator: torch.Generator) -> MIMOSystem:
        """The link to draw the next training batch from (RE-MIMO varies ``Nt``)."""
        return system

    def quant_input_differences(self) -> dict[str, tuple[int, int, int]]:
        """Layer path -> difference coding ``(t, r, n)`` of its quantized input
        (:mod:`mimoc.quant.spec`); none by default."""
        return {}
