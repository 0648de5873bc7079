"""Regenerate the README's example outputs with the current code.

- the main job's output (``mimoc budget examples/models/detnet_8x16_qpsk.pt``), pasted into
  README.md between the ``<!-- main-job-output -->`` marks, and its chart
  ``docs/figures/readme_budget.png``;
- ``docs/figures/readme_ber.png``: the bundled DetNet's BER on every target
  (``examples/ber_compare_targets.py``).

The budget table holds latencies measured on this machine: run it on a quiet machine
(nothing else busy), from the repository root::

    python examples/regenerate_readme_figures.py               # both
    python examples/regenerate_readme_figures.py --only budget
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FIGURES = ROOT / "docs" / "figures"
MAIN_JOB = ["budget", "examples/models/detnet_8x16_qpsk.pt"]
MARKS = re.compile(r"(<!-- main-job-output -->\n```\n).*?(```\n<!-- /main-job-output -->)",
                   flags=re.S)


def regenerate_budget() -> None:
    """Run the main job here (in-process, from the repository root) and paste its output."""
    import os

    from mimoc.cli import main

    FIGURES.mkdir(parents=True, exist_ok=True)
    plot = FIGURES / "readme_budget.png"
    out = io.StringIO()
    start = time.perf_counter()
    cwd = Path.cwd()
    os.chdir(ROOT)
    try:
        with contextlib.redirect_stdout(out):
            code = main([*MAIN_JOB, "--plot", str(plot.relative_to(ROOT))])
    finally:
        os.chdir(cwd)
    seconds = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"the main job failed (exit {code})")
    text = "".join(line for line in out.getvalue().splitlines(keepends=True)
                   if not line.startswith("plot written to"))
    readme = README.read_text()
    if not MARKS.search(readme):
        raise SystemExit("README.md has no <!-- main-job-output --> block to fill")
    README.write_text(MARKS.sub(lambda m: m.group(1) + text + m.group(2), readme))
    print(f"main job: {seconds:.0f} s; README.md and {plot.relative_to(ROOT)} updated")


def regenerate_ber() -> None:
    plot = FIGURES / "readme_ber.png"
    FIGURES.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, str(ROOT / "examples" / "ber_compare_targets.py"),
                    "--snr=-4:2:2", "--max-symbols", "100000", "--plot", str(plot)],
                   check=True)
    print(f"{plot.relative_to(ROOT)} updated")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["budget", "ber"], default=None)
    args = parser.parse_args()
    if args.only in (None, "budget"):
        regenerate_budget()
    if args.only in (None, "ber"):
        regenerate_ber()


if __name__ == "__main__":
    main()
