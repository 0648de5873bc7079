"""One vocabulary for the flags that several commands share.

Every command declares a shared concept (the slot length, the SNR points, the symbol
budget, ...) through :func:`add`, so a concept has one flag, one grammar and one default
everywhere; :data:`CONCEPTS` is the single table, printed into docs/cli.md by
:func:`markdown_table` (a test checks that the parsers, this table and the document
agree). Old spellings stay for one release as deprecated aliases: they work and print one
line on stderr, ``mimoc: --ser-symbols is deprecated; use --max-symbols``.

This module is imported at start-up: it imports nothing heavy.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from mimoc.errors import UsageError

# the grammar lives below the studies (a sweep file's snr reads the same); kept here by name
from mimoc.number_lists import MAX_LIST_POINTS, parse_number_list  # noqa: F401

#: argparse takes an argument that starts with '-' for an option unless it matches the
#: parser's ``_negative_number_matcher``, by default only plain numbers (-4, -0.5): so
#: ``--snr -4:2:10`` failed with "expected one argument". mimoc has no option that looks
#: like a number, so every value made of digits, '.', 'e', signs, ':' and ',' after the
#: '-' is a value (lists and ranges included); cli._Parser sets it on every (sub)parser.
NUMBER_LIKE = re.compile(r"^-\.?\d[\d.eE+\-:,]*$")


@dataclass(frozen=True)
class Concept:
    """One shared concept of the command line.

    Attributes:
        flag: its one spelling (``--slot``).
        metavar: the placeholder in help texts.
        grammar: what a value looks like, for docs/cli.md.
        meaning: one line on what it sets, for the help and docs/cli.md.
        defaults: the default per command (``"*"``: every command that has no entry);
            the argparse default, so ``--help`` and the table cannot disagree.
        shown: how a default reads in help and docs where it is not the plain value.
        type: argparse ``type=`` of the value (``str`` for lists parsed later).
        aliases: deprecated spellings per command, ``{command: ("--ser-symbols",)}``.
    """

    flag: str
    metavar: str
    grammar: str
    meaning: str
    defaults: dict[str, Any]
    shown: dict[str, str] = field(default_factory=dict)
    type: Any = str
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def default(self, command: str) -> Any:
        return self.defaults.get(command, self.defaults.get("*"))

    def shown_default(self, command: str) -> str:
        if command in self.shown:
            return self.shown[command]
        value = self.default(command)
        return "none" if value is None else str(value)


_LIST = ("comma list `0,4,8` and/or inclusive ranges `a:step:b`, `a:b` (step 1); "
         "negatives allowed (`-4:2:10`)")

#: The shared concepts, by name. ``defaults`` keys are the commands that have the flag
#: (plus ``"*"``); a command not listed there and without ``"*"`` must not declare it.
CONCEPTS: dict[str, Concept] = {
    "slot": Concept(
        "--slot", "S", "integer >= 1",
        "symbol vectors per slot sharing one channel (a 6G slot: 14 OFDM symbols)",
        {"*": 14}, type=int),
    "snr": Concept(
        "--snr", "LIST", _LIST + "; budget takes one value",
        "SNR points in dB",
        {"ber": "0:2:10", "report": None, "budget": None},
        shown={"report": "six points over the model's training range",
               "budget": "where the fp32 model crosses --target-ser"}),
    "snr-train": Concept(
        "--snr-train", "LO:HI", "range `LO:HI` in dB (a training interval, not points)",
        "training SNR range, uniform per slot", {"train": "0:15"}),
    "max-symbols": Concept(
        "--max-symbols", "N", "integer >= 1 (budget: >= 0, 0 skips the accuracy)",
        "scalar symbols per SNR point",
        {"ber": 1_000_000, "report": 50_000, "budget": 100_000},
        type=int, aliases={"budget": ("--ser-symbols",)}),
    "c2c": Concept(
        "--c2c", "LIST", "the `--snr` grammar (`0,0.02,0.04`, `0:0.01:0.04`), fractions in "
        "[0, 1), in the order given; train takes one value",
        "crossbar cycle-to-cycle variation levels",
        {"ber": None, "report": "0,0.01,0.02,0.04", "train": "0"},
        shown={"ber": "the device's own", "train": "0 (off)"}),
    "threads": Concept(
        "--threads", "N", "integer >= 1",
        "CPU threads (1: bit-reproducible results and per-core timings; raise it for "
        "training)", {"*": 1}, type=int),
    "batch": Concept(
        "--batch", "N", "integer >= 1 slots (bench: a comma list `1,64`)",
        "slots (channel draws) per batch",
        {"ber": None, "train": None, "bench": "1,64"},
        shown={"ber": "about 16384 symbols", "train": "about 256 symbol vectors (256/S)"},
        type=None, aliases={"ber": ("--batch-size",), "bench": ("--batches",)}),
    "target": Concept(
        "--target", "TARGET",
        "`onnx`, `onnx-w4[:METHOD]`, `onnx-w4a4[:METHOD]`, `onnx-int8[:METHOD]`, "
        "`onnx-w4-int8[:METHOD]`, `onnx-auto[:METHOD]`, `iree`, "
        "`crossbar[:DEVICE][@STRATEGY]` (`@search`: budget, report), a processor, "
        "`proc:FILE.json`, `mmse` (compile: one compilable name; budget, report: a comma "
        "list)",
        "what to compile for / compare",
        {"compile": "onnx", "budget": None, "report": None},
        shown={"budget": "every default target this build can run",
               "report": "every default target this build can run"},
        aliases={"budget": ("--targets",), "report": ("--targets",)}),
    "system": Concept(
        "--system", "SYSTEM", "`complex` or `real`",
        "the link: complex (y = Hx + n in its real form, 2Nr x 2Nt) or real (the DetNet and "
        "WeSNet papers' real channel with N(0,1) entries and real BPSK/PAM, Nr x Nt)",
        {"ber": None, "train": "complex"}, shown={"ber": "the first model's, else complex"}),
    "seed": Concept(
        "--seed", "N", "integer >= 0", "master random seed", {"*": 0}, type=int),
    "array": Concept(
        "--array", "RxC", "`ROWSxCOLS`", "crossbar maximum array size",
        {"*": "128x128"}),
    "workers": Concept(
        "--workers", "N", "integer >= 1 (1: in this process, without Ray)",
        "local Ray workers for the Monte Carlo units", {"ber": 1, "sweep": None},
        shown={"sweep": "the CPUs of this machine"}, type=int),
    "ray-address": Concept(
        "--ray-address", "ADDR", "a Ray address (`auto`, `ray://head:10001`)",
        "an existing Ray cluster to run on", {"ber": None, "sweep": None},
        shown={"ber": "a local Ray", "sweep": "a local Ray"}),
}

#: Which concepts each command declares (checked against the parsers by the tests).
COMMAND_CONCEPTS: dict[str, tuple[str, ...]] = {
    "ber": ("slot", "snr", "max-symbols", "c2c", "threads", "batch", "seed", "workers",
            "ray-address", "system"),
    "train": ("slot", "snr-train", "c2c", "threads", "batch", "seed", "system"),
    "compile": ("slot", "target", "array"),
    "bench": ("slot", "threads", "batch"),
    "budget": ("slot", "snr", "max-symbols", "threads", "target", "seed", "array"),
    "report": ("slot", "snr", "max-symbols", "c2c", "target", "seed", "array"),
    "quantize": ("threads", "seed"),
    "sweep": ("threads", "workers", "ray-address"),
}


class _Store(argparse.Action):
    """``store`` that also records that the flag was given (:func:`given`)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace.__dict__.setdefault("_given", set()).add(self.dest)


