"""BER units on Ray: detector specs that workers rebuild, and the Ray executor.

:func:`mimoc.sim.ber.simulate` decides which work units (SNR point, batch) run and
consumes their counts in batch order; :class:`RayExecutor` runs them on a pool of
long-lived Ray actors, one per CPU (:func:`worker_pool`), on a local Ray started on
demand (:func:`start_ray`) or on an existing cluster. Ray (a distributed engine kept out
of the default install, ``pip install -e '.[ray]'``) is imported only here and only
when asked for.

What goes to the workers is never a pickled module: a :class:`DetectorSpec` names a
classical detector, or a model file / artifact directory *by its content hash*; the
file's bytes travel once through Ray's object store and each worker process writes them
to a local cache folder named by that hash, loads them with the same safe loaders as
the CLI and keeps the built detector for the next units. A unit's draws (and a crossbar
engine's programming noise) are seeded by the unit alone, so a unit rerun after its
worker died (the actor is restarted, its calls retried) gives the same counts.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mimoc.errors import MimocError, UsageError

#: calls kept in flight per worker CPU: one running, one queued, so a worker never idles
#: while the driver consumes a result
UNITS_PER_WORKER = 2
#: a call to a worker costs 1-2 ms of the driver's and the worker's CPU (measured on
#: 2 cores), so short units go several to a call, enough for this much work: the cost
#: stays near 1% (on the idle 2-core VM, 50 ms calls gave 1.77x with 2 workers, 250 ms
#: calls 1.84-1.88x; benchmarks/scale.md), and the work that runs ahead of a point's stop
#: (discarded, so the counts do not change) stays below two calls per worker
MIN_CALL_SECONDS = 0.25
MAX_UNITS_PER_CALL = 64
#: how often Ray restarts a worker process that died and reruns its units (a unit is
#: seeded by itself, so a rerun gives the same counts)
MAX_RETRIES = 3
INSTALL_HINT = "install the extra: pip install -e '.[ray]'"
#: environment of every worker: one torch/BLAS thread each (the workers are the parallelism)
WORKER_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
#: settings of a local Ray's own processes: with no dashboard (``include_dashboard=False``)
#: nothing reads their metrics or usage reports, so they need not collect or send them
#: (every CPU cycle of Ray's processes is taken from the workers on a small machine).
#: Ray's niceness of its workers stays: it keeps the raylet responsive, and the CPU
#: that the driver and the raylet use is the same whoever waits.
LOCAL_RAY_ENV = {"RAY_enable_metrics_collection": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def import_ray() -> Any:
    """The ``ray`` module, or a one-line MimocError saying how to install it."""
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise MimocError("parallel runs need Ray, which is not installed; "
                         f"{INSTALL_HINT} (or run with --workers 1)") \
            from None


def start_ray(workers: int | None = None, address: str | None = None,
              env: dict[str, str] | None = None) -> bool:
    """Connect to the Ray cluster at ``address``, or start a local one with ``workers``
    CPUs; returns whether this call started it (then :func:`stop_ray` ends it). ``env``:
    more environment variables of the workers (besides :data:`WORKER_ENV`).

    A Ray already initialised in this process (a test fixture, a notebook) is reused.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    worker_env = {**WORKER_ENV, **(env or {})}
    try:
        if address:
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR,
                     runtime_env={"env_vars": worker_env})
        else:
            # A local Ray's workers inherit the environment its processes start with; a
            # runtime_env would make Ray start a second set of workers for it, which
            # doubles the warm-up (measured: about 5 s more on 2 cores).
            worker_env.update({key: value for key, value in LOCAL_RAY_ENV.items()
                               if key not in os.environ})  # a user's own setting wins
            saved = {key: os.environ.get(key) for key in worker_env}
            os.environ.update(worker_env)
            try:
                ray.init(num_cpus=int(workers or 1), include_dashboard=False,
                         log_to_driver=False, logging_level=logging.ERROR)
            finally:
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
    except (ConnectionError, RuntimeError, ValueError) as err:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray"
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise MimocError(f"cannot start {where} ({first}); check --ray-address or run "
                         "with --workers 1") from None
    return True


def stop_ray() -> None:
    _drop_pool()
    import_ray().shutdown()


# -- what a worker rebuilds ----------------------------------------------------------

