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
