"""Compiled artifacts in ``mimoc ber``: which target an entry is, its model config, and
``mimoc ber DIR --c2c 0,0.01,...``: one IMC-simulated detector per C2C level."""

from __future__ import annotations


def parse_c2c_list(text: str | None) -> list[float | None]:
    """``"0,0.01,0.02"`` (or ``"0:0.01:0.02"``, the shared list grammar) ->
    ``[0.0, 0.01, 0.02]`` in the order given; ``None`` -> ``[None]`` (the device's own)."""
    from mimoc.commands.flags import parse_number_list

    if text is None:
        return [None]
    return parse_number_list(text, "--c2c", sort=False, low=0.0, high=1.0,
                             example="0,0.01,0.02,0.03,0.04")


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
                       verify: bool = True, time_s: float | None = None) -> dict:
    """``{"DIR@c2c=0.01": engine, ...}`` (``DIR`` alone for the device's own C2C;
    ``verify=False`` uses an ``arrays.npz`` modified after compiling; ``time_s``: seconds
    since the static arrays were programmed)."""
    from mimoc.runtime.imc import load_schedule

    schedule = load_schedule(entry, verify=verify)
    out = {}
    for level in levels:
        name = entry if level is None else f"{entry}@c2c={level:g}"
        out[name] = schedule.engine(c2c=level, seed=seed, time_s=time_s)
    return out
