"""Byte-identity check for refactors: compile every shipped example to each target and
record (``--record FILE``) or compare (``--check FILE``) the sha256 of every artifact file.

Compilation is deterministic on one machine; across CPUs the crossbar's Monte Carlo
statistics and folded constants may differ in the last bit, so compare records made on
the same machine (before and after a change).

    python benchmarks/artifact_hashes.py --record /tmp/before.json
    python benchmarks/artifact_hashes.py --check /tmp/before.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import mimoc
from mimoc.errors import MimocError

MODELS = Path(__file__).resolve().parent.parent / "examples" / "models"

#: (name, model file, compile keyword arguments)
CASES = [(f"{p.stem}:onnx", p.name, {"target": "onnx"}) for p in sorted(MODELS.glob("*.pt"))]
CASES += [(f"{p.stem}:crossbar", p.name, {"target": "crossbar"})
          for p in sorted(MODELS.glob("*.pt"))]
CASES += [
    ("detnet_8x16_qpsk:onnx-minmax", "detnet_8x16_qpsk.pt", {"target": "onnx", "quant": "minmax"}),
    ("detnet_8x16_qpsk:onnx-int8", "detnet_8x16_qpsk.pt", {"target": "onnx", "quant": "int8"}),
    ("detnet_8x16_qpsk_kaq:onnx-w4a4", "detnet_8x16_qpsk_kaq.pt",
     {"target": "onnx", "lowering": "w4a4"}),
    ("detnet_8x16_qpsk:crossbar-rram", "detnet_8x16_qpsk.pt",
     {"target": "crossbar", "device": "rram-zeng2023"}),
]


def digest_tree(directory: Path) -> dict[str, str]:
    return {p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def record() -> dict[str, object]:
    hashes: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, model, kwargs) in enumerate(CASES):
            out = Path(tmp) / str(i)
            try:
                mimoc.compile(str(MODELS / model), out=out, **kwargs)
            except MimocError as err:
                hashes[name] = {"refused": str(err)}
            else:
                hashes[name] = digest_tree(out)
            print(f"{name}: {'refused' if 'refused' in hashes[name] else 'ok'}", flush=True)
    return hashes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--record", type=Path)
    group.add_argument("--check", type=Path)
    args = parser.parse_args()
    hashes = record()
    if args.record:
        args.record.write_text(json.dumps(hashes, indent=1, sort_keys=True) + "\n")
        return 0
    expected = json.loads(args.check.read_text())
    bad = [name for name in sorted(set(expected) | set(hashes))
           if expected.get(name) != hashes.get(name)]
    for name in bad:
        print(f"DIFFERS: {name}\n  before {expected.get(name)}\n  after  {hashes.get(name)}")
    print(f"{len(hashes) - len(bad)}/{len(hashes)} identical")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
