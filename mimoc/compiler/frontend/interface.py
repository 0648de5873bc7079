"""The detector interface the frontend translates: input names, their dynamic dims and
rates, and the output name.

Graph inputs: ``H [B, 2Nr, 2Nt]`` (slot rate) and ``y [B, S, 2Nr]`` (symbol rate); the
output is ``x_hat [B, S, 2Nt]``.
"""

from __future__ import annotations

from collections.abc import Mapping

from mimoc.compiler.ir import Rate

# input name -> {axis: dim name or (dim name, multiplier)}
DimSpec = Mapping[str, Mapping[int, "str | tuple[str, int]"]]
DEFAULT_DIMS: dict[str, dict[int, str]] = {"H": {0: "B"}, "y": {0: "B", 1: "S"}}
INPUT_RATES = {"H": Rate.SLOT, "y": Rate.SYMBOL}
OUTPUT_NAMES = ("x_hat",)
