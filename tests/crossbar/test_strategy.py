"""Programming strategies of the channel arrays: the spec grammar, the schedule, the
simulator (verify, redundancy), the static-array cache and the strategy search."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from mimoc.cli import main
from mimoc.compiler.frontend import import_module
from mimoc.compiler.pipeline import run_pipeline
from mimoc.detectors import build_detector, save_detector
from mimoc.errors import ModelFileError, UsageError
from mimoc.hardware.devices import load_device
from mimoc.hardware.programming import program_with_verify
from mimoc.runtime.imc import IMCSchedule, load_schedule
from mimoc.studies.budget.accuracy import Loss
from mimoc.studies.strategy import search
from mimoc.targets.crossbar import lower
from mimoc.targets.crossbar.arrays import channel_clip, target_conductances
from mimoc.targets.crossbar.artifact import (
    build_schedule,
    read_schedule,
    with_strategy,
    write_artifact,
)
from mimoc.targets.crossbar.channel import program_matrix
from mimoc.targets.crossbar.config import CrossbarConfig
from mimoc.targets.crossbar.strategy import SINGLE, Strategy, parse_strategy
from mimoc.targets.crossbar.target import DEFAULT_PASSES


@pytest.mark.parametrize("text, want", [
    ("single", SINGLE),
    ("verify", Strategy(verify=True)),
    ("verify:tol=0.01,iters=20", Strategy(verify=True, tolerance=0.01, iterations=20)),
    ("redundancy:r=4", Strategy(redundancy=4)),
    ("verify:tol=0.02+r=2+clip=2.5+levels=32",
     Strategy(verify=True, tolerance=0.02, redundancy=2, clip_sigmas=2.5, levels=32)),
    ("tol=0.02", Strategy(verify=True, tolerance=0.02)),
    (" Levels=16 + r=2 ", Strategy(redundancy=2, levels=16)),
    ("clip=3", SINGLE),
])
def test_strategy_specs_parse_and_print_canonically(text, want):
    got = parse_strategy(text)
    assert got == want
    assert parse_strategy(got.spec) == got
    assert CrossbarConfig(strategy=text).strategy == got.spec


@pytest.mark.parametrize("text", ["", "bogus", "verify:r=2", "redundancy", "r=0", "r=two",
                                  "clip=0.1", "levels=1", "tol=1.5", "iters=0", "r=2+r=3",
                                  "verify:tol", "single:x=1", "r=2=3", "clip=nan"])
def test_bad_strategy_specs_are_one_line_usage_errors(text):
    with pytest.raises(UsageError) as info:
        parse_strategy(text)
    assert "\n" not in str(info.value) and "strategy" in str(info.value)


def test_levels_beyond_the_device_are_refused():
    fefet = load_device("fefet-jerry2017")
    with pytest.raises(UsageError, match="levels=64 is more than the 32 states"):
        parse_strategy("levels=64").channel_device(fefet)


@pytest.fixture(scope="module")
def detnet():
    torch.manual_seed(1)
    model = build_detector("detnet", nt=2, nr=4, modulation="qpsk", layers=2).eval()
    graph = run_pipeline(import_module(model), list(DEFAULT_PASSES) + [lower.PASS]).graph
    return model, graph


def _build(model, graph, device="fefet-jerry2017", **config):
    return build_schedule(graph, load_device(device), CrossbarConfig(mc_draws=4, **config),
                          model={"name": model.family, "config": model.config.to_dict()})


def test_default_strategy_records_nothing_new(detnet):
    model, graph = detnet
    plain, single = _build(model, graph), _build(model, graph, strategy="single")
    assert plain.files() == single.files()
    assert "strategy" not in plain.schedule and "strategy" not in plain.schedule["config"]
    assert "strategy" not in plain.schedule["programming"]["per_slot"]


def test_strategy_schedule_round_trip_and_schema(detnet, tmp_path):
    model, graph = detnet
    spec = "verify:tol=0.02+r=2"
    built = _build(model, graph, strategy=spec)
    # planning another strategy on a compiled schedule = compiling with it
    assert with_strategy(_build(model, graph), load_device("fefet-jerry2017"),
                         spec).files() == built.files()
    write_artifact(built, tmp_path / "xb")
    schedule = read_schedule(tmp_path / "xb")   # schema and cross-checks
    assert schedule["config"]["strategy"] == spec
    assert schedule["strategy"]["spec"] == spec and schedule["strategy"]["redundancy"] == 2
    counts = schedule["costs"]["per_slot"]["counts"]
    assert counts["verify_reads"] > 0 and counts["program_pulses"] > 0
    plain = _build(model, graph).schedule
    channel_cells = sum(2 * a["shape"][0] * a["shape"][1] for a in plain["arrays"]
                        if a["role"] == "channel")
    assert counts["cells"] == plain["peripherals"]["cells"] + channel_cells
    assert schedule["totals"]["per_slot_s_p99"] >= schedule["totals"]["per_slot_s"] * 0.999
    xb = load_schedule(tmp_path / "xb")
    assert xb.strategy == parse_strategy(spec)
    # a schedule whose recorded strategy disagrees with its config is refused
    damaged = json.loads((tmp_path / "xb" / "schedule.json").read_text())
    damaged["strategy"]["spec"] = "r=2"
    (tmp_path / "xb" / "schedule.json").write_text(json.dumps(damaged))
    with pytest.raises(ModelFileError, match="config.strategy"):
        read_schedule(tmp_path / "xb")


def _channel_W(batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 8, 4, generator=g, dtype=torch.float64) / 2 ** 0.5


def test_verify_meets_its_tolerance_and_times_are_the_loops():
    device = load_device("fefet-jerry2017")
    W = _channel_W(6)
    tiles = [("A", (0, 5), (0, 4)), ("B", (5, 8), (0, 4))]
    strategy = parse_strategy("verify:tol=0.02")
    out = program_matrix(W, tiles, device, strategy, torch.Generator().manual_seed(3))
    dev = strategy.channel_device(device)
    pos, neg = target_conductances(W, channel_clip(W), dev)
    assert all(float(v.sum()) == 0 for v in out.not_converged.values())
    bound = 2 * max(dev.verify_tolerance_us, dev.step_us / 2) + 1e-9
    assert float((out.dG - (pos - neg)).abs().max()) <= bound
    # replaying the verify loop with the same generator gives the same per-row times
    generator = torch.Generator().manual_seed(3)
    for tid, (a, b), (c, d) in tiles:
        sides = [program_with_verify(side[:, a:b, c:d].contiguous(), dev, generator)
                 for side in (pos, neg)]
        rows = torch.maximum(sides[0].row_time_s, sides[1].row_time_s)
        assert torch.equal(out.row_times[tid], rows)
        assert torch.allclose(out.times[tid], rows.sum(dim=-1), rtol=1e-12, atol=0)
    # and the open loop is far less accurate on the same device and matrices
    open_loop = program_matrix(W, tiles, device.with_c2c(0.02), SINGLE,
                               torch.Generator().manual_seed(3))
    assert float((open_loop.dG - (pos - neg)).abs().max()) > bound


def test_simulator_spends_the_verify_loops_time(detnet, tmp_path):
    model, graph = detnet
    write_artifact(_build(model, graph, strategy="verify"), tmp_path / "xb")
    xb = load_schedule(tmp_path / "xb")
    H, y = torch.randn(3, 8, 4) / 2 ** 0.5, torch.randn(3, 2, 8)
    result = xb.run(H, y, seed=2)
    per_tile = {}
    for program in xb.last_channel.values():
        per_tile.update(program.times)
    want = torch.stack([sum(per_tile[t] for t in g) for g in xb.groups]).amax(dim=0)
    assert torch.equal(result.programming_s, want)
    assert (result.programming_s > 0).all()


def test_redundancy_divides_the_error_variance():
    device = load_device("ftj-luo2022")
    W = _channel_W(400, seed=5) * 0.3      # well inside the range: clipping stays rare
    tiles = [("A", (0, 8), (0, 4))]
    errors = {}
    for r in (1, 4):
        strategy = Strategy(redundancy=r, clip_sigmas=6.0)
        out = program_matrix(W, tiles, device, strategy, torch.Generator().manual_seed(r))
        pos, neg = target_conductances(W, out.w_clip, strategy.channel_device(device))
        n = out.pulses.abs().double()
        exact = device.g_min_us + n * device.step_us
        ideal = torch.where(out.pulses >= 0, exact - device.g_min_us,
                            -(exact - device.g_min_us))
        errors[r] = float((out.dG - ideal).var())
        assert torch.equal(out.pulse_counts["A"], r * n.sum(dim=(-2, -1)))
    ratio = errors[1] / errors[4]
    assert 3.0 < ratio < 5.3, ratio


def test_static_arrays_are_cached_without_changing_results(detnet, tmp_path):
    model, graph = detnet
    write_artifact(_build(model, graph, device="ftj-luo2022"), tmp_path / "xb")
    H, y = torch.randn(4, 8, 4) / 2 ** 0.5, torch.randn(4, 3, 8)
    xb = load_schedule(tmp_path / "xb")
    first = xb.detect(H, y, seed=7)
    assert len(xb.static_cache) == 1
    again = xb.detect(H, y, seed=7)
    fresh = load_schedule(tmp_path / "xb").detect(H, y, seed=7)
    assert torch.equal(first, again) and torch.equal(first, fresh)
    assert len(xb.static_cache) == 1
    other = xb.detect(H, y, seed=8)
    assert len(xb.static_cache) == 2 and not torch.equal(first, other)
    # an engine reuses the same programmed static arrays
    engine_out = xb.engine(seed=7)(H, y, None)
    assert torch.equal(engine_out, load_schedule(tmp_path / "xb").engine(seed=7)(H, y, None))


# ---------------------------------------------------------------- the search

@pytest.fixture(scope="module")
def matched_filter():
    """DetNet-free tiny model: x_hat = H^T y through an identity MLP (a matched filter)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tiny_detector import TinyConfig, TinyDetector

    model = TinyDetector(TinyConfig(nt=2, nr=4, hidden=8, use_gate=False)).eval()
    eye = torch.eye(4)
    with torch.no_grad():
        model.mlp[0].weight.copy_(torch.cat([eye, -eye]))
        model.mlp[0].bias.zero_()
        model.mlp[2].weight.copy_(torch.cat([eye, -eye], dim=1))
        model.mlp[2].bias.zero_()
    graph = run_pipeline(import_module(model), list(DEFAULT_PASSES) + [lower.PASS]).graph
    built = build_schedule(graph, load_device("ftj-luo2022"), CrossbarConfig(mc_draws=4),
                           model={"name": "tiny", "config": {"nt": 2, "nr": 4,
                                                             "modulation": "qpsk"}})
    return built


