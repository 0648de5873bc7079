"""Shared pytest fixtures."""

import pytest
import torch


@pytest.fixture
def generator() -> torch.Generator:
    """A fixed-seed torch generator, fresh for every test."""
    return torch.Generator().manual_seed(20261124)
