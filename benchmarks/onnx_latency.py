"""Latency of compiled DetNets: PyTorch eager vs plain torch.onnx.export vs mimoc's artifact.

Models: the example DetNet (examples/models/detnet_8x16_qpsk.pt; a freshly built DetNet of
the same size when the file is absent: weights do not change latency) and a 32x64 QPSK
DetNet with 30 blocks (default sizes otherwise: hidden 8K = 512, v 2K = 128; random
weights). Each is compiled with the default passes and timed with
:func:`mimoc.runtime.bench.run_bench` at S = 14 symbols per slot, batch 1 and 64, one
thread for PyTorch and mimoc (onnxruntime defaults for the plain export).

Targets (issue 4): mimoc at S = 14 at least 5x faster than PyTorch eager and faster than
the plain export. The script prints the measured table, the ratios, the share of the
measured single-core GEMM peak, and the bound the FLOPs put on the eager ratio
(eager time / (FLOPs / peak): no single-thread runtime can beat it). The headline is
this one-thread comparison.

Two floors are printed for each model, both measured in the same run: the FLOPs at the
single-core GEMM peak, and the fp32 weights (bytes of ``detector.onnx``'s initializers)
read once at the single-core memory read rate (``numpy`` sum over an array of the same
size, best of 5): at batch 1 every weight is read once per call for only 14 rows. And,
for comparison, the same model compiled with ``--quant int8`` (int8 weights: a quarter
of the bytes), timed against eager in the same run (``pytorch`` and ``mimoc`` paths).

A second, clearly labelled view compares at equal threads: PyTorch eager with
``--threads-equal`` (default 2) threads against mimoc's runtime with as many
onnxruntime intra-op threads (``pytorch`` and ``mimoc`` paths only).

Run::

    /tmp/venv/bin/python benchmarks/onnx_latency.py [--min-time 1.0]
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import torch

from mimoc.api import compile as compile_model
from mimoc.detectors import build_detector, load_detector
from mimoc.runtime import load_artifact
from mimoc.runtime.bench import format_bench, run_bench

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "models" / "detnet_8x16_qpsk.pt"


def models():
    if EXAMPLE.is_file():
        yield "example DetNet 8x16 QPSK (examples/models/detnet_8x16_qpsk.pt)", \
            load_detector(EXAMPLE)
    else:
        torch.manual_seed(0)
        yield "DetNet 8x16 QPSK (fresh weights; example file absent)", \
            build_detector("detnet", nt=8, nr=16, modulation="qpsk").eval()
    torch.manual_seed(0)
    yield "DetNet 32x64 QPSK, 30 blocks (random weights)", \
        build_detector("detnet", nt=32, nr=64, modulation="qpsk", layers=30).eval()


def weight_bytes(path: Path) -> int:
    """Bytes of the initializers of ``detector.onnx`` (the weights streamed per call)."""
    model = onnx.load(str(path / "detector.onnx"))
    return sum(onnx.numpy_helper.to_array(init).nbytes for init in model.graph.initializer)


def read_rate(nbytes: int, repeats: int = 5) -> float:
    """Single-core read rate (bytes/s) over an array of ``nbytes``: best of ``repeats``."""
    data = np.ones(max(nbytes // 4, 1), dtype=np.float32)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        data.sum()
        best = min(best, time.perf_counter() - start)
    return data.nbytes / best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-time", type=float, default=1.0,
                        help="seconds timed per measurement (default 1.0)")
    parser.add_argument("--batches", default="1,64")
    parser.add_argument("--threads-equal", type=int, default=2, metavar="N",
                        help="threads for the equal-threads view: eager with N threads vs "
                             "mimoc with N intra-op threads (default 2; 0 skips it)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    batches = [int(b) for b in args.batches.split(",")]
    print(f"# onnx_latency  {datetime.date.today()}  torch {torch.__version__}")
    met = True
    for title, model in models():
        with tempfile.TemporaryDirectory() as tmp:
            compile_model(model, out=Path(tmp) / "artifact")
            artifact = load_artifact(Path(tmp) / "artifact")
            result = run_bench(model, artifact, batches=batches, min_time=args.min_time)
            nbytes = weight_bytes(Path(tmp) / "artifact")
            rate = read_rate(nbytes)
            compile_model(model, out=Path(tmp) / "int8", quant="int8")
            int8 = run_bench(model, load_artifact(Path(tmp) / "int8"), batches=[1],
                             min_time=args.min_time, paths=("pytorch", "mimoc"))
            equal = None
            if args.threads_equal > 1:
                wide = load_artifact(Path(tmp) / "artifact", threads=args.threads_equal)
                equal = run_bench(model, wide, batches=batches, threads=args.threads_equal,
                                  min_time=args.min_time, paths=("pytorch", "mimoc"))
        print(f"\n## {title}")
        print(format_bench(result))
        eager, ours = result.timing("pytorch", 1), result.timing("mimoc", 1)
        plain = result.timing("onnx-export", 1)
        floor = result.flops_per_slot / (result.gemm_peak_gflops * 1e9)
        vs_eager, vs_plain = eager.median_s / ours.median_s, plain.median_s / ours.median_s
        ok = vs_eager >= 5 and vs_plain > 1
        met &= ok
        print(f"batch 1, S=14: mimoc {ours.median_s * 1e6:.1f} us = {vs_eager:.2f}x faster than "
              f"eager, {vs_plain:.2f}x faster than the plain export; "
              f"{100 * ours.peak_share:.1f}% of the GEMM peak; "
              f"FLOPs at peak would take {floor * 1e6:.1f} us, so no single-thread runtime "
              f"can be more than {eager.median_s / floor:.2f}x faster than eager here; "
              f"targets (>= 5x eager, > 1x export): {'met' if ok else 'NOT met'}")
        stream = nbytes / rate
        print(f"fp32 weights {nbytes / 1e6:.1f} MB read at {rate / 1e9:.1f} GB/s (one core, "
              f"this run): {stream * 1e6:.1f} us per call, so no fp32 artifact reading its "
              f"weights once per call can be more than {eager.median_s / stream:.2f}x "
              f"faster than eager here")
        e8, m8 = int8.timing("pytorch", 1), int8.timing("mimoc", 1)
        print(f"int8 lowering (--quant int8), batch 1, S=14: {m8.median_s * 1e6:.1f} us = "
              f"{e8.median_s / m8.median_s:.2f}x faster than eager ({e8.median_s * 1e6:.1f} "
              f"us in its own run), {plain.median_s / m8.median_s:.2f}x the plain export "
              f"(across runs)")
        if equal is not None:
            n = equal.threads
            print(f"\n### extra view, equal threads: eager with {n} threads vs mimoc with {n} "
                  f"intra-op threads (not the headline)")
            print(format_bench(equal))
            for batch in batches:
                one = result.timing("mimoc", batch)
                wide_t = equal.timing("mimoc", batch)
                vs_eager_n = equal.ratio("pytorch", batch)
                print(f"batch {batch}, {n} threads each: mimoc {vs_eager_n:.2f}x faster than "
                      f"eager; mimoc {n} threads vs 1 thread: "
                      f"{one.median_s / wide_t.median_s:.2f}x")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
