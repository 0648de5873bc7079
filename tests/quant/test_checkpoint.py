"""Quantized checkpoints: round trip, plain files, malformed sections."""

import pytest
import torch

from mimoc.detectors import load_detector, save_detector
from mimoc.detectors.checkpoint import checkpoint_dict
from mimoc.detectors.training import TrainOptions
from mimoc.errors import ModelFileError, UsageError
from mimoc.quant import QuantizedDetector, load_quantized, quantize, save_quantized

from .conftest import tiny


@pytest.fixture(scope="module")
def quantized():
    options = TrainOptions(batch=16, snr_db=(0.0, 10.0))
    model = tiny("sdnet")
    recipe = quantize(model, "kaq-ptq", options=options, calib_batches=1, calib_batch=8,
                      val_batch=0)
    return model, recipe


def test_round_trip_is_exact(quantized, tmp_path, generator):
    model, recipe = quantized
    path = save_quantized(model, recipe, tmp_path / "q.pt", training={"steps": 3})
    loaded, back = load_quantized(path)
    assert back.method == "kaq-ptq" and back.bits == 4
    assert back.layers.keys() == recipe.layers.keys()
    for name, lq in recipe.layers.items():
        assert torch.equal(back.layers[name].weight_scale, lq.weight_scale)
        assert back.layers[name].act == lq.act
    assert back.info["search"].keys() == recipe.info["search"].keys()
    H, y = torch.randn(2, 8, 4, generator=generator), torch.randn(2, 3, 8, generator=generator)
    assert torch.equal(QuantizedDetector(loaded, back)(H, y),
                       QuantizedDetector(model, recipe)(H, y))
    # a plain loader still reads it, as the fp32 model
    assert torch.equal(load_detector(path)(H, y), model(H, y))
    raw = torch.load(path, weights_only=True)
    assert raw["training"] == {"steps": 3} and "quantization" in raw


def test_plain_checkpoint_has_no_recipe(tmp_path):
    model = tiny("detnet")
    save_detector(model, tmp_path / "plain.pt")
    loaded, recipe = load_quantized(tmp_path / "plain.pt")
    assert recipe is None and type(loaded).__name__ == "DetNet"


def _write(tmp_path, model, section):
    payload = checkpoint_dict(model)
    payload["quantization"] = section
    torch.save(payload, tmp_path / "bad.pt")
    return tmp_path / "bad.pt"


@pytest.mark.parametrize("mutate,needle", [
    (lambda s: s.update(version=99), "version"),
    (lambda s: s.update(method="magic"), "method"),
    (lambda s: s.update(bits=12), "bits"),
    (lambda s: next(iter(s["layers"].values())).update(weight_scale=torch.tensor([-1.0])),
     "weight_scale"),
    (lambda s: next(iter(s["layers"].values()))["act"].update(mode="clever"), "activation"),
    (lambda s: s["layers"].update({"nope.fc": next(iter(s["layers"].values()))}), "nope.fc"),
])
def test_malformed_section_is_refused_in_one_line(quantized, tmp_path, mutate, needle):
    model, recipe = quantized
    section = recipe.to_dict()
    mutate(section)
    path = _write(tmp_path, model, section)
    with pytest.raises(ModelFileError) as err:
        load_quantized(path)
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert str(path) in str(err.value)


def test_section_of_wrong_type_is_refused(quantized, tmp_path):
    model, _ = quantized
    with pytest.raises(ModelFileError, match="quantization section"):
        load_quantized(_write(tmp_path, model, [1, 2]))


def test_recipe_must_fit_the_model(quantized, tmp_path):
    _, recipe = quantized
    with pytest.raises(UsageError, match="not a Linear/Conv2d"):
        save_quantized(tiny("detnet"), recipe, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_difference_coding_round_trips_and_is_checked(tmp_path, generator):
    options = TrainOptions(batch=16, snr_db=(0.0, 10.0))
    model = tiny("detnet")
    recipe = quantize(model, "minmax", options=options, calib_batches=1, calib_batch=8,
                      val_batch=0)
    path = save_quantized(model, recipe, tmp_path / "q.pt")
    loaded, back = load_quantized(path)
    assert back.layers["blocks.1.fc1"].difference == (0, 8, 4)
    assert back.layers["blocks.1.fc2"].difference is None
    H, y = torch.randn(2, 8, 4, generator=generator), torch.randn(2, 3, 8, generator=generator)
    assert torch.equal(QuantizedDetector(loaded, back)(H, y),
                       QuantizedDetector(model, recipe)(H, y))
    for bad in ([0, 8], [0, 2, 4], [-1, 8, 4], "abc"):  # short, overlapping, negative, junk
        section = recipe.to_dict()
        section["layers"]["blocks.1.fc1"]["difference"] = bad
        with pytest.raises(ModelFileError, match="blocks.1.fc1"):
            load_quantized(_write(tmp_path, model, section))
    section = recipe.to_dict()
    section["layers"]["blocks.1.fc1"]["difference"] = [0, 20, 4]  # past the 16 inputs
    with pytest.raises(ModelFileError, match="does not fit"):
        load_quantized(_write(tmp_path, model, section))
