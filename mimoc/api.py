"""``mimoc.compile``: a detector -> IR -> passes -> an artifact of any target (``mimoc compile``).

Inputs:

- a mimoc checkpoint (``.pt`` saved by :func:`mimoc.detectors.save_detector` or
  ``mimoc train``), loaded safely (never unpickles code);
- a ``torch.export`` program saved with ``torch.export.save`` (``.pt2``; read by
  :mod:`mimoc.compiler.pt2`, never by ``torch.export.load``), for detectors
  outside the zoo that follow ``forward(H [B, 2Nr, 2Nt], y [B, S, 2Nr]) -> x_hat``,
  exported with dynamic ``B`` and ``S``::

      B, S = torch.export.Dim("B", min=2), torch.export.Dim("S", min=2)
      ep = torch.export.export(model, (H, y), dynamic_shapes=({0: B}, {0: B, 1: S}))
      torch.export.save(ep, "detector.pt2")

- in Python, also an ``nn.Module`` (zoo detector, or any module with ``example=(H, y)``)
  or an ``ExportedProgram``.

A pickled ``nn.Module`` (``torch.save(model)``) is refused with how to save a usable file.

Example::

    >>> result = mimoc.compile("detnet.pt", target="onnx", out="out/detnet")
    >>> result.manifest["flops"]["per_symbol"], result.path
    (52736, PosixPath('out/detnet'))
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from mimoc.compiler.source import EXPORT_HINT, file_digest, load_source
from mimoc.driver import CompileResult
from mimoc.errors import MimocError
from mimoc.targets.onnx.target import quant_plan

# load_source and file_digest live in mimoc.compiler.source (re-exported here)


def compile(model: str | os.PathLike | torch.nn.Module | torch.export.ExportedProgram,  # noqa: A001
            target: str = "onnx", out: str | os.PathLike | None = None, *,
            passes: str | Iterable[str] | None = None, dump_after: Iterable[str] | str = (),
            on_dump: Callable[[str, str], None] | None = None, force: bool = False,
            example: Sequence[torch.Tensor] | None = None, options: Any = None,
            progress: bool = False, **target_options: Any) -> CompileResult:
    """Compile ``model`` for ``target`` and (when ``out`` is given) write the artifact.

    Args:
        model: checkpoint path, ``.pt2`` path, ``nn.Module`` or ``ExportedProgram``.
        target: a name of :data:`mimoc.targets.TARGETS`: ``"onnx"`` (ONNX for onnxruntime)
            or ``"crossbar"`` (memristor crossbar schedule, docs/crossbar.md).
        out: artifact directory, written atomically; ``None`` keeps it in memory.
        passes: comma-separated names or a list (default: the target's default pipeline);
            the target's own lowering passes run after them.
        dump_after: pass names whose IR text goes to ``on_dump(name, text)``.
        force: replace a non-empty ``out``.
        example: ``(H, y)`` for modules outside the zoo.
        options: :class:`mimoc.compiler.passes.base.PassOptions` (prune / remove-layers).
        progress: progress bars (on a terminal) during the slow steps.
        **target_options: the target's own options; an option of another target is a
            UsageError.

            - ``onnx``: ``quant`` (``None``, ``"kaq"``, ``"kaq-ptq"``, ``"lsq"``,
              ``"minmax"``, ``"int8"`` or a :class:`~mimoc.quant.spec.QuantRecipe`; a
              quantized checkpoint from ``mimoc quantize`` compiles with its own recipe),
              ``lowering`` (``"auto"``, the default for a quantized model: the fastest
              correct one on this CPU, :mod:`mimoc.targets.onnx.autoselect`; ``"w4"``,
              ``"w4a4"``, ``"int8"`` or ``"w4-int8"``, see
              :mod:`mimoc.targets.onnx.quantized`), ``bits`` (bit width of a
              calibration method run here);
            - ``iree``: ``cpu`` (``"host"``, ``"aarch64"``, ``"x86-64-v3"``, an LLVM core
              name), ``static_shapes`` (default ``"B=1,S=14"``);
            - ``crossbar``: ``device`` (id, profile path or Device), ``array``
              (``"RxC"`` or ``(R, C)``), ``slot``, ``crossbar`` (a
              :class:`~mimoc.targets.crossbar.config.CrossbarConfig` or dict),
              ``accumulation``, ``static_clip``, ``write_parallel``, ``mc_draws``,
              ``strategy`` (channel programming, e.g. ``"verify:tol=0.02"``).

    Raises :class:`~mimoc.errors.MimocError` (one-line message) for bad inputs.
    """
    from mimoc import driver

    return driver.compile(model, target, out, passes=passes, dump_after=dump_after,
                          on_dump=on_dump, force=force, example=example, options=options,
                          progress=progress, **target_options)


__all__ = ["EXPORT_HINT", "CompileResult", "MimocError", "compile", "file_digest", "load_source",
           "quant_plan"]
