"""The ``mimoc`` command line.

Each subcommand lives in :mod:`mimoc.commands` as a module with ``NAME``,
``HELP``, ``DESCRIPTION``, ``add_arguments(parser)`` and ``run(args) -> int``;
:data:`COMMANDS` lists them explicitly (no import-time scanning). A
:class:`~mimoc.errors.MimocError` becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
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
        train,
    )

    return [ber, train, inspect, compile, bench, budget, quantize, report, devices]


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
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except MimocError as err:
        print(f"mimoc: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mimoc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
