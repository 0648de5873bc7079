"""Compiler: frontend (safe load, torch.export), the IR, passes and pipelines."""
