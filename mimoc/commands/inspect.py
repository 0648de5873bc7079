"""``mimoc inspect PATH``: what a model file or a compiled artifact holds.

Each kind of file mimoc can describe is an :class:`Inspector` in
:data:`INSPECTORS` (tried in order): how to recognise the path, how to
describe it as a JSON-ready dict, and how to print that dict for a person.
A new kind (a compiled artifact folder, an IR dump) is one more entry.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mimoc.commands.artifact_flags import add_allow_modified_argument
from mimoc.commands.json_output import print_json
from mimoc.commands.pass_flags import add_pass_option_arguments, pass_options
from mimoc.errors import UsageError

NAME = "inspect"
HELP = "describe a trained model or a compiled artifact (ONNX or crossbar)"
DESCRIPTION = """\
Describe a mimoc detector checkpoint (.pt): family, link sizes and modulation,
configuration, parameter count, FLOPs per received symbol vector and per slot,
a per-layer table and the training metadata. The file is read safely (plain
data only, never unpickled code) and checked; a file that is not a valid
checkpoint is refused with one line.

FLOPs follow docs/design.md: 2 x multiply-accumulates, biases and activations not
counted, as executed by the module's forward pass on one slot. The work
splits into a slot-rate part that depends on the channel H only (done once
per slot) and a per-symbol part: flops(S) = slot-rate + S x per-symbol.
"per slot" is for S = 14 symbols (a 5G NR slot).

JSON output (--json) is one object (schema "mimoc-inspect/1", docs/json.md):
  {"schema", "mimoc_version", "command", "path", "kind": "checkpoint",
   "checkpoint": {"family", "nt", "nr", "modulation", "config",
   "params", "flops_per_symbol", "flops_slot_rate", "flops_per_slot", "slot_symbols",
   "layers": [{"name", "type", "params", "flops_per_symbol", "flops_slot_rate",
               "flops_per_slot"}, ...],
   "uncounted_ops", "training": {...}, "mimoc_version", "format_version"}}
(the inner "mimoc_version" is the one that saved the checkpoint).
Layer rows hold each module's own parameters and FLOPs (its children have
their own rows), so they add up to the totals.

Compiler IR (--ir, --passes, --dump-after): the model (a checkpoint or a
torch.export program saved as .pt2) is imported into mimoc's IR and printed in
its text form (docs/compiler.md), after the passes given with --passes (none:
as imported). --dump-after PASS[,PASS] (or "all"; "frontend" is the imported
graph) prints the IR after each of those passes. A report of each pass (nodes,
per-symbol and per-slot FLOPs, what it removed) comes first, as "#" lines.
--keep-layers / --l1-threshold configure remove-layers, --prune-threshold
configures prune. With --json: one object
  {"schema", "mimoc_version", "command", "path", "kind": "ir", "ir": {"passes":
   [{"pass", "nodes_before", "nodes_after", "flops_per_symbol_before", ...,
   "notes", "details"}], "graph": GRAPH, "dumps": {PASS: GRAPH}}}
with GRAPH = {"name", "inputs", "outputs", "constants", "parameters",
"nodes": [{"name", "op", "inputs", "attrs", "shape", "dtype", "rate", "scope",
"flops"}], "flops": {"per_symbol", "per_slot"}} (FLOPs for one channel and one
symbol).

A crossbar artifact folder (mimoc compile --target crossbar) is shown as tables:
matrices and tiles, the per-slot programming plan, latency per block / symbol /
slot, peripherals and digital work; --json prints schedule.json (without the
lowered program) as "artifact", with "path" and "kind": "crossbar". An ONNX artifact
folder (mimoc compile) is shown as its stages, passes and layers; --json prints
manifest.json as "artifact", with "path" and "kind": "onnx". Either kind is recognised by the
format its index file declares; files modified after compiling are refused
unless --allow-modified.

examples:
  mimoc inspect detnet.pt
  mimoc inspect out/xb
  mimoc inspect out/detnet
  mimoc inspect detnet.pt --json
  mimoc inspect wesnet.pt --ir --passes canonicalize,prune,split-channel
  mimoc inspect rwesnet.pt --passes canonicalize,remove-layers --keep-layers 6
  mimoc inspect sdnet.pt --passes canonicalize,split-channel,hoist-conv-rows \
      --dump-after hoist-conv-rows
