"""Unit tests of the simulation core: modulation, channels, CSI, SNR conventions, MIMOSystem."""

import math

import pytest
import torch

from mimoc.errors import UsageError
from mimoc.sim.channels import (
    ChannelModel,
    CSIModel,
    complex_matrix,
    complex_normal,
    complex_vector,
    dft_pilots,
    real_matrix,
    real_vector,
)
from mimoc.sim.modulation import MODULATIONS, get_constellation
from mimoc.sim.snr import noise_variance
from mimoc.sim.system import MIMOSystem

# ----------------------------------------------------------------------------- modulation


@pytest.mark.parametrize("name", MODULATIONS)
def test_constellation_has_unit_energy_and_distinct_points(name):
    c = get_constellation(name)
    points = c.points.to(torch.complex128)
    assert points.numel() == c.order == 2**c.bits_per_symbol
    assert points.abs().square().mean().item() == pytest.approx(1.0, abs=1e-6)
    assert torch.unique(torch.view_as_real(points), dim=0).shape[0] == c.order
    if c.is_real:
        assert bool((points.imag == 0).all())


@pytest.mark.parametrize("name", MODULATIONS)
def test_gray_nearest_neighbours_differ_in_one_bit(name):
    c = get_constellation(name)
    points = c.points.to(torch.complex128)
    dist = (points[:, None] - points[None, :]).abs()
    dist.fill_diagonal_(math.inf)
    d_min = dist.min()
    bits = c.bits_of_indices(torch.arange(c.order))
    i, j = torch.nonzero(dist < d_min + 1e-9, as_tuple=True)
    assert i.numel() >= c.order  # every point has at least one nearest neighbour
    hamming = (bits[i] != bits[j]).sum(-1)
    assert bool((hamming == 1).all())


@pytest.mark.parametrize("name", MODULATIONS)
def test_bits_indices_real_round_trips(name, generator):
    c = get_constellation(name)
    idx = torch.randint(0, c.order, (64, 3, 5), generator=generator)
    bits = c.bits_of_indices(idx)
    assert bits.shape == (64, 3, 5, c.bits_per_symbol)
    assert bool(((bits == 0) | (bits == 1)).all())
    assert torch.equal(c.indices_of_bits(bits), idx)
    x = c.real_of_indices(idx)
    assert x.shape == (64, 3, 10)
    assert torch.equal(c.indices_of_real(x), idx)
    # The real form is [Re x; Im x] of the complex points.
    assert torch.allclose(complex_vector(x), c.points[idx].to(torch.complex64))


@pytest.mark.parametrize("name", MODULATIONS)
def test_hard_decisions_pick_the_nearest_point(name, generator):
    c = get_constellation(name)
    points = c.points.to(torch.complex128)
    received = complex_normal((2000,), generator, torch.complex128) * 1.5
    if c.is_real:
        received = received.real.to(torch.complex128)
    brute = (received[:, None] - points[None, :]).abs().argmin(-1)
    decided = c.indices_of_real(real_vector(received[:, None]))[:, 0]
    assert torch.equal(decided, brute)
    nearest = c.nearest_real(real_vector(received[:, None]).float())
    assert torch.allclose(complex_vector(nearest)[:, 0], points[brute].to(torch.complex64))


def test_bpsk_real_form_has_zero_quadrature():
    c = get_constellation("bpsk")
    x = c.real_of_indices(torch.tensor([[0, 1, 1]]))
    assert torch.equal(x, torch.tensor([[-1.0, 1.0, 1.0, 0.0, 0.0, 0.0]]))


def test_modulation_errors():
    with pytest.raises(UsageError, match="unknown modulation"):
        get_constellation("8psk")
    with pytest.raises(UsageError, match="bits per symbol"):
        get_constellation("16qam").indices_of_bits(torch.zeros(3, 2, dtype=torch.long))
    assert get_constellation("QAM16") is get_constellation("16qam")


# ----------------------------------------------------------------------------- channels


def test_rayleigh_entries_have_unit_variance(generator):
    H = ChannelModel().sample(4000, 4, 3, generator, torch.complex128)
    assert H.shape == (4000, 4, 3)
    power = H.abs().square()
    assert power.mean().item() == pytest.approx(1.0, abs=0.02)
    assert H.real.var().item() == pytest.approx(0.5, abs=0.01)
    assert H.imag.var().item() == pytest.approx(0.5, abs=0.01)
    assert abs(H.mean().item()) < 0.02