@dataclass(frozen=True)
class DetectorSpec:
    """How a worker rebuilds one curve's detector.

    Attributes:
        name: the curve's name.
        kind: ``"classical"`` (``source`` = registry name), ``"model"`` (a checkpoint
            file), ``"artifact"`` (a compiled artifact directory) or ``"callable"``
            (``source`` = ``"package.module:factory"``, importable on the workers, called
            as ``factory(system, **options)``; the Python API's hook for own detectors).
        source: see ``kind``; for files, the path on the driver (for messages).
        digest: sha256 of the file / of the directory's files: the cache key on workers.
        c2c, seed, verify: a crossbar artifact's C2C level (``None``: the device's own),
            programming-noise seed and whether modified files are refused.
        options: keyword arguments of a ``callable``'s factory (hashable pairs).
        ideal: a crossbar artifact's program on the ideal device (a digital reference).
    """

    name: str
    kind: str
    source: str
    digest: str = ""
    c2c: float | None = None
    seed: int = 0
    verify: bool = True
    options: tuple[tuple[str, Any], ...] = field(default=())
    ideal: bool = False


def _files_of(path: Path) -> dict[str, bytes]:
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes()
            for p in sorted(path.rglob("*")) if p.is_file()}


def content_digest(files: dict[str, bytes]) -> str:
    """sha256 over the sorted (relative path, sha256 of bytes) pairs of ``files``."""
    outer = hashlib.sha256()
    for rel in sorted(files):
        outer.update(f"{rel}\0{hashlib.sha256(files[rel]).hexdigest()}\n".encode())
    return outer.hexdigest()


def file_spec(name: str, kind: str, path: str | os.PathLike, *, c2c: float | None = None,
              seed: int = 0, verify: bool = True) -> tuple[DetectorSpec, dict[str, bytes]]:
    """The spec of a model file (``kind="model"``) or artifact directory (``"artifact"``)
    and its files to ship, ``{relative path: bytes}`` (the spec's digest names them)."""
    content = _files_of(Path(path))
    return DetectorSpec(name, kind, str(path), content_digest(content), c2c, seed,
                        verify), content


def detector_specs(entries: Sequence[str], levels: Sequence[float | None], seed: int = 0,
                   verify: bool = True) -> tuple[list[DetectorSpec], dict[str, dict]]:
    """``--detector`` entries -> specs named as :func:`mimoc.commands.ber.build_detectors`
    names the curves (a crossbar artifact: one per C2C level, ``DIR@c2c=0.01``), and the
    files to ship, ``{digest: {relative path: bytes}}``."""
    from mimoc.sim.detectors import CLASSICAL_DETECTORS
    from mimoc.targets import artifact_target

    specs: list[DetectorSpec] = []
    files: dict[str, dict] = {}
    for entry in entries:
        if entry.lower().partition(":")[0] in CLASSICAL_DETECTORS:
            specs.append(DetectorSpec(entry, "classical", entry.lower()))
            continue
        path = Path(entry)
        if not path.exists():
            raise UsageError(f"detector {entry!r} not found; give a classical name, a model "
                             "file or an artifact directory")
        kind = "artifact" if path.is_dir() else "model"
        crossbar = kind == "artifact" and artifact_target(path) == "crossbar"
        for level in levels if crossbar else [None]:
            name = entry if level is None else f"{entry}@c2c={level:g}"
            spec, content = file_spec(name, kind, path, c2c=level, seed=seed, verify=verify)
            specs.append(spec)
            files[spec.digest] = content
    return specs, files


def materialize(digest: str, files: dict[str, bytes], root: str | os.PathLike) -> Path:
    """Write shipped ``files`` under ``root/digest`` once (atomically, by rename) and
    return the path to load: the file itself for a single file, else the folder."""
    target = Path(root) / digest
    if not target.exists():
        staging = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=root))
        for rel, data in files.items():
            out = staging / (rel or "model.pt")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
        try:
            staging.rename(target)
        except OSError:  # another worker of this node won the race: same bytes
            pass
    return target / "model.pt" if "" in files else target


