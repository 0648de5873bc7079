"""``mimoc sweep SPEC``: the sweep file (TOML or JSON) and the cartesian plan it names.

A sweep file lists axes; every combination is one curve::

    models = ["detnet.pt"]             # checkpoints, relative to the file
    detectors = ["mmse"]               # classical baselines on the same draws
    targets = ["pytorch", "crossbar"]  # pytorch (the model itself), onnx, crossbar
    quant = ["none", "kaq"]            # onnx: quantization methods ('none' = fp32)
    devices = ["ftj-luo2022"]          # crossbar: device profiles
    arrays = ["128x128"]               # crossbar: array sizes
    c2c = [0, 0.02]                    # crossbar: cycle-to-cycle levels
    snr = "0:2:10"                     # or a list of dB values
    [link]                             # optional: slot (default 14), channel, csi,
                                       #   snr_def (and nt, nr, mod for classical
                                       #   detectors alone)
    [run]                              # optional: seed, max_symbols, min_errors,
                                       #   min_error_slots, batch

The keys are the command line's (``slot`` is ``--slot``, ``batch`` is ``--batch``, ...,
with the same defaults), and ``snr`` takes ``--snr``'s grammar (``"-4:2:10"``, ``"0,3"``).

Curves of models with the same link sizes (Nt, Nr, modulation) form one job: one
:func:`mimoc.sim.ber.simulate` run whose detectors all see the same draws.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mimoc.errors import UsageError
from mimoc.number_lists import parse_number_list

TARGETS = ("pytorch", "onnx", "crossbar")
AXES = ("models", "detectors", "targets", "quant", "devices", "arrays", "c2c", "snr")
LINK_KEYS = ("channel", "csi", "snr_def", "slot", "nt", "nr", "mod")
RUN_KEYS = ("seed", "max_symbols", "min_errors", "min_error_slots", "batch")
# the defaults of mimoc ber's flags (flags.CONCEPTS; tests/studies/test_sweep.py checks)
RUN_DEFAULTS = {"seed": 0, "max_symbols": 1_000_000, "min_errors": 100,
                "min_error_slots": None, "batch": None}
LINK_DEFAULTS = {"channel": "rayleigh", "csi": "perfect", "snr_def": "per-stream", "slot": 14}
#: keys that must be whole numbers (None: the engine's default), and their least value
INTEGER_KEYS = {"slot": 1, "nt": 1, "nr": 1, "seed": 0, "max_symbols": 1, "min_errors": 1,
                "min_error_slots": 0, "batch": 1}
#: spellings of the first sweep files, refused with their new name
RENAMED = {"batch_size": "batch"}


@dataclass(frozen=True)
class Curve:
    """One curve of the plan: a classical detector, a model run in PyTorch, or a model
    compiled for ``target`` with ``options`` (one curve per ``c2c`` level on crossbars)."""

    name: str
    kind: str  # "classical" | "model" | "artifact"
    source: str  # classical name or model path
    target: str = ""
    options: tuple[tuple[str, Any], ...] = ()
    c2c: float | None = None


@dataclass
class SweepSpec:
    """A parsed sweep file (see the module docstring); paths are resolved."""

    models: list[Path] = field(default_factory=list)
    detectors: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=lambda: ["pytorch"])
    quant: list[str | None] = field(default_factory=lambda: [None])
    devices: list[str | None] = field(default_factory=lambda: [None])
    arrays: list[str | None] = field(default_factory=lambda: [None])
    c2c: list[float | None] = field(default_factory=lambda: [None])
    snr: list[float] = field(default_factory=lambda: [0.0, 2.0, 4.0, 6.0, 8.0, 10.0])
    link: dict[str, Any] = field(default_factory=lambda: dict(LINK_DEFAULTS))
    run: dict[str, Any] = field(default_factory=lambda: dict(RUN_DEFAULTS))

    def curves(self) -> list[Curve]:
        """Every curve of the cartesian product, classical detectors first."""
        out = [Curve(name, "classical", name.lower()) for name in self.detectors]
        for model in self.models:
            stem = model.stem
            for target in self.targets:
                if target == "pytorch":
                    out.append(Curve(f"{stem}/pytorch", "model", str(model)))
                elif target == "onnx":
                    for method in self.quant:
                        options = (("quant", method),) if method else ()
                        out.append(Curve(f"{stem}/onnx-{method or 'fp32'}", "artifact",
                                         str(model), "onnx", options))
                else:
                    for device in self.devices:
                        for array in self.arrays:
                            chosen = tuple((k, v) for k, v in (("device", device),
                                                               ("array", array)) if v)
                            label = "-".join(v for _, v in chosen) or "default"
                            # the schedule programs the channel once per slot of the link
                            options = (*chosen, ("slot", int(self.link["slot"])))
                            for level in self.c2c:
                                suffix = "" if level is None else f"@c2c={level:g}"
                                out.append(Curve(f"{stem}/crossbar-{label}{suffix}",
                                                 "artifact", str(model), "crossbar",
                                                 options, level))
        return out

    def to_dict(self) -> dict[str, Any]:
        """The normalised spec, as recorded in results.json (paths as given names)."""
        return {"models": [m.name for m in self.models], "detectors": self.detectors,
                "targets": self.targets, "quant": self.quant, "devices": self.devices,
                "arrays": self.arrays, "c2c": self.c2c, "snr": self.snr,
                "link": self.link, "run": self.run}


def _load_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as err:
        raise UsageError(f"cannot read sweep file {str(path)!r}: {err.strerror or err}") \
            from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise UsageError(f"sweep file {str(path)!r} is not valid JSON ({err.msg}, line "
                             f"{err.lineno})") from None
    else:
        try:
            import tomllib
        except ImportError:  # Python 3.10: no TOML reader in the standard library
            raise UsageError("TOML sweep files need Python 3.11 or later; write the sweep "
                             "as JSON (same keys)") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise UsageError(f"sweep file {str(path)!r} is not valid TOML ({err})") from None
    if not isinstance(data, dict):
        raise UsageError(f"sweep file {str(path)!r} must hold a table of axes")
    return data


def _list(data: dict, key: str, kind: type | tuple, default: list) -> list:
    value = data.get(key, default)
    if not isinstance(value, list) or not value:
        raise UsageError(f"sweep key {key!r} must be a non-empty list")
    for item in value:
        if not isinstance(item, kind) or isinstance(item, bool):
            raise UsageError(f"sweep key {key!r}: bad item {item!r}")
    return value


def parse_snr(value: Any) -> list[float]:
    """``"0:2:10"`` / ``"-4:2:10,12"`` (the ``--snr`` grammar) or ``[0, 2, 4]`` -> sorted
    distinct finite dB values."""
    if not isinstance(value, str):
        value = ",".join(repr(float(v)) for v in _list({"snr": value}, "snr", (int, float), []))
    return parse_number_list(value, "snr", example='"0,2,4"')


def _check_section(section: str, given: Any, keys: tuple[str, ...]) -> None:
    if not isinstance(given, dict):
        raise UsageError(f"sweep [{section}] must be a table of {', '.join(keys)}")
    for key, value in given.items():
        if key in RENAMED:
            raise UsageError(f"sweep [{section}] key {key!r} is now {RENAMED[key]!r} (the "
                             f"--{RENAMED[key]} of the command line)")
        if key not in keys:
            raise UsageError(f"sweep [{section}] takes only {', '.join(keys)}; "
                             f"unknown: {key!r}")
        least = INTEGER_KEYS.get(key)
        if least is not None and value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < least):
            raise UsageError(f"sweep [{section}] {key} must be an integer >= {least}, "
                             f"got {value!r}")


def load_spec(path: str | Path) -> SweepSpec:
    """Parse and check the sweep file ``path`` (TOML, or JSON by the ``.json`` extension)."""
    path = Path(path)
    data = _load_file(path)
    unknown = sorted(set(data) - set(AXES) - {"link", "run"})
    if unknown:
        raise UsageError(f"sweep file {str(path)!r}: unknown key(s) {', '.join(unknown)}; "
                         f"known: {', '.join((*AXES, 'link', 'run'))}")
    spec = SweepSpec()
    spec.models = [(path.parent / m).resolve() for m in _list(data, "models", str, ["-"])] \
        if "models" in data else []
    for model in spec.models:
        if not model.is_file():
            raise UsageError(f"sweep model {str(model)!r} not found")
    spec.detectors = _list(data, "detectors", str, []) if "detectors" in data else []
    if not spec.models and not spec.detectors:
        raise UsageError("the sweep names no models and no detectors")
    spec.targets = _list(data, "targets", str, ["pytorch"])
    for target in spec.targets:
        if target not in TARGETS:
            raise UsageError(f"sweep target {target!r}: choose from {', '.join(TARGETS)}")
    spec.quant = [None if q == "none" else q for q in _list(data, "quant", str, ["none"])]
    spec.devices = _list(data, "devices", str, ["-"]) if "devices" in data else [None]
    spec.arrays = _list(data, "arrays", str, ["-"]) if "arrays" in data else [None]
    if "c2c" in data:
        spec.c2c = [float(c) for c in _list(data, "c2c", (int, float), [])]
        if not all(0 <= c < 1 for c in spec.c2c) or len(set(spec.c2c)) != len(spec.c2c):
            raise UsageError("sweep c2c: give distinct fractions in [0, 1), e.g. [0, 0.02]")
    if "snr" in data:
        spec.snr = parse_snr(data["snr"])
    for section, keys, defaults in (("link", LINK_KEYS, LINK_DEFAULTS),
                                    ("run", RUN_KEYS, RUN_DEFAULTS)):
        given = data.get(section, {})
        _check_section(section, given, keys)
        merged = {**defaults, **given}
        setattr(spec, section, merged)
    names = [curve.name for curve in spec.curves()]
    if len(set(names)) != len(names):
        raise UsageError("two sweep curves share a name (two models with one file name?); "
                         "rename one")
    return spec
