"""Shared pytest fixtures."""

import pytest
import torch


@pytest.fixture
def generator() -> torch.Generator:
    """A fixed-seed torch generator, fresh for every test."""
    return torch.Generator().manual_seed(20261124)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than about 20 s (deselect with "
                                       "-m 'not slow')")
