"""``mimoc train FAMILY``: train a detector of the zoo and write a checkpoint.

Family options are generated from the family's ``Config`` dataclass: every
field (besides ``nt``, ``nr``, ``modulation``, which are ``--nt``, ``--nr``,
``--mod``) becomes ``--field-name`` with its type, its default and the
description from the Config's ``Attributes:`` docstring, so a field added to a
family appears here without touching this file.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import sys
import textwrap
import types
import typing
from typing import Any

from mimoc.commands import flags
from mimoc.errors import UsageError
from mimoc.sim.modulation import MODULATIONS
from mimoc.sim.snr import SNR_DEFINITIONS

NAME = "train"
HELP = "train a detector of the zoo and write a mimoc checkpoint"
DESCRIPTION = """\
Train a deep MIMO detector on batches drawn online from the channel model and
write a checkpoint (a plain-data .pt file that 'mimoc inspect', 'mimoc ber' and
mimoc.detectors.load_detector read safely).

Every step draws --batch slots (channel realisations) of --slot symbols (default:
14 symbols per slot and 256/14 = 18 slots, about 256 symbol vectors per step), each
slot at an SNR uniform in --snr-train LO:HI dB under --snr-def, and takes one
Adam step on the family's loss, with gradient-norm clipping (--grad-clip) and
a cosine learning-rate decay from --lr to --lr x 0.05. The validation symbol
error rate is measured every --val-every steps on a fixed set of --val-batch
slots spread evenly over the training SNR range (the same set for every run,
so runs compare). Classical MMSE (the unbiased LMMSE) detects the same slots (same noise, the same
channel estimate) and its SER is printed next to the model's; a model worse
than MMSE gets a warning on stderr (the checkpoint is still written, exit
status 0). --c2c X > 0 trains noise-aware: the receiver's channel is
perturbed as a memristor crossbar would program it (three-sigma mapping, pulse
quantisation to --states levels, cycle-to-cycle variation X per pulse).

Run 'mimoc train FAMILY --help' for the family's own options.
--threads defaults to 1 (bit-reproducible results); raise it for training.

examples:
  mimoc train detnet --nt 8 --nr 16 --mod qpsk --steps 5000 --snr-train 0:12 -o detnet.pt
  mimoc train wesnet --nt 8 --nr 16 --profile half-exp --retained 0.5 -o wesnet.pt
  mimoc train detnet --nt 4 --nr 8 --c2c 0.02 --states 150 -o detnet-nat.pt --json
