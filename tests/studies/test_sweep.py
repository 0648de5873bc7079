"""`mimoc sweep`: the spec file, the journal, resume after an interruption (serial runs;
tests/test_parallel.py runs the same on Ray)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from json_docs import curves_by_name

from mimoc.cli import main
from mimoc.errors import UsageError
from mimoc.studies.sweep import load_spec, run_sweep
from mimoc.studies.sweep.run import JOURNAL, RESULTS
from mimoc.validation import validate_output

ROOT = Path(__file__).resolve().parents[2]
DETNET = ROOT / "examples" / "models" / "detnet_8x16_qpsk.pt"

CLASSICAL = """\
detectors = ["zf", "mmse"]
snr = "0:3:6"
[link]
nt = 2
nr = 3
slot = 2
[run]
seed = 4
max_symbols = 4000
min_errors = 30
batch = 40
"""


def write(tmp_path: Path, text: str, name: str = "sweep.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


class Interrupt(Exception):
    pass


def test_an_interrupted_sweep_resumes_to_the_uninterrupted_results(tmp_path):
    spec = load_spec(write(tmp_path, CLASSICAL))
    whole = run_sweep(spec, tmp_path / "whole", plots=False)
    seen = []

    def stop_after_five(unit):
        seen.append(unit)
        if len(seen) == 5:
            raise Interrupt

    with pytest.raises(Interrupt):
        run_sweep(spec, tmp_path / "cut", on_unit=stop_after_five, plots=False)
    assert not (tmp_path / "cut" / RESULTS).exists()
    assert len((tmp_path / "cut" / JOURNAL).read_text().splitlines()) == 5
    rerun = []
    resumed = run_sweep(spec, tmp_path / "cut", resume=True, on_unit=rerun.append, plots=False)
    assert resumed == whole
    assert (tmp_path / "cut" / RESULTS).read_text() == (tmp_path / "whole" / RESULTS).read_text()
    done = {(u.snr_db, u.batch) for u in seen}
    assert done.isdisjoint((u.snr_db, u.batch) for u in rerun)  # journaled units not rerun


def test_a_journal_line_cut_short_reruns_its_unit_and_a_journal_needs_resume(tmp_path):
    spec = load_spec(write(tmp_path, CLASSICAL))
    whole = run_sweep(spec, tmp_path / "out", plots=False)
    journal = tmp_path / "out" / JOURNAL
    lines = journal.read_text().splitlines()
    journal.write_text("\n".join(lines[:3]) + "\n" + lines[3][:25])  # killed mid-write
    with pytest.raises(UsageError, match="--resume"):
        run_sweep(spec, tmp_path / "out", plots=False)
    rerun = []
    assert run_sweep(spec, tmp_path / "out", resume=True, on_unit=rerun.append,
                     plots=False) == whole
    assert len(rerun) == len(lines) - 3


def test_a_changed_sweep_does_not_reuse_old_units(tmp_path):
    run_sweep(load_spec(write(tmp_path, CLASSICAL)), tmp_path / "out", plots=False)
    changed = load_spec(write(tmp_path, CLASSICAL.replace("seed = 4", "seed = 5")))
    rerun = []
    run_sweep(changed, tmp_path / "out", resume=True, on_unit=rerun.append, plots=False)
    assert rerun  # another seed: other draws, nothing reused


def test_each_artifact_is_compiled_once_and_curves_match_mimoc_ber(tmp_path, capsys):
    text = f"""models = ["{DETNET}"]
