"""The ``mimoc`` command line.

Each subcommand lives in :mod:`mimoc.commands` as a module with ``NAME``,
``HELP``, ``DESCRIPTION``, ``add_arguments(parser)`` and ``run(args) -> int``;
:data:`COMMANDS` lists them explicitly (no import-time scanning). A
:class:`~mimoc.errors.MimocError` becomes one line on stderr and exit status 2, Ctrl-C
(also while the heavy modules are being imported) ``mimoc: interrupted`` and status 130.
Only the light modules are imported at start-up; each subcommand's on first use.
"""

from __future__ import annotations

import argparse
import os
import sys

from mimoc import __version__
from mimoc.errors import MimocError


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit status 2, like every other mimoc error."""

    def error(self, message):
        self.exit(2, f"mimoc: error: {message} (see '{self.prog} --help')\n")


def _commands():
    from mimoc.commands import (
        bench,
        ber,
        budget,
        compile,
        devices,
        inspect,
        quantize,
        report,
        sweep,
        train,
    )

    return [ber, train, inspect, compile, bench, budget, quantize, report, devices, sweep]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mimoc",
        description="Compile trained deep MIMO detectors to ONNX for edge CPUs and to "
        "memristor-crossbar programming schedules; simulate their error rates.",
    )
    parser.add_argument("--version", action="version", version=f"mimoc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in _commands():
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.DESCRIPTION,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Everything, the imports of the subcommands (torch: seconds) included, runs inside the
    # try: a Ctrl-C at any moment is one line and status 130, never a traceback.
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
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
