"""Loading the model a compile starts from: a mimoc checkpoint or a ``torch.export`` program.

The loader is chosen by the file's extension, never by sniffing its contents:

- ``.pt2``: a ``torch.export`` archive, read by :mod:`mimoc.compiler.pt2` (never by
  ``torch.export.load``, which unpickles and evaluates parts of the file);
- anything else (``.pt``): a mimoc checkpoint, read by
  :func:`mimoc.detectors.load_detector` (``torch.load(weights_only=True)``). An export
  archive under another name is refused with a hint to rename it, not loaded.

Both first check that the path is a regular file (a FIFO would block forever) and verify the
CRC-32 of every zip entry (a damaged file is refused, not compiled). Every refusal is a
one-line :class:`~mimoc.errors.MimocError`.

Example::

    >>> model = load_source("detnet.pt")          # nn.Module (eval mode)
    >>> program = load_source("detector.pt2")     # torch.export.ExportedProgram
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import torch

from mimoc.errors import ModelFileError
from mimoc.fileio import check_model_file, is_export_archive

EXPORT_SUFFIX = ".pt2"
EXPORT_HINT = ("export it with torch.export and save the program: ep = torch.export.export("
               "model, (H, y), dynamic_shapes=({0: B}, {0: B, 1: S})) with B, S = "
               "torch.export.Dim('B', min=2), torch.export.Dim('S', min=2); "
               "torch.export.save(ep, 'model.pt2')")


def load_source(path: str | os.PathLike) -> torch.nn.Module | torch.export.ExportedProgram:
    """A checkpoint (-> zoo module, eval mode) or a ``.pt2`` program (-> ExportedProgram)."""
    loaded = load_model_file(path)
    return loaded if isinstance(loaded, torch.export.ExportedProgram) else loaded.model


def load_model_file(path: str | os.PathLike) -> Any:
    """A ``.pt2`` program (-> ExportedProgram) or a checkpoint (-> its
    :class:`~mimoc.detectors.checkpoint.Checkpoint`: module, training metadata and
    quantization), so that a caller needing more than the module reads the file once."""
    path = check_model_file(path, "model file")
    if path.suffix.lower() == EXPORT_SUFFIX:
        from mimoc.compiler.pt2 import load_export_archive

        return load_export_archive(path)
    if is_export_archive(path):
        raise ModelFileError(f"{path} is a torch.export program but is not named .pt2; "
                             f"rename it to {path.with_suffix(EXPORT_SUFFIX).name} (mimoc "
                             f"reads .pt files as mimoc checkpoints)")
    from mimoc.detectors import load_checkpoint

    try:
        return load_checkpoint(path)
    except ModelFileError as err:
        if "pickled Python code" in str(err):
            raise ModelFileError(f"{err}; or, for a detector outside the zoo, {EXPORT_HINT}") \
                from None
        raise


def file_digest(path: str | os.PathLike) -> str:
    """The sha256 of the file ``path`` (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


__all__ = ["EXPORT_HINT", "file_digest", "load_model_file", "load_source"]
