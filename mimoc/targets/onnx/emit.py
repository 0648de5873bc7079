"""One IR graph -> one ONNX model, through the emitter table.

:func:`emit_model` first plans every node's layout (:func:`.layout.plan_layouts`: rows
``[B*S, n]`` or the IR shape), then walks the IR graph in order and calls
``EMITTERS[node.op].emit`` for each node in its layout; graph inputs become ONNX graph
inputs (symbolic dims as ``dim_param`` names: ``B``, ``S``, ``2*U``), weights become
initializers (never graph inputs), and the graph outputs keep their IR names (``x_hat``,
the slot-state names). The result is deterministic: names come from the IR, nodes and
initializers appear in graph order, and nothing depends on time or on the machine.

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
from mimoc.targets.onnx.emitters import EMITTERS, LAYOUT_RULES
from mimoc.targets.onnx.layout import Layout, plan_layouts
from mimoc.targets.onnx.residual import fold_residual_scales
from mimoc.targets.onnx.siblings import fuse_sibling_gemms
from mimoc.targets.onnx.uncode import drop_zero_parts, undo_difference_coding

#: ONNX opset of the default domain (21: Gelu, LayerNormalization, Reduce* with axes inputs).
OPSET = 21
#: ONNX IR version written (10 is the first that opset 21 needs; onnxruntime >= 1.17 reads it).
IR_VERSION = 10


def supported_ops() -> list[str]:
    return sorted(EMITTERS)


def emit_model(graph: Graph, name: str, doc: str = "", *, lowering: str = "fp32",
               layers: dict | None = None) -> onnx.ModelProto:
    """Translate a verified IR graph into an ONNX model.

    ``lowering``: ``fp32``, or for a graph with quantized layers ``w4`` / ``w4a4`` / ``int8``
    (:mod:`.quantized`), a name or a :class:`~.context.Lowering` with options; ``layers``,
    when given, receives what each quantized layer got (scope -> description). Raises
    :class:`EmitError` naming the op and the layer for an op without an emitter.
    """
    verify(graph, after=f"onnx target ({name})")
    ctx = EmitContext(graph, lowering)  # an unknown lowering is an EmitError
    plan = plan_layouts(graph, ctx.lowering, LAYOUT_RULES)
    for node in graph.nodes:
        entry = EMITTERS.get(node.op)
        if entry is None:
            where = f" in {node.scope}" if node.scope else ""
            raise EmitError(f"the ONNX target has no lowering for op {node.op} "
                            f"(%{node.name}{where}); supported: {', '.join(supported_ops())}")
        layout = plan.layout(node.name)
        value = entry.emit(ctx, node, layout)
        if value is not None:
            (ctx.flat if layout is Layout.ROWS else ctx.values)[node.name] = value
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
    onnx_graph = helper.make_graph(ctx.nodes, name, ctx.inputs, outputs,
                                   initializer=list(ctx.initializers.values()), doc_string=doc)
    model = helper.make_model(onnx_graph, opset_imports=opsets, ir_version=IR_VERSION,
                              producer_name="mimoc", producer_version=__version__)
    model = fuse_sibling_gemms(model)  # DetNet's fc2 / fc3: one wider GEMM at small batch
    if ctx.lowering == "fp32":  # the quantized lowerings keep their own graphs
        # no input quantizer: the quantized model's coded and zero-padded inputs go
        model = undo_difference_coding(drop_zero_parts(model))
        model = fold_residual_scales(model)  # DetNet's x_{k+1} = P + 0.9 x_k: no Mul
    return model
