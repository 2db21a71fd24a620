"""Many stylizations at once, on a Dask cluster: ``numpynst batch`` and its Python API.

>>> from numpynst import batch                                        # doctest: +SKIP
>>> jobs = batch.read_manifest("jobs.csv")                            # or batch.grid_jobs(...)
>>> results = batch.run(jobs, "results/", workers=4)
>>> [r.status for r in results]                                       # "done" | "skipped" | "failed" | ...

A batch goes manifest -> jobs -> cluster -> worker -> report, one module each:

* :mod:`~numpynst.batch.manifest` -- CSV / JSON-lines manifests and grids (sweeps) list the jobs,
  their cells parsed by :mod:`~numpynst.batch.options` (the options a job may set);
* :mod:`~numpynst.batch.jobs` -- :class:`Job`, its content-hash identity, the checks before a run;
* :mod:`~numpynst.batch.cluster` -- a local cluster sized so BLAS and Dask share the cores, or an
  existing cluster, or one worker per GPU;
* :mod:`~numpynst.batch.worker` -- the task run on a worker (per-worker model cache, atomic outputs,
  verified results);
* :mod:`~numpynst.batch.report` -- ``summary.csv`` and the contact sheet;
* :mod:`~numpynst.batch.outdir` -- the files the run may write in OUTDIR (never an input, never a
  file it did not write) and its private folder for temporaries;
* :mod:`~numpynst.batch.interrupts` -- Ctrl-C, SIGTERM and SIGHUP all end a run the same way.

:func:`run`, here, drives them: check every job and OUTDIR, skip the jobs whose verified output
already exists, submit the rest, collect results as they finish, write the report (also after an
interrupt), remove the private folder. Dask is imported only when a
batch runs, so ``import numpynst.batch`` neither needs nor loads it.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from ..checks import first_line, integer
from ..errors import OptionError, short_path
from .jobs import Job, prepare_jobs
from .manifest import grid_jobs, read_manifest  # noqa: F401 (API)
from .options import OPTIONS  # noqa: F401 (API)

__all__ = ["Job", "JobResult", "Results", "OPTIONS", "read_manifest", "grid_jobs", "run", "summarize"]

DEFAULT_RETRIES = 2
MAX_RETRIES = 100           # a job that kills its worker every time must not be retried forever
STATUSES = ("done", "skipped", "failed", "cancelled")


@dataclasses.dataclass
class JobResult:
    """One row of the summary. ``status``: ``done`` (ran now), ``skipped`` (a verified output already
    existed), ``failed`` (``error`` says why), ``cancelled`` (Ctrl-C before it finished).
    ``J_final``: lowest objective value reached; ``seconds``: wall time of this run's attempt (0 when
    skipped); ``output``: file name inside the output folder."""

    job: str
    status: str
    J_final: float | None = None
    seconds: float = 0.0
    worker: str = ""
    output: str = ""
    error: str = ""
    stopped: str = ""
    iterations: int = 0
    content: str = ""
    style: str = ""
    options: dict = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _result(_job: Job, **fields: Any) -> JobResult:
    keep = {f.name for f in dataclasses.fields(JobResult)}
    fields = {k: v for k, v in fields.items() if k in keep}
    return JobResult(**{"job": _job.name, "content": _job.content, "style": ";".join(_job.styles),
                        "options": dict(_job.options), **fields})


def _from_record(job: Job, status: str, record: dict, **fields: Any) -> JobResult:
    """The JobResult of a job whose verified output is in place, from its sidecar ``record``."""
    return _result(job, status=status, J_final=record.get("J_final"), worker=record.get("worker", ""),
                   output=job.output, stopped=record.get("stopped", ""),
                   iterations=record.get("iterations", 0), **fields)


class Results(list):
    """The :class:`JobResult` s of a run, in job order (a plain list), and how the run ended.

    ``signum``: the signal that interrupted it (``signal.SIGINT`` for Ctrl-C, ``SIGTERM``, ``SIGHUP``),
    else ``None``. ``written``: the report files written (``summary.csv``, ``contact_sheet.png``);
    ``report_errors``: one line per report file that could not be (full disk, file-size limit).
    """

    def __init__(self, items: Iterable[JobResult] = (), signum: int | None = None,
                 written: Sequence[Path] = (), report_errors: Sequence[str] = ()) -> None:
        super().__init__(items)
        self.signum = signum
        self.written = list(written)
        self.report_errors = list(report_errors)


def run(jobs: Iterable[Job], outdir: str | os.PathLike, client=None, *, workers: int | None = None,
        scheduler: str | None = None, gpu: bool = False, retries: int = DEFAULT_RETRIES,
        progress: bool = True, contact_sheet: bool = True, task: Callable | None = None,
        log: Callable[[str], Any] | None = None, protect: Sequence[str | os.PathLike] = ()) -> Results:
    """Run ``jobs`` on Dask, writing ``outdir/<name>-<digest>.png`` per job plus the report.

    Args:
        jobs: from :func:`read_manifest`, :func:`grid_jobs`, or :class:`Job` objects (checked here).
        outdir: output folder (created). Jobs whose verified output is already there are skipped.
            Refused before anything runs (:func:`numpynst.batch.outdir.check_outdir`): an input that
            is one of the files the batch writes there, or a foreign ``summary.csv`` /
            ``contact_sheet.png``.
        client: a ``distributed.Client`` to use (left open). Otherwise one is made from ``scheduler``
            (address of a running cluster), ``gpu`` (dask-cuda, one worker per GPU) or a local
            cluster of ``workers`` processes (default: sized to the machine), and closed at the end.
        gpu: run the jobs with the CuPy backend (also with ``client``/``scheduler``).
        retries: extra attempts for a job whose worker died or raised MemoryError.
        task: the function run per job, ``task(spec, outdir, backend) -> row``; default
            :func:`numpynst.batch.worker.execute_job` (tests substitute a wrapper around it).
        log: where progress lines go (default ``print`` when ``progress``).
        protect: further files the batch reads and must never write over (the manifest).
    Returns:
        :class:`Results`: one :class:`JobResult` per job, in the order of ``jobs``; also written to
        ``outdir/summary.csv``, with the contact sheet in ``outdir/contact_sheet.png``. Ctrl-C,
        SIGTERM or SIGHUP cancel what is still running, and the summary marks those jobs
        ``cancelled`` (``Results.signum`` says which signal). A report file that cannot be written is
        one line in ``Results.report_errors``, not an exception.
    """
    from . import worker  # looked up by name: tests may substitute its functions
    from .interrupts import InterruptGuard, signal_name
    from .outdir import Scratch, check_outdir, outdir_path, prepare_outdir, remove_stale
    retries = integer("--retries", retries, minimum=0, maximum=MAX_RETRIES)
    if workers is not None and (scheduler or client is not None):
        raise OptionError("--workers cannot be combined with --scheduler or a client (the cluster has its own)")
    if scheduler and client is None:
        from .cluster import check_address
        check_address(scheduler)
    if workers is not None and not gpu:          # checked now, not after OUTDIR is made
        from .cluster import plan_local
        plan_local(workers)
    log = log or (print if progress else (lambda *_: None))
    jobs = prepare_jobs(jobs)
    check_outdir(outdir_path(outdir), jobs, protect, contact_sheet)
    outdir = prepare_outdir(outdir)
    remove_stale(outdir)
    backend = "cupy" if gpu else "numpy"
    task = task or worker.execute_job

    results: dict[int, JobResult] = {}
    t0 = time.perf_counter()
    with InterruptGuard() as guard, Scratch(outdir) as scratch:
        scratch.probe(max((len(job.output) for job in jobs), default=1))
        try:
            with guard.raising():
                for i, job in enumerate(jobs):
                    record = worker.verify_output(outdir, job.spec())
                    if record is not None:
                        results[i] = _from_record(job, "skipped", record)
                todo = [i for i in range(len(jobs)) if i not in results]
                if todo:
                    log(f"numpynst batch: {len(jobs)} jobs, {len(results)} already done, {len(todo)} to run "
                        f"-> {outdir}")
                    from .cluster import keep_blas_env
                    with keep_blas_env():
                        _run_on_dask(jobs, todo, results, outdir, client, workers=workers, scheduler=scheduler,
                                     gpu=gpu, retries=retries, backend=backend, task=task, progress=progress,
                                     log=log, scratch=scratch.path, guard=guard)
                else:
                    log(f"numpynst batch: all {len(jobs)} jobs already done in {outdir}")
        except KeyboardInterrupt as exc:        # before the jobs were submitted (the loop handles its own)
            guard.note(exc)
        # From here on a signal is only recorded: the report is written whatever arrives.
        if guard.signum is not None:
            for i, job in enumerate(jobs):
                if i not in results:
                    results[i] = _result(job, status="cancelled", error=f"interrupted ({signal_name(guard.signum)})")
        _recheck_cancelled(jobs, results, outdir)        # after the close: running jobs have stopped writing
        ordered = [results[i] for i in range(len(jobs))]
        written, problems = _write_report(outdir, scratch.path, jobs, ordered, contact_sheet)
    for line in problems:
        log(f"numpynst batch: {line}")
    log(summarize(ordered, time.perf_counter() - t0))
    return Results(ordered, guard.signum, written, problems)


def _write_report(outdir: Path, scratch: Path, jobs: Sequence[Job], ordered: Sequence[JobResult],
                  contact_sheet: bool) -> tuple[list[Path], list[str]]:
    """Write ``summary.csv`` (and the contact sheet) via the run's private folder.

    Returns the paths written and one line per file that could not be: a full disk or a file-size
    limit costs that file, never the other, and never a traceback."""
    from ..errors import NumpynstError
    from ..files import describe
    from .outdir import move_into
    from .report import CONTACT_SHEET, SUMMARY, report_is_ours, save_contact_sheet, write_summary
    rows = [r.as_dict() for r in ordered]
    steps = [(SUMMARY, lambda p: write_summary(p, rows))]
    if contact_sheet:
        steps.append((CONTACT_SHEET, lambda p: save_contact_sheet(p, jobs, rows, outdir)))
    written: list[Path] = []
    problems: list[str] = []
    for name, write in steps:
        try:
            if os.path.lexists(outdir / name) and not report_is_ours(outdir / name):   # appeared meanwhile
                raise FileExistsError("it appeared during the run and was not written by numpynst batch; "
                                      "not replaced")
            if write(scratch / name) is not None:
                written.append(move_into(scratch / name, outdir))
        except (OSError, NumpynstError) as exc:
            problems.append(f"could not write {short_path(outdir / name)}: {describe(exc)}"
                            + ("; the summary is written" if name == CONTACT_SHEET and not problems else ""))
    return written, problems


def _run_on_dask(jobs: Sequence[Job], todo: list[int], results: dict[int, JobResult], outdir: Path,
                 client, *, workers, scheduler, gpu, retries, backend, task, progress, log, scratch, guard) -> None:
    from .cluster import connect, has_dashboard, require_dask
    from .interrupts import signal_name
    distributed = require_dask()
    cluster = None
    own_client = client is None
    if own_client:
        client, cluster = connect(workers=workers, scheduler=scheduler, gpu=gpu, retries=retries)
    bar = None
    futures: dict[Any, int] = {}
    try:
        n_workers = len(client.scheduler_info().get("workers", {}))
        # A local cluster has a dashboard only with bokeh installed; a remote one may have its own.
        show = "dashboard" in client.scheduler_info().get("services", {}) and (cluster is None or has_dashboard())
        log(f"dask: {n_workers} workers at {client.scheduler.address}"
            + (f", dashboard {client.dashboard_link}" if show else ""))
        for i in todo:
            job = jobs[i]
            fut = client.submit(task, {**job.spec(), "scratch": str(scratch)}, str(outdir), backend,
                                key=f"numpynst-{job.output[:-4]}", retries=retries, pure=False)
            futures[fut] = i
        from tqdm.auto import tqdm
        bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), unit="job", disable=not progress,
                   dynamic_ncols=True)
        failed = 0
        keeper = _Keeper(client, cluster, log)
        for fut in _as_completed(client, list(futures), distributed, log, keeper=keeper):
            i = futures[fut]
            results[i] = _collect(jobs[i], fut, retries, distributed, keeper)
            failed += results[i].status == "failed"
            fut.release()
            bar.update(1)
            if failed:
                bar.set_postfix(failed=failed, refresh=False)
        pending = [f for f, i in futures.items() if i not in results]
        if pending:                     # the watchdog gave up: no worker came back
            client.cancel(pending)
            for f in pending:
                results[futures[f]] = _result(jobs[futures[f]], status="failed", error=_no_workers_error())
    except KeyboardInterrupt as exc:
        why = signal_name(guard.note(exc))
        if bar is not None:
            bar.close()
        pending = [f for f, i in futures.items() if i not in results]
        client.cancel(pending)
        for f in pending:
            results[futures[f]] = _result(jobs[futures[f]], status="cancelled", error=f"interrupted ({why})")
        log(f"numpynst batch: interrupted ({why}); cancelled {len(pending)} unfinished jobs, closing the cluster")
    finally:
        guard.armed = False             # closing the cluster is not cut short by a later signal
        if bar is not None:
            bar.close()
        if own_client:
            client.close()
            if cluster is not None:
                cluster.close()


NO_WORKERS_SECONDS = 180.0      # a cluster without any worker this long is not coming back
WORKER_CHECK_SECONDS = 5.0      # how often the worker count is asked while no result comes
REVIVE_SECONDS = 30.0           # a local worker missing this long is replaced by a new one


class _Keeper:
    """Keeps a local cluster this run started at its size.

    A nanny restarts its worker when the process dies, but not when it dies while the nanny is
    still starting it (a race in distributed: dask/distributed#7312, #6426): under load, with
    workers killed one after another, a local cluster can lose all its workers for good (found by
    benchmarks/soak.py). :meth:`check`, called while the batch waits, replaces every worker missing
    for :data:`REVIVE_SECONDS` with a new one; it returns how many workers there are now.
    Clusters the run did not start (``--scheduler``, a client) are left to their owner.
    """

    def __init__(self, client, cluster, log):
        self.client, self.cluster, self.log = client, cluster, log
        spec = getattr(cluster, "worker_spec", None)
        self.expected = len(spec) if isinstance(spec, dict) and spec else None
        self.short_since: float | None = None
        self.revived = 0

    def check(self) -> int:
        n = len(self.client.nthreads())
        if self.expected is None or n >= self.expected:
            self.short_since = None
            return n
        now = time.monotonic()
        if self.short_since is None:
            self.short_since = now
        elif now - self.short_since >= REVIVE_SECONDS:
            alive = {w.get("name") for w in self.client.scheduler_info().get("workers", {}).values()}
            dead = [name for name in list(self.cluster.worker_spec) if name not in alive]
            for name in dead:
                del self.cluster.worker_spec[name]
            self.cluster.scale(self.expected)           # closes the dead nannies, starts new ones
            self.revived += len(dead)
            self.short_since = None
            self.log(f"dask: {len(dead)} worker(s) died and did not come back; started new ones")
        return n


def _no_workers_error() -> str:
    return f"the cluster had no worker for {NO_WORKERS_SECONDS:g} s (all died or left), so the job could not run"


def _as_completed(client, futures: list, distributed, log, poll: float = 0.25,
                  keeper: _Keeper | None = None) -> Iterator:
    """The futures as they finish, like ``distributed.as_completed``, but never waiting for ever.

    Dask keeps a job queued while the cluster has no worker, in case one joins; a local cluster whose
    workers all died (and a scheduler nobody starts workers for) would leave the batch waiting for
    ever. Every :data:`WORKER_CHECK_SECONDS` without a result the worker count is asked; after
    :data:`NO_WORKERS_SECONDS` without any worker the iteration stops, leaving the rest unfinished.
    """
    ac = distributed.as_completed(futures)
    alone_since = None
    last_check = time.monotonic()
    while not ac.is_empty():
        if ac.has_ready():
            yield from ac.next_batch(block=False)
            if keeper is not None and time.monotonic() - last_check >= WORKER_CHECK_SECONDS:
                keeper.check()                  # results still come, but workers may be missing
                last_check = time.monotonic()
            continue
        time.sleep(poll)
        now = time.monotonic()
        if now - last_check < WORKER_CHECK_SECONDS:
            continue
        last_check = now
        if keeper is not None:
            keeper.check()
        if client.nthreads():
            alone_since = None
        elif alone_since is None:
            alone_since = now
            log(f"dask: no worker is connected to {client.scheduler.address}; waiting up to "
                f"{NO_WORKERS_SECONDS:g} s for one")
        elif now - alone_since > NO_WORKERS_SECONDS:
            log(f"numpynst batch: {_no_workers_error()}")
            return


def _recheck_cancelled(jobs: Sequence[Job], results: dict[int, JobResult], outdir: Path) -> None:
    # A job already running when Ctrl-C came may still finish its (atomic) writes; if its output
    # verifies, it is done, whatever the cancelled future says.
    from .worker import verify_output
    for i, r in results.items():
        if r.status == "cancelled":
            record = verify_output(outdir, jobs[i].spec())
            if record is not None:
                results[i] = _from_record(jobs[i], "done", record, seconds=record.get("seconds", 0.0))


def _collect(job: Job, fut, retries: int, distributed, keeper: _Keeper | None = None) -> JobResult:
    """The JobResult of a future that came back from the loop, Dask-level failures as one-line errors.

    Its status is not always "finished" or "error" by now: a finished job's row lives in its
    worker's memory until fetched, and if that worker dies first (a neighbour ran out of memory, was
    killed), Dask computes the job again. ``result()`` waits for that, so the job is not reported as
    failed for its neighbour's death. It waits while workers exist (and ``keeper`` replaces lost
    ones), but not for ever: after :data:`NO_WORKERS_SECONDS` without any worker the job fails.
    """
    import concurrent.futures
    if fut.status == "cancelled":
        return _result(job, status="cancelled", error="cancelled by the scheduler")
    alone_since = None
    try:
        while True:
            try:
                return _result(job, **fut.result(timeout=WORKER_CHECK_SECONDS))
            except (TimeoutError, distributed.TimeoutError):
                n = keeper.check() if keeper is not None else len(fut.client.nthreads())
                if n:
                    alone_since = None
                elif alone_since is None:
                    alone_since = time.monotonic()
                elif time.monotonic() - alone_since > NO_WORKERS_SECONDS:
                    return _result(job, status="failed", error=_no_workers_error())
    except concurrent.futures.CancelledError:
        return _result(job, status="cancelled", error="cancelled by the scheduler")
    except distributed.KilledWorker:
        msg = ("its worker process died while running it more often than the scheduler's allowed-failures "
               "(out of memory? killed?); gave up (KilledWorker)")
    except Exception as exc:                    # noqa: BLE001 -- raised by the task (MemoryError, ...)
        msg = f"{first_line(exc, with_type=True)} (after {retries} retries)"
    return _result(job, status="failed", error=msg)


def summarize(results: Sequence[JobResult], seconds: float | None = None) -> str:
    """One line: counts per status, and the throughput of the jobs run now."""
    counts = {s: sum(r.status == s for r in results) for s in STATUSES}
    text = f"{len(results)} jobs: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    if seconds is not None and counts["done"]:
        text += f" in {seconds:.1f} s ({60 * counts['done'] / seconds:.1f} jobs/min)"
    return text
