"""The compiler-pass flags shared by ``mimoc compile`` and ``mimoc inspect --ir``."""

from __future__ import annotations

import argparse


def add_pass_option_arguments(parser) -> None:
    """Add the flags of :class:`~mimoc.compiler.passes.base.PassOptions` to ``parser``."""
    parser.add_argument("--prune-threshold", type=float, default=0.0, metavar="T",
                        help="prune: also drop hidden units with |coefficient| <= T "
                             "(default 0: exact zeros only, lossless)")
    parser.add_argument("--keep-layers", type=int, default=None, metavar="N",
                        help="remove-layers: keep the first N blocks")
    parser.add_argument("--l1-threshold", type=str, default=None, metavar="T|Fx",
                        help="remove-layers: drop trailing blocks whose scaled L1 norm "
                             "|beta W| is below T, or below F times the largest block "
                             "norm (e.g. 0.1x)")


def pass_options(args: argparse.Namespace):
    """:class:`~mimoc.compiler.passes.base.PassOptions` from the parsed flags."""
    from mimoc.compiler.passes.base import PassOptions

    return PassOptions(prune_threshold=args.prune_threshold, keep_layers=args.keep_layers,
                       l1_threshold=args.l1_threshold)
