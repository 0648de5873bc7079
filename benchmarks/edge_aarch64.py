"""Cross-compile a detector for 64-bit Arm with IREE and check it under emulation.

Compiles MODEL twice with ``mimoc compile --target iree``: for this machine (``--cpu
host``) and for a generic aarch64 core (``--cpu aarch64``: target triple
``aarch64-linux-gnu``, NEON, no core-specific tuning), runs the aarch64 ``detector.vmfb``
under ``qemu-aarch64`` with the aarch64 build of IREE's ``iree-run-module`` on seeded
inputs, the host module with the IREE runtime here, and compares: the same hard
decisions (nearest constellation point) and the largest output difference. Exit status 0
when the decisions agree, 1 when they do not, 2 when a tool is missing.

Emulation checks that the Arm code computes the right thing; its run time says nothing
about an Arm core's speed (qemu translates every instruction): time on the device itself
(docs/edge.md).

Setup (Debian/Ubuntu, once)::

    apt-get update
    apt-get install qemu-user libc6-arm64-cross libstdc++6-arm64-cross
    python benchmarks/edge_aarch64.py --install-runtime ~/.cache/mimoc-aarch64
    #   = pip download --no-deps --platform manylinux_2_28_aarch64 --only-binary=:all: \\
    #       iree-base-runtime==3.13.0   and unzip iree/_runtime_libs/iree-run-module

Run::

    python benchmarks/edge_aarch64.py [MODEL.pt] [--runner PATH] [--json]

``--runner`` (or ``$MIMOC_AARCH64_IREE_RUN_MODULE``; default
``~/.cache/mimoc-aarch64/iree/_runtime_libs/iree-run-module``) is the aarch64
``iree-run-module``; ``--sysroot`` (default ``/usr/aarch64-linux-gnu``) the aarch64 C
libraries qemu loads it with.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_MODEL = ROOT / "examples" / "models" / "detnet_8x16_qpsk.pt"
RUNTIME_VERSION = "3.13.0"
RUNNER_IN_WHEEL = "iree/_runtime_libs/iree-run-module"
DEFAULT_CACHE = Path.home() / ".cache" / "mimoc-aarch64"
DEFAULT_SYSROOT = Path("/usr/aarch64-linux-gnu")


def default_runner() -> Path:
    env = os.environ.get("MIMOC_AARCH64_IREE_RUN_MODULE")
    return Path(env) if env else DEFAULT_CACHE / RUNNER_IN_WHEEL


def missing_tools(runner: Path, sysroot: Path, qemu: str = "qemu-aarch64") -> list[str]:
    """What this check needs and does not find (empty: it can run)."""
    missing = []
    if shutil.which(qemu) is None:
        missing.append(f"{qemu} (apt-get install qemu-user)")
    if not (sysroot / "lib" / "ld-linux-aarch64.so.1").exists():
        missing.append(f"the aarch64 C libraries in {sysroot} (apt-get install "
                       "libc6-arm64-cross libstdc++6-arm64-cross)")
    if not runner.is_file():
        missing.append(f"the aarch64 iree-run-module at {runner} (--install-runtime DIR)")
    return missing


def install_runtime(directory: Path) -> Path:
    """Download the aarch64 wheel of iree-base-runtime and unpack its iree-run-module."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--platform",
                    "manylinux_2_28_aarch64", "--only-binary=:all:",
                    f"iree-base-runtime=={RUNTIME_VERSION}", "-d", str(directory)], check=True)
    wheel = sorted(directory.glob(f"iree_base_runtime-{RUNTIME_VERSION}-*aarch64*.whl"))[-1]
    with zipfile.ZipFile(wheel) as archive:
        archive.extract(RUNNER_IN_WHEEL, directory)
    runner = directory / RUNNER_IN_WHEEL
    runner.chmod(0o755)
    return runner


