"""How a budget writes its numbers: microseconds and decibels."""

from __future__ import annotations

import math


def format_us(seconds: float) -> str:
    """Microseconds with 3-4 significant digits (``342``, ``18.0``, ``0.0091``)."""
    us = round(seconds * 1e6, 9)  # 100e-6 s is 100 us, not 99.99999999999999
    if us >= 100:
        return f"{us:.0f}"
    if us >= 10:
        return f"{us:.1f}"
    if us >= 1:
        return f"{us:.2f}"
    return f"{us:.2g}"


def format_db(db: float) -> str:
    """Decibels to 0.01 dB (``0.43``, ``-0.02``, ``inf``)."""
    if math.isinf(db):
        return "inf" if db > 0 else "-inf"
    return f"{db:.2f}".replace("-0.00", "0.00")
