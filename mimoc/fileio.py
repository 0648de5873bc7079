"""Safe output: a file or an artifact directory is written whole or not at all, by one
writer at a time, and a good previous output is never lost.

The steps, each for a reason:

- **claim** (:func:`claim_output`, done by :func:`check_output_directory` /
  :func:`check_output_file` before the slow work): an exclusive ``flock`` on
  ``.NAME.mimoc-lock`` beside the output. A second writer of the same output fails at once
  with one line naming the holder's pid. The kernel drops a flock when its process dies,
  so a killed writer never leaves a stale lock.
- **recover** (under the claim): leftovers of killed writers beside the output
  (``.NAME.mimoc-PID-XXXXXXXX.tmp`` / ``.old``) are removed; if the output is missing and
  a ``.old`` holds the previous one (a writer killed between two renames), it is put back.
- **write**: into a temporary beside the output (same file system), flushed and fsynced.
- **place**: a file replaces the old one in one ``rename``; a directory is renamed onto a
  missing or empty one, or, with ``force``, swapped with the old one in one
  ``renameat2(RENAME_EXCHANGE)`` (Linux) and the old one, now at the temporary name,
  removed. Without that call the old one is renamed aside first; a kill between the two
  renames is repaired by the next claim. ``-o`` is never left missing for good.
- **release**: the lock file is removed: after the write; when an API call that checked
  its output raises before writing (:func:`releases_claims`); at the end of every CLI
  command; at exit.

Example::

    with atomic_write("model.pt") as f:
        torch.save(payload, f)
    write_directory({"manifest.json": b"{}", "model.onnx": data}, "out/detnet")
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import functools
import io
import os
import re
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from mimoc.errors import MimocError, UsageError

try:
    import fcntl
except ImportError:  # not POSIX: outputs are written without the lock
    fcntl = None

LOCK_SUFFIX = ".mimoc-lock"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _absolute(path: str | os.PathLike) -> Path:
    return Path(os.path.abspath(path))


def write_error(path: str | os.PathLike, err: OSError) -> MimocError:
    """One line for an output that cannot be written, with what to do about it."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = "free some disk space or choose another path"
    elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "choose a folder you can write to"
    else:
        hint = "choose another path"
    return MimocError(f"cannot write {str(path)!r}: {err.strerror or err}; {hint}")


# ------------------------------------------------------------------------------ claims
# fcntl.flock directly rather than the filelock package: it is a few lines, needs no new
# dependency, and we want the holder's pid in the message and the lock file removed.

@dataclass
class _Claim:
    lock: Path
    fd: int | None
    thread: int
    created: list[Path] = field(default_factory=list)  # parent folders this claim made


_CLAIMS: dict[Path, _Claim] = {}
_GUARD = threading.Lock()


def claim_output(path: str | os.PathLike, *, make_parents: bool = False) -> Path:
    """Claim ``path`` for writing (see the module docstring); this process and thread keep
    the claim until :func:`release_output`. Claiming again from the same thread is a no-op.

    ``make_parents``: create missing parent folders (removed again on release if still
    empty, i.e. when nothing was written). Raises a one-line :class:`MimocError` when
    another process or thread holds the claim or the folder cannot be written.
    """
    target = _absolute(path)
    with _GUARD:
        held = _CLAIMS.get(target)
        if held is not None:
            if held.thread != threading.get_ident():
                raise MimocError(f"{str(path)!r} is being written by another thread of this "
                                 f"process (pid {os.getpid()}); wait for it to finish or "
                                 "choose another -o path")
            return target
        created = _make_parents(target.parent, path) if make_parents else []
        try:
            fd = _lock(target, path)
        except BaseException:
            _remove_empty(created)
            raise
        _CLAIMS[target] = _Claim(_lock_path(target), fd, threading.get_ident(), created)
    if fd is not None:  # only under a lock is every leftover surely a dead writer's
        try:
            recover_leftovers(target)
        except BaseException:
            release_output(target)
            raise
    return target


def release_output(path: str | os.PathLike) -> None:
    """Drop this process's claim on ``path`` (if any): the lock file is removed."""
    with _GUARD:
        claim = _CLAIMS.pop(_absolute(path), None)
    if claim is None:
        return
    if claim.fd is not None:
        with contextlib.suppress(OSError):
            os.unlink(claim.lock)  # while still locked: see _lock for why this is safe
        os.close(claim.fd)
    _remove_empty(claim.created)


def release_all_outputs() -> None:
    """Drop every claim of this process (the CLI does this after each command)."""
    with _GUARD:
        held = list(_CLAIMS)
    for target in held:
        release_output(target)


atexit.register(release_all_outputs)


