"""One line for a file a command cannot write (a full disk, a folder made read-only
meanwhile): the commands that write plots, CSV and LLR files share it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from mimoc.errors import MimocError


@contextlib.contextmanager
def one_line_on_write_error(what: str, path: str | os.PathLike) -> Iterator[None]:
    """Turn an ``OSError`` raised inside into ``cannot write WHAT 'PATH': why; choose
    another path``."""
    try:
        yield
    except OSError as err:
        raise MimocError(f"cannot write {what} {str(path)!r}: {err.strerror or err}; "
                         "choose another path") from None
