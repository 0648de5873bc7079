"""Latency and throughput of a detector: PyTorch eager vs plain ONNX export vs mimoc's artifact.

For one slot of ``S`` symbols (default 14) per channel realisation, at batch ``B`` (channel
realisations per call; default 1 and 64), three ways of running the same model are timed
in the same process, on the same inputs:

- ``pytorch``: the module in eager mode (``torch.inference_mode``, ``threads`` threads);
- ``onnx-export``: ``torch.onnx.export`` of the module (TorchScript exporter, dynamic
  ``B``/``S``) run by onnxruntime with its *default* session options;
- ``mimoc``: the artifact through :meth:`mimoc.runtime.OnnxArtifact.detect`
  (``detector.onnx``, mimoc's session options, one thread by default);
- ``mimoc-staged``: the artifact's ``slot.onnx`` then ``symbol.onnx`` (two session calls,
  the streaming form; :meth:`~mimoc.runtime.OnnxArtifact.detect_staged`).

Each timing is the median over repeated calls (after warm-up) of one call on a batch;
latency per slot = median / B. Throughput = ``B * S`` symbol vectors per median. Achieved
GFLOP/s use the model's useful work from the artifact manifest (slot-rate FLOPs + ``S`` x
per-symbol FLOPs per channel realisation; 2 x MACs) for every path, against a single-core
GEMM peak measured in the same run (``torch.mm`` of 512 x 512 fp32 matrices, one thread,
best of several). Ratios are ``time(other) / time(mimoc)`` from the same run.

Example::

    >>> result = run_bench(model, artifact_dir)
    >>> print(format_bench(result))
"""

from __future__ import annotations

import contextlib
import io
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import onnxruntime as ort
import torch

from mimoc.errors import UsageError
from mimoc.runtime.cpu import describe_cpu
from mimoc.runtime.onnx_runner import OnnxArtifact
from mimoc.sim.numerology import SLOT_SYMBOLS
from mimoc.tables import text_table

PATHS = ("pytorch", "onnx-export", "mimoc", "mimoc-staged")


@dataclass(frozen=True)
class Timing:
    path: str
    batch: int
    slot: int
    median_s: float
    runs: int
    gflops: float  # achieved, useful work
    peak_share: float  # gflops / measured single-core GEMM peak

    @property
    def per_slot_s(self) -> float:
        return self.median_s / self.batch

    @property
    def symbols_per_s(self) -> float:
        return self.batch * self.slot / self.median_s


@dataclass
class BenchResult:
    model: str
    slot: int
    threads: int
    flops_per_slot: int
    gemm_peak_gflops: float
    timings: list[Timing] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # paths skipped, and why
    onnxruntime: str = ort.__version__
    torch: str = torch.__version__

    def timing(self, path: str, batch: int) -> Timing | None:
        return next((t for t in self.timings if t.path == path and t.batch == batch), None)

    def ratio(self, path: str, batch: int) -> float | None:
        """``time(path) / time(mimoc)`` at ``batch`` (how many times faster mimoc is)."""
        other, ours = self.timing(path, batch), self.timing("mimoc", batch)
        if other is None or ours is None:
            return None
        return other.median_s / ours.median_s

    def to_dict(self) -> dict[str, Any]:
        batches = sorted({t.batch for t in self.timings})
        return {
            "kind": "onnx", "model": self.model, "cpu": describe_cpu(),
            "slot_symbols": self.slot,
            "threads": self.threads,
            "flops_per_slot": self.flops_per_slot, "gemm_peak_gflops": self.gemm_peak_gflops,
            "onnxruntime": self.onnxruntime, "torch": self.torch,
            "timings": [{**{("slot_symbols" if k == "slot" else k): v
                            for k, v in asdict(t).items()},
                         "per_slot_s": t.per_slot_s, "symbols_per_s": t.symbols_per_s}
                        for t in self.timings],
            "speedup": {str(b): {p: self.ratio(p, b) for p in PATHS if p != "mimoc"
                                 and self.ratio(p, b) is not None} for b in batches},
            "notes": list(self.notes),
        }


# ---------------------------------------------------------------- measuring