def build_detector(spec: DetectorSpec, system: Any, path: str | os.PathLike | None = None):
    """The engine detector of ``spec`` for ``system`` (``path``: where its files lie)."""
    from mimoc.sim.ber import classical, from_module

    if spec.kind == "classical":
        return classical(spec.source, system.constellation)
    if spec.kind == "callable":
        module, _, function = spec.source.partition(":")
        return getattr(importlib.import_module(module), function)(system, **dict(spec.options))
    path = Path(path if path is not None else spec.source)
    if spec.kind == "model":
        from mimoc.quant import QuantizedDetector, load_quantized

        model, recipe = load_quantized(path)
        return from_module(model if recipe is None else QuantizedDetector(model, recipe))
    from mimoc.targets import artifact_target

    if artifact_target(path) == "crossbar":
        from mimoc.runtime.imc import load_schedule

        return load_schedule(path, verify=spec.verify).engine(c2c=spec.c2c, seed=spec.seed,
                                                              ideal=spec.ideal)
    from mimoc.runtime.loader import load

    return load(path, verify=spec.verify).engine()


# -- the worker side -----------------------------------------------------------------

_WORKER_DETECTORS: dict[tuple, Any] = {}  # per worker process: built once, reused by units


def _worker_detectors(system: Any, specs: Sequence[DetectorSpec], file_refs: dict) -> dict:
    import torch

    ray = import_ray()
    torch.set_num_threads(1)
    cache = Path(tempfile.gettempdir()) / "mimoc-ray-cache"
    cache.mkdir(exist_ok=True)
    detectors = {}
    for spec in specs:
        key = (spec, repr(system))
        if key not in _WORKER_DETECTORS:
            path = None
            if spec.digest:
                path = materialize(spec.digest, ray.get(file_refs[spec.digest]), cache)
            _WORKER_DETECTORS[key] = build_detector(spec, system, path)
        detectors[spec.name] = _WORKER_DETECTORS[key]
    return detectors


class UnitRunner:
    """One worker CPU's long-lived process (a Ray actor, see :func:`worker_pool`): runs
    the units of any executor of this Ray session.

    An executor's context (system, specs, files, dtype) is one object in Ray's object
    store; a call names it by a reference *nested in a list*, which Ray passes as is
    rather than fetching it, so the runner fetches and deserializes it, and builds the
    detectors, only the first time it sees it (again after a restart), not per unit.
    """

    #: contexts kept per runner (a sweep's jobs come one after the other)
    KEPT_CONTEXTS = 4

    def __init__(self) -> None:
        import torch

        torch.set_num_threads(1)
        self._contexts: dict[str, tuple] = {}

    def _context(self, ref: Any) -> tuple:
        key = ref.hex()
        if key not in self._contexts:
            system, specs, file_refs, dtype = import_ray().get(ref)
            while len(self._contexts) >= self.KEPT_CONTEXTS:
                self._contexts.pop(next(iter(self._contexts)))
            self._contexts[key] = (_worker_detectors(system, specs, file_refs), system, dtype)
        return self._contexts[key]

    def run(self, context: list, units: Sequence[Any]) -> tuple[list, float]:
        """The counts of ``units`` under ``context[0]``, and the seconds they took
        (without building the detectors: the executor sizes its calls by it)."""
        import time

        from mimoc.sim.ber import run_unit

        detectors, system, dtype = self._context(context[0])
        start = time.perf_counter()
        counts = [run_unit(detectors, system, unit, dtype) for unit in units]
        return counts, time.perf_counter() - start

    def describe(self) -> dict[str, Any]:
        """Process id, thread settings and niceness (the tests and benchmarks check them)."""
        import torch

        return {"pid": os.getpid(), "omp_threads": os.environ.get("OMP_NUM_THREADS"),
                "torch_threads": torch.get_num_threads(), "nice": os.nice(0)}


# -- the driver side -----------------------------------------------------------------

_POOL: dict[str, Any] = {}  # this process's runners, with the Ray session they live in


def _session(ray: Any) -> str:
    """Names this Ray session: a new local Ray (a new node) or job gets new runners."""
    context = ray.get_runtime_context()
    try:
        node = context.get_node_id()
    except Exception:  # noqa: BLE001 -- a Ray client driver has no node of its own
        node = ""
    return f"{node}:{context.get_job_id()}"