"""


@dataclass(frozen=True)
class Inspector:
    """One kind of inspectable path."""

    kind: str
    matches: Callable[[Path, str | None], bool]  # (path, the target of an artifact or None)
    describe: Callable[[Path, argparse.Namespace], dict[str, Any]]
    render: Callable[[dict[str, Any]], str]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH",
                        help="a model checkpoint (.pt) or an artifact directory written by mimoc")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object (format above) instead of text")
    add_allow_modified_argument(parser)
    ir = parser.add_argument_group("compiler IR")
    ir.add_argument("--ir", action="store_true",
                    help="print the compiler IR (as imported, or after --passes)")
    ir.add_argument("--passes", metavar="PASS[,PASS]", default=None,
                    help="passes to run before printing the IR (implies --ir)")
    ir.add_argument("--dump-after", metavar="PASS[,PASS]", default=None,
                    help="print the IR after each of these passes, 'all', or 'frontend' "
                         "(implies --ir)")
    add_pass_option_arguments(ir)


def run(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if args.ir or args.passes is not None or args.dump_after is not None:
        info = describe_ir(path, args)
        if args.json:
            print_json(NAME, args, inspect_body(info))
        else:
            print(render_ir(info))
        return 0
    if pass_options(args).set_options():
        raise UsageError("--prune-threshold, --keep-layers and --l1-threshold configure "
                         "passes: use them with --passes")
    artifact = _artifact_kind(path)  # the index file is read once, not once per inspector
    for inspector in INSPECTORS:
        if inspector.matches(path, artifact):
            info = inspector.describe(path, args)
            if args.json:
                print_json(NAME, args, inspect_body(info))
            else:
                print(inspector.render(info))
            return 0
    kinds = ", ".join(i.kind for i in INSPECTORS)
    raise UsageError(f"cannot inspect {path}: not a file mimoc knows ({kinds})")


def inspect_body(info: dict[str, Any]) -> dict[str, Any]:
    """``--json``'s keys (behind the envelope): ``path``, ``kind`` and what was inspected
    under one key, ``artifact`` (an artifact's index file, as ``mimoc compile --json``),
    ``checkpoint`` or ``ir``; the text-only entries (``_...``) are dropped."""
    payload = {k: v for k, v in info.items() if k not in ("path", "kind")
               and not k.startswith("_")}
    key = "artifact" if info["kind"] in ("onnx", "crossbar") else info["kind"]
    return {"path": info["path"], "kind": info["kind"], key: payload}


# -- checkpoints -------------------------------------------------------------------

def describe_checkpoint(path: Path, args: argparse.Namespace | None = None) -> dict[str, Any]:
    """The JSON-ready description of a checkpoint (format in DESCRIPTION): the inspector's
    entry to :func:`mimoc.detectors.summary.describe_checkpoint`."""
    from mimoc.detectors.summary import describe_checkpoint as describe  # torch: on first use

    return describe(path)


def _training_lines(training: dict[str, Any]) -> list[str]:
    if not training:
        return ["  training     none recorded (an untrained or hand-saved model)"]
    options = training.get("options", {}) if isinstance(training.get("options"), dict) else {}
    parts = []
    if "steps" in training:
        parts.append(f"{training['steps']} steps")
    if isinstance(training.get("seconds"), (int, float)):
        parts.append(f"{training['seconds']:.1f} s")
    snr = training.get("snr_db")
    if isinstance(snr, (list, tuple)) and len(snr) == 2:
        parts.append(f"SNR {snr[0]:g}..{snr[1]:g} dB {options.get('snr_def', '')}".rstrip())
    if "seed" in training:
        parts.append(f"seed {training['seed']}")
    lines = ["  training     " + ", ".join(parts)] if parts else []
    if training.get("system"):
        lines.append(f"  trained on   {training['system']}")
    if isinstance(training.get("final_loss"), (int, float)):
        lines.append(f"  final loss   {training['final_loss']:.6g}")
    if isinstance(training.get("val_ser"), (int, float)):
        lines.append(f"  val. SER     {training['val_ser']:.4g}")
    if isinstance(options.get("c2c"), (int, float)) and options["c2c"] > 0:
        lines.append(f"  noise-aware  C2C {options['c2c']:g}, {options.get('states')} states")
    return lines


def render_checkpoint(info: dict[str, Any]) -> str:
    from mimoc.tables import text_table

    config = ", ".join(f"{k}={v}" for k, v in info["config"].items()
                       if k not in ("nt", "nr", "modulation"))
    lines = [
        f"{info['path']}: mimoc {info['family']} detector (checkpoint format "
        f"{info['format_version']}, mimoc {info['mimoc_version']})",
        f"  link         Nt={info['nt']} x Nr={info['nr']}, {info['modulation']}",
        f"  config       {config or '(defaults)'}",
        f"  parameters   {info['params']:,}",
        f"  FLOPs        {info['flops_per_symbol']:,} per symbol vector; "
        f"{info['flops_per_slot']:,} per slot of {info['slot_symbols']} symbols "
        f"({info['flops_slot_rate']:,} of them channel-only, once per slot)",
    ]
    if info["uncounted_ops"]:
        lines.append(f"  not counted  {', '.join(info['uncounted_ops'])} (no FLOP formula)")
    lines += _training_lines(info["training"])
    header = ["layer", "type", "params", "FLOPs/symbol", "FLOPs/slot once",
              f"FLOPs/slot (S={info['slot_symbols']})"]
    rows = [header] + [[layer["name"], layer["type"], f"{layer['params']:,}",
                        f"{layer['flops_per_symbol']:,}", f"{layer['flops_slot_rate']:,}",
                        f"{layer['flops_per_slot']:,}"] for layer in info["layers"]]
    rows.append(["total", "", f"{info['params']:,}", f"{info['flops_per_symbol']:,}",
                 f"{info['flops_slot_rate']:,}", f"{info['flops_per_slot']:,}"])
    lines += ["", *text_table(rows[1:], rows[0], right={2, 3, 4, 5}, indent="  ").splitlines()]
    return "\n".join(lines)


# -- compiler IR -------------------------------------------------------------------

def describe_ir(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The model's IR after ``args.passes`` as JSON-ready data (format in DESCRIPTION);
    ``text`` / ``dump_texts`` hold the text forms for :func:`render_ir`."""
    import torch

    from mimoc.compiler.frontend import DEFAULT_DIMS, import_module, import_program
    from mimoc.compiler.pipeline import resolve_passes, run_pipeline
    from mimoc.compiler.printer import format_graph, format_graph_json
    from mimoc.compiler.source import load_source

    options = pass_options(args)
    passes = resolve_passes(args.passes or "")  # bad names fail before the slow import
    source = load_source(path)
    if isinstance(source, torch.export.ExportedProgram):
        graph = import_program(source, dims=DEFAULT_DIMS, name="detector")
    else:
        graph = import_module(source)
    result = run_pipeline(graph, passes, dump_after=args.dump_after or (), options=options)
    return {
        "path": str(path),
        "kind": "ir",
        "passes": [record.to_dict() for record in result.records],
        "graph": format_graph_json(result.graph),
        "dumps": {name: format_graph_json(g) for name, g in result.snapshots.items()},
        # text forms, for render_ir only (dropped from --json)
        "_report": result.report(),
        "_text": format_graph(result.graph),
        "_dumps": dict(result.dumps),
    }


def render_ir(info: dict[str, Any]) -> str:
    names = [record["pass"] for record in info["passes"]]
    lines = [f"# mimoc IR of {info['path']}; passes: {', '.join(names) or 'none (as imported)'}"]
    lines += [f"# {line}" for line in info["_report"].splitlines()]
    flops = info["graph"]["flops"]
    lines.append(f"# FLOPs of the result: {flops['per_symbol']:,} per symbol, "
                 f"{flops['per_slot']:,} per slot (channel-only work)")
    if info["_dumps"]:
        for name, text in info["_dumps"].items():
            lines += ["", f"# IR after {name}", text.rstrip("\n")]
    else:
        lines += ["", info["_text"].rstrip("\n")]
    return "\n".join(lines)


def _is_model_file(path: Path, artifact: str | None = None) -> bool:
    # Anything that is not a folder goes to the checkpoint reader, whose errors say what it is.
    return not path.is_dir()


def _artifact_kind(path: Path) -> str | None:
    from mimoc.targets import artifact_target

    return artifact_target(path)


def _view(kind: str):
    import importlib

    return importlib.import_module(f"mimoc.commands.{kind}_view")


INSPECTORS: list[Inspector] = [
    Inspector("crossbar artifact (schedule.json)", lambda p, kind: kind == "crossbar",
              lambda p, a: _view("crossbar").describe(p, a),
              lambda info: _view("crossbar").render(info)),
    Inspector("ONNX artifact (manifest.json)", lambda p, kind: kind == "onnx",
              lambda p, a: _view("onnx").describe(p, a),
              lambda info: _view("onnx").render(info)),
    Inspector("IREE artifact (manifest.json)", lambda p, kind: kind == "iree",
              lambda p, a: _view("iree").describe(p, a),
              lambda info: _view("iree").render(info)),
    Inspector("checkpoint (.pt)", _is_model_file, describe_checkpoint, render_checkpoint),
]
