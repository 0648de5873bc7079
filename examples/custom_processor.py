"""Latency budget on your own processor: a data file with its peak throughput.

A reference processor is a JSON file (see mimoc/data/processors/ for the three shipped ones):
only ``peak_gflops`` is required; ``utilisation`` (default 1.0 = the peak) is the share of the
peak a detector's small matrix products sustain, so 1.0 gives a lower bound on the latency.
This script writes one for a hypothetical edge SoC at 30% of a 200 GFLOP/s peak, checks it
loads, and budgets the detector on it next to the TI C6678 DSP -- the same as::

    mimoc budget MODEL --target dsp-c6678,proc:my_soc.json --max-symbols 0

Usage::

    python examples/custom_processor.py [--model my.pt] [--peak-gflops 200 --utilisation 0.3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from mimoc.hardware.processors import load_processor
from mimoc.studies.budget import format_budget, run_budget

HERE = Path(__file__).resolve().parent
MODEL = HERE / "models" / "detnet_8x16_qpsk.pt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=MODEL, help="a mimoc checkpoint")
    parser.add_argument("--peak-gflops", type=float, default=200.0)
    parser.add_argument("--utilisation", type=float, default=0.3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "my_soc.json"
        path.write_text(json.dumps({
            "name": "my-soc", "title": "an edge SoC (hypothetical)", "kind": "soc",
            "peak_gflops": args.peak_gflops, "utilisation": args.utilisation,
            "source": "vendor datasheet peak; utilisation from a GEMM microbenchmark"}))
        soc = load_processor(str(path))  # validated: a bad field is a one-line error
        print(f"{soc.name}: {soc.sustained_flops / 1e9:g} GFLOP/s sustained")
        report = run_budget(args.model, ["dsp-c6678", f"proc:{path}"], ser_symbols=0)
    print(format_budget(report))
    row = report.rows[1]
    flops = row.latency.details["flops_slot_rate"] + 14 * row.latency.details["flops_per_symbol"]
    print(f"check: {flops:,} FLOPs per slot / {soc.sustained_flops / 1e9:g} GFLOP/s = "
          f"{flops / soc.sustained_flops * 1e6:.2f} us = {row.latency.per_slot_s * 1e6:.2f} us")


if __name__ == "__main__":
    main()
