"""examples/train_sdnet.py regimes: the shipped (wide) one unchanged, the paper's at 25 dB."""

from __future__ import annotations

import pytest
from script_loader import ROOT, loaded_script

from mimoc.detectors import load_checkpoint
from mimoc.detectors.learngene import task_system
from mimoc.detectors.sdnet import SDNetConfig
from mimoc.sim import ber
from mimoc.sim.channels import CSIModel
from mimoc.sim.multipath import HELD_OUT_TASKS

SCRIPT = ROOT / "examples" / "train_sdnet.py"
SHIPPED = ROOT / "examples" / "models" / "sdnet_8x32_qpsk.pt"


@pytest.fixture(scope="module")
def script():
    with loaded_script(SCRIPT, "train_sdnet") as module:
        yield module


@pytest.mark.skipif(not SHIPPED.is_file(), reason="the shipped SDNet example is not present")
def test_wide_regime_reproduces_the_shipped_models_options(script):
    wide = script.REGIMES["wide"]
    shipped = load_checkpoint(SHIPPED).training
    options = script.individual_options(wide.individual_steps, wide).to_dict()
    options["channel"] = f"task:{wide.target_task}"
    assert options == shipped["options"]
    assert shipped["channel_task"] == f"task:{wide.target_task}"
    assert shipped["learngene"]["file"] == f"{wide.stem}_learngene.pt"


def test_paper_regime_is_a_fixed_snr_with_pilots_at_that_snr(script):
    paper, wide = script.REGIMES["paper"], script.REGIMES["wide"]
    lo, hi = paper.snr_db
    assert lo == hi == 25.0
    csi = CSIModel.parse(paper.csi)
    assert csi.kind == "ls" and csi.pilots == 16 and csi.snr_db == lo
    assert paper.target_task in HELD_OUT_TASKS
    assert paper.stem != wide.stem  # the shipped files are not overwritten
    collective = script.collective_options(30, paper)
    assert collective.snr_db == paper.snr_db and collective.csi == paper.csi


def test_paper_target_task_is_as_hard_as_the_papers_task_b(script):
    # the paper's task B at 25 dB: ZF SER 0.126, MMSE 0.098; frozen task 1000 is its analogue
    paper = script.REGIMES["paper"]
    target = paper.target()
    assert target.spec == f"task:{paper.target_task}/frozen"
    options = script.individual_options(10, paper)
    system = task_system(options, SDNetConfig(nt=8, nr=32), target)
    c = system.constellation
    result = ber.simulate({"zf": ber.classical("zf", c), "lmmse": ber.classical("lmmse", c)},
                          system, [paper.snr_db[0]], seed=3, max_symbols=16_000,
                          min_errors=16_000)
    zf_ser, lmmse_ser = (result.curves[n][0].ser for n in ("zf", "lmmse"))
    assert 0.08 < zf_ser < 0.2
    assert 0.6 * zf_ser < lmmse_ser < zf_ser

