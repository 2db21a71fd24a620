"""Where batch jobs run: a local Dask cluster sized to the machine, an existing one, or one per GPU.

**Sizing a local cluster.** A job is mostly BLAS matrix products (the convolutions are GEMMs), so
there are two ways to use the cores: more worker processes, each running one job at a time, or more
BLAS threads per job. Both at full width oversubscribe the cores and slow everything down. We start
``n_workers`` processes with **one Dask thread each** and give each ``cores // n_workers`` BLAS
threads, via ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and ``MKL_NUM_THREADS``.

These variables only work if they are set before NumPy's BLAS starts in the worker process, and a
Dask worker process has imported NumPy before it runs any of our code. So they go into the Dask
config key ``distributed.nanny.pre-spawn-environ``, which the nanny puts into the environment before
it spawns the worker process (Dask itself sets them to 1 there by default). They override the same
variables in the user's shell (choose ``--workers`` instead); :func:`blas_threads` reports what a
worker really got (through ``threadpoolctl`` when it is installed).

**Existing clusters.** ``scheduler="tcp://host:8786"`` connects to a cluster started elsewhere
(``dask scheduler`` and ``dask worker`` on each machine). Its workers must see the input and output
paths at the same place (a shared filesystem), and its retry policy (``allowed-failures``) is the
scheduler's own.

**GPUs.** ``gpu=True`` starts dask-cuda's ``LocalCUDACluster``: one worker per GPU, each pinned to
its device with ``CUDA_VISIBLE_DEVICES``, one job at a time, CuPy backend.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from typing import Any

from ..checks import first_line, integer
from ..errors import BackendError, OptionError

BLAS_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
MEMORY_PER_WORKER = 2 << 30         # a VGG19 job at 512 px peaks near 1.5 GB; keep room
MAX_WORKERS_PER_CORE = 4            # a local cluster never starts more processes than this per core


def require_dask():
    """Import ``distributed`` or raise a BackendError saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise BackendError("numpynst batch needs dask[distributed]: pip install 'numpynst[batch]'") from None
    return distributed


def has_dashboard() -> bool:
    """The Dask dashboard needs bokeh (without it the scheduler serves only a 'missing bokeh' page)."""
    return importlib.util.find_spec("bokeh") is not None


