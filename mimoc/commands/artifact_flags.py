"""The ``--allow-modified`` flag of every command that reads a compiled artifact.

An artifact's index (``manifest.json``, ``schedule.json``) records the sha256 of its data
files; the loaders refuse a file that differs. People who edit an artifact on purpose
(hand-tuned conductances, a patched ONNX graph) pass ``--allow-modified``; everything
else is still checked. One helper, so the flag is spelled and explained the same way in
``ber``, ``bench`` and ``inspect``.
"""

from __future__ import annotations

import argparse

FLAG = "--allow-modified"


def add_allow_modified_argument(parser) -> None:
    """Add ``--allow-modified`` to ``parser`` (a parser or an argument group)."""
    parser.add_argument(FLAG, action="store_true",
                        help="use artifacts whose ONNX files or arrays.npz were changed after "
                             "compiling (their sha256 differs from manifest.json / "
                             "schedule.json); for artifacts you edited on purpose")


def verify_artifacts(args: argparse.Namespace) -> bool:
    """Whether the loaders check the recorded sha256 (``verify=`` of the Python loaders)."""
    return not getattr(args, "allow_modified", False)
