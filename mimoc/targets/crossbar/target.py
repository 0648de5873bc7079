"""The ``crossbar`` target: its options, its passes, the schedule it builds.

Options (keywords of ``mimoc.compile`` / flags of ``mimoc compile --target crossbar``):
``device`` (an id of :func:`~mimoc.hardware.devices.list_devices`, a profile path
or a :class:`~mimoc.hardware.devices.Device`; default ``ftj-luo2022``), ``array``
and ``slot`` (shortcuts for the config fields), ``crossbar`` (a
:class:`~mimoc.targets.crossbar.config.CrossbarConfig` or dict), and the config fields
``accumulation``, ``static_clip``, ``write_parallel``, ``mc_draws``, ``strategy`` (the
channel arrays' programming strategy, :mod:`mimoc.targets.crossbar.strategy`) one by one.

Default passes: ``canonicalize, split-channel, split-linear`` (the ONNX target's
``hoist-conv-rows`` is left out: on a crossbar it would move convolution reads into the
slot stage, see docs/crossbar.md); then ``crossbar-lower``. ``prune`` and
``remove-layers`` run when named (with their options). The arrays hold fp32 weights
mapped onto device states, so the quantization options of the onnx target are refused.

Example::

    >>> result = mimoc.compile("detnet.pt", target="crossbar", out="out/xb",
    ...                        device="ftj-luo2022", array=(64, 64))
    >>> result.schedule["totals"]["per_slot_s"]
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mimoc.targets.base import BuildContext, Target
from mimoc.targets.crossbar.config import CrossbarConfig
from mimoc.targets.crossbar.format import FORMAT, SCHEDULE

DEFAULT_PASSES = ("canonicalize", "split-channel", "split-linear")
DEFAULT_DEVICE = "ftj-luo2022"
#: CrossbarConfig fields that are also options of their own
CONFIG_OPTIONS = ("array", "slot", "accumulation", "static_clip", "write_parallel", "mc_draws",
                  "strategy")


@dataclass(frozen=True)
class CrossbarTargetConfig:
    """The device (loaded and validated) and the array/schedule configuration."""

    device: Any
    config: CrossbarConfig


def crossbar_config(config: CrossbarConfig | dict | None = None, **fields: Any) -> CrossbarConfig:
    """``config`` (a CrossbarConfig, a dict or ``None`` for the defaults) with ``fields``
    (those not ``None``) replaced; every value checked."""
    base = config if isinstance(config, CrossbarConfig) else CrossbarConfig(**(config or {}))
    changes = base.to_dict()
    changes.update({k: v for k, v in fields.items() if v is not None})
    return CrossbarConfig.from_dict(changes)


class CrossbarTarget(Target):
    name = "crossbar"
    summary = "memristor-crossbar programming schedules for the IMC simulator"
    options = ("device", "crossbar", *CONFIG_OPTIONS)
    foreign_option_hint = "the crossbar target maps fp32 weights onto device states"
    default_passes = DEFAULT_PASSES
    artifact_index = SCHEDULE
    artifact_format = FORMAT

    def configure(self, *, device: Any = None, crossbar: Any = None,
                  **fields: Any) -> CrossbarTargetConfig:
        from mimoc.hardware.devices import load_device

        dev = load_device(device if device is not None else DEFAULT_DEVICE)
        config = crossbar_config(crossbar, **fields)
        config.channel_strategy.check_device(dev)
        return CrossbarTargetConfig(dev, config)

    def passes(self, config: CrossbarTargetConfig,
               requested: str | Iterable[str] | None) -> list:
        from mimoc.compiler.pipeline import resolve_passes
        from mimoc.targets.crossbar import lower

        chosen = resolve_passes(self.default_passes if requested is None else requested)
        return [p for p in chosen if p.name != lower.NAME] + [lower.PASS]

    def build(self, graph: Any, config: CrossbarTargetConfig, *, context: BuildContext) -> Any:
        from mimoc.targets.crossbar.artifact import build_schedule

        return build_schedule(graph, config.device, config.config, model=dict(context.model),
                              source=context.source, records=context.records,
                              progress=context.progress)

    def write(self, artifact: Any, out: str | os.PathLike, *, force: bool) -> Path:
        from mimoc.targets.crossbar.artifact import write_artifact

        return write_artifact(artifact, out, force=force)


TARGET = CrossbarTarget()
