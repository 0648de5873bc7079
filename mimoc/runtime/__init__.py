"""Executors for compiled artifacts.

- :func:`load`: any artifact, by its declared format (:mod:`mimoc.runtime.loader`);
- :func:`load_artifact` / :class:`OnnxArtifact`: an ONNX artifact run by onnxruntime
  (slot stage once per channel, symbol stage per symbol), ``detect(H, y)``, and
  ``engine()`` for :func:`mimoc.sim.ber.simulate`;
- :func:`mimoc.runtime.imc.load_schedule`: a crossbar artifact run by the IMC simulator;
- :func:`session_options`: the onnxruntime settings used for small detector models.

Example::

    >>> from mimoc.runtime import load
    >>> x_hat = load("out/detnet").detect(H, y)
"""

from mimoc.runtime.loader import is_artifact, load
from mimoc.runtime.onnx_runner import OnnxArtifact, load_artifact, session_options

__all__ = ["OnnxArtifact", "is_artifact", "load", "load_artifact", "session_options"]
