"""Memristor device profiles: what the crossbar target programs and the IMC simulator models.

A :class:`Device` is plain data (a frozen dataclass) read from a JSON profile:
the shipped ones are ``mimoc/data/devices/<id>.json`` (the IM-MIMO paper's
Table III), users give the path of their own file. Every field is checked when
a profile is loaded (against the JSON Schema
``mimoc/data/schemas/device.schema.json``, then Gmax > Gmin) or a ``Device``
is built; a bad value raises :class:`DeviceError` naming the field and what to
do. The schema is documented in ``docs/devices.md``.

Shipped devices (docs/design.md section 7; conductances in microsiemens):

=================== ========= ======================= ====== ====== ============= ======
id                  pulse     C2C (pot. / dep.)       Gmin   Gmax   write V       states
=================== ========= ======================= ====== ====== ============= ======
``rram-zeng2023``   10 ns     4.41% / 5.44%           79.93  230.99 0.65 / -0.575 256
``fefet-jerry2017`` 75 ns     0.5%                    0.04   1.79   3.65 / -2.95  32
``ftj-luo2022``     630 ps    3.65%                   1      27.5   4 / -5        150
=================== ========= ======================= ====== ====== ============= ======

What a device means when programmed: a pulse moves the conductance by one step
``dG = (Gmax - Gmin) / P`` (:attr:`Device.step_us`, ``P = states``) plus cycle-to-cycle
(C2C) noise of standard deviation :meth:`Device.c2c_sigma_us` (``c2c (Gmax - Gmin)``,
:attr:`Device.c2c_potentiation` for pulses that raise the conductance,
:attr:`Device.c2c_depression` for those that lower it); a verify loop stops within
:attr:`Device.verify_tolerance_us`; ``c2c_model`` says whether that noise is per pulse
(the default) or per programming operation. The programming itself (pulse counts, open
loop, program-and-verify) is :mod:`mimoc.hardware.programming`; drift, read noise and
device-to-device spread (``drift_nu``, ``read_noise``, ``d2d_g_spread``, all 0 by default)
are :mod:`mimoc.hardware.variability`; energy and area (``v_read``, ``cell_area_f2``,
``feature_nm``, ``adc_fom_j``, ...) are :mod:`mimoc.hardware.energy`.

Computation stages: the delays ``read_s`` (crossbar read: an MVM settles
within one input pulse), ``tia_s``, ``adder_s``, ``relu_s``, ``inverter_s``,
``adc_s`` and ``dac_s`` are in seconds. The IM-MIMO paper gives no per-stage
numbers; its latency analysis (section IV-B2) says the delays of these
components "are typically on the order of nanoseconds, a magnitude comparable
to the duration of a programming pulse" and that an MVM completes "within a
single input-pulse duration on the nanosecond scale". The shipped profiles
therefore use 1 ns for every stage (an op-amp stage with a GHz
gain-bandwidth settles in about a nanosecond; an 8-bit converter at 1 GS/s
takes 1 ns per sample), ``adc_bits = dac_bits = 8`` and a verify read of
10 ns; change them in your own profile where you know better.

Example::

    >>> from mimoc.hardware.devices import load_device, list_devices
    >>> list_devices()
    ('fefet-jerry2017', 'ftj-luo2022', 'rram-zeng2023')
    >>> ftj = load_device("ftj-luo2022")
    >>> round(ftj.step_us, 4), ftj.pulse_width_s
    (0.1767, 6.3e-10)
    >>> ftj.with_c2c(0.01).c2c_potentiation
    0.01
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from mimoc.errors import MimocError, UsageError

#: The ``schema`` value a profile may carry (optional; other values are refused).
SCHEMA = "mimoc-device/1"
#: Largest profile file read (a profile is a few hundred bytes).
MAX_PROFILE_BYTES = 1 << 20
#: Where the schema is written down, for error messages.
SCHEMA_DOC = "docs/devices.md"


class DeviceError(MimocError, ValueError):
    """A device profile that cannot be used: unknown id, unreadable file or invalid field."""


#: C2C definitions: per pulse (accumulating as sqrt(n)) or per programming operation.
C2C_MODELS = ("per-pulse", "per-write")
_TIME_LIMIT_S = 1.0  # a stage or pulse longer than a second is a unit mistake (ns given as s)


@dataclass(frozen=True)
class Device:
    """One memristor device and the peripheral circuits around its arrays.

    Attributes:
        name: the device id (``ftj-luo2022``) or a user's name for it.
        pulse_width_s: duration of one programming pulse, in seconds.
        c2c_potentiation: cycle-to-cycle variation of a pulse that raises the
            conductance, as a fraction of ``g_max_us - g_min_us`` (0.0365 = 3.65%).
        c2c_depression: the same for a pulse that lowers the conductance.
        g_min_us: lowest conductance (the reset state), in microsiemens.
        g_max_us: highest conductance, in microsiemens (> g_min_us).
        v_write_pos: potentiation write voltage in volts (> 0).
        v_write_neg: depression write voltage in volts (< 0).
        states: number of programming levels ``P``; one pulse nominally moves
            the conductance by ``(g_max_us - g_min_us) / P``.
        read_s: crossbar read (MVM settling) delay, in seconds.
        tia_s: transimpedance-amplifier delay, in seconds.
        adder_s: analog adder delay, in seconds.
        relu_s: analog ReLU (linear rectifier) delay, in seconds.
        inverter_s: inverter delay (negating a voltage for the differential pair), in seconds.
        adc_s: analog-to-digital conversion time, in seconds.
        dac_s: digital-to-analog conversion time, in seconds.
        adc_bits: ADC resolution where values leave the analog domain; ``None`` = ideal.
        dac_bits: DAC resolution of the inputs driven onto the arrays; ``None`` = ideal.
        verify_tolerance: programming with verification stops once a cell is
            within this fraction of ``g_max_us - g_min_us`` of its target
            (``0`` = to the nearest state).
        verify_read_s: time of one verify read of a row, in seconds.
        verify_max_iterations: most read-and-correct rounds per row.
        c2c_model: what the C2C variation is per: ``"per-pulse"`` (the default: independent
            noise per pulse, ``sqrt(n)`` accumulated over ``n`` pulses) or ``"per-write"``
            (one draw per programming operation, NeuroSim's definition).
        read_noise: read noise: every cell's read current in an MVM carries Gaussian noise
            of this standard deviation relative to the current (0.01 = 1%), drawn anew for
            every read (default 0: noiseless reads).
        drift_nu: mean conductance-drift exponent of the static arrays:
            ``G(t) = G_prog ((t + t0) / t0)^(-nu)`` ``t`` seconds after programming
            (IBM aihwkit's PCM inference model; default 0: no drift).
        drift_nu_std: spread of ``nu`` across cells: ``nu = |drift_nu + drift_nu_std z|``.
        drift_t0_s: ``t0``, the time after programming the programmed value refers to.
        d2d_g_spread: device-to-device spread: each physical array's Gmin and Gmax are
            ``Gmin (1 + s z)``, ``Gmax (1 + s z')`` with this ``s`` (default 0).
        v_read: read voltage across a cell in an MVM or a verify read, in volts.
        cell_area_f2: area of one cell in units of F^2 (4 = crosspoint, ~12 = 1T1R).
        feature_nm: the technology's feature size F, in nanometres.
        adc_fom_j: Walden figure of merit of the ADCs, joules per conversion step
            (energy of one conversion = ``adc_fom_j * 2^adc_bits``).
        adc_area_um2: area of one ADC, in square micrometres.
        dac_fom_j: the same figure of merit for the DACs (an assumption: see docs/devices.md).
        dac_area_um2: area of one DAC, in square micrometres.
        description: what the device is, in words.
        source: where the numbers come from.
    """

    name: str
    pulse_width_s: float
    c2c_potentiation: float
    c2c_depression: float
    g_min_us: float
    g_max_us: float
    v_write_pos: float
    v_write_neg: float
    states: int
    read_s: float = 1e-9
    tia_s: float = 1e-9
    adder_s: float = 1e-9
    relu_s: float = 1e-9
    inverter_s: float = 1e-9
    adc_s: float = 1e-9
    dac_s: float = 1e-9
    adc_bits: int | None = 8
    dac_bits: int | None = 8
    verify_tolerance: float = 0.01
    verify_read_s: float = 1e-8
    verify_max_iterations: int = 1000
    c2c_model: str = "per-pulse"
    read_noise: float = 0.0
    drift_nu: float = 0.0
    drift_nu_std: float = 0.0
    drift_t0_s: float = 20.0
    d2d_g_spread: float = 0.0
    v_read: float = 0.2
    cell_area_f2: float = 4.0
    feature_nm: float = 28.0
    adc_fom_j: float = 3.44e-14
    adc_area_um2: float = 7100.0
    dac_fom_j: float = 1e-14
    dac_area_um2: float = 1000.0
    description: str = ""
    source: str = ""

    def __post_init__(self):
        origin = f"device {self.name!r}" if isinstance(self.name, str) else "device"
        _validate(dataclasses.asdict(self), origin)

    # -- derived quantities -----------------------------------------------------------

    @property
    def range_us(self) -> float:
        """``Gmax - Gmin`` in microsiemens."""
        return self.g_max_us - self.g_min_us

    @property
    def step_us(self) -> float:
        """Nominal conductance change of one pulse, ``(Gmax - Gmin) / states``, in µS."""
        return self.range_us / self.states

    def c2c(self, direction: str = "potentiation") -> float:
        """C2C variation of a pulse in ``direction`` (``potentiation`` or ``depression``)."""
        if direction == "potentiation":
            return self.c2c_potentiation
        if direction == "depression":
            return self.c2c_depression
        raise UsageError(f"pulse direction must be 'potentiation' or 'depression', "
                         f"got {direction!r}")

    def c2c_sigma_us(self, direction: str = "potentiation") -> float:
        """Standard deviation of one pulse's C2C noise, ``c2c (Gmax - Gmin)``, in µS."""
        return self.c2c(direction) * self.range_us

    @property
    def verify_tolerance_us(self) -> float:
        """Verify tolerance in µS: ``verify_tolerance (Gmax - Gmin)``."""
        return self.verify_tolerance * self.range_us

    def stage_delays(self) -> dict[str, float]:
        """The computation-stage delays in seconds, by stage name."""
        return {"read": self.read_s, "tia": self.tia_s, "adder": self.adder_s,
                "relu": self.relu_s, "inverter": self.inverter_s, "adc": self.adc_s,
                "dac": self.dac_s}

    # -- variants -----------------------------------------------------------------------

    def with_c2c(self, c2c: float | None = None, *, potentiation: float | None = None,
                 depression: float | None = None) -> Device:
        """This device with other C2C variations (a ``--c2c`` sweep): ``c2c`` sets both
        directions; ``potentiation`` / ``depression`` set one each."""
        pot = potentiation if potentiation is not None else c2c
        dep = depression if depression is not None else c2c
        return dataclasses.replace(
            self, c2c_potentiation=self.c2c_potentiation if pot is None else pot,
            c2c_depression=self.c2c_depression if dep is None else dep)

    def ideal(self, states: int | None = None) -> Device:
        """This device without C2C noise, read noise, drift or device-to-device spread (and
        with ``states`` levels if given): the device of the simulator's exactness tests."""
        changes: dict[str, Any] = {"c2c_potentiation": 0.0, "c2c_depression": 0.0,
                                   "adc_bits": None, "dac_bits": None, "read_noise": 0.0,
                                   "drift_nu": 0.0, "drift_nu_std": 0.0, "d2d_g_spread": 0.0}
        if states is not None:
            changes["states"] = states
        return dataclasses.replace(self, name=f"{self.name} (ideal)", **changes)

    # -- data ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The profile as JSON-ready plain values (what :func:`device_from_dict` reads)."""
        return {"schema": SCHEMA, **dataclasses.asdict(self)}

    def summary(self) -> str:
        """One line: id, pulse, C2C, conductance range, states."""
        c2c = (f"{self.c2c_potentiation:.2%}" if self.c2c_potentiation == self.c2c_depression
               else f"{self.c2c_potentiation:.2%} pot. / {self.c2c_depression:.2%} dep.")
        if self.c2c_model != "per-pulse":
            c2c += f" {self.c2c_model}"
        return (f"{self.name}: pulse {_seconds(self.pulse_width_s)}, C2C {c2c}, "
                f"G {self.g_min_us:g}..{self.g_max_us:g} uS, {self.states} states, "
                f"write {self.v_write_pos:g} / {self.v_write_neg:g} V")


def _seconds(value: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9), ("ps", 1e-12)):
        if value >= scale:
            return f"{value / scale:.4g} {unit}"
    return f"{value:g} s"


# ----------------------------------------------------------------------------- checks

_TIMES = ("pulse_width_s", "read_s", "tia_s", "adder_s", "relu_s", "inverter_s", "adc_s",
          "dac_s", "verify_read_s")


#: Energy and area fields that must be > 0 or >= 0, with what to write instead.
_POSITIVE = {"drift_t0_s": "give the reference time after programming in seconds "
                           "(aihwkit uses 20)",
             "cell_area_f2": "give the cell area in units of F^2 (4 for a crosspoint cell)",
             "feature_nm": "give the feature size in nanometres (28 for a 28 nm process)"}
_NON_NEGATIVE = {"drift_nu": "give the drift exponent nu (PCM: about 0.05; 0: no drift)",
                 "drift_nu_std": "give the spread of nu across cells (0: every cell the same)",
                 "v_read": "give the read voltage in volts (0.2 is typical)",
                 "adc_fom_j": "give the Walden figure of merit in joules per conversion step "
                              "(34 fJ is 3.4e-14)",
                 "dac_fom_j": "give the figure of merit in joules per conversion step "
                              "(10 fJ is 1e-14)",
                 "adc_area_um2": "give the area of one converter in square micrometres",
                 "dac_area_um2": "give the area of one converter in square micrometres"}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_field(name: str, value: Any, origin: str) -> None:
    """Raise :class:`DeviceError` if ``value`` is not valid for field ``name``."""
    def bad(problem: str, fix: str) -> DeviceError:
        return DeviceError(f"{origin}: {name} {problem}; {fix}")

    if name in ("name", "description", "source"):
        if not isinstance(value, str):
            raise bad(f"must be a string, got {type(value).__name__}", "write it in quotes")
        if name == "name" and (not value.strip() or len(value) > 100 or
                               not value.isprintable()):
            raise bad(f"must be a non-empty one-line name of at most 100 characters, "
                      f"got {value[:40]!r}", "give a short id such as 'my-rram'")
        return
    if name == "c2c_model":
        if value not in C2C_MODELS:
            raise bad(f"must be one of {', '.join(map(repr, C2C_MODELS))}, got {value!r}",
                      "write \"per-pulse\" (noise per pulse, sqrt(n) over n pulses) or "
                      "\"per-write\" (one draw per programming operation)")
        return
    if name in ("states", "verify_max_iterations", "adc_bits", "dac_bits"):
        if value is None and name in ("adc_bits", "dac_bits"):
            return
        limit = {"states": 2**31 - 1, "verify_max_iterations": 100_000,
                 "adc_bits": 32, "dac_bits": 32}[name]
        if isinstance(value, bool) or not isinstance(value, int):
            kind = "an integer" + (" or null (ideal)" if name.endswith("_bits") else "")
            raise bad(f"must be {kind}, got {value!r}", "write a whole number without a "
                      "decimal point")
        if not 1 <= value <= limit:
            raise bad(f"must be between 1 and {limit}, got {value}",
                      "give a positive number of levels" if name == "states"
                      else "give a positive integer")
        return
    if not _is_number(value):
        raise bad(f"must be a number, got {value!r}", "write a plain number (no quotes, units "
                  "in the field name)")
    if not math.isfinite(value):
        raise bad(f"must be finite, got {value!r}", "give a finite number")
    if name in _TIMES:
        positive = name == "pulse_width_s"
        if value < 0 or (positive and value == 0):
            raise bad(f"must be {'> 0' if positive else '>= 0'} seconds, got {value:g}",
                      "give a duration in seconds (10 ns is 1e-8)")
        if value > _TIME_LIMIT_S:
            raise bad(f"is {value:g} s, longer than {_TIME_LIMIT_S:g} s",
                      "times are in seconds (10 ns is 1e-8), not nanoseconds")
    elif name in ("c2c_potentiation", "c2c_depression", "verify_tolerance", "read_noise",
                  "d2d_g_spread"):
        if not 0 <= value < 1:
            raise bad(f"must be a fraction in [0, 1), got {value:g}",
                      "write 3.65% as 0.0365")
    elif name in ("g_min_us", "g_max_us"):
        if value < 0:
            raise bad(f"must be >= 0 microsiemens, got {value:g}",
                      "give the conductance in microsiemens")
    elif name in _POSITIVE:
        if value <= 0:
            raise bad(f"must be > 0, got {value:g}", _POSITIVE[name])
    elif name in _NON_NEGATIVE:
        if value < 0:
            raise bad(f"must be >= 0, got {value:g}", _NON_NEGATIVE[name])
    elif name == "v_write_pos":
        if value <= 0:
            raise bad(f"must be > 0 volts, got {value:g}", "give the potentiation voltage")
    elif name == "v_write_neg":
        if value >= 0:
            raise bad(f"must be < 0 volts, got {value:g}",
                      "give the depression voltage with its minus sign")


def device_from_dict(data: Any, origin: str = "device profile") -> Device:
    """Build a :class:`Device` from a parsed JSON profile, checked against the schema
    ``mimoc/data/schemas/device.schema.json`` (keys, types, ranges) and Gmax > Gmin.

    Raises:
        DeviceError: not an object, unknown or missing keys, wrong types, bad values.
    """
    from mimoc.validation import validate

    validate(data, "device", origin=origin, error=DeviceError)
    values = dict(data)
    values.pop("schema", None)
    _validate(values, origin)
    return Device(**values)


def _validate(values: dict[str, Any], origin: str) -> None:
    """Check every field of a profile and that Gmax > Gmin."""
    for key, value in values.items():
        _check_field(key, value, origin)
    g_min, g_max = values["g_min_us"], values["g_max_us"]
    if not g_max > g_min:
        raise DeviceError(f"{origin}: g_max_us ({g_max:g}) must be greater than g_min_us "
                          f"({g_min:g}); give Gmax > Gmin in microsiemens")


# ----------------------------------------------------------------------------- loading

def _shipped_dir():
    return resources.files("mimoc") / "data" / "devices"


def list_devices() -> tuple[str, ...]:
    """The ids of the shipped device profiles, sorted."""
    return tuple(sorted(entry.name.removesuffix(".json") for entry in _shipped_dir().iterdir()
                        if entry.name.endswith(".json")))


def parse_profile(text: bytes | str, origin: str) -> Device:
    """Parse the bytes of a JSON profile (strict: no NaN/Infinity, no duplicate keys)."""
    from mimoc.validation import parse_json

    data = parse_json(text, where=origin, error=DeviceError,
                      fix=f"a device profile is a JSON object (see {SCHEMA_DOC})")
    return device_from_dict(data, origin)


def load_device(name_or_path: str | os.PathLike | Device) -> Device:
    """A shipped device by id, or a user's profile by path.

    Args:
        name_or_path: a shipped id (:func:`list_devices`), the path of a JSON
            profile, or a :class:`Device` (returned as it is).

    Raises:
        DeviceError: unknown id, missing or unreadable file, invalid profile.

    Example::

        >>> load_device("rram-zeng2023").c2c_depression
        0.0544
    """
    if isinstance(name_or_path, Device):
        return name_or_path
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise DeviceError(f"a device is an id or a file path, got {type(name_or_path).__name__}")
    text = os.fspath(name_or_path)
    shipped = list_devices()
    if isinstance(name_or_path, str) and text in shipped:
        data = (_shipped_dir() / f"{text}.json").read_bytes()
        return parse_profile(data, f"shipped device {text}")
    path = Path(text)
    if path.is_file():
        try:
            size = path.stat().st_size
            if size > MAX_PROFILE_BYTES:
                raise DeviceError(f"device file {path} is {size} bytes, too large for a device "
                                  f"profile; give a JSON profile (see {SCHEMA_DOC})")
            data = path.read_bytes()
        except OSError as err:
            raise DeviceError(f"cannot read device file {path}: {err.strerror}") from None
        return parse_profile(data, f"device file {path}")
    if path.is_dir():
        raise DeviceError(f"device {text} is a folder; give a device id "
                          f"({', '.join(shipped)}) or a JSON profile file")
    if path.suffix or os.sep in text or "/" in text:
        raise DeviceError(f"device file {path} does not exist; give a device id "
                          f"({', '.join(shipped)}) or the path of a JSON profile")
    close = difflib.get_close_matches(text, shipped, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise DeviceError(f"unknown device {text!r}; {hint}shipped devices: {', '.join(shipped)}, "
                      f"or give the path of a JSON profile (see {SCHEMA_DOC})")
