"""Reading a ``torch.export`` archive (``.pt2``) without running anything from the file.

``torch.export.load`` must not see a stranger's file: it unpickles weights and constants
marked ``use_pickle`` (``torch.load(weights_only=False)``), custom objects and opaque
objects, and the sample inputs (after a failed ``weights_only`` try), loads AOTInductor
shared libraries, and its deserializer evaluates the program's symbolic-shape strings with
``sympy.sympify`` (an ``eval``) and keeps any ``torch.<attribute>`` as a node target, which
mimoc's frontend calls when it folds parameter-only nodes. So mimoc reads the archive
itself, in this order:

1. the zip: the CRC-32 of every entry, then every entry must be one that
   ``torch.export.save`` writes for a program of plain tensors; AOTInductor code, pickled,
   custom or opaque objects and the older pickled layouts are refused by name;
2. the program JSON, parsed into torch's schema dataclasses (plain data), then checked by
   :mod:`mimoc.compiler.pt2_program` (operators, symbolic expressions, guard code, names);
3. weights and constants, built from their JSON payload configs and raw bytes (dtype, shape,
   strides and offset checked against the bytes; aliasing kept), never unpickled;
4. the sample inputs: not loaded (compiling does not need them), but their pickle is scanned
   with :mod:`pickletools` (which only parses) and refused unless it holds only tensors;
5. only then torch's deserializer turns the checked program and tensors into an
   ``ExportedProgram`` (its ``example_inputs`` are ``None``, its tensors on the CPU).

Every refusal is a one-line :class:`~mimoc.errors.ModelFileError` naming the file.

Example::

    >>> ep = load_export_archive(Path("detector.pt2"))
"""

from __future__ import annotations

import io
import json
import pickletools
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

import torch

from mimoc.errors import MimocError, ModelFileError
from mimoc.fileio import check_zip_integrity

#: The entries ``torch.export.save`` writes, relative to the archive's root folder.
PROGRAM = "models/model.json"
WEIGHTS_CONFIG = "data/weights/model_weights_config.json"
CONSTANTS_CONFIG = "data/constants/model_constants_config.json"
SAMPLE_INPUTS = "data/sample_inputs/model.pt"
WEIGHTS_DIR, CONSTANTS_DIR = "data/weights/", "data/constants/"
_BOOKKEEPING = {"archive_format", "archive_version", "byteorder", "version", ".format_version",
                ".storage_alignment", ".data/version", ".data/serialization_id"}
_TENSOR_FILE = {WEIGHTS_DIR: re.compile(r"weight_\d+"), CONSTANTS_DIR: re.compile(r"tensor_\d+")}
#: Entries that only a loader that runs code can read, and why.
_REFUSED = [
    ("data/aotinductor/", "AOTInductor compiled code (a shared library)"),
    ("data/constants/custom_obj_", "a pickled TorchScript custom object"),
    ("data/constants/opaque_obj_", "a pickled Python object"),
    ("data/weights/model.pt", "pickled weights (an older torch.export layout)"),
    ("data/constants/model.pt", "pickled constants (an older torch.export layout)"),
    ("serialized_", "a pickled program (the torch 2.7 layout)"),
]
_RESAVE = "export it again and save it with torch.export.save (plain tensors only)"

#: Globals a pickle of plain data and tensors names (torch.save of a tuple of tensors and
#: numbers), besides torch's dtypes and storage types.
_TENSOR_PICKLE_GLOBALS = {"torch._utils _rebuild_tensor_v2", "torch._utils _rebuild_parameter",
                          "collections OrderedDict", "torch Size", "torch device"}
_CODE_OPCODES = {"STACK_GLOBAL", "INST", "OBJ", "EXT1", "EXT2", "EXT4"}