def test_search_measures_and_records_the_frontier(matched_filter):
    device = load_device("ftj-luo2022")
    found = search.search_strategy(matched_filter, device, max_loss_db=30.0, target_ser=0.05,
                                   candidates=["single", "verify", "r=2"], max_symbols=2000,
                                   budget_s=1e-3)
    record = found.built.schedule["strategy_search"]
    assert [e["spec"] for e in record["frontier"]] == ["single", "verify", "r=2"]
    assert all("snr_loss_db" in e for e in record["frontier"])
    rows = {e["spec"]: e for e in record["frontier"]}
    # open loop on the FTJ (5.5 steps of noise per pulse) loses far more than verify
    assert rows["verify"]["snr_loss_db"] is not None and rows["verify"]["feasible"]
    assert rows["single"]["snr_loss_db"] is None or \
        rows["single"]["snr_loss_db"] > rows["verify"]["snr_loss_db"]
    feasible = [c for c in found.candidates if rows[c.spec]["feasible"]]
    assert all(rows[c.spec]["snr_loss_db"] is not None
               and rows[c.spec]["snr_loss_db"] <= 30.0 for c in feasible)
    assert found.chosen is min(feasible, key=lambda c: c.rank())
    assert record["chosen"] == found.chosen.spec == found.built.schedule["config"].get(
        "strategy", "single")