"""

#: The Config fields that have their own flags.
SYSTEM_FIELDS = {"nt": "nt", "nr": "nr", "modulation": "mod", "system": "system"}


# -- family options from Config dataclasses --------------------------------------------

@dataclasses.dataclass
class FieldFlag:
    """One generated family option: the Config field, its flag and how to parse it."""

    field: str
    flag: str
    dest: str
    annotation: Any
    default: Any
    help: str


def field_docs(config_cls: type) -> dict[str, str]:
    """Field descriptions from the ``Attributes:`` sections of the Config's docstrings
    (the class and its bases, the nearest first)."""
    docs: dict[str, str] = {}
    for klass in reversed(config_cls.__mro__):
        text = klass.__dict__.get("__doc__") or ""
        section = re.split(r"^\s*Attributes:\s*$", text, maxsplit=1, flags=re.M)
        if len(section) < 2:
            continue
        current = None
        base_indent = None
        for line in section[1].splitlines():
            if not line.strip():
                continue
            indent = len(line) - len(line.lstrip())
            entry = re.match(r"\s*(\w+)(?:\s*\([^)]*\))?:\s*(.*)$", line)
            if base_indent is None and entry:
                base_indent = indent
            if entry and indent == base_indent:
                current = entry.group(1)
                docs[current] = entry.group(2).strip()
            elif current and base_indent is not None and indent > base_indent:
                docs[current] += " " + line.strip()
            else:
                break
    return docs


def family_flags(config_cls: type, reserved: set[str]) -> list[FieldFlag]:
    """The generated options of a family (one per Config field but the system ones)."""
    hints = typing.get_type_hints(config_cls)
    docs = field_docs(config_cls)
    flags = []
    for f in dataclasses.fields(config_cls):
        if not f.init or f.name in SYSTEM_FIELDS:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        flag = "--" + f.name.replace("_", "-")
        if flag in reserved:  # a Config field named like a trainer flag
            flag = "--model-" + f.name.replace("_", "-")
        description = f.metadata.get("help") or docs.get(f.name) or f.name.replace("_", " ")
        description = re.sub(r"``(.*?)``", r"\1", description).rstrip(".")
        flags.append(FieldFlag(f.name, flag, f"config_{f.name}", hints.get(f.name, Any),
                               default, description))
    return flags


def _format_default(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return ",".join(_format_default(v) for v in value)
    return str(value)


def _metavar(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        names = [_metavar(a) for a in args if a is not type(None)]
        return "|".join(names) + ("|none" if type(None) in args else "")
    if origin is typing.Literal:
        return "{" + ",".join(str(a) for a in args) + "}"
    if origin in (tuple, list):
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            return ",".join(_metavar(a) for a in args)
        return f"{_metavar(args[0]) if args else 'X'},..."
    return {int: "INT", float: "FLOAT", str: "STR", bool: "BOOL"}.get(annotation, "VALUE")


def parse_field_value(text: str, annotation: Any, flag: str) -> Any:
    """Parse a command-line value for a Config field of type ``annotation``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    value = text.strip()
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and value.lower() in ("none", "auto", "default"):
            return None
        for option in args:
            if option is type(None):
                continue
            try:
                return parse_field_value(value, option, flag)
            except UsageError:
                continue
        raise UsageError(f"{flag} expects {_metavar(annotation)}, got {text!r}")
    if origin is typing.Literal:
        for option in args:
            if str(option) == value:
                return option
        raise UsageError(f"{flag} expects one of {', '.join(map(str, args))}, got {text!r}")
    if origin in (tuple, list):
        items = [item for item in value.split(",") if item.strip()] if value else []
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(items) != len(args):
                raise UsageError(f"{flag} expects {len(args)} comma-separated values, "
                                 f"got {text!r}")
            parsed = [parse_field_value(i, a, flag) for i, a in zip(items, args, strict=True)]
        else:
            item_type = args[0] if args else str
            parsed = [parse_field_value(i, item_type, flag) for i in items]
        return tuple(parsed) if origin is tuple else parsed
    try:
        if annotation is bool:
            lowered = value.lower()
            if lowered in ("true", "yes", "on", "1"):
                return True
            if lowered in ("false", "no", "off", "0"):
                return False
            raise ValueError
        if annotation is int:
            return int(value)
        if annotation is float:
            number = float(value)
            if not math.isfinite(number):
                raise ValueError
            return number
    except ValueError:
        raise UsageError(f"{flag} expects {_metavar(annotation)}, got {text!r}") from None
    return value


def family_summary(cls: type, name: str) -> tuple[str, str]:
    """A family's one-line summary and its ``--help`` description, from the first paragraph
    of its module's docstring (the model's own description; the class docstrings point
    there)."""
    module_doc = (sys.modules[cls.__module__].__doc__ or "").strip()
    paragraph = " ".join(module_doc.split("\n\n")[0].split()) if module_doc else ""
    paragraph = re.sub(r"``(.*?)``", r"\1", paragraph).rstrip(".") or f"the {name} family"
    about = (f"Train a {name} detector. {paragraph}.\n\nThe link and training options are "
             "those of 'mimoc train --help'; the model options below are the fields of "
             f"{cls.Config.__name__} (a size given as 'none' is derived from Nt as its "
             "description says).")
    return paragraph, "\n\n".join(textwrap.fill(part, 80) for part in about.split("\n\n"))


def _add_family_flags(group, flags: list[FieldFlag]) -> None:
    for spec in flags:
        default = _format_default(spec.default)
        # a None default that the description explains ("default 3K") is not repeated
        shown = "" if spec.default is None and "default" in spec.help.lower() \
            else f" (default: {default})"
        help_text = f"{spec.help}{shown}".replace("%", "%%")
        if spec.annotation is bool:
            group.add_argument(spec.flag, dest=spec.dest, default=spec.default,
                               action=argparse.BooleanOptionalAction, help=help_text)
            continue
        group.add_argument(spec.flag, dest=spec.dest, default=spec.default,
                           metavar=_metavar(spec.annotation), help=help_text,
                           type=_argparse_type(spec))


