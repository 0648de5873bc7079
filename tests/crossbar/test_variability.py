"""Drift, read noise and device-to-device spread in the IMC simulator, each against a closed
form, seeded; and every one of them off (nothing drawn) for a profile that leaves them 0."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from mimoc.compiler.frontend import import_module
from mimoc.compiler.pipeline import run_pipeline
from mimoc.detectors import build_detector
from mimoc.errors import UsageError
from mimoc.hardware.devices import load_device
from mimoc.hardware.variability import d2d_ranges, drift_factor
from mimoc.runtime.imc import load_schedule
from mimoc.targets.crossbar import lower
from mimoc.targets.crossbar.artifact import build_schedule, write_artifact
from mimoc.targets.crossbar.config import CrossbarConfig
from mimoc.targets.crossbar.target import DEFAULT_PASSES


@pytest.fixture(scope="module")
def graph():
    torch.manual_seed(1)
    model = build_detector("detnet", nt=2, nr=4, modulation="qpsk", layers=2).eval()
    return run_pipeline(import_module(model), list(DEFAULT_PASSES) + [lower.PASS]).graph


def artifact(tmp_path, graph, **fields):
    device = dataclasses.replace(load_device("fefet-jerry2017"), **fields)
    built = build_schedule(graph, device, CrossbarConfig(mc_draws=2, array=(4, 4)))
    path = tmp_path / f"xb{len(list(tmp_path.iterdir()))}"
    write_artifact(built, path)
    return load_schedule(path)


def static_node(xb):
    node = next(n for n in xb.graph.nodes if n.op == "CrossbarMVM"
                and xb.matrices[n.attrs["matrix"]]["role"] == "static"
                and n.attrs["form"] in ("linear", "matmul"))
    return node, xb.matrices[node.attrs["matrix"]]


def test_drift_scales_the_static_mvm_by_the_power_law(tmp_path, graph):
    xb = artifact(tmp_path, graph, drift_nu=0.06, drift_t0_s=20.0)
    node, m = static_node(xb)
    x = torch.randn(5, m["rows"] - int(m["bias_row"]), generator=torch.Generator().manual_seed(2),
                    dtype=torch.float64)
    outs = {}
    for t in (None, 3600.0):
        static = xb.program_static(xb.device, torch.Generator().manual_seed(7), time_s=t)
        outs[t] = xb._mvm(node, x, static[m["id"]], m, None)
    factor = ((3600.0 + 20.0) / 20.0) ** -0.06
    torch.testing.assert_close(outs[3600.0], factor * outs[None], rtol=1e-12, atol=1e-12)
    static = xb.program_static(xb.device, torch.Generator().manual_seed(7), time_s=3600.0,
                               compensate_drift=True)    # the gain undoes uniform drift
    torch.testing.assert_close(xb._mvm(node, x, static[m["id"]], m, None), outs[None])


def test_drift_exponent_spread_matches_the_lognormal_mean(tmp_path, graph):
    xb = artifact(tmp_path, graph, drift_nu=0.1, drift_nu_std=0.02)
    t, r = 86_400.0, (86_400.0 + 20.0) / 20.0
    before = xb.program_static(xb.device, torch.Generator().manual_seed(3))
    after = xb.program_static(xb.device, torch.Generator().manual_seed(3), time_s=t)
    # squares = G+^2 + G-^2 with G+ (or G-) at Gmin for most cells; nu is Gaussian here
    # (its mean is 5 standard deviations above 0), so E[r^-2nu] = exp(-2 mu ln r + 2 s^2 ln^2 r)
    ratio = torch.cat([(a / b).reshape(-1) for m in before
                       for a, b in zip(after[m].squares, before[m].squares, strict=True)])
    want = math.exp(-2 * 0.1 * math.log(r) + 2 * 0.02 ** 2 * math.log(r) ** 2)
    assert float(ratio.mean()) == pytest.approx(want, rel=0.02)
    assert float(drift_factor(t, 0.1, 20.0)) == pytest.approx(r ** -0.1)


def test_read_noise_variance_matches_closed_form(tmp_path, graph):
    xb = artifact(tmp_path, graph, read_noise=0.05)
    node, m = static_node(xb)
    static = xb.program_static(xb.device, torch.Generator().manual_seed(4))
    rows = m["rows"] - int(m["bias_row"])
    x = torch.randn(1, rows, generator=torch.Generator().manual_seed(5),
                    dtype=torch.float64).expand(20_000, rows)
    noisy = xb._mvm(node, x, static[m["id"]], m, None, xb.device,
                    torch.Generator().manual_seed(6))
    clean = xb._mvm(node, x[:1], static[m["id"]], m, None)
    vec = torch.cat([x[:1], torch.ones(1, 1, dtype=x.dtype)], -1) if m["bias_row"] else x[:1]
    want = sum(0.05 ** 2 * (vec[:, r0:r1].square() @ sq) / k ** 2
               for (r0, r1, _, k), sq in zip(static[m["id"]].row_tiles,
                                             static[m["id"]].squares, strict=True))
    torch.testing.assert_close(noisy.mean(0, keepdim=True), clean, rtol=0, atol=0.05 *
                               float(want.max().sqrt()))
    torch.testing.assert_close(noisy.var(0, keepdim=True), want, rtol=0.05, atol=0)


def test_device_to_device_spread_draws_and_open_loop_remap(tmp_path, graph):
    dev = dataclasses.replace(load_device("rram-zeng2023"), d2d_g_spread=0.05)
    g_min, g_max = d2d_ranges(20_000, dev, torch.Generator().manual_seed(8))
    assert float(g_min.mean()) == pytest.approx(dev.g_min_us, rel=0.005)
    assert float(g_min.std()) == pytest.approx(0.05 * dev.g_min_us, rel=0.03)
    assert float(g_max.std()) == pytest.approx(0.05 * dev.g_max_us, rel=0.03)
    xb = artifact(tmp_path, graph, d2d_g_spread=0.1, c2c_potentiation=0.0)
    d2d = xb.draw_d2d(xb.device, torch.Generator().manual_seed(9))
    assert len(d2d) == len(xb.schedule["arrays"])
    m = next(mm for mm in xb.matrices.values() if mm["role"] == "channel")
    H = torch.randn(3, m["rows"], m["cols"], generator=torch.Generator().manual_seed(1),
                    dtype=torch.float64)
    nominal, _ = xb.program_channel(m, H, xb.device, torch.Generator().manual_seed(0))
    spread = xb.channel_d2d(nominal, m, xb.device, d2d)
    dev = xb.device
    tile = xb.tiles[m["tiles"][0]]
    c0, c1 = tile["cols"]
    (lo, hi) = d2d[tile["id"]]
    dG = nominal.row_tiles[tile["tile"][0]][2][..., c0:c1]
    scale = (hi - lo) / dev.range_us                    # per side: (G+, G-)
    want = (lo[0] - lo[1]) + scale[0] * dG.clamp_min(0) - scale[1] * (-dG).clamp_min(0)
    torch.testing.assert_close(spread.row_tiles[tile["tile"][0]][2][..., c0:c1], want)


def test_variability_off_draws_nothing_and_bad_times_are_refused(tmp_path, graph):
    xb = artifact(tmp_path, graph)
    gen = torch.Generator().manual_seed(11)
    state = gen.get_state()
    assert xb.draw_d2d(xb.device, gen) is None
    assert torch.equal(gen.get_state(), state)
    H = torch.randn(2, 8, 4, dtype=torch.float64)
    y = torch.randn(2, 3, 8, dtype=torch.float64)
    torch.testing.assert_close(xb.detect(H, y, seed=1), xb.detect(H, y, seed=1, time_s=86400.0))
    with pytest.raises(UsageError, match="time since programming"):
        xb.detect(H, y, time_s=-1.0)


def test_cli_ber_time_since_programming(tmp_path, graph, capsys):
    from mimoc.cli import main

    xb = artifact(tmp_path, graph, drift_nu=0.1)
    out = str(xb.path)
    runs = {}
    for t in ("0", "86400"):
        assert main(["ber", out, "--time-since-programming", t, "--snr", "10", "--nt", "2",
                     "--nr", "4",
                     "--max-symbols", "56", "--json", "--no-progress"]) == 0
        runs[t] = json.loads(capsys.readouterr().out)["curves"][0]["points"][0]["symbols"]
    assert runs == {"0": 56, "86400": 56}
    assert main(["ber", out, "--time-since-programming", "-5", "--snr", "10", "--nt", "2",
                 "--nr", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert "time since programming" in err and len(err.splitlines()) == 1
    assert main(["ber", "--detector", "mmse", "--time-since-programming", "60",
                 "--snr", "10"]) == 2
    assert "crossbar" in capsys.readouterr().err


@pytest.mark.parametrize("field, value", [
    ("read_noise", 1.5), ("read_noise", -0.01), ("drift_nu", -0.1), ("drift_nu_std", "0.02"),
    ("drift_t0_s", 0), ("d2d_g_spread", 1.0),
])
def test_variability_fields_are_checked_naming_them(tmp_path, field, value):
    from mimoc.hardware.devices import DeviceError

    path = tmp_path / "dev.json"
    path.write_text(json.dumps(load_device("ftj-luo2022").to_dict() | {field: value}))
    with pytest.raises(DeviceError) as err:
        load_device(str(path))
    assert field in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(DeviceError, match=field):  # the dataclass checks the same
        dataclasses.replace(load_device("ftj-luo2022"), **{field: value})