def load_export_archive(path: Path) -> torch.export.ExportedProgram:
    """The program in the ``.pt2`` archive ``path``; see the module docstring."""
    name = str(path)
    check_zip_integrity(path)
    try:
        with zipfile.ZipFile(path) as archive:
            entries = _entries(archive, name)
            _check_layout(archive, entries, name)
            program = _read_program(archive, entries[PROGRAM], name)
            state_dict = _read_tensors(archive, entries, WEIGHTS_DIR, WEIGHTS_CONFIG, name)
            constants = _read_tensors(archive, entries, CONSTANTS_DIR, CONSTANTS_CONFIG, name)
            if SAMPLE_INPUTS in entries:
                _check_sample_inputs(archive.read(entries[SAMPLE_INPUTS]), name)
        return _deserialize(program, state_dict, constants)
    except MimocError as err:
        raise ModelFileError(" ".join(str(err).split())) from None
    except Exception as err:  # noqa: BLE001 - torch and zipfile raise many types on bad data
        reason = " ".join(str(err).split())[:200] or type(err).__name__
        raise ModelFileError(f"{name} is a torch.export archive that cannot be loaded "
                             f"({reason}); {_RESAVE}") from None


# ---------------------------------------------------------------- the zip layout

def _entries(archive: zipfile.ZipFile, name: str) -> dict[str, zipfile.ZipInfo]:
    """Entry name (below the archive's root folder) -> its ZipInfo."""
    infos = archive.infolist()
    if not infos:
        raise ModelFileError(f"{name} is an empty zip archive, not a torch.export program; "
                             f"{_RESAVE}")
    first = infos[0].filename
    root = first.split("/", 1)[0] + "/" if "/" in first else ""  # torch 2.7 wrote no folder
    entries: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        if not info.filename.startswith(root) or info.filename[len(root):] in entries:
            raise ModelFileError(f"{name}: zip entry {info.filename[:80]!r} is outside the "
                                 f"archive's folder or repeated; the file was edited, {_RESAVE}")
        entries[info.filename[len(root):]] = info
    return entries


def _check_layout(archive: zipfile.ZipFile, entries: dict[str, zipfile.ZipInfo],
                  name: str) -> None:
    if "archive_format" not in entries and not any(e.startswith("serialized_")
                                                   for e in entries):
        raise ModelFileError(f"{name} is a zip archive but not a torch.export program (no "
                             f"archive_format entry; a mimoc checkpoint is named .pt); "
                             f"{_RESAVE}")
    for entry in entries:
        for prefix, what in _REFUSED:
            if entry.startswith(prefix):
                raise ModelFileError(f"{name} holds {what} ({entry[:80]!r}); mimoc never runs "
                                     f"code from a model file: {_RESAVE}")
        if not _expected_entry(entry):
            raise ModelFileError(f"{name} holds {entry[:80]!r}, which torch.export.save does "
                                 f"not write for a plain program; {_RESAVE}")
    if PROGRAM not in entries:
        raise ModelFileError(f"{name} is a torch.export archive without a program named "
                             f"'model' ({PROGRAM}); {_RESAVE}")
    fmt = archive.read(entries["archive_format"]).decode("utf-8", "replace")
    version = (archive.read(entries["archive_version"]).decode("utf-8", "replace")
               if "archive_version" in entries else "")
    if fmt != "pt2" or version != "0":
        raise ModelFileError(f"{name}: torch.export archive format {fmt[:20]!r} version "
                             f"{version[:20]!r} is not the one this mimoc reads ('pt2' "
                             f"version '0'); {_RESAVE} from the installed torch")
    order = (archive.read(entries["byteorder"]).decode("utf-8", "replace")
             if "byteorder" in entries else sys.byteorder)
    if order != sys.byteorder:
        raise ModelFileError(f"{name} stores {order[:20]!r}-endian tensors and this machine "
                             f"is {sys.byteorder}-endian; export the program on this machine")
    for config in (WEIGHTS_CONFIG, CONSTANTS_CONFIG):
        if config not in entries:
            raise ModelFileError(f"{name} lacks {config}; the file was edited, {_RESAVE}")