@pytest.mark.slow
def test_search_on_ray_workers_records_the_serial_frontier(matched_filter):
    """Candidates go to the workers as artifact files, the reference as the first one's
    program on the ideal device: every number of the record is the serial run's."""
    pytest.importorskip("ray")
    device = load_device("ftj-luo2022")
    # the matched filter floors near SER 0.08: 0.2 it crosses whatever the draws
    kwargs = dict(max_loss_db=3.0, target_ser=0.2, candidates=["single", "verify", "r=2"],
                  max_symbols=3000, budget_s=1e-3)
    serial = search.search_strategy(matched_filter, device, **kwargs)
    parallel = search.search_strategy(matched_filter, device, workers=2, **kwargs)
    record = serial.built.schedule["strategy_search"]
    assert parallel.built.schedule["strategy_search"] == record
    assert len(record["grid_db"]) > 1 and record["chosen"] == parallel.chosen.spec
    with pytest.raises(UsageError, match="workers"):
        search.search_strategy(matched_filter, device, workers=0, **kwargs)


def test_search_picks_the_cheapest_feasible(matched_filter, monkeypatch):
    device = load_device("ftj-luo2022")
    losses = {"single": 3.0, "r=2": 0.3, "verify": 0.1, "verify+r=2": 0.05}

    def fake_measure(simulated, *args, **kwargs):
        for c in simulated:
            c.loss = Loss(losses[c.spec], (losses[c.spec] - 0.1, losses[c.spec] + 0.1),
                          (-1.0, 3.0))

    monkeypatch.setattr(search, "_measure", fake_measure)
    kwargs = dict(max_loss_db=0.5, candidates=list(losses))
    # r=2 programs as fast as single (open loop) and is within the loss: cheapest feasible
    assert search.search_strategy(matched_filter, device, **kwargs).chosen.spec == "r=2"
    # with a tighter loss only the verify candidates remain: the cheaper of the two
    found = search.search_strategy(matched_filter, device, **{**kwargs, "max_loss_db": 0.2})
    assert found.chosen.spec == "verify"
    rows = {e["spec"]: e for e in found.built.schedule["strategy_search"]["frontier"]}
    assert rows["verify"]["feasible"] and not rows["r=2"]["feasible"]
    # a budget below every verify slot leaves nothing feasible: one line, exit 2 in the CLI
    fastest_verify = min(c.slot_high_s for c in found.candidates if "verify" in c.spec)
    with pytest.raises(UsageError, match="no programming strategy keeps"):
        search.search_strategy(matched_filter, device, budget_s=fastest_verify * 0.5,
                               **{**kwargs, "max_loss_db": 0.2})


