"""Run the independent chunks of a layer on every core: one Python thread per core, BLAS one-threaded.

Speed only: a chunk's result does not depend on which thread computes it, so every fast path that
uses :func:`run` still agrees with its textbook twin (tests/test_conv_fast.py, tests/test_parallel.py).

Why: NumPy's element-wise ufuncs run on one core; only the BLAS calls (``matmul``) use them all. In
the fast convolutions the element-wise part (Winograd's input/output transforms, the im2col gather,
bias, ReLU, the masks of the backward passes) is 40-75% of the time, so a 2-core machine idled one
core for most of an iteration. Here the chunks a path already makes (bands of rows, for cache reuse)
are handed to a pool of ``workers()`` threads instead, and each thread runs *everything* of its chunk
-- transforms and GEMMs -- while BLAS is held at one thread for as long as the pool works (OpenBLAS's
thread count is process-wide; ``openblas_set_num_threads_local`` turned out to set it for every
thread too), so the cores stay busy and none is over-subscribed. NumPy releases the GIL inside
ufuncs and BLAS calls on large arrays, so the threads really run in parallel; the Python between
calls is microseconds per multi-MiB chunk. Measured on the 2-core benchmark machine, F(4x4,3x3) on
VGG19's 512 px shapes: 1.3-1.9x faster (benchmarks/README.md, "CPU speed, second round"). While a
parallel region runs, BLAS calls from *other* threads of the process also run on one thread (slower,
never wrong); the count is restored when the last region ends.

When it stays serial (the chunks then run in order in the calling thread, exactly as before):

* CuPy arrays (a GPU runs each chunk's kernels itself; host threads would only add contention),
* a BLAS whose thread count cannot be read and set (not OpenBLAS), or one configured for one
  thread (``OPENBLAS_NUM_THREADS=1``, threadpoolctl, ...): the number of workers is the BLAS
  thread count, so whoever limits BLAS limits this too,
* a call made from one of the pool's own threads (no nested pools, no deadlock),
* fewer than two chunks.

Determinism: chunk boundaries depend only on the shapes, the chunk budget and the worker count, and
each chunk is computed the same way whichever thread takes it, so the same inputs on the same
machine with the same settings give bit-identical results.

Fork safety: a child process forked while the pool exists gets a fresh pool on first use (the
parent's threads do not exist in the child); one forked *during* a parallel region starts with BLAS
at one thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

from ...backend import get_xp

Array = Any

_lock = threading.Lock()
_state: dict = {"blas": None, "pool": None, "size": 0, "depth": 0, "saved": 1}
_local = threading.local()


def _openblas() -> tuple[Callable | None, Callable | None]:
    """``(set_num_threads, get_num_threads)`` of the OpenBLAS that NumPy loaded, or Nones.

    The library is found among the shared objects mapped into this process (NumPy's wheels ship
    their own, with prefixed symbol names), so this never loads a second copy.
    """
    paths = []
    try:
        with open("/proc/self/maps") as fh:
            for line in fh:
                path = line.rsplit(None, 1)[-1] if "/" in line else ""
                if "openblas" in os.path.basename(path).lower() and path not in paths:
                    paths.append(path)
    except OSError:
        return None, None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        fns = []
        for names in (("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                       "openblas_set_num_threads64_", "openblas_set_num_threads"),
                      ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
                       "openblas_get_num_threads64_", "openblas_get_num_threads")):
            fns.append(next((getattr(lib, n) for n in names if hasattr(lib, n)), None))
        set_, get = fns
        if set_ is not None and get is not None:
            set_.argtypes, set_.restype = [ctypes.c_int], None
            get.argtypes, get.restype = [], ctypes.c_int
            return set_, get
    return None, None


def _blas() -> tuple[Callable | None, Callable | None]:
    if _state["blas"] is None:       # called with NumPy arrays in hand: NumPy's BLAS is loaded
        _state["blas"] = _openblas()
    return _state["blas"]


def workers() -> int:
    """How many threads :func:`run` uses on NumPy arrays: the BLAS thread count (read when no
    parallel region is running), or 1 when BLAS is not an OpenBLAS this module can steer."""
    set_, get = _blas()
    if set_ is None:
        return 1
    with _lock:
        return max(1, _state["saved"] if _state["depth"] else int(get()))


def _init_worker() -> None:
    _local.in_pool = True


def _pool(n: int) -> ThreadPoolExecutor:
    with _lock:
        if _state["pool"] is None or _state["size"] != n:
            if _state["pool"] is not None:
                _state["pool"].shutdown(wait=False)
            _state["pool"] = ThreadPoolExecutor(n, thread_name_prefix="numpynst-chunk", initializer=_init_worker)
            _state["size"] = n
        return _state["pool"]


def _enter_single_blas() -> None:
    """BLAS to one thread while any parallel region runs (reference-counted over concurrent regions)."""
    set_, get = _blas()
    with _lock:
        if _state["depth"] == 0:
            _state["saved"] = int(get())
            set_(1)
        _state["depth"] += 1


def _exit_single_blas() -> None:
    set_, _ = _blas()
    with _lock:
        _state["depth"] -= 1
        if _state["depth"] == 0:
            set_(_state["saved"])


def _forget_pool() -> None:
    _state.update(pool=None, size=0, depth=0)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def parallel_for(ref: Array) -> int:
    """The number of threads a layer working on arrays like ``ref`` should split its work for:
    :func:`workers` on NumPy outside the pool, else 1."""
    if type(ref).__module__.split(".")[0] != "numpy" or getattr(_local, "in_pool", False):
        return 1
    return workers()


def run(ref: Array, fn: Callable[[Any], None], items: Sequence[Any]) -> None:
    """Call ``fn(item)`` for every item, in parallel when :func:`parallel_for` ``(ref) > 1``.

    ``fn`` must write disjoint parts of its outputs and take its scratch from
    :mod:`numpynst.layers.fast.workspace` (per-thread buffers). Returns when every call has finished;
    the first exception raised by a call is re-raised here, after the calls already running have
    ended and the ones not started are cancelled (so a Ctrl-C in the caller leaves no work behind).
    """
    n = parallel_for(ref)
    if n <= 1 or len(items) <= 1:
        # one chunk where a pool would run: BLAS at one thread as in the pool (one_blas_thread), so
        # that no BLAS thread wakes to spin beside the next layer's pool
        with one_blas_thread(ref) if n > 1 else contextlib.nullcontext():
            for item in items:
                fn(item)
        return
    pool = _pool(n)
    _enter_single_blas()
    try:
        futures = [pool.submit(fn, item) for item in items]
        try:
            for fut in futures:
                fut.result()
        except BaseException:
            for fut in futures:
                fut.cancel()
            for fut in futures:
                if not fut.cancelled():
                    try:
                        fut.result()
                    except BaseException:
                        pass
            raise
    finally:
        _exit_single_blas()


@contextlib.contextmanager
def one_blas_thread(ref: Array):
    """BLAS at one thread inside the block, as inside a parallel region (NumPy arrays, an OpenBLAS
    this module can steer; otherwise nothing changes). For the short BLAS calls *between* parallel
    regions (an optimiser's dot products): run multi-threaded, each wakes BLAS's own threads, which
    then spin for a while beside the pool's threads of the next layer, two threads per core."""
    if type(ref).__module__.split(".")[0] != "numpy" or _blas()[0] is None:
        yield
        return
    _enter_single_blas()
    try:
        yield
    finally:
        _exit_single_blas()


def rows_product(A: Array, B: Array, out: Array) -> Array:
    """``out = A @ B`` (``A`` ``(P, C)``, ``out`` ``(P, K)``), its bands of rows on the pool's threads
    (BLAS at one thread, see :func:`run`); one product where the work is serial (CuPy, one worker)."""
    xp = get_xp(A, B)
    n = min(parallel_for(A), A.shape[0])
    if n <= 1:
        return xp.matmul(A, B, out=out)
    bands = split(A.shape[0], -(-A.shape[0] // n), A)
    run(A, lambda band: xp.matmul(A[band[0]:band[1]], B, out=out[band[0]:band[1]]), bands)
    return out


def gram_rows(A: Array) -> Array:
    """``A^T A`` (``A`` ``(P, C)``) as the sum of its bands' ``A_b^T A_b`` (each a symmetric rank-k
    product: NumPy's ``syrk`` path), the bands on the pool's threads; one product where the work is
    serial. The order of the sum depends only on the shapes and the worker count (deterministic)."""
    n = min(parallel_for(A), A.shape[0])
    if n <= 1:
        return A.T @ A
    bands = split(A.shape[0], -(-A.shape[0] // n), A)
    parts: list = [None] * len(bands)

    def band(i: int) -> None:
        part = A[bands[i][0]:bands[i][1]]
        parts[i] = part.T @ part

    run(A, band, range(len(bands)))
    G = parts[0]
    for part in parts[1:]:
        G += part
    return G


def split(total: int, per_chunk: int, ref: Array) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``range(total)`` in near-equal chunks of at most ``per_chunk``,
    their number rounded up to a multiple of the worker count (so no thread idles at the end), but
    never more chunks than ``total``."""
    if total <= 0:
        return []
    k = -(-total // max(1, per_chunk))
    w = parallel_for(ref)
    k = min(total, -(-k // w) * w)
    bounds = [(i * total) // k for i in range(k + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(k)]
