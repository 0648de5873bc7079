"""Reading the data files of an artifact: integrity against the index, and ``.npz`` safely.

An artifact's index (``manifest.json``, ``schedule.json``) records the size and sha256 of
each data file (``*.onnx``, ``arrays.npz``). :func:`read_recorded_file` reads a file once,
checks it against that record (unless ``verify=False``, for people who edit artifacts on
purpose) and returns the bytes: the caller parses exactly the bytes that were checked.

:func:`read_npz` parses an ``.npz`` from bytes without numpy's loader: each ``.npy``
header is read first (``numpy.lib.format``) and the array it declares must fill exactly
the bytes the member holds, so a header declaring 10^7 x 10^7 floats is refused before
anything is allocated; object arrays (pickles) are refused.

Example::

    >>> data = read_recorded_file(Path("out/xb"), "arrays.npz", schedule["files"],
    ...                           index="schedule.json", verify=True)
    >>> arrays = read_npz(data, where="'out/xb/arrays.npz'")
"""

from __future__ import annotations

import hashlib
import io
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mimoc.errors import ModelFileError

#: Largest data file read (protobuf, and so ONNX, stops at 2 GiB).
MAX_FILE_BYTES = 2 << 30
#: Largest total of the arrays in one ``.npz`` (uncompressed).
MAX_NPZ_BYTES = 2 << 30
#: dtypes an artifact's arrays may have: bool, signed/unsigned integers, floats.
_KINDS = "biuf"
ALLOW_MODIFIED = ("pass --allow-modified (verify=False in Python) if you changed it on "
                  "purpose")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_recorded_file(directory: Path, name: str, records: Mapping[str, Any], *,
                       index: str, verify: bool = True) -> bytes:
    """The bytes of ``directory / name``; with ``verify``, refused (one line) unless their
    size and sha256 equal ``records[name]`` (the index file's ``files`` entry)."""
    file = directory / name
    if not file.is_file():
        raise ModelFileError(f"{str(file)!r} is missing; the artifact is incomplete, compile "
                             "it again")
    try:
        if file.stat().st_size > MAX_FILE_BYTES:
            raise ModelFileError(f"{str(file)!r} is larger than {MAX_FILE_BYTES >> 30} GiB; "
                                 "not a mimoc artifact file")
        data = file.read_bytes()
    except OSError as err:
        raise ModelFileError(f"cannot read {str(file)!r}: {err.strerror or err}") from None
    record = records.get(name) or {}
    if verify and (len(data) != record.get("bytes") or sha256_hex(data) != record.get("sha256")):
        raise ModelFileError(f"{str(file)!r} was modified after compiling (its sha256 differs "
                             f"from the one in {index}); compile the artifact again, or "
                             f"{ALLOW_MODIFIED}")
    return data


def read_npz(data: bytes, *, where: str) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` (zip of ``.npy``) held in ``data``, by name (``.npy``
    removed), writable; a one-line ModelFileError for anything else (module docstring)."""
    again = "compile the artifact again"
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            total = sum(info.file_size for info in infos)
            if total > MAX_NPZ_BYTES:
                raise ModelFileError(f"{where} would unpack to {total} bytes, more than "
                                     f"{MAX_NPZ_BYTES >> 30} GiB; {again}")
            arrays: dict[str, np.ndarray] = {}
            for info in infos:
                name = info.filename.removesuffix(".npy")
                if not info.filename.endswith(".npy") or name in arrays:
                    raise ModelFileError(f"{where} holds {info.filename!r}, which is not one "
                                         f"array (.npy) of an artifact; {again}")
                with archive.open(info) as member:
                    arrays[name] = _read_npy(member, info.file_size, f"{where} entry {name!r}")
            return arrays
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError,
            NotImplementedError) as err:
        message = " ".join(str(err).split()) or type(err).__name__
        raise ModelFileError(f"{where} cannot be read ({message}); {again}") from None


def _read_npy(member, size: int, where: str) -> np.ndarray:
    fmt = np.lib.format
    version = fmt.read_magic(member)
    if version == (1, 0):
        shape, fortran, dtype = fmt.read_array_header_1_0(member)
    elif version == (2, 0):
        shape, fortran, dtype = fmt.read_array_header_2_0(member)
    else:
        raise ModelFileError(f"{where} has .npy format version {version}, not 1.0 or 2.0; "
                             "compile the artifact again")
    if dtype.hasobject or dtype.kind not in _KINDS or dtype.fields is not None:
        raise ModelFileError(f"{where} has dtype {dtype}, not numbers (object arrays would "
                             "need unpickling); compile the artifact again")
    count = 1
    for dim in shape:
        count *= dim
    payload = size - member.tell()
    if count * dtype.itemsize != payload:
        raise ModelFileError(f"{where} declares shape {tuple(shape)} of {dtype} "
                             f"({count * dtype.itemsize} bytes) but holds {payload} bytes; "
                             "compile the artifact again")
    buffer = bytearray(payload)
    view, done = memoryview(buffer), 0
    while done < payload:
        read = member.readinto(view[done:])
        if not read:
            raise ModelFileError(f"{where} is truncated; compile the artifact again")
        done += read
    array = np.frombuffer(buffer, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    if not dtype.isnative:  # torch takes native byte order only
        return array.astype(dtype.newbyteorder("="), order="C")
    return array.copy(order="C") if fortran else array


__all__ = ["ALLOW_MODIFIED", "MAX_FILE_BYTES", "MAX_NPZ_BYTES", "read_npz",
           "read_recorded_file", "sha256_hex"]
