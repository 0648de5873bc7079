"""The Python API's ``detect`` methods refuse bad inputs with one-line UsageErrors, the same
way for the ONNX artifact (whole and staged) and the crossbar simulator: no onnxruntime or
numpy exception, no imaginary part silently dropped, no NaN result from a NaN input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mimoc.api import compile as compile_model
from mimoc.detectors import build_detector, save_detector
from mimoc.errors import UsageError
from mimoc.runtime import load_artifact
from mimoc.runtime.imc import load_schedule

CONFIG = dict(nt=2, nr=4, modulation="qpsk", layers=2, hidden=8, v_dim=4)
B, S = 2, 3


@pytest.fixture(scope="module")
def runners(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("inputs")
    save_detector(build_detector("detnet", **CONFIG).eval(), root / "m.pt")
    compile_model(root / "m.pt", out=root / "onnx")
    compile_model(root / "m.pt", out=root / "xb", target="crossbar")
    artifact, schedule = load_artifact(root / "onnx"), load_schedule(root / "xb")
    return {"onnx detect": artifact.detect, "onnx detect_staged": artifact.detect_staged,
            "crossbar detect": schedule.detect}


def link(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((B, 8, 4)).astype(np.float32),
            rng.standard_normal((B, S, 8)).astype(np.float32))


def with_value(array: np.ndarray, value: float) -> np.ndarray:
    array = array.copy()
    array[0, 0, 0] = value
    return array


def bad_inputs() -> dict[str, tuple]:
    H, y = link()
    return {
        "S = 0": (H, y[:, :0], "every size of [B, S, 2Nr] must be at least 1"),
        "B = 0": (H[:0], y[:0], "every size of [B, 2Nr, 2Nt] must be at least 1"),
        "a string": ("H", y, "H must be an array or tensor of real numbers"),
        "None": (H, None, "y must be an array or tensor of real numbers"),
        "a ragged list": ([[1.0, 2.0], [3.0]], y, "got list"),
        "complex numpy": (H.astype(np.complex64) * 1j, y, "H is complex; the detectors take "
                          "the real-valued layout H [B, 2Nr, 2Nt]"),
        "complex torch": (H, torch.complex(torch.tensor(y), torch.tensor(y)),
                          "y is complex; the detectors take the real-valued layout"),
        "NaN in H": (with_value(H, np.nan), y, "H has 1 value(s) that are NaN or Inf"),
        "Inf in y": (H, with_value(y, -np.inf), "y has 1 value(s) that are NaN or Inf"),
        "batch mismatch": (H, y[:1], "different batch sizes (2 and 1)"),
        "2-D H": (H[0], y, "H has shape [8, 4]; expected [B, 2Nr, 2Nt]"),
        "y of another link": (H, y[..., :6], "y has 6 values per symbol vector but H has 8"),
        "booleans": (H > 0, y, "must hold real numbers [B, 2Nr, 2Nt], got dtype bool"),
    }


BAD = list(bad_inputs())
RUNNERS = ["onnx detect", "onnx detect_staged", "crossbar detect"]


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("case", BAD)
def test_bad_inputs_are_one_line_usage_errors(runners, runner, case):
    H, y, message = bad_inputs()[case]
    with pytest.raises(UsageError) as caught:
        runners[runner](H, y)
    text = str(caught.value)
    assert message in text and "\n" not in text, text


@pytest.mark.parametrize("case", BAD)
def test_the_artifact_and_the_simulator_refuse_the_same_way(runners, case):
    H, y, _ = bad_inputs()[case]
    messages = set()
    for runner in RUNNERS:
        with pytest.raises(UsageError) as caught:
            runners[runner](H, y)
        messages.add(str(caught.value))
    assert len(messages) == 1, messages


def test_values_beyond_float32_are_refused_by_the_onnx_artifact(runners):
    H, y = link()
    H = with_value(H.astype(np.float64), 1e39)  # finite, but inf in float32
    with pytest.raises(UsageError, match="beyond the range of float32"):
        runners["onnx detect"](H, y)


@pytest.mark.parametrize("seed", ["x", -1, True, 1.5, 2 ** 64])
def test_bad_seeds_are_refused(runners, seed):
    schedule = runners["crossbar detect"].__self__
    H, y = link()
    with pytest.raises(UsageError, match="seed must be an integer"):
        schedule.detect(H, y, seed=seed)
    with pytest.raises(UsageError, match="seed must be an integer"):
        schedule.engine(seed=seed)


def test_numpy_integer_seeds_work(runners):
    schedule = runners["crossbar detect"].__self__
    H, y = link()
    assert torch.equal(schedule.detect(H, y, seed=np.int64(3)), schedule.detect(H, y, seed=3))


def test_stages_refuse_a_state_of_other_channels(runners):
    artifact = runners["onnx detect"].__self__
    H, y = link()
    with pytest.raises(UsageError, match="slot state is for 1 channels but y has B = 2"):
        artifact.run_symbols(y, artifact.run_slot(H[:1]))
    with pytest.raises(UsageError, match="state has no array"):
        artifact.run_symbols(y, {})
    with pytest.raises(UsageError, match="state must be the dict that run_slot"):
        artifact.run_symbols(y, "state")


@pytest.mark.parametrize("runner", RUNNERS)
def test_valid_inputs_in_every_form_give_the_same_result(runners, runner):
    H, y = link()
    reference = np.asarray(runners[runner](H, y))
    for H_in, y_in in [(H.astype(np.float64), y.astype(np.float64)),
                       (torch.from_numpy(H), torch.from_numpy(y)),
                       (H.tolist(), y.tolist())]:
        out = runners[runner](H_in, y_in)
        assert np.array_equal(np.asarray(out), reference)
    assert np.isfinite(reference).all() and reference.shape == (B, S, 4)


def test_the_quick_finite_check_still_names_every_bad_value():
    """float32 C-contiguous arrays take a quick path (a finite sum); NaN, Inf and finite
    values whose sum overflows are still told apart exactly."""
    import numpy as np
    import pytest

    from mimoc.errors import UsageError
    from mimoc.runtime.inputs import real_array

    big = np.full((1, 2, 2), 3e38, dtype=np.float32)  # finite; the sum overflows
    assert real_array(big, "H") is big
    for bad, count in ((np.nan, 1), (np.inf, 1)):
        array = np.zeros((1, 2, 2), dtype=np.float32)
        array[0, 1, 0] = bad
        with pytest.raises(UsageError, match=f"{count} value"):
            real_array(array, "H")
