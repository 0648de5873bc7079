"""Crossbar target + IMC simulator: exactness with an ideal device (tiling forced), the
programming latency recomputed from arrays.npz, determinism, noise statistics, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from json_docs import curves_by_name, parse_output

from mimoc.cli import main
from mimoc.compiler.frontend import import_module
from mimoc.compiler.pipeline import run_pipeline
from mimoc.detectors import build_detector, save_detector
from mimoc.errors import UsageError
from mimoc.hardware.devices import load_device
from mimoc.runtime.imc import load_schedule
from mimoc.targets.crossbar import lower
from mimoc.targets.crossbar.artifact import build_schedule, read_arrays, write_artifact
from mimoc.targets.crossbar.config import CrossbarConfig, parse_array
from mimoc.targets.crossbar.target import DEFAULT_PASSES

FAMILIES = {
    "detnet": {"nt": 2, "nr": 4, "modulation": "qpsk", "layers": 2},
    "wesnet": {"nt": 2, "nr": 3, "modulation": "qpsk", "layers": 2},
    "sdnet": {"nt": 2, "nr": 3, "modulation": "qpsk", "nconv": 1, "channels": 3},
}


@pytest.fixture(scope="module")
def lowered():
    """Per family: (model, IR after the crossbar pipeline), imported once."""
    out = {}
    for family, config in FAMILIES.items():
        torch.manual_seed(1)
        model = build_detector(family, **config).eval()
        graph = import_module(model)
        passes = list(DEFAULT_PASSES) + [lower.PASS]
        out[family] = (model, run_pipeline(graph, passes).graph)
    return out


def _artifact(tmp_path, graph, model, device="fefet-jerry2017", **config):
    """Build and write an artifact (FeFET by default: its 0.5% C2C makes program-and-verify
    converge in few rounds, which keeps the tests fast)."""
    built = build_schedule(graph, load_device(device),
                           CrossbarConfig(mc_draws=4, **config),
                           model={"name": model.family, "config": model.config.to_dict()})
    path = tmp_path / f"xb{len(list(tmp_path.iterdir()))}"
    write_artifact(built, path)
    return path, built


@pytest.mark.parametrize("family", list(FAMILIES))
@settings(max_examples=2, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.integers(2, 7), cols=st.integers(2, 7),
       accumulation=st.sampled_from(["analog", "digital"]), batch=st.integers(1, 3),
       symbols=st.integers(1, 4))
def test_ideal_device_equals_model(lowered, tmp_path, family, rows, cols, accumulation,
                                   batch, symbols):
    model, graph = lowered[family]
    path, built = _artifact(tmp_path, graph, model, array=(rows, cols),
                            accumulation=accumulation)
    tiled = [m for m in built.schedule["matrices"] if m["row_tiles"] * m["col_tiles"] > 1]
    assert tiled, "the array size must force tiling"
    nr2, nt2 = graph.node("H").shape[1:]
    g = torch.Generator().manual_seed(rows * 10 + cols)
    H = torch.randn(batch, nr2, nt2, generator=g) / 2 ** 0.5
    y = torch.randn(batch, symbols, nr2, generator=g)
    with torch.no_grad():
        want = model(H, y)
    got = load_schedule(path).detect(H, y, ideal=True)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-5, rtol=0), (got - want).abs().max()


@settings(max_examples=2, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(nt=st.integers(1, 3), extra_rx=st.integers(0, 2), layers=st.integers(1, 2),
       rows=st.integers(2, 5), cols=st.integers(2, 5), seed=st.integers(0, 100))
def test_ideal_device_equals_random_detnet(tmp_path, nt, extra_rx, layers, rows, cols, seed):
    """Random DetNet sizes (imported each time) on random array sizes."""
    torch.manual_seed(seed)
    model = build_detector("detnet", nt=nt, nr=nt + extra_rx, modulation="qpsk",
                           layers=layers).eval()
    graph = run_pipeline(import_module(model), list(DEFAULT_PASSES) + [lower.PASS]).graph
    path, _ = _artifact(tmp_path, graph, model, array=(rows, cols))
    H = torch.randn(2, 2 * (nt + extra_rx), 2 * nt) / 2 ** 0.5
    y = torch.randn(2, 3, 2 * (nt + extra_rx))
    with torch.no_grad():
        want = model(H, y)
    got = load_schedule(path).detect(H, y, ideal=True)
    assert torch.allclose(got, want, atol=1e-5, rtol=0), (got - want).abs().max()


def test_detnet_channel_arrays_undo_gram(lowered):
    _, graph = lowered["detnet"]
    assert not any(n.op in ("Gram", "MatMul") for n in graph.nodes)
    sources = sorted(n.inputs[1] for n in graph.nodes if n.op == "CrossbarMVM"
                     and graph.node(n.inputs[1]).rate.name == "SLOT")
    # H^T y and the second stage of H^T (H x) read H; the first stage reads H^T
    assert set(sources) == {"H", next(s for s in sources if s != "H")}
    assert len(set(sources)) == 2


def _recomputed(arrays, groups, width, key):
    tile_times = {}
    for group in groups:
        for tile in group:
            pulses = np.abs(arrays[f"{tile}.{key}"].astype(np.int64))
            tile_times[tile] = pulses.max(axis=-1).sum(axis=-1) * width   # [draws]
    per_draw = np.max([np.sum([tile_times[t] for t in g], axis=0) for g in groups], axis=0)
    return per_draw


@pytest.mark.parametrize("policy", ["tile", "matrix", "serial"])
def test_programming_latency_recomputed_from_npz(lowered, tmp_path, policy):
    model, graph = lowered["detnet"]
    path, _ = _artifact(tmp_path, graph, model, array=(3, 3), write_parallel=policy)
    schedule = json.loads((path / "schedule.json").read_text())
    arrays = read_arrays(path)
    plan = schedule["programming"]["per_slot"]
    width = schedule["device"]["pulse_width_s"]
    channel_tiles = [a["id"] for a in schedule["arrays"] if a["role"] == "channel"]
    assert sorted(t for g in plan["groups"] for t in g) == sorted(channel_tiles)
    per_draw = _recomputed(arrays, plan["groups"], width, "pulses")
    assert per_draw.shape == (plan["draws"],)
    assert schedule["totals"]["programming_s_per_slot"] == pytest.approx(per_draw.mean(),
                                                                         rel=1e-12)
    assert plan["example_s"] == pytest.approx(per_draw[0], rel=1e-12)
    totals = schedule["totals"]
    assert totals["per_slot_s"] == pytest.approx(
        totals["programming_s_per_slot"] + totals["slot_compute_s"]
        + totals["slot_symbols"] * totals["symbol_s"])
    # static program-with-verify time from the per-row verify times
    static = schedule["programming"]["static"]
    row_sum = {t: np.max(arrays[f"{t}.verify_row_time_s"], axis=0).sum()
               for g in static["groups"] for t in g}
    want = max(sum(row_sum[t] for t in g) for g in static["groups"])
    assert totals["static_programming_s"] == pytest.approx(want, rel=1e-12)


def test_simulator_reports_programmed_time(lowered, tmp_path):
    model, graph = lowered["detnet"]
    path, _ = _artifact(tmp_path, graph, model, array=(4, 4))
    xb = load_schedule(path)
    H = torch.randn(3, 8, 4) / 2 ** 0.5
    result = xb.run(H, torch.randn(3, 2, 8), seed=0)
    width = xb.device.pulse_width_s
    P = xb.device.states
    expected = []
    for b in range(3):
        times = {}
        for m in xb.matrices.values():
            if m["role"] != "channel":
                continue
            W = H[b].double() if m["source"] == "H" else H[b].double().T
            w_clip = 3 * W.square().mean().sqrt()
            n = torch.round(W.abs() / w_clip * P).clamp(0, P)
            for tid in m["tiles"]:
                t = xb.tiles[tid]
                (r0, r1), (c0, c1) = t["rows"], t["cols"]
                times[tid] = float(n[r0:r1, c0:c1].amax(dim=-1).sum()) * width
        expected.append(max(times.values()))
    assert torch.allclose(result.programming_s, torch.tensor(expected, dtype=torch.float64))


def test_deterministic_artifact_and_simulation(lowered, tmp_path):
    model, graph = lowered["sdnet"]
    a, _ = _artifact(tmp_path, graph, model, array=(5, 4))
    b, _ = _artifact(tmp_path, graph, model, array=(5, 4))
    for name in ("schedule.json", "arrays.npz"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    xb = load_schedule(a)
    H, y = torch.randn(2, 6, 4), torch.randn(2, 3, 6)
    assert torch.equal(xb.detect(H, y, seed=5), xb.detect(H, y, seed=5))
    assert not torch.equal(xb.detect(H, y, seed=5), xb.detect(H, y, seed=6))


def test_channel_programming_noise_follows_sqrt_n(lowered, tmp_path):
    model, graph = lowered["detnet"]
    path, _ = _artifact(tmp_path, graph, model)
    xb = load_schedule(path)
    device = xb.device_for(0.02)
    m = next(m for m in xb.matrices.values() if m["role"] == "channel" and m["source"] == "H")
    rows, cols = m["rows"], m["cols"]
    # all entries equal magnitude -> sigma_h = |w|, w_clip = 3|w|, n = round(P / 3)
    W = torch.ones(4000, rows, cols, dtype=torch.float64)
    W[:, :, ::2] = -1.0
    programmed, _ = xb.program_channel(m, W, device, torch.Generator().manual_seed(0))
    dG = torch.cat([blk for _, _, blk, _ in programmed.row_tiles], dim=1)
    n = round(device.states / 3)
    signed = dG * W.sign()                    # the moving side minus Gmin of the other
    mean, std = float(signed.mean()), float(signed.std())
    assert mean == pytest.approx(n * device.step_us, rel=5e-3)
    assert std == pytest.approx(0.02 * device.range_us * n ** 0.5, rel=4e-2)


def _cli(args):
    return main(args)


def test_cli_compile_inspect_and_bad_inputs(tmp_path, capsys):
    torch.manual_seed(0)
    model = build_detector("detnet", **FAMILIES["detnet"])
    ckpt = tmp_path / "detnet.pt"
    save_detector(model, ckpt)
    out = tmp_path / "xb"
    assert _cli(["compile", str(ckpt), "--target", "crossbar", "--array", "8x8",
                 "--mc-draws", "4", "-o", str(out)]) == 0
    assert (out / "schedule.json").is_file() and (out / "arrays.npz").is_file()
    capsys.readouterr()
    assert _cli(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "programming" in text and "peripherals" in text
    assert _cli(["inspect", str(out), "--json"]) == 0
    info = parse_output("inspect", capsys.readouterr().out)
    assert info["kind"] == "crossbar" and info["artifact"]["totals"]["per_slot_s"] > 0
    for bad, needle in ((["--device", "no-such-device"], "unknown device"),
                        (["--array", "0x4"], "--array"), (["--array", "axb"], "--array"),
                        (["--array", "4x4x4"], "--array"), (["--slot", "0"], "--slot"),
                        (["--mc-draws", "0"], "mc_draws")):
        code = _cli(["compile", str(ckpt), "--target", "crossbar", *bad,
                     "-o", str(tmp_path / "bad")])
        err = capsys.readouterr().err.strip()
        assert code == 2 and needle in err and len(err.splitlines()) == 1, err
        assert not (tmp_path / "bad").exists()
    code = _cli(["compile", str(ckpt), "--device", "ftj-luo2022", "-o", str(tmp_path / "bad")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--target crossbar" in err and not (tmp_path / "bad").exists()
    # one BER curve per C2C level, on the same draws as the PyTorch model
    assert _cli(["ber", str(out), "--detector", str(ckpt), "--c2c", "0,0.03", "--snr", "10",
                 "--slot", "1", "--max-symbols", "64", "--json", "--no-progress"]) == 0
    data = parse_output("ber", capsys.readouterr().out)
    curves = curves_by_name(data)
    assert sorted(curves) == sorted([str(ckpt), f"{out}@c2c=0", f"{out}@c2c=0.03"])
    levels = [c["detector"].get("c2c") for c in data["curves"]
              if c["detector"]["kind"] == "artifact"]
    assert levels == [0.0, 0.03]
    assert all(points[0]["symbols"] == 64 for points in curves.values())
    assert _cli(["ber", str(out), "--c2c", "0,2", "--snr", "10"]) == 2
    assert "--c2c" in capsys.readouterr().err
    assert _cli(["ber", "--detector", "mmse", "--c2c", "0.01", "--snr", "10"]) == 2
    assert "crossbar" in capsys.readouterr().err
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code = _cli(["compile", str(ckpt), "--target", "crossbar", "-o", str(blocker / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "cannot write" in err, err


def test_array_flag_parsing():
    assert parse_array("12") == (12, 12)
    assert parse_array("128x64") == (128, 64)
    assert parse_array([8, 4]) == (8, 4)
    for bad in ("1x4", "4x", "x", "", "9000x4", True, 4.5):
        with pytest.raises(UsageError, match="--array"):
            parse_array(bad)


def test_channel_programming_matches_noise_aware_training_model(lowered, tmp_path):
    """The simulator programs channel arrays with the model noise-aware training uses
    (mimoc.detectors.noise_aware.program_channel): same mean and spread per entry."""
    from mimoc.detectors.noise_aware import program_channel

    model, graph = lowered["detnet"]
    path, _ = _artifact(tmp_path, graph, model)
    xb = load_schedule(path)
    device = xb.device_for(0.03)
    m = xb.matrices["H"]
    H = torch.randn(1, m["rows"], m["cols"], generator=torch.Generator().manual_seed(3),
                    dtype=torch.float64).expand(3000, -1, -1)
    programmed, _ = xb.program_channel(m, H, device, torch.Generator().manual_seed(0))
    ours = torch.cat([blk / k for _, _, blk, k in programmed.row_tiles], dim=1)
    theirs = program_channel(H, 0.03, device.states, torch.Generator().manual_seed(1))
    scale = float(3 * H[0].square().mean().sqrt())        # w_clip
    n = H.shape[0]
    standard_error = ((ours.var(0) + theirs.var(0)) / n).sqrt() + 1e-3 * scale
    assert ((ours.mean(0) - theirs.mean(0)).abs() <= 5 * standard_error).all()
    assert torch.allclose(ours.std(0), theirs.std(0), rtol=0.1, atol=0.01 * scale)
    assert float(ours.std(0).mean()) > 0.05 * scale        # the noise is really there


def test_damaged_artifacts_and_bad_inputs_are_refused(lowered, tmp_path):
    import shutil

    from mimoc.errors import ModelFileError

    model, graph = lowered["detnet"]
    path, _ = _artifact(tmp_path, graph, model, array=(8, 8))
    xb = load_schedule(path)
    with pytest.raises(UsageError, match="H"):
        xb.detect(torch.randn(2, 5, 4), torch.randn(2, 3, 8))
    with pytest.raises(UsageError, match="finite"):
        xb.detect(torch.full((1, 8, 4), float("nan")), torch.randn(1, 2, 8))
    with pytest.raises(UsageError, match="C2C"):
        xb.detect(torch.randn(1, 8, 4), torch.randn(1, 2, 8), c2c=1.5)
    for damage in ("truncate", "program", "npz"):
        bad = tmp_path / f"bad-{damage}"
        shutil.copytree(path, bad)
        if damage == "truncate":
            text = (bad / "schedule.json").read_text()
            (bad / "schedule.json").write_text(text[: len(text) // 2])
        elif damage == "program":
            schedule = json.loads((bad / "schedule.json").read_text())
            schedule["program"]["nodes"][3]["shape"] = [1, 2, 3]
            (bad / "schedule.json").write_text(json.dumps(schedule))
        else:
            (bad / "arrays.npz").write_bytes(b"not a zip")
        with pytest.raises(ModelFileError):
            load_schedule(bad)


def test_output_adc_quantises_to_its_resolution(lowered, tmp_path):
    model, graph = lowered["detnet"]
    path, built = _artifact(tmp_path, graph, model, array=(8, 8))
    xb = load_schedule(path)
    adc = next(n for n in xb.graph.nodes if n.op == "ADC" and n.name == xb.graph.outputs[0])
    step = adc.attrs["full_scale"] / (2 ** 3 - 1)
    H, y = torch.randn(4, 8, 4) / 2 ** 0.5, torch.randn(4, 3, 8)
    fine = xb.detect(H, y, c2c=0.0, seed=2, adc_bits=None)
    coarse = xb.detect(H, y, c2c=0.0, seed=2, adc_bits=4)
    levels = torch.round(coarse / step)
    assert torch.allclose(coarse, levels * step, atol=1e-6)          # on the 4-bit grid
    inside = fine.abs() <= adc.attrs["full_scale"]
    assert ((coarse - fine).abs()[inside] <= step / 2 + 1e-6).all()
    with pytest.raises(UsageError, match="adc_bits"):
        xb.detect(H, y, adc_bits=0)
