"""Text output: the one table module, the tables each command prints (their cells still
carry the data), progress (k/N steps; nothing but the output when stderr is no terminal;
``--no-progress`` everywhere; the crossbar compile's bar through program-and-verify) and
the compile summary (the pass log only with ``-v``)."""

from __future__ import annotations

import json
import re

import pytest
import torch

import mimoc.api
import mimoc.progress
from mimoc.cli import build_parser, main
from mimoc.detectors import build_detector, save_detector
from mimoc.hardware.devices import load_device
from mimoc.progress import StepProgress
from mimoc.tables import markdown_table, text_table
from mimoc.targets.crossbar.programming import verify_many

CONFIG = dict(nt=2, nr=4, modulation="qpsk", layers=2, hidden=16, v_dim=4)


def cells(line: str) -> list[str]:
    """The cells of a text-table line (columns are two or more spaces apart)."""
    return re.split(r"\s{2,}", line.strip())


def row_of(text: str, first: str) -> list[str]:
    """The cells of the first table line of ``text`` whose first cell is ``first``."""
    return next(cells(line) for line in text.splitlines() if cells(line)[0] == first)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "detnet.pt"
    save_detector(build_detector("detnet", **CONFIG).eval(), path)
    return path


@pytest.fixture(scope="module")
def onnx_dir(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "art"
    mimoc.api.compile(checkpoint, out=out)
    return out


@pytest.fixture(scope="module")
def crossbar_dir(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("xbar") / "art"
    mimoc.api.compile(checkpoint, target="crossbar", out=out, array=(16, 16))
    return out


# -- the table module ----------------------------------------------------------------

def test_text_table_aligns_columns_and_blanks_missing_values():
    text = text_table([["mmse", "1,024", None], ["detnet-long", "7", 0.125]],
                      ["detector", "symbols", "ratio"], right={1}, indent="  ", rule=True)
    lines = text.splitlines()
    assert lines[0] == "  detector     symbols  ratio"
    assert set(lines[1].strip()) == {"-"} and len(lines[1]) == len(lines[0])
    assert lines[2] == "  mmse" + " " * 11 + "1,024"  # None: blank, no trailing spaces
    assert lines[3] == "  detnet-long" + " " * 8 + "7  0.125"
    assert text_table([], None) == ""


def test_markdown_table_aligns_marks_missing_and_escapes_pipes():
    lines = markdown_table([["a|b", None, "3"]], ["name", "note", "n"], right={2}).splitlines()
    assert [c.strip() for c in lines[0].strip("|").split("|")] == ["name", "note", "n"]
    assert lines[1].replace("-", "") == "|:|:|:|"  # left, left, right (---:)
    assert lines[1].endswith(":|")
    assert r"a\|b" in lines[2] and "\N{EM DASH}" in lines[2]


# -- each command's table carries its data ---------------------------------------------

def test_devices_table(capsys):
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    header = cells(out.splitlines()[0])
    row = row_of(out, "ftj-luo2022")
    assert row[header.index("states")] == str(load_device("ftj-luo2022").states)


def test_ber_table(capsys):
    argv = ["ber", "--detector", "mmse", "--nt", "2", "--nr", "4", "--mod", "qpsk", "--snr",
            "4", "--max-symbols", "2000", "--no-progress"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "\r" not in err
    lines = out.splitlines()
    header = cells(lines[1])
    row = row_of(out, "mmse")
    assert main([*argv, "--json"]) == 0
    point = json.loads(capsys.readouterr().out)["curves"][0]["points"][0]
    assert int(row[header.index("symbols")]) == point["symbols"]
    assert int(row[header.index("errors")]) == point["errors"]
    assert float(row[header.index("SER")]) == pytest.approx(point["ser"], rel=1e-3)


def test_inspect_tables(checkpoint, onnx_dir, crossbar_dir, capsys):
    assert main(["inspect", str(checkpoint)]) == 0
    text = capsys.readouterr().out
    assert main(["inspect", str(checkpoint), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)["checkpoint"]
    assert row_of(text, "total")[1] == f"{info['params']:,}"

    assert main(["inspect", str(onnx_dir)]) == 0
    text = capsys.readouterr().out
    manifest = json.loads((onnx_dir / "manifest.json").read_text())
    for p in manifest["passes"]:
        assert row_of(text, p["pass"])[1] == f"{p['nodes_before']} -> {p['nodes_after']}"

    assert main(["inspect", str(crossbar_dir)]) == 0
    text = capsys.readouterr().out
    schedule = json.loads((crossbar_dir / "schedule.json").read_text())
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if cells(line)[:2] == ["arrays", "tiles"])
    p = schedule["peripherals"]
    assert cells(lines[at + 1])[:3] == [str(p["arrays"]), str(p["tiles"]), str(p["cells"])]


def test_bench_tables_and_no_carriage_return(onnx_dir, crossbar_dir, capsys):
    assert main(["bench", str(onnx_dir), "--batches", "2", "--min-time", "0.01"]) == 0
    out, err = capsys.readouterr()
    assert "\r" not in err
    header = cells(next(line for line in out.splitlines() if line.startswith("path")))
    row = row_of(out, "mimoc")
    assert row[header.index("batch")] == "2" and row[header.index("latency/call")].endswith("us")
    assert main(["bench", str(crossbar_dir), "--batches", "1,2", "--min-time", "0.01",
                 "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert "\r" not in err
    assert [row_of(out, b)[0] for b in ("1", "2")] == ["1", "2"]


# -- progress --------------------------------------------------------------------------

def test_no_progress_is_accepted_by_every_long_running_command(checkpoint):
    parser = build_parser()
    model = str(checkpoint)
    for argv in (["train", "detnet", "-o", "x.pt"],
                 ["quantize", model, "--method", "minmax", "-o", "q.pt"],
                 ["compile", model, "-o", "out"], ["ber", "--detector", "mmse"],
                 ["budget", model], ["report", model, "-o", "rep"], ["bench", model]):
        assert parser.parse_args([*argv, "--no-progress"]).no_progress, argv[0]


def test_no_carriage_return_on_a_pipe(checkpoint, tmp_path, capsys):
    assert main(["compile", str(checkpoint), "-o", str(tmp_path / "a")]) == 0
    assert main(["budget", str(checkpoint), "--targets", "mmse,dsp-c6678", "--ser-symbols",
                 "0", "--min-time", "0.01", "--calls", "50"]) == 0
    out, err = capsys.readouterr()
    assert "\r" not in err and "\r" not in out
    assert row_of(out, "mmse")[0] == "mmse" and row_of(out, "dsp-c6678")[1] == "flops"


def test_step_progress_counts_steps_and_grows_its_total(monkeypatch, capsys):
    monkeypatch.setattr(mimoc.progress, "is_interactive", lambda stream=None: True)
    with StepProgress(2, desc="budget") as say:
        say("compiling onnx-cpu")
        say("timing onnx-cpu")
        assert (say.bar.n, say.bar.total) == (1, 2)
        say("one more point")  # not planned: the total grows, k never passes N
        assert (say.bar.n, say.bar.total) == (2, 3)
    assert say.bar.n == 3 and say.steps == 3
    err = capsys.readouterr().err
    assert "2/3" in err and "one more point" in err and "00:0" in err  # k/N, elapsed
    monkeypatch.setattr(mimoc.progress, "is_interactive", lambda stream=None: False)
    with StepProgress(2, desc="budget") as quiet:  # stderr is no terminal: silent
        quiet("x")
    assert capsys.readouterr().err == "" and quiet.steps == 1


def test_verify_reports_every_cell_as_it_finishes():
    device = load_device("ftj-luo2022")
    g = torch.Generator().manual_seed(0)
    full = device.g_min_us + torch.rand(3, 6, 7, generator=g, dtype=torch.float64) * \
        device.range_us
    targets = [full[0], full[1][:, :3], full[2][:4]]  # stacked with Gmin padding
    counts: list[int] = []
    with_bar = verify_many(targets, device, torch.Generator().manual_seed(1), counts.append)
    plain = verify_many(targets, device, torch.Generator().manual_seed(1))
    assert sum(counts) == sum(t.numel() for t in targets)  # padding not counted
    assert sum(1 for c in counts if c > 0) > 2  # round by round, not once at the end
    assert all(torch.equal(a.conductance_us, b.conductance_us)
               for a, b in zip(with_bar, plain, strict=True))


def test_crossbar_compile_bar_advances_through_program_and_verify(checkpoint, tmp_path,
                                                                   monkeypatch):
    bars = []
    real = mimoc.progress.progress_bar

    def spy(*args, **kwargs):
        bar = real(*args, **kwargs)
        updates: list[float] = []
        update = bar.update
        bar.update = lambda n=1: (updates.append(n), update(n))[1]
        bars.append((kwargs.get("desc"), bar, updates))
        return bar

    monkeypatch.setattr(mimoc.progress, "progress_bar", spy)
    monkeypatch.setattr(mimoc.progress, "is_interactive", lambda stream=None: True)
    mimoc.api.compile(checkpoint, target="crossbar", out=tmp_path / "x", array=(16, 16),
                      progress=True)
    desc, bar, updates = next(b for b in bars if b[0] == "verified static cells")
    schedule = json.loads((tmp_path / "x" / "schedule.json").read_text())
    static = schedule["programming"]["static"]["tiles"]
    assert bar.total == bar.n == sum(2 * t["rows"] * t["cols"] for t in static)
    assert sum(1 for n in updates if n > 0) > 2


# -- compile ---------------------------------------------------------------------------

def test_compile_prints_a_summary_and_the_pass_log_with_verbose(checkpoint, tmp_path, capsys):
    assert main(["compile", str(checkpoint), "-o", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert "['" not in out and "[B," in out  # the slot state's shapes, not list reprs
    assert "slot.onnx" in out and "detector.onnx" in out and " s -> " in out
    names = [p["pass"] for p in manifest["passes"]]
    assert not any(cells(line)[0] in names for line in out.splitlines())  # no pass log

    assert main(["compile", str(checkpoint), "-o", str(tmp_path / "b"), "-v"]) == 0
    out = capsys.readouterr().out
    assert "['" not in out
    for p in manifest["passes"]:
        assert row_of(out, p["pass"])[1] == f"{p['nodes_before']:,} -> {p['nodes_after']:,}"

    assert main(["compile", str(checkpoint), "-o", str(tmp_path / "c"), "--json"]) == 0
    artifact = json.loads(capsys.readouterr().out)["artifact"]
    assert [p["pass"] for p in artifact["passes"]] == names
