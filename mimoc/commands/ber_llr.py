"""``mimoc ber --save-llr FILE.npz``: collect every LLR of a run and write them (the
format: :class:`mimoc.sim.llr.LLRRecorder`)."""

from __future__ import annotations

import argparse
import os

from mimoc.errors import UsageError
from mimoc.sim.llr import MAX_LLR_BYTES, LLRRecorder
from mimoc.sim.system import MIMOSystem


def llr_recorder(args: argparse.Namespace, detectors: int, points: int,
                 system: MIMOSystem) -> LLRRecorder | None:
    """The collector of ``--save-llr`` (None without it); refused before the run when the
    file could exceed :data:`~mimoc.sim.llr.MAX_LLR_BYTES` (it is held in memory first)."""
    if args.save_llr is None:
        return None
    if args.output != "llr":
        raise UsageError("--save-llr writes LLRs; add --output llr")
    per_slot = system.slot * system.nt
    symbols = -(-args.max_symbols // per_slot) * per_slot
    size = LLRRecorder.size_bound(detectors, points, symbols,
                                  system.constellation.bits_per_symbol)
    if size > MAX_LLR_BYTES:
        raise UsageError(f"--save-llr could need {size / 1e9:.3g} GB, more than "
                         f"{MAX_LLR_BYTES / 1e9:.3g} GB; lower --max-symbols or run fewer "
                         "points or detectors")
    return LLRRecorder()


def write_llrs(recorder: LLRRecorder, path: str | os.PathLike) -> None:
    """Write the collected LLRs atomically, or one line saying why not."""
    from mimoc.commands.writing import one_line_on_write_error
    from mimoc.fileio import atomic_write

    with one_line_on_write_error("LLR file", path), atomic_write(path) as handle:
        handle.write(recorder.npz_bytes())
