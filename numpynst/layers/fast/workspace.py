"""Reusable scratch buffers and chunk sizes for the fast paths. Speed only: nothing here changes a
result, so there is no textbook twin; every caller must agree with its own twin whatever the
chunk size (tests/test_conv_fast.py runs them with one-row chunks).

Why: a fresh multi-MiB NumPy array is a fresh ``mmap``; the kernel then zero-fills every page on
first touch, which on this project's benchmark machine costs as much as the copy that fills the
array. The im2col and Winograd paths need the same few scratch shapes over and over (one per chunk,
per layer, per iteration), so they take them from here: one flat buffer per name, grown when a
larger request comes, kept between calls. Buffers are per thread (so concurrent convolutions in
threads never share one) and per device (NumPy, or the current CuPy device).

Nothing returned from here may escape to a caller of the conv functions: results are always fresh
arrays; scratch only holds intermediates that are dead by the time the conv returns.
"""

from __future__ import annotations

import threading
from typing import Any

from ...backend import get_xp

Array = Any

_local = threading.local()


def _key(ref: Array, name: str, dtype: Any) -> tuple:
    device = getattr(getattr(ref, "device", None), "id", None)    # CuPy device id; None on NumPy
    return type(ref).__module__.split(".")[0], device, name, str(dtype)


def scratch(ref: Array, name: str, shape: tuple[int, ...], dtype: Any) -> Array:
    """An uninitialised C-contiguous array of ``shape`` and ``dtype`` on ``ref``'s backend/device.

    The same ``name`` returns (a view of) the same memory on the next call in this thread: use one
    name per intermediate that must be alive at the same time as another.
    """
    xp = get_xp(ref)
    bufs = getattr(_local, "bufs", None)
    if bufs is None:
        bufs = _local.bufs = {}
    size = 1
    for s in shape:
        size *= int(s)
    key = _key(ref, name, dtype)
    buf = bufs.get(key)
    if buf is None or buf.size < size:
        bufs[key] = None                 # drop the old one first: peak memory is one buffer, not two
        buf = bufs[key] = xp.empty(max(size, 1), dtype=dtype)
    return buf[:size].reshape(shape)


# Chunk budgets are tuned for CPU caches (a few MiB). On a GPU every chunk costs a few dozen kernel
# launches, and its memory is plentiful and fast, so chunks there are this large instead (still a
# bound: the 9x im2col of a 1024 px VGG layer would otherwise take GiBs).
DEVICE_CHUNK_BYTES = 256 * 2 ** 20


def chunk_bytes(ref: Array, cpu_budget: int) -> int:
    """The scratch budget per chunk for arrays like ``ref``: ``cpu_budget`` on NumPy, else the larger
    of it and :data:`DEVICE_CHUNK_BYTES`."""
    return cpu_budget if get_xp(ref).__name__ == "numpy" else max(cpu_budget, DEVICE_CHUNK_BYTES)


def rows_per_chunk(ref: Array, rows: int, bytes_per_row: int, cpu_budget: int) -> int:
    """How many of ``rows`` (output rows, rows of tiles) to process per chunk so that a chunk's
    scratch, ``bytes_per_row`` per row, stays within :func:`chunk_bytes` ``(ref, cpu_budget)``;
    at least 1, at most ``rows``."""
    return max(1, min(rows, chunk_bytes(ref, cpu_budget) // max(bytes_per_row, 1)))


def workspace_bytes() -> int:
    """Bytes held by this thread's scratch buffers."""
    bufs = getattr(_local, "bufs", None) or {}
    return sum(int(b.nbytes) for b in bufs.values() if b is not None)


def clear_workspace() -> None:
    """Release this thread's scratch buffers (e.g. before a memory-hungry step)."""
    _local.bufs = {}

