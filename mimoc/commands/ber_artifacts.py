"""Compiled artifacts in ``mimoc ber``: which target an entry is, its model config, and
``mimoc ber DIR --c2c 0,0.01,...``: one IMC-simulated detector per C2C level."""

from __future__ import annotations

import math

from mimoc.errors import UsageError


def parse_c2c_list(text: str | None) -> list[float | None]:
    """``"0,0.01,0.02"`` -> ``[0.0, 0.01, 0.02]``; ``None`` -> ``[None]`` (the device's own)."""
    if text is None:
        return [None]
    values = []
    for item in text.split(","):
        try:
            value = float(item)
        except ValueError:
            value = math.nan
        if not 0 <= value < 1:
            raise UsageError(f"bad --c2c item {item.strip()!r}: give fractions in [0, 1) "
                             "(0.02 = 2%), e.g. --c2c 0,0.01,0.02,0.03,0.04")
        values.append(value)
    if len(set(values)) != len(values):
        raise UsageError(f"--c2c {text!r} lists a level twice; give each once")
    return values


def artifact_kind(entry: str) -> str | None:
    """The target whose artifact directory ``entry`` is, or ``None``."""
    from mimoc.targets import artifact_target

    return artifact_target(entry)


def artifact_config(entry: str) -> dict:
    """The model config recorded in an artifact's index file (``{}`` when absent)."""
    if artifact_kind(entry) == "crossbar":
        from mimoc.targets.crossbar.artifact import read_schedule

        index = read_schedule(entry)
    elif artifact_kind(entry) == "iree":
        from mimoc.targets.iree.artifact import read_manifest as read_iree_manifest

        index = read_iree_manifest(entry)
    else:
        from mimoc.targets.onnx import read_manifest

        index = read_manifest(entry)
    return (index.get("model") or {}).get("config") or {}


def crossbar_detectors(entry: str, levels: list[float | None], seed: int, *,
                       verify: bool = True) -> dict:
    """``{"DIR@c2c=0.01": engine, ...}`` (``DIR`` alone for the device's own C2C;
    ``verify=False`` uses an ``arrays.npz`` modified after compiling)."""
    from mimoc.runtime.imc import load_schedule

    schedule = load_schedule(entry, verify=verify)
    out = {}
    for level in levels:
        name = entry if level is None else f"{entry}@c2c={level:g}"
        out[name] = schedule.engine(c2c=level, seed=seed)
    return out
