"""Quantization: KAQ (kernel-based adaptive quantization), KAQ-PTQ, LSQ, min-max and int8.

:mod:`mimoc.quant.spec` is the recipe format shared with the compiler.
"""
