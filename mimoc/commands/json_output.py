"""The one place where a command's ``--json`` document is put together and printed.

Every document is one JSON object that starts with the same envelope
(:func:`mimoc.validation.output_envelope`)::

    {"schema": "mimoc-ber/1", "mimoc_version": "0.1.0", "command": ["mimoc", "ber", ...], ...}

followed by the command's own keys. The Python API's result objects (``BERResult.to_dict()``,
``BudgetReport.to_dict()``, ...) return those keys without the envelope: a document made
through the API has no command line, and the CLI adds the envelope here. Each command's
format is in ``mimoc/data/schemas/output/<command>.schema.json`` (docs/json.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from mimoc.validation import output_envelope


def command_line(args: argparse.Namespace) -> list[str] | None:
    """The command line that made ``args`` (``["mimoc", "ber", ...]``; set by
    :func:`mimoc.cli.main`), or None when the namespace was built elsewhere."""
    argv = getattr(args, "_argv", None)
    return None if argv is None else list(argv)


def document(command: str, args: argparse.Namespace, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` behind the envelope of ``command`` (the envelope's keys win: a body must not
    carry them)."""
    envelope = output_envelope(command, command_line(args))
    return {**envelope, **{k: v for k, v in body.items() if k not in envelope}}


def print_json(command: str, args: argparse.Namespace, body: dict[str, Any]) -> None:
    """Print ``command``'s ``--json`` document on one line of stdout."""
    print(json.dumps(document(command, args, body)))
    sys.stdout.flush()
