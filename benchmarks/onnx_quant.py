"""Latency and size of the quantized ONNX lowerings next to fp32 (issue 5).

Models: the example DetNet (examples/models/detnet_8x16_qpsk.pt, or fresh weights of the
same size when absent), the example SDNet (examples/models/sdnet_8x32_qpsk.pt, when present;
its convolutions stay fp32 under w4 / w4a4 and run ConvInteger under int8) and a 32x64 QPSK
DetNet with 30 blocks (random weights; weights do
not change latency). Each is compiled four times: fp32, and with a min-max 4-bit recipe
(calibrated on the channel model) as ``w4`` and ``w4a4``, and an int8 recipe as ``int8``.
Each artifact is timed with :func:`mimoc.runtime.bench.run_bench` (``mimoc`` path,
``detector.onnx``, one thread, the manifest's session options) at batch 1 and S = 14;
PyTorch eager and the plain ``torch.onnx.export`` + onnxruntime path are timed in the same
run for the ratios. Sizes: bytes of ``detector.onnx`` and of the Linear weights (codes,
scales; fp32 matrices for fp32).

Run::

    python benchmarks/onnx_quant.py [--min-time 1.0] [--quick]

``--quick`` (a check that the script runs): tiny timing windows, the 32x64 model with 3
blocks. ``--sizes-only``: no timing. ``--w4-accuracy 0``: one more row, w4 with
MatMulNBits ``accuracy_level`` 0 (fp32 arithmetic on the 4-bit weights; ``w4`` uses 4, the
int8 kernels), to decide which is faster on the machine at hand. ``--w4-nosplit``: one more
row, w4 without the default K split (``Lowering("w4", k_split=False)``: larger, faster).
``--kernels``: only the per-layer kernel comparison at the 32x64 layer shapes
(:func:`kernels`). ``--agreement``: only the hard-decision agreement with
``QuantizedDetector`` on the example models.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch

from mimoc.api import compile as compile_model
from mimoc.detectors import build_detector, load_detector
from mimoc.quant import quantize
from mimoc.runtime import load_artifact
from mimoc.runtime.bench import run_bench
from mimoc.targets.onnx import Lowering

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "models" / "detnet_8x16_qpsk.pt"
LOWERINGS = ("fp32", "w4", "w4a4", "int8")


def models(quick: bool):
    if EXAMPLE.is_file():
        yield "example DetNet 8x16 QPSK", load_detector(EXAMPLE).eval()
    else:
        torch.manual_seed(0)
        yield "DetNet 8x16 QPSK (fresh weights)", build_detector(
            "detnet", nt=8, nr=16, modulation="qpsk").eval()
    sdnet = EXAMPLE.parent / "sdnet_8x32_qpsk.pt"
    if sdnet.is_file():
        yield "example SDNet 8x32 QPSK (int8: ConvInteger convolutions)", \
            load_detector(sdnet).eval()
    torch.manual_seed(0)
    layers = 3 if quick else 30
    yield f"DetNet 32x64 QPSK, {layers} blocks (random weights)", build_detector(
        "detnet", nt=32, nr=64, modulation="qpsk", layers=layers).eval()


def weight_bytes(model: onnx.ModelProto) -> int:
    """Bytes of the Linear weights: fp32 matrices, or MatMulNBits codes + scales, or int8
    codes + scales (biases and small constants not counted)."""
    total = 0
    for init in model.graph.initializer:
        name = init.name
        if name.endswith((".nbits", ".nbits_scales", ".int8_T", ".int8_scale")):
            total += onnx.numpy_helper.to_array(init).nbytes
        elif init.data_type == onnx.TensorProto.FLOAT and len(init.dims) == 2:
            total += 4 * int(np.prod(init.dims))
    return total


# ---------------------------------------------------------------- kernel comparison

def _stack(kind: str, k: int, n: int, layers: int, block: int = 64, level: int = 4):
    """``layers`` independent ``[14, k] x [k, n]`` products of one kernel kind, concatenated."""
    from onnx import TensorProto, helper
    from onnx.numpy_helper import from_array

    from mimoc.targets.onnx.quantized import pack_4bit

    gen = torch.Generator().manual_seed(0)
    nodes, inits, outs = [], [], []
    for i in range(layers):
        q = torch.randint(-7, 8, (n, k), generator=gen)
        s = torch.rand(n, generator=gen) * 0.01 + 0.01
        b = from_array(np.zeros(n, np.float32), f"b{i}")
        if kind == "fp32":
            inits += [from_array((q * s[:, None]).numpy().astype(np.float32), f"w{i}"), b]
            nodes.append(helper.make_node("Gemm", ["x", f"w{i}", f"b{i}"], [f"y{i}"], transB=1))
        elif kind == "w4":
            packed, scales = pack_4bit(q, s, block)
            inits += [from_array(packed, f"w{i}"), from_array(scales, f"s{i}"), b]
            nodes.append(helper.make_node(
                "MatMulNBits", ["x", f"w{i}", f"s{i}", "", "", f"b{i}"], [f"y{i}"],
                domain="com.microsoft", K=k, N=n, bits=4, block_size=block,
                accuracy_level=level))
        else:  # int8: DynamicQuantizeMatMul (what the int8 lowering emits without a static input)
            inits += [from_array(q.t().numpy().astype(np.int8), f"w{i}"),
                      from_array(s.numpy().astype(np.float32), f"s{i}"),
                      from_array(np.zeros(n, np.int8), f"z{i}"), b]
            nodes.append(helper.make_node("DynamicQuantizeMatMul",
                                          ["x", f"w{i}", f"s{i}", f"z{i}", f"b{i}"], [f"y{i}"],
                                          domain="com.microsoft"))
        outs.append(f"y{i}")
    nodes.append(helper.make_node("Concat", outs, ["out"], axis=1))
    graph = helper.make_graph(
        nodes, "stack", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [14, k])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [14, n * layers])],
        initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21),
                                                   helper.make_opsetid("com.microsoft", 1)],
                             ir_version=10)


def kernels(shapes=((320, 512), (512, 128), (512, 64)), layers: int = 30, reps: int = 15):
    """Per-layer time of each kernel at the 32x64 DetNet's layer shapes (``fc1``, ``fc3``,
    ``fc2``; 30 distinct weight sets, as in 30 blocks), interleaved, median of ``reps``
    rounds of process CPU time (robust to other processes on the machine, not to their
    cache traffic)."""
    import time

    import onnxruntime as ort

    from mimoc.runtime.onnx_runner import session_options

    variants = {"fp32 Gemm": ("fp32", {}), "w4 block 32": ("w4", {"block": 32}),
                "w4 block 64": ("w4", {"block": 64}), "w4 block 128": ("w4", {"block": 128}),
                "w4 block 64 acc0": ("w4", {"block": 64, "level": 0}),
                "int8 DQMatMul": ("int8", {}), "int8 DQMatMul u8u8": ("int8", {})}
    print("\n## kernels: microseconds per layer at M = 14 rows, one thread (CPU time)")
    for k, n in shapes:
        sessions = {}
        for name, (kind, kw) in variants.items():
            config = {"session.x64quantprecision": "1"} if name.endswith("u8u8") else None
            model = _stack(kind, k, n, layers, **kw)
            sessions[name] = ort.InferenceSession(model.SerializeToString(),
                                                  session_options(1, config=config),
                                                  providers=["CPUExecutionProvider"])
        feed = {"x": np.random.default_rng(0).standard_normal((14, k)).astype(np.float32)}
        times: dict[str, list[float]] = {name: [] for name in sessions}
        for sess in sessions.values():
            sess.run(None, feed)
        for _ in range(reps):
            for name, sess in sessions.items():
                start = time.process_time()
                for _ in range(5):
                    sess.run(None, feed)
                times[name].append((time.process_time() - start) / 5 / layers)
        cells = ", ".join(f"{name} {np.median(t) * 1e6:.1f}" for name, t in times.items())
        print(f"K={k} N={n}: {cells}")


# ---------------------------------------------------------------- agreement

AGREEMENT = ((EXAMPLE, ("minmax", "kaq-ptq", "int8")),
             (EXAMPLE.parent / "detnet_8x16_qpsk_kaq.pt", ("recipe",)),
             (EXAMPLE.parent / "sdnet_8x32_qpsk.pt", ("minmax", "int8")),
             (EXAMPLE.parent / "sdnet_8x32_qpsk_kaq.pt", ("recipe",)))


def agreement(slots: int = 256, batches: int = 4) -> None:
    """Hard decisions of the compiled artifact vs :class:`mimoc.quant.QuantizedDetector` on
    the example models, ``batches x slots`` links of their training channel over the
    training SNR range (:func:`mimoc.quant.calibration.calibration_batches`, another seed).
    Method ``recipe``: the quantized checkpoint's own (QAT) recipe."""
    import onnxruntime as ort

    from mimoc.detectors.training import TrainOptions
    from mimoc.quant import QuantizedDetector
    from mimoc.quant.calibration import calibration_batches
    from mimoc.runtime.onnx_runner import config_entries, session_options

    print("\n## hard decisions: compiled artifact vs QuantizedDetector")
    for path, methods in AGREEMENT:
        if not path.is_file():
            print(f"{path.name}: missing, skipped")
            continue
        for method in methods:
            if method == "recipe":
                from mimoc.quant import load_quantized

                model, recipe = load_quantized(path)
                model.eval()
            else:
                model = load_detector(path).eval()
                recipe = quantize(model, method)
            reference = QuantizedDetector(model, recipe).eval()
            links = calibration_batches(model, TrainOptions(), batches=batches, batch=slots,
                                        seed=123)
            levels = model.constellation.levels.float()
            for lowering in (("int8",) if method == "int8" else ("w4a4", "w4")):
                result = compile_model(model, quant=recipe, lowering=lowering)
                options = session_options(1, config=config_entries(
                    result.manifest["session_config"]))
                sess = ort.InferenceSession(result.models["detector"].SerializeToString(),
                                            options, providers=["CPUExecutionProvider"])
                same = total = 0
                for b in links:
                    with torch.no_grad():
                        ref = reference(b.H_est.float(), b.y.float())
                    out = torch.from_numpy(sess.run(None, {"H": b.H_est.float().numpy(),
                                                           "y": b.y.float().numpy()})[0])
                    pick = (ref.unsqueeze(-1) - levels).abs().argmin(-1)
                    got = (out.unsqueeze(-1) - levels).abs().argmin(-1)
                    same += int((pick == got).sum())
                    total += pick.numel()
                print(f"{path.name} {method} {lowering}: {same}/{total} = {same / total:.5f} "
                      "of the real symbol decisions equal")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-time", type=float, default=1.0)
    parser.add_argument("--quick", action="store_true", help="a quick check that it runs")
    parser.add_argument("--sizes-only", action="store_true",
                        help="compile and print the sizes, no timing")
    parser.add_argument("--w4-accuracy", type=int, default=None, metavar="LEVEL",
                        help="also time w4 with this MatMulNBits accuracy_level (0: fp32 "
                             "arithmetic on the 4-bit weights; w4 uses 4)")
    parser.add_argument("--w4-nosplit", action="store_true",
                        help="also time w4 without the K split (K = 80 as one kernel instead of "
                             "64 + 16: larger, faster)")
    parser.add_argument("--kernels", action="store_true",
                        help="only compare the kernels (fp32 Gemm, MatMulNBits block sizes "
                             "and accuracy levels, int8) at the 32x64 layer shapes")
    parser.add_argument("--agreement", action="store_true",
                        help="only the hard-decision agreement of the compiled example models "
                             "with the quantized PyTorch model")
    args = parser.parse_args(argv)
    if args.agreement:
        torch.set_num_threads(1)
        agreement(slots=32 if args.quick else 256)
        return 0
    if args.kernels:
        torch.set_num_threads(1)
        kernels(reps=3 if args.quick else 15)
        return 0
    min_time = 0.02 if args.quick else args.min_time
    torch.set_num_threads(1)
    print(f"# onnx_quant  {datetime.date.today()}  torch {torch.__version__}")
    for title, model in models(args.quick):
        recipes = {"minmax": quantize(model, "minmax", bits=4), "int8": quantize(model, "int8")}
        rows = []
        variants = list(LOWERINGS) + ([f"w4@{args.w4_accuracy}"] if args.w4_accuracy is not
                                      None else []) + (["w4-nosplit"] if args.w4_nosplit
                                                       else [])
        with tempfile.TemporaryDirectory() as tmp:
            for variant in variants:
                name, _, level = variant.partition("@")
                lowering = Lowering(name.removesuffix("-nosplit"),
                                    k_split=not variant.endswith("-nosplit"),
                                    accuracy_level=int(level) if level else None)
                out = Path(tmp) / variant.replace("@", "_")
                if lowering == "fp32":
                    result = compile_model(model, out=out)
                else:
                    recipe = recipes["int8" if lowering == "int8" else "minmax"]
                    result = compile_model(model, out=out, quant=recipe, lowering=lowering)
                detector = result.models["detector"]
                bench = None
                if not args.sizes_only:
                    paths = ("pytorch", "onnx-export", "mimoc") if lowering == "fp32" \
                        else ("mimoc",)
                    bench = run_bench(model, load_artifact(out), batches=(1,),
                                      min_time=min_time, paths=paths)
                rows.append((variant, bench, len(detector.SerializeToString()),
                             weight_bytes(detector)))
        fp32 = rows[0]
        if args.sizes_only:
            print(f"\n## {title}")
            print(f"{'lowering':<10} {'detector.onnx':>14} {'weights':>11} {'w/fp32':>7}")
            for variant, _, size, wbytes in rows:
                print(f"{variant:<10} {size:>14,} {wbytes:>11,} {wbytes / fp32[3]:>7.3f}")
            continue
        eager = fp32[1].timing("pytorch", 1).median_s
        exported = fp32[1].timing("onnx-export", 1)
        plain = exported.median_s if exported is not None else float("nan")
        print(f"\n## {title}  (batch 1, S=14, one thread; eager {eager * 1e6:.1f} us, plain "
              f"export {plain * 1e6:.1f} us)" + "".join(f"\n{n}" for n in fp32[1].notes))
        print(f"{'lowering':<10} {'latency':>11} {'vs fp32':>8} {'vs eager':>9} {'vs export':>10} "
              f"{'detector.onnx':>14} {'weights':>11} {'w/fp32':>7}")
        base = fp32[1].timing("mimoc", 1).median_s
        for variant, bench, size, wbytes in rows:
            t = bench.timing("mimoc", 1).median_s
            print(f"{variant:<10} {t * 1e6:>8.1f} us {base / t:>7.2f}x {eager / t:>8.2f}x "
                  f"{plain / t:>9.2f}x {size:>14,} {wbytes:>11,} {wbytes / fp32[3]:>7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
