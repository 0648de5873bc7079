"""``mimoc compile`` end to end: checkpoints and torch.export programs in, an artifact out,
written atomically; every bad input is one line on stderr and exit status 2."""

from __future__ import annotations

import json
import os

import pytest
import torch
from independent_detectors import UnfoldedDetector, random_link
from json_docs import parse_output
from torch import nn

from mimoc.cli import main
from mimoc.compiler.pipeline import DEFAULT_PASSES
from mimoc.detectors import build_detector, save_detector
from mimoc.runtime import load_artifact

CONFIG = dict(nt=2, nr=4, modulation="qpsk", layers=2, hidden=16, v_dim=4)


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str) -> bool:
    return code == 2 and err.count("\n") == 1 and err.startswith("mimoc: error:")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_detector("detnet", **CONFIG).eval()
    path = tmp_path_factory.mktemp("model") / "detnet.pt"
    save_detector(model, path)
    return model, path


def export_program(module: nn.Module, path, dynamic: bool = True) -> None:
    H, y = random_link(2, 4, batch=2, slot=3)
    B, S = torch.export.Dim("B", min=2), torch.export.Dim("S", min=2)
    shapes = ({0: B}, {0: B, 1: S}) if dynamic else None
    torch.export.save(torch.export.export(module.eval(), (H, y), dynamic_shapes=shapes), path)


def test_compile_writes_an_artifact_that_detects(capsys, checkpoint, tmp_path):
    model, path = checkpoint
    code, out, err = cli(capsys, "compile", str(path), "-o", str(tmp_path / "art"), "--json",
                         "--dump-after", "split-channel")
    assert code == 0, err
    data = parse_output("compile", out)
    assert (data["path"], data["target"]) == (str(tmp_path / "art"), "onnx")
    manifest = data["artifact"]
    assert manifest == json.loads((tmp_path / "art" / "manifest.json").read_text())
    assert manifest["model"]["family"] == "detnet" and manifest["model"]["config"]["nt"] == 2
    # The default pipeline, then the ONNX target's own fusion pass.
    assert [p["pass"] for p in manifest["passes"]] == [*DEFAULT_PASSES["onnx"], "onnx-fuse"]
    assert manifest["flops"]["per_slot"] == (manifest["flops"]["slot_rate"]
                                             + 14 * manifest["flops"]["per_symbol"])
    assert manifest["graphs"]["detector"]["inputs"][1]["shape"] == ["B", "S", 8]
    assert set(manifest["files"]) == {"slot.onnx", "symbol.onnx", "detector.onnx"}
    assert "# IR after split-channel" in err and "Gram(%H)" in err
    H, y = random_link(2, 4, batch=3, slot=4, seed=5)
    art = load_artifact(tmp_path / "art")
    with torch.no_grad():
        ref = model(H, y)
    for out in (art.detect(H, y), torch.from_numpy(art.detect_staged(H.numpy(), y.numpy()))):
        assert float((out - ref).abs().max() / ref.abs().max()) < 1e-5


def test_summary_lists_passes_and_flops(capsys, checkpoint, tmp_path):
    code, out, _ = cli(capsys, "compile", str(checkpoint[1]), "-o", str(tmp_path / "a"))
    assert code == 0 and "split-channel" in out and "per slot of 14 symbols" in out


def test_torch_export_program_compiles_and_matches(capsys, tmp_path):
    torch.manual_seed(0)
    module = UnfoldedDetector()
    export_program(module, tmp_path / "mine.pt2")
    code, _, err = cli(capsys, "compile", str(tmp_path / "mine.pt2"), "-o", str(tmp_path / "o"))
    assert code == 0, err
    H, y = random_link(2, 4, batch=5, slot=7, seed=1)
    with torch.no_grad():
        ref = module(H, y)
    out = load_artifact(tmp_path / "o").detect(H, y)
    assert float((out - ref).abs().max() / ref.abs().max()) < 1e-5


