"""``mimoc inspect DIR`` for an iree artifact: the manifest as text (or ``--json``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mimoc.commands.crossbar_view import table


def describe(path: Path, args: argparse.Namespace | None = None) -> dict[str, Any]:
    """The manifest (JSON-ready) plus the path and kind; refused if a module was modified
    after compiling, unless ``args.allow_modified``."""
    from mimoc.targets.artifact_files import read_recorded_file
    from mimoc.targets.iree.artifact import read_manifest
    from mimoc.targets.iree.format import MANIFEST, MODULE_FILES

    manifest = read_manifest(path)
    verify = not getattr(args, "allow_modified", False)
    for name in MODULE_FILES.values():
        read_recorded_file(Path(path), name, manifest["files"], index=MANIFEST, verify=verify)
    return {"path": str(path), "kind": "iree", **manifest}


def render(info: dict[str, Any]) -> str:
    model, f, iree = info["model"], info["flops"], info["iree"]
    config = model.get("config") or {}
    link = (f"{config['nt']}x{config['nr']} {config.get('modulation', '')}".strip()
            if {"nt", "nr"} <= set(config) else "")
    sizes = ", ".join(f"{k}={v}" for k, v in info["static_shapes"].items())
    lines = [f"{info['path']}: mimoc IREE artifact (format {info['format_version']}, mimoc "
             f"{info['mimoc_version']}) of {model.get('name')} {link}".rstrip(),
             f"  cpu          {iree['cpu']} ({iree['triple']}), {iree['compiler']}",
             f"  flags        {' '.join(iree['flags'])}",
             f"  sizes        {sizes} (compiled in; calls of other sizes are cut to them)",
             f"  source       {(info.get('source') or {}).get('file', '(in memory)')}",
             f"  FLOPs        {f['per_symbol']:,} per symbol, {f['slot_rate']:,} slot rate",
             "", "modules"]
    rows = [["file", "function", "bytes", "inputs", "outputs"]]
    for stage, graph in info["graphs"].items():
        name = f"{stage}.vmfb"
        rows.append([name, iree["functions"][stage], f"{info['files'][name]['bytes']:,}",
                     ", ".join(f"{e['name']} {e['shape']}" for e in graph["inputs"]),
                     ", ".join(f"{e['name']} {e['shape']}" for e in graph["outputs"])])
    lines += table(rows, right={2})
    lines += ["", f"  {info['runtime']}"]
    return "\n".join(lines)