@pytest.mark.parametrize("rho_rx,rho_tx", [(0.7, 0.0), (0.0, 0.5), (0.6, 0.3)])
def test_kronecker_correlation_matches_exponential_model(rho_rx, rho_tx, generator):
    nr, nt, batch = 5, 4, 20000
    H = ChannelModel("kronecker", rho_rx, rho_tx).sample(batch, nr, nt, generator,
                                                         torch.complex128)
    assert H.abs().square().mean().item() == pytest.approx(1.0, abs=0.03)
    # Receive correlation: E[h_i h_j^*] over columns, trace-normalised by Nt.
    R_rx = torch.einsum("bik,bjk->ij", H, H.conj()) / (batch * nt)
    R_tx = torch.einsum("bki,bkj->ij", H.conj(), H) / (batch * nr)
    i = torch.arange(nr)
    expected_rx = rho_rx ** (i[:, None] - i[None, :]).abs().double()
    k = torch.arange(nt)
    expected_tx = rho_tx ** (k[:, None] - k[None, :]).abs().double()
    assert torch.allclose(R_rx.real, expected_rx, atol=0.03)
    assert torch.allclose(R_tx.real, expected_tx, atol=0.03)
    assert R_rx.imag.abs().max().item() < 0.03


def test_channel_spec_parsing():
    assert ChannelModel.parse("rayleigh") == ChannelModel()
    assert ChannelModel.parse("kronecker:0.5") == ChannelModel("kronecker", 0.5, 0.5)
    assert ChannelModel.parse("kronecker:rx=0.7,tx=0.2") == ChannelModel("kronecker", 0.7, 0.2)
    assert ChannelModel.parse(ChannelModel("kronecker", 0.7, 0.2).spec).rho_tx == 0.2
    for bad in ("rician", "kronecker", "kronecker:1.5", "kronecker:abc", "kronecker:zz=0.1"):
        with pytest.raises(UsageError):
            ChannelModel.parse(bad)


def test_real_matrix_maps_complex_products_to_real_ones(generator):
    H = complex_normal((7, 5, 3), generator, torch.complex128)
    x = complex_normal((7, 3), generator, torch.complex128)
    H_r, x_r = real_matrix(H), real_vector(x)
    assert H_r.shape == (7, 10, 6)
    y = (H @ x[..., None])[..., 0]
    assert torch.allclose(H_r @ x_r[..., None], real_vector(y)[..., None], atol=1e-12)
    # H^H H maps to H_r^T H_r, and the inverses undo the maps.
    assert torch.allclose(H_r.transpose(-1, -2) @ H_r, real_matrix(H.conj().transpose(-1, -2) @ H),
                          atol=1e-12)
    assert torch.equal(complex_matrix(H_r), H)
    assert torch.equal(complex_vector(x_r), x)


# ----------------------------------------------------------------------------- CSI


def test_dft_pilots_are_orthogonal():
    P = dft_pilots(4, 6, torch.complex128)
    assert torch.allclose(P @ P.conj().T, 6 * torch.eye(4, dtype=torch.complex128), atol=1e-12)


@pytest.mark.parametrize("pilots,snr_db", [(4, 10.0), (8, 0.0)])
def test_ls_estimation_error_variance(pilots, snr_db, generator):
    H = ChannelModel().sample(5000, 3, 4, generator, torch.complex128)
    H_hat = CSIModel("ls", pilots, snr_db).estimate(H, generator)
    err = (H_hat - H).abs().square().mean().item()
    assert err == pytest.approx(1.0 / (10 ** (snr_db / 10) * pilots), rel=0.05)


@pytest.mark.parametrize("snr_db", [5.0, 20.0])
def test_additive_error_variance(snr_db, generator):
    H = ChannelModel().sample(5000, 3, 4, generator, torch.complex128)
    H_hat = CSIModel("error", 0, snr_db).estimate(H, generator)
    err = (H_hat - H).abs().square().mean().item()
    assert err == pytest.approx(10 ** (-snr_db / 10), rel=0.05)


def test_csi_perfect_and_parsing(generator):
    H = ChannelModel().sample(3, 2, 2, generator)
    assert CSIModel().estimate(H, generator) is H
    assert CSIModel.parse("ls:8@15") == CSIModel("ls", 8, 15.0)
    assert CSIModel.parse("error:20").snr_db == 20.0
    for bad in ("ls:8", "error:", "oracle", "ls:x@3"):
        with pytest.raises(UsageError):
            CSIModel.parse(bad)
    with pytest.raises(UsageError, match="pilots"):
        CSIModel("ls", 2, 10.0).estimate(ChannelModel().sample(3, 4, 4, generator), generator)


# ----------------------------------------------------------------------------- SNR conventions


def _powers(system, snr_db, generator, batch=4000):
    """Measured per-slot signal and noise powers of a sampled batch (complex, per rx antenna)."""
    b = system.sample(batch, snr_db, generator, torch.float64)
    signal = b.x @ b.H.transpose(-1, -2)
    noise = b.y - signal
    return b, signal.square().sum(-1).mean(), noise.square().sum(-1).mean()


