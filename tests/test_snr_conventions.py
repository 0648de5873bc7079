"""mimoc's SNR conventions against the papers' own data generators (issue 22).

The reference generator below re-implements, in numpy, the DetNet authors' QPSK
generator (neevsamuel/LearningToDetect, DetNet_HD_QPSK.py): real and imaginary parts
of H from N(0, 1), x in {+-1} per real dimension, and noise
``w * sqrt(tr(H_r^T H_r) / (2K) / SNR)`` with ``w ~ N(0, 1)`` per real dimension and
``K = Nt`` complex users. A detector run under mimoc's ``detnet`` convention must see
the same received SNR as one fed by that generator.
"""

import numpy as np
import pytest
import torch

from mimoc.sim.system import MIMOSystem


def _authors_qpsk(batch, nt, nr, snr_db, rng):
    """Signal and noise power per real receive dimension, summed over draws."""
    snr = 10 ** (snr_db / 10)
    h_re, h_im = rng.standard_normal((2, batch, nr, nt))
    H = np.block([[h_re, -h_im], [h_im, h_re]])  # [B, 2Nr, 2Nt]
    x = np.sign(rng.random((batch, 2 * nt)) - 0.5)
    w = rng.standard_normal((batch, 2 * nr))
    scale = np.einsum("bij,bij->b", H, H) / (2 * nt)  # tr(H^T H) / (2K)
    signal = np.einsum("bij,bj->bi", H, x)
    noise = w * np.sqrt(scale / snr)[:, None]
    # Normalised to unit symbol energy and CN(0, 1) entries: divide the signal power by
    # E|x|^2 = 2 and E|h|^2 = 2, the noise power by the same 4 (the ratio is unchanged).
    return np.square(signal).sum() / 4, np.square(noise).sum() / 4


def _mimoc(batch, nt, nr, snr_db, generator, snr_def="detnet"):
    system = MIMOSystem(nt, nr, "qpsk", snr_def=snr_def)
    b = system.sample(batch, snr_db, generator, torch.float64)
    signal = b.x @ b.H.transpose(-1, -2)
    return signal.square().sum().item(), (b.y - signal).square().sum().item()


@pytest.mark.parametrize("nt,nr,snr_db", [(2, 4, 0.0), (4, 8, 8.0), (8, 8, 13.0), (20, 30, 10.0)])
def test_detnet_convention_matches_the_authors_generator(nt, nr, snr_db):
    rng = np.random.default_rng(22)
    generator = torch.Generator().manual_seed(22)
    batch = 4000
    a_signal, a_noise = _authors_qpsk(batch, nt, nr, snr_db, rng)
    m_signal, m_noise = _mimoc(batch, nt, nr, snr_db, generator)
    authors_rx = a_signal / a_noise  # received SNR per receive dimension
    mimoc_rx = m_signal / m_noise
    assert mimoc_rx == pytest.approx(authors_rx, rel=0.03)
    # Per-stream Es/N0 (unit-energy symbols, CN(0, 1) entries): signal power per receive
    # antenna is Nt Es, so Es/N0 = rx SNR / Nt, which the convention puts at SNR / Nr.
    es_n0 = mimoc_rx / nt
    assert 10 * np.log10(es_n0) == pytest.approx(snr_db - 10 * np.log10(nr), abs=0.15)


def test_detnet_is_per_stream_plus_array_gain():
    """``--snr-def detnet`` at S dB is, on average, ``per-stream`` at S - 10 log10(Nr) dB."""
    nt, nr, snr_db = 4, 16, 12.0
    generator = torch.Generator().manual_seed(5)
    d_signal, d_noise = _mimoc(3000, nt, nr, snr_db, generator)
    shifted = snr_db - 10 * np.log10(nr)
    p_signal, p_noise = _mimoc(3000, nt, nr, shifted, generator, "per-stream")
    assert d_signal / d_noise == pytest.approx(p_signal / p_noise, rel=0.03)
    # per-rx at S + 10 log10(Nt / Nr) dB is the same operating point again.
    r_signal, r_noise = _mimoc(3000, nt, nr, snr_db + 10 * np.log10(nt / nr), generator, "per-rx")
    assert d_signal / d_noise == pytest.approx(r_signal / r_noise, rel=0.03)


def _decisions(modulation, snr_db, seed):
    from mimoc.sim.detectors.linear import lmmse, mmse

    system = MIMOSystem(8, 8, modulation)
    b = system.sample(3000, snr_db, torch.Generator().manual_seed(seed), torch.float64)
    const = system.constellation
    biased = const.indices_of_real(mmse(b.H, b.y, b.noise_var, const))
    unbiased = const.indices_of_real(lmmse(b.H, b.y, b.noise_var, const))
    return b.indices, biased, unbiased


def test_qpsk_decisions_of_mmse_and_lmmse_are_identical():
    """A positive per-stream scale keeps every sign: the baseline switch changes no QPSK row."""
    _, biased, unbiased = _decisions("qpsk", 5.0, 1)
    assert torch.equal(biased, unbiased)


def test_unbiased_lmmse_beats_biased_mmse_at_16qam():
    truth, biased, unbiased = _decisions("16qam", 14.0, 2)
    biased_errors = int((biased != truth).sum())
    unbiased_errors = int((unbiased != truth).sum())
    assert unbiased_errors < 0.97 * biased_errors


@pytest.mark.parametrize("nt, nr, snr_db", [(4, 8, 10.0), (30, 60, 12.0)])
def test_real_detnet_convention_matches_the_authors_real_bpsk_generator(nt, nr, snr_db):
    """The authors' real BPSK code: H [Nr, K] with N(0, 1) entries, x in {+-1}^K, noise
    N(0, sigma^2) per real dimension with sigma^2 = tr(H^T H) / (K SNR), K = Nt."""
    system = MIMOSystem(nt, nr, "bpsk", system="real", snr_def="detnet")
    batch = system.sample(4000, snr_db, torch.Generator().manual_seed(3), torch.float64)
    trace = batch.H.square().sum(dim=(-2, -1))
    sigma2 = trace / (nt * 10 ** (snr_db / 10))
    assert torch.allclose(batch.noise_var / 2, sigma2)          # per draw, exactly
    noise = batch.y - batch.x @ batch.H.transpose(-1, -2)
    measured = noise.square().mean(dim=(-2, -1)).mean() / sigma2.mean()
    assert abs(float(measured) - 1.0) < 0.03                    # and what is drawn
    # the signal per real receive dimension: K E[x^2] = Nt (entries of variance 1)
    received = (batch.x @ batch.H.transpose(-1, -2)).square().mean()
    assert abs(float(received) / nt - 1.0) < 0.03
