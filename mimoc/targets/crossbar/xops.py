"""Target-level IR ops of the crossbar target, registered in the op table.

- ``CrossbarMVM(x, M, b?)``: a matrix-vector product on crossbar arrays. ``form`` says how
  ``M`` is read: ``matmul`` (``x @ M``; ``M [.., in, out]`` a channel matrix or a weight),
  ``linear`` (``x M^T + b``; ``M = W [out, in]``), ``conv2d`` (im2col convolution with the
  weight ``M [O, C, kh, kw]``). ``matrix`` names the array set in the schedule that holds
  ``M``; ``reads`` is how many sequential array reads one symbol needs (conv: one per
  output position). The reference executor is the ideal product, so a lowered graph stays
  executable by :mod:`mimoc.compiler.interpreter`; the IMC simulator
  (:mod:`mimoc.runtime.imc`) replaces it with the programmed conductances.
- ``ADC(x; full_scale)``: the value leaves the analog domain (ideal: identity; the
  simulator quantises to the ADC resolution over ``[-full_scale, full_scale]``).
- ``DAC(x; full_scale)``: a digital value drives an analog input (ideal: identity; the
  simulator quantises to the DAC resolution).

FLOPs: 0 for all three (analog work is not digital FLOPs; the schedule counts the MACs).

Example::

    %mvm: f32[B,S,4] @symbol = CrossbarMVM(%dac, %H, form='matmul', matrix='H', reads=1)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mimoc.compiler import ops
from mimoc.compiler.ops import Attr, Operand, OpSchema, fail

FORMS = ("matmul", "linear", "conv2d")


def _mvm_shape(types, attrs):
    form = attrs["form"]
    if form not in FORMS:
        fail(f"CrossbarMVM: unknown form {form!r}; forms: {', '.join(FORMS)}")
    if form == "matmul":
        if len(types) > 2:
            fail("CrossbarMVM: form 'matmul' takes no bias")
        return ops.OPS["MatMul"].shape(types, attrs)
    if form == "linear":
        return ops.OPS["Linear"].shape(types, attrs)
    return ops.OPS["Conv2d"].shape(types, attrs)


def _mvm_exec(args, attrs, sizes):
    form = attrs["form"]
    if form == "matmul":
        return torch.matmul(args[0], args[1])
    if form == "linear":
        return F.linear(*args)
    b = args[2] if len(args) > 2 else None
    return F.conv2d(args[0], args[1], b, attrs["stride"], attrs["padding"], attrs["dilation"])


CROSSBAR_MVM = OpSchema(
    "CrossbarMVM", "matrix-vector product on crossbar arrays (ideal reference: exact product)",
    (Operand("x"), Operand("M"), Operand("b", const=True, optional=True)), _mvm_shape,
    _mvm_exec, (Attr("form", (str,)), Attr("matrix", (str,)), Attr("reads", (int,), 1),
                Attr("stride", (tuple,), (1, 1)), Attr("padding", (tuple,), (0, 0)),
                Attr("dilation", (tuple,), (1, 1)), Attr("groups", (int,), 1)))

ADC = OpSchema("ADC", "analog -> digital conversion (ideal reference: identity)",
               (Operand("x"),), lambda types, attrs: types[0].shape,
               lambda args, attrs, sizes: args[0], (Attr("full_scale", (float, int), 1.0),))

DAC = OpSchema("DAC", "digital -> analog conversion (ideal reference: identity)",
               (Operand("x"),), lambda types, attrs: types[0].shape,
               lambda args, attrs, sizes: args[0], (Attr("full_scale", (float, int), 1.0),))

for _schema in (CROSSBAR_MVM, ADC, DAC):
    if _schema.name not in ops.OPS:
        ops.register(_schema)
