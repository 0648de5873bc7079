"""mimoc: compile trained deep MIMO detectors to deployable kernels.

Layout, bottom to top (docs/design.md section 1; each layer imports only downward):

- :mod:`mimoc.errors`, :mod:`mimoc.fileio`, :mod:`mimoc.validation` -- user-facing
  errors, atomic output, validation of every file mimoc reads;
- :mod:`mimoc.hardware` -- memristor device and reference processor profiles, the
  programming physics;
- :mod:`mimoc.sim` -- modulations, channels, SNR conventions, classical
  detectors and the BER/SER engine;
- :mod:`mimoc.detectors`, :mod:`mimoc.quant` -- the trainable zoo, quantization;
- :mod:`mimoc.compiler` -- model loading, frontend, IR, passes and pipelines;
- :mod:`mimoc.targets` -- the ONNX and crossbar back ends (plug-ins);
- :mod:`mimoc.driver` -- load -> import -> passes -> build -> write, for every target;
- :mod:`mimoc.runtime` -- executors for compiled artifacts;
- :mod:`mimoc.studies` -- latency-and-accuracy budgets, reports, plots;
- :mod:`mimoc.api`, :mod:`mimoc.cli`, :mod:`mimoc.commands` -- the interfaces.

The Python API mirrors the CLI: ``mimoc.load_detector``, ``mimoc.train_detector``,
``mimoc.simulate`` (``mimoc ber``), ``mimoc.compile`` (``mimoc compile``),
``mimoc.quantize`` / ``mimoc.save_quantized`` (``mimoc quantize``), ``mimoc.load`` (any
artifact) and ``mimoc.load_artifact`` (an ONNX one).
They are imported on first use so that ``import mimoc`` stays cheap.
"""

from mimoc.errors import MimocError

__version__ = "0.1.0"

_LAZY = {
    "load_detector": "mimoc.detectors",
    "save_detector": "mimoc.detectors",
    "build_detector": "mimoc.detectors",
    "train_detector": "mimoc.detectors",
    "TrainOptions": "mimoc.detectors",
    "simulate": "mimoc.sim.ber",
    "compile": "mimoc.api",
    "load_artifact": "mimoc.runtime",
    "load": "mimoc.runtime",
    "quantize": "mimoc.quant",
    "QuantizedDetector": "mimoc.quant",
    "save_quantized": "mimoc.quant",
    "load_quantized": "mimoc.quant",
    "MIMOSystem": "mimoc.sim",
}

__all__ = ["MimocError", "__version__", *_LAZY]


def __getattr__(name):  # PEP 562: torch and the zoo load on first use, not at import
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # found directly next time
        return value
    raise AttributeError(f"module 'mimoc' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
