"""Frontend: a PyTorch detector -> IR, through ``torch.export``.

The detector is exported with dynamic batch ``B`` and slot length ``S`` (and any other
named dims, e.g. RE-MIMO's user count ``U``) and translated node by node, one handler per
ATen op family in :data:`HANDLERS`. A graph with ops that have no handler (in-place or
composite ops) is first decomposed to the functional inference ATen opset
(``run_decompositions({})``, which keeps ``linear``, ``conv2d``, ``matmul``, ``layer_norm``,
``softmax`` as single ops). An ATen op without a handler raises
:class:`UnsupportedOpError` naming the op, the user's source line, the module it came
from and the supported set — never a silent mis-translation. Nodes that depend only on
parameters, buffers and constants (not on ``H``/``y`` or their shapes) are evaluated with
torch at import time and become constants, so any op may appear there (L-WeSNet's
profile ``ReLU(1 - cumsum(softplus(d)))``). Every translated node's shape is checked
against the shape torch recorded for it.

Graph inputs: ``H [B, 2Nr, 2Nt]`` (slot rate) and ``y [B, S, 2Nr]`` (symbol rate); the
output is ``x_hat [B, S, 2Nt]``. Node names are the exported value names; ``scope`` is the
module path (``blocks.3.fc1``) for readable artifact node names.

Modules, each importing only those listed before it:

- :mod:`.diagnostics` -- the errors, and the source line and module they point to;
- :mod:`.interface` -- input names, dynamic dims and rates, output names;
- :mod:`.folding` -- which nodes are parameters-only (evaluated at import time);
- :mod:`.state` -- the translation state handlers work on (:class:`~.state.Importer`);
- :mod:`.handlers` -- the handler table, one module per op family;
- :mod:`.importer` -- exported program -> verified IR graph (:func:`import_program`);
- :mod:`.tracing` -- ``torch.export`` of a detector, and :func:`import_module`.

Example::

    >>> graph = import_module(model)              # a zoo DetectorModule, shapes from its config
    >>> graph = import_module(model, (H, y))      # any module with forward(H, y)
"""

from mimoc.compiler.frontend.diagnostics import (
    FrontendError,
    UnsupportedOpError,
    module_scope,
    source_location,
)
from mimoc.compiler.frontend.folding import constant_nodes
from mimoc.compiler.frontend.handlers import HANDLERS, supported_ops
from mimoc.compiler.frontend.importer import import_program
from mimoc.compiler.frontend.interface import DEFAULT_DIMS, INPUT_RATES, OUTPUT_NAMES, DimSpec
from mimoc.compiler.frontend.state import Handler
from mimoc.compiler.frontend.tracing import (
    default_dims,
    example_inputs,
    export_detector,
    import_module,
)

__all__ = [
    "DEFAULT_DIMS", "HANDLERS", "INPUT_RATES", "OUTPUT_NAMES", "DimSpec", "FrontendError",
    "Handler", "UnsupportedOpError", "constant_nodes", "default_dims", "example_inputs",
    "export_detector", "import_module", "import_program", "module_scope", "source_location",
    "supported_ops",
]
