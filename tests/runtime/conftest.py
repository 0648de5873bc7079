"""Fixtures for the runtime tests."""

from __future__ import annotations

import sys
from pathlib import Path

# the independent (non-zoo) detectors and the link sampler of the compiler tests
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "compiler"))
