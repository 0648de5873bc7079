"""Back ends, one package per target (onnx-cpu, crossbar)."""