def releases_claims(function):
    """Decorator for API functions that check their output early and write it late:
    claims the call took and did not release (it raised in between) are released when it
    returns, so a failed call leaves no lock file or empty parent folder behind."""

    @functools.wraps(function)
    def call(*args, **kwargs):
        me = threading.get_ident()
        with _GUARD:
            before = set(_CLAIMS)
        try:
            return function(*args, **kwargs)
        finally:
            with _GUARD:
                taken = [t for t, c in _CLAIMS.items() if t not in before and c.thread == me]
            for target in taken:
                release_output(target)

    return call


def _lock_path(target: Path) -> Path:
    return target.parent / f".{target.name}{LOCK_SUFFIX}"


def _lock(target: Path, shown: str | os.PathLike) -> int | None:
    """An fd holding ``flock(LOCK_EX)`` on the lock file of ``target``, with our pid in it
    (``None`` where locks are not available: the output is then written unlocked).

    The releaser unlinks the file while it holds the lock, so a writer that opened the old
    file before the unlink may get the lock on a file no longer in the folder; it checks
    that the file it locked is still the one at the path, and tries again if not."""
    if fcntl is None:
        return None
    lock = _lock_path(target)
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as err:
            raise write_error(shown, err) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise MimocError(f"{str(shown)!r} is being written by another mimoc process "
                             f"({holder}); wait for it to finish or choose another -o "
                             "path") from None
        except OSError:  # a file system without locks: write unlocked rather than not at all
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(lock)
            return None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    with contextlib.suppress(OSError):  # the pid is for messages only
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return f"pid {text}" if text.isdigit() else "pid unknown"


def _make_parents(folder: Path, shown: str | os.PathLike) -> list[Path]:
    missing = []
    while not os.path.lexists(folder) and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    created: list[Path] = []
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:
            continue
        except OSError as err:
            _remove_empty(created)
            raise write_error(shown, err) from None
        created.append(path)
    return created


def _remove_empty(folders: list[Path]) -> None:
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            return


# ---------------------------------------------------------------------------- leftovers

def _temp_prefix(target: Path) -> str:
    return f".{target.name}.mimoc-{os.getpid()}-"


def _leftover_pattern(name: str) -> re.Pattern:
    # ours (with the writer's pid) and those of earlier versions (tempfile's 8 characters)
    return re.compile(re.escape(f".{name}.") + r"(?:mimoc-\d+-)?[a-z0-9_]{8}\.(?:tmp|old)")


def recover_leftovers(path: str | os.PathLike) -> None:
    """Under the claim of ``path``: no other writer is alive, so every temporary of a
    writer of ``path`` beside it is a killed writer's. A ``.old`` is the previous output
    moved aside: it goes back when ``path`` is missing; all other leftovers are removed."""
    target = _absolute(path)
    pattern = _leftover_pattern(target.name)
    try:
        leftovers = [p for p in target.parent.iterdir() if pattern.fullmatch(p.name)]
    except OSError:
        return
    if not os.path.lexists(target):
        aside = [p for p in leftovers if p.name.endswith(".old")]
        if aside:
            newest = max(aside, key=lambda p: p.lstat().st_mtime)
            with contextlib.suppress(OSError):
                os.rename(newest, target)
                leftovers.remove(newest)
    for leftover in leftovers:
        _remove(leftover)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _sync_folder(folder: Path) -> None:
    """fsync a folder so that a rename in it survives a power cut (best effort)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --------------------------------------------------------------------------- one file

def check_output_file(path: str | os.PathLike, *,
                      inputs: Iterable[str | os.PathLike] = (), force: bool = False) -> Path:
    """Refuse an ``-o`` model-file path that cannot be written, before any slow work, and
    claim it (released by :func:`atomic_write` once written). ``inputs``: files the
    command reads; writing onto one of them is refused (it would destroy the input), with
    or without ``force``. An existing file is replaced only with ``force`` (``--force``)."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"-o {path} is a folder; give a file name such as {path}/model.pt")
    if not path.parent.is_dir():
        raise UsageError(f"cannot write {path}: folder {path.parent} does not exist")
    refuse_input_overwrite(path, inputs)
    if (path.exists() or path.is_symlink()) and not force:
        raise UsageError(f"output {str(path)!r} exists; use --force to replace it or choose "
                         "another -o path")
    claim_output(path)  # creates the lock file: an unwritable folder fails here, with why
    return path


def refuse_input_overwrite(out: str | os.PathLike, inputs: Iterable[str | os.PathLike]) -> None:
    """Refuse an output that is one of ``inputs`` or a folder holding one, through links
    too (it would destroy the input, so ``--force`` does not allow it either)."""
    out = Path(out)
    for source in map(Path, inputs):
        real = Path(os.path.realpath(source))
        if _same_file(out, source):
            raise UsageError(f"-o {out} is the input model {source}; write to another file "
                             "so that the input stays intact")
        if real.is_relative_to(os.path.realpath(out)):
            raise UsageError(f"-o {out} holds the input model {source}; write to another "
                             "path so that the input stays intact")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return os.path.realpath(a) == os.path.realpath(b)


