"""Crossbar target: memristor devices, tiling, programming schedules (docs/design.md section 7).

- device profiles and the programming physics are :mod:`mimoc.hardware`;
- :mod:`.lower`: the ``crossbar-lower`` pass (``H^T (H x)`` on two arrays, ``CrossbarMVM``,
  ADC/DAC where values cross domains); :mod:`.xops`: the target-level IR ops;
- :mod:`.arrays` (matrices, mapping, tiles), :mod:`.programming` (per-slot and static
  programming plans), :mod:`.latency` (critical paths, peripherals, digital work);
- :mod:`.artifact`: ``schedule.json`` + ``arrays.npz``; :mod:`.build`: the compile entry
  point used by :func:`mimoc.compile`. The simulator is :mod:`mimoc.runtime.imc`.
"""
