"""Artifact directories: writing (from :mod:`mimoc.fileio`) and reading their JSON index.

:func:`write_directory` writes every file into a temporary directory beside the target and
moves it into place in one step, one writer at a time; :func:`check_output_directory`
refuses an unusable ``-o`` and claims it before the slow work. See :mod:`mimoc.fileio`.

Example::

    >>> write_directory({"manifest.json": b"{}", "model.onnx": data}, "out/detnet")
    PosixPath('out/detnet')
"""

from __future__ import annotations

import os
from pathlib import Path

from mimoc.fileio import check_output_directory, write_directory

__all__ = ["check_output_directory", "read_json_file", "write_directory"]


def read_json_file(directory: str | os.PathLike, name: str, *, fmt: str, version: int,
                   kind: str, how_to_make: str, schema: str | None = None) -> dict:
    """The JSON index file ``name`` of an artifact directory, checked: present, valid strict
    JSON (:func:`mimoc.validation.parse_json`: no NaN, no duplicate keys, size-capped),
    ``format == fmt``, ``format_version <= version`` and, with ``schema``, valid against
    the shipped JSON Schema of that name (:func:`mimoc.validation.validate`); else a
    one-line ModelFileError naming the file (and the field).

    ``kind`` names the artifact in messages (``"ONNX artifact manifest"``), ``how_to_make``
    says how to get one (``"compile one with 'mimoc compile MODEL.pt -o DIR'"``).
    """
    from mimoc.errors import ModelFileError
    from mimoc.validation import read_json, validate

    directory = Path(directory)
    file = directory / name
    if not file.is_file():
        raise ModelFileError(f"{str(directory)!r} is not a mimoc {kind.split()[0]} artifact "
                             f"(no {name}); {how_to_make}")
    again = "compile the artifact again"
    data = read_json(file, fix=again)
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise ModelFileError(f"{str(file)!r} is not a mimoc {kind}")
    found = data.get("format_version")
    if isinstance(found, bool) or not isinstance(found, int) or found > version:
        raise ModelFileError(f"{str(directory)!r} was written by a newer mimoc ({kind} format "
                             f"{found!r}); upgrade mimoc")
    if schema is not None:
        validate(data, schema, file=file, fix=again)
    return data
