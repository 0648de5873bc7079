"""Untrusted model files: nothing in a ``.pt2`` program or a checkpoint ever runs, and a
damaged, misnamed or unreadable model file is refused.

Every crafted file is made here from a small clean one by editing its zip entries. Each
refusal is checked in a real process (``python -m mimoc ...``: exit status 2, exactly one
line on stderr, no traceback, nothing written) and in the Python API (a ``MimocError``).
The payloads write a marker file when they run; it must never appear. The payload archives
are live: ``test_the_weight_payload_runs_under_torch_export_load`` shows torch's own loader
springing one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import onnx
import pytest
import torch
from torch import nn

import mimoc
from mimoc.compiler.source import load_source
from mimoc.detectors import build_detector, load_detector, save_detector
from mimoc.detectors.checkpoint import checkpoint_dict
from mimoc.errors import MimocError

ROOT = Path(__file__).resolve().parents[2]
MARKER = "payload-ran"


# ---------------------------------------------------------------- clean inputs

class TinyProgram(nn.Module):
    """forward(H [B, 8, 4], y [B, S, 8]) -> [B, S, 4] with a weight and a lifted constant
    (so the archive has both a weights and a constants payload)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.scale = torch.tensor([1.5, 0.5, 2.0, 1.0])

    def forward(self, H, y):
        return self.fc(y @ H) * self.scale


