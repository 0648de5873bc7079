"""The onnx-cpu artifact: ``manifest.json``, ``slot.onnx``, ``symbol.onnx``, ``detector.onnx``.

Layout (docs/design.md section 5)::

    out/
      manifest.json   model, shapes (symbolic dims), rates, passes and their reports,
                      FLOPs per symbol and per slot, lowering per layer, mimoc version
      slot.onnx       H [B, 2Nr, 2Nt]               -> slot state (H^T H, pinv(H), ...)
      symbol.onnx     y [B, S, 2Nr] + slot state    -> x_hat [B, S, 2Nt]
      detector.onnx   H, y                          -> x_hat   (both stages in one file)
      detector.<lowering>.onnx  only for --lowering auto when another lowering is faster
                      at large batches: the runtime runs it from the manifest's
                      batch_dispatch[1].from_batch channels on

Run ``slot.onnx`` once per channel realisation and ``symbol.onnx`` on the symbols of the
slot (:mod:`mimoc.runtime`); ``detector.onnx`` is the same computation in one file for
users who want one model. Dims ``B`` (channel realisations) and ``S`` (symbols per slot)
are dynamic, and RE-MIMO's user count ``U`` (``2Nt = 2*U``). The files are deterministic:
compiling the same input twice gives byte-identical files.

Example::

    >>> built = build_artifact(result.graph, records=result.records, model=info)
    >>> write_artifact(built, "out/detnet")            # atomic
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from mimoc import __version__
from mimoc.compiler.dims import fmt_dim
from mimoc.compiler.flops import count_flops
from mimoc.compiler.ir import Graph, Node, Rate
from mimoc.compiler.stages import Stages, split_stages
from mimoc.sim.numerology import SLOT_SYMBOLS
from mimoc.targets.onnx.emit import IR_VERSION, OPSET, emit_model
from mimoc.targets.onnx.finish import finish_model, fixed_dim, state_names
from mimoc.targets.onnx.format import FORMAT, MANIFEST
from mimoc.targets.onnx.quantized import session_config
from mimoc.targets.output import read_json_file, write_directory

FORMAT_VERSION = 1
MODEL_FILES = {"slot": "slot.onnx", "symbol": "symbol.onnx", "detector": "detector.onnx"}
DIM_MEANINGS = {"B": "channel realisations (batch)", "S": "symbols per slot",
                "U": "users (transmit streams), 2*U real unknowns"}
LOWERING = "fp32"


@dataclass(frozen=True)
class BuiltArtifact:
    """An artifact in memory: the ONNX models and the manifest (``files()`` to write)."""

    models: Mapping[str, onnx.ModelProto]
    manifest: Mapping[str, Any]
    stages: Stages

    def files(self) -> dict[str, bytes]:
        out = {MODEL_FILES.get(k, f"{k}.onnx"): m.SerializeToString(deterministic=True)
               for k, m in self.models.items()}
        manifest = dict(self.manifest)
        manifest["files"] = {name: {"bytes": len(data), "sha256": _sha256(data)}
                             for name, data in sorted(out.items())}
        out[MANIFEST] = (json.dumps(manifest, indent=2) + "\n").encode()
        return out


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _shape(node: Node) -> list[int | str]:
    return [d if isinstance(d, int) else fmt_dim(d) for d in node.shape]


def _io(node: Node) -> dict[str, Any]:
    return {"name": node.name, "shape": _shape(node), "dtype": node.type.dtype,
            "rate": str(node.rate)}


def _signature(graph: Graph) -> dict[str, Any]:
    return {"inputs": [_io(n) for n in graph.inputs],
            "outputs": [_io(graph.node(o)) for o in graph.outputs]}


def _flops(graph: Graph) -> dict[str, Any]:
    report = count_flops(graph)
    return {"per_symbol": report.per_symbol, "slot_rate": report.per_slot,
            "per_slot": report.per_slot + SLOT_SYMBOLS * report.per_symbol,
            "slot_symbols": SLOT_SYMBOLS, "at": {"B": 1, "S": 1, **dict(graph.dim_sizes)},
            "definition": "2 x multiply-accumulates; biases and activations not counted"}


def _layers(graph: Graph, quantized: Mapping[str, Any] | None = None,
            lowering: str = LOWERING) -> list[dict[str, Any]]:
    """Per layer (module scope): ops, rate, lowering and FLOPs per symbol / slot.

    ``quantized``: scope -> what the quantized lowering emitted for it (weights, kernel,
    input quantizer); such a layer's ``lowering`` is the artifact's, the others' ``fp32``.
    """
    report = count_flops(graph)
    quantized = quantized or {}
    layers: dict[str, dict[str, Any]] = {}
    for node in graph.nodes:
        if node.op in ("Input", "Const") or not node.scope:
            continue
        if node.scope not in layers:
            entry = {"scope": node.scope, "ops": [], "rate": "const",
                     "lowering": lowering if node.scope in quantized else LOWERING,
                     "flops_per_symbol": 0, "flops_slot_rate": 0}
            if node.scope in quantized:
                entry["quantized"] = dict(sorted(quantized[node.scope].items()))
            layers[node.scope] = entry
        layer = layers[node.scope]
        if node.op not in layer["ops"]:
            layer["ops"].append(node.op)
        layer["rate"] = str(max(Rate.parse(layer["rate"]), node.rate))
        count = report.by_node.get(node.name, 0)
        if node.rate == Rate.SYMBOL:
            layer["flops_per_symbol"] += count
        elif node.rate == Rate.SLOT:
            layer["flops_slot_rate"] += count
    return list(layers.values())


def _pass_entry(record: Any) -> dict[str, Any]:
    entry = dict(record.to_dict()) if hasattr(record, "to_dict") else {
        "pass": record.name, "nodes_before": record.nodes_before,
        "nodes_after": record.nodes_after,
        "flops_per_symbol_before": record.flops_before.per_symbol,
        "flops_per_symbol_after": record.flops_after.per_symbol,
        "flops_per_slot_before": record.flops_before.per_slot,
        "flops_per_slot_after": record.flops_after.per_slot}
    entry.pop("seconds", None)  # wall time would make two compiles differ
    return entry


def build_manifest(graph: Graph, stages: Stages, *, records: Sequence[Any] = (),
                   model: Mapping[str, Any] | None = None,
                   source: Mapping[str, Any] | None = None, lowering: str = LOWERING,
                   quantized: Mapping[str, Any] | None = None,
                   quantization: Mapping[str, Any] | None = None,
                   static_shapes: Mapping[str, int] | None = None) -> dict[str, Any]:
    dims = sorted({name for n in graph.inputs for d in n.shape if not isinstance(d, int)
                   for name in d.names})
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "mimoc_version": __version__,
        "target": "onnx",
        "lowering": lowering,
        "quantization": dict(quantization) if quantization else None,
        "session_config": session_config(lowering),
        "onnx": {"opset": OPSET, "ir_version": IR_VERSION,
                 "domains": ["ai.onnx", "com.microsoft"]
                 if _uses_ms(stages, graph) or lowering != LOWERING else ["ai.onnx"]},
        "model": dict(model or {"name": graph.name}),
        "source": dict(source) if source else None,
        "dims": {d: DIM_MEANINGS.get(d, "symbolic dimension") for d in dims},
        "graphs": {"detector": _signature(graph), "slot": _signature(stages.slot),
                   "symbol": _signature(stages.symbol)},
        "slot_state": [_io(stages.slot.node(s)) for s in stages.state],
        "passes": [_pass_entry(r) for r in records],
        "flops": _flops(graph),
        "layers": _layers(graph, quantized, lowering),
        "runtime": "run slot.onnx once per channel realisation (inputs H), then symbol.onnx "
                   "on y and the slot state (outputs of slot.onnx, same names)",
    }
    if static_shapes:  # absent for the default, fully dynamic models
        manifest["static_shapes"] = dict(static_shapes)
        for io in [*manifest["slot_state"], *(io for g in manifest["graphs"].values()
                                              for io in g["inputs"] + g["outputs"])]:
            io["shape"] = [fixed_dim(d, static_shapes) for d in io["shape"]]
    return manifest


def _uses_ms(stages: Stages, graph: Graph) -> bool:
    return any(n.op in ("Inverse", "Solve", "Pinv") for n in graph.nodes)


def build_artifact(graph: Graph, *, records: Sequence[Any] = (),
                   model: Mapping[str, Any] | None = None,
                   source: Mapping[str, Any] | None = None, lowering: str = LOWERING,
                   quantization: Mapping[str, Any] | None = None,
                   static_shapes: Mapping[str, int] | None = None,
                   snr_def: str | None = None,
                   selection: Mapping[str, Any] | None = None,
                   large_batch: Sequence[tuple[int, str, Graph]] = ()) -> BuiltArtifact:
    """Cut ``graph`` (after the passes) into stages and emit the three ONNX models.

    ``lowering``: ``fp32``, or ``w4`` / ``w4a4`` / ``int8`` for a graph the quantize pass
    annotated (:mod:`.quantized`); ``quantization``: the recipe summary for the manifest;
    ``static_shapes``: dims to fix (``{"B": 1, "S": 14}``, :mod:`.finish`); ``snr_def``:
    the training SNR convention for the models' metadata (``None``: not known);
    ``selection``: the record of ``--lowering auto`` (:mod:`.autoselect`), kept in the
    manifest as ``lowering_selection``; ``large_batch``: ``(from_batch, lowering, lowered
    graph)`` of a faster lowering for large batches (its ``detector.<lowering>.onnx`` and
    the manifest's ``batch_dispatch``).
    """
    # the slot state is what a user of slot.onnx sees: readable names, in every model
    graph = graph.renamed(state_names(graph, split_stages(graph).state))
    stages = split_stages(graph)
    title = (model or {}).get("family") or graph.name
    quantized: dict[str, Any] = {}
    models = {
        "slot": emit_model(stages.slot, f"{title}.slot",
                           "mimoc slot stage: run once per channel realisation",
                           lowering=lowering),
        "symbol": emit_model(stages.symbol, f"{title}.symbol",
                             "mimoc symbol stage: y and the slot state -> x_hat",
                             lowering=lowering),
        "detector": emit_model(graph, f"{title}.detector",
                               "mimoc detector: H, y -> x_hat (both stages)",
                               lowering=lowering, layers=quantized),
    }
    for _, other, other_graph in large_batch:
        models[f"detector.{other}"] = emit_model(
            other_graph.renamed(state_names(other_graph, split_stages(other_graph).state)),
            f"{title}.detector", "mimoc detector: H, y -> x_hat (both stages), for large "
            "batches", lowering=other)
    models = {stage: finish_model(m, model_metadata(
        stage.split(".")[0], model, source, stage.split(".")[1] if "." in stage else lowering,
        snr_def), static_shapes) for stage, m in models.items()}
    manifest = build_manifest(graph, stages, records=records, model=model, source=source,
                              lowering=lowering, quantized=quantized,
                              quantization=quantization, static_shapes=static_shapes)
    if selection:  # absent for an explicit lowering: those artifacts stay as they were
        manifest["lowering_selection"] = dict(selection)
    if large_batch:  # which detector the runtime runs for a call of B channels
        manifest["batch_dispatch"] = [{"from_batch": 1, "lowering": lowering,
                                       "file": MODEL_FILES["detector"]}] + [
            {"from_batch": start, "lowering": other, "file": f"detector.{other}.onnx"}
            for start, other, _ in large_batch]
        for _, other, _ in large_batch:
            manifest["session_config"].update(session_config(other))
    return BuiltArtifact(models, manifest, stages)


def model_metadata(stage: str, model: Mapping[str, Any] | None,
                   source: Mapping[str, Any] | None, lowering: str,
                   snr_def: str | None = None) -> dict[str, str]:
    """The ``metadata_props`` of one ONNX file: what it detects and where it came from,
    for a user who has only the file (keys absent when the compile does not know them;
    ``mimoc.snr_def``: the SNR convention the model was trained under)."""
    model = model or {}
    config = model.get("config") or {}
    found = {"mimoc.family": model.get("family"), "mimoc.nt": config.get("nt"),
             "mimoc.nr": config.get("nr"), "mimoc.modulation": config.get("modulation"),
             "mimoc.snr_def": snr_def, "mimoc.version": __version__,
             "mimoc.source_sha256": (source or {}).get("sha256"), "mimoc.stage": stage,
             "mimoc.lowering": str(lowering)}
    return {k: str(v) for k, v in found.items() if v is not None}


def write_artifact(built: BuiltArtifact, out: str | os.PathLike, *,
                   force: bool = False) -> Path:
    """Write the artifact directory atomically (see :mod:`mimoc.targets.output`)."""
    return write_directory(built.files(), out, force=force)


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest of an artifact directory, checked: format and version, the JSON Schema
    (``mimoc/data/schemas/manifest.schema.json``) and :func:`check_manifest`."""
    manifest = read_json_file(path, MANIFEST, fmt=FORMAT, version=FORMAT_VERSION,
                              kind="ONNX artifact manifest", schema="manifest",
                              how_to_make="compile one with 'mimoc compile MODEL.pt -o DIR'")
    check_manifest(manifest, repr(str(Path(path) / MANIFEST)))
    return manifest


#: The symbolic dims the runtime can bind in ``H`` and ``y`` (batch, slot, RE-MIMO's users).
RUNTIME_DIMS = ("B", "S", "U", "2*U")


def check_manifest(manifest: Mapping[str, Any], where: str) -> None:
    """What the schema cannot say: the stages fit together as the runtime runs them
    (``slot.onnx``: ``H`` -> state; ``symbol.onnx``: ``y`` + that state; ``detector.onnx``:
    ``H``, ``y`` -> one output; ``H``/``y`` of rank 3 over the dims the runtime binds)."""
    from mimoc.errors import ModelFileError

    def refuse(problem: str) -> ModelFileError:
        return ModelFileError(f"{where}: {problem}; compile the artifact again")

    graphs = manifest["graphs"]
    names = {k: ([io["name"] for io in g["inputs"]], [io["name"] for io in g["outputs"]])
             for k, g in graphs.items() if k in MODEL_FILES}
    if sorted(names["detector"][0]) != ["H", "y"] or len(names["detector"][1]) != 1:
        raise refuse("graphs.detector must have the inputs H and y and one output")
    if names["slot"][0] != ["H"]:
        raise refuse("graphs.slot must have the one input H")
    state = set(names["symbol"][0]) - {"y"}
    if "y" not in names["symbol"][0] or not state <= set(names["slot"][1]) \
            or len(names["symbol"][1]) != 1:
        raise refuse("graphs.symbol must take y and outputs of graphs.slot, and give one "
                     "output")
    for io in graphs["detector"]["inputs"] + graphs["detector"]["outputs"]:
        shape = io["shape"]
        if len(shape) != 3 or any(isinstance(d, str) and d not in RUNTIME_DIMS for d in shape):
            raise refuse(f"graphs.detector {io['name']} has shape {shape}; the runtime needs "
                         f"3 dims, symbolic ones among {', '.join(RUNTIME_DIMS)}")
    dispatch = manifest.get("batch_dispatch")
    if dispatch is not None:
        starts = [entry["from_batch"] for entry in dispatch]
        if dispatch[0]["file"] != MODEL_FILES["detector"] or starts[0] != 1 \
                or starts != sorted(set(starts)) \
                or any(entry["file"] not in manifest["files"] for entry in dispatch):
            raise refuse("batch_dispatch must start with detector.onnx from batch 1, its "
                         "batches increasing, its files listed in files")
