"""Device profiles: the shipped Table III devices, user profiles, validation, verify loop."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from mimoc.errors import MimocError
from mimoc.hardware.devices import (
    SCHEMA,
    Device,
    DeviceError,
    device_from_dict,
    list_devices,
    load_device,
)
from mimoc.hardware.programming import program_with_verify, pulses_from_reset

# IM-MIMO Table III: pulse width, C2C pot./dep., Gmin, Gmax (uS), write voltages, states
TABLE_III = {
    "rram-zeng2023": (10e-9, 0.0441, 0.0544, 79.93, 230.99, 0.65, -0.575, 256),
    "fefet-jerry2017": (75e-9, 0.005, 0.005, 0.04, 1.79, 3.65, -2.95, 32),
    "ftj-luo2022": (630e-12, 0.0365, 0.0365, 1.0, 27.5, 4.0, -5.0, 150),
}


def ftj_profile() -> dict:
    return load_device("ftj-luo2022").to_dict()


def write(tmp_path, data, name="dev.json") -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def test_shipped_devices_match_table_iii():
    assert list_devices() == tuple(sorted(TABLE_III))
    for name, values in TABLE_III.items():
        dev = load_device(name)
        got = (dev.pulse_width_s, dev.c2c_potentiation, dev.c2c_depression, dev.g_min_us,
               dev.g_max_us, dev.v_write_pos, dev.v_write_neg, dev.states)
        assert got == pytest.approx(values, rel=1e-12)
        assert dev.name == name
        assert dev.source and dev.description
        assert dev.step_us == pytest.approx((values[4] - values[3]) / values[7])
        assert all(0 < t < 1e-6 for t in dev.stage_delays().values())


def test_device_is_frozen_and_round_trips(tmp_path):
    dev = load_device("rram-zeng2023")
    with pytest.raises(dataclasses.FrozenInstanceError):
        dev.states = 3
    again = load_device(write(tmp_path, dev.to_dict()))
    assert again == dev
    assert load_device(dev) is dev


def test_user_profile_with_defaults(tmp_path):
    data = {k: v for k, v in ftj_profile().items()
            if k in ("name", "pulse_width_s", "c2c_potentiation", "c2c_depression", "g_min_us",
                     "g_max_us", "v_write_pos", "v_write_neg", "states")}
    data["name"] = "my-ftj"
    dev = load_device(write(tmp_path, data))
    assert dev.name == "my-ftj" and dev.read_s == 1e-9 and dev.adc_bits == 8


def test_derived_quantities():
    dev = load_device("rram-zeng2023")
    assert dev.range_us == pytest.approx(230.99 - 79.93)
    assert dev.c2c("depression") == 0.0544
    assert dev.c2c_sigma_us("potentiation") == pytest.approx(0.0441 * dev.range_us)
    assert dev.verify_tolerance_us == pytest.approx(dev.verify_tolerance * dev.range_us)
    pulses = pulses_from_reset(torch.tensor([dev.g_min_us, dev.g_min_us + 2.4 * dev.step_us,
                                             dev.g_max_us, dev.g_max_us + 10]), dev)
    assert pulses.tolist() == [0, 2, 256, 256]
    noisy = dev.with_c2c(0.01)
    assert (noisy.c2c_potentiation, noisy.c2c_depression) == (0.01, 0.01)
    assert dev.with_c2c(depression=0.0).c2c_potentiation == 0.0441
    ideal = dev.ideal(states=4096)
    assert ideal.c2c_potentiation == ideal.c2c_depression == 0 and ideal.states == 4096
    assert ideal.adc_bits is None
    with pytest.raises(MimocError, match="direction"):
        dev.c2c("up")
    assert "4.41% pot. / 5.44% dep." in dev.summary()


@pytest.mark.parametrize("change, field", [
    ({"g_min_us": 30.0}, "g_max_us"),          # Gmin >= Gmax
    ({"g_min_us": 27.5}, "g_max_us"),          # Gmin == Gmax
    ({"g_min_us": -1.0}, "g_min_us"),
    ({"states": 0}, "states"),
    ({"states": -5}, "states"),
    ({"states": 150.0}, "states"),
    ({"states": True}, "states"),
    ({"pulse_width_s": 0.0}, "pulse_width_s"),
    ({"pulse_width_s": -1e-9}, "pulse_width_s"),
    ({"pulse_width_s": 630.0}, "pulse_width_s"),  # ns given as s
    ({"tia_s": -1e-9}, "tia_s"),
    ({"verify_read_s": -1.0}, "verify_read_s"),
    ({"c2c_potentiation": 1.5}, "c2c_potentiation"),
    ({"c2c_depression": -0.01}, "c2c_depression"),
    ({"c2c_depression": "3%"}, "c2c_depression"),
    ({"v_write_pos": -4.0}, "v_write_pos"),
    ({"v_write_neg": 5.0}, "v_write_neg"),
    ({"adc_bits": 0}, "adc_bits"),
    ({"verify_tolerance": 2.0}, "verify_tolerance"),
    ({"verify_max_iterations": 0}, "verify_max_iterations"),
    ({"name": ""}, "name"),
    ({"name": 7}, "name"),
    ({"g_max_us": None}, "g_max_us"),
])
def test_invalid_values_are_refused_naming_the_field(tmp_path, change, field):
    data = ftj_profile() | change
    with pytest.raises(DeviceError) as err:
        load_device(write(tmp_path, data))
    message = str(err.value)
    assert "\n" not in message and field in message and "dev.json" in message
    with pytest.raises(DeviceError, match=field):  # the dataclass checks the same
        Device(**(dataclasses.asdict(load_device("ftj-luo2022")) | change))


def test_unknown_and_missing_keys(tmp_path):
    with pytest.raises(DeviceError, match="unknown key 'g_mx_us'; did you mean 'g_max_us'"):
        load_device(write(tmp_path, ftj_profile() | {"g_mx_us": 3.0}))
    with pytest.raises(DeviceError, match="unknown key 'colour'"):
        load_device(write(tmp_path, ftj_profile() | {"colour": "red"}))
    data = ftj_profile()
    del data["states"]
    with pytest.raises(DeviceError, match="missing key 'states'"):
        load_device(write(tmp_path, data))
    with pytest.raises(DeviceError, match="schema"):
        load_device(write(tmp_path, ftj_profile() | {"schema": "mimoc-device/9"}))
    assert device_from_dict({k: v for k, v in ftj_profile().items() if k != "schema"}).name \
        == "ftj-luo2022"


@pytest.mark.parametrize("text, match", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    ('{"name": "x", "name": "y"}', "appears twice"),
    (json.dumps(ftj_profile()).replace('"g_min_us": 1.0', '"g_min_us": NaN'), "NaN"),
    (json.dumps(ftj_profile()).replace('"g_min_us": 1.0', '"g_min_us": Infinity'),
     "Infinity"),
    ("", "not valid JSON"),
])
def test_files_that_are_not_profiles(tmp_path, text, match):
    with pytest.raises(DeviceError, match=match) as err:
        load_device(write(tmp_path, text))
    assert "\n" not in str(err.value)


def test_binary_file_and_unknown_names(tmp_path):
    binary = tmp_path / "model.pt"
    binary.write_bytes(b"\x80\x02\xff\xfe" * 8)
    with pytest.raises(DeviceError, match="not UTF-8"):
        load_device(binary)
    with pytest.raises(DeviceError, match="did you mean 'ftj-luo2022'"):
        load_device("ftj-luo2021")
    with pytest.raises(DeviceError, match="shipped devices: fefet-jerry2017"):
        load_device("memristor")
    with pytest.raises(DeviceError, match="does not exist"):
        load_device(str(tmp_path / "missing.json"))
    with pytest.raises(DeviceError, match="folder"):
        load_device(tmp_path)
    with pytest.raises(DeviceError):
        load_device(3.5)
    assert issubclass(DeviceError, MimocError)
    assert SCHEMA == ftj_profile()["schema"]


def test_verify_loop_reaches_tolerance_and_times_rows():
    gen = torch.Generator().manual_seed(0)
    for name in list_devices():
        dev = load_device(name)
        target = dev.g_min_us + torch.rand(3, 16, 12, generator=gen,
                                           dtype=torch.float64) * dev.range_us
        out = program_with_verify(target, dev, torch.Generator().manual_seed(1))
        assert out.converged.all()
        limit = max(dev.verify_tolerance_us, dev.step_us / 2) + 1e-9
        assert ((out.conductance_us - target).abs() <= limit).all()
        assert out.row_time_s.shape == (3, 16)
        # every row takes at least its open-loop pulses and one verify read
        open_loop = pulses_from_reset(target, dev).amax(dim=-1) * dev.pulse_width_s
        assert (out.row_time_s >= open_loop + dev.verify_read_s - 1e-18).all()
        assert out.total_time_s == pytest.approx(float(out.row_time_s.sum()))
        again = program_with_verify(target, dev, torch.Generator().manual_seed(1))
        assert torch.equal(again.conductance_us, out.conductance_us)


def test_verify_loop_is_one_pass_for_an_ideal_device():
    dev = load_device("ftj-luo2022").ideal()
    target = dev.g_min_us + torch.arange(12, dtype=torch.float64).reshape(3, 4) * dev.step_us
    out = program_with_verify(target, dev)
    assert torch.allclose(out.conductance_us, target)
    assert (out.iterations == 1).all()
    expected = (torch.tensor([3.0, 7.0, 11.0]) * dev.pulse_width_s + dev.verify_read_s)
    assert torch.allclose(out.row_time_s, expected.to(torch.float64))
    assert torch.equal(out.pulses, torch.arange(12).reshape(3, 4))


def test_verify_loop_refuses_bad_targets():
    dev = load_device("fefet-jerry2017")
    with pytest.raises(MimocError, match="Gmin, Gmax"):
        program_with_verify(torch.full((2, 2), 5.0), dev)
    with pytest.raises(MimocError, match="finite"):
        program_with_verify(torch.full((2, 2), math.nan), dev)
    with pytest.raises(MimocError, match="rows, cols"):
        program_with_verify(torch.ones(3), dev)
