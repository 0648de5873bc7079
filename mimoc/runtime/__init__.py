"""Executors for compiled artifacts.

- :func:`load_artifact` / :class:`OnnxArtifact`: an onnx-cpu artifact run by onnxruntime
  (slot stage once per channel, symbol stage per symbol), ``detect(H, y)``, and
  ``engine()`` for :func:`mimoc.sim.ber.simulate`;
- :func:`session_options`: the onnxruntime settings used for small detector models.

Example::

    >>> from mimoc.runtime import load_artifact
    >>> x_hat = load_artifact("out/detnet").detect(H, y)
"""

from mimoc.runtime.onnx_runner import OnnxArtifact, is_artifact, load_artifact, session_options

__all__ = ["OnnxArtifact", "is_artifact", "load_artifact", "session_options"]
