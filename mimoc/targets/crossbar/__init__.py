"""Crossbar target: memristor devices, tiling, programming schedules (DESIGN.md section 7).

- :mod:`mimoc.targets.crossbar.devices`: device profiles (``load_device``, ``list_devices``).
"""
