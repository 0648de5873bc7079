"""One IR graph -> one ONNX model, through the emitter table.

:func:`emit_model` walks the IR graph in order and calls ``EMITTERS[node.op]`` for each
node; graph inputs become ONNX graph inputs (symbolic dims as ``dim_param`` names: ``B``,
``S``, ``2*U``), weights become initializers (never graph inputs), and the graph outputs
keep their IR names (``x_hat``, the slot-state names). The result is deterministic: names
come from the IR, nodes and initializers appear in graph order, and nothing depends on
time or on the machine.

Example::

    >>> model = emit_model(graph, "detector")
    >>> onnx.checker.check_model(model, full_check=True)
"""

from __future__ import annotations

import onnx
from onnx import helper

from mimoc import __version__
from mimoc.compiler.ir import Graph
from mimoc.compiler.verify import verify
from mimoc.targets.onnx.context import MS_DOMAIN, EmitContext, EmitError, value_info
from mimoc.targets.onnx.emitters import EMITTERS
from mimoc.targets.onnx.quantized import LOWERINGS, emit_conv, emit_fake_quant
from mimoc.targets.onnx.rows import emit_rows, is_row_node

#: ONNX opset of the default domain (21: Gelu, LayerNormalization, Reduce* with axes inputs).
OPSET = 21
#: ONNX IR version written (10 is the first that opset 21 needs; onnxruntime >= 1.17 reads it).
IR_VERSION = 10


def supported_ops() -> list[str]:
    return sorted({"Input", "Const", "FakeQuant", *EMITTERS})


def emit_model(graph: Graph, name: str, doc: str = "", *, lowering: str = "fp32",
               layers: dict | None = None) -> onnx.ModelProto:
    """Translate a verified IR graph into an ONNX model.

    ``lowering``: ``fp32``, or for a graph with quantized layers ``w4`` / ``w4a4`` / ``int8``
    (:mod:`.quantized`); ``layers``, when given, receives what each quantized layer got
    (scope -> description). Raises :class:`EmitError` naming the op and the layer for an
    op without an emitter.
    """
    verify(graph, after=f"onnx target ({name})")
    if lowering not in LOWERINGS:
        raise EmitError(f"unknown lowering {lowering!r}; choose from {', '.join(LOWERINGS)}")
    ctx = EmitContext(graph, lowering)
    inputs = []
    for node in graph.nodes:
        if node.op == "Input":
            ctx.values[node.name] = node.name
            inputs.append(value_info(node.name, node))
            continue
        if node.op == "Const":  # an initializer once an emitter reads it (ctx.value)
            continue
        if node.op == "FakeQuant":  # activation quantizer: per lowering (:mod:`.quantized`)
            emit_fake_quant(ctx, node)
            continue
        if node.op == "Conv2d":
            out = emit_conv(ctx, node)
            if out is not None:
                ctx.values[node.name] = out
                continue
        if is_row_node(ctx, node):  # per-symbol layers on [B*S, n] rows: Gemm + bias
            ctx.flat[node.name] = emit_rows(ctx, node)
            continue
        emitter = EMITTERS.get(node.op)
        if emitter is None:
            where = f" in {node.scope}" if node.scope else ""
            raise EmitError(f"the ONNX target has no lowering for op {node.op} "
                            f"(%{node.name}{where}); supported: {', '.join(supported_ops())}")
        ctx.values[node.name] = emitter(ctx, node)
    outputs = []
    for out in graph.outputs:
        node = graph.node(out)
        value = ctx.value(out)
        if value != out:  # emitted under another name (a shared initializer)
            value = ctx.node("Identity", [value], node=node, output=out)
        outputs.append(value_info(value, node))
    opsets = [helper.make_opsetid("", OPSET)]
    if MS_DOMAIN in ctx.domains:
        opsets.append(helper.make_opsetid(MS_DOMAIN, 1))
    if layers is not None:
        layers.update(ctx.layer_lowerings)
    onnx_graph = helper.make_graph(ctx.nodes, name, inputs, outputs,
                                   initializer=list(ctx.initializers.values()), doc_string=doc)
    model = helper.make_model(onnx_graph, opset_imports=opsets, ir_version=IR_VERSION,
                              producer_name="mimoc", producer_version=__version__)
    return model
