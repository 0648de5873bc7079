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
                   kind: str, how_to_make: str) -> dict:
    """The JSON index file ``name`` of an artifact directory, checked: present, valid JSON,
    ``format == fmt`` and ``format_version <= version``; else a one-line ModelFileError.

    ``kind`` names the artifact in messages (``"ONNX artifact manifest"``), ``how_to_make``
    says how to get one (``"compile one with 'mimoc compile MODEL.pt -o DIR'"``).
    """
    import json

    from mimoc.errors import ModelFileError

    directory = Path(directory)
    file = directory / name
    if not file.is_file():
        raise ModelFileError(f"{str(directory)!r} is not a mimoc {kind.split()[0]} artifact "
                             f"(no {name}); {how_to_make}")
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as err:
        raise ModelFileError(f"{str(file)!r} cannot be read ({err}); compile the artifact "
                             "again") from None
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise ModelFileError(f"{str(file)!r} is not a mimoc {kind}")
    found = data.get("format_version")
    if not isinstance(found, int) or found > version:
        raise ModelFileError(f"{str(directory)!r} was written by a newer mimoc ({kind} format "
                             f"{found!r}); upgrade mimoc")
    return data
