"""Reusable scratch buffers and chunk sizes for the fast paths. Speed only: nothing here changes a
result, so there is no textbook twin; every caller must agree with its own twin whatever the
chunk size (tests/test_conv_fast.py runs them with one-row chunks).

Why: a fresh multi-MiB NumPy array is a fresh ``mmap``; the kernel then zero-fills every page on
first touch, which on this project's benchmark machine costs as much as the copy that fills the
array. The im2col and Winograd paths need the same few scratch shapes over and over (one per chunk,
per layer, per iteration), so they take them from here: one flat buffer of bytes per name, grown
when a larger request comes, kept between calls, viewed as whatever dtype and shape is asked for.
Buffers are per thread (so concurrent convolutions in threads never share one) and per device
(NumPy, or the current CuPy device).

Names are roles, shared by every path ("tiles": im2col's columns or Winograd's V; "products": M;
"padded", "rowpass", ...): a thread runs one op at a time, so the im2col, F(2x2,3x3), F(4x4,3x3)
and mask paths can use the same buffers, and a thread holds the largest set any one op needs
rather than the sum of all of them (measured: 50 -> 25 MiB per worker thread on VGG19 at 512 px).

Nothing returned from here may escape to a caller of the conv functions: results are always fresh
arrays; scratch only holds intermediates that are dead by the time the conv returns.
"""

from __future__ import annotations

import threading
from typing import Any

from ...backend import get_xp

Array = Any

_local = threading.local()


def _key(ref: Array, name: str) -> tuple:
    device = getattr(getattr(ref, "device", None), "id", None)    # CuPy device id; None on NumPy
    return type(ref).__module__.split(".")[0], device, name


def scratch(ref: Array, name: str, shape: tuple[int, ...], dtype: Any) -> Array:
    """An uninitialised C-contiguous array of ``shape`` and ``dtype`` on ``ref``'s backend/device.

    The same ``name`` returns (a view of) the same memory on the next call in this thread, whatever
    the dtype: use one name per intermediate that must be alive at the same time as another.
    """
    xp = get_xp(ref)
    bufs = getattr(_local, "bufs", None)
    if bufs is None:
        bufs = _local.bufs = {}
    dtype = xp.dtype(dtype)
    size = 1
    for s in shape:
        size *= int(s)
    nbytes = size * dtype.itemsize
    key = _key(ref, name)
    buf = bufs.get(key)
    if buf is None or buf.size < nbytes:
        bufs[key] = None                 # drop the old one first: peak memory is one buffer, not two
        # whole float64s: the start of the allocation is aligned for every dtype viewed on it
        buf = bufs[key] = xp.empty(max(-(-nbytes // 8), 1), dtype=xp.float64).view(xp.uint8)
    return buf[:nbytes].view(dtype).reshape(shape)


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

