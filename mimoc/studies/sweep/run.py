"""Run a sweep: compile each artifact once, simulate every job (serially or on Ray),
journal units as they finish, and write results.json, results.txt and the plots.

Output folder::

    DIR/artifacts/KEY/    compiled artifacts, KEY = hash of (model bytes, target, options)
    DIR/results.jsonl     the journal (resume reads it)
    DIR/results.json      the ``mimoc-sweep/1`` document (``mimoc sweep --json`` prints it):
                          the envelope, the spec and every job's curves (the
                          ``mimoc ber --json`` form per job)
    DIR/results.txt       the table
    DIR/plots/JOB.png     BER vs SNR per job
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mimoc.errors import UsageError
from mimoc.fileio import atomic_write
from mimoc.studies.sweep.journal import Journal, JournalExecutor
from mimoc.studies.sweep.spec import Curve, SweepSpec
from mimoc.tables import text_table
from mimoc.validation import output_envelope

JOURNAL = "results.jsonl"
RESULTS = "results.json"
TABLE = "results.txt"


@dataclass
class Job:
    """Curves that share one link (sizes and modulation): one simulate run."""

    nt: int
    nr: int
    mod: str
    curves: list[Curve] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.nt}x{self.nr}_{self.mod}"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def plan_jobs(spec: SweepSpec) -> list[Job]:
    """Group the spec's curves by the link sizes of their models (classical detectors join
    every job; a sweep of classical detectors alone runs on ``[link]``'s nt/nr/mod)."""
    from mimoc.detectors import load_detector

    jobs: dict[tuple, Job] = {}
    sizes: dict[str, tuple] = {}
    for model in spec.models:
        config = load_detector(model).config
        sizes[str(model)] = (config.nt, config.nr, config.modulation)
    classical = [c for c in spec.curves() if c.kind == "classical"]
    for curve in spec.curves():
        if curve.kind == "classical":
            continue
        key = sizes[curve.source]
        jobs.setdefault(key, Job(*key, list(classical))).curves.append(curve)
    if not jobs:
        link = spec.link
        jobs[()] = Job(int(link.get("nt", 4)), int(link.get("nr", 8)),
                       str(link.get("mod", "qpsk")), classical)
    return list(jobs.values())


def compile_cached(curve: Curve, root: Path) -> Path:
    """The artifact of ``curve``, compiled once under ``root`` by the hash of what it is
    made from (model bytes, target, options); a later curve or run reuses it."""
    from mimoc import driver
    from mimoc.targets import artifact_target

    key = hashlib.sha256(json.dumps([_sha256(Path(curve.source)), curve.target,
                                     sorted(curve.options)]).encode()).hexdigest()[:20]
    out = root / key
    if artifact_target(out) is None:  # compiles write atomically: a folder is complete
        root.mkdir(parents=True, exist_ok=True)
        driver.compile(curve.source, curve.target, out, force=out.exists(),
                       **dict(curve.options))
    return out


def _specs(job: Job, artifacts: dict[str, Path], seed: int) -> tuple[list, dict]:
    from mimoc.runtime.parallel import DetectorSpec, file_spec

    specs, files = [], {}
    for curve in job.curves:
        if curve.kind == "classical":
            specs.append(DetectorSpec(curve.name, "classical", curve.source))
            continue
        path = artifacts[curve.name] if curve.kind == "artifact" else Path(curve.source)
        spec, content = file_spec(curve.name, curve.kind, path, c2c=curve.c2c, seed=seed)
        specs.append(spec)
        files[spec.digest] = content
    return specs, files


def _job_key(job: Job, specs: list, spec: SweepSpec) -> str:
    # everything that decides the numbers; file contents enter through their digests
    what = {"link": [job.nt, job.nr, job.mod, spec.link], "run": spec.run, "snr": spec.snr,
            "curves": [[s.name, s.kind, s.source if s.kind == "classical" else s.digest,
                        s.c2c, s.seed] for s in specs]}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:20]


def run_sweep(spec: SweepSpec, out: str | Path, **options: Any) -> dict[str, Any]:
    """Run ``spec`` into the folder ``out`` (see the module docstring) and return the
    results.json object; the options are :func:`execute_sweep`'s."""
    return execute_sweep(spec, out, **options)[0]


