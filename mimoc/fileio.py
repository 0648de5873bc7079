"""Atomic file output: a failed or interrupted write leaves no partial file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path`` for binary writing; on success it
    replaces ``path`` in one rename, on any exception it is removed.

    Example::

        with atomic_write("model.pt") as f:
            torch.save(payload, f)
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def check_output_file(path: str | os.PathLike) -> Path:
    """Refuse an ``-o`` model-file path that cannot be written, before any slow work."""
    from mimoc.errors import UsageError

    path = Path(path)
    if path.is_dir():
        raise UsageError(f"-o {path} is a folder; give a file name such as {path}/model.pt")
    if not path.parent.is_dir():
        raise UsageError(f"cannot write {path}: folder {path.parent} does not exist")
    return path


# ---------------------------------------------------------------- reading model files

def check_model_file(path: str | os.PathLike, what: str = "model file") -> Path:
    """Refuse a model path that is not an existing regular file, without opening it.

    Opening a FIFO would block until a writer appears (forever) and a device file reads
    without end, so the type is checked with ``stat`` first. Raises
    :class:`~mimoc.errors.ModelFileError` with one line naming the file.
    """
    import stat

    from mimoc.errors import ModelFileError, UsageError

    if not isinstance(path, str | os.PathLike):
        raise UsageError(f"a {what} path must be a str or os.PathLike, got "
                         f"{type(path).__name__}")
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file; check the path") from None
    except OSError as err:
        raise ModelFileError(f"{path}: cannot read ({err.strerror}); check the path and its "
                             "permissions") from None
    if stat.S_ISDIR(mode):
        raise ModelFileError(f"{path} is a folder, not a {what}; pass the file itself")
    if not stat.S_ISREG(mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode)
                else "a device file" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
        raise ModelFileError(f"{path} is {kind}, not a {what}; pass a regular file")
    return path


def check_zip_integrity(path: str | os.PathLike) -> None:
    """Verify the CRC-32 of every member of the zip archive ``path`` (torch checkpoints and
    ``.pt2`` programs are zip archives); torch's own reader does not, so a damaged file
    would otherwise load with wrong weights. One-line ModelFileError on damage."""
    import zipfile
    import zlib

    from mimoc.errors import ModelFileError

    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError,
            ValueError, RuntimeError, NotImplementedError):
        raise ModelFileError(f"{path} is truncated or corrupt (not a readable zip archive); "
                             "copy or save the file again") from None
    if bad is not None:
        raise ModelFileError(f"{path} is damaged: the checksum (CRC-32) of its entry "
                             f"{bad[:80]!r} does not match its data; copy or save the file again")


def is_export_archive(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a zip archive whose entry names are a ``torch.export`` program's
    (only the zip directory is read)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith("/archive_format") or n.endswith("serialized_exported_program"
                                                                  ".json")
                       for n in archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return False
