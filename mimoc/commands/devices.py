"""``mimoc devices``: list the shipped memristor device profiles, or check and show one."""

from __future__ import annotations

import argparse

from mimoc.commands.json_output import print_json

NAME = "devices"
HELP = "list the memristor device profiles, or check and show one (id or JSON file)"
DESCRIPTION = """\
Without arguments: a table of the device profiles that ship with mimoc (the
IM-MIMO paper's Table III), the ids 'mimoc compile --target crossbar --device'
accepts. With DEVICE (an id or the path of your own JSON profile): check it
and print every field, the derived pulse step and C2C noise per pulse, the
computation-stage delays and the energy and area per event. An invalid
profile is refused with one line naming the field (exit status 2). The schema
and the models are documented in docs/devices.md.

examples:
  mimoc devices
  mimoc devices ftj-luo2022
  mimoc devices my-rram.json --json
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("device", nargs="?", metavar="DEVICE",
                        help="a device id or the path of a JSON profile to check and show")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object whose \"devices\" lists the profile(s), "
                             "with the same fields as the files (docs/json.md)")


def _si(value: float, unit: str = "s") -> str:
    for prefix, scale in (("", 1.0), ("m", 1e-3), ("u", 1e-6), ("n", 1e-9), ("p", 1e-12),
                          ("f", 1e-15), ("a", 1e-18)):
        if value >= scale:
            return f"{value / scale:.4g} {prefix}{unit}"
    return f"{value:g} {unit}"


def _c2c(dev) -> str:
    if dev.c2c_potentiation == dev.c2c_depression:
        return f"{dev.c2c_potentiation:.2%}"
    return f"{dev.c2c_potentiation:.2%} / {dev.c2c_depression:.2%}"


def _table(devices) -> str:
    from mimoc.tables import text_table

    header = ["id", "pulse", "C2C pot./dep.", "Gmin uS", "Gmax uS", "write V", "states",
              "step uS"]
    rows = [[d.name, _si(d.pulse_width_s), _c2c(d), f"{d.g_min_us:g}", f"{d.g_max_us:g}",
             f"{d.v_write_pos:g} / {d.v_write_neg:g}", str(d.states), f"{d.step_us:.4g}"]
            for d in devices]
    return text_table(rows, header, right={3, 4, 6, 7})  # numbers right-aligned


def _details(dev) -> str:
    from mimoc.hardware.energy import (
        cell_area_um2,
        cell_read_energy_j,
        conversion_energy_j,
        pulse_energy_j,
    )

    bits = lambda b: "ideal" if b is None else f"{b} bits"  # noqa: E731
    lines = [
        dev.name,
        f"  {dev.description}" if dev.description else None,
        f"  source          {dev.source}" if dev.source else None,
        f"  pulse width     {_si(dev.pulse_width_s)}",
        f"  C2C             {dev.c2c_potentiation:.4g} potentiation, "
        f"{dev.c2c_depression:.4g} depression (fraction of Gmax - Gmin per pulse)",
        f"  conductance     {dev.g_min_us:g} .. {dev.g_max_us:g} uS, {dev.states} states, "
        f"step {dev.step_us:.4g} uS",
        f"  C2C per pulse   {dev.c2c_sigma_us('potentiation'):.4g} uS (pot.), "
        f"{dev.c2c_sigma_us('depression'):.4g} uS (dep.) = "
        f"{dev.c2c_sigma_us('potentiation') / dev.step_us:.3g} / "
        f"{dev.c2c_sigma_us('depression') / dev.step_us:.3g} steps",
        f"  C2C definition  {dev.c2c_model} ("
        + ("sqrt(n) over n pulses" if dev.c2c_model == "per-pulse"
           else "one draw per programming operation") + ")",
        f"  variability     read noise {dev.read_noise:g} of the current; drift nu "
        f"{dev.drift_nu:g} +- {dev.drift_nu_std:g} (t0 {dev.drift_t0_s:g} s); "
        f"array-to-array Gmin/Gmax spread {dev.d2d_g_spread:g}",
        f"  write voltage   {dev.v_write_pos:g} V / {dev.v_write_neg:g} V",
        "  stage delays    " + ", ".join(f"{k} {_si(v)}" for k, v in dev.stage_delays().items()),
        f"  converters      ADC {bits(dev.adc_bits)}, DAC {bits(dev.dac_bits)}",
        f"  write-verify    tolerance {dev.verify_tolerance:g} of the range "
        f"({dev.verify_tolerance_us:.4g} uS), read {_si(dev.verify_read_s)}, "
        f"at most {dev.verify_max_iterations} rounds",
        f"  energy          pulse {_si(pulse_energy_j(dev), 'J')} (pot.), "
        f"{_si(pulse_energy_j(dev, 'depression'), 'J')} (dep.); cell read "
        f"{_si(cell_read_energy_j(dev, dev.read_s), 'J')} at {dev.v_read:g} V; ADC "
        f"{_si(conversion_energy_j(dev.adc_fom_j, dev.adc_bits), 'J')}, DAC "
        f"{_si(conversion_energy_j(dev.dac_fom_j, dev.dac_bits), 'J')} per conversion "
        f"(FoM {_si(dev.adc_fom_j, 'J')} / {_si(dev.dac_fom_j, 'J')} per step)",
        f"  area            cell {cell_area_um2(dev):.4g} um^2 ({dev.cell_area_f2:g} F^2 at "
        f"F = {dev.feature_nm:g} nm), ADC {dev.adc_area_um2:g} um^2, DAC "
        f"{dev.dac_area_um2:g} um^2",
    ]
    return "\n".join(line for line in lines if line is not None)


def run(args: argparse.Namespace) -> int:
    from mimoc.hardware.devices import list_devices, load_device

    if args.device is None:
        devices = [load_device(name) for name in list_devices()]
        if args.json:
            print_json(NAME, args, {"devices": [d.to_dict() for d in devices]})
        else:
            print(_table(devices))
            print("\n'mimoc devices ID' shows one in full; your own profile: "
                  "'mimoc devices FILE.json' (schema: docs/devices.md)")
        return 0
    dev = load_device(args.device)
    if args.json:
        print_json(NAME, args, {"devices": [dev.to_dict()]})
    else:
        print(_details(dev))
    return 0