class _Deprecated(_Store):
    """A deprecated spelling: stores like the new flag, warns once per run on stderr."""

    def __init__(self, *args, replacement: str, **kwargs):
        self.replacement = replacement
        super().__init__(*args, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        warn_deprecated(namespace, option_string, self.replacement)
        super().__call__(parser, namespace, values, option_string)


def warn_deprecated(namespace, old: str, new: str) -> None:
    """One stderr line per deprecated spelling and run (stdout, e.g. --json, stays clean)."""
    warned = namespace.__dict__.setdefault("_warned", set())
    if old not in warned:
        warned.add(old)
        print(f"mimoc: {old} is deprecated; use {new}", file=sys.stderr)


def given(args: argparse.Namespace, dest: str) -> bool:
    """Whether the flag of ``dest`` was on the command line (not its default)."""
    return dest in getattr(args, "_given", ())


def add(parser, name: str, command: str, help: str | None = None, **overrides) -> None:  # noqa: A002
    """Declare concept ``name`` of :data:`CONCEPTS` on ``parser`` for ``command``: its flag,
    metavar, type and default, and its deprecated aliases; ``help`` (the command's own
    wording) gets the default appended."""
    concept = CONCEPTS[name]
    if command not in concept.defaults and "*" not in concept.defaults:
        raise ValueError(f"{command} does not declare {concept.flag} (flags.CONCEPTS)")
    text = help or concept.meaning
    text = f"{text} (default: {concept.shown_default(command)})".replace("%", "%%")
    kwargs = {"metavar": concept.metavar, "default": concept.default(command), **overrides}
    if concept.type not in (None, str):
        kwargs["type"] = concept.type
    dest = name.replace("-", "_")
    parser.add_argument(concept.flag, dest=dest, action=_Store, help=text, **kwargs)
    for alias in concept.aliases.get(command, ()):
        parser.add_argument(alias, dest=dest, action=_Deprecated, replacement=concept.flag,
                            default=argparse.SUPPRESS, help=argparse.SUPPRESS,
                            **{k: v for k, v in kwargs.items() if k != "default"})


def warn_deprecated_targets(args: argparse.Namespace, text: str | None) -> str | None:
    """``text`` (a ``--target`` list) as given, after one warning per deprecated target
    name in it (``onnx-cpu`` -> ``onnx``); the studies accept both spellings."""
    from mimoc.studies.budget.target_names import canonical_name

    for item in (text or "").split(","):
        if item.strip() and canonical_name(item) != item.strip():
            warn_deprecated(args, f"target {item.strip()}", canonical_name(item))
    return text


# -- the shared value grammar ----------------------------------------------------------

def one_value(values: list[float], flag: str, why: str) -> float:
    """The single value of a list where a command needs one (a one-line refusal else)."""
    if len(values) != 1:
        raise UsageError(f"{flag} takes one value here ({why}), got {len(values)}")
    return values[0]


def positive(flag: str, value: int, least: int = 1) -> int:
    if value is None or value < least:
        raise UsageError(f"{flag} must be an integer >= {least}, got {value}")
    return value


# -- the table of docs/cli.md -------------------------------------------------------------

def concept_commands(name: str) -> list[str]:
    return [command for command, names in COMMAND_CONCEPTS.items() if name in names]


def markdown_table() -> str:
    """The concept table of docs/cli.md (``python -m mimoc.commands.flags`` prints it)."""
    lines = ["| concept | flag | grammar | default | commands |",
             "|---|---|---|---|---|"]
    for name, concept in CONCEPTS.items():
        commands = concept_commands(name)
        defaults = {command: concept.shown_default(command) for command in commands}
        if len(set(defaults.values())) == 1:
            default = f"`{next(iter(defaults.values()))}`"
        else:
            default = "; ".join(f"{command}: `{value}`" for command, value in defaults.items())
        aliases: dict[str, list[str]] = {}
        for command, spellings in concept.aliases.items():
            for alias in spellings:
                aliases.setdefault(alias, []).append(command)
        flag = f"`{concept.flag} {concept.metavar}`"
        if aliases:
            flag += " (deprecated: " + ", ".join(
                f"`{alias}` in {', '.join(commands)}" for alias, commands in aliases.items()) + ")"
        lines.append(f"| {concept.meaning} | {flag} | {concept.grammar} | {default} | "
                     f"{', '.join(commands)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
