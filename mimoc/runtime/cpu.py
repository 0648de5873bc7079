"""This machine's CPU as every timing names it; defined in :mod:`mimoc.hardware.cpu` (the
hardware layer, so that the compiler's lowering selection can name it too)."""

from mimoc.hardware.cpu import FEATURES, cpu_features, cpu_name, describe_cpu, has_vnni

__all__ = ["FEATURES", "cpu_features", "cpu_name", "describe_cpu", "has_vnni"]
