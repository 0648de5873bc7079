"""The ``mimoc`` command line.

Each subcommand lives in :mod:`mimoc.commands` as a module with ``NAME``,
``HELP``, ``DESCRIPTION``, ``add_arguments(parser)`` and ``run(args) -> int``;
:data:`COMMANDS` lists them explicitly (no import-time scanning). A
:class:`~mimoc.errors.MimocError` becomes one line on stderr and exit status 2, Ctrl-C
(also while the heavy modules are being imported) ``mimoc: interrupted`` and status 130.
Only the light modules are imported at start-up; each subcommand's on first use:
``mimoc --help`` reads the commands' ``NAME`` and ``HELP`` from their source text, and
``mimoc CMD ...`` imports ``CMD``'s module alone, so neither imports torch.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import os
import sys

from mimoc import __version__
from mimoc.commands.flags import NUMBER_LIKE
from mimoc.errors import MimocError

#: The subcommands, in the order ``mimoc --help`` lists them (modules of mimoc.commands).
COMMANDS = ("ber", "train", "inspect", "compile", "bench", "budget", "quantize", "report",
            "devices", "sweep")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit status 2, like every other mimoc error, and
    values such as ``-4:2:10`` taken as values (flags.NUMBER_LIKE says why)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = NUMBER_LIKE

    def error(self, message):
        self.exit(2, f"mimoc: error: {message} (see '{self.prog} --help')\n")


def _module(name: str):
    return importlib.import_module(f"mimoc.commands.{name}")


def _summary(name: str) -> str:
    """A command's ``HELP`` read from its source, without importing it (or torch)."""
    spec = importlib.util.find_spec(f"mimoc.commands.{name}")
    tree = ast.parse(spec.loader.get_source(spec.name))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "HELP"
                                                for t in node.targets):
            return ast.literal_eval(node.value)
    return ""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with ``only``, just that command's arguments are built (and its
    module imported): the other commands are listed by name and summary."""
    parser = _Parser(
        prog="mimoc",
        description="Compile trained deep MIMO detectors to ONNX for edge CPUs and to "
        "memristor-crossbar programming schedules; simulate their error rates.",
    )
    parser.add_argument("--version", action="version", version=f"mimoc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        if only is not None and name != only:
            sub.add_parser(name, help=_summary(name))
            continue
        module = _module(name)
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.DESCRIPTION,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _chosen_command(argv: list[str]) -> str:
    """The subcommand named on the command line ('' for none: ``mimoc --help``); mimoc's
    own options take no values, so it is the first word that is not an option."""
    first = next((word for word in argv if not word.startswith("-")), "")
    return first if first in COMMANDS else ""


def main(argv: list[str] | None = None) -> int:
    # Everything, the imports of the subcommands (torch: seconds) included, runs inside the
    # try: a Ctrl-C at any moment is one line and status 130, never a traceback.
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        parser = build_parser(only=_chosen_command(argv))
        args = parser.parse_args(argv)
        args._argv = ["mimoc", *(sys.argv[1:] if argv is None else argv)]  # for --json
        if args.command is None:
            parser.print_help()
            return 2
        return int(args._run(args) or 0)
    except MimocError as err:
        print(f"mimoc: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mimoc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`mimoc inspect DIR | head`): stop quietly, as Unix tools do;
        # point stdout at /dev/null so that flushing at exit raises nothing more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    finally:
        _release_outputs()


def _release_outputs() -> None:
    """Drop the output claims this command took and did not write (an error, Ctrl-C);
    without mimoc.fileio imported there are none, and nothing is imported here."""
    fileio = sys.modules.get("mimoc.fileio")
    if fileio is not None:
        fileio.release_all_outputs()


if __name__ == "__main__":
    raise SystemExit(main())