def available_cores() -> int:
    """CPU cores this process may use (respects taskset/cgroup affinity where the OS reports it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:                        # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _total_memory() -> int | None:
    try:
        import psutil                              # a dependency of distributed
        return int(psutil.virtual_memory().total)
    except Exception:                              # noqa: BLE001
        return None


def plan_local(workers: int | None = None, cores: int | None = None,
               memory: int | None = None) -> tuple[int, int]:
    """``(n_workers, blas_threads_per_worker)`` for a local cluster.

    Default ``n_workers``: one per core (a batch has many independent jobs, and one BLAS thread per
    process wastes nothing on synchronisation), but no more than memory allows at
    :data:`MEMORY_PER_WORKER` each. BLAS threads per worker: ``cores // n_workers`` (at least 1), so
    ``n_workers x blas_threads <= cores`` whenever ``n_workers <= cores``.
    """
    cores = available_cores() if cores is None else cores
    if workers is None:
        memory = _total_memory() if memory is None else memory
        by_memory = max(1, memory // MEMORY_PER_WORKER) if memory else cores
        workers = max(1, min(cores, by_memory))
    workers = integer("--workers", workers, minimum=None)
    if workers < 1:      # integer(minimum=1) would say "a positive integer"; the CLI's wording is ">= 1"
        raise OptionError(f"--workers must be an integer >= 1, got {workers!r}")
    if workers > MAX_WORKERS_PER_CORE * cores:
        raise OptionError(f"--workers {workers}: more than {MAX_WORKERS_PER_CORE} processes per core ({cores} "
                          f"cores here) would only fight over them, each holding a model in memory")
    return workers, max(1, cores // workers)


@contextlib.contextmanager
def keep_blas_env():
    """Restore this process's BLAS variables on exit.

    A nanny writes its pre-spawn variables into *this* process's environment each time it spawns a
    worker (also when it replaces a dead one); put the caller's back afterwards so that its later
    subprocesses are not affected.
    """
    saved = {k: os.environ.get(k) for k in BLAS_ENV}
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _scheduler_config(retries: int) -> dict[str, Any]:
    """Scheduler settings of the clusters we start.

    ``allowed-failures``: how many worker deaths a job may be present at before it is failed.
    ``worker-saturation`` 1.0: a worker is given a job only when its thread is free. Dask's default
    (1.1) queues a second job on a one-thread worker; if the first job kills the worker (out of
    memory), the queued one counts that death too, and an innocent job can fail with its neighbour.
    Jobs take seconds to hours, so there is nothing to gain from queueing them on a worker early.
    """
    return {"distributed.scheduler.allowed-failures": int(retries),
            "distributed.scheduler.worker-saturation": 1.0}


def local_cluster(n_workers: int, blas_threads: int, retries: int = 2, dashboard: bool = True):
    """Start a ``LocalCluster``: ``n_workers`` processes x 1 thread, ``blas_threads`` BLAS threads each.

    ``retries``: how many times a job may be on a worker that dies before it is declared failed
    (the scheduler's ``allowed-failures``).
    """
    require_dask()
    import dask
    from distributed import LocalCluster
    env = {k: str(blas_threads) for k in BLAS_ENV}
    config = {**_scheduler_config(retries),
              **{f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in env.items()}}
    # without a dashboard the scheduler still serves HTTP (health, metrics): on any free port, so that
    # two clusters on one machine do not warn about 8787
    address = ":8787" if dashboard and has_dashboard() else ":0"
    with dask.config.set(config), keep_blas_env():
        # Dask lets a variable already in this process's environment win over the config; ours must
        # win (the point is to not oversubscribe), so put them there for the time of the spawn.
        os.environ.update(env)
        # Dask's own log lines (a worker's heartbeat failing while a cancelled job still runs at
        # shutdown, a restarted worker) would reach the terminal as tracebacks; every job's fate is
        # in the summary, so only critical ones are shown.
        return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                            dashboard_address=address, env=env, preload=["numpynst.batch.worker"],
                            silence_logs=logging.CRITICAL)


def gpu_cluster(n_workers: int | None = None, retries: int = 2):
    """Start dask-cuda's ``LocalCUDACluster`` (one worker per GPU), or raise a BackendError saying why not."""
    require_dask()
    if importlib.util.find_spec("dask_cuda") is None:
        raise BackendError("--gpu needs dask-cuda (one worker per GPU): pip install dask-cuda; "
                           "or start GPU workers yourself and pass --scheduler")
    from ..backend import cupy_available
    ok, reason = cupy_available()
    if not ok:
        raise BackendError(f"--gpu: {reason}")
    import dask
    from dask_cuda import LocalCUDACluster
    kwargs: dict[str, Any] = {"threads_per_worker": 1, "preload": ["numpynst.batch.worker"]}
    if n_workers is not None:
        kwargs["n_workers"] = n_workers
    with dask.config.set(_scheduler_config(retries)):
        return LocalCUDACluster(**kwargs)


SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")


def check_address(address: Any) -> str:
    """``address`` if it reads as a Dask scheduler address ``[SCHEME://]HOST:PORT``; else OptionError.

    Checked before anything starts: Dask's own parser answers a typo with a ValueError, an
    AssertionError or a 20 s connection timeout, depending on the typo.
    """
    want = "expected a Dask scheduler address such as tcp://HOST:8786"
    if not isinstance(address, str):
        raise OptionError(f"--scheduler {address!r}: {want}")
    scheme, sep, rest = address.strip().partition("://")
    if not sep:
        scheme, rest = "tcp", address.strip()
    host, colon, port = rest.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host     # [IPv6]
    if scheme not in SCHEMES:
        raise OptionError(f"--scheduler {address!r}: unknown scheme {scheme!r} (use {', '.join(SCHEMES)}); {want}")
    if not colon or not host or any(c.isspace() or c in "/?#@" for c in host) \
            or not (port.isdigit() and len(port) <= 5) or not 0 < int(port) < 65536:
        raise OptionError(f"--scheduler {address!r}: {want}")
    return address.strip()


def connect(*, workers: int | None = None, scheduler: str | None = None, gpu: bool = False,
            retries: int = 2, dashboard: bool = True):
    """``(client, cluster_or_None)``: a Dask client on the requested cluster; close both when done."""
    distributed = require_dask()
    if scheduler:
        if workers is not None:
            raise OptionError("--workers cannot be combined with --scheduler (the cluster has its own workers)")
        address = check_address(scheduler)
        try:
            return distributed.Client(address, timeout="20s"), None
        except (OSError, TimeoutError, ValueError) as exc:
            raise BackendError(f"--scheduler {scheduler}: cannot connect ({first_line(exc)})") from None
    if gpu:
        cluster = gpu_cluster(workers, retries)
    else:
        n, blas = plan_local(workers)
        cluster = local_cluster(n, blas, retries, dashboard)
    try:
        return distributed.Client(cluster), cluster
    except BaseException:
        cluster.close()
        raise


def blas_threads() -> dict[str, Any]:
    """What BLAS threading this process has: threadpoolctl's report if installed, else the env vars."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {"source": "environment", **{k: os.environ.get(k) for k in BLAS_ENV}}
    return {"source": "threadpoolctl",
            "pools": [(p.get("internal_api"), p.get("num_threads")) for p in threadpool_info()]}
