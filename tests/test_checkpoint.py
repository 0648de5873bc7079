"""The mimoc checkpoint: bit-exact round trips and refusal of everything else."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from tiny_detector import TINY_CSI, TinyConfig, TinyDetector, tiny_config, zoo_families

from mimoc import cli
from mimoc.detectors import (
    FAMILIES,
    build_detector,
    load_checkpoint,
    load_detector,
    save_detector,
)
from mimoc.detectors.checkpoint import FORMAT, FORMAT_VERSION, checkpoint_dict
from mimoc.detectors.training import TrainOptions, train_detector
from mimoc.errors import ModelFileError, UsageError

TINY = {"tiny": TinyDetector}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _inputs(model, batch=5, slot=3, seed=1):
    gen = torch.Generator().manual_seed(seed)
    nt, nr = model.config.nt, model.config.nr
    return (torch.randn(batch, 2 * nr, 2 * nt, generator=gen),
            torch.randn(batch, slot, 2 * nr, generator=gen))


def _trained_tiny(steps=5):
    model = TinyDetector(TinyConfig(hidden=6, widths=(5,)))
    report = train_detector(model, TrainOptions(steps=steps, batch=16, val_batch=32),
                            progress=False)
    return model, report


# -- round trip --------------------------------------------------------------------------

def test_round_trip_is_bit_exact_and_keeps_metadata(tmp_path):
    model, report = _trained_tiny()
    path = save_detector(model, tmp_path / "tiny.pt", training=report)
    ckpt = load_checkpoint(path, TINY)
    loaded = ckpt.model
    assert isinstance(loaded, TinyDetector) and not loaded.training
    assert loaded.config == model.config and loaded.config.widths == (5,)
    H, y = _inputs(model)
    assert torch.equal(model(H, y), loaded(H, y))
    assert ckpt.training["val_ser"] == report.val_ser
    assert ckpt.training["snr_db"] == list(report.options.snr_db)
    assert ckpt.training["steps"] == 5 and ckpt.training["seed"] == 0
    assert ckpt.family == "tiny" and ckpt.format_version == FORMAT_VERSION


def test_file_is_plain_data_readable_with_weights_only(tmp_path):
    model, report = _trained_tiny(steps=2)
    path = save_detector(model, tmp_path / "tiny.pt", training=report)
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FORMAT and raw["format_version"] == 1 and raw["family"] == "tiny"
    assert raw["config"]["hidden"] == 6 and isinstance(raw["mimoc_version"], str)
    assert set(raw["state_dict"]) == set(model.state_dict())
    assert raw["training"]["options"]["batch"] == 16


def test_save_is_atomic_and_overwrites(tmp_path):
    model, _ = _trained_tiny(steps=1)
    path = tmp_path / "m.pt"
    path.write_bytes(b"old")
    save_detector(model, path)
    assert os.listdir(tmp_path) == ["m.pt"]  # no temp file left behind
    assert load_detector(path, TINY).config == model.config
    with pytest.raises(UsageError, match="does not exist"):
        save_detector(model, tmp_path / "missing" / "m.pt")


def test_loading_leaves_the_global_rng_alone(tmp_path):
    model, _ = _trained_tiny(steps=1)
    path = save_detector(model, tmp_path / "m.pt")
    state = torch.get_rng_state()
    load_detector(path, TINY)
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("family", zoo_families())
def test_every_family_round_trips_bit_exactly(tmp_path, family):
    model = build_detector(family, **tiny_config(family))
    # a few steps so that running statistics (BatchNorm) and learned scalars move
    train_detector(model, TrainOptions(steps=3, batch=16, val_batch=0,
                                       csi=TINY_CSI.get(family, "perfect")), progress=False)
    path = save_detector(model, tmp_path / f"{family}.pt")
    loaded = load_detector(path)
    assert type(loaded) is FAMILIES[family] and not loaded.training
    assert loaded.config == model.config
    model.eval()
    H, y = _inputs(model)
    assert torch.equal(model(H, y), loaded(H, y))
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in loaded.state_dict().items())


# -- refusals ------------------------------------------------------------------------------

def _good(tmp_path):
    model, report = _trained_tiny(steps=1)
    return checkpoint_dict(model, report)


def _write(path, payload):
    torch.save(payload, path)


def _tamper(change):
    def writer(path, good):
        change(good)
        _write(path, good)
    return writer


def _set_config(**values):
    return _tamper(lambda good: good["config"].update(values))


def _set_weight(name, value):
    def change(good):
        good["state_dict"][name] = value(good["state_dict"][name])
    return _tamper(change)


def _truncated(path, good):
    _write(path, good)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _damaged(path, good):
    """Flip bytes inside a weight's data: the zip CRC no longer matches (torch.load would
    not notice)."""
    _write(path, good)
    data = bytearray(path.read_bytes())
    at = data.find(good["state_dict"]["mlp.0.weight"].numpy().tobytes())
    assert at > 0
    data[at:at + 16] = bytes(b ^ 0xFF for b in data[at:at + 16])
    path.write_bytes(bytes(data))


REFUSALS = {
    "pickled module": (lambda p, g: torch.save(TinyDetector(TinyConfig()), p),
                       "pickled Python code"),
    "pickled optimizer class": (lambda p, g: torch.save({"opt": torch.optim.SGD}, p),
                                "pickled Python code"),
    "truncated": (_truncated, "truncated or corrupt"),
    "random bytes": (lambda p, g: p.write_bytes(os.urandom(4096)), "not a torch checkpoint"),
    "random bytes after zip magic": (lambda p, g: p.write_bytes(b"PK\x03\x04" + os.urandom(500)),
                                     "truncated or corrupt"),
    "plain pickle": (lambda p, g: p.write_bytes(pickle.dumps({"a": 1})), "not a torch"),
    "empty file": (lambda p, g: p.write_bytes(b""), "empty file"),
    "bare state_dict": (lambda p, g: _write(p, g["state_dict"]), "bare state_dict"),
    "foreign dict": (lambda p, g: _write(p, {"epoch": 3, "model": {}}),
                     "not a mimoc detector checkpoint"),
    "a list": (lambda p, g: _write(p, [1, 2]), "holding a list"),
    "newer format": (_tamper(lambda g: g.update(format_version=99)), "newer mimoc"),
    "bad format version": (_tamper(lambda g: g.update(format_version="1")), "format_version"),
    "no state_dict": (_tamper(lambda g: g.pop("state_dict")), "lacks state_dict"),
    "unknown family": (_tamper(lambda g: g.update(family="hopfield")), "unknown detector family"),
    "family with newlines": (_tamper(lambda g: g.update(family="a\nb" * 1000)),
                             "unknown detector family"),
    "foreign keys with newlines": (lambda p, g: _write(p, {"x\ny": 1}), "not a mimoc detector"),
    "config unknown key": (_set_config(depth_charge=3), "unknown TinyConfig field"),
    "config wrong type": (_set_config(hidden="6"), "field 'hidden' must be int"),
    "config bool for int": (_set_config(hidden=True), "field 'hidden' must be int"),
    "config not a dict": (_tamper(lambda g: g.update(config=[1, 2])), "config must be a mapping"),
    "config nonsense size": (_set_config(hidden=-3), "hidden must be a positive integer"),
    "config huge size": (_set_config(hidden=10**9), "implausibly large"),
    "config huge tuple size": (_set_config(widths=(5, 10**8)), "implausibly large"),
    "config large size": (_set_config(hidden=5000), "config implies"),
    "config other size": (_set_config(hidden=7), "config implies"),
    "config bad modulation": (_set_config(modulation="8psk"), "unknown modulation"),
    "weights missing key": (_tamper(lambda g: g["state_dict"].pop("gain")), "missing gain"),
    "weights extra key": (_tamper(lambda g: g["state_dict"].update(extra=torch.zeros(2))),
                          "unexpected extra"),
    "weights wrong shape": (_set_weight("mlp.0.weight", lambda t: t[:, :1].clone()),
                            "has shape"),
    "weights wrong dtype": (_set_weight("mlp.0.weight", lambda t: t.double()), "float64"),
    "weights NaN": (_set_weight("mlp.0.weight", lambda t: t.index_fill(0, torch.tensor([0]),
                                                                         float("nan"))),
                    "NaN or Inf"),
    "weights Inf": (_set_weight("gain", lambda t: torch.full_like(t, float("inf"))),
                    "NaN or Inf"),
    "weights not tensors": (_tamper(lambda g: g["state_dict"].update(gain=1.0)),
                            "not a mapping of names to tensors"),
    "training not a dict": (_tamper(lambda g: g.update(training=[1])), "training metadata"),
    "training snr_db strings": (_tamper(lambda g: g["training"].update(snr_db=["0", "10"])),
                                "training metadata snr_db must be two finite numbers"),
    "training steps not a number": (_tamper(lambda g: g["training"].update(steps="many")),
                                    "training metadata steps"),
    "training holds a tensor": (_tamper(lambda g: g["training"].update(extra=torch.zeros(3))),
                                "holds a Tensor, not plain data"),
    "training option wrong type": (_tamper(lambda g: g["training"]["options"].update(slot="8")),
                                   "training option field 'slot' must be int"),
    "damaged (CRC)": (_damaged, "checksum (CRC-32)"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusals_raise_one_line_model_file_errors(tmp_path, case):
    writer, expected = REFUSALS[case]
    path = tmp_path / "bad.pt"
    writer(path, _good(tmp_path))
    with pytest.raises(ModelFileError) as info:
        load_detector(path, TINY)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert expected in message


def test_missing_file_folder_fifo_and_device_are_refused(tmp_path):
    with pytest.raises(ModelFileError, match="no such file"):
        load_detector(tmp_path / "nope.pt", TINY)
    with pytest.raises(ModelFileError, match="is a folder"):
        load_detector(tmp_path, TINY)
    os.mkfifo(tmp_path / "pipe.pt")  # opening it would block until a writer comes
    with pytest.raises(ModelFileError, match="is a FIFO"):
        load_detector(tmp_path / "pipe.pt", TINY)
    with pytest.raises(ModelFileError, match="is a device file"):
        load_detector(os.devnull, TINY)
    with pytest.raises(UsageError, match="got NoneType"):
        load_detector(None, TINY)


def test_pickled_code_is_never_unpickled(tmp_path):
    marker = tmp_path / "sprung"
    path = tmp_path / "evil.pt"
    torch.save(_Trap(marker), path)
    torch.load(path, weights_only=False)  # an unsafe loader springs the trap ...
    assert marker.read_text() == "sprung"
    marker.unlink()
    with pytest.raises(ModelFileError, match="never unpickles code"):
        load_detector(path, TINY)
    assert not marker.exists()  # ... mimoc's loader does not


def _spring(marker: str) -> None:
    with open(marker, "w") as f:
        f.write("sprung")


class _Trap:
    """Unpickling it calls ``_spring`` (as the code in a pickled model would run)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return _spring, (self.marker,)


@pytest.mark.parametrize("case", ["pickled module", "truncated", "config huge size",
                                  "weights NaN", "bare state_dict"])
def test_cli_refusal_is_exit_2_with_one_stderr_line(tmp_path, capsys, monkeypatch, case):
    monkeypatch.setitem(FAMILIES, "tiny", TinyDetector)
    writer, expected = REFUSALS[case]
    path = tmp_path / "bad.pt"
    writer(path, _good(tmp_path))
    capsys.readouterr()
    assert cli.main(["inspect", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("mimoc: error: ") and expected in err
