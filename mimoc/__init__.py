"""mimoc: compile trained deep MIMO detectors to deployable kernels.

Layout (see DESIGN.md):

- :mod:`mimoc.sim` -- modulations, channels, SNR conventions, classical
  detectors and the BER/SER engine;
- :mod:`mimoc.detectors` -- the trainable detector zoo;
- :mod:`mimoc.compiler` -- frontend, IR, passes and pipelines;
- :mod:`mimoc.targets` -- ONNX and crossbar back ends;
- :mod:`mimoc.runtime` -- executors for compiled artifacts.
"""

from mimoc.errors import MimocError

__version__ = "0.1.0"

__all__ = ["MimocError", "__version__"]
