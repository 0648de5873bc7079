"""Back ends, one package per target.

- :mod:`mimoc.targets.onnx`: onnx-cpu, fp32 ONNX models for onnxruntime;
- :mod:`mimoc.targets.crossbar`: memristor crossbar programming schedules (schedule.json +
  arrays.npz) for the IMC simulator :mod:`mimoc.runtime.imc`;
- :mod:`mimoc.targets.output`: atomic artifact directories, shared by the targets.

:data:`TARGETS` lists the targets ``mimoc compile --target`` accepts.
"""

TARGETS = ("onnx", "crossbar")
