"""Executors for compiled artifacts (onnxruntime runner, IMC simulator, budgets)."""