def median_time(fn: Callable[[], Any], *, min_time: float = 0.3, min_runs: int = 7,
                max_runs: int = 2000, warmup: int = 3) -> tuple[float, int]:
    """Median wall time of ``fn()`` over at least ``min_runs`` calls and ``min_time`` s."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    total = 0.0
    while len(times) < min_runs or (total < min_time and len(times) < max_runs):
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        times.append(elapsed)
        total += elapsed
    return statistics.median(times), len(times)


def gemm_peak_gflops(n: int = 512, repeats: int = 20) -> float:
    """Single-core fp32 GEMM rate (GFLOP/s): best ``torch.mm`` of ``n x n`` matrices."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        gen = torch.Generator().manual_seed(0)
        a, b = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)
        out = torch.empty(n, n)
        for _ in range(3):
            torch.mm(a, b, out=out)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b, out=out)
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return 2 * n ** 3 / best / 1e9


@contextlib.contextmanager
def _stdout_silenced():
    """File descriptor 1 to /dev/null: a failing ``torch.onnx.export`` logs its whole graph
    there from C++, which would break ``mimoc bench --json``."""
    sys.stdout.flush()
    saved, devnull = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def export_plain_onnx(model: torch.nn.Module, H: torch.Tensor, y: torch.Tensor) -> bytes:
    """``torch.onnx.export`` of the module as a user would do it (TorchScript exporter)."""
    buffer = io.BytesIO()
    # tracer warnings about shape checks are expected
    with warnings.catch_warnings(), _stdout_silenced():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (H, y), buffer, dynamo=False, input_names=["H", "y"],
                          output_names=["x_hat"],
                          dynamic_axes={"H": {0: "B"}, "y": {0: "B", 1: "S"},
                                        "x_hat": {0: "B", 1: "S"}})
    return buffer.getvalue()


def _inputs(artifact: OnnxArtifact, batch: int, slot: int) -> tuple[torch.Tensor, torch.Tensor]:
    shapes = {io["name"]: io["shape"] for io in artifact.manifest["graphs"]["detector"]["inputs"]}
    users = artifact.config.get("nt", 1)
    sizes = {"B": batch, "S": slot, "U": users, "2*U": 2 * users}

    cut = getattr(artifact, "sizes", None) is not None  # an iree artifact cuts any B, S

    def concrete(shape: Sequence[int | str], free: int = 1) -> list[int]:
        dims = [d if isinstance(d, int) else sizes[d] for d in shape]
        if cut:
            dims[:free] = [batch, slot][:free]
        return dims

    gen = torch.Generator().manual_seed(batch)
    return (torch.randn(concrete(shapes["H"]), generator=gen),
            torch.randn(concrete(shapes["y"], 2), generator=gen))


def run_bench(model: torch.nn.Module | None, artifact: OnnxArtifact, *,
              batches: Sequence[int] = (1, 64), slot: int = SLOT_SYMBOLS, threads: int = 1,
              min_time: float = 0.3, paths: Sequence[str] = PATHS,
              progress: Callable[[str], None] | None = None) -> BenchResult:
    """Time ``paths`` at each batch size (see the module docstring).

    ``model`` may be ``None`` (artifact only: ``pytorch`` and ``onnx-export`` are skipped).
    """
    if slot < 1 or any(b < 1 for b in batches):
        raise UsageError("batch sizes and the slot length must be positive")
    unknown = sorted(set(paths) - set(PATHS))
    if unknown:
        raise UsageError(f"unknown bench path(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(PATHS)}")
    flops = artifact.flops
    per_slot = int(flops["slot_rate"] + slot * flops["per_symbol"])
    result = BenchResult(model=artifact.model.get("name", artifact.path.name), slot=slot,
                         threads=threads, flops_per_slot=per_slot,
                         gemm_peak_gflops=gemm_peak_gflops())
    say = progress or (lambda text: None)
    result.notes += _artifact_notes(artifact.manifest)
    runners = _runners(model, artifact, threads, paths, result.notes)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for batch in batches:
            H, y = _inputs(artifact, batch, slot)
            for path, make in runners.items():
                say(f"timing {path} at batch {batch}")
                seconds, runs = median_time(make(H, y), min_time=min_time)
                gflops = batch * per_slot / seconds / 1e9
                result.timings.append(Timing(path, batch, slot, seconds, runs, gflops,
                                             gflops / result.gemm_peak_gflops))
    finally:
        torch.set_num_threads(previous)
    return result