def _expected_entry(entry: str) -> bool:
    if entry in _BOOKKEEPING or entry in (PROGRAM, WEIGHTS_CONFIG, CONSTANTS_CONFIG,
                                          SAMPLE_INPUTS):
        return True
    if entry.startswith("extra/"):  # torch.export.save(extra_files=...): text, never read
        return True
    return any(entry.startswith(folder) and pattern.fullmatch(entry[len(folder):])
               for folder, pattern in _TENSOR_FILE.items())


# ---------------------------------------------------------------- the program

def _read_program(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str):
    from torch._export.serde import schema
    from torch._export.serde.serialize import _dict_to_dataclass

    from mimoc.compiler.pt2_program import check_program

    data = json.loads(archive.read(info).decode("utf-8"))
    program = _dict_to_dataclass(schema.ExportedProgram, data)  # plain dataclasses, no eval
    check_program(program, name)
    return program


def _deserialize(program: Any, state_dict: dict[str, torch.Tensor],
                 constants: dict[str, torch.Tensor]) -> torch.export.ExportedProgram:
    from torch._export.serde.serialize import ExportedProgramDeserializer

    # tensors as dicts (not bytes) and no example inputs: nothing here reaches torch.load
    return ExportedProgramDeserializer().deserialize(program, state_dict, constants, None)


# ---------------------------------------------------------------- weights and constants

def _read_tensors(archive: zipfile.ZipFile, entries: dict[str, zipfile.ZipInfo],
                  folder: str, config_entry: str, name: str) -> dict[str, torch.Tensor]:
    """The tensors a payload config describes, as ``torch.export.load`` builds them (one
    flat storage per file, views by size/stride/offset, ``Parameter`` where ``is_param``),
    from raw bytes."""
    from torch._export.serde import schema
    from torch._export.serde.serialize import _dict_to_dataclass

    data = json.loads(archive.read(entries[config_entry]).decode("utf-8"))
    config = _dict_to_dataclass(schema.PayloadConfig, data).config
    if not isinstance(config, dict):
        raise ModelFileError(f"{name}: {config_entry} is not a mapping of names to tensors; "
                             f"{_RESAVE}")
    kind = "weight" if folder == WEIGHTS_DIR else "constant"
    storages: dict[str, torch.Tensor] = {}
    tensors: dict[str, torch.Tensor] = {}
    for fqn, meta in config.items():
        what = f"{name}: {kind} {str(fqn)[:80]!r}"
        if not isinstance(meta, schema.PayloadMeta) or meta.use_pickle is not False:
            raise ModelFileError(f"{what} is stored as a pickle (use_pickle); mimoc never "
                                 f"unpickles a model file: {_RESAVE}")
        file = meta.path_name
        if not isinstance(file, str) or not _TENSOR_FILE[folder].fullmatch(file):
            raise ModelFileError(f"{what} is not stored as a plain tensor ({str(file)[:40]!r}); "
                                 f"mimoc reads only plain tensors: {_RESAVE}")
        if folder + file not in entries:
            raise ModelFileError(f"{what}: its data {file!r} is missing; the file was edited, "
                                 f"{_RESAVE}")
        dtype, sizes, strides, offset = _tensor_layout(meta.tensor_meta, what)
        if file not in storages:
            storages[file] = _flat_tensor(archive.read(entries[folder + file]), dtype, sizes,
                                          meta.tensor_meta.requires_grad, what)
        flat = storages[file]
        if flat.dtype != dtype:
            raise ModelFileError(f"{what} shares its data with a {flat.dtype} tensor but is "
                                 f"{dtype}; the file was edited, {_RESAVE}")
        _check_extent(sizes, strides, offset, flat.numel(), what)
        view = torch.as_strided(flat, sizes, strides, offset)
        tensors[fqn] = (torch.nn.Parameter(view, requires_grad=meta.tensor_meta.requires_grad)
                        if meta.is_param is True else view)
    return tensors


