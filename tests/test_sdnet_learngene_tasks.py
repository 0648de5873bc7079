"""benchmarks/sdnet_learngene.py over several held-out tasks: paired statistics, the
per-task and across-task summaries, and the per-task cache that --resume reuses."""

from __future__ import annotations

import json

import pytest
import torch
from script_loader import ROOT, loaded_script

from mimoc.detectors.checkpoint import save_detector
from mimoc.detectors.sdnet import SDNet, SDNetConfig
from mimoc.sim import ber
from mimoc.sim.system import MIMOSystem

SCRIPT = ROOT / "benchmarks" / "sdnet_learngene.py"
GENE = ROOT / "examples" / "models" / "sdnet_8x32_qpsk_25db_learngene.pt"


@pytest.fixture(scope="module")
def bench():
    with loaded_script(SCRIPT, "sdnet_learngene_bench") as module:
        yield module


def record(task_id: int, slot_errors: dict[str, list[int]], symbols_per_slot: int = 8,
           snr_db: float = 25.0) -> dict:
    """A hand-made task record at one SNR (what run_task returns)."""
    points = {}
    for name, errors in slot_errors.items():
        symbols = symbols_per_slot * len(errors)
        total = sum(errors)
        points[name] = [{"ser": total / symbols, "errors": total, "symbols": symbols,
                         "ser_ci": [0.9 * total / symbols, 1.1 * total / symbols]}]
    return {"task_id": task_id, "task": f"task:{task_id}/frozen", "snr_db": [snr_db],
            "points": points, "slot_errors": {n: [e] for n, e in slot_errors.items()}}


def test_paired_verdicts_and_ratios(bench):
    g = torch.Generator().manual_seed(0)
    lmmse = torch.randint(0, 4, (400,), generator=g).tolist()
    fewer = [max(0, e - 1) for e in lmmse]
    more = [e + 1 for e in lmmse]
    r = record(1000, {"SDNet a": fewer, "SDNet b": more, "SDNet c": lmmse, "LMMSE": lmmse,
                      "SDNet z": [0] * 400, "ZF": [0] * 400})
    better = bench.paired(r, 0, "SDNet a", "LMMSE")
    assert better.verdict == "better" and better.ratio < 1 and better.ratio_ci[1] < 1
    assert bench.paired(r, 0, "SDNet b", "LMMSE").verdict == "worse"
    same = bench.paired(r, 0, "SDNet c", "LMMSE")
    assert same.verdict == "tie" and same.ratio == 1.0 and same.ratio_ci == (1.0, 1.0)
    assert same.diff_ci == (0.0, 0.0)  # the same slots: the paired difference is exactly 0
    none = bench.paired(r, 0, "SDNet z", "ZF")
    assert none.verdict == "tie (no errors)" and none.ratio is None and none.ratio_ci is None
    assert "0 vs 0 errors" in bench.vs_lmmse_cell(none)
    low = record(1000, {"SDNet a": fewer, "LMMSE": lmmse}, snr_db=-5.0)  # --snr 0 evaluates -5
    assert bench.paired(low, 0, "SDNet a", "LMMSE").verdict == "better"


def test_geometric_mean_over_tasks_skips_tasks_without_errors(bench):
    g = torch.Generator().manual_seed(1)
    base = (torch.randint(0, 3, (300,), generator=g) + 1).tolist()
    tasks = [record(1000, {"SDNet a": [2 * e for e in base], "SDNet b": base}),
             record(1001, {"SDNet a": base, "SDNet b": [2 * e for e in base]}),
             record(1002, {"SDNet a": [4 * e for e in base], "SDNet b": base}),
             record(1003, {"SDNet a": [0] * 300, "SDNet b": [0] * 300})]
    mean, (lo, hi), used = bench.geometric_mean_ratio(tasks, 0, "SDNet a", "SDNet b")
    assert mean == pytest.approx((2 * 0.5 * 4) ** (1 / 3))
    assert lo <= mean <= hi and hi - lo < 0.1  # exact multiples: only rounding spreads it
    assert used == ["task:1000/frozen", "task:1001/frozen", "task:1002/frozen"]
    assert bench.geometric_mean_ratio(tasks[3:], 0, "SDNet a", "SDNet b") is None


def test_slot_recorder_keeps_the_engines_numbers(bench):
    system = MIMOSystem(2, 4, "qpsk")
    c = system.constellation
    detectors = {"zf": ber.classical("zf", c), "lmmse": ber.classical("lmmse", c)}
    plain = ber.simulate(detectors, system, [6.0], seed=11, max_symbols=800, min_errors=800)
    recorder = bench.SlotRecorder(detectors, system)
    kept = ber.simulate(detectors, system, [6.0], seed=11, max_symbols=800, min_errors=800,
                        executor=recorder)
    per_slot = recorder.slot_errors(0)
    for name in detectors:
        assert kept.curves[name][0] == plain.curves[name][0]
        assert len(per_slot[name]) == plain.curves[name][0].slots == 400
        assert sum(per_slot[name]) == plain.curves[name][0].errors > 0