class _RecordingWriter(io.BufferedWriter):
    """Keeps the first OSError of a write: ``torch.save`` reports a failed write (a full
    disk) as a RuntimeError that has lost the cause."""

    error: OSError | None = None

    def write(self, data):
        try:
            return super().write(data)
        except OSError as err:
            self.error = self.error or err
            raise

    def flush(self):
        try:
            return super().flush()
        except OSError as err:
            self.error = self.error or err
            raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path`` for binary writing; on success it replaces
    ``path`` in one rename, on any exception it is removed and ``path`` is untouched.

    ``path`` is claimed for the write (or was, by :func:`check_output_file`) and released
    after it. A failed write raises its OSError (also when the writer, e.g. ``torch.save``,
    turned it into another exception); another writer of ``path`` gives a MimocError.

    Example::

        with atomic_write("model.pt") as f:
            torch.save(payload, f)
    """
    path = Path(path)
    claim_output(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(_absolute(path)), suffix=".tmp",
                                   dir=path.parent)
        handle = _RecordingWriter(io.FileIO(fd, "wb"))
        try:
            with handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
            os.replace(tmp, path)
            _sync_folder(_absolute(path).parent)
        except BaseException as err:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if handle.error is not None and isinstance(err, Exception) \
                    and not isinstance(err, OSError):
                raise handle.error from None
            raise
    finally:
        release_output(path)


# ------------------------------------------------------------------------ directories

def check_output_directory(out: str | os.PathLike, *, force: bool = False) -> Path:
    """Refuse an output path that cannot take an artifact, before any work is done, and
    claim it (released by :func:`write_directory` once written; missing parent folders are
    created, and removed again if nothing is written)."""
    out = Path(out)
    parent = _existing_ancestor(_absolute(out).parent)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise MimocError(f"cannot write to {str(parent)!r} (permission denied); choose an "
                         "output directory you can write to")
    claim_output(out, make_parents=True)
    try:
        if out.exists() or out.is_symlink():
            if not out.is_dir():
                raise UsageError(f"output {str(out)!r} exists and is not a directory; choose "
                                 "another -o path")
            if any(out.iterdir()) and not force:
                raise UsageError(f"output directory {str(out)!r} exists and is not empty; use "
                                 "--force to replace it or choose another -o path")
    except BaseException:
        release_output(out)
        raise
    return out


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def write_directory(files: Mapping[str, bytes], out: str | os.PathLike, *,
                    force: bool = False) -> Path:
    """Write ``files`` (name -> content) as the directory ``out``, atomically (see the
    module docstring); an existing non-empty ``out`` is replaced only with ``force``."""
    out = Path(out)
    check_output_directory(out, force=force)  # claimed already, or now; checked again
    try:
        target = _absolute(out)
        try:
            tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(target), suffix=".tmp",
                                        dir=target.parent))
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
            _move_into_place(tmp, target)
        except BaseException as err:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(err, OSError):
                raise MimocError(f"cannot write the artifact {str(out)!r}: "
                                 f"{err.strerror or err}; choose another -o path") from None
            raise
        _sync_folder(target.parent)
    finally:
        release_output(out)
    return out


def _move_into_place(tmp: Path, out: Path) -> None:
    if not os.path.lexists(out):
        os.rename(tmp, out)
        return
    if out.is_dir() and not out.is_symlink() and not any(out.iterdir()):
        os.replace(tmp, out)  # POSIX: a directory replaces an empty directory in one step
        return
    if exchange(tmp, out):
        _remove(tmp)  # the previous output, now at the temporary name
        return
    # No atomic swap here: the old one goes aside, the new one in. A kill between the two
    # renames leaves `out` missing and the old one at `.old`; the next claim puts it back.
    old = Path(tempfile.mkdtemp(prefix=_temp_prefix(out), suffix=".old", dir=out.parent))
    os.rmdir(old)
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.rename(old, out)  # put the previous artifact back
        raise
    _remove(old)


# renameat2(2): Python's os module has no binding for RENAME_EXCHANGE, hence ctypes.
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


@functools.cache
def _renameat2():
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # here: only a forced replacement needs it

    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2  # glibc 2.28+
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                         ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def exchange(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Swap the paths ``a`` and ``b`` in one atomic step (both must exist); False where
    the system or the file system cannot, and nothing was changed."""
    function = _renameat2()
    if function is None:
        return False
    import ctypes

    if function(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


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
