"""Cross-check of mimoc's IMC simulator against IBM aihwkit (issue 6).

The example DetNet (``examples/models/detnet_8x16_qpsk.pt``) is run three ways
on the same slots (8x16 QPSK, i.i.d. Rayleigh, 0 dB per stream, 14 symbols
per slot):

- PyTorch in float64 (the reference);
- aihwkit 1.1.0: every static weight (each block's ``fc1``, ``fc2``, ``fc3``)
  on pure-PyTorch analog tiles (``TorchInferenceRPUConfig``, float64), tiled
  with the same maximum array size (``mapping.max_input_size`` x
  ``max_output_size`` = ``--array``); the channel products ``H^T y``,
  ``H^T H x`` stay digital (aihwkit has no per-slot channel arrays);
- mimoc: ``mimoc.compile(..., target="crossbar", array=--array)`` and the IMC
  simulator (``mimoc.runtime.imc``), where the channel products run on
  channel arrays too.

Part 1, ideal devices (aihwkit: ``forward.is_perfect``, no programming noise,
no drift; mimoc: ``ideal=True``: no C2C, 2^30 states, ideal converters):
the maximum absolute differences of ``x_hat`` between the three and the tile
counts of both tilings.

Part 2, each tool's own non-idealities (not meant to agree; they model
different things): SER at 0 dB of aihwkit's default inference model (PCM
programming noise, drift after ``--t-inference`` seconds with global drift
compensation, 7-bit DAC / 9-bit ADC with output noise and dynamic input
scaling) next to mimoc's device model (``--device``: write-verify of the
static weights to 1% of the range, channel arrays programmed per slot with
C2C 0 and with the device's own C2C, 8-bit converters with static full scales).

aihwkit is not a mimoc dependency. Run this script with an environment that
has it, for example::

    /work/main/.venv/bin/python -m venv /tmp/aihw
    echo "import site; site.addsitedir('/work/main/.venv/lib/python3.11/site-packages')" \\
        > /tmp/aihw/lib/python3.11/site-packages/mainvenv.pth   # torch + mimoc of the venv
    /tmp/aihw/bin/pip install --no-deps aihwkit==1.1.0
    /tmp/aihw/bin/python benchmarks/crossbar_aihwkit.py [--array 64x64] [--quick]

``--no-deps`` matters: aihwkit 1.1.0 requires torchvision, and resolving it
replaces torch 2.13.0+cpu by torch 2.14 with the CUDA wheels (checked with
``pip install --dry-run``), which is why aihwkit is not an optional extra of
mimoc. Only aihwkit's pure-PyTorch tiles are used: its C++ tiles are built
for another torch version.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import torch

import mimoc
from mimoc.detectors import load_detector
from mimoc.runtime.imc import load_schedule
from mimoc.sim.channels import CSIModel, parse_channel
from mimoc.sim.system import MIMOSystem
from mimoc.targets.crossbar.config import parse_array

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "examples" / "models" / "detnet_8x16_qpsk.pt"
LAYERS = ("fc1", "fc2", "fc3")


def import_aihwkit():
    try:
        import aihwkit  # noqa: F401
        from aihwkit.nn.conversion import convert_to_analog
        from aihwkit.simulator.configs import TorchInferenceRPUConfig
        from aihwkit.simulator.parameters import IOParameters
        from aihwkit.simulator.parameters.enums import RPUDataType
    except ImportError as err:
        sys.exit(f"this benchmark needs aihwkit==1.1.0 ({err}); see the usage in "
                 f"{Path(__file__).name}'s docstring")
    return convert_to_analog, TorchInferenceRPUConfig, IOParameters, RPUDataType


def aihwkit_model(model, array, *, ideal: bool):
    """``model`` with every block's Linear layers on aihwkit tiles of at most ``array``.

    Ideal tiles compute in float64; the noisy ones in float32 (aihwkit 1.1.0's drift
    compensation reads float32 tiles only: with float64 tiles ``program_analog_weights``
    fails with a dtype mismatch)."""
    convert_to_analog, TorchInferenceRPUConfig, IOParameters, RPUDataType = import_aihwkit()
    config = TorchInferenceRPUConfig()
    config.runtime.data_type = RPUDataType.DOUBLE if ideal else RPUDataType.FLOAT
    config.mapping.max_input_size, config.mapping.max_output_size = array
    if ideal:
        config.forward = IOParameters(is_perfect=True)
    analog = copy.deepcopy(model).double() if ideal else copy.deepcopy(model).float()
    for block in analog.blocks:
        for name in LAYERS:
            layer = getattr(block, name)
            if layer is not None:
                setattr(block, name, convert_to_analog(layer, config))
    return analog.eval()


def analog_layers(model) -> list:
    """The aihwkit layers of a converted model."""
    return [m for block in model.blocks for m in (getattr(block, n) for n in LAYERS)
            if m is not None and hasattr(m, "program_analog_weights")]


def aihwkit_tiles(layer) -> list[tuple[int, int]]:
    """(inputs, outputs) of every tile of a converted layer."""
    shapes = []
    for module in layer.modules():
        if type(module).__name__ == "TorchSimulatorTile":
            shapes.append((module.x_size, module.d_size))
    return shapes


def mimoc_tiles(schedule: dict, layer_prefix: str) -> list[tuple[int, int]]:
    """(rows, cols) of every static tile (a differential pair) of a layer's matrices."""
    return [tuple(a["shape"]) for a in schedule["arrays"]
            if a["role"] == "static" and a["matrix"].startswith(layer_prefix)]


