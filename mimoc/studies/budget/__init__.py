"""Latency budgets: where a detector meets the 6G slot target, and at what error rate.

``mimoc budget`` prints them.

For each target the detector is compiled (or its FLOPs taken) and one coherence slot of
``S`` symbols (default 14) is costed as two parts::

    per_slot = preparation + detection,     detection = S x per_symbol

- **preparation**: the work done once per channel realisation -- the ONNX slot stage
  (``slot.onnx``: ``H^T H``, ...), the crossbar's per-slot programming of the channel
  arrays, the slot-rate FLOPs on a reference processor;
- **detection**: the ``S`` symbol vectors of the slot.

``per_symbol = detection / S``; throughput ``S / per_slot`` symbol vectors per second
(x ``Nt log2 M`` bits); the slot meets the budget (default 100 us, the 6G air-interface
target) when ``per_slot <= budget``, with margin ``budget - per_slot`` (negative: missed by)
and headroom ``budget / per_slot``.

Where each number comes from (``Latency.source``):

- ``measured``: onnxruntime on this CPU, batch 1 (one channel realisation), one thread,
  median of repeated runs (:func:`mimoc.runtime.bench.median_time`) of ``slot.onnx``
  (preparation) and of ``symbol.onnx`` on the ``S`` symbols (detection);
- ``schedule``: the crossbar schedule's totals (``schedule.json["totals"]``):
  ``programming_s_per_slot`` (preparation) and ``slot_symbols x symbol_s`` (detection);
  the one-time static programming with verify is reported apart, it is not per slot;
- ``flops``: the compiler's FLOP count (default ONNX pipeline; 2 x MACs) divided by the
  processor's peak x utilisation (:mod:`mimoc.hardware.processors`): slot-rate FLOPs
  (preparation) and ``S x`` per-symbol FLOPs (detection). At utilisation 1.0 these are
  lower bounds.

Each target also gets its SER at one SNR, all on the same channel and noise draws
(:func:`mimoc.sim.ber.simulate`): ONNX targets run their compiled artifact, crossbar
targets the IMC simulator at the device's cycle-to-cycle variation, reference processors
the digital (PyTorch) model.

One function per target kind prepares it (:data:`PREPARERS`): :func:`prepare_onnx`,
:func:`prepare_crossbar`, :func:`prepare_processor`. A target whose compiler or runtime
refuses the model is reported as failed with the error's one line, never with made-up
numbers. Targets compile through :func:`mimoc.driver.compile`.

The modules, by concern: :mod:`~mimoc.studies.budget.target_names` (the ``--targets``
grammar), :mod:`~mimoc.studies.budget.context` (the model, its link and the work
directory), :mod:`~mimoc.studies.budget.prepare` (compile and cost one target),
:mod:`~mimoc.studies.budget.results` (latencies, rows, the report),
:mod:`~mimoc.studies.budget.measure` (the SER and the whole run) and
:mod:`~mimoc.studies.budget.table` (the text).

Example::

    >>> report = run_budget("examples/models/detnet_8x16_qpsk.pt",
    ...                     targets="onnx-cpu,dsp-c6678", snr_db=0.0, ser_symbols=20_000)
    >>> row = report.target("dsp-c6678")
    >>> row.meets_budget, row.latency.source           # 9.0 MFLOP / 128 GFLOPS = 70 us
    (True, 'flops')
    >>> print(format_budget(report))
"""

from __future__ import annotations

from mimoc.studies.budget.context import (
    DEFAULT_ARRAY,
    DEFAULT_SLOT,
    BudgetContext,
    budget_context,
    default_snr,
    load_model,
    model_info,
    model_system,
)
from mimoc.studies.budget.measure import (
    DEFAULT_BUDGET_S,
    DEFAULT_SER_SYMBOLS,
    DIGITAL,
    assemble,
    measure_ser,
    run_budget,
)
from mimoc.studies.budget.prepare import (
    PREPARERS,
    prepare,
    prepare_crossbar,
    prepare_onnx,
    prepare_processor,
)
from mimoc.studies.budget.results import (
    SOURCES,
    BudgetReport,
    Latency,
    PreparedTarget,
    TargetBudget,
)
from mimoc.studies.budget.table import format_budget, format_us
from mimoc.studies.budget.target_names import (
    DEFAULT_DEVICE,
    DEFAULT_QUANT,
    DEFAULT_TARGETS,
    ONNX_LOWERINGS,
    TargetSpec,
    parse_target,
    parse_targets,
    target_names_help,
)

__all__ = ["DEFAULT_ARRAY", "DEFAULT_BUDGET_S", "DEFAULT_DEVICE", "DEFAULT_QUANT",
           "DEFAULT_SER_SYMBOLS", "DEFAULT_SLOT", "DEFAULT_TARGETS", "DIGITAL", "ONNX_LOWERINGS",
           "PREPARERS", "SOURCES", "BudgetContext", "BudgetReport", "Latency", "PreparedTarget",
           "TargetBudget", "TargetSpec", "assemble", "budget_context", "default_snr",
           "format_budget", "format_us", "load_model", "measure_ser", "model_info",
           "model_system", "parse_target", "parse_targets", "prepare", "prepare_crossbar",
           "prepare_onnx", "prepare_processor", "run_budget", "target_names_help"]
