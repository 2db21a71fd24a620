"""Branch-free masked selection: ``where(mask, a, 0)`` at memory speed on the CPU.

The ReLU and max-pool backward passes keep ``a`` where a boolean mask holds and write zero
elsewhere. NumPy's ``where``/``copyto(where=)`` branch per element; with a mask that is true about
half the time in no pattern (a ReLU's or a pooling window's), the CPU mispredicts every other
element and those calls ran at ~0.3 GB/s on the benchmark machine, 10x slower than a multiply.
Multiplying by the mask is branch-free but not the same function: ``NaN * 0`` and ``inf * 0`` are
NaN, so a NaN behind a dead unit would leak into the gradient.

Here the selection is done on the bit patterns instead::

    m    = mask as unsigned ints, negated:  true -> 0xFF..FF, false -> 0   (two's-complement wrap)
    out  = bits(a) & m                      true -> a exactly, false -> +0.0

which is exactly ``where(mask, a, 0)`` (NaN and inf included) with no branch. On CuPy arrays
``where`` is already one branch-free kernel, so it is used as is.

The chunks run on every core (:mod:`numpynst.layers.fast.parallel`); each writes its own rows.

Textbook twins, which every function here must equal bit for bit (tests/test_masking.py):
:func:`select` is ``xp.where(mask, a, 0)``, :func:`select_positive` ``xp.where(key > 0, a, 0)``
(:func:`numpynst.layers.relu.relu_backward_naive`), :func:`update` ``xp.copyto(out, a, where=mask)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...backend import get_xp
from . import parallel
from .workspace import scratch

Array = Any

_UINT = {2: np.uint16, 4: np.uint32, 8: np.uint64}

# Elements per chunk: the all-ones mask of a chunk lives in a reused scratch buffer (4 MiB at
# float32) instead of a fresh array the size of the activation. A fresh 64 MiB array (a 512 px
# block1 activation) costs ~16k first-touch page faults, which took longer than the select itself
# on the benchmark machine (see benchmarks/README.md).
CHUNK_ELEMENTS = 2 ** 20


def row_blocks(shape: tuple[int, ...]):
    """Index tuples that split an array of ``shape`` into blocks of about CHUNK_ELEMENTS elements,
    along its third-from-last axis (rows of an ``(N, H, W, C)`` activation); one block if ndim < 3."""
    if len(shape) < 3:
        yield (Ellipsis,)
        return
    row = max(1, int(np.prod(shape[-2:], dtype=np.int64)))
    step = max(1, CHUNK_ELEMENTS // row)
    for lead in np.ndindex(*shape[:-3]):
        for r0 in range(0, shape[-3], step):
            yield lead + (slice(r0, r0 + step),)


def _numpy_float(xp, a: Array) -> bool:
    return xp is np and a.dtype.kind == "f" and a.dtype.itemsize in _UINT


def select(mask: Array, a: Array, out: Array | None = None) -> Array:
    """``where(mask, a, 0)``: ``a`` where ``mask`` is true, ``+0.0`` elsewhere.

    Args:
        mask: boolean array of ``a``'s shape.
        a: float array (float16/32/64).
        out: optional array of ``a``'s shape and dtype to write into (may be ``a``, may be strided).
    Returns:
        the selected array (``out`` when given), ``a``'s dtype.
    """
    return _select(lambda idx: mask[idx], a, out)


def select_positive(key: Array, a: Array, out: Array | None = None) -> Array:
    """``where(key > 0, a, 0)`` (ReLU's backward with ``key`` the forward output), computing the mask
    chunk by chunk: no boolean array of the full size either."""
    xp = get_xp(key, a)
    if not _numpy_float(xp, a):
        return _select(lambda idx: key[idx] > 0, a, out)
    return _select(lambda idx: np.greater(key[idx], 0, out=scratch(a, "padded", key[idx].shape, bool)),
                   a, out)


def _select(mask_of, a: Array, out: Array | None) -> Array:
    xp = get_xp(a)
    if not _numpy_float(xp, a):
        res = xp.where(mask_of((Ellipsis,)), a, xp.zeros((), dtype=a.dtype))
        if out is None:
            return res
        xp.copyto(out, res)
        return out
    uint = _UINT[a.dtype.itemsize]
    if out is None:
        out = np.empty(a.shape, dtype=a.dtype)
    # a view with an equal-size dtype reinterprets the bits in place, whatever the strides
    ab, ob = a.view(uint), out.view(uint)
    parallel.run(a, lambda idx: np.bitwise_and(ab[idx], _all_ones_where(mask_of(idx), uint), out=ob[idx]),
                 list(row_blocks(a.shape)))
    return out


def _all_ones_where(mask: Array, uint: type) -> Array:
    """``0xFF..FF`` where ``mask`` is true, ``0`` elsewhere, as ``uint`` (in a reused scratch buffer,
    valid until the next call)."""
    m = scratch(mask, "tiles", mask.shape, uint)
    np.copyto(m, mask)                    # bool -> 0/1
    np.negative(m, out=m)                 # unsigned wrap-around: 1 -> 2**bits - 1, 0 -> 0
    return m


def update(mask: Array, a: Array, out: Array) -> Array:
    """``out[mask] = a[mask]`` in place (``copyto(out, a, where=mask)``), branch-free on NumPy.

    With ``m`` all-ones where ``mask`` holds: ``out ^= (a ^ out) & m`` (bits of ``a`` where ``m``,
    ``out``'s own bits elsewhere; NaN payloads included). ``a`` and ``out`` share a float dtype.
    """
    xp = get_xp(mask, a, out)
    if not _numpy_float(xp, out) or out.dtype != a.dtype:
        xp.copyto(out, a, where=mask)
        return out
    uint = _UINT[out.dtype.itemsize]
    ab, ob = a.view(uint), out.view(uint)

    def chunk(idx: tuple) -> None:
        o = ob[idx]
        t = scratch(out, "products", o.shape, uint)
        np.bitwise_xor(ab[idx], o, out=t)
        np.bitwise_and(t, _all_ones_where(mask[idx], uint), out=t)
        np.bitwise_xor(o, t, out=o)

    parallel.run(out, chunk, list(row_blocks(out.shape)))
    return out