def ser(x_hat, batch, constellation) -> tuple[float, int]:
    detected = constellation.indices_of_real(x_hat.float())
    errors = int((detected != batch.indices).sum())
    return errors / batch.indices.numel(), errors


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--array", default="64x64",
                        help="maximum array size ROWSxCOLS for both tools (default 64x64: "
                             "forces tiling of every DetNet layer)")
    parser.add_argument("--slots", type=int, default=256, help="slots of part 1 (default 256)")
    parser.add_argument("--ser-slots", type=int, default=4000,
                        help="slots of part 2 (default 4000 x 14 x 8 symbols)")
    parser.add_argument("--device", default="ftj-luo2022")
    parser.add_argument("--t-inference", type=float, default=3600.0,
                        help="aihwkit drift time after programming, seconds (default 3600)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    array = parse_array(args.array)
    if args.quick:
        args.slots, args.ser_slots = 32, 64
    import aihwkit

    model = load_detector(MODEL).double()
    system = MIMOSystem(8, 16, "qpsk", parse_channel("rayleigh"), CSIModel.parse("perfect"),
                        "per-stream", slot=14)
    const = system.constellation
    print(f"aihwkit {aihwkit.__version__}, torch {torch.__version__}, mimoc {mimoc.__version__}")
    print(f"model {MODEL.name}; arrays at most {array[0]}x{array[1]}; 8x16 QPSK, 0 dB per "
          f"stream, 14-symbol slots")
    batch = system.sample(args.slots, 0.0, torch.Generator().manual_seed(0), torch.float64)

    with tempfile.TemporaryDirectory(prefix="mimoc-aihwkit-") as tmp:
        out = Path(tmp) / "xb"
        start = time.perf_counter()
        mimoc.compile(MODEL, target="crossbar", out=out, device=args.device, array=array,
                      slot=14)
        xb = load_schedule(out)
        print(f"mimoc compile: {time.perf_counter() - start:.0f} s")

        # ---- part 1: ideal devices
        with torch.no_grad():
            ref = model(batch.H_est, batch.y)
            ideal_aihw = aihwkit_model(model, array, ideal=True)
            x_aihw = ideal_aihw(batch.H_est, batch.y)
            x_mimoc = xb.detect(batch.H_est, batch.y, ideal=True).double()
        print(f"\n[1] ideal devices, {args.slots} slots x 14 symbols")
        print(f"  max |aihwkit - torch|  = {float((x_aihw - ref).abs().max()):.2e}  "
              f"(aihwkit float64 tiles)")
        print(f"  max |mimoc - torch|    = {float((x_mimoc - ref).abs().max()):.2e}  "
              f"(mimoc computes in float64, returns float32)")
        print(f"  max |mimoc - aihwkit|  = {float((x_mimoc - x_aihw).abs().max()):.2e}")
        print(f"  |x_hat| max            = {float(ref.abs().max()):.3f}")
        hard = [const.indices_of_real(x.float()) for x in (ref, x_aihw, x_mimoc)]
        print(f"  hard decisions equal: aihwkit {bool((hard[1] == hard[0]).all())}, "
              f"mimoc {bool((hard[2] == hard[0]).all())}")

        schedule = xb.schedule
        print("\n  tiles of block 0 (inputs x outputs per tile; mimoc adds the bias as an "
              "input row, aihwkit keeps it digital)")
        total_a = total_m = 0
        for b, block in enumerate(ideal_aihw.blocks):
            for name in LAYERS:
                layer = getattr(block, name)
                if layer is None:
                    continue
                a = aihwkit_tiles(layer)
                m = mimoc_tiles(schedule, f"blocks.{b}.{name}.")
                total_a += len(a)
                total_m += len(m)
                if b == 0:
                    print(f"    {name}: aihwkit {len(a)} tiles {sorted(set(a))}; "
                          f"mimoc {len(m)} tiles {sorted(set(m))}")
        channel = [a for a in schedule["arrays"] if a.get("role") == "channel"]
        print(f"  static tiles in all blocks: aihwkit {total_a}, mimoc {total_m} "
              f"(+ {len(channel)} channel tiles for H and H^T, which aihwkit does not model)")

        # ---- part 2: each tool's non-idealities
        data = system.sample(args.ser_slots, 0.0, torch.Generator().manual_seed(1),
                             torch.float64)
        print(f"\n[2] SER at 0 dB with each tool's non-idealities ({args.ser_slots} slots x 14 "
              f"x 8 symbols)")
        with torch.no_grad():
            s, e = ser(model(data.H_est, data.y), data, const)
            print(f"  torch (digital)                                   SER {s:.3e} ({e})")
            noisy = aihwkit_model(model, array, ideal=False)
            H32, y32 = data.H_est.float(), data.y.float()
            s, e = ser(noisy(H32, y32), data, const)
            print(f"  aihwkit, exact weights, default IO (DAC/ADC/noise) SER {s:.3e} ({e})")
            torch.manual_seed(0)
            for layer in analog_layers(noisy):
                layer.program_analog_weights()
            s, e = ser(noisy(H32, y32), data, const)
            print(f"  aihwkit, + PCM programming noise                  SER {s:.3e} ({e})")
            for layer in analog_layers(noisy):
                layer.drift_analog_weights(args.t_inference)
            s, e = ser(noisy(H32, y32), data, const)
            print(f"  aihwkit, + drift {args.t_inference:g} s (compensated)       "
                  f"SER {s:.3e} ({e})")
            for c2c in (0.0, None):
                x = xb.detect(data.H_est, data.y, c2c=c2c, seed=1)
                s, e = ser(x, data, const)
                level = xb.device_for(c2c).c2c_potentiation
                print(f"  mimoc {args.device}, C2C {level:.2%}                     "
                      f"SER {s:.3e} ({e})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
