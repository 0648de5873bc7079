"""This machine's CPU, as every timing mimoc prints names it: model and the vector
extensions its kernels use (AVX2, AVX-512, VNNI, AMX on x86; NEON/SVE on Arm).

Timings from different CPUs are not comparable, and onnxruntime's integer kernels differ
with VNNI (u8s8) and without it: a number without the CPU it came from says little.

Example::

    >>> describe_cpu()
    'Intel(R) Xeon(R) Processor (AVX2, AVX-512, AVX-512 VNNI, AMX)'
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

#: /proc/cpuinfo flag -> the name printed, in this order
FEATURES = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_vnni": "AVX-512 VNNI",
            "avx_vnni": "AVX-VNNI", "amx_tile": "AMX", "asimd": "NEON", "sve": "SVE"}


@functools.cache
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else what ``platform`` knows)."""
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return " ".join(line.partition(":")[2].split())
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_features() -> list[str]:
    """The vector extensions of :data:`FEATURES` this CPU has (empty when unknown)."""
    flags = set()
    for line in _cpuinfo().splitlines():
        if line.startswith(("flags", "Features")):
            flags |= set(line.partition(":")[2].split())
    return [name for flag, name in FEATURES.items() if flag in flags]


def has_vnni() -> bool:
    """Whether this x86 CPU has VNNI (``avx512_vnni`` / ``avx_vnni``); False if unknown."""
    return any(name in ("AVX-512 VNNI", "AVX-VNNI") for name in cpu_features())


def describe_cpu() -> str:
    """``"MODEL (FEATURE, ...)"``: the CPU as every timing names it."""
    features = cpu_features()
    return f"{cpu_name()} ({', '.join(features)})" if features else cpu_name()
