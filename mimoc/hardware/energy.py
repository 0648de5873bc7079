"""Energy and area of crossbar work from event counts: the one cost model (docs/devices.md).

:func:`slot_costs` turns counts of events (programming pulses, verify reads, cell reads in
MVMs, converter conversions) and of circuits (cells, ADCs, DACs) into joules and square
micrometres with the device profile's numbers. The crossbar target's schedule (its
``costs`` section) and the programming-strategy studies both call it, so one slot's cost is
worked out one way everywhere.

Models (first-order, per event; what is not listed is not costed: TIAs, inverters, adders,
ReLU circuits, drivers, wires, digital logic):

- **programming pulse**: ``E = V^2 G_mean t_pulse`` with ``V = v_write_pos`` for
  potentiation pulses (``program_pulses``) and ``V = v_write_neg`` for depression pulses
  (``depression_pulses``), ``t_pulse = pulse_width_s`` and ``G_mean = (Gmin + Gmax) / 2``:
  *assumption*: a cell programmed from reset crosses the range, so the mid-range
  conductance stands for the conductance during its pulses (the energy charged into wire
  capacitance is not counted);
- **cell read**: ``E = v_read^2 G_mean t`` with ``t = read_s`` for a cell read in an MVM
  (``mvm_cell_reads``: two per multiply-accumulate of a differential pair) and
  ``t = verify_read_s`` for a verify read; a verify read senses a whole row, so
  ``verify_reads`` (row reads) costs ``verify_reads * verify_row_cells`` cell reads;
- **conversion** (Walden figure of merit): ``E = FoM 2^bits`` per conversion, ADC and DAC
  each with their own FoM and resolution; ideal converters (``bits = null``) are not costed;
- **area**: ``cells * cell_area_f2 * F^2 + adcs * adc_area_um2 + dacs * dac_area_um2``.

Example::

    >>> from mimoc.hardware.devices import load_device
    >>> costs = slot_costs(load_device("ftj-luo2022"), {"program_pulses": 1000, "cells": 512})
    >>> f"{costs['energy_breakdown_j']['program']:.3e}"
    '1.436e-10'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from mimoc.errors import UsageError
from mimoc.hardware.devices import Device

#: The counts :func:`slot_costs` reads (any missing one is 0).
COUNT_KEYS = ("program_pulses", "depression_pulses", "verify_reads", "verify_row_cells",
              "mvm_cell_reads", "adc_conversions", "dac_conversions", "cells", "adcs", "dacs")
_US = 1e-6  # microsiemens -> siemens


def mean_conductance_s(device: Device) -> float:
    """``(Gmin + Gmax) / 2`` in siemens: the conductance every energy formula uses."""
    return (device.g_min_us + device.g_max_us) / 2 * _US


def pulse_energy_j(device: Device, direction: str = "potentiation") -> float:
    """One programming pulse of one cell: ``V^2 G_mean pulse_width_s`` (module docstring)."""
    if direction not in ("potentiation", "depression"):
        raise UsageError(f"pulse direction must be 'potentiation' or 'depression', "
                         f"got {direction!r}")
    volts = device.v_write_pos if direction == "potentiation" else device.v_write_neg
    return volts ** 2 * mean_conductance_s(device) * device.pulse_width_s


def cell_read_energy_j(device: Device, seconds: float) -> float:
    """One cell read for ``seconds``: ``v_read^2 G_mean seconds``."""
    return device.v_read ** 2 * mean_conductance_s(device) * seconds


def conversion_energy_j(fom_j: float, bits: int | None) -> float:
    """One conversion of a ``bits`` converter: ``FoM 2^bits`` (``None``, ideal: 0)."""
    return 0.0 if bits is None else fom_j * 2.0 ** bits


def cell_area_um2(device: Device) -> float:
    """One cell: ``cell_area_f2 F^2`` in square micrometres."""
    return device.cell_area_f2 * (device.feature_nm * 1e-3) ** 2


def _counts(counts: Mapping[str, Any]) -> dict[str, float]:
    if not isinstance(counts, Mapping):
        raise UsageError(f"counts must be a mapping of {', '.join(COUNT_KEYS)}, "
                         f"got {type(counts).__name__}")
    unknown = sorted(set(counts) - set(COUNT_KEYS))
    if unknown:
        raise UsageError(f"unknown count {unknown[0]!r}; counts are {', '.join(COUNT_KEYS)}")
    out = {}
    for key in COUNT_KEYS:
        value = counts.get(key, 0)
        if (isinstance(value, bool) or not isinstance(value, int | float)
                or not math.isfinite(value) or value < 0):
            raise UsageError(f"count {key} must be a finite number >= 0, got {value!r}")
        out[key] = float(value)
    if out["verify_reads"] > 0 and out["verify_row_cells"] <= 0:
        raise UsageError("count verify_row_cells (cells sensed by one verify read of a row) "
                         "must be > 0 when verify_reads is")
    return out


def slot_costs(device: Device, counts: Mapping[str, Any]) -> dict[str, Any]:
    """Energy (joules) and area (square micrometres) of the counted work (module docstring).

    Args:
        device: the :class:`~mimoc.hardware.devices.Device` whose numbers are used.
        counts: event counts per slot (or per any unit of work: the result is in the same
            unit): ``program_pulses`` (potentiation pulses, one cell each),
            ``depression_pulses``, ``verify_reads`` (row verify reads) with
            ``verify_row_cells`` (cells one of them senses), ``mvm_cell_reads``,
            ``adc_conversions``, ``dac_conversions``; and circuits for the area: ``cells``,
            ``adcs``, ``dacs``. Missing keys are 0.

    Returns:
        ``{"energy_j", "area_um2", "energy_breakdown_j": {program, verify, read, adc, dac},
        "area_breakdown_um2": {cells, adc, dac}}``.

    Raises:
        UsageError: an unknown key, a negative or non-finite count, or verify reads
            without ``verify_row_cells``.
    """
    c = _counts(counts)
    energy = {
        "program": (c["program_pulses"] * pulse_energy_j(device, "potentiation")
                    + c["depression_pulses"] * pulse_energy_j(device, "depression")),
        "verify": c["verify_reads"] * c["verify_row_cells"]
        * cell_read_energy_j(device, device.verify_read_s),
        "read": c["mvm_cell_reads"] * cell_read_energy_j(device, device.read_s),
        "adc": c["adc_conversions"] * conversion_energy_j(device.adc_fom_j, device.adc_bits),
        "dac": c["dac_conversions"] * conversion_energy_j(device.dac_fom_j, device.dac_bits),
    }
    area = {"cells": c["cells"] * cell_area_um2(device),
            "adc": c["adcs"] * device.adc_area_um2,
            "dac": c["dacs"] * device.dac_area_um2}
    return {"energy_j": sum(energy.values()), "area_um2": sum(area.values()),
            "energy_breakdown_j": energy, "area_breakdown_um2": area}
