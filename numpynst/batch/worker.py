"""What runs on a Dask worker for one batch job, and how a finished job is recognised.

:func:`execute_job` is the task: it takes the job's plain-data spec (see
:meth:`numpynst.batch.jobs.Job.spec`), stylizes with :func:`numpynst.transfer.stylize`, writes the
image and then its JSON sidecar, each atomically, and returns one summary row. The run's plan line
(sizes, whole or tiled, estimated time) and its correction go to the ``numpynst.batch`` log at INFO.

**One model per worker, not per job.** Reading and converting VGG19 costs seconds and ~80 MB, far
more than a small job. Models are kept in a module-level pool in the worker process, keyed by
``(weights file, backend, pooling, dtype)``. A :class:`~numpynst.vgg.VGG` keeps the forward pass's
caches for its backward pass, so one model must never serve two jobs at once: a job *takes* an idle
model from the pool (loading one only if none is idle) and puts it back when done. With one Dask
thread per worker, the usual setup, that is exactly one load per worker per model key.

**Done means verified.** The sidecar records the job's digest and the image's SHA-256.
:func:`verify_output` accepts an output only if the sidecar parses, names the same digest and the
image's bytes hash to the recorded value; anything less (no sidecar, no image, other bytes) and the
job runs again. :func:`publish` writes both complete in the run's private folder, then moves the
sidecar into OUTDIR and the image after it: a killed worker leaves at most a sidecar without its
image (not done) and temporaries in the private folder (removed by the client), never an image
without its record, nor a truncated image under the final name.

**Exactly once.** A finished job's result lives in its worker's memory until the client fetches
it; if that worker dies first, Dask runs the job again; and a worker the scheduler gave up on may
still be running a job when its copy starts elsewhere. :func:`execute_job` therefore takes the
job's lock (:func:`_claim`) and then verifies the job's output: one that verifies is returned as
done, without computing or writing anything again (benchmarks/soak.py counts the publications:
one per job under random kills).

**Failures.** Any exception from the job (a corrupt image, a bad option value) is caught and reported
as ``status="failed"`` with a one-line message: running it again would fail the same way, so Dask
must not retry it. A worker *process* dying is different; Dask's scheduler reschedules that job.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import traceback
from pathlib import Path

import numpy as np

from ..checks import first_line
from ..errors import NumpynstError
from ..files import atomic_write, file_digest, open_regular, regular_file
from ..model_cache import acquire_model, clear_models, model_loads, release_model  # noqa: F401 (API)

log = logging.getLogger("numpynst.batch")

_MODEL_OPTIONS = ("weights", "pooling")
_MAX_SIDECAR = 1 << 20                  # a sidecar is ~1 KB; read no more than this of one


def _worker_name() -> str:
    try:
        from distributed import get_worker
        return get_worker().address
    except (ImportError, ValueError):          # not inside a Dask worker (a plain call)
        return f"{socket.gethostname()}:{os.getpid()}"


def execute_job(spec: dict, outdir: str, backend: str = "numpy") -> dict:
    """Run one job on this process; write ``outdir/spec["output"]`` and its sidecar; return a summary row.

    The row has ``job, status ("done" | "failed"), J_final, seconds, worker, output, error, stopped,
    iterations``. Only errors of the job itself are caught; ``MemoryError`` and
    ``KeyboardInterrupt`` propagate so Dask's ``retries`` and the client can act on them.
    """
    t0 = time.perf_counter()
    worker = _worker_name()
    row = {"job": spec["name"], "status": "failed", "J_final": None, "seconds": 0.0, "worker": worker,
           "output": "", "error": "", "stopped": "", "iterations": 0}
    opts = dict(spec["options"])
    model_opts = {k: opts.pop(k) for k in _MODEL_OPTIONS if k in opts}
    with _claim(spec):
        record = verify_output(outdir, spec)
        if record is not None:      # done already: Dask ran a finished job again (module docstring)
            row.update(status="done", J_final=record.get("J_final"), output=spec["output"],
                       stopped=record.get("stopped", ""), iterations=record.get("iterations", 0))
            row["seconds"] = round(time.perf_counter() - t0, 3)
            return row
        return _execute(spec, outdir, backend, row, opts, model_opts, t0)


def _execute(spec: dict, outdir: str, backend: str, row: dict, opts: dict, model_opts: dict, t0: float) -> dict:
    """The body of :func:`execute_job`, with the job claimed and not done yet."""
    from .. import transfer  # looked up by name: tests may substitute stylize
    key = model = None
    try:
        key, model = acquire_model(model_opts.get("weights"), backend, model_opts.get("pooling", "max"))
        result = transfer.stylize(spec["content"], spec["styles"], model=model, backend=backend,
                                  progress=False, on_plan=lambda line: log.info("numpynst batch job %s: %s",
                                                                                spec["name"], line), **opts)
        if result.stopped == "interrupted":      # half-optimised: must not pass for a finished job
            row.update(status="cancelled", error="interrupted on the worker")
            return row
        J = [float(v) for v in result.history["J"][result.scale_starts[-1]:]]   # the full-size scale's
        finite = [v for v in J if np.isfinite(v)]
        record = {"digest": spec["digest"], "job": spec["name"], "content": spec["content"],
                  "styles": spec["styles"], "options": spec["options"], "backend": backend,
                  "J_start": J[0] if J else None, "J_final": min(finite) if finite else None,
                  "iterations": int(result.iterations), "stopped": result.stopped,
                  "seconds": round(time.perf_counter() - t0, 3), "worker": row["worker"], "pid": os.getpid(),
                  "image": spec["output"]}
        publish(result.image, record, spec, outdir)
        row.update(status="done", J_final=record["J_final"], output=spec["output"], stopped=result.stopped,
                   iterations=record["iterations"])
        if result.stopped == "non-finite loss":
            row["error"] = "the loss became NaN/inf; saved the last finite image (lower lr or the weights)"
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:                  # noqa: BLE001  -- one bad job must not stop the batch
        row["error"] = first_line(exc, with_type=not isinstance(exc, NumpynstError))
        if isinstance(exc, NumpynstError):     # the user's input: the one line says it all
            log.info("numpynst batch job %s failed: %s", spec["name"], row["error"])
        else:                                  # a bug: keep the traceback in the worker's log
            log.warning("numpynst batch job %s failed:\n%s", spec["name"], traceback.format_exc())
    finally:
        if model is not None:
            release_model(key, model)
    row["seconds"] = round(time.perf_counter() - t0, 3)
    return row


@contextlib.contextmanager
def _claim(spec: dict):
    """Hold the job's lock (``flock`` on ``<output>.lock`` in the run's private folder) while it runs.

    Dask may run one job twice at once: a worker the scheduler gave up on (missed heartbeats under
    load) can still be running it when its copy starts elsewhere. The lock makes the second wait
    for the first, then find its verified output. The kernel drops the lock when its holder dies
    (SIGKILL included), so a killed attempt never blocks the next. Without a private folder (a plain
    call) or ``fcntl`` (Windows), nothing is locked."""
    scratch = spec.get("scratch")
    try:
        import fcntl
    except ImportError:
        fcntl = None
    if not scratch or fcntl is None:
        yield
        return
    fd = os.open(Path(scratch) / (spec["output"] + ".lock"), os.O_CREAT | os.O_RDWR | getattr(os, "O_CLOEXEC", 0),
                 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)                          # closing the only descriptor releases the lock


def publish(image, record: dict, spec: dict, outdir: str | os.PathLike) -> None:
    """Put a finished job's image and sidecar into ``outdir`` so that no reader sees the image alone.

    Both are written complete into the run's private folder (``spec["scratch"]``; a fresh one when
    called without it): the image by :func:`~numpynst.image.save_image`, which decodes it back
    before keeping it, then its SHA-256 goes into the sidecar. Then the *sidecar* is moved into
    ``outdir``, then the image (:func:`~numpynst.batch.outdir.move_into`). A process killed between
    the two leaves a sidecar without its image, which :func:`verify_output` reads as "not done"; an
    image in ``outdir`` always has the record that verifies it.
    """
    from ..image import save_image
    from .outdir import Scratch, move_into
    scratch = spec.get("scratch")
    with contextlib.nullcontext(None) if scratch else Scratch(outdir) as own:
        folder = Path(scratch) if scratch else own.path
        img = save_image(folder / spec["output"], image)
        record = {**record, "image_sha256": file_digest(img)}
        side = atomic_write(folder / spec["sidecar"],
                            lambda tmp: tmp.write_text(json.dumps(record, indent=1, default=str) + "\n"))
        move_into(side, outdir)
        move_into(img, outdir)


def dask_setup(worker) -> None:
    """Dask preload hook (``preload=["numpynst.batch.worker"]``), run in each new worker process.

    A local cluster's worker processes share the terminal's process group, so Ctrl-C reaches them as
    well as the client. The client is the one that handles it (cancel, close the cluster, summary);
    workers that also died of it would only print tracebacks. So local workers ignore SIGINT.
    """
    import signal
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def verify_output(outdir: str | os.PathLike, spec: dict) -> dict | None:
    """The sidecar record if ``spec``'s output is complete and intact, else ``None``.

    Complete and intact: the sidecar parses, names the same digest and image, and the image file's
    SHA-256 equals the one recorded when it was written.
    """
    side = Path(outdir) / spec["sidecar"]
    img = Path(outdir) / spec["output"]
    try:                        # regular files only: a FIFO under either name must not block us
        with open_regular(side, "sidecar", error=ValueError) as fh:
            record = json.loads(fh.read(_MAX_SIDECAR))
        if not isinstance(record, dict) or record.get("digest") != spec["digest"] \
                or record.get("image") != spec["output"]:
            return None
        regular_file(img, "image", error=ValueError)
        return record if file_digest(img) == record.get("image_sha256") else None
    except (OSError, ValueError, RecursionError):
        return None