def _artifact_notes(manifest) -> list[str]:
    """What the ``mimoc`` path runs when it is not an onnxruntime session of a fixed
    lowering: IREE modules, or the ``--lowering auto`` candidates timed when compiling."""
    notes = []
    if manifest.get("target") == "iree":
        iree = manifest["iree"]
        notes.append(f"mimoc = IREE modules ({iree['compiler']}, --cpu {iree['cpu']}, sizes "
                     + ",".join(f"{k}={v}" for k, v in manifest["static_shapes"].items())
                     + "; other sizes are cut into calls of these)")
    selection = manifest.get("lowering_selection")
    if selection:
        parts = [f"{c['lowering']} " + "/".join(f"{v:.0f}" for v in c["median_us"].values())
                 + " us" + ("" if c.get("correct", True) else " (decisions differ)")
                 for c in selection["candidates"]]
        large = "".join(f" (from B={b['from_batch']}: {b['lowering']})"
                        for b in selection.get("buckets", [])[1:])
        notes.append(f"lowering auto chose {selection['chosen']}{large} when compiling on "
                     f"{selection['cpu']}; candidates at "
                     + "/".join(selection["candidates"][0]["median_us"]) + ": "
                     + ", ".join(parts))
    return notes


def _plain_session(model, artifact: OnnxArtifact, notes: list[str]
                   ) -> ort.InferenceSession | None:
    """onnxruntime (default options) on ``torch.onnx.export`` of the model, or ``None`` with
    a note when the exporter or onnxruntime cannot take it (SDNet's ``linalg_inv``)."""
    H0, y0 = _inputs(artifact, 2, 3)
    try:
        return ort.InferenceSession(export_plain_onnx(model, H0, y0),
                                    providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - any exporter failure only skips that path
        reason = " ".join(str(err).split())[:160]
        notes.append(f"onnx-export skipped: torch.onnx.export / onnxruntime failed ({reason})")
        return None


def _runners(model, artifact: OnnxArtifact, threads: int, paths: Sequence[str],
             notes: list[str]):
    runners: dict[str, Callable[[torch.Tensor, torch.Tensor], Callable[[], Any]]] = {}
    if model is not None and "pytorch" in paths:
        model = model.eval()

        def eager(H, y):
            def call():
                with torch.inference_mode():
                    return model(H, y)
            return call
        runners["pytorch"] = eager
    plain = _plain_session(model, artifact, notes) \
        if model is not None and "onnx-export" in paths else None
    if plain is not None:
        def exported(H, y):
            feed = {"H": H.numpy(), "y": y.numpy()}
            return lambda: plain.run(None, feed)
        runners["onnx-export"] = exported
    if "mimoc" in paths:
        def whole(H, y):
            H_np, y_np = H.numpy(), y.numpy()
            return lambda: artifact.detect(H_np, y_np)
        runners["mimoc"] = whole
    if "mimoc-staged" in paths:
        def staged(H, y):
            H_np, y_np = H.numpy(), y.numpy()
            return lambda: artifact.detect_staged(H_np, y_np)
        runners["mimoc-staged"] = staged
    return runners


# ---------------------------------------------------------------- output

def format_bench(result: BenchResult) -> str:
    export = (" (onnx-export: onnxruntime defaults)"
              if any(t.path == "onnx-export" for t in result.timings) else "")
    share = "" if result.threads == 1 else " ('of peak' is against this one-core peak)"
    lines = [f"{result.model} on {describe_cpu()}: slot S={result.slot}, "
             f"{result.flops_per_slot / 1e6:.3f} MFLOP per "
             f"slot (useful work), threads={result.threads}{export}, single-core GEMM peak "
             f"{result.gemm_peak_gflops:.1f} GFLOP/s{share}"]
    rows = [[t.path, str(t.batch), f"{t.median_s * 1e6:.1f} us", f"{t.per_slot_s * 1e6:.1f} us",
             f"{t.symbols_per_s:.0f}", f"{t.gflops:.2f}", f"{100 * t.peak_share:.1f}%",
             str(t.runs)] for t in result.timings]
    lines += text_table(rows, ["path", "batch", "latency/call", "per slot", "symbols/s",
                               "GFLOP/s", "of peak", "runs"],
                        right=set(range(1, 8))).splitlines()
    for batch in sorted({t.batch for t in result.timings}):
        parts = [f"{p} {result.ratio(p, batch):.2f}x" for p in PATHS
                 if p != "mimoc" and result.ratio(p, batch) is not None]
        if parts:
            lines.append(f"mimoc speed-up at batch {batch}: " + ", ".join(parts)
                         + " (time of the other path / time of mimoc)")
    lines += result.notes
    return "\n".join(lines)
