"""IR passes: each module has a pure ``run(graph) -> graph`` and a ``PASS`` object (a
frozen dataclass carrying its options, :mod:`.base`).

The pipeline (:mod:`mimoc.compiler.pipeline`) lists them explicitly and runs the verifier
after each.
"""