def worker_pool() -> list:
    """The runners of this Ray session, one per CPU of the cluster, created on first use
    and kept (warm: torch imported, detectors built) until :func:`stop_ray`.

    Each holds one CPU for its life, so plain Ray tasks of this session find none free
    while the pool lives. A runner whose process dies is restarted and the calls it had
    are run again (``max_restarts``/``max_task_retries``); a unit is seeded by itself,
    so a rerun gives the same counts.
    """
    ray = import_ray()
    session = _session(ray)
    if _POOL.get("session") != session:
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        actor = ray.remote(num_cpus=1, max_restarts=MAX_RETRIES,
                           max_task_retries=MAX_RETRIES)(UnitRunner)
        _POOL.update(session=session, runners=[actor.remote() for _ in range(cpus)])
    return _POOL["runners"]


def _drop_pool() -> None:
    _POOL.clear()


class RayExecutor:
    """Runs :func:`mimoc.sim.ber.simulate`'s units on the session's :func:`worker_pool`
    (Ray must be started, :func:`start_ray`): :data:`UNITS_PER_WORKER` calls in flight
    per runner, each new call to the runner with the fewest, a call carrying one unit
    or, once units prove short, enough for :data:`MIN_CALL_SECONDS`. ``files``:
    ``{digest: {relative path: bytes}}`` of the specs; ``window``: a fixed number of
    units in flight instead."""

    def __init__(self, specs: Iterable[DetectorSpec], system: Any,
                 files: dict[str, dict] | None = None, *, dtype: Any = None,
                 window: int | None = None) -> None:
        import torch

        ray = import_ray()
        self._ray = ray
        self.specs = list(specs)
        names = [spec.name for spec in self.specs]
        if len(set(names)) != len(names):
            raise UsageError(f"detector names must be distinct, got {names}")
        self._runners = worker_pool()
        self._fixed_window = window
        file_refs = {digest: ray.put(content) for digest, content in (files or {}).items()}
        # one object in the store for all runners (a list keeps Ray from fetching it per call)
        self._context = [ray.put((system, self.specs, file_refs, dtype or torch.float32))]
        self._load = [0] * len(self._runners)
        self._in_flight: dict[Any, tuple[int, list]] = {}  # call -> (runner, its units)
        self._queued: list = []  # submitted units not yet sent: the next call's
        self._ran_units, self._ran_seconds = 0, 0.0

    @property
    def units_per_call(self) -> int:
        if not self._ran_seconds:
            return 1
        per_unit = self._ran_seconds / self._ran_units
        return max(1, min(MAX_UNITS_PER_CALL, int(MIN_CALL_SECONDS / per_unit)))

    @property
    def window(self) -> int:
        """Units the engine keeps submitted (it reads this before each submission)."""
        return self._fixed_window or (UNITS_PER_WORKER * len(self._runners)
                                      * self.units_per_call)

    def submit(self, unit: Any) -> None:
        self._queued.append(unit)
        if len(self._queued) >= self.units_per_call:
            self._send()

    def _send(self) -> None:
        runner = min(range(len(self._runners)), key=self._load.__getitem__)
        units, self._queued = self._queued, []
        self._in_flight[self._runners[runner].run.remote(self._context, units)] = \
            (runner, units)
        self._load[runner] += 1

    def wait(self) -> list[tuple[Any, Any]]:
        ray = self._ray
        if self._queued:
            self._send()
        ready, rest = ray.wait(list(self._in_flight), num_returns=1)
        if rest:
            more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
            ready += more
        done = []
        for ref in ready:
            runner, units = self._in_flight.pop(ref)
            self._load[runner] -= 1
            counts, seconds = self._result(ref)
            self._ran_units += len(units)
            self._ran_seconds += seconds
            done.extend(zip(units, counts, strict=True))
        return done

    def _result(self, ref: Any) -> tuple[list, float]:
        ray = self._ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as err:
            cause = getattr(err, "cause", None)
            if isinstance(cause, MimocError):  # a bad file on a worker: its one line
                raise MimocError(str(cause)) from None
            raise
        except ray.exceptions.RayActorError:
            _drop_pool()  # a runner out of restarts: the next executor starts afresh
            raise MimocError(f"a Ray worker process died {MAX_RETRIES + 1} times running "
                             "the same units (out of memory?); run with fewer --workers "
                             "or --workers 1") from None

    def cancel(self) -> None:
        refs, self._in_flight, self._queued = list(self._in_flight), {}, []
        self._load = [0] * len(self._runners)
        for ref in refs:  # queued calls are dropped; a running one finishes unread
            try:
                self._ray.cancel(ref)
            except Exception:  # noqa: BLE001 -- Ray shutting down (Ctrl-C): nothing to cancel
                pass