def execute_sweep(spec: SweepSpec, out: str | Path, *, workers: int = 1,
                  address: str | None = None, resume: bool = False, force: bool = False,
                  on_unit: Callable[[Any], None] | None = None,
                  plots: bool = True, progress: bool = False,
                  artifacts_dir: str | Path | None = None,
                  argv: list[str] | None = None) -> tuple[dict[str, Any], list]:
    """Run ``spec`` into ``out``: ``(results.json document, one BERResult per job)``.

    ``workers > 1`` or ``address``: on Ray (started here when local). An existing,
    non-empty ``out`` is refused unless ``resume`` (reuse its journal: journaled units are
    not rerun) or ``force`` (start over: the journal is discarded; the compile cache is
    kept, it is keyed by content). ``on_unit``: called after each unit is journaled.
    ``progress``: a bar of finished units per job on stderr (on a terminal).
    ``artifacts_dir``: the compile cache (default ``out/artifacts``; sweeps that share one
    compile each artifact once between them). ``argv``: the command line recorded in the
    document's envelope (None through the API).
    """
    out = Path(out)
    check_output(out, resume=resume, force=force)
    out.mkdir(parents=True, exist_ok=True)
    if force:  # starting over: no results of the old sweep next to the new journal
        for name in (RESULTS, TABLE):
            (out / name).unlink(missing_ok=True)
    jobs = plan_jobs(spec)
    cache = Path(artifacts_dir) if artifacts_dir is not None else out / "artifacts"
    artifacts = {c.name: compile_cached(c, cache)
                 for job in jobs for c in job.curves if c.kind == "artifact"}
    journal = Journal(out / JOURNAL, resume)
    started = False
    try:
        if workers > 1 or address:
            from mimoc.runtime.parallel import start_ray

            started = start_ray(workers, address)
        parallel = workers > 1 or bool(address)
        results = [_run_job(job, spec, artifacts, journal, on_unit, parallel, progress)
                   for job in jobs]
    finally:
        journal.close()
        if started:
            from mimoc.runtime.parallel import stop_ray

            stop_ray()
    document = {**output_envelope("sweep", argv), "sweep": spec.to_dict(),
                "jobs": [{"link": job.label, "artifacts": {
                    c.name: artifacts[c.name].name for c in job.curves if c.kind == "artifact"},
                    "result": result.to_dict()} for job, result in zip(jobs, results,
                                                                       strict=True)]}
    with atomic_write(out / RESULTS) as handle:
        handle.write((json.dumps(document, indent=1) + "\n").encode())
    with atomic_write(out / TABLE) as handle:
        handle.write((format_sweep_table(jobs, results) + "\n").encode())
    if plots:
        from mimoc.studies.plots import plot_error_rates

        (out / "plots").mkdir(exist_ok=True)
        for job, result in zip(jobs, results, strict=True):
            plot_error_rates(result, out / "plots" / f"{job.label}.png")
    return document, results


def check_output(out: Path, *, resume: bool, force: bool) -> None:
    """The ``-o`` policy: a new or empty folder, or an existing one with ``resume`` or
    ``force`` (not both)."""
    if resume and force:
        raise UsageError("--resume continues the sweep in -o and --force starts it over; "
                         "give one of them")
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {out} is a file; a sweep writes a folder: choose another -o")
    if out.is_dir() and any(out.iterdir()) and not (resume or force):
        what = "holds a sweep" if (out / JOURNAL).exists() else "exists"
        raise UsageError(f"-o {out} {what} already; add --resume to continue it, --force to "
                         "start over, or choose another -o")


def _run_job(job: Job, spec: SweepSpec, artifacts: dict[str, Path], journal: Journal,
             on_unit, parallel: bool, progress: bool):
    from mimoc.runtime.parallel import RayExecutor, build_detector
    from mimoc.sim.ber import InProcessExecutor, simulate
    from mimoc.sim.channels import ChannelModel, CSIModel
    from mimoc.sim.system import MIMOSystem

    link, run = spec.link, spec.run
    system = MIMOSystem(nt=job.nt, nr=job.nr, modulation=job.mod,
                        channel=ChannelModel.parse(link["channel"]),
                        csi=CSIModel.parse(link["csi"]), snr_def=link["snr_def"],
                        slot=int(link["slot"]))
    specs, files = _specs(job, artifacts, run["seed"])
    if parallel:
        inner = RayExecutor(specs, system, files)
        detectors = dict.fromkeys(s.name for s in specs)
    else:
        detectors = {s.name: build_detector(s, system, artifacts.get(s.name)) for s in specs}
        inner = InProcessExecutor(detectors, system)
    executor = JournalExecutor(inner, journal, _job_key(job, specs, spec), on_unit)
    return simulate(detectors, system, spec.snr, seed=run["seed"],
                    max_symbols=run["max_symbols"], min_errors=run["min_errors"],
                    min_error_slots=run["min_error_slots"], batch_size=run["batch"],
                    executor=executor, progress=progress)


def format_sweep_table(jobs: list[Job], results: list) -> str:
    """One row per job, curve and SNR point."""
    rows = [(job.label, name, f"{p.snr_db:g}", f"{p.ser:.3e}", f"{p.ber:.3e}", p.errors,
             p.symbols)
            for job, result in zip(jobs, results, strict=True)
            for name, points in result.curves.items() for p in points]
    return text_table(rows, ("link", "curve", "SNR[dB]", "SER", "BER", "errors", "symbols"),
                      right=range(2, 7))