def seeded_link(manifest: dict, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Inputs of the compiled sizes: a Rayleigh channel and noisy symbols at 6 dB."""
    from mimoc.sim.system import MIMOSystem

    config = manifest["model"]["config"]
    sizes = manifest["static_shapes"]
    system = MIMOSystem(nt=config["nt"], nr=config["nr"], modulation=config["modulation"],
                        slot=sizes["S"])
    batch = system.sample(sizes["B"], 6.0, generator=torch.Generator().manual_seed(seed))
    return batch.H.numpy(), batch.y.numpy()


def run_emulated(artifact: Path, H: np.ndarray, y: np.ndarray, runner: Path, sysroot: Path,
                 qemu: str = "qemu-aarch64") -> tuple[np.ndarray, float]:
    """``(x_hat, seconds)`` of the aarch64 ``detector.vmfb`` under qemu (its sha256 is
    checked against the manifest first)."""
    from mimoc.targets.artifact_files import read_recorded_file
    from mimoc.targets.iree.artifact import read_manifest

    manifest = read_manifest(artifact)
    read_recorded_file(artifact, "detector.vmfb", manifest["files"], index="manifest.json")
    with tempfile.TemporaryDirectory(prefix="mimoc-aarch64-") as tmp:
        tmp = Path(tmp)
        np.save(tmp / "H.npy", H)
        np.save(tmp / "y.npy", y)
        command = [qemu, "-L", str(sysroot), str(runner), "--device=local-sync",
                   f"--module={artifact / 'detector.vmfb'}",
                   f"--function={manifest['iree']['functions']['detector']}",
                   f"--input=@{tmp / 'H.npy'}", f"--input=@{tmp / 'y.npy'}",
                   f"--output=@{tmp / 'x_hat.npy'}"]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"iree-run-module under qemu failed: {done.stderr.strip()[-400:]}")
        return np.load(tmp / "x_hat.npy", allow_pickle=False), seconds


def check(model: Path, runner: Path, sysroot: Path, workdir: Path) -> dict:
    import mimoc
    from mimoc.runtime import load
    from mimoc.sim.modulation import get_constellation

    host = mimoc.compile(model, target="iree", out=workdir / "host", force=True)
    arm = mimoc.compile(model, target="iree", out=workdir / "aarch64", force=True,
                        cpu="aarch64")
    H, y = seeded_link(host.manifest)
    x_host = load(host.path).detect(H, y)
    x_arm, seconds = run_emulated(arm.path, H, y, runner, sysroot)
    constellation = get_constellation(host.manifest["model"]["config"]["modulation"])
    same = constellation.indices_of_real(torch.from_numpy(x_host)) == \
        constellation.indices_of_real(torch.from_numpy(x_arm))
    return {"model": model.name, "sizes": host.manifest["static_shapes"],
            "aarch64_flags": arm.manifest["iree"]["flags"],
            "decisions_equal": bool(same.all()), "decisions": int(same.numel()),
            "max_abs_difference": float(np.abs(x_host - x_arm).max()),
            "max_abs_output": float(np.abs(x_host).max()),
            "emulated_seconds": round(seconds, 3),
            "note": "qemu's time is not an Arm core's: time on the device (docs/edge.md)"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--runner", type=Path, default=None,
                        help="aarch64 iree-run-module (default: $MIMOC_AARCH64_IREE_RUN_MODULE "
                             f"or {DEFAULT_CACHE / RUNNER_IN_WHEEL})")
    parser.add_argument("--sysroot", type=Path, default=DEFAULT_SYSROOT)
    parser.add_argument("--install-runtime", type=Path, default=None, metavar="DIR",
                        help="download the aarch64 iree-base-runtime wheel into DIR, unpack "
                             "its iree-run-module, and exit")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.install_runtime is not None:
        print(install_runtime(args.install_runtime))
        return 0
    runner = args.runner or default_runner()
    missing = missing_tools(runner, args.sysroot)
    if missing:
        print("edge_aarch64: missing " + "; ".join(missing), file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="mimoc-edge-") as tmp:
        result = check(args.model, runner, args.sysroot, args.workdir or Path(tmp))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['model']} {result['sizes']}: aarch64 (qemu) vs host: decisions "
              f"{'equal' if result['decisions_equal'] else 'DIFFER'} ({result['decisions']}), "
              f"max |difference| {result['max_abs_difference']:.3g} (outputs up to "
              f"{result['max_abs_output']:.3g}); emulated run {result['emulated_seconds']} s "
              "(not an Arm core's speed)")
    return 0 if result["decisions_equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
