"""Count NumPy's array-data allocations: a small NEP 49 allocation hook installed with ctypes.

NumPy (>= 1.22) asks a *data memory handler* for every array buffer it allocates. This module
builds a handler whose ``malloc``/``calloc``/``realloc``/``free`` call the C library's and also
count (number of allocations and their bytes), and installs it with ``PyDataMem_SetHandler``
(entry 304 of NumPy's C-API table, read from the ``_ARRAY_API`` capsule: no compiler needed).
The handler is a context variable: it applies to the arrays created while it is set, in this
thread (NumPy's BLAS threads do not allocate array data). A buffer allocated under the handler
is freed through it, whenever that happens.

    with AllocationCounter() as count:
        ...                           # NumPy work
    count.calls, count.bytes, count.large(threshold)

The callbacks run Python code per allocation (a few microseconds): use it for counting, not
while timing. For benchmarks only (benchmarks/end_to_end.py); NumPy only (CuPy has its own pool).
"""

from __future__ import annotations

import ctypes

import numpy as np

_API_INDEX_SET_HANDLER = 304        # numpy/_core/include/numpy/__multiarray_api.h (NumPy 1.22 .. 2.x)

_MALLOC = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_CALLOC = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t)
_REALLOC = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_FREE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)


class _Allocator(ctypes.Structure):
    _fields_ = [("ctx", ctypes.c_void_p), ("malloc", _MALLOC), ("calloc", _CALLOC),
                ("realloc", _REALLOC), ("free", _FREE)]


class _Handler(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char * 127), ("version", ctypes.c_uint8), ("allocator", _Allocator)]


def _set_handler_function():
    from numpy._core import _multiarray_umath as mu
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype = ctypes.c_void_p
    get.argtypes = [ctypes.py_object, ctypes.c_char_p]
    table = ctypes.cast(get(mu._ARRAY_API, None), ctypes.POINTER(ctypes.c_void_p))
    fn = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.py_object)(table[_API_INDEX_SET_HANDLER])
    return fn


class AllocationCounter:
    """Counts NumPy data allocations made inside ``with``: ``calls``, ``bytes`` and ``sizes`` (the
    size of each, in order). :meth:`reset` starts the counts again (the handler stays)."""

    def __init__(self):
        libc = ctypes.CDLL(None)
        self._libc_malloc = libc.malloc
        self._libc_malloc.restype, self._libc_malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
        self._libc_calloc = libc.calloc
        self._libc_calloc.restype, self._libc_calloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t, ctypes.c_size_t]
        self._libc_realloc = libc.realloc
        self._libc_realloc.restype = ctypes.c_void_p
        self._libc_realloc.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        self._libc_free = libc.free
        self._libc_free.restype, self._libc_free.argtypes = None, [ctypes.c_void_p]
        self.reset()
        # the callbacks must outlive every buffer they allocated: kept on the instance, and the
        # instance on the module (_KEEP) since NumPy may free such buffers after the with-block
        self._cb = (_MALLOC(self._malloc), _CALLOC(self._calloc), _REALLOC(self._realloc), _FREE(self._free))
        self._handler = _Handler(b"numpynst_alloc_count", 1, _Allocator(None, *self._cb))
        pycapsule_new = ctypes.pythonapi.PyCapsule_New
        pycapsule_new.restype = ctypes.py_object
        pycapsule_new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
        self._capsule = pycapsule_new(ctypes.addressof(self._handler), b"mem_handler", None)
        self._previous = None
        _KEEP.append(self)

    def reset(self) -> None:
        self.calls, self.bytes, self.sizes = 0, 0, []

    def large(self, threshold: int) -> int:
        """How many of the counted allocations had at least ``threshold`` bytes."""
        return sum(1 for s in self.sizes if s >= threshold)

    def _note(self, size: int) -> None:
        self.calls += 1
        self.bytes += size
        self.sizes.append(size)

    def _malloc(self, ctx, size):
        self._note(size)
        return self._libc_malloc(max(size, 1))

    def _calloc(self, ctx, nelem, elsize):
        self._note(nelem * elsize)
        return self._libc_calloc(max(nelem, 1), max(elsize, 1))

    def _realloc(self, ctx, ptr, size):
        self._note(size)
        return self._libc_realloc(ptr, max(size, 1))

    def _free(self, ctx, ptr, size):
        self._libc_free(ptr)

    def __enter__(self) -> "AllocationCounter":
        self._previous = _set_handler_function()(self._capsule)
        return self

    def __exit__(self, *exc) -> None:
        _set_handler_function()(self._previous)


_KEEP: list = []


def self_check() -> None:
    """Raise unless the hook sees a known allocation (a 1 MiB array) exactly once (the scalar 1.0
    becomes a small 0-d array of its own)."""
    with AllocationCounter() as c:
        a = np.empty(1 << 17)          # 1 MiB of float64
        a[:] = 1.0
    del a
    if c.large(1 << 20) != 1 or [s for s in c.sizes if s >= 1 << 20] != [1 << 20]:
        raise RuntimeError(f"allocation hook self-check failed: sizes seen {c.sizes}")


if __name__ == "__main__":
    self_check()
    print("allocation hook works: one 1 MiB array counted once")
