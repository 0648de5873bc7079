"""Sweeps: the cartesian product of models, targets, devices, C2C levels, array sizes,
quantization methods and SNR points, run as one resumable job (``mimoc sweep``).

- :mod:`~mimoc.studies.sweep.spec`: the sweep file and its plan;
- :mod:`~mimoc.studies.sweep.journal`: finished units, one JSON line each (resume);
- :mod:`~mimoc.studies.sweep.run`: compile once, simulate (serially or on Ray), write
  results.json, the table and the plots.
"""

from mimoc.studies.sweep.run import run_sweep
from mimoc.studies.sweep.spec import SweepSpec, load_spec

__all__ = ["SweepSpec", "load_spec", "run_sweep"]
