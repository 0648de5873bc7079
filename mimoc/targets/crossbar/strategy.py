"""How the channel arrays are programmed every slot: a programming *strategy*.

The channel arrays (``H``, ``H^T``, ``pinv(H)^T``) are reprogrammed every coherence slot.
Open loop from reset (``single``, the default) the C2C noise of every pulse accumulates:
``G = Gmin + n dG + c2c (Gmax - Gmin) sqrt(n) z``. The slot usually has time to spare, and a
strategy spends it on accuracy (docs/crossbar.md, "Programming strategies"):

- ``verify`` -- program-and-verify (:func:`mimoc.hardware.programming.program_with_verify`)
  with tolerance ``tol`` (fraction of ``Gmax - Gmin``; default the device's) and at most
  ``iters`` read-and-correct rounds (default the device's); the slot's programming time is
  what the loop took;
- ``r=R`` -- redundancy: ``R`` copies of each channel array, programmed in parallel, their
  column currents summed (error variance / R; cells, pulses and energy x R);
- ``clip=C`` -- mapping range ``w_clip = C sigma_h`` (default 3: the three-sigma rule);
- ``levels=L`` -- use ``L`` levels instead of the device's ``P`` states (``L <= P``): one
  coarse pulse moves ``(Gmax - Gmin) / L`` with the same per-pulse C2C noise, so fewer
  pulses accumulate less noise, at a coarser quantisation.

Grammar: terms joined by ``+``; a term is ``single``, ``verify``, ``verify:KEY=V,KEY=V``
(keys ``tol``, ``iters``), ``redundancy:r=R`` or one ``KEY=V`` (``r``, ``clip``, ``levels``,
``tol``, ``iters``; ``tol``/``iters`` imply ``verify``).

Example::

    >>> parse_strategy("verify:tol=0.02+r=2+clip=2.5").spec
    'verify:tol=0.02+r=2+clip=2.5'
    >>> parse_strategy("single") == SINGLE
    True
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from mimoc.errors import UsageError

SINGLE_SPEC = "single"
DEFAULT_CLIP_SIGMAS = 3.0
MAX_REDUNDANCY = 64
MAX_ITERATIONS = 100_000
CLIP_RANGE = (0.5, 10.0)
GRAMMAR = ("give e.g. single, verify, verify:tol=0.01,iters=20, redundancy:r=4, or terms "
           "joined by '+' such as verify:tol=0.02+r=2+clip=2.5+levels=32")


@dataclass(frozen=True)
class Strategy:
    """A programming strategy of the channel arrays (module docstring).

    Attributes:
        verify: program-and-verify instead of open loop.
        tolerance: verify tolerance as a fraction of ``Gmax - Gmin`` (``None``: the device's).
        iterations: most read-and-correct rounds (``None``: the device's).
        redundancy: copies of each channel array, currents summed.
        clip_sigmas: ``w_clip = clip_sigmas * sigma_h``.
        levels: programming levels used (``None``: the device's states).
    """

    verify: bool = False
    tolerance: float | None = None
    iterations: int | None = None
    redundancy: int = 1
    clip_sigmas: float = DEFAULT_CLIP_SIGMAS
    levels: int | None = None

    def __post_init__(self) -> None:
        def bad(what: str) -> UsageError:
            return UsageError(f"bad --strategy: {what}; {GRAMMAR}")

        if not isinstance(self.verify, bool):
            raise bad(f"verify must be true or false, got {self.verify!r}")
        t = self.tolerance
        if t is not None and (isinstance(t, bool) or not isinstance(t, int | float)
                              or not math.isfinite(t) or not 0 <= t < 1):
            raise bad(f"tol={t!r} must be a fraction in [0, 1) of Gmax - Gmin")
        n = self.iterations
        if n is not None and (isinstance(n, bool) or not isinstance(n, int)
                              or not 1 <= n <= MAX_ITERATIONS):
            raise bad(f"iters={n!r} must be an integer in 1..{MAX_ITERATIONS}")
        if (t is not None or n is not None) and not self.verify:
            raise bad("tol and iters need verify")
        r = self.redundancy
        if isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= MAX_REDUNDANCY:
            raise bad(f"r={r!r} must be an integer in 1..{MAX_REDUNDANCY}")
        c = self.clip_sigmas
        if (isinstance(c, bool) or not isinstance(c, int | float) or not math.isfinite(c)
                or not CLIP_RANGE[0] <= c <= CLIP_RANGE[1]):
            raise bad(f"clip={c!r} must be a number of sigmas in {CLIP_RANGE[0]:g}.."
                      f"{CLIP_RANGE[1]:g}")
        object.__setattr__(self, "clip_sigmas", float(c))
        if t is not None:
            object.__setattr__(self, "tolerance", float(t))
        L = self.levels
        if L is not None and (isinstance(L, bool) or not isinstance(L, int) or L < 2):
            raise bad(f"levels={L!r} must be an integer >= 2")

    @property
    def is_single(self) -> bool:
        """Today's open-loop programming (the default): nothing new is recorded."""
        return self == SINGLE

    @property
    def spec(self) -> str:
        """The canonical text (``parse_strategy(s.spec) == s``)."""
        if self.is_single:
            return SINGLE_SPEC
        terms = []
        if self.verify:
            keys = [f"tol={self.tolerance:g}"] if self.tolerance is not None else []
            keys += [f"iters={self.iterations}"] if self.iterations is not None else []
            terms.append("verify" + (":" + ",".join(keys) if keys else ""))
        if self.redundancy != 1:
            terms.append(f"r={self.redundancy}")
        if self.clip_sigmas != DEFAULT_CLIP_SIGMAS:
            terms.append(f"clip={self.clip_sigmas:g}")
        if self.levels is not None:
            terms.append(f"levels={self.levels}")
        return "+".join(terms)

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec, **dataclasses.asdict(self)}

    def check_device(self, device) -> None:
        """``levels`` cannot exceed the device's states."""
        if self.levels is not None and self.levels > device.states:
            raise UsageError(f"bad --strategy {self.spec!r}: levels={self.levels} is more than "
                             f"the {device.states} states of {device.name}; give levels <= "
                             f"{device.states}")

    def channel_device(self, device):
        """The device as the channel arrays use it: ``levels`` states, the verify
        tolerance and iteration cap of the strategy."""
        self.check_device(device)
        changes: dict[str, Any] = {}
        if self.levels is not None:
            changes["states"] = self.levels
        if self.tolerance is not None:
            changes["verify_tolerance"] = self.tolerance
        if self.iterations is not None:
            changes["verify_max_iterations"] = self.iterations
        return dataclasses.replace(device, **changes) if changes else device


SINGLE = Strategy()

_KEYS = {"tol": ("tolerance", float), "iters": ("iterations", int), "r": ("redundancy", int),
         "clip": ("clip_sigmas", float), "levels": ("levels", int)}


def _value(key: str, text: str, spec: str) -> tuple[str, Any]:
    if key not in _KEYS:
        raise UsageError(f"bad --strategy {spec!r}: unknown key {key!r} (keys: "
                         f"{', '.join(_KEYS)}); {GRAMMAR}")
    field, kind = _KEYS[key]
    try:
        value = kind(text)
    except ValueError:
        raise UsageError(f"bad --strategy {spec!r}: {key}={text!r} is not "
                         f"{'an integer' if kind is int else 'a number'}; {GRAMMAR}") from None
    return field, value


def parse_strategy(spec: Any) -> Strategy:
    """A :class:`Strategy` from its text (module docstring), a Strategy, or ``None``
    (single). Bad text: a one-line :class:`~mimoc.errors.UsageError`."""
    if spec is None:
        return SINGLE
    if isinstance(spec, Strategy):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError(f"bad --strategy {spec!r}: {GRAMMAR}")
    text = spec.strip().lower().replace(" ", "")
    fields: dict[str, Any] = {}

    def put(field: str, value: Any) -> None:
        if field in fields and fields[field] != value:
            raise UsageError(f"bad --strategy {spec!r}: {field} is given twice; {GRAMMAR}")
        fields[field] = value

    for term in text.split("+"):
        name, _, args = term.partition(":")
        if name == SINGLE_SPEC and not args:
            continue
        if name in ("verify", "redundancy"):
            if name == "verify":
                put("verify", True)
            elif not args:
                raise UsageError(f"bad --strategy {spec!r}: redundancy needs r=R; {GRAMMAR}")
            for pair in filter(None, args.split(",")):
                key, eq, value = pair.partition("=")
                allowed = ("tol", "iters") if name == "verify" else ("r",)
                if not eq or key not in allowed:
                    raise UsageError(f"bad --strategy {spec!r}: {name} takes "
                                     f"{', '.join(k + '=' for k in allowed)}; {GRAMMAR}")
                put(*_value(key, value, spec))
            continue
        key, eq, value = term.partition("=")
        if not eq or args:
            raise UsageError(f"bad --strategy {spec!r}: unknown term {term!r}; {GRAMMAR}")
        field, parsed = _value(key, value, spec)
        put(field, parsed)
        if key in ("tol", "iters"):
            put("verify", True)
    return Strategy(**fields)


__all__ = ["SINGLE", "SINGLE_SPEC", "Strategy", "parse_strategy"]
