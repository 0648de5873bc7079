"""Tracing: export a detector with ``torch.export`` (dynamic named dims) and import it.

The detector is exported with dynamic batch ``B`` and slot length ``S`` (and any other
named dims, e.g. RE-MIMO's user count ``U``); :func:`import_module` then hands the
exported program to the importer (:func:`~.importer.import_program`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.export import Dim as TorchDim
from torch.export import ExportedProgram, export

from mimoc.compiler.frontend.diagnostics import FrontendError
from mimoc.compiler.frontend.importer import import_program
from mimoc.compiler.frontend.interface import DEFAULT_DIMS, DimSpec
from mimoc.compiler.ir import Graph
from mimoc.errors import MimocError, UsageError


def example_inputs(model: torch.nn.Module, batch: int = 2, slot: int = 3,
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ``(H, y)`` for a zoo detector, sized from ``model.config`` (nt, nr).

    ``batch`` and ``slot`` must differ from 1 (torch.export specialises size-1 dims).
    """
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "nt") or not hasattr(config, "nr"):
        raise UsageError("the model has no config with nt/nr: pass example inputs (H, y)")
    gen = torch.Generator().manual_seed(0)
    scale = 1 if getattr(config, "system", "complex") == "real" else 2  # real: [Nr, Nt]
    H = torch.randn(batch, scale * config.nr, scale * config.nt, generator=gen)
    y = torch.randn(batch, slot, scale * config.nr, generator=gen)
    return H, y


def default_dims(model: torch.nn.Module) -> tuple[DimSpec, dict[str, tuple[int, int]]]:
    """Dynamic dims of a detector and their bounds: ``B`` and ``S`` always; a model whose
    config has ``nt_min < nt`` (RE-MIMO: one model for a range of user counts) also gets a
    dynamic user count ``U`` with ``H [B, 2Nr, 2U]``."""
    config = getattr(model, "config", None)
    nt_min, nt = getattr(config, "nt_min", None), getattr(config, "nt", None)
    if isinstance(nt_min, int) and isinstance(nt, int) and nt_min < nt:
        dims = {"H": {0: "B", 2: ("U", 2)}, "y": {0: "B", 1: "S"}}
        return dims, {"U": (max(nt_min, 2), None)}
    return DEFAULT_DIMS, {}


def export_detector(model: torch.nn.Module, example: Sequence[torch.Tensor],
                    dims: DimSpec = DEFAULT_DIMS, input_names: Sequence[str] = ("H", "y"),
                    bounds: Mapping[str, tuple[int, int]] | None = None) -> ExportedProgram:
    """``torch.export`` with the named dims of ``dims`` dynamic (``bounds[name] = (lo, hi)``,
    default ``lo = 2``: torch.export specialises dims of size 0 and 1)."""
    torch_dims: dict[str, Any] = {}
    bounds = bounds or {}

    def torch_dim(spec: str | tuple[str, int]) -> Any:
        name, mult = (spec, 1) if isinstance(spec, str) else spec
        if name not in torch_dims:
            lo, hi = bounds.get(name, (2, None))
            torch_dims[name] = TorchDim(name, min=lo, max=hi)
        return torch_dims[name] * mult if mult != 1 else torch_dims[name]

    dynamic = {n: {axis: torch_dim(s) for axis, s in dims.get(n, {}).items()}
               for n in input_names}
    shapes = tuple(dynamic[n] for n in input_names)
    try:
        with warnings.catch_warnings():  # torch-internal deprecation noise, not the user's
            warnings.filterwarnings("ignore", category=FutureWarning)
            return export(model.eval(), tuple(example), dynamic_shapes=shapes, strict=False)
    except MimocError:
        raise
    except Exception as e:  # torch raises many types here; the message is what helps
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FrontendError(f"torch.export could not trace the model: {first}") from e


def import_module(model: torch.nn.Module, example: Sequence[torch.Tensor] | None = None, *,
                  dims: DimSpec | None = None, input_names: Sequence[str] = ("H", "y"),
                  bounds: Mapping[str, tuple[int, int]] | None = None,
                  name: str | None = None) -> Graph:
    """Export ``model`` and translate it to a verified IR graph.

    ``dims``/``bounds`` default to :func:`default_dims`; ``example`` to
    :func:`example_inputs` (zoo detectors).
    """
    if dims is None:
        dims, auto_bounds = default_dims(model)
        bounds = bounds if bounds is not None else auto_bounds
    example = tuple(example) if example is not None else example_inputs(model)
    ep = export_detector(model, example, dims, input_names, bounds)
    graph_name = name or getattr(model, "family", None) or type(model).__name__
    return import_program(ep, input_names=input_names, dims=dims, name=graph_name)
