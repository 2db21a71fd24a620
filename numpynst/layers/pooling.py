"""Max and average pooling over ``size x size`` windows, forward and backward.

Shapes: ``x (N, H, W, C) -> out (N, Ho, Wo, C)`` with ``Ho = (H - size) // stride + 1`` (floor mode:
a remainder row or column that does not fill a window is dropped and receives zero gradient).

Max pooling::

    out[n, i, j, c] = max_{p, q < size} x[n, i*s + p, j*s + q, c]
    dx[n, i*s + p*, j*s + q*, c] += dout[n, i, j, c]     at the arg-max (p*, q*) only

**Tie rule.** When several entries of a window share the maximum, the whole gradient goes to the
*first* of them in row-major order (smallest ``p``, then smallest ``q``), as PyTorch and cuDNN do.
The function is not differentiable at a tie, so any subgradient is valid; picking one keeps
``sum(dx) == sum(dout)`` (gradient is routed, never duplicated).

Average pooling::

    out[n, i, j, c] = 1/size^2 * sum_{p, q} x[n, i*s + p, j*s + q, c]
    dx[n, i*s + p, j*s + q, c] += dout[n, i, j, c] / size^2          for every (p, q)

The ops (:func:`maxpool_forward`, :func:`maxpool_backward`, :func:`avgpool_forward`,
:func:`avgpool_backward`) are written as a loop over the ``size*size`` window offsets, each touching
one strided slice of the input: no reshapes that need ``H % size == 0``, overlapping windows
(stride < size) work, and the same code runs on CuPy (every ``+=`` writes distinct elements). Max
pooling also selects with branch-free bit masks (:mod:`numpynst.layers.fast.masking`) and, on
CuPy, runs as one CUDA kernel (:mod:`numpynst.layers.fast.cuda_kernels`).

Each has a naive twin beside it (``*_naive``) that loops over output positions, one window at a
time, and reads like the formulas above; tests/test_layers.py checks that the two agree.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ..backend import get_xp
from ..checks import integer
from .fast import cuda_kernels, masking, parallel
from .geometry import output_size

Array = Any


class MaxPoolCache(NamedTuple):
    x_shape: tuple[int, int, int, int]
    argmax: Array        # (N, Ho, Wo, C) uint8: window offset p*size + q of the (first) maximum
    size: int
    stride: int


class AvgPoolCache(NamedTuple):
    x_shape: tuple[int, int, int, int]
    size: int
    stride: int


def _check(x: Array, size: int, stride: int, name: str) -> tuple[int, int, int, int]:
    """``(size, stride, Ho, Wo)``, size and stride as ints; ``ValueError`` naming the shapes when
    ``x`` cannot be pooled so."""
    if getattr(x, "ndim", None) != 4:
        raise ValueError(f"{name}: x must be 4-D (N, H, W, C), got shape {getattr(x, 'shape', None)}")
    size = integer(f"{name}: size", size, error=ValueError)
    stride = integer(f"{name}: stride", stride, error=ValueError)
    if size > 255:                   # the arg-max offset p*size + q is stored as uint8
        raise ValueError(f"{name}: size must be <= 255, got {size}")
    h, w = x.shape[1:3]
    if size > h or size > w:
        raise ValueError(f"{name}: window {size}x{size} is larger than the input {h}x{w} "
                         f"(x.shape={tuple(x.shape)})")
    return size, stride, output_size(h, size, stride), output_size(w, size, stride)


def _window(a: Array, p: int, q: int, ho: int, wo: int, stride: int) -> Array:
    """The strided view ``a[:, i*s + p, j*s + q, :]`` for all output positions ``(i, j)``."""
    return a[:, p:p + stride * (ho - 1) + 1:stride, q:q + stride * (wo - 1) + 1:stride, :]


def maxpool_forward(x: Array, size: int = 2, stride: int = 2) -> tuple[Array, MaxPoolCache]:
    """Max pooling (floor mode, first-maximum tie rule). Returns ``(out, cache)``."""
    size, stride, ho, wo = _check(x, size, stride, "maxpool_forward")
    if cuda_kernels.supports(x):            # CuPy: one kernel, same scan order and tie rule
        out, argmax = cuda_kernels.maxpool_forward(x, size, stride)
        return out, MaxPoolCache(tuple(x.shape), argmax, size, stride)
    xp = get_xp(x)
    n, _, _, c = x.shape
    out = xp.empty((n, ho, wo, c), dtype=x.dtype)
    argmax = xp.empty(out.shape, dtype=xp.uint8)

    def rows(span: tuple[int, int]) -> None:
        i0, i1 = span
        xs = x[:, i0 * stride:(i1 - 1) * stride + size]            # the input rows these windows read
        o, am = out[:, i0:i1], argmax[:, i0:i1]
        o[...] = _window(xs, 0, 0, i1 - i0, wo, stride)
        am[...] = 0
        for k in range(1, size * size):
            p, q = divmod(k, size)
            v = _window(xs, p, q, i1 - i0, wo, stride)
            # Strictly greater: on a tie the earlier offset keeps the argmax (the documented rule), and
            # a NaN never takes over. o = better ? v : o (masking.update) and am = better ? k : am
            # (arithmetic on 0/1) avoid copyto(where=) and am[better] = k: those branch per element
            # (~50% mispredicted on real activations, 10x slower on the CPU), and boolean-mask
            # assignment makes CuPy count the mask's True entries on the host.
            better = v > o
            masking.update(better, v, o)
            xp.multiply(am, ~better, out=am)
            am += better.view(xp.uint8) * xp.uint8(k)

    # Bands of output rows on every core (each band writes its own rows of out and argmax).
    parallel.run(x, rows, parallel.split(ho, _band_rows(out), x))
    return out, MaxPoolCache(tuple(x.shape), argmax, size, stride)


def _band_rows(out: Array) -> int:
    """Output rows per band: about ``masking.CHUNK_ELEMENTS`` elements (a few MiB, cache-sized)."""
    return max(1, masking.CHUNK_ELEMENTS // max(1, out.shape[0] * out.shape[2] * out.shape[3]))


def maxpool_backward(dout: Array, cache: MaxPoolCache) -> Array:
    """Route each ``dout`` entry to the (first) arg-max of its window; zeros elsewhere."""
    x_shape, argmax, size, stride = cache
    if tuple(dout.shape) != tuple(argmax.shape):
        raise ValueError(f"maxpool_backward: dout.shape={tuple(dout.shape)} != forward output "
                         f"shape {tuple(argmax.shape)}")
    if cuda_kernels.supports(dout):         # CuPy: one gather kernel, no atomics
        return cuda_kernels.maxpool_backward(dout, argmax, x_shape, size, stride)
    xp = get_xp(dout, argmax)
    ho, wo = argmax.shape[1:3]
    if stride < size:                # overlapping windows: one pass per offset, adding
        dx = xp.zeros(x_shape, dtype=dout.dtype)
        for k in range(size * size):
            p, q = divmod(k, size)
            _window(dx, p, q, ho, wo, stride)[...] += masking.select(argmax == k, dout)
        return dx
    # Disjoint windows (VGG's 2x2/2): every x element is in at most one window, so a band of output
    # rows owns the x rows [i0*stride, i1*stride) (the last band: to the bottom edge). Each band
    # zeroes its own rows, then writes each offset's selected values: no zero-filled fresh array
    # (first-touch page faults), no +=, and the bands run on every core.
    dx = xp.empty(x_shape, dtype=dout.dtype)

    def rows(span: tuple[int, int]) -> None:
        i0, i1 = span
        dxs = dx[:, i0 * stride:(i1 * stride if i1 < ho else x_shape[1])]
        dxs[...] = 0
        for k in range(size * size):
            p, q = divmod(k, size)
            masking.select(argmax[:, i0:i1] == k, dout[:, i0:i1], out=_window(dxs, p, q, i1 - i0, wo, stride))

    parallel.run(dout, rows, parallel.split(ho, _band_rows(dout), dout))
    return dx


def _pool_naive(x: Array, size: int, stride: int, name: str, reduce: str) -> Array:
    """``out[:, i, j, :] = window.<reduce>(axis=(1, 2))`` for each window, one at a time."""
    size, stride, ho, wo = _check(x, size, stride, name)
    out = get_xp(x).empty((x.shape[0], ho, wo, x.shape[3]), dtype=x.dtype)
    for i in range(ho):
        for j in range(wo):
            window = x[:, i * stride:i * stride + size, j * stride:j * stride + size, :]
            out[:, i, j, :] = getattr(window, reduce)(axis=(1, 2))
    return out


def maxpool_forward_naive(x: Array, size: int = 2, stride: int = 2) -> Array:
    """Reference max pooling, one window at a time (first maximum wins); forward output only."""
    return _pool_naive(x, size, stride, "maxpool_forward_naive", "max")


def maxpool_backward_naive(dout: Array, x: Array, size: int = 2, stride: int = 2) -> Array:
    """Reference for :func:`maxpool_backward`, one window at a time: ``dout[n, i, j, c]`` goes to the
    first maximum of its window of ``x`` in row-major order (the tie rule), zeros elsewhere.

    Takes the forward input ``x`` rather than a cache, so that it finds each arg-max itself instead
    of trusting the one :func:`maxpool_forward` recorded. (NaN: ``argmax`` takes the first NaN.)
    """
    size, stride, ho, wo = _check(x, size, stride, "maxpool_backward_naive")
    xp = get_xp(dout, x)
    n, _, _, c = x.shape
    dx = xp.zeros(x.shape, dtype=dout.dtype)
    for i in range(ho):
        for j in range(wo):
            window = x[:, i * stride:i * stride + size, j * stride:j * stride + size, :]
            first = window.reshape(n, size * size, c).argmax(axis=1)     # (N, C): row-major offset p*size + q
            for k in range(size * size):
                p, q = divmod(k, size)
                dx[:, i * stride + p, j * stride + q, :] += xp.where(first == k, dout[:, i, j, :], 0)
    return dx


def avgpool_forward(x: Array, size: int = 2, stride: int = 2) -> tuple[Array, AvgPoolCache]:
    """Average pooling (floor mode). Returns ``(out, cache)``."""
    size, stride, ho, wo = _check(x, size, stride, "avgpool_forward")
    out = _window(x, 0, 0, ho, wo, stride).copy()
    for k in range(1, size * size):
        p, q = divmod(k, size)
        out += _window(x, p, q, ho, wo, stride)
    out *= x.dtype.type(1.0 / (size * size))
    return out, AvgPoolCache(tuple(x.shape), size, stride)


def avgpool_backward(dout: Array, cache: AvgPoolCache) -> Array:
    """Spread each ``dout`` entry evenly over its window: ``dx += dout / size^2``."""
    x_shape, size, stride = cache
    ho, wo = output_size(x_shape[1], size, stride), output_size(x_shape[2], size, stride)
    if tuple(dout.shape) != (x_shape[0], ho, wo, x_shape[3]):
        raise ValueError(f"avgpool_backward: dout.shape={tuple(dout.shape)} != forward output "
                         f"shape {(x_shape[0], ho, wo, x_shape[3])}")
    xp = get_xp(dout)
    dx = xp.zeros(x_shape, dtype=dout.dtype)
    share = dout * dout.dtype.type(1.0 / (size * size))
    for k in range(size * size):
        p, q = divmod(k, size)
        _window(dx, p, q, ho, wo, stride)[...] += share
    return dx


def avgpool_forward_naive(x: Array, size: int = 2, stride: int = 2) -> Array:
    """Reference average pooling, one window at a time; forward output only."""
    return _pool_naive(x, size, stride, "avgpool_forward_naive", "mean")


def avgpool_backward_naive(dout: Array, cache: AvgPoolCache) -> Array:
    """Reference for :func:`avgpool_backward`, one window at a time: ``dx[window] += dout / size^2``."""
    x_shape, size, stride = cache
    xp = get_xp(dout)
    dx = xp.zeros(x_shape, dtype=dout.dtype)
    for i in range(dout.shape[1]):
        for j in range(dout.shape[2]):
            dx[:, i * stride:i * stride + size, j * stride:j * stride + size, :] += \
                dout[:, i:i + 1, j:j + 1, :] / (size * size)
    return dx