def test_cli_strategy_flags_and_inspect(tmp_path, capsys, monkeypatch):
    torch.manual_seed(0)
    model = build_detector("detnet", nt=2, nr=4, modulation="qpsk", layers=1)
    save_detector(model, tmp_path / "d.pt")
    out = tmp_path / "xb"
    assert main(["compile", str(tmp_path / "d.pt"), "--target", "crossbar", "--device",
                 "fefet-jerry2017", "--mc-draws", "2", "--strategy", "verify+r=2",
                 "-o", str(out)]) == 0
    assert "channel strategy verify+r=2" in capsys.readouterr().out
    assert main(["inspect", str(out)]) == 0
    assert "strategy verify+r=2" in capsys.readouterr().out
    bad = [["--strategy", "r=x"], ["--strategy", "levels=64"],
           ["--budget-us", "-1"], ["--max-loss-db", "nan"], ["--target-ser", "2"],
           ["--budget-us", "100", "--strategy", "verify"]]
    for flags in bad:
        code = main(["compile", str(tmp_path / "d.pt"), "--target", "crossbar", "--device",
                     "fefet-jerry2017", "-o", str(tmp_path / "bad"), *flags])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1, (flags, err)
        assert not (tmp_path / "bad").exists()
    code = main(["compile", str(tmp_path / "d.pt"), "--budget-us", "100", "-o",
                 str(tmp_path / "bad")])
    assert code == 2 and "--target crossbar" in capsys.readouterr().err

    # a searched artifact: inspect shows the frontier (the search itself stubbed: fast)
    def fake_measure(simulated, *args, **kwargs):
        for c in simulated:
            c.loss = Loss(0.2 if "verify" in c.spec else 2.0, (0.0, 0.4), (-1.0, 2.0))

    monkeypatch.setattr(search, "_measure", fake_measure)
    monkeypatch.setattr(search, "DEFAULT_CANDIDATES", ("single", "verify"))
    searched = tmp_path / "searched"
    assert main(["compile", str(tmp_path / "d.pt"), "--target", "crossbar", "--device",
                 "fefet-jerry2017", "--mc-draws", "2", "--budget-us", "100",
                 "--max-loss-db", "0.5", "-o", str(searched)]) == 0
    assert "chosen verify" in capsys.readouterr().out
    assert main(["inspect", str(searched)]) == 0
    text = capsys.readouterr().out
    assert "strategy search" in text and "chosen" in text and "single" in text
    info = json.loads((searched / "schedule.json").read_text())
    assert info["config"]["strategy"] == "verify"
    assert {e["spec"] for e in info["strategy_search"]["frontier"]} == {"single", "verify"}