targets = ["pytorch", "onnx"]
snr = [2]
[link]
slot = 1
[run]
max_symbols = 1600
min_errors = 10
batch = 50
"""
    spec_path = write(tmp_path, text)
    assert main(["sweep", str(spec_path), "-o", str(tmp_path / "out"), "--workers", "1",
                 "--no-plots"]) == 0
    assert "detnet_8x16_qpsk/onnx-fp32" in capsys.readouterr().out
    document = validate_output("sweep", json.loads((tmp_path / "out" / RESULTS).read_text()))
    assert document["command"] == ["mimoc", "sweep", str(spec_path), "-o",
                                   str(tmp_path / "out"), "--workers", "1", "--no-plots"]
    assert len(list((tmp_path / "out" / "artifacts").iterdir())) == 1
    curves = curves_by_name(document["jobs"][0]["result"])
    artifact = tmp_path / "out" / "artifacts" / document["jobs"][0]["artifacts"][
        "detnet_8x16_qpsk/onnx-fp32"]
    assert main(["ber", "--detector", f"{DETNET},{artifact}", "--snr", "2", "--json",
                 "--max-symbols", "1600", "--min-errors", "10", "--batch", "50",
                 "--slot", "1", "--no-progress"]) == 0
    ber = curves_by_name(json.loads(capsys.readouterr().out))
    assert [p["errors"] for p in ber[str(DETNET)]] == \
        [p["errors"] for p in curves["detnet_8x16_qpsk/pytorch"]]
    assert [p["errors"] for p in ber[str(artifact)]] == \
        [p["errors"] for p in curves["detnet_8x16_qpsk/onnx-fp32"]]


@pytest.mark.parametrize("text, message", [
    ("detectors = ['zf']\nspeed = 3\n", "unknown key"),
    ("detectors = ['zf']\ntargets = ['gpu']\n", "sweep target 'gpu'"),
    ("models = ['missing.pt']\n", "not found"),
    ("snr = [0]\n", "no models and no detectors"),
    ("detectors = ['zf']\nsnr = '0:-1:4'\n", "never reaches 4"),
    ("detectors = ['zf']\nsnr = '0,x'\n", "not a number"),
    ("detectors = ['zf']\nsnr = [0, 0.0]\n", "more than once"),
    ("detectors = ['zf']\n[run]\nbatch_size = 5\n", "'batch_size' is now 'batch'"),
    ("detectors = ['zf']\n[run]\nbatch = 0\n", "batch must be an integer >= 1"),
    ("detectors = ['zf']\n[link]\nslot = 1.5\n", "slot must be an integer"),
    ("detectors = ['zf']\nc2c = [0.5, 2]\n", "fractions"),
    ("detectors = ['zf']\n[run]\nspeed = 1\n", r"\[run\] takes only"),
    ("detectors = [zf\n", "not valid TOML"),
])
def test_bad_sweep_files_are_one_line_usage_errors(tmp_path, text, message):
    with pytest.raises(UsageError, match=message):
        load_spec(write(tmp_path, text))


def test_a_json_sweep_file_reads_like_toml(tmp_path):
    as_json = load_spec(write(tmp_path, json.dumps(
        {"detectors": ["zf", "mmse"], "snr": "0:3:6", "link": {"nt": 2, "nr": 3, "slot": 2},
         "run": {"seed": 4, "max_symbols": 4000, "min_errors": 30, "batch": 40}}),
        "sweep.json"))
    assert as_json.to_dict() == load_spec(write(tmp_path, CLASSICAL)).to_dict()


def test_crossbar_curves_share_one_compile_and_their_noise_is_seeded_per_unit(tmp_path):
    import torch

    from mimoc.detectors import build_detector, save_detector
    from mimoc.runtime.imc import load_schedule
    from mimoc.sim.ber import Unit, point_seed, run_unit
    from mimoc.sim.system import MIMOSystem

    torch.manual_seed(0)
    save_detector(build_detector("detnet", nt=2, nr=3, modulation="qpsk", layers=1),
                  tmp_path / "tiny.pt")
    spec = load_spec(write(tmp_path, 'models = ["tiny.pt"]\ntargets = ["crossbar"]\n'
                                     'arrays = ["8x8"]\nc2c = [0, 0.03]\nsnr = [4]\n'
                                     "[run]\nmax_symbols = 400\nbatch = 50\n"))
    document = run_sweep(spec, tmp_path / "out", plots=False)
    artifacts = document["jobs"][0]["artifacts"]
    assert sorted(artifacts) == ["tiny/crossbar-8x8@c2c=0", "tiny/crossbar-8x8@c2c=0.03"]
    assert len(set(artifacts.values())) == 1 == len(list((tmp_path / "out" /
                                                          "artifacts").iterdir()))
    # the programming noise of a unit does not depend on what the engine ran before
    system = MIMOSystem(nt=2, nr=3, modulation="qpsk")
    engine = load_schedule(tmp_path / "out" / "artifacts" / artifacts[
        "tiny/crossbar-8x8@c2c=0.03"]).engine(c2c=0.03, seed=0)
    unit = Unit(0, 4.0, 3, 50, point_seed(0, 4.0, 3))
    first = run_unit({"xbar": engine}, system, unit)
    run_unit({"xbar": engine}, system, Unit(0, 4.0, 0, 50, point_seed(0, 4.0, 0)))
    assert run_unit({"xbar": engine}, system, unit) == first


@pytest.mark.slow  # a child process and 800 units, three times over: ~10 s on a quiet machine
def test_ctrl_c_on_the_cli_then_resume_writes_the_uninterrupted_results(tmp_path, capsys):
    import os
    import signal
    import subprocess
    import sys
    import time

    spec = write(tmp_path, CLASSICAL.replace("min_errors = 30", "min_errors = 1000000")
                 .replace("batch = 40", "batch = 5"))  # 4 x 200 small units
    argv = ["sweep", str(spec), "-o", str(tmp_path / "cut"), "--workers", "1", "--no-plots"]
    script = ("import signal, sys\nfrom mimoc.cli import main\n"
              # a shell's background job starts with SIGINT ignored, and so would this child
              "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
              f"raise SystemExit(main({argv!r}))\n")
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    journal = tmp_path / "cut" / JOURNAL
    deadline = time.monotonic() + 120
    while (not journal.exists() or len(journal.read_text().splitlines()) < 5) \
            and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 130 and err.endswith("mimoc: interrupted\n"), err
    assert not (tmp_path / "cut" / RESULTS).exists()
    assert main([*argv, "--resume"]) == 0
    resumed = (tmp_path / "cut" / RESULTS).read_text()
    assert json.loads(resumed)["command"] == ["mimoc", *argv]  # recorded without --resume
    (tmp_path / "cut" / RESULTS).rename(tmp_path / "resumed.json")
    # the same command uninterrupted (started over in the same folder): the same bytes
    assert main([*argv, "--force"]) == 0
    whole = json.loads((tmp_path / "cut" / RESULTS).read_text())
    assert whole.pop("command") == ["mimoc", *argv, "--force"]
    assert {**json.loads(resumed), "command": None} == {**whole, "command": None}


def test_the_sweep_keys_default_like_the_flags():
    from mimoc.commands import flags
    from mimoc.sim.ber import DEFAULT_MAX_SYMBOLS
    from mimoc.studies.sweep.spec import LINK_DEFAULTS, RUN_DEFAULTS

    assert LINK_DEFAULTS["slot"] == flags.CONCEPTS["slot"].default("ber") == 14
    assert RUN_DEFAULTS["seed"] == flags.CONCEPTS["seed"].default("ber")
    assert RUN_DEFAULTS["max_symbols"] == DEFAULT_MAX_SYMBOLS
    assert RUN_DEFAULTS["batch"] == flags.CONCEPTS["batch"].default("ber")
    assert load_spec_text("detectors = ['zf']\nsnr = '-4:2:0'\n").snr == [-4.0, -2.0, 0.0]


def load_spec_text(text: str):
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        return load_spec(write(Path(folder), text))


def test_cli_json_is_results_json_and_the_output_policy(tmp_path, capsys):
    spec = write(tmp_path, CLASSICAL)
    out = tmp_path / "out"
    argv = ["sweep", str(spec), "-o", str(out), "--workers", "1", "--no-plots",
            "--no-progress"]
    assert main([*argv, "--json"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1  # one JSON line, no table
    document = validate_output("sweep", json.loads(printed))
    assert document == json.loads((out / RESULTS).read_text())
    assert list(document)[:3] == ["schema", "mimoc_version", "command"]
    assert document["schema"] == "mimoc-sweep/1"
    assert document["sweep"]["link"]["slot"] == 2 and document["sweep"]["run"]["batch"] == 40
    table = (out / "results.txt").read_text()
    assert table.splitlines()[0].split() == ["link", "curve", "SNR[dB]", "SER", "BER",
                                             "errors", "symbols"]
    assert not any(line != line.rstrip() for line in table.splitlines())
    before = (out / RESULTS).read_bytes()
    for extra, message in (([], "--resume to continue it, --force to start over"),
                           (["--resume", "--force"], "give one of them")):
        assert main([*argv, *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    assert (out / RESULTS).read_bytes() == before  # nothing destroyed
    # the spec's own folder is never the output, not even with --force
    assert main(["sweep", str(spec), "-o", str(tmp_path), "--workers", "1", "--force"]) == 2
    assert "holds the input" in capsys.readouterr().err and spec.exists()
    assert main([*argv, "--force"]) == 0
    assert "results written to" in capsys.readouterr().out
    assert json.loads((out / RESULTS).read_bytes())["sweep"] == document["sweep"]
