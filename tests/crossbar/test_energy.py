"""Energy and area (mimoc.hardware.energy) against hand-computed numbers, the new profile
fields in the schema, and the schedule's costs section."""

from __future__ import annotations

import dataclasses
import json

import pytest

from mimoc.errors import UsageError
from mimoc.hardware.devices import DeviceError, load_device
from mimoc.hardware.energy import COUNT_KEYS, slot_costs


def hand_device():
    """Round numbers: G 10..30 uS (mean 20 uS), 2 V / -3 V writes, 1 ns pulses."""
    return dataclasses.replace(
        load_device("ftj-luo2022"), g_min_us=10.0, g_max_us=30.0, v_write_pos=2.0,
        v_write_neg=-3.0, pulse_width_s=1e-9, read_s=2e-9, verify_read_s=1e-8, v_read=0.5,
        adc_bits=4, dac_bits=2, adc_fom_j=1e-14, dac_fom_j=2e-14, cell_area_f2=4.0,
        feature_nm=100.0, adc_area_um2=300.0, dac_area_um2=50.0)


def test_slot_costs_match_hand_computed_numbers():
    costs = slot_costs(hand_device(), {
        "program_pulses": 10, "depression_pulses": 2, "verify_reads": 3,
        "verify_row_cells": 4, "mvm_cell_reads": 100, "adc_conversions": 5,
        "dac_conversions": 7, "cells": 1000, "adcs": 2, "dacs": 3})
    e = costs["energy_breakdown_j"]
    # pulses: V^2 G t = 4 * 20e-6 * 1e-9 = 8e-14 J; 9 * 20e-6 * 1e-9 = 1.8e-13 J
    assert e["program"] == pytest.approx(10 * 8e-14 + 2 * 1.8e-13)
    # verify: 3 row reads x 4 cells x 0.25 * 20e-6 * 1e-8 = 5e-14 J each
    assert e["verify"] == pytest.approx(12 * 5e-14)
    assert e["read"] == pytest.approx(100 * 0.25 * 20e-6 * 2e-9)
    assert e["adc"] == pytest.approx(5 * 1e-14 * 16)
    assert e["dac"] == pytest.approx(7 * 2e-14 * 4)
    assert costs["energy_j"] == pytest.approx(sum(e.values()))
    a = costs["area_breakdown_um2"]
    assert a == pytest.approx({"cells": 1000 * 4 * 0.1 ** 2, "adc": 600.0, "dac": 150.0})
    assert costs["area_um2"] == pytest.approx(40.0 + 600.0 + 150.0)


def test_slot_costs_missing_keys_are_zero_and_ideal_converters_are_free():
    dev = dataclasses.replace(hand_device(), adc_bits=None)
    costs = slot_costs(dev, {"adc_conversions": 9})
    assert costs["energy_j"] == 0.0 and costs["area_um2"] == 0.0
    assert set(COUNT_KEYS) >= {"program_pulses", "verify_reads", "mvm_cell_reads"}


@pytest.mark.parametrize("counts, match", [
    ({"pulses": 1}, "unknown count 'pulses'"),
    ({"program_pulses": -1}, "program_pulses"),
    ({"cells": float("nan")}, "cells"),
    ({"verify_reads": 3}, "verify_row_cells"),
])
def test_slot_costs_refuses_bad_counts(counts, match):
    with pytest.raises(UsageError, match=match):
        slot_costs(hand_device(), counts)


@pytest.mark.parametrize("field, value", [
    ("v_read", -0.1), ("cell_area_f2", 0), ("feature_nm", -28), ("adc_fom_j", -1e-14),
    ("adc_area_um2", -1.0), ("dac_fom_j", "10 fJ"), ("dac_area_um2", -5),
])
def test_schema_refuses_bad_energy_fields_naming_them(tmp_path, field, value):
    data = load_device("ftj-luo2022").to_dict() | {field: value}
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DeviceError) as err:
        load_device(str(path))
    assert field in str(err.value) and "\n" not in str(err.value)


def test_schema_accepts_energy_fields(tmp_path):
    data = load_device("ftj-luo2022").to_dict() | {"v_read": 0.1, "cell_area_f2": 12,
                                                   "feature_nm": 40, "adc_fom_j": 5e-15}
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(data))
    dev = load_device(str(path))
    assert (dev.v_read, dev.cell_area_f2, dev.feature_nm, dev.adc_fom_j) == (0.1, 12, 40,
                                                                             5e-15)


def test_schedule_costs_recomputed_from_the_artifact(tmp_path):
    import numpy as np
    import torch

    from mimoc.compiler.frontend import import_module
    from mimoc.compiler.pipeline import run_pipeline
    from mimoc.detectors import build_detector
    from mimoc.targets.crossbar import lower
    from mimoc.targets.crossbar.artifact import build_schedule
    from mimoc.targets.crossbar.config import CrossbarConfig
    from mimoc.targets.crossbar.target import DEFAULT_PASSES

    torch.manual_seed(1)
    model = build_detector("detnet", nt=2, nr=4, modulation="qpsk", layers=2).eval()
    graph = run_pipeline(import_module(model), list(DEFAULT_PASSES) + [lower.PASS]).graph
    device = load_device("fefet-jerry2017")
    built = build_schedule(graph, device, CrossbarConfig(mc_draws=4, array=(3, 3),
                                                         accumulation="digital"))
    s, npz = built.schedule, built.arrays
    costs = s["costs"]
    counts = costs["per_slot"]["counts"]
    channel = [a["id"] for a in s["arrays"] if a["role"] == "channel"]
    pulses = sum(np.abs(npz[f"{t}.pulses"].astype(np.int64)).sum() for t in channel) / 4
    assert counts["program_pulses"] == pytest.approx(pulses)
    slot = s["config"]["slot"]
    assert counts["mvm_cell_reads"] == 2 * s["analog_macs"]["per_symbol"] * slot
    assert counts["adc_conversions"] > 0 and counts["dac_conversions"] > 0
    assert costs["per_slot"]["energy_j"] == pytest.approx(
        slot_costs(device, counts)["energy_j"])
    assert costs["area_um2"] == pytest.approx(slot_costs(device, {
        k: s["peripherals"][k] for k in ("cells", "adcs", "dacs")})["area_um2"])
    static = costs["static_programming"]["counts"]
    verify = [a["id"] for a in s["arrays"] if a["role"] == "static"]
    assert static["program_pulses"] == sum(int(npz[f"{t}.verify_pulses"].sum())
                                           for t in verify)
    assert static["verify_reads"] >= 2 * sum(a["shape"][0] for a in s["arrays"]
                                             if a["role"] == "static")