def test_imc_schedule_from_memory_shares_the_static_cache(detnet):
    model, graph = detnet
    built = _build(model, graph)
    cache: dict = {}
    a = IMCSchedule("<a>", schedule=built.schedule, arrays=built.arrays, static_cache=cache)
    other = with_strategy(built, load_device("fefet-jerry2017"), "r=2")
    b = IMCSchedule("<b>", schedule=other.schedule, arrays=other.arrays, static_cache=cache)
    H, y = torch.randn(2, 8, 4) / 2 ** 0.5, torch.randn(2, 2, 8)
    a.detect(H, y, seed=1)
    b.detect(H, y, seed=1)
    assert len(cache) == 1
    assert b.strategy.redundancy == 2 and dataclasses.is_dataclass(b.strategy)
    assert np.isfinite(b.detect(H, y, seed=1).numpy()).all()


def test_budget_targets_take_a_strategy_or_search(tmp_path, monkeypatch):
    from mimoc.studies import budget

    specs = budget.parse_targets("crossbar:ftj-luo2022@search,crossbar:fefet-jerry2017@tol=0.02"
                                 ",crossbar:rram-zeng2023")
    assert [(s.device, s.strategy) for s in specs] == [
        ("ftj-luo2022", "search"), ("fefet-jerry2017", "verify:tol=0.02"),
        ("rram-zeng2023", None)]
    with pytest.raises(UsageError, match="bad --strategy"):
        budget.parse_targets("crossbar:ftj-luo2022@bogus")

    def fake_measure(simulated, *args, **kwargs):  # the search's own simulation: tested above
        for c in simulated:
            c.loss = Loss(0.1 if c.spec == "verify" else 5.0, (0.0, 0.2), (-1.0, 2.0))

    monkeypatch.setattr(search, "_measure", fake_measure)
    monkeypatch.setattr(search, "DEFAULT_CANDIDATES", ("single", "verify"))
    torch.manual_seed(0)
    model = build_detector("detnet", nt=2, nr=4, modulation="qpsk", layers=1).eval()
    save_detector(model, tmp_path / "d.pt")
    keep = tmp_path / "keep"
    report = budget.run_budget(tmp_path / "d.pt", ["crossbar:fefet-jerry2017@search"], slot=7,
                               snr_db=6.0, ser_symbols=500, min_time=0.01, calls=20,
                               max_time=2.0, workdir=keep)
    settings = report.target("crossbar:fefet-jerry2017@search").settings
    assert settings["strategy"] == "verify"
    schedule = read_schedule(keep / "crossbar-fefet-jerry2017-search")
    assert schedule["strategy_search"]["chosen"] == "verify"
