"""``--cpu``: the processor an IREE module is compiled for, as ``iree-compile`` flags.

``host`` is the compiling machine (every extension it has, not portable); ``aarch64`` a
generic 64-bit Arm core (NEON, runs on a Raspberry Pi 5, a Jetson Orin CPU, Graviton);
``x86-64``, ``x86-64-v2``, ``x86-64-v3`` (AVX2, FMA: Haswell and later) and ``x86-64-v4``
(AVX-512) are the x86 micro-architecture levels. An LLVM CPU name of one of the two
architectures (``cortex-a76`` for a Pi 5, ``cortex-a78ae`` for Orin, ``skylake``,
``znver4``) tunes for that core. The flags go into the manifest.

Example::

    >>> cpu_flags("aarch64")
    ('aarch64-linux-gnu', ['--iree-llvmcpu-target-triple=aarch64-linux-gnu', ...])
"""

from __future__ import annotations

import platform
import re

from mimoc.errors import UsageError

X86_LEVELS = ("x86-64", "x86-64-v2", "x86-64-v3", "x86-64-v4")
#: LLVM CPU names of Arm cores in edge boards, for the error message and docs/edge.md
ARM_CORES = ("cortex-a55", "cortex-a72", "cortex-a76", "cortex-a78", "cortex-a78ae",
             "neoverse-n1", "neoverse-v1", "neoverse-n2", "apple-m1")
X86_CORES = ("haswell", "skylake", "skylake-avx512", "cascadelake", "icelake-server",
             "sapphirerapids", "znver2", "znver3", "znver4")
CPUS = ("host", "aarch64", *X86_LEVELS)
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,40}$")


def host_triple() -> str:
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine) + "-linux-gnu"


def cpu_flags(cpu: str) -> tuple[str, list[str]]:
    """``(target triple, iree-compile flags)`` for ``--cpu``; a one-line UsageError for a
    name that is none of :data:`CPUS`, :data:`ARM_CORES` or :data:`X86_CORES`."""
    if not isinstance(cpu, str) or not _NAME.match(cpu):
        raise UsageError(f"--cpu must be a CPU name such as host or aarch64, got {cpu!r}")
    if cpu == "host":
        return host_triple(), ["--iree-llvmcpu-target-cpu=host"]
    if cpu == "aarch64":
        triple, name = "aarch64-linux-gnu", "generic"
    elif cpu in ARM_CORES:
        triple, name = "aarch64-linux-gnu", cpu
    elif cpu in X86_LEVELS or cpu in X86_CORES:
        triple, name = "x86_64-linux-gnu", cpu
    else:
        raise UsageError(f"unknown --cpu {cpu!r}; choose {', '.join(CPUS)}, an Arm core "
                         f"({', '.join(ARM_CORES)}) or an x86 core ({', '.join(X86_CORES)})")
    return triple, [f"--iree-llvmcpu-target-triple={triple}", f"--iree-llvmcpu-target-cpu={name}"]


def runs_here(triple: str) -> bool:
    """Whether a module compiled for ``triple`` can run on this machine's architecture."""
    return triple.split("-")[0] == host_triple().split("-")[0]