def test_existing_output_needs_force(capsys, checkpoint, tmp_path):
    out = tmp_path / "art"
    out.mkdir()
    (out / "old.txt").write_text("keep me")
    code, _, err = cli(capsys, "compile", str(checkpoint[1]), "-o", str(out))
    assert one_line_error(code, err) and "--force" in err and (out / "old.txt").exists()
    code, _, err = cli(capsys, "compile", str(checkpoint[1]), "-o", str(out), "--force")
    assert code == 0 and not (out / "old.txt").exists() and (out / "detector.onnx").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]  # nothing left aside


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt])
def test_a_failed_write_leaves_no_directory(capsys, checkpoint, tmp_path, monkeypatch, failure):
    import mimoc.targets.output as output

    calls = []
    real_fsync = os.fsync

    def failing_fsync(fd):
        calls.append(fd)
        if len(calls) == 2:  # the second file of four
            raise failure
        return real_fsync(fd)

    monkeypatch.setattr(output.os, "fsync", failing_fsync)
    before = sorted(p.name for p in tmp_path.iterdir())
    if failure is KeyboardInterrupt:
        code, _, err = cli(capsys, "compile", str(checkpoint[1]), "-o", str(tmp_path / "art"))
        assert code == 130
    else:
        code, _, err = cli(capsys, "compile", str(checkpoint[1]), "-o", str(tmp_path / "art"))
        assert one_line_error(code, err) and "No space left" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no artifact, no temp dir


def test_a_failed_replace_keeps_the_old_artifact(capsys, checkpoint, tmp_path, monkeypatch):
    import mimoc.targets.output as output

    out = tmp_path / "art"
    assert cli(capsys, "compile", str(checkpoint[1]), "-o", str(out))[0] == 0
    old = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(output.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(5, "EIO")))
    code, _, err = cli(capsys, "compile", str(checkpoint[1]), "-o", str(out), "--force")
    assert one_line_error(code, err)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]


class Cumsum(nn.Module):
    def forward(self, H, y):
        return torch.cumsum(y @ H, dim=-1)


class OneInput(nn.Module):
    def forward(self, H):
        return H


class NanWeights(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        with torch.no_grad():
            self.fc.weight[0, 0] = float("nan")

    def forward(self, H, y):
        return self.fc(y @ H)


def _bad_inputs(tmp_path, checkpoint):
    cases = {}
    cases["unknown file"] = ([str(tmp_path / "missing.pt")], "no such file")
    pickled = tmp_path / "pickled.pt"
    torch.save(UnfoldedDetector(), pickled)
    cases["pickled module"] = ([str(pickled)], "torch.export.save")
    export_program(Cumsum(), tmp_path / "cumsum.pt2")
    cases["unsupported op"] = ([str(tmp_path / "cumsum.pt2")], "aten.cumsum")
    export_program(UnfoldedDetector(), tmp_path / "static.pt2", dynamic=False)
    cases["fixed shapes"] = ([str(tmp_path / "static.pt2")], "fixed batch or slot size")
    H = random_link(2, 4, batch=2, slot=3)[0]
    torch.export.save(torch.export.export(OneInput(), (H,)), tmp_path / "one.pt2")
    cases["wrong interface"] = ([str(tmp_path / "one.pt2")], "tensor inputs")
    export_program(NanWeights(), tmp_path / "nan.pt2")
    cases["nan weights"] = ([str(tmp_path / "nan.pt2")], "NaN or Inf")
    (tmp_path / "file").write_text("x")
    cases["output under a file"] = ([str(checkpoint), "-o", str(tmp_path / "file" / "art")],
                                    f"cannot write to '{tmp_path / 'file'}'")
    cases["output not writable"] = ([str(checkpoint), "-o", "/proc/mimoc-artifact"],
                                    "cannot write '/proc/mimoc-artifact'")
    cases["unknown pass"] = ([str(checkpoint), "--passes", "canonicalize,bogus"], "bogus")
    cases["bad dump"] = ([str(checkpoint), "--dump-after", "bogus"], "bogus")
    return cases


CASES = ["unknown file", "pickled module", "unsupported op", "fixed shapes", "wrong interface",
         "nan weights", "output under a file", "output not writable", "unknown pass",
         "bad dump"]


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, checkpoint):
    return _bad_inputs(tmp_path_factory.mktemp("bad"), checkpoint[1])


@pytest.mark.parametrize("case", CASES)
def test_bad_input_exits_2_with_one_line(capsys, bad_inputs, tmp_path, case):
    argv, message = bad_inputs[case]
    if "-o" not in argv:
        argv = [*argv, "-o", str(tmp_path / "art")]
    code, out, err = cli(capsys, "compile", *argv)
    assert one_line_error(code, err), err
    assert message in err and out == ""
    assert not (tmp_path / "art").exists()


def test_nan_checkpoint_is_refused(capsys, tmp_path):
    model = build_detector("detnet", **CONFIG)
    with torch.no_grad():
        model.blocks[0].fc1.weight[0, 0] = float("inf")
    save_detector(model, tmp_path / "inf.pt")
    code, _, err = cli(capsys, "compile", str(tmp_path / "inf.pt"), "-o", str(tmp_path / "o"))
    assert one_line_error(code, err) and "NaN or Inf" in err, err
    assert not (tmp_path / "o").exists()
