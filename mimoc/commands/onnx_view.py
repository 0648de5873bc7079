"""``mimoc inspect DIR`` for an ONNX artifact: the manifest as text (or ``--json``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mimoc.commands.crossbar_view import table


def describe(path: Path, args: argparse.Namespace | None = None) -> dict[str, Any]:
    """The manifest (JSON-ready) plus the path and kind; refused if an ONNX file was
    modified after compiling, unless ``args.allow_modified``."""
    from mimoc.targets.artifact_files import read_recorded_file
    from mimoc.targets.onnx.artifact import MANIFEST, MODEL_FILES, read_manifest

    manifest = read_manifest(path)
    verify = not getattr(args, "allow_modified", False)
    for name in MODEL_FILES.values():
        read_recorded_file(Path(path), name, manifest["files"], index=MANIFEST, verify=verify)
    return {"path": str(path), "kind": "onnx", **manifest}


def _io(entries: list[dict[str, Any]]) -> str:
    return ", ".join(f"{e['name']} {e['shape']}" for e in entries)


def _selection(selection: dict[str, Any] | None) -> list[str]:
    """The ``--lowering auto`` record: each candidate's time and agreement."""
    if not selection:
        return []
    parts = [f"{c['lowering']} " + "/".join(f"{v:.0f}" for v in c["median_us"].values())
             + " us" + ("" if c.get("correct", True) else " (decisions differ)")
             for c in selection["candidates"]]
    batches = "/".join(selection["candidates"][0]["median_us"]) if selection["candidates"] \
        else ""
    large = "".join(f" (from B={b['from_batch']}: {b['lowering']})"
                    for b in selection.get("buckets", [])[1:])
    return [f"  auto         chose {selection['chosen']}{large} on {selection['cpu']}; {batches}: "
            + ", ".join(parts)]


def render(info: dict[str, Any]) -> str:
    model, f = info["model"], info["flops"]
    config = model.get("config") or {}
    link = (f"{config['nt']}x{config['nr']} {config.get('modulation', '')}".strip()
            if {"nt", "nr"} <= set(config) else "")
    q = info.get("quantization")
    lines = [f"{info['path']}: mimoc ONNX artifact (format {info['format_version']}, mimoc "
             f"{info['mimoc_version']}) of {model.get('name')} {link}".rstrip(),
             f"  lowering     {info['lowering']}" + (
                 f" ({q['method']} {q['bits']}-bit, {q['layers']} layers; faithful: "
                 f"{q['faithful']})" if q else ""),
             *_selection(info.get("lowering_selection")),
             f"  source       {(info.get('source') or {}).get('file', '(in memory)')}",
             f"  FLOPs        {f['per_symbol']:,} per symbol, {f['slot_rate']:,} slot rate, "
             f"{f['per_slot']:,} per slot of {f['slot_symbols']} symbols",
             "", "stages"]
    rows = [["file", "inputs", "outputs"]]
    for stage, graph in info["graphs"].items():
        rows.append([f"{stage}.onnx", _io(graph["inputs"]), _io(graph["outputs"])])
    lines += table(rows, right=set())
    lines += ["", "passes"]
    rows = [["pass", "nodes", "FLOPs per symbol", "FLOPs per slot"]]
    for p in info["passes"]:
        rows.append([p["pass"], f"{p['nodes_before']} -> {p['nodes_after']}",
                     f"{p['flops_per_symbol_before']:,} -> {p['flops_per_symbol_after']:,}",
                     f"{p['flops_per_slot_before']:,} -> {p['flops_per_slot_after']:,}"])
    lines += table(rows, right=set())
    lines += ["", f"layers ({len(info['layers'])})"]
    rows = [["scope", "ops", "rate", "lowering", "FLOPs per symbol"]]
    for layer in info["layers"]:
        rows.append([layer["scope"], ",".join(layer["ops"]), layer["rate"], layer["lowering"],
                     f"{layer['flops_per_symbol']:,}"])
    lines += table(rows, right={4})
    lines += ["", f"  {info['runtime']}"]
    return "\n".join(lines)