def _argparse_type(spec: FieldFlag):
    """A ``type=`` callable whose errors argparse prints as ``argument --x: expects ...``."""
    def parse(text: str):
        try:
            return parse_field_value(text, spec.annotation, spec.flag)
        except UsageError as err:
            raise argparse.ArgumentTypeError(str(err).removeprefix(f"{spec.flag} ")) from None
    return parse


# -- trainer options -----------------------------------------------------------------

def parse_snr_range(text: str) -> tuple[float, float]:
    """``LO:HI`` (or one value ``X`` for ``X:X``) in dB."""
    parts = text.split(":")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or not all(math.isfinite(v) for v in values) or values[0] > values[1]:
        raise UsageError(f"malformed --snr-train {text!r}; write LO:HI in dB with LO <= HI, "
                         "e.g. 0:15 or -5:10")
    return values[0], values[1]


#: Symbol vectors per step and per validation set of the defaults: ``--batch`` and
#: ``--val-batch`` count slots, so their defaults are these over ``--slot`` (rounded), and a
#: run keeps about the same work per step whatever the slot (256 and 2048 at --slot 1).
STEP_VECTORS = 256
VALIDATION_VECTORS = 2048


def slots_for(vectors: int, slot: int) -> int:
    """Slots of ``slot`` symbol vectors closest to ``vectors`` vectors (at least one)."""
    return max(1, round(vectors / slot))