def _link(batch: int = 2, slot: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(batch, 8, 4, generator=gen), torch.randn(batch, slot, 8, generator=gen)


def _export(module: nn.Module) -> torch.export.ExportedProgram:
    B, S = torch.export.Dim("B", min=2), torch.export.Dim("S", min=2)
    return torch.export.export(module.eval(), _link(), dynamic_shapes=({0: B}, {0: B, 1: S}))


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> dict[str, Path]:
    """A clean .pt2 program and a clean checkpoint of a tiny DetNet."""
    folder = tmp_path_factory.mktemp("clean")
    torch.manual_seed(0)
    torch.export.save(_export(TinyProgram()), folder / "program.pt2")
    model = build_detector("detnet", nt=2, nr=4, modulation="qpsk", layers=2, hidden=16,
                           v_dim=4)
    save_detector(model, folder / "detnet.pt")
    return {"pt2": folder / "program.pt2", "pt": folder / "detnet.pt"}


# ---------------------------------------------------------------- crafting

class Payload:
    """Unpickling calls ``eval(expr)``: the marker is written, then a valid value returned,
    so a loader that unpickles goes on as if the file were clean."""

    def __init__(self, expr: str):
        self.expr = expr

    def __reduce__(self):
        return eval, (self.expr,)


def _payload(marker: Path, result: str = "None") -> Payload:
    return Payload(f"(open({str(marker)!r}, 'w').close(), {result})[1]")


def _torch_saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _edit_archive(source: Path, target: Path, edit) -> Path:
    """Copy the zip ``source`` to ``target`` with ``edit(entries)`` applied to its entries
    (name below the root folder -> bytes); CRCs are recomputed, so only the edit differs."""
    with zipfile.ZipFile(source) as archive:
        root = archive.namelist()[0].split("/", 1)[0]
        entries = {i.filename[len(root) + 1:]: archive.read(i) for i in archive.infolist()}
    edit(entries)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
        for name, data in entries.items():
            archive.writestr(f"{root}/{name}", data)
    return target


def _edit_json(entries: dict[str, bytes], name: str, change) -> None:
    data = json.loads(entries[name])
    change(data)
    entries[name] = json.dumps(data).encode()


WEIGHTS = "data/weights/model_weights_config.json"
CONSTANTS = "data/constants/model_constants_config.json"
PROGRAM = "models/model.json"


def _pickled_weight(entries, marker):
    def change(config):
        meta = config["config"]["fc.weight"]
        meta["use_pickle"] = True
        entries["data/weights/" + meta["path_name"]] = _torch_saved(_payload(
            marker, "__import__('torch').nn.Parameter(__import__('torch').zeros(4, 4))"))
    _edit_json(entries, WEIGHTS, change)


def _pickled_constant(entries, marker):
    def change(config):
        meta = config["config"]["scale"]
        meta["use_pickle"] = True
        entries["data/constants/" + meta["path_name"]] = _torch_saved(_payload(
            marker, "__import__('torch').ones(4)"))
    _edit_json(entries, CONSTANTS, change)


def _object_constant(prefix: str, data):
    def edit(entries, marker):
        def change(config):
            config["config"]["obj"] = {"path_name": f"{prefix}0", "is_param": False,
                                       "use_pickle": True, "tensor_meta": None}
        _edit_json(entries, CONSTANTS, change)
        entries[f"data/constants/{prefix}0"] = data(marker)
    return edit


def _sample_inputs(entries, marker):
    entries["data/sample_inputs/model.pt"] = _torch_saved((_payload(marker), {}))


def _legacy_weights(entries, marker):
    entries["data/weights/model.pt"] = _torch_saved(_payload(marker, "{}"))


def _aotinductor(entries, marker):
    entries["data/aotinductor/model/model.so"] = b"\x7fELF" + bytes(60)


def _first(data, key):
    """The first value stored under ``key`` anywhere in the JSON ``data``, by reference."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if key in item:
                return item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    raise AssertionError(f"no {key!r} in the program")


def _shape_expression(entries, marker):
    def change(program):
        holder = _first(program, "expr_str")
        holder["expr_str"] = (f"__import__('builtins').open({str(marker)!r}, 'w').close() or "
                              f"{holder['expr_str']}")
    _edit_json(entries, PROGRAM, change)


def _guard_code(entries, marker):
    def change(program):
        program["guards_code"] = [f"__import__('builtins').open({str(marker)!r}, 'w').close() "
                                  "is None"]
    _edit_json(entries, PROGRAM, change)


def _node_target(target: str):
    def edit(entries, marker):
        _edit_json(entries, PROGRAM, lambda program: program["graph_module"]["graph"]["nodes"][0]
                   .update(target=target))
    return edit


def _multiline_module_path(entries, marker):
    def change(program):
        node = program["graph_module"]["graph"]["nodes"][0]
        node["metadata"]["nn_module_stack"] = "L__self___fc,fc\nsecond line,torch.nn.Linear"
    _edit_json(entries, PROGRAM, change)


def _corrupt_largest_record(path: Path, count: int = 200) -> None:
    """Invert ``count`` bytes inside the largest tensor record (the zip CRC goes stale)."""
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist()
                    if re.search(r"/data/(weights/weight_)?\d+$", i.filename)),
                   key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26:
                                                    info.header_offset + 30])
    begin = info.header_offset + 30 + name_len + extra_len
    for i in range(begin, begin + min(count, info.file_size)):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _checkpoint_with_training(clean, folder, training) -> Path:
    model = load_detector(clean["pt"])
    payload = checkpoint_dict(model)
    payload["training"] = training
    torch.save(payload, folder / "model.pt")
    return folder / "model.pt"


# ---------------------------------------------------------------- the cases

COMPILE = ("compile", "{model}", "-o", "{out}")
CROSSBAR = ("compile", "{model}", "--target", "crossbar", "-o", "{out}")
BENCH = ("bench", "{model}")
INSPECT_IR = ("inspect", "{model}", "--ir")


def _pt2_case(edit, commands=(COMPILE,), expected="never"):
    def build(clean, folder, marker):
        path = _edit_archive(clean["pt2"], folder / "model.pt2", lambda e: edit(e, marker))
        return path
    return build, commands, expected


def _copy(key: str, name: str):
    def build(clean, folder, marker):
        return Path(shutil.copy(clean[key], folder / name))
    return build


def _corrupted(key: str, name: str):
    def build(clean, folder, marker):
        path = Path(shutil.copy(clean[key], folder / name))
        _corrupt_largest_record(path)
        return path
    return build


def _truncated(clean, folder, marker):
    data = clean["pt"].read_bytes()
    (folder / "model.pt").write_bytes(data[: len(data) // 2])
    return folder / "model.pt"


def _fifo(clean, folder, marker):
    os.mkfifo(folder / "model.pt")
    return folder / "model.pt"


def _directory(clean, folder, marker):
    (folder / "model.pt").mkdir()
    return folder / "model.pt"


def _device(clean, folder, marker):
    return Path(os.devnull)


def _training(training):
    def build(clean, folder, marker):
        return _checkpoint_with_training(clean, folder, training)
    return build


CASES = {
    "pt2 weight pickled": _pt2_case(_pickled_weight, (COMPILE, CROSSBAR, BENCH, INSPECT_IR),
                                    "pickle"),
    "pt2 constant pickled": _pt2_case(_pickled_constant, expected="pickle"),
    "pt2 torchbind custom object": _pt2_case(
        _object_constant("custom_obj_", lambda m: _torch_saved(_payload(m))),
        expected="custom object"),
    "pt2 opaque object": _pt2_case(
        _object_constant("opaque_obj_", lambda m: __import__("pickle").dumps(_payload(m))),
        expected="pickled Python object"),
    "pt2 sample inputs pickled code": _pt2_case(_sample_inputs, (COMPILE, BENCH),
                                                "sample inputs"),
    "pt2 legacy pickled weights": _pt2_case(_legacy_weights, expected="pickled weights"),
    "pt2 aotinductor library": _pt2_case(_aotinductor, expected="AOTInductor"),
    "pt2 shape expression code": _pt2_case(_shape_expression, (COMPILE, INSPECT_IR),
                                           "shape expression"),
    "pt2 guard code": _pt2_case(_guard_code, (COMPILE, BENCH), "guard code"),
    "pt2 python function target": _pt2_case(_node_target("torch.os.system"),
                                            expected="torch.os.system"),
    "pt2 file reading aten op": _pt2_case(_node_target("torch.ops.aten.from_file.default"),
                                          expected="aten.from_file"),
    "pt2 module path with a newline": _pt2_case(_multiline_module_path,
                                                expected="is not one line"),
    "pt2 crc corrupted": (_corrupted("pt2", "model.pt2"), (COMPILE,), "checksum"),
    "pt2 renamed pt": (_copy("pt2", "model.pt"), (COMPILE, INSPECT_IR, ("inspect", "{model}")),
                       "rename it to model.pt2"),
    "checkpoint named pt2": (_copy("pt", "model.pt2"), (COMPILE,), "not a torch.export"),
    "checkpoint crc corrupted": (_corrupted("pt", "model.pt"), (COMPILE, ("inspect", "{model}")),
                                 "checksum"),
    "checkpoint truncated": (_truncated, (COMPILE,), "truncated or corrupt"),
    "fifo": (_fifo, (COMPILE, ("inspect", "{model}")), "FIFO"),
    "directory": (_directory, (COMPILE,), "is a folder"),
    "device file": (_device, (COMPILE,), "device file"),
    "training snr_db strings": (_training({"snr_db": ["0", "10"], "steps": 3}),
                                (COMPILE, ("inspect", "{model}"),
                                 ("report", "{model}", "-o", "{out}")), "snr_db"),
    "training option of the wrong type": (_training({"options": {"snr_def": ["x"]}}),
                                          (COMPILE, ("budget", "{model}")), "snr_def"),
}

CLI_RUNS = [(case, i) for case, (_, commands, _) in CASES.items() for i in range(len(commands))]
#: The CLI runs in the default test run: a new Python process each (seconds); the rest are
#: marked slow. test_api_raises_mimoc_error below checks every case in process.
FAST_CLI_RUNS = {("pt2 weight pickled", 0), ("checkpoint truncated", 0)}


def _run_id(case: str, run: int) -> str:
    command = CASES[case][1][run]
    return "-".join([case.replace(" ", "_"), command[0], *(a.strip("-") for a in command[2:]
                                                            if a in ("--ir", "crossbar"))])


def _build(case: str, clean, folder: Path) -> tuple[Path, Path]:
    marker = folder / MARKER
    return CASES[case][0](clean, folder, marker), marker


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize(("case", "run"), [
    pytest.param(c, i, id=_run_id(c, i),
                 marks=[] if (c, i) in FAST_CLI_RUNS else [pytest.mark.slow])
    for c, i in CLI_RUNS])
def test_cli_refuses_with_one_line(clean, tmp_path, case, run):
    path, marker = _build(case, clean, tmp_path)
    before = _files(tmp_path)
    argv = [a.format(model=path, out=tmp_path / "out") for a in CASES[case][1][run]]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get(
        "PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "mimoc", *argv], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path, env=env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("mimoc: error: "), proc.stderr
    assert CASES[case][2] in proc.stderr and str(path) in proc.stderr, proc.stderr
    assert not marker.exists(), "the payload ran"
    assert _files(tmp_path) == before  # no output directory, no marker, no temp files


@pytest.mark.parametrize("case", sorted(CASES))
def test_api_raises_mimoc_error(clean, tmp_path, case):
    path, marker = _build(case, clean, tmp_path)
    before = _files(tmp_path)
    with pytest.raises(MimocError) as info:
        mimoc.compile(path, out=tmp_path / "out")
    assert "\n" not in str(info.value) and CASES[case][2] in str(info.value)
    with pytest.raises(MimocError):
        load_source(path)
    assert not marker.exists(), "the payload ran"
    assert _files(tmp_path) == before


def test_a_path_that_is_not_a_path_is_a_usage_error():
    for call in (load_detector, load_source):
        with pytest.raises(MimocError, match="NoneType"):
            call(None)


def test_the_weight_payload_runs_under_torch_export_load(clean, tmp_path):
    """The crafted archives are real attacks: torch's loader runs this one and goes on."""
    path, marker = _build("pt2 weight pickled", clean, tmp_path)
    program = torch.export.load(path)
    assert marker.exists() and program.state_dict["fc.weight"].shape == (4, 4)


def test_corruption_is_silent_without_the_crc_check(clean, tmp_path):
    """torch.load reads a checkpoint with inverted tensor bytes; mimoc refuses it."""
    path, _ = _build("checkpoint crc corrupted", clean, tmp_path)
    raw = torch.load(path, weights_only=True)
    good = torch.load(clean["pt"], weights_only=True)
    assert any(not torch.equal(raw["state_dict"][k], v) for k, v in good["state_dict"].items())


# ---------------------------------------------------------------- clean programs still work

def test_clean_pt2_compiles_like_the_in_memory_program(tmp_path):
    torch.manual_seed(0)
    program = _export(TinyProgram())
    path = tmp_path / "detector.pt2"
    torch.export.save(program, path)
    from_memory = mimoc.compile(program, out=tmp_path / "memory")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get(
        "PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "mimoc", "compile", str(path), "-o",
                           str(tmp_path / "file")], capture_output=True, text=True, timeout=120,
                          env=env)
    assert proc.returncode == 0, proc.stderr
    files = sorted(p.name for p in (tmp_path / "file").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "memory").iterdir())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    for name in files:
        if name.endswith(".onnx"):
            # The same bytes, except that a file's compile records the file's hash.
            from_file = onnx.load_from_string((tmp_path / "file" / name).read_bytes())
            props = {p.key: p.value for p in from_file.metadata_props}
            assert props.pop("mimoc.source_sha256") == digest
            del from_file.metadata_props[:]
            from_file.metadata_props.extend(
                onnx.StringStringEntryProto(key=k, value=v) for k, v in props.items())
            assert from_file.SerializeToString() == \
                (tmp_path / "memory" / name).read_bytes(), name
    manifest = json.loads((tmp_path / "file" / "manifest.json").read_text())
    reference = json.loads((from_memory.path / "manifest.json").read_text())
    assert manifest.pop("source")["file"] == "detector.pt2"
    assert reference.pop("source", None) is None  # an in-memory program has no source file
    manifest.pop("files"), reference.pop("files")  # the ONNX files' hashes differ by that key
    assert manifest == reference


def test_clean_pt2_loads_as_torch_export_load_does(clean):
    ours, theirs = load_source(clean["pt2"]), torch.export.load(clean["pt2"])
    assert ours.graph_module.code == theirs.graph_module.code
    assert str(ours.graph_signature) == str(theirs.graph_signature)
    for mine, ref in ((ours.state_dict, theirs.state_dict), (ours.constants, theirs.constants)):
        assert mine.keys() == ref.keys()
        for key, tensor in ref.items():
            assert type(mine[key]) is type(tensor) and mine[key].dtype == tensor.dtype
            assert torch.equal(mine[key].detach(), tensor.detach()), key
    H, y = _link(batch=3, slot=5)
    with torch.no_grad():
        assert torch.equal(ours.module()(H, y), theirs.module()(H, y))
