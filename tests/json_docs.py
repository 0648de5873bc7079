"""Helpers for the tests that read a command's ``--json``: parse it, check it against the
command's shipped schema, and index ``ber``'s curves by name."""

from __future__ import annotations

import json
from typing import Any

from mimoc.validation import validate_output


def parse_output(command: str, out: str) -> dict[str, Any]:
    """The one JSON document ``out`` (a command's stdout), checked against ``command``'s
    shipped output schema."""
    return validate_output(command, json.loads(out))


def curves_by_name(document: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """``ber``'s curves (``mimoc ber --json``, report.json's ``ber``): name -> points."""
    return {curve["detector"]["name"]: curve["points"] for curve in document["curves"]}
