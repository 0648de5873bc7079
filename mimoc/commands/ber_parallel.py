"""``mimoc ber --workers N`` / ``--ray-address ADDR``: the same units on Ray workers.

The serial engine is the default (no Ray imported); with more workers or a cluster
address the detectors go to the workers as specs (:mod:`mimoc.runtime.parallel`) and
:func:`mimoc.sim.ber.simulate` consumes their units' counts in batch order, so the
numbers equal a serial run's with the same ``--seed``.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator

from mimoc.commands import flags
from mimoc.errors import UsageError


def add_parallel_arguments(parser: argparse.ArgumentParser, command: str = "ber") -> None:
    flags.add(parser, "workers", command,
              help="run the Monte Carlo batches on N local Ray workers (one CPU each; 1: in "
                   "this process, without Ray); the counts equal a serial run's with the same "
                   "seed; needs the extra: pip install -e '.[ray]'")
    flags.add(parser, "ray-address", command,
              help="run on the existing Ray cluster at ADDR (e.g. ray://head:10001 or auto) "
                   "instead of a local one; the workers need mimoc installed")


def wants_ray(args: argparse.Namespace) -> bool:
    if args.workers < 1:
        raise UsageError(f"--workers must be a positive integer, got {args.workers}")
    parallel = args.workers > 1 or bool(args.ray_address)
    # the workers rebuild detectors from specs that carry no drift time, and LLRs stay in
    # the process that writes them: both run serially for now
    for flag, given in (("--output llr", getattr(args, "output", "hard") == "llr"),
                        ("--time-since-programming",
                         getattr(args, "time_since_programming", None) is not None)):
        if parallel and given:
            raise UsageError(f"{flag} runs in this process only: drop --workers/--ray-address")
    return parallel


@contextlib.contextmanager
def ray_executor(args: argparse.Namespace, spec: str, system, seed: int,
                 verify: bool) -> Iterator[object | None]:
    """The executor of ``--workers``/``--ray-address`` (``None``: serial), Ray stopped on
    exit when this run started it."""
    if not wants_ray(args):
        yield None
        return
    from mimoc.commands.ber_artifacts import parse_c2c_list
    from mimoc.runtime.parallel import RayExecutor, detector_specs, start_ray, stop_ray

    entries = [entry.strip() for entry in spec.split(",")]
    specs, files = detector_specs(entries, parse_c2c_list(args.c2c), seed, verify)
    started = start_ray(args.workers, args.ray_address)
    try:
        yield RayExecutor(specs, system, files)
    finally:
        if started:
            stop_ray()
