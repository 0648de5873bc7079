"""Hardware: what mimoc compiles for and measures against, below everything that uses it.

- :mod:`mimoc.hardware.devices`: memristor device profiles (``Device``, ``load_device``,
  ``list_devices``, ``device_from_dict``), read from ``mimoc/data/devices``;
- :mod:`mimoc.hardware.programming`: the programming physics of crossbar cells (mapping,
  pulse counts, open-loop programming with C2C noise, program-and-verify), shared by
  noise-aware training, the crossbar target and the IMC simulator;
- :mod:`mimoc.hardware.variability`: drift, read noise and device-to-device spread of
  programmed cells, applied by the IMC simulator;
- :mod:`mimoc.hardware.energy`: energy and area of counted crossbar work (``slot_costs``);
- :mod:`mimoc.hardware.processors`: reference processor profiles for latency budgets
  (``Processor``, ``load_processor``), read from ``mimoc/data/processors``.

This layer imports only the base layer (errors, validation, file I/O), torch and numpy.
"""
