"""Reference processors for latency budgets: a name, a peak throughput, a utilisation.

A processor is a JSON data file (``mimoc/data/processors/*.json`` ships the three of the
IM-MIMO paper, DESIGN.md section 7; users add their own file)::

    {"format": "mimoc-processor", "format_version": 1,
     "name": "dsp-c6678", "title": "TI TMS320C6678 DSP", "kind": "dsp",
     "peak_gflops": 128.0, "utilisation": 1.0, "source": "..."}

``peak_gflops`` is the processor's peak fp32 rate in 10^9 FLOP/s; ``utilisation`` (optional,
default 1.0 = the peak) is the share of it a detector sustains. A detector's latency on it
is derived from its FLOPs (2 x MACs, the compiler's count):

    t = FLOPs / (peak_gflops * 1e9 * utilisation)

At utilisation 1.0 this is a lower bound: no real kernel of small matrix products runs at
the peak. Only ``name`` (default: the file name without ``.json``) and ``peak_gflops`` are
required; ``title``, ``kind``, ``source`` and ``note`` are free text. Unknown keys,
non-positive or non-finite rates and a utilisation outside (0, 1] are refused with a
one-line :class:`ProcessorError` naming the field.

Example::

    >>> p = load_processor("dsp-c6678")
    >>> p.seconds(9_000_000)          # 9 MFLOP at 128 GFLOPS
    7.03125e-05
    >>> load_processor("my_board.json").name
    'my_board'
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mimoc.errors import UsageError

FORMAT = "mimoc-processor"
FORMAT_VERSION = 1
DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "processors"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_TEXT_FIELDS = ("title", "kind", "source", "note")
_KEYS = {"format", "format_version", "name", "peak_gflops", "utilisation", *_TEXT_FIELDS}


class ProcessorError(UsageError):
    """A processor name or file that cannot be used (one line: what and how to fix it)."""


@dataclass(frozen=True)
class Processor:
    """A reference processor: latency = FLOPs / (peak x utilisation).

    Attributes:
        name: identifier used in ``--targets`` (``dsp-c6678``).
        peak_gflops: peak throughput, 10^9 FLOP/s.
        utilisation: sustained share of the peak, in (0, 1]; 1.0 = the peak.
        title, kind, source, note: description (free text).
        path: the data file it was read from.
    """

    name: str
    peak_gflops: float
    utilisation: float = 1.0
    title: str = ""
    kind: str = ""
    source: str = ""
    note: str = ""
    path: str = ""

    @property
    def sustained_flops(self) -> float:
        """FLOP/s assumed for a detector: ``peak_gflops * 1e9 * utilisation``."""
        return self.peak_gflops * 1e9 * self.utilisation

    def seconds(self, flops: float) -> float:
        """Time of ``flops`` FLOPs at the sustained rate."""
        return flops / self.sustained_flops

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def list_processors() -> list[str]:
    """Names of the processors that ship with mimoc (``mimoc/data/processors``)."""
    return sorted(p.stem for p in DATA_DIR.glob("*.json"))


def _looks_like_path(text: str) -> bool:
    return text.endswith(".json") or os.sep in text or "/" in text


def load_processor(name_or_path: str | os.PathLike) -> Processor:
    """A shipped processor by name, or a processor data file by path (validated)."""
    text = str(name_or_path)
    if not _looks_like_path(text):
        path = DATA_DIR / f"{text}.json"
        if not path.is_file():
            raise ProcessorError(f"unknown processor {text!r}; choose from "
                                 f"{', '.join(list_processors())} or give a .json file")
        return _read(path)
    path = Path(text)
    if not path.is_file():
        raise ProcessorError(f"processor file {text!r} not found; give a JSON file with at "
                             "least {\"peak_gflops\": ...}")
    return _read(path)


def _read(path: Path) -> Processor:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise ProcessorError(f"cannot read processor file {str(path)!r}: {err}") from None
    except json.JSONDecodeError as err:
        raise ProcessorError(f"processor file {str(path)!r} is not valid JSON (line "
                             f"{err.lineno}: {err.msg})") from None
    return processor_from_dict(data, where=str(path), default_name=path.stem)


def processor_from_dict(data: Any, *, where: str = "processor",
                        default_name: str | None = None) -> Processor:
    """Validate a processor description (see the module docstring)."""
    def bad(field: str, what: str) -> ProcessorError:
        return ProcessorError(f"{where}: field {field!r} {what}")

    if not isinstance(data, dict):
        raise ProcessorError(f"{where}: a processor is a JSON object, got "
                             f"{type(data).__name__}")
    unknown = sorted(str(k) for k in data if k not in _KEYS)
    if unknown:
        raise bad(unknown[0], f"is not a processor field (fields: {', '.join(sorted(_KEYS))})")
    if "format" in data and data["format"] != FORMAT:
        raise bad("format", f"must be {FORMAT!r}, got {data['format']!r}")
    if "format_version" in data and data["format_version"] != FORMAT_VERSION:
        raise bad("format_version", f"must be {FORMAT_VERSION}, got {data['format_version']!r}")
    name = data.get("name", default_name)
    if not isinstance(name, str) or not _NAME.match(name):
        raise bad("name", "must be letters, digits, '.', '_' or '-' (e.g. \"my-dsp\")")
    if "peak_gflops" not in data:
        raise bad("peak_gflops", "is missing: give the peak throughput in GFLOP/s")
    peak = _number(data["peak_gflops"])
    if peak is None or not peak > 0:
        raise bad("peak_gflops", f"must be a positive finite number, got {data['peak_gflops']!r}")
    utilisation = _number(data.get("utilisation", 1.0))
    if utilisation is None or not 0 < utilisation <= 1:
        raise bad("utilisation", "must be a number in (0, 1] (the share of the peak sustained; "
                  f"1.0 = peak), got {data.get('utilisation')!r}")
    text = {}
    for field in _TEXT_FIELDS:
        value = data.get(field, "")
        if not isinstance(value, str):
            raise bad(field, f"must be a string, got {type(value).__name__}")
        text[field] = value
    return Processor(name=name, peak_gflops=peak, utilisation=utilisation, path=where, **text)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


__all__ = ["Processor", "ProcessorError", "list_processors", "load_processor",
           "processor_from_dict"]
