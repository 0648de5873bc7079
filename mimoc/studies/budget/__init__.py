"""Budgets: does a detector meet the slot deadline of a receiver, at an error rate that is
worth having? ``mimoc budget`` prints them.

Every target gets one **joint verdict**: it **meets** only when its per-slot latency at a
stated percentile (default p99.9) is within the budget (default 100 us, the 6G
air-interface target) AND its SNR loss at a target SER (default 1e-3) against the fp32
digital model is within a limit (default 0.5 dB, all of its 95% interval); it **misses**
when either is known to exceed its limit (the row says which); otherwise it is
**unknown** (:mod:`~mimoc.studies.budget.verdict`).

**The workload** (:mod:`~mimoc.studies.budget.workload`, with the 5G NR numbers of
:mod:`mimoc.sim.numerology`): ``N`` subcarriers per slot (``--subcarriers``, default 1; a
100 MHz carrier at 30 kHz spacing has 3,276), ``K`` of them sharing a channel
(``--subcarriers-per-channel``, default 12, a resource block): ``B = ceil(N / K)`` channel
realisations per slot, each with ``S x min(K, N)`` symbol vectors (``S = 14`` OFDM
symbols). Each target's slot is costed as::

    per_slot = preparation (once per channel, x B) + detection (every symbol vector)

and each row says how many subcarriers the target detects within the budget.

**Latency**, by source (``Latency.source``):

- ``measured``: the ONNX artifacts (onnxruntime) and the classical ``mmse`` reference (batched
  torch) on this CPU, at the workload's batch, one thread, thousands of timed calls
  (:mod:`~mimoc.studies.budget.timing`): p50, p99, p99.9 and the share of slots over
  the budget;
- ``schedule``: a crossbar serves one channel at a time with one array set: per channel,
  the programming of its channel arrays (which depends on the draw: the row maximum of the
  pulse counts) over 4,096 channel draws of the model's link by the simulator's
  programming model, then the symbols' critical path; replication (more array sets)
  multiplies the area, which the row states;
- ``flops``: the compiler's FLOP count over a processor's peak x utilisation: a lower bound
  on the latency, which can prove a miss, never a meet.

**Accuracy** (:mod:`~mimoc.studies.budget.accuracy`): ONNX targets run their artifact,
crossbars the IMC simulator at the device's C2C, processors the digital model, ``mmse``
the classical detector, all on the same seeded slots at a grid of SNRs around the fp32
model's crossing of the target SER; the loss's interval is a paired bootstrap over slots
(the independent unit: a slot's symbols share a channel).

A target whose compiler or runtime refuses the model is reported as failed with the
error's one line, never with made-up numbers. Targets compile through
:func:`mimoc.driver.compile`.

The modules, by concern: :mod:`~mimoc.studies.budget.target_names` (the ``--target``
grammar), :mod:`~mimoc.studies.budget.context` (the model, its link, the limits, the work
directory), :mod:`~mimoc.studies.budget.prepare` (compile and cost one target),
:mod:`~mimoc.studies.budget.results` (latencies, rows, the report),
:mod:`~mimoc.studies.budget.measure` (the accuracy and the whole run) and
:mod:`~mimoc.studies.budget.table` (the text).

Example::

    >>> report = run_budget("examples/models/detnet_8x16_qpsk.pt",
    ...                     targets="onnx,dsp-c6678,mmse", ser_symbols=20_000)
    >>> row = report.target("dsp-c6678")
    >>> row.latency.lower_bound, row.verdict         # 70 us >= FLOPs / 128 GFLOPS
    (True, 'unknown')
    >>> print(format_budget(report))
"""

from __future__ import annotations

from mimoc.studies.budget.accuracy import (
    DEFAULT_MAX_LOSS_DB,
    DEFAULT_TARGET_SER,
    Loss,
    SlotErrors,
    crossing,
    simulate_slots,
    snr_losses,
)
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
    REFERENCE,
    Accuracy,
    assemble,
    evaluate,
    measure_accuracy,
    planned_steps,
    run_budget,
)
from mimoc.studies.budget.prepare import (
    PREPARERS,
    prepare,
    prepare_all,
    prepare_classical,
    prepare_crossbar,
    prepare_onnx,
    prepare_processor,
)
from mimoc.studies.budget.results import (
    SOURCES,
    BudgetReport,
    Capacity,
    Latency,
    PreparedTarget,
    TargetBudget,
)
from mimoc.studies.budget.table import format_budget, format_loss, format_us, verdict_text
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
from mimoc.studies.budget.timing import DEFAULT_CALLS, DEFAULT_PERCENTILE, Tail
from mimoc.studies.budget.verdict import MEETS, MISSES, UNKNOWN, decide
from mimoc.studies.budget.workload import Workload

__all__ = ["DEFAULT_ARRAY", "DEFAULT_BUDGET_S", "DEFAULT_CALLS", "DEFAULT_DEVICE",
           "DEFAULT_MAX_LOSS_DB", "DEFAULT_PERCENTILE", "DEFAULT_QUANT", "DEFAULT_SER_SYMBOLS",
           "DEFAULT_SLOT", "DEFAULT_TARGETS", "DEFAULT_TARGET_SER", "DIGITAL", "MEETS",
           "MISSES", "ONNX_LOWERINGS", "PREPARERS", "REFERENCE", "SOURCES", "UNKNOWN",
           "Accuracy", "BudgetContext", "BudgetReport", "Capacity", "Latency", "Loss",
           "PreparedTarget", "SlotErrors", "Tail", "TargetBudget", "TargetSpec", "Workload",
           "assemble", "budget_context", "crossing", "decide", "default_snr", "evaluate",
           "format_budget", "format_loss", "format_us", "load_model", "measure_accuracy",
           "model_info", "model_system", "parse_target", "parse_targets", "planned_steps",
           "prepare", "prepare_all", "prepare_classical", "prepare_crossbar", "prepare_onnx",
           "prepare_processor", "run_budget", "simulate_slots", "snr_losses",
           "target_names_help", "verdict_text"]