def test_tasks_option_refuses_tasks_that_are_not_held_out(bench, capsys):
    assert bench.parse_tasks("1004,1000") == (1004, 1000)
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--tasks", "3"])
    assert exit_info.value.code == 2
    assert "not held out" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--snr", "0"])  # the wide regime spans an SNR range: no fixed SNR
    assert exit_info.value.code == 2
    assert "paper regimes only" in capsys.readouterr().err


@pytest.mark.skipif(not GENE.is_file(), reason="the 25 dB learngene example is not present")
def test_quick_run_writes_the_cache_and_resume_reuses_it(bench, tmp_path, capsys, monkeypatch):
    torch.manual_seed(0)  # an untrained collective is enough for the transfer arm's wiring
    collective = save_detector(SDNet(SDNetConfig(nt=8, nr=32, modulation="qpsk", nconv=6)),
                               tmp_path / "collective.pt", training={})
    argv = ["--regime", "paper", "--quick", "--tasks", "1001", "--cache", str(tmp_path / "c"),
            "--collective", str(collective)]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    assert "[task 1/1] task:1001/frozen trained" in out
    rows = [line for line in out.splitlines() if line.startswith("task:1001/frozen | 25 dB |")]
    assert len(rows) == 1 and len(rows[0].split(" | ")) == 3 + 3 + 2  # 3 arms, 2 ratios
    assert "across 1 task(s) x 3 SNRs = 3 cases" in out
    cached = json.loads((tmp_path / "c" / "task_1001.json").read_text())
    assert bench.RECORD_KEYS <= cached.keys() and cached["task"] == "task:1001/frozen"
    for name, points in cached["points"].items():
        assert [sum(e) for e in cached["slot_errors"][name]] == [p["errors"] for p in points]
        assert all(len(e) == 250 for e in cached["slot_errors"][name])  # 2,000 symbols / 8

    def no_training(*args, **kwargs):
        raise AssertionError("a cached task was trained again")

    monkeypatch.setattr(bench, "run_task", no_training)
    assert bench.main([*argv, "--resume"]) == 0
    resumed = capsys.readouterr().out
    assert "[task 1/1] task:1001/frozen from" in resumed
    assert [line for line in resumed.splitlines()
            if line.startswith("task:1001/frozen | 25 dB |")] == rows

    # other input files or a damaged record: the task is trained again
    other = save_detector(SDNet(SDNetConfig(nt=8, nr=32, modulation="qpsk", nconv=6)),
                          tmp_path / "other.pt", training={"other": 1})
    with pytest.raises(AssertionError, match="trained again"):
        bench.main([*argv[:-1], str(other), "--resume"])
    assert "other settings or input files" in capsys.readouterr().out
    (tmp_path / "c" / "task_1001.json").write_text("{not json")
    with pytest.raises(AssertionError, match="trained again"):
        bench.main([*argv, "--resume"])
    assert "unreadable" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--regime", "paper", "--snr-range", "5", "-5"], "finite LO < HI"),
    (["--regime", "paper", "--snr-range", "0", "0"], "finite LO < HI"),
    (["--regime", "paper", "--snr-range", "nan", "5"], "finite LO < HI"),
    (["--regime", "paper", "--snr-range", "-5"], "expected 2 arguments"),
    (["--snr-range", "-5", "5"], "paper regimes only"),
    (["--regime", "paper", "--snr", "0", "--snr-range", "-5", "5"], "not both"),
    (["--regime", "paper", "--steps", "0"], "positive count"),
])
def test_snr_range_refuses_a_bad_range(bench, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.skipif(not GENE.is_file(), reason="the 25 dB learngene example is not present")
def test_quick_run_over_an_snr_range(bench, tmp_path, capsys, monkeypatch):
    # the default cache and collective live in the temporary folder: point it at tmp_path
    # (no collective there, so only the learngene and scratch arms run)
    monkeypatch.setattr(bench.tempfile, "gettempdir", lambda: str(tmp_path))
    assert bench.main(["--regime", "paper", "--quick", "--tasks", "1002",
                       "--snr-range", "-5", "5", "--steps", "6"]) == 0
    out = capsys.readouterr().out
    assert "transfer-learning arm is skipped" in out
    assert "| detector         | -5 dB | 0 dB | 5 dB" in out
    cache = tmp_path / "mimoc_sdnet_learngene_paper_range-5to5db_6steps_quick" / "task_1002.json"
    settings = json.loads(cache.read_text())["settings"]
    assert settings["steps"] == 6  # --steps, not the regime's 300 (nor --quick's 4)
    assert settings["snr_train"] == [-5.0, 5.0] and settings["snr_eval"] == [-5.0, 0.0, 5.0]
    assert settings["csi"] == "ls:16@0"  # one pilot SNR in training: the middle
    rows = [line for line in out.splitlines() if line.startswith("task:1002/frozen | -5 dB |")]
    assert len(rows) == 1 and len(rows[0].split(" | ")) == 3 + 2 + 1  # 2 arms, 1 ratio
    assert "across 1 task(s) x 3 SNRs = 3 cases" in out
