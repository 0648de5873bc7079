"""``--lowering auto``: time the candidate lowerings here and keep the fastest correct one.

Which quantized lowering is fastest depends on the CPU (VNNI or not, onnxruntime's 4-bit
kernels) and on the model's sizes (issue 20: DetNet 32x64 on a Xeon with VNNI, one
thread: fp32 2288 us, int8 1101 us, w4 2862 us), so the compiler measures instead of
guessing. For each candidate (:func:`candidates`) it builds ``detector.onnx``, checks its
hard decisions on a seeded check set against the quantized reference (the IR after the
quantize pass, run by the reference interpreter: the recipe's arithmetic exactly) and
times it with onnxruntime at B = 1 and B = 64 (one slot of S = 14 symbols): rounds that
visit every candidate in turn, so that a load spike on a shared machine hits all of them,
and the median per candidate.

One lowering cannot be the fastest at every batch (issue 20, Xeon with VNNI: int8 1.32x
fp32 at B = 64 on the 8x16 example, slower at B = 1), so the choice is made per batch:
at each timed batch the winner is the fastest correct candidate, the earlier in
:func:`candidates` (more faithful) among those within :data:`TIE` of it and no slower
than a correct ``fp32`` (so that ``auto`` never costs speed against the fp32 model). ``chosen`` is
the winner at B = 1 (the artifact's stage models and ``detector.onnx``); when B = 64 has
another winner the artifact also keeps that lowering's detector, and the runtime
dispatches a call by its batch: from :func:`crossover` on (the batch where the two
winners' times, each a straight line through its B = 1 and B = 64 medians, cross) to the
large-batch one.

The timing lives here, in the targets layer, and calls onnxruntime directly (a library
call): the runtime layer's bench sits above the compiler and cannot be imported from it.
Its session settings are the runtime's (one thread, sequential, no spinning).

Example::

    >>> selection = select_lowering(model, recipe, lambda lowering: passes)
    >>> selection["chosen"], selection["buckets"], [c["median_us"] for c in
    ...                                              selection["candidates"]]
"""

from __future__ import annotations

import math
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from mimoc.errors import UsageError

PassesFor = Callable[[str], list]
#: the lowest share of hard decisions equal to the quantized reference's
MIN_AGREEMENT = 0.995
#: the check set: channel draws, symbols per slot, SNR (dB, per stream; low, so that many
#: outputs lie near a decision boundary), seed
CHECK = {"channels": 32, "symbols": 14, "snr_db": 4.0, "seed": 2020}
#: timed batch sizes (channel realisations of one 14-symbol slot)
BATCHES = (1, 64)
ROUNDS = 7
#: seconds of timed calls per candidate, batch and round (a fraction of a second in all)
MEASURE_S = 0.01
#: candidates whose score is within this share of the best count as tied
TIE = 0.03


def candidates(recipe: Any) -> tuple[str, ...]:
    """The lowerings timed for ``recipe``, most faithful first. ``fp32`` runs the
    quantized weights in fp32 GEMMs (the speed of the fp32 model) and competes only when
    its decisions agree with the quantized reference."""
    weight_bits = max((lq.weight_bits for lq in recipe.layers.values()), default=recipe.bits)
    if recipe.method == "int8" or weight_bits > 4:
        return ("int8", "fp32")
    return ("w4-int8", "w4a4", "int8", "fp32", "w4")


