"""Memory checks of ``mimoc ber``: refuse link sizes that cannot fit in memory with one
line, before anything is allocated."""

from __future__ import annotations

import os
from pathlib import Path

from mimoc.errors import UsageError

#: Antennas per side at most: far beyond the links these detectors serve; more is a typo
#: (and 100000 x 100000 channel matrices alone would need hundreds of GB).
MAX_ANTENNAS = 1024


def batch_bytes(nt: int, nr: int, slot: int, slots: int, itemsize: int = 4) -> int:
    """A generous estimate of the memory one Monte Carlo batch needs: per slot about six
    float copies of the real channel ``[2Nr, 2Nt]`` (complex draw, ``H``, ``H_est``, the
    detectors' transposes and pseudo-inverses), three of a ``[2Nt, 2Nt]`` Gram matrix or
    its inverse, and four of the slot's ``y``/``x`` vectors."""
    per_slot = 6 * 4 * nr * nt + 3 * 4 * nt * nt + 4 * 2 * slot * (nr + nt)
    return per_slot * slots * itemsize


def available_memory() -> int | None:
    """Bytes this process may still allocate: MemAvailable, or less under a cgroup limit;
    ``None`` if unknown."""
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    try:
        cgroup = Path("/sys/fs/cgroup")
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            used = int((cgroup / "memory.current").read_text())
            available = min(available, max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    return available


def _gb(count: int) -> str:
    return f"{count / 1e9:.3g} GB"


def check_sizes(nt: int, nr: int, slot: int, batch_size: int | None, max_symbols: int) -> None:
    """Refuse link sizes that cannot fit in memory, with one line, before allocating."""
    from mimoc.sim.ber import TARGET_SYMBOLS_PER_BATCH

    for flag, value in (("--nt", nt), ("--nr", nr)):
        if value > MAX_ANTENNAS:
            raise UsageError(f"{flag} {value} is more than {MAX_ANTENNAS} antennas; give the "
                             "size of a real link (e.g. --nt 8 --nr 16)")
    per_slot = slot * nt
    slots = batch_size or max(1, TARGET_SYMBOLS_PER_BATCH // per_slot)
    slots = min(slots, -(-max_symbols // per_slot))
    needed = batch_bytes(nt, nr, slot, slots)
    available = available_memory()
    if available is None or needed <= available:
        return
    one = batch_bytes(nt, nr, slot, 1)
    advice = (f"use a smaller --batch (one slot needs about {_gb(one)})"
              if slots > 1 and one <= available else "use smaller --nt/--nr/--slot")
    batches = f"{slots} slot{'s' if slots > 1 else ''}"
    raise UsageError(f"--nt {nt} --nr {nr} --slot {slot} with batches of {batches} needs "
                     f"about {_gb(needed)} of memory, more than the {_gb(available)} "
                     f"available; {advice}")