def test_per_stream_snr_is_es_over_n0(generator):
    nt, nr, snr_db = 3, 6, 7.0
    b, signal, noise = _powers(MIMOSystem(nt, nr, "16qam"), snr_db, generator)
    rho = 10 ** (snr_db / 10)
    assert torch.allclose(b.noise_var, torch.full_like(b.noise_var, 1 / rho))
    n0 = noise.item() / nr  # complex noise power per rx antenna
    es = signal.item() / (nr * nt)  # symbol energy per stream seen through unit-gain channels
    assert es / n0 == pytest.approx(rho, rel=0.04)


def test_per_rx_snr_is_received_signal_over_noise(generator):
    nt, nr, snr_db = 4, 4, 12.0
    _, signal, noise = _powers(MIMOSystem(nt, nr, "qpsk", snr_def="per-rx"), snr_db, generator)
    assert signal.item() / noise.item() == pytest.approx(10 ** (snr_db / 10), rel=0.04)


def test_detnet_snr_is_per_slot_trace_ratio(generator):
    nt, nr, snr_db, slot = 3, 5, 5.0, 400
    system = MIMOSystem(nt, nr, "bpsk", snr_def="detnet", slot=slot)
    b = system.sample(50, snr_db, generator, torch.float64)
    sigma2 = (b.y - b.x @ b.H.transpose(-1, -2)).square().mean(dim=(1, 2))  # per slot
    # The authors' ratio scales with the per-real-component symbol energy (1 in their code, 1/2
    # here: BPSK's imaginary parts are 0): sigma^2 = E[x_i^2] tr(H_r^T H_r) / (K SNR).
    energy = b.x.square().mean(dim=(1, 2))
    measured = energy * (b.H.square().sum(dim=(1, 2)) / (2 * nt)) / sigma2
    ratio = measured / 10 ** (snr_db / 10)
    assert ratio.mean().item() == pytest.approx(1.0, abs=0.02)
    assert ratio.std().item() < 0.1  # holds slot by slot, not only on average


def test_noise_variance_formulas():
    H = real_matrix(torch.ones(2, 3, 2, dtype=torch.complex128))
    assert torch.allclose(noise_variance(10.0, "per-stream", H), torch.full((2,), 0.1,
                                                                            dtype=H.dtype))
    assert torch.allclose(noise_variance(10.0, "per-rx", H), torch.full((2,), 0.2, dtype=H.dtype))
    # tr(H_r^T H_r) = 2 * 6 = 12, K = 4: N0 = 12 / (4 * 10).
    assert torch.allclose(noise_variance(10.0, "detnet", H), torch.full((2,), 0.3, dtype=H.dtype))
    with pytest.raises(UsageError, match="SNR definition"):
        noise_variance(10.0, "per-bit", H)


# ----------------------------------------------------------------------------- MIMOSystem


def test_system_shapes_and_consistency(generator):
    system = MIMOSystem(3, 5, "16qam", slot=4)
    b = system.sample(6, torch.linspace(0, 10, 6), generator)
    assert b.H.shape == b.H_est.shape == (6, 10, 6)
    assert b.y.shape == (6, 4, 10)
    assert b.x.shape == (6, 4, 6)
    assert b.indices.shape == (6, 4, 3)
    assert b.noise_var.shape == b.snr_db.shape == (6,)
    assert b.y.dtype == b.H.dtype == torch.float32
    assert torch.equal(b.H_est, b.H)
    assert torch.equal(system.constellation.real_of_indices(b.indices), b.x)
    assert torch.allclose(b.noise_var.double(), 10 ** (-torch.linspace(0, 10, 6).double() / 10))
    # H is real_matrix of a complex channel: [[A, -B], [B, A]].
    assert torch.equal(b.H[:, :5, :3], b.H[:, 5:, 3:])
    assert torch.equal(b.H[:, :5, 3:], -b.H[:, 5:, :3])


def test_system_is_deterministic_for_a_seed():
    system = MIMOSystem(2, 4, "qpsk", csi=CSIModel("error", 0, 10.0), slot=3)
    a = system.sample(8, 5.0, torch.Generator().manual_seed(3))
    b = system.sample(8, 5.0, torch.Generator().manual_seed(3))
    c = system.sample(8, 5.0, torch.Generator().manual_seed(4))
    for name in ("H", "H_est", "y", "x", "indices", "noise_var"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.y, c.y)
    assert not torch.equal(a.H_est, a.H)


def test_system_rejects_bad_arguments():
    with pytest.raises(UsageError):
        MIMOSystem(0, 4)
    with pytest.raises(UsageError):
        MIMOSystem(2, -1)
    with pytest.raises(UsageError):
        MIMOSystem(2, 4, "8psk")
    with pytest.raises(UsageError):
        MIMOSystem(2, 4, snr_def="per-bit")