def check_set(config: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded links ``(H, y)`` of the model's size and modulation."""
    from mimoc.sim.system import MIMOSystem

    nt, nr = getattr(config, "nt", None), getattr(config, "nr", None)
    if nt is None or nr is None:
        raise UsageError("--lowering auto needs a zoo detector (its nt, nr and modulation); "
                         "name a lowering with --lowering")
    system = MIMOSystem(nt=nt, nr=nr, modulation=getattr(config, "modulation", "qpsk"),
                        slot=CHECK["symbols"], system=getattr(config, "system", "complex"))
    gen = torch.Generator().manual_seed(CHECK["seed"])
    batch = system.sample(CHECK["channels"], CHECK["snr_db"], generator=gen)
    return batch.H, batch.y


def _graph(model: Any, passes_for: PassesFor, lowering: str, *, lowered: bool = True):
    from mimoc.compiler.frontend import import_module
    from mimoc.compiler.pipeline import run_pipeline
    from mimoc.targets.onnx import lower

    passes = passes_for(lowering)
    graph = import_module(model.eval(), None)
    return run_pipeline(graph, passes + ([lower.PASS] if lowered else [])).graph


def detector_bytes(model: Any, passes_for: PassesFor, lowering: str) -> bytes:
    """``detector.onnx`` of the compile with ``lowering`` (default passes)."""
    from mimoc.targets.onnx.emit import emit_model
    from mimoc.targets.onnx.finish import finish_model

    onnx_model = emit_model(_graph(model, passes_for, lowering), "detector", lowering=lowering)
    return finish_model(onnx_model, {}, None).SerializeToString(deterministic=True)


def session(data: bytes, lowering: str):
    """An onnxruntime session with the runtime's settings for small models."""
    import onnxruntime as ort

    from mimoc.hardware.cpu import has_vnni

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 4
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    if lowering == "int8" and x86 and not has_vnni():  # as the runtime (onnx_runner)
        options.add_session_config_entry("session.x64quantprecision", "1")
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def _decisions(x_hat: np.ndarray, constellation) -> np.ndarray:
    return constellation.indices_of_real(torch.as_tensor(x_hat)).numpy()


def _feeds(H: torch.Tensor, y: torch.Tensor, batch: int) -> dict[str, np.ndarray]:
    reps = -(-batch // H.shape[0])
    return {"H": H.repeat(reps, 1, 1)[:batch].numpy(), "y": y.repeat(reps, 1, 1)[:batch].numpy()}


def _time_once(sess, feed: dict[str, np.ndarray], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        sess.run(None, feed)
    return (time.perf_counter() - start) / calls


def time_sessions(sessions: dict[str, Any], feeds: dict[int, dict[str, np.ndarray]]
                  ) -> dict[str, dict[int, float]]:
    """Median seconds per call of every session at every batch, over :data:`ROUNDS`
    interleaved rounds of about :data:`MEASURE_S` each."""
    calls: dict[tuple[str, int], int] = {}
    for name, sess in sessions.items():
        for batch, feed in feeds.items():
            first = _time_once(sess, feed, 1)  # warm-up (allocations), and the call count
            calls[name, batch] = max(1, min(200, int(MEASURE_S / max(first, 1e-6))))
    samples: dict[tuple[str, int], list[float]] = {key: [] for key in calls}
    for _ in range(ROUNDS):
        for (name, batch), count in calls.items():
            samples[name, batch].append(_time_once(sessions[name], feeds[batch], count))
    return {name: {batch: statistics.median(samples[name, batch]) for batch in feeds}
            for name in sessions}


def select_lowering(model: Any, recipe: Any, passes_for: PassesFor) -> dict[str, Any]:
    """Time and check :func:`candidates`; the record the manifest keeps as
    ``lowering_selection`` (``chosen``: the lowering to compile with). ``passes_for``:
    lowering -> the pipeline that quantizes with ``recipe`` (the target's, passed in so
    that this module needs nothing from it)."""
    import onnxruntime

    from mimoc.compiler.interpreter import run
    from mimoc.hardware.cpu import describe_cpu
    from mimoc.sim.modulation import get_constellation

    config = getattr(model, "config", None)
    H, y = check_set(config)
    constellation = get_constellation(getattr(config, "modulation", "qpsk"))
    reference_graph = _graph(model, passes_for, "w4a4", lowered=False)  # FakeQuant kept
    with torch.no_grad():
        reference = _decisions(run(reference_graph, {"H": H, "y": y})[0].numpy(),
                               constellation)
    names = candidates(recipe)
    sessions, agreement = {}, {}
    for name in names:
        sess = session(detector_bytes(model, passes_for, name), name)
        x_hat = sess.run(None, {"H": H.numpy(), "y": y.numpy()})[0]
        agreement[name] = float(np.mean(_decisions(x_hat, constellation) == reference))
        sessions[name] = sess
    seconds = time_sessions(sessions, {b: _feeds(H, y, b) for b in BATCHES})
    correct = [n for n in names if agreement[n] >= MIN_AGREEMENT]
    if not correct:
        raise UsageError("--lowering auto: no lowering reproduces the quantized model's "
                         f"decisions on the check set (agreement {agreement}); name one "
                         "with --lowering")
    best = {b: min(seconds[n][b] for n in correct) for b in BATCHES}
    score = {n: sum(seconds[n][b] / best[b] for b in BATCHES) for n in names}
    # a tie never makes auto slower than fp32 (the speed a user can always have)
    limit = {b: min([best[b] * (1 + TIE)] + [seconds[n][b] for n in correct if n == "fp32"])
             for b in BATCHES}
    winner = {b: next(n for n in correct if seconds[n][b] <= limit[b]) for b in BATCHES}
    small, large = winner[BATCHES[0]], winner[BATCHES[-1]]
    buckets = [{"from_batch": BATCHES[0], "lowering": small}]
    if large != small:
        buckets.append({"from_batch": crossover(seconds[small], seconds[large]),
                        "lowering": large})
    return {
        "chosen": small,
        "buckets": buckets,
        "rule": f"per timed B in {list(BATCHES)}: the fastest median among candidates with "
                f">= {MIN_AGREEMENT} of the quantized reference's hard decisions; ties "
                f"within {TIE:.0%} (and not slower than a correct fp32): the earlier (more "
                f"faithful) candidate. chosen: the B = "
                f"{BATCHES[0]} winner; a different B = {BATCHES[-1]} winner serves calls "
                "from the batch where the two winners' times (lines through their medians) "
                "cross",
        "cpu": describe_cpu(),
        "machine": platform.machine(),
        "onnxruntime": onnxruntime.__version__,
        "threads": 1,
        "check": {**CHECK, "min_agreement": MIN_AGREEMENT, "reference": "IR interpreter "
                  "after the quantize pass (the recipe's arithmetic)"},
        "candidates": [{"lowering": n, "agreement": round(agreement[n], 6),
                        "correct": n in correct, "score": round(score[n], 4),
                        "median_us": {f"B={b}": round(seconds[n][b] * 1e6, 2)
                                      for b in BATCHES}} for n in names],
    }


def crossover(small: dict[int, float], large: dict[int, float]) -> int:
    """The first batch at which ``large`` (faster at the largest timed batch) is expected
    to beat ``small`` (faster at the smallest): both times as straight lines through the
    two timed batches (a fixed cost per call plus a cost per channel), clamped to the
    timed range."""
    lo, hi = BATCHES[0], BATCHES[-1]
    slope = {k: (t[hi] - t[lo]) / (hi - lo) for k, t in (("s", small), ("l", large))}
    if slope["s"] <= slope["l"]:
        return hi
    at = lo + (large[lo] - small[lo]) / (slope["s"] - slope["l"])
    return int(min(hi, max(lo + 1, math.ceil(at))))


def detector_graph(model: Any, passes_for: PassesFor, lowering: str):
    """The lowered IR graph of a compile with ``lowering`` (default passes): the extra
    large-batch detector of an artifact whose buckets differ."""
    return _graph(model, passes_for, lowering)
