"""The tables assembled from several modules: the frontend's handler families and the
IR's FakeQuant op, which must round exactly as the quantization recipe contract."""

from __future__ import annotations

import pytest
import torch

from mimoc.compiler import ops
from mimoc.compiler.frontend import HANDLERS, supported_ops
from mimoc.compiler.frontend.handlers import FAMILIES
from mimoc.compiler.ir import Attrs
from mimoc.quant.spec import ActQuant, fake_quant_act


def test_handler_families_are_disjoint_and_make_the_table():
    counted = sum(len(table) for table in FAMILIES.values())
    assert counted == len(HANDLERS)  # no ATen op in two families (one would shadow the other)
    assert {"aten.linear", "aten.cat", "aten.relu", "aten.linalg_solve", "aten.zeros",
            "aten.clone"} <= set(supported_ops())


@pytest.mark.parametrize("mode", ["static", "dynamic"])
@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fake_quant_op_equals_the_recipe_contract_bit_for_bit(mode, signed, dtype, generator):
    fake_quant = ops.schema("FakeQuant")
    for bits in range(2, 9):
        for feature_dims in (1, 2, 3):
            for alpha in (0.05, 0.5, 2):
                x = 3 * torch.randn(2, 3, 4, 5, generator=generator, dtype=dtype)
                x[0] = 0  # an all-zero input: the dynamic step is EPS-sized, not zero
                x[1] *= 1e-6  # mean(x^2) near EPS: both must add the same EPS
                attrs = Attrs({"bits": bits, "signed": signed, "mode": mode, "alpha": alpha,
                               "feature_dims": feature_dims})
                got = fake_quant.execute([x], fake_quant.with_defaults(attrs), {})
                want = fake_quant_act(x, ActQuant(bits, mode, float(alpha), signed),
                                      feature_dims)
                assert got.dtype == dtype and torch.equal(got, want), (bits, feature_dims)
