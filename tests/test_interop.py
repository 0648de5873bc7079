"""Interop with the field: max-log LLRs against an independent brute force, channels from
.npy files, the unbiased LMMSE detector and the Eb/N0 SNR convention."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch

from mimoc.cli import main
from mimoc.errors import ModelFileError, UsageError
from mimoc.sim.ber import classical, simulate
from mimoc.sim.channel_file import FileChannel, parse_file_channel
from mimoc.sim.channels import parse_channel, real_matrix
from mimoc.sim.detectors.linear import lmmse, mmse
from mimoc.sim.llr import GMI_SCALES, GMIAccumulator, hard_bits, maxlog_llr
from mimoc.sim.modulation import get_constellation
from mimoc.sim.snr import noise_variance
from mimoc.sim.system import MIMOSystem

# -- max-log LLRs ------------------------------------------------------------------------


def brute_force_llr(x_hat: np.ndarray, var: np.ndarray, modulation: str) -> np.ndarray:
    """Max-log LLR ``log P(b=1)/P(b=0)`` over all M complex points with their labels (point
    ``i`` carries the bits of ``i``, MSB first): ``[B, Nt, k]``."""
    c = get_constellation(modulation)
    x_r = c.real_of_indices(torch.arange(c.order)[None], torch.float64)[0].numpy()
    points = x_r[: c.order] + 1j * x_r[c.order:]                     # [M], float64
    k = c.bits_per_symbol
    labels = (np.arange(c.order)[:, None] >> np.arange(k - 1, -1, -1)[None, :]) & 1  # [M, k]
    nt = x_hat.shape[-1] // 2
    z = x_hat[..., :nt] + 1j * x_hat[..., nt:]                        # [B, Nt]
    dist = np.abs(z[..., None] - points) ** 2                        # [B, Nt, M]
    out = np.empty(z.shape + (k,))
    for i in range(k):
        d0 = dist[..., labels[:, i] == 0].min(-1)
        d1 = dist[..., labels[:, i] == 1].min(-1)
        out[..., i] = (d0 - d1) / var
    return out


@pytest.mark.parametrize("modulation", ["bpsk", "qpsk", "16qam", "64qam"])
def test_maxlog_llr_equals_a_brute_force_over_all_points(modulation):
    rng = np.random.default_rng(11)
    c = get_constellation(modulation)
    nt = 3
    x = c.real_of_indices(torch.from_numpy(rng.integers(0, c.order, (400, nt))),
                          torch.float64).numpy()
    x_hat = x + rng.normal(0.0, 0.4, x.shape)      # noisy, some beyond the outer levels
    var = np.array([0.3, 0.05, 1.7])               # one per stream
    got = maxlog_llr(torch.from_numpy(x_hat), torch.from_numpy(var), c)
    assert got.shape == (400, nt, c.bits_per_symbol)
    assert np.allclose(got.numpy(), brute_force_llr(x_hat, var, modulation), rtol=1e-9,
                       atol=1e-9)


def test_llr_sign_convention_by_hand():
    """QPSK point 2 = bits (1, 0) is (+1 - 1j)/sqrt(2). At x_hat = 0.5 - 0.5j, v = 0.5:
    with a = 1/sqrt(2), LLR_0 = ((0.5 + a)^2 - (0.5 - a)^2) / v = 2a/v = 2 sqrt(2) and
    LLR_1 = -2 sqrt(2)."""
    c = get_constellation("qpsk")
    assert torch.allclose(c.points[2], torch.complex(torch.tensor(1.0), torch.tensor(-1.0))
                          / math.sqrt(2))
    llr = maxlog_llr(torch.tensor([[0.5, -0.5]], dtype=torch.float64), 0.5, c)
    assert torch.allclose(llr, torch.tensor([[[2 * math.sqrt(2), -2 * math.sqrt(2)]]],
                                            dtype=torch.float64))
    assert hard_bits(llr).tolist() == [[[1, 0]]]


@pytest.mark.parametrize("modulation", ["qpsk", "16qam", "64qam"])
@pytest.mark.parametrize("detector", ["mmse", "lmmse", "sd"])
def test_llr_signs_give_the_detectors_hard_bits(modulation, detector, generator):
    system = MIMOSystem(3, 4, modulation)
    batch = system.sample(300, 8.0, generator, torch.float64)
    c = system.constellation
    x_hat = classical(detector, c)(batch.H_est, batch.y, batch.noise_var)
    llr = maxlog_llr(x_hat, 0.2, c)
    assert torch.equal(hard_bits(llr), c.bits_of_indices(c.indices_of_real(x_hat)))


def test_gmi_estimate():
    c = get_constellation("16qam")
    bits = torch.randint(0, 2, (2000, 2, 4), generator=torch.Generator().manual_seed(0))
    confident = GMIAccumulator(4, 2)
    confident.add((2 * bits - 1) * 50.0, bits)
    assert confident.best()[0] == pytest.approx(8.0, abs=1e-9)
    useless = GMIAccumulator(4, 2)
    useless.add(torch.randn(bits.shape, generator=torch.Generator().manual_seed(1)) * 5, bits)
    assert 0.0 <= useless.gmi < 0.05  # the scale 0 bounds it below by 0
    # consistent LLRs (mean 2, variance 4 given the bit): the textbook sum, maximised over
    # the scales with numpy, and the best scale is about 1
    noise = torch.randn(bits.shape, generator=torch.Generator().manual_seed(2),
                        dtype=torch.float64)
    llr = (2 * bits - 1) * 2.0 + 2.0 * noise
    acc = GMIAccumulator(c.bits_per_symbol, 2)
    acc.add(llr, bits)
    signed = ((2 * bits - 1) * llr).numpy()
    per_scale = [8.0 * (1.0 - np.mean(np.logaddexp(0.0, -s * signed)) / np.log(2.0))
                 for s in GMI_SCALES.tolist()]
    gmi, scale = acc.best()
    assert gmi == pytest.approx(max(per_scale), abs=1e-9) and 0.7 < scale < 1.4


def test_simulate_reports_the_gmi_only_when_asked():
    system = MIMOSystem(2, 4, "qpsk")
    detectors = {"mmse": classical("mmse", system.constellation)}
    plain = simulate(detectors, system, [0.0, 20.0], max_symbols=4000)
    soft = simulate(detectors, system, [0.0, 20.0], max_symbols=4000, llr=True)
    assert "gmi" not in plain.to_dict()["curves"][0]["points"][0]
    assert "llr" not in plain.to_dict()
    low, high = soft.to_dict()["curves"][0]["points"]
    assert 0.0 < low["gmi"] < high["gmi"] <= 4.0 + 1e-9 and high["gmi"] > 3.99
    assert soft.to_dict()["llr"]["convention"].startswith("max-log LLR = log P(b=1)/P(b=0)")
    assert [p.ber for p in soft.curves["mmse"]] == [p.ber for p in plain.curves["mmse"]]


# -- LMMSE and Eb/N0 --------------------------------------------------------------------


def test_lmmse_equals_a_numpy_closed_form(generator):
    system = MIMOSystem(3, 4, "16qam")
    b = system.sample(20, 6.0, generator, torch.float64)
    got = lmmse(b.H, b.y, b.noise_var, system.constellation).numpy()
    for i in range(20):
        H, n0 = b.H[i].numpy(), float(b.noise_var[i])
        W = np.linalg.inv(H.T @ H + n0 * np.eye(6)) @ H.T
        D = np.diag(np.diag(W @ H))
        expected = np.linalg.inv(D) @ W @ b.y[i].numpy().T
        assert np.allclose(got[i], expected.T, atol=1e-10)


def test_lmmse_decisions_equal_mmse_for_qpsk_and_improve_16qam(generator):
    qpsk = MIMOSystem(4, 4, "qpsk")
    b = qpsk.sample(500, 4.0, generator)
    c = qpsk.constellation
    assert torch.equal(c.indices_of_real(lmmse(b.H, b.y, b.noise_var, c)),
                       c.indices_of_real(mmse(b.H, b.y, b.noise_var, c)))
    system = MIMOSystem(4, 4, "16qam")
    c = system.constellation
    result = simulate({"mmse": classical("mmse", c), "lmmse": classical("lmmse", c)}, system,
                      [14.0], max_symbols=40_000, min_errors=10**9)
    biased, unbiased = result.curves["mmse"][0].ser, result.curves["lmmse"][0].ser
    assert 0.13 < unbiased < biased - 0.004 and biased < 0.18


def test_ebno_noise_variance_closed_form():
    H = real_matrix(torch.ones(2, 3, 4, dtype=torch.complex64))
    # Eb/N0 = 10 dB, 16-QAM (4 bits): Es/N0 = 40, N0 = 1/40
    assert torch.allclose(noise_variance(10.0, "ebno", H, 4), torch.full((2,), 0.025))
    assert torch.allclose(noise_variance(10.0, "ebno", H, 4),
                          noise_variance(10.0 + 10 * math.log10(4), "per-stream", H))
    with pytest.raises(UsageError, match="bits per symbol"):
        noise_variance(10.0, "ebno", H)
    batch = MIMOSystem(4, 3, "64qam", snr_def="ebno").sample(2, 3.0)
    assert torch.allclose(batch.noise_var, torch.full((2,), 1 / (6 * 10 ** 0.3)))


# -- channels from files ----------------------------------------------------------------


def complex_channels(n=50, nr=4, nt=2, seed=3):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, nr, nt)) + 1j * rng.standard_normal((n, nr, nt))) / 2.0


def test_file_channel_draws_its_realisations(tmp_path):
    H = complex_channels()
    np.save(tmp_path / "H.npy", H.astype(np.complex64))
    channel = parse_channel(f"file:{tmp_path}/H.npy")
    assert isinstance(channel, FileChannel)
    assert (channel.nr, channel.nt, channel.count) == (4, 2, 50)
    draws = channel.sample(200, 4, 2, torch.Generator().manual_seed(0), torch.complex128)
    flat = H.astype(np.complex64).astype(np.complex128).reshape(50, -1)
    picks = [int(np.argmin(np.abs(flat - d.numpy().reshape(1, -1)).sum(1))) for d in draws]
    assert np.allclose(draws.numpy(), flat[picks].reshape(200, 4, 2))
    assert len(set(picks)) > 40  # uniformly at random over the file
    again = channel.sample(200, 4, 2, torch.Generator().manual_seed(0), torch.complex128)
    assert torch.equal(draws, again)  # seeded


def test_real_form_and_sionna_layout_and_normalisation(tmp_path):
    H = complex_channels()
    np.save(tmp_path / "c.npy", H)
    np.save(tmp_path / "r.npy", real_matrix(torch.from_numpy(H)).numpy().astype(np.float32))
    a = parse_file_channel(f"file:{tmp_path}/c.npy")
    b = parse_file_channel(f"file:{tmp_path}/r.npy")
    assert torch.allclose(a.H, b.H.to(a.H.dtype), atol=1e-6)
    # a Sionna OFDM tensor [batch, rx, rx_ant, tx, tx_ant, ofdm, sc], reshaped as documented
    rng = np.random.default_rng(5)
    shape = (3, 1, 4, 1, 2, 2, 5)
    h_freq = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    h = h_freq[:, 0, :, 0]
    np.save(tmp_path / "sionna.npy", np.moveaxis(h, (1, 2), (-2, -1)).reshape(-1, 4, 2))
    sionna = parse_file_channel(f"file:{tmp_path}/sionna.npy")
    # realisation 7 = batch 0, OFDM symbol 1, subcarrier 2 (row-major over [3, 2, 5])
    assert sionna.count == 30 and torch.allclose(sionna.H[7], torch.from_numpy(h[0, :, :, 1, 2]))
    norm = parse_file_channel(f"FILE:{tmp_path}/sionna.npy,normalize")
    assert float(norm.H.abs().square().mean()) == pytest.approx(1.0)
    assert norm.spec.endswith(",normalize") and torch.allclose(norm.H / norm.H[0, 0, 0],
                                                               sionna.H / sionna.H[0, 0, 0])


def bad_files(tmp_path):
    def save(name, array, **kw):
        np.save(tmp_path / name, array, **kw)
        return tmp_path / name

    truncated = tmp_path / "truncated.npy"
    truncated.write_bytes(save("big.npy", complex_channels()).read_bytes()[:300])
    (tmp_path / "empty.npy").write_bytes(b"")
    np.savez(tmp_path / "archive.npz", H=complex_channels())
    wrong = complex_channels()
    wrong[3, 1, 1] = np.nan
    real = real_matrix(torch.from_numpy(complex_channels())).numpy()
    real[0, 0, 3] += 1.0  # not [[A, -B], [B, A]]
    os.mkfifo(tmp_path / "fifo.npy")
    return [
        (save("pickle.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True), "readable"),
        (truncated, "readable"), (tmp_path / "empty.npy", "readable"),
        (tmp_path / "archive.npz", "readable|npz"),
        (save("int.npy", np.ones((2, 4, 2), dtype=np.int32)), "int32"),
        (save("2d.npy", np.ones((4, 2), dtype=np.complex64)), "shape"),
        (save("zero.npy", np.zeros((0, 4, 2), dtype=np.complex64)), "shape"),
        (save("nan.npy", wrong), "NaN"),
        (save("odd.npy", np.ones((2, 3, 4))), "even sizes"),
        (save("notreal.npy", real), "real form"),
        (save("zeros.npy", np.zeros((2, 4, 2), dtype=np.complex64)), "only zero"),
        (tmp_path / "fifo.npy", "FIFO"), (tmp_path, "folder"), (tmp_path / "none.npy", "no such"),
    ]


def test_bad_channel_files_are_one_line_errors(tmp_path):
    for path, match in bad_files(tmp_path):
        with pytest.raises(ModelFileError, match=match) as err:
            parse_channel(f"file:{path}")
        assert "\n" not in str(err.value)
    with pytest.raises(UsageError, match="file:PATH"):
        parse_channel("file:")


def test_sizes_must_match_the_link(tmp_path):
    np.save(tmp_path / "H.npy", complex_channels())
    channel = parse_channel(f"file:{tmp_path}/H.npy")
    with pytest.raises(UsageError, match=r"holds Nr=4 x Nt=2 .* link is Nr=4 x Nt=3"):
        MIMOSystem(3, 4, channel=channel)
    with pytest.raises(UsageError, match="--nt 2 --nr 4"):
        channel.sample(2, 8, 2)


def test_ber_cli_with_a_channel_file_and_llr_output(tmp_path, capsys):
    np.save(tmp_path / "H.npy", complex_channels(n=64, nr=4, nt=2))
    args = ["ber", "--detector", "mmse,lmmse", "--nt", "2", "--nr", "4", "--snr", "0,6",
            "--channel", f"file:{tmp_path}/H.npy", "--max-symbols", "2000", "--no-progress",
            "--snr-def", "ebno", "--output", "llr", "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["channel"] == f"file:{tmp_path}/H.npy" and out["snr_def"] == "ebno"
    assert all(0 < p["gmi"] <= 4 for curve in out["curves"] for p in curve["points"])
    assert main(args[:-3] + ["--nt", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Nr=4 x Nt=2" in err
    sizes = [a for a in args if a not in ("--nt", "--nr", "2", "4")]  # from the file
    assert main(sizes) == 0 and json.loads(capsys.readouterr().out)["nt"] == 2


def test_ber_save_llr_writes_plain_arrays(tmp_path, capsys):
    out = tmp_path / "llr.npz"
    args = ["ber", "--detector", "zf,mmse", "--nt", "2", "--nr", "4", "--mod", "16qam",
            "--snr", "5,25", "--slot", "1", "--max-symbols", "1000", "--no-progress",
            "--save-llr", str(out)]
    assert main(args) == 2 and "--output llr" in capsys.readouterr().err
    assert main(args + ["--output", "llr", "--max-symbols", "10000000000"]) == 2
    assert "lower --max-symbols" in capsys.readouterr().err and not out.exists()
    assert main(args + ["--output", "llr"]) == 0
    with np.load(out, allow_pickle=False) as data:
        assert list(data["detectors"]) == ["zf", "mmse"] and list(data["snr_db"]) == [5.0, 25.0]
        llr, bits = data["llr_1_1"], data["bits_1_1"]
        assert llr.shape == bits.shape == (500, 1, 2, 4) and llr.dtype == np.float32
        assert np.array_equal(llr > 0, bits == 1)  # 25 dB: no bit errors
        assert np.array_equal(data["bits_0_0"], data["bits_1_0"])  # the same draws
        assert 0 < np.mean((data["llr_0_0"] > 0) != (data["bits_0_0"] == 1)) < 0.3
