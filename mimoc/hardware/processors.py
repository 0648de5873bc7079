"""Reference processors for latency budgets: a name, a peak throughput, a utilisation.

A processor is a JSON data file (``mimoc/data/processors/*.json`` ships the three of the
IM-MIMO paper, docs/design.md section 7; users add their own file)::

    {"format": "mimoc-processor", "format_version": 1,
     "name": "dsp-c6678", "title": "TI TMS320C6678 DSP", "kind": "dsp",
     "peak_gflops": 128.0, "utilisation": 1.0, "source": "..."}

``peak_gflops`` is the processor's peak fp32 rate in 10^9 FLOP/s; ``utilisation`` (optional,
default 1.0 = the peak) is the share of it a detector sustains. A detector's latency on it
is derived from its FLOPs (2 x MACs, the compiler's count):

    t = FLOPs / (peak_gflops * 1e9 * utilisation)

At utilisation 1.0 this is a lower bound: no real kernel of small matrix products runs at
the peak. Only ``name`` (default: the file name without ``.json``) and ``peak_gflops`` are
required; ``title``, ``kind``, ``source`` and ``note`` are free text. The file is checked
against the JSON Schema ``mimoc/data/schemas/processor.schema.json``: unknown keys, NaN,
non-positive rates and a utilisation outside (0, 1] are refused with a one-line
:class:`ProcessorError` naming the field.

Example::

    >>> p = load_processor("dsp-c6678")
    >>> p.seconds(9_000_000)          # 9 MFLOP at 128 GFLOPS
    7.03125e-05
    >>> load_processor("my_board.json").name     # a profile of your own  # doctest: +SKIP
    'my_board'
"""

from __future__ import annotations

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


class ProcessorError(UsageError):
    """A processor name or file that cannot be used (one line: what and how to fix it)."""


@dataclass(frozen=True)
class Processor:
    """A reference processor: latency = FLOPs / (peak x utilisation).

    Attributes:
        name: identifier used in ``--target`` (``dsp-c6678``).
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
    from mimoc.validation import read_json

    data = read_json(path, where=f"processor file {str(path)!r}", error=ProcessorError,
                     fix="give a JSON object such as {\"peak_gflops\": 200}")
    return processor_from_dict(data, where=str(path), default_name=path.stem)


def processor_from_dict(data: Any, *, where: str = "processor",
                        default_name: str | None = None) -> Processor:
    """Validate a processor description against the JSON Schema
    ``mimoc/data/schemas/processor.schema.json`` (see the module docstring)."""
    from mimoc.validation import validate

    validate(data, "processor", origin=where, error=ProcessorError)
    name = data.get("name", default_name)
    if not isinstance(name, str) or not _NAME.match(name):
        raise ProcessorError(f"{where}: field 'name' must be letters, digits, '.', '_' or '-' "
                             f"(e.g. \"my-dsp\"), got {name!r}; add a \"name\" to the file")
    text = {field: data.get(field, "") for field in _TEXT_FIELDS}
    return Processor(name=name, peak_gflops=float(data["peak_gflops"]),
                     utilisation=float(data.get("utilisation", 1.0)), path=where, **text)


__all__ = ["Processor", "ProcessorError", "list_processors", "load_processor",
           "processor_from_dict"]
