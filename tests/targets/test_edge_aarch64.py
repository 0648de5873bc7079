"""The aarch64 cross-compile, checked under qemu-user (benchmarks/edge_aarch64.py): runs
only where ``qemu-aarch64``, the aarch64 C libraries and the aarch64 ``iree-run-module``
are installed (see that script's docstring)."""

from __future__ import annotations

import importlib.util
import platform
from pathlib import Path

import pytest
import torch

from mimoc.detectors import build_detector, save_detector
from mimoc.errors import ModelFileError
from mimoc.runtime import load

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "edge_aarch64.py"


def _script():
    spec = importlib.util.spec_from_file_location("edge_aarch64", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_aarch64_module_under_qemu_decides_as_the_host(tmp_path):
    edge = _script()
    runner = edge.default_runner()
    missing = edge.missing_tools(runner, edge.DEFAULT_SYSROOT)
    if missing:
        pytest.skip("; ".join(missing))
    torch.manual_seed(0)
    save_detector(build_detector("detnet", nt=2, nr=4, modulation="qpsk", layers=3,
                                 hidden=16, v_dim=4).eval(), tmp_path / "detnet.pt")
    result = edge.check(tmp_path / "detnet.pt", runner, edge.DEFAULT_SYSROOT, tmp_path)
    assert result["decisions_equal"], result
    assert result["max_abs_difference"] <= 1e-4 * result["max_abs_output"], result
    assert "--iree-llvmcpu-target-triple=aarch64-linux-gnu" in result["aarch64_flags"]
    if platform.machine().lower() in ("x86_64", "amd64"):  # the host runner refuses it
        with pytest.raises(ModelFileError, match="compiled for aarch64-linux-gnu"):
            load(tmp_path / "aarch64")