def _tensor_layout(meta: Any, what: str) -> tuple[torch.dtype, tuple, tuple, int]:
    from torch._export.serde import schema
    from torch._export.serde.serialize import _SERIALIZE_TO_TORCH_DTYPE

    if not isinstance(meta, schema.TensorMeta):
        raise ModelFileError(f"{what} has no tensor metadata; {_RESAVE}")
    dtype = _SERIALIZE_TO_TORCH_DTYPE.get(meta.dtype) if isinstance(meta.dtype, int) else None
    if dtype is None or meta.layout != schema.Layout.Strided or not isinstance(
            meta.requires_grad, bool):
        raise ModelFileError(f"{what} has an unknown dtype or a non-dense layout; {_RESAVE}")

    def ints(values: Any) -> tuple[int, ...]:
        out = []
        for value in values if isinstance(values, list) else [None]:
            if (not isinstance(value, schema.SymInt) or value.type != "as_int"
                    or not isinstance(value.as_int, int) or value.as_int < 0):
                raise ModelFileError(f"{what} has a size, stride or offset that is not a "
                                     f"non-negative integer; {_RESAVE}")
            out.append(value.as_int)
        return tuple(out)

    sizes, strides = ints(meta.sizes), ints(meta.strides)
    if len(sizes) != len(strides):
        raise ModelFileError(f"{what} has {len(sizes)} sizes but {len(strides)} strides; "
                             f"{_RESAVE}")
    return dtype, sizes, strides, ints([meta.storage_offset])[0]


def _flat_tensor(data: bytes, dtype: torch.dtype, sizes: tuple, requires_grad: bool,
                 what: str) -> torch.Tensor:
    if not data:  # torch.export saves an empty tensor as an empty record
        flat = torch.zeros(sizes, dtype=dtype)
    else:
        item = torch.empty((), dtype=dtype).element_size()
        if len(data) % item:
            raise ModelFileError(f"{what}: {len(data)} bytes is not a whole number of {dtype} "
                                 f"values; the file was edited or damaged, {_RESAVE}")
        flat = torch.empty(len(data) // item, dtype=dtype)  # torch-aligned memory
        flat.view(torch.uint8).copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    if requires_grad:
        flat.requires_grad_(True)
    return flat


def _check_extent(sizes: tuple, strides: tuple, offset: int, numel: int, what: str) -> None:
    if 0 in sizes:
        return  # no elements to reach
    last = offset + sum((size - 1) * stride for size, stride in zip(sizes, strides, strict=True))
    if last >= numel:
        raise ModelFileError(f"{what} reaches element {last} of a stored tensor of {numel}; "
                             f"the file was edited or damaged, {_RESAVE}")


# ---------------------------------------------------------------- sample inputs

def _check_sample_inputs(data: bytes, name: str) -> None:
    """Refuse sample inputs whose pickle names anything but tensor rebuilders: parsed with
    pickletools, never unpickled (mimoc does not use them)."""
    what = f"{name}: the sample inputs ({SAMPLE_INPUTS})"
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as inner:
            pickles = [i for i in inner.infolist() if i.filename.endswith(".pkl")]
            if not pickles:
                raise ModelFileError(f"{what} hold no torch.save data; {_RESAVE}")
            for info in pickles:
                for opcode, arg, _ in pickletools.genops(inner.read(info)):
                    if opcode.name in _CODE_OPCODES or (
                            opcode.name == "GLOBAL" and not _names_tensor_data(str(arg))):
                        raise ModelFileError(
                            f"{what} are a pickle that names {str(arg)[:60]!r} "
                            f"({opcode.name}), not only tensors; mimoc never unpickles a "
                            f"model file: {_RESAVE}")
    except (zipfile.BadZipFile, ValueError, EOFError, OSError) as err:
        raise ModelFileError(f"{what} are damaged ({' '.join(str(err).split())[:80]}); "
                             f"{_RESAVE}") from None


def _names_tensor_data(name: str) -> bool:
    """Whether the pickle global ``"module attribute"`` is part of plain tensor data."""
    module, _, attribute = name.partition(" ")
    if name in _TENSOR_PICKLE_GLOBALS:
        return True
    value = getattr(torch, attribute, None) if module == "torch" else None
    return isinstance(value, torch.dtype) or (
        isinstance(value, type) and attribute.endswith("Storage"))
