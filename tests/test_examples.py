"""The Python-API examples in examples/ run (on a tiny model, with small symbol budgets).

Each script that shows a use of the API is run as a user would (``python examples/X.py``)
with ``--model`` pointing at a tiny untrained DetNet so that the test stays quick; the
training scripts (minutes to hours) and the README regenerator (which rewrites README.md)
are listed in :data:`NOT_RUN` with the reason, and every other script must be in
:data:`RUNS`, so a new example cannot go untested.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mimoc.detectors import build_detector, save_detector

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

#: script -> extra arguments (after --model TINY).
RUNS = {
    "compile_and_budget.py": ["--max-symbols", "2000"],
    "ber_compare_targets.py": ["--snr", "0,8", "--max-symbols", "2000", "--c2c", "0,0.04",
                               "--plot", "{tmp}/ber.png"],
    "custom_processor.py": [],
}
NOT_RUN = {
    "train_detnet.py": "trains the example models (tens of minutes)",
    "train_paper_detnet.py": "trains the paper-size models (hours; its staging and --resume "
                             "are tested in test_train_paper_detnet.py)",
    "train_sdnet.py": "trains the example models (tens of minutes)",
    "train_remimo.py": "trains the example models (tens of minutes)",
    "train_noise_aware.py": "trains the noise-aware example model (tens of minutes)",
    "quantize_models.py": "quantizes the example models (KAQ training: minutes)",
    "regenerate_readme_figures.py": "rewrites README.md and docs/figures (run by hand on a "
                                    "quiet machine)",
}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    torch.manual_seed(0)
    model = build_detector("detnet", nt=2, nr=4, modulation="qpsk", layers=2, hidden=16,
                           v_dim=4).eval()
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_detector(model, path)
    return path


def test_every_example_is_run_or_excused():
    scripts = {p.name for p in EXAMPLES.glob("*.py")}
    assert scripts - set(RUNS) <= set(NOT_RUN), scripts - set(RUNS) - set(NOT_RUN)
    assert set(RUNS) <= scripts


@pytest.mark.slow  # each script compiles for both targets: tens of seconds on a busy machine
@pytest.mark.parametrize("script", sorted(RUNS))
def test_example_runs(script, tiny_model, tmp_path):
    args = [a.format(tmp=tmp_path) for a in RUNS[script]]
    env = {**os.environ, "MPLBACKEND": "Agg"}
    result = subprocess.run([sys.executable, str(EXAMPLES / script), "--model", str(tiny_model),
                             *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip()
    if script == "ber_compare_targets.py":
        assert (tmp_path / "ber.png").read_bytes()[:4] == b"\x89PNG"
    if script == "custom_processor.py":
        last = result.stdout.strip().splitlines()[-1]
        values = [part.split()[0] for part in last.split("= ")[1:]]
        assert values[0] == values[1], last  # FLOPs / rate = the budget's number
