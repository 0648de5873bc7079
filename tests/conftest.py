"""Shared pytest setup: one CPU thread, seeded random draws and Hypothesis examples."""

import os
import random

# One thread for the whole suite, set before torch is imported (here and in every subprocess,
# which inherits the environment). The test tensors are tiny: on a shared 2-core machine extra
# threads only spin against other processes and turn a 1 s test into a 50 s one.
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import settings  # noqa: E402

torch.set_num_threads(1)

# Hypothesis draws the same examples on every run, so a failure is reproducible and a pass
# does not depend on luck.
settings.register_profile("mimoc", derandomize=True)
settings.load_profile("mimoc")


@pytest.fixture(autouse=True)
def _seed_global_generators():
    """Every test starts from the same global random state (torch, numpy, random), so draws
    from the global generators -- module initialisation, ``torch.randn`` without a
    generator -- are the same on every run and in any test order."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture
def generator() -> torch.Generator:
    """A fixed-seed torch generator, fresh for every test."""
    return torch.Generator().manual_seed(20261124)

