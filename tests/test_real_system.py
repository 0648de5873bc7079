"""Real-valued systems (--system real): the DetNet and WeSNet papers' real channel with
N(0, 1) entries and real BPSK/PAM symbols, checked against closed forms and brute force."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from mimoc.cli import main
from mimoc.errors import UsageError
from mimoc.sim.ber import classical, simulate
from mimoc.sim.ber_units import count_errors
from mimoc.sim.detectors import get_classical_detector
from mimoc.sim.modulation import get_constellation
from mimoc.sim.system import MIMOSystem


def _q(x: np.ndarray) -> np.ndarray:
    return 0.5 * np.vectorize(math.erfc)(x / math.sqrt(2.0))


@pytest.mark.parametrize("name", ["bpsk", "4pam", "8pam"])
def test_pam_round_trip_unit_energy_and_real_shapes(name):
    const = get_constellation(name, real_system=True)
    idx = torch.arange(const.order)[None, :]
    x = const.real_of_indices(idx, torch.float64)
    assert x.shape == (1, const.order)  # no quadrature half
    assert float(x.square().mean()) == pytest.approx(1.0)
    assert bool((const.indices_of_real(x + 0.01) == idx).all())
    assert bool((const.nearest_real(x * 1.05) == x).all())
    # Gray: neighbouring levels differ in one bit
    labels = const.indices_of_real(torch.sort(x, dim=-1).values)[0]
    steps = labels[:-1] ^ labels[1:]
    assert all(bin(int(step)).count("1") == 1 for step in steps)


def test_real_system_refuses_complex_modulations_and_file_channels():
    with pytest.raises(UsageError, match="real PAM"):
        MIMOSystem(nt=2, nr=4, modulation="qpsk", system="real")
    with pytest.raises(UsageError, match="unknown system"):
        MIMOSystem(nt=2, nr=4, system="quaternion")


def test_real_sampling_shapes_and_statistics():
    system = MIMOSystem(nt=3, nr=5, modulation="bpsk", system="real", slot=2)
    batch = system.sample(4000, 10.0, torch.Generator().manual_seed(1), torch.float64)
    assert batch.H.shape == (4000, 5, 3) and batch.y.shape == (4000, 2, 5)
    assert batch.x.shape == (4000, 2, 3) and set(batch.x.unique().tolist()) == {-1.0, 1.0}
    assert float(batch.H.var()) == pytest.approx(1.0, abs=0.02)  # N(0, 1) entries
    noise = batch.y - batch.x @ batch.H.transpose(-1, -2)
    assert float(noise.var()) == pytest.approx(0.1 / 2, rel=0.03)  # N0/2, N0 = 1/rho
    per_rx = MIMOSystem(nt=3, nr=5, modulation="bpsk", system="real", snr_def="per-rx")
    n0 = per_rx.sample(2, 10.0, torch.Generator().manual_seed(1)).noise_var
    assert torch.allclose(n0, torch.full((2,), 2 * 3 / 10.0))  # Nt / (N0/2) = SNR


def test_zf_matches_the_per_draw_closed_form():
    """ZF on real BPSK: stream j errs with Q(1 / sqrt(N0/2 [(H^T H)^-1]_jj)) given H."""
    system = MIMOSystem(nt=2, nr=4, modulation="bpsk", system="real", slot=64)
    snr_db = 2.0
    batch = system.sample(3000, snr_db, torch.Generator().manual_seed(7), torch.float64)
    x_hat = get_classical_detector("zf")(batch.H, batch.y, batch.noise_var,
                                         system.constellation)
    errors, _ = count_errors(x_hat, batch.indices, system.constellation)
    measured = float(errors.sum()) / batch.indices.numel()
    H = batch.H.numpy()
    inv_diag = np.linalg.inv(np.swapaxes(H, -1, -2) @ H).diagonal(axis1=-2, axis2=-1)
    sigma2 = batch.noise_var.numpy()[:, None] / 2
    expected = float(_q(1.0 / np.sqrt(sigma2 * inv_diag)).mean())
    # 384k decisions over 3000 channels: the channel spread dominates; 6% is ~4 sigma
    assert measured == pytest.approx(expected, rel=0.06)


@pytest.mark.parametrize("name", ["ml", "sd", "kbest:64"])
def test_ml_and_tree_searches_equal_numpy_brute_force(name):
    system = MIMOSystem(nt=4, nr=4, modulation="bpsk", system="real", slot=8)
    batch = system.sample(50, 0.0, torch.Generator().manual_seed(3), torch.float64)
    decided = get_classical_detector(name)(batch.H, batch.y, batch.noise_var,
                                           system.constellation)
    candidates = np.array(list(itertools.product((-1.0, 1.0), repeat=4)))  # [16, 4]
    H, y = batch.H.numpy(), batch.y.numpy()
    received = np.einsum("brt,ct->bcr", H, candidates)  # [B, 16, Nr]
    metric = ((y[:, :, None, :] - received[:, None]) ** 2).sum(-1)  # [B, S, 16]
    expected = candidates[metric.argmin(-1)]
    assert decided.shape == (50, 8, 4)
    np.testing.assert_array_equal(decided.numpy(), expected)


def test_4pam_ml_equals_brute_force():
    system = MIMOSystem(nt=2, nr=3, modulation="4pam", system="real", slot=4)
    batch = system.sample(40, 8.0, torch.Generator().manual_seed(4), torch.float64)
    decided = get_classical_detector("ml")(batch.H, batch.y, batch.noise_var,
                                           system.constellation)
    levels = system.constellation.levels.numpy()
    candidates = np.array(list(itertools.product(levels, repeat=2)))
    received = np.einsum("brt,ct->bcr", batch.H.numpy(), candidates)
    metric = ((batch.y.numpy()[:, :, None, :] - received[:, None]) ** 2).sum(-1)
    np.testing.assert_allclose(decided.numpy(), candidates[metric.argmin(-1)])


@pytest.mark.parametrize("snr_db", [0.0, 6.0])
def test_siso_real_and_complex_bpsk_differ_as_theory_says(snr_db):
    """One antenna, BPSK at Es/N0 = rho: a real N(0,1) gain gives (1/pi) atan(1/sqrt(2 rho));
    the complex model (CN(0,1) gain, zero imaginary symbol) gives (1 - sqrt(rho/(1+rho)))/2."""
    rho = 10 ** (snr_db / 10)
    theory = {"real": math.atan(1 / math.sqrt(2 * rho)) / math.pi,
              "complex": (1 - math.sqrt(rho / (1 + rho))) / 2}
    for kind, expected in theory.items():
        system = MIMOSystem(nt=1, nr=1, modulation="bpsk", system=kind, slot=1)
        result = simulate({"zf": classical("zf", system.constellation)}, system, [snr_db],
                          seed=5, max_symbols=200_000, min_errors=10**9)
        point = result.curves["zf"][0]
        assert point.ser_ci[0] <= expected <= point.ser_ci[1], (kind, point.ser, expected)


def test_mmse_uses_the_real_noise_per_symbol_energy():
    """Real MMSE is (H^T H + N0/2 I)^-1 H^T y: unit-energy real symbols, noise N0/2."""
    system = MIMOSystem(nt=3, nr=4, modulation="bpsk", system="real")
    batch = system.sample(5, 0.0, torch.Generator().manual_seed(2), torch.float64)
    x_hat = get_classical_detector("mmse")(batch.H, batch.y, batch.noise_var,
                                           system.constellation)
    H, y = batch.H, batch.y
    gram = H.transpose(-1, -2) @ H + (batch.noise_var / 2)[:, None, None] * torch.eye(3)
    expected = torch.linalg.solve(gram, (y @ H).transpose(-1, -2)).transpose(-1, -2)
    torch.testing.assert_close(x_hat, expected)


def test_count_errors_refuses_complex_shaped_output_in_a_real_system():
    const = get_constellation("bpsk", real_system=True)
    with pytest.raises(UsageError, match="expected"):
        count_errors(torch.zeros(2, 1, 8), torch.zeros(2, 1, 4, dtype=torch.long), const)


def test_cli_ber_real_system(capsys):
    code = main(["ber", "--system", "real", "--nt", "2", "--nr", "4", "--detector", "zf,ml",
                 "--snr", "4", "--max-symbols", "2000"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "2x4 bpsk (real system)" in out
    with pytest.raises(SystemExit):
        main(["ber", "--system", "imaginary"])
    capsys.readouterr()
    code = main(["ber", "--system", "real", "--mod", "16qam", "--max-symbols", "100"])
    out, err = capsys.readouterr()
    assert code == 2 and "real PAM" in err and err.count("\n") == 1


# -- detectors built for a real system ------------------------------------------------


def test_detnet_and_wesnet_take_real_dimensions():
    from mimoc.detectors import build_detector

    detnet = build_detector("detnet", nt=30, nr=60, modulation="bpsk", system="real")
    cfg = detnet.config  # the DetNet paper's 30x60 BPSK network: K = 30
    assert (detnet.k, cfg.layers, cfg.hidden, cfg.v_dim) == (30, 90, 240, 60)
    wesnet = build_detector("wesnet", nt=3, nr=5, modulation="4pam", system="real", layers=2)
    out = wesnet(torch.randn(2, 5, 3), torch.randn(2, 4, 5))
    assert out.shape == (2, 4, 3)
    with pytest.raises(UsageError, match=r"H must be \[B, 5, 3\]"):
        wesnet(torch.randn(2, 10, 6), torch.randn(2, 4, 10))
    with pytest.raises(UsageError, match="complex systems only"):
        build_detector("sdnet", nt=2, nr=4, modulation="bpsk", system="real")


def test_complex_configs_record_no_system_key():
    from mimoc.detectors import build_detector

    complex_model = build_detector("detnet", nt=2, nr=4, layers=2)
    assert "system" not in complex_model.config.to_dict()  # old checkpoints and artifacts
    real_model = build_detector("detnet", nt=2, nr=4, layers=2, modulation="bpsk",
                                system="real")
    assert real_model.config.to_dict()["system"] == "real"


def test_train_and_evaluate_a_real_detnet(tmp_path, capsys):
    from mimoc.detectors import load_detector

    path = tmp_path / "real.pt"
    code = main(["train", "detnet", "--system", "real", "--nt", "3", "--nr", "6", "--layers",
                 "3", "--steps", "5", "--batch", "8", "--no-progress", "-o", str(path)])
    assert code == 0, capsys.readouterr().err
    model = load_detector(str(path))
    assert model.config.system == "real" and model.config.modulation == "bpsk"
    assert model(torch.randn(2, 6, 3), torch.randn(2, 1, 6)).shape == (2, 1, 3)
    capsys.readouterr()
    code = main(["ber", "--detector", f"{path},zf", "--snr", "6", "--max-symbols", "600"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "3x6 bpsk" in out
    code = main(["ber", "--detector", str(path), "--system", "complex", "--max-symbols", "60"])
    out, err = capsys.readouterr()
    assert code == 2 and "built for a real system" in err


def test_json_records_a_real_system_only(capsys):
    import json

    for system, expected in (("real", "real"), ("complex", None)):
        code = main(["ber", "--system", system, "--mod", "bpsk", "--nt", "2", "--nr", "2",
                     "--snr", "3", "--max-symbols", "200", "--json"])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert json.loads(out).get("system") == expected


def test_llr_output_is_refused_for_a_real_system():
    system = MIMOSystem(nt=2, nr=2, modulation="bpsk", system="real")
    with pytest.raises(UsageError, match="LLR output is for complex systems"):
        simulate({"zf": classical("zf", system.constellation)}, system, [0.0], llr=True)