def _add_training_flags(group, defaults) -> None:
    d = defaults
    group.add_argument("--steps", type=int, default=d.steps, metavar="N",
                       help=f"optimizer steps (default: {d.steps})")
    flags.add(group, "batch", NAME, type=int, help="slots (channel draws) per step")
    flags.add(group, "slot", NAME)
    flags.add(group, "snr-train", NAME, help="training SNR range in dB, uniform per slot "
                                              "(--snr-train -5:10 for a negative start)")
    group.add_argument("--snr-def", default=d.snr_def, choices=SNR_DEFINITIONS,
                       help=f"SNR convention, see 'mimoc ber --help' (default: {d.snr_def})")
    group.add_argument("--channel", default=d.channel, metavar="SPEC",
                       help="rayleigh, kronecker:RHO, kronecker:rx=RHO,tx=RHO, task:ID, file:H.npy "
                            f"(default: {d.channel})")
    group.add_argument("--csi", default=d.csi, metavar="SPEC",
                       help=f"perfect, ls:NP@SNR or error:SNR (default: {d.csi})")
    group.add_argument("--lr", type=float, default=d.lr, metavar="X",
                       help=f"initial Adam learning rate (default: {d.lr:g})")
    group.add_argument("--lr-schedule", default=d.lr_schedule, choices=("cosine", "constant"),
                       help=f"cosine: decay to lr x {d.lr_final:g} by the last step "
                            f"(default: {d.lr_schedule})")
    group.add_argument("--grad-clip", type=float, default=d.grad_clip, metavar="X",
                       help=f"max global gradient L2 norm, 0 = off (default: {d.grad_clip:g})")
    flags.add(group, "seed", NAME, help="seed of the initial weights and the training data")
    flags.add(group, "c2c", NAME, help="noise-aware training: crossbar cycle-to-cycle "
                                       "variation per programming pulse, e.g. 0.02; one value")
    group.add_argument("--states", type=int, default=d.states, metavar="P",
                       help=f"device programming states for --c2c (default: {d.states})")
    group.add_argument("--val-every", type=int, default=d.val_every, metavar="N",
                       help=f"validate every N steps, 0 = only at the end "
                            f"(default: {d.val_every})")
    group.add_argument("--val-batch", type=int, default=None, metavar="SLOTS",
                       help=f"validation slots, 0 = no validation (default: about "
                            f"{VALIDATION_VECTORS} symbol vectors, {VALIDATION_VECTORS}/S)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mimoc.detectors import FAMILIES
    from mimoc.detectors.training import TrainOptions

    families = parser.add_subparsers(dest="family", metavar="FAMILY", required=True,
                                     title="families")
    defaults = TrainOptions()
    for name, cls in FAMILIES.items():
        summary, about = family_summary(cls, name)
        p = families.add_parser(name, help=summary, description=about,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
        config_defaults = cls.Config()
        system = p.add_argument_group("link")
        system.add_argument("--nt", type=int, default=config_defaults.nt,
                            help=f"transmit streams Nt (default: {config_defaults.nt})")
        system.add_argument("--nr", type=int, default=config_defaults.nr,
                            help=f"receive antennas Nr (default: {config_defaults.nr})")
        # None: the family's default, or bpsk in a real system (resolved in run)
        system.add_argument("--mod", default=None, metavar="MOD",
                            help=f"modulation: {', '.join(MODULATIONS)}, with --system real "
                                 f"bpsk, 4pam or 8pam (default: {config_defaults.modulation}, "
                                 "with --system real bpsk)")
        flags.add(system, "system", NAME, choices=("complex", "real"))
        training = p.add_argument_group("training")
        _add_training_flags(training, defaults)
        output = p.add_argument_group("output")
        output.add_argument("-o", "--output", required=True, metavar="PATH.pt",
                            help="checkpoint to write (atomically: temp file + rename); an "
                                 "existing file only with --force")
        output.add_argument("--force", action="store_true",
                            help="replace an existing -o file")
        output.add_argument("--json", action="store_true",
                            help="print the summary as one JSON object")
        output.add_argument("--no-progress", action="store_true",
                            help="no progress bar (it is shown only when stderr is a terminal)")
        flags.add(output, "threads", NAME,
                  help="CPU threads for torch (1: bit-reproducible; raise it for training)")
        reserved = {opt for action in p._actions for opt in action.option_strings}
        options = family_flags(cls.Config, reserved)
        group = p.add_argument_group(f"{name} options", f"fields of {cls.Config.__name__}")
        _add_family_flags(group, options)
        p.set_defaults(_family_flags=options)


# -- run ---------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> int:
    import torch

    from mimoc.detectors import (
        FAMILIES,
        build_detector,
        count_params,
        save_detector,
        train_detector,
    )
    from mimoc.detectors.training import TrainOptions
    from mimoc.fileio import check_output_file, write_error

    flags.positive("--slot", args.slot)
    c2c = flags.one_value(flags.parse_number_list(args.c2c, "--c2c", low=0.0, high=1.0,
                                                  example="0.02"),
                          "--c2c", "a model is trained at one noise level")
    batch = slots_for(STEP_VECTORS, args.slot) if args.batch is None else args.batch
    val_batch = (slots_for(VALIDATION_VECTORS, args.slot) if args.val_batch is None
                 else args.val_batch)
    # claimed: a second writer of it fails at once
    output = check_output_file(args.output, force=args.force)
    options = TrainOptions(
        steps=args.steps, batch=batch, slot=args.slot, snr_db=parse_snr_range(args.snr_train),
        snr_def=args.snr_def, channel=args.channel, csi=args.csi, lr=args.lr,
        lr_schedule=args.lr_schedule, grad_clip=args.grad_clip, seed=args.seed, c2c=c2c,
        states=args.states, val_every=args.val_every, val_batch=val_batch)
    modulation = args.mod
    if modulation is None:  # the real system's default is the papers' BPSK
        modulation = ("bpsk" if args.system == "real"
                      else FAMILIES[args.family].Config().modulation)
    config = {"nt": args.nt, "nr": args.nr, "modulation": modulation, "system": args.system}
    config.update({spec.field: getattr(args, spec.dest) for spec in args._family_flags})

    torch.set_num_threads(flags.positive("--threads", args.threads))
    torch.manual_seed(options.seed)  # the initial weights follow --seed too
    model = build_detector(args.family, **config)
    report = train_detector(model, options, progress=not args.no_progress)
    try:
        save_detector(model, output, training=report)
    except OSError as err:  # a full disk, a folder made read-only meanwhile
        raise write_error(output, err) from None

    params = count_params(model)
    if args.json:
        summary = report.to_dict()
        summary.update({"family": args.family, "output": str(output), "params": params,
                        "config": dataclasses.asdict(model.config)})
        from mimoc.commands.json_output import print_json

        print_json(NAME, args, summary)
    else:
        print(report.summary())
        print(f"  wrote           {output} ({params:,} parameters)")
    sys.stdout.flush()
    if report.worse_than_mmse:  # a useless detector must not pass silently (file still written)
        print(f"mimoc: warning: {output.name} is worse than MMSE on its own validation slots "
              f"(SER {report.val_ser:.4g} vs {report.mmse_val_ser:.4g}); train it longer "
              f"(--steps, --batch) or larger before relying on it", file=sys.stderr)
    return 0
