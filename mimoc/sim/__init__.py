"""Wireless simulation core: modulations, channels, SNR conventions, links,
classical detectors and the BER/SER engine."""

from mimoc.sim.channels import (
    ChannelModel,
    CSIModel,
    complex_matrix,
    complex_vector,
    real_matrix,
    real_vector,
)
from mimoc.sim.modulation import MODULATIONS, Constellation, get_constellation
from mimoc.sim.snr import SNR_DEFINITIONS, noise_variance
from mimoc.sim.system import LinkBatch, MIMOSystem

__all__ = [
    "MODULATIONS", "SNR_DEFINITIONS", "CSIModel", "ChannelModel", "Constellation", "LinkBatch",
    "MIMOSystem", "complex_matrix", "complex_vector", "get_constellation", "noise_variance",
    "real_matrix", "real_vector",
]
