"""Atomic artifact directories: a failed or interrupted compile leaves nothing behind.

:func:`write_directory` writes every file into a temporary directory beside the target
(same file system), flushes them, and renames the directory into place in one step. An
existing empty directory is replaced; an existing non-empty one only with ``force=True``
(it is moved aside first and removed after the rename). On any exception, Ctrl-C
included, the temporary directory is removed and the target is untouched.

Example::

    >>> write_directory({"manifest.json": b"{}", "model.onnx": data}, "out/detnet")
    PosixPath('out/detnet')
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from mimoc.errors import MimocError, UsageError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_output_directory(out: str | os.PathLike, *, force: bool = False) -> Path:
    """Refuse an output path that cannot take an artifact, before any work is done."""
    out = Path(out)
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise UsageError(f"output {str(out)!r} exists and is not a directory; choose "
                             "another -o path")
        if any(out.iterdir()) and not force:
            raise UsageError(f"output directory {str(out)!r} exists and is not empty; use "
                             "--force to replace it or choose another -o path")
    parent = _existing_ancestor(out.absolute().parent)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise MimocError(f"cannot write to {str(parent)!r} (permission denied); choose an "
                         "output directory you can write to")
    return out


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def write_directory(files: Mapping[str, bytes], out: str | os.PathLike, *,
                    force: bool = False) -> Path:
    """Write ``files`` (name -> content) as the directory ``out``, atomically."""
    out = check_output_directory(out, force=force)
    parent = out.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent))
    except OSError as err:
        raise MimocError(f"cannot create the output directory {str(out)!r}: "
                         f"{err.strerror or err}; choose another -o path") from None
    try:
        for name in sorted(files):
            with open(tmp / name, "wb") as handle:
                handle.write(files[name])
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp / name, 0o666 & ~_umask())
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
        _move_into_place(tmp, out)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError):
            raise MimocError(f"cannot write the artifact {str(out)!r}: {err.strerror or err}; "
                             "choose another -o path") from None
        raise
    return out


def _move_into_place(tmp: Path, out: Path) -> None:
    if not out.exists():
        os.rename(tmp, out)
        return
    if not any(out.iterdir()):
        os.replace(tmp, out)  # POSIX: a directory replaces an empty directory in one step
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.rmdir(old)
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.rename(old, out)  # put the previous artifact back
        raise
    shutil.rmtree(old, ignore_errors=True)


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
