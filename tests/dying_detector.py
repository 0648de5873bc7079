"""A detector whose worker process dies in its first unit (for the Ray retry test): the
first call anywhere creates ``marker`` and kills the process; later calls run MMSE."""

from __future__ import annotations

import os
from pathlib import Path

from mimoc.sim.ber import classical


def dying_mmse(system, marker: str):
    mmse = classical("mmse", system.constellation)

    def detect(H, y, noise_var):
        try:
            Path(marker).open("x").close()  # atomic: only the first caller gets here
        except FileExistsError:
            return mmse(H, y, noise_var)
        os._exit(1)  # the worker dies mid-unit, as under an OOM kill or a lost node

    return detect
