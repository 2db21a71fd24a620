"""2-D convolution (cross-correlation, as in every deep-learning framework), forward and backward.

Shapes (channels-last, as in Keras files)::

    x    (N, H, W, C)            input activations
    w    (KH, KW, C, F)          filters
    b    (F,)                    biases
    out  (N, Ho, Wo, F)          Ho = (H + 2 pad - KH) // stride + 1, likewise Wo

Forward, with ``xp`` the zero-padded input::

    out[n, i, j, f] = b[f] + sum_{p, q, c} xp[n, i*s + p, j*s + q, c] * w[p, q, c, f]

Backward. Given ``dout = dL/dout`` (same shape as ``out``), the chain rule gives, for each term in the
sum above, the derivative with respect to the two factors it multiplies::

    db[f]          = sum_{n, i, j} dout[n, i, j, f]
    dw[p, q, c, f] = sum_{n, i, j} xp[n, i*s + p, j*s + q, c] * dout[n, i, j, f]
    dxp[n, i*s + p, j*s + q, c] += sum_f dout[n, i, j, f] * w[p, q, c, f]     (for every i, j, p, q)

and ``dx`` is ``dxp`` with the padding cut off (padding is a constant, it passes no gradient on).

Two implementations with one signature:

* :func:`conv2d_forward_naive` / :func:`conv2d_backward_naive` loop over output positions and read like
  the formulas above. They are the reference the fast paths are tested against.
* :func:`conv2d_forward` / :func:`conv2d_backward` rewrite the sums as matrix products (im2col): gather
  every receptive field into one row of a matrix ``cols`` of shape ``(N*Ho*Wo, KH*KW*C)``; then the
  forward pass is the single GEMM ``cols @ w.reshape(KH*KW*C, F)``, ``dw = cols^T @ dout2d`` and
  ``dcols = dout2d @ w2d^T`` which col2im scatters back onto the input grid. The gather and scatter
  are loops over the ``KH*KW`` kernel offsets, each copying one strided slice: no index arrays, no
  duplicate-index scatter (undefined on GPUs), the same code on NumPy and CuPy.

How the fast path is made fast (each choice measured per VGG19 layer, see benchmarks/README.md):

* **Chunks.** ``cols`` is built for a band of output rows at a time (``IM2COL_CHUNK_BYTES``, 8 MiB)
  in a reused scratch buffer (:mod:`numpynst.workspace`), reading ``x`` directly instead of an
  ``np.pad`` copy. Memory no longer grows 9x with the image, and the band stays in cache.
* **dx as a convolution.** For stride 1, ``dx`` is the forward convolution of ``dout`` with the kernel
  flipped in both spatial axes and its channel axes swapped (see :func:`conv2d_backward`): no
  scatter-add, and every forward fast path serves the backward pass too.
* **Winograd** for 3x3/stride-1/pad-1 layers of 64+ channels: F(2x2,3x3) (:mod:`numpynst.winograd`,
  2.25x fewer multiplications) or, when the weights are read-only so their transform can be cached,
  F(4x4,3x3) (:mod:`numpynst.winograd4`, 4x fewer). The ``method`` argument forces one path.

The cache keeps the input, not ``cols``: ``cols`` is ``KH*KW`` times larger than ``x``, and style
transfer (which never needs ``dw``) would otherwise hold nine copies of every VGG activation.
"""

from __future__ import annotations

import weakref
from typing import Any, NamedTuple

from . import cuda_kernels, winograd, winograd4
from .backend import get_xp
from .workspace import chunk_bytes, scratch

Array = Any


class ConvCache(NamedTuple):
    """What ``conv2d_backward`` needs from the forward pass."""

    x: Array          # (N, H, W, C) input, unpadded
    w: Array          # (KH, KW, C, F)
    stride: int
    pad: int
    u: Array = None   # (16, C, F) Winograd-transformed w when the forward used Winograd; backward reuses it


def conv_output_size(size: int, k: int, stride: int, pad: int) -> int:
    """``(size + 2 pad - k) // stride + 1``: output length along one spatial axis."""
    return (size + 2 * pad - k) // stride + 1


def _validate(x: Array, w: Array, b: Array | None, stride: int, pad: int) -> None:
    """Raise ``ValueError`` naming the shapes when the arguments cannot be convolved."""
    if getattr(x, "ndim", None) != 4:
        raise ValueError(f"conv2d: x must be 4-D (N, H, W, C), got shape {getattr(x, 'shape', None)}")
    if getattr(w, "ndim", None) != 4:
        raise ValueError(f"conv2d: w must be 4-D (KH, KW, C_in, C_out), got shape {getattr(w, 'shape', None)}")
    if x.shape[3] != w.shape[2]:
        raise ValueError(f"conv2d: channel mismatch, x has C={x.shape[3]} (x.shape={tuple(x.shape)}) "
                         f"but w expects C_in={w.shape[2]} (w.shape={tuple(w.shape)})")
    if b is not None and tuple(b.shape) != (w.shape[3],):
        raise ValueError(f"conv2d: b must have shape ({w.shape[3]},) to match w.shape={tuple(w.shape)}, "
                         f"got {tuple(b.shape)}")
    if not isinstance(stride, int) or isinstance(stride, bool) or stride < 1:
        raise ValueError(f"conv2d: stride must be a positive integer, got {stride!r}")
    if not isinstance(pad, int) or isinstance(pad, bool) or pad < 0:
        raise ValueError(f"conv2d: pad must be a non-negative integer, got {pad!r}")
    hp, wp = x.shape[1] + 2 * pad, x.shape[2] + 2 * pad
    if w.shape[0] > hp or w.shape[1] > wp:
        raise ValueError(f"conv2d: kernel {w.shape[0]}x{w.shape[1]} (w.shape={tuple(w.shape)}) is larger "
                         f"than the padded input {hp}x{wp} (x.shape={tuple(x.shape)}, pad={pad})")


def _pad(x: Array, pad: int) -> Array:
    if pad == 0:
        return x
    xp = get_xp(x)
    return xp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))


# --------------------------------------------------------------------------------------------
# Naive reference: one output position at a time, exactly the sums in the module docstring.
# --------------------------------------------------------------------------------------------

def conv2d_forward_naive(x: Array, w: Array, b: Array, stride: int = 1, pad: int = 1) -> tuple[Array, ConvCache]:
    """Reference convolution: a loop over output positions ``(i, j)``.

    Same signature, shapes and result as :func:`conv2d_forward`; slow, but each line is a formula.
    """
    _validate(x, w, b, stride, pad)
    xp_ = get_xp(x, w, b)
    n, h, wd, _ = x.shape
    kh, kw, _, f = w.shape
    ho, wo = conv_output_size(h, kh, stride, pad), conv_output_size(wd, kw, stride, pad)
    xpad = _pad(x, pad)
    out = xp_.empty((n, ho, wo, f), dtype=xp_.result_type(x, w))
    for i in range(ho):
        for j in range(wo):
            window = xpad[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]   # (N, KH, KW, C)
            # out[n, i, j, f] = b[f] + sum_{p,q,c} window[n, p, q, c] * w[p, q, c, f]
            out[:, i, j, :] = xp_.tensordot(window, w, axes=([1, 2, 3], [0, 1, 2])) + b
    return out, ConvCache(x, w, stride, pad)


def conv2d_backward_naive(dout: Array, cache: ConvCache,
                          weight_grads: bool = True) -> tuple[Array, Array | None, Array | None]:
    """Reference backward pass: the loop of :func:`conv2d_forward_naive`, run in reverse.

    Returns ``(dx, dw, db)``; ``(dx, None, None)`` when ``weight_grads`` is False.
    """
    x, w, stride, pad = cache.x, cache.w, cache.stride, cache.pad
    xp_ = get_xp(dout, x, w)
    kh, kw = w.shape[:2]
    ho, wo = dout.shape[1:3]
    xpad = _pad(x, pad)
    dxpad = xp_.zeros_like(xpad, dtype=xp_.result_type(dout, w))
    dw = xp_.zeros_like(w) if weight_grads else None
    for i in range(ho):
        for j in range(wo):
            rows, cols = slice(i * stride, i * stride + kh), slice(j * stride, j * stride + kw)
            g = dout[:, i, j, :]                                             # (N, F)
            # dxp[n, i*s+p, j*s+q, c] += sum_f g[n, f] * w[p, q, c, f]
            dxpad[:, rows, cols, :] += xp_.tensordot(g, w, axes=([1], [3]))
            if weight_grads:
                # dw[p, q, c, f] += sum_n xp[n, i*s+p, j*s+q, c] * g[n, f]
                dw += xp_.tensordot(xpad[:, rows, cols, :], g, axes=([0], [0]))
    dx = dxpad[:, pad:pad + x.shape[1], pad:pad + x.shape[2], :]
    if not weight_grads:
        return dx, None, None
    db = dout.sum(axis=(0, 1, 2))
    return dx, dw, db


# --------------------------------------------------------------------------------------------
# Fast path: im2col + one GEMM.
# --------------------------------------------------------------------------------------------

def im2col(x: Array, kh: int, kw: int, stride: int, pad: int) -> Array:
    """Gather receptive fields: ``(N, H, W, C) -> cols (N*Ho*Wo, KH*KW*C)``.

    Row ``(n, i, j)`` of ``cols`` is the window ``xp[n, i*s:i*s+KH, j*s:j*s+KW, :]`` flattened in
    ``(p, q, c)`` order, which is the order of ``w.reshape(KH*KW*C, F)``. Built with one strided-slice
    copy per kernel offset ``(p, q)``: ``KH*KW`` large contiguous copies instead of ``N*Ho*Wo`` small ones.
    """
    if cuda_kernels.supports(x):            # CuPy: the same gather as one kernel launch
        return cuda_kernels.im2col(x, kh, kw, stride, pad)
    xp_ = get_xp(x)
    n, h, wd, c = x.shape
    ho, wo = conv_output_size(h, kh, stride, pad), conv_output_size(wd, kw, stride, pad)
    xpad = _pad(x, pad)
    cols = xp_.empty((n, ho, wo, kh, kw, c), dtype=x.dtype)
    for p in range(kh):
        for q in range(kw):
            cols[:, :, :, p, q, :] = xpad[:, p:p + stride * ho:stride, q:q + stride * wo:stride, :]
    return cols.reshape(n * ho * wo, kh * kw * c)


def col2im(cols: Array, x_shape: tuple[int, int, int, int], kh: int, kw: int, stride: int, pad: int) -> Array:
    """Adjoint of :func:`im2col`: scatter-add ``cols (N*Ho*Wo, KH*KW*C)`` back to ``(N, H, W, C)``.

    Overlapping windows add up. Each kernel offset ``(p, q)`` writes a strided slice whose elements are
    all distinct, so the ``+=`` is a plain elementwise add (safe on GPUs, unlike a fancy-index scatter
    with repeated indices); the overlap is handled by the loop over offsets.
    """
    if cuda_kernels.supports(cols):         # CuPy: one gather kernel, each element sums its sources
        return cuda_kernels.col2im(cols, x_shape, kh, kw, stride, pad)
    xp_ = get_xp(cols)
    n, h, wd, c = x_shape
    ho, wo = conv_output_size(h, kh, stride, pad), conv_output_size(wd, kw, stride, pad)
    cols6 = cols.reshape(n, ho, wo, kh, kw, c)
    dxpad = xp_.zeros((n, h + 2 * pad, wd + 2 * pad, c), dtype=cols.dtype)
    for p in range(kh):
        for q in range(kw):
            dxpad[:, p:p + stride * ho:stride, q:q + stride * wo:stride, :] += cols6[:, :, :, p, q, :]
    return dxpad[:, pad:pad + h, pad:pad + wd, :]


def _ceil_div(a: int, b: int) -> int:
    return -((-a) // b)


def _valid(i0: int, i1: int, k: int, stride: int, pad: int, size: int) -> tuple[int, int]:
    """Output indices ``i`` in ``[i0, i1)`` whose input index ``i*stride + k - pad`` is inside ``[0, size)``."""
    lo = max(i0, _ceil_div(pad - k, stride))
    hi = min(i1, (size - 1 + pad - k) // stride + 1)
    return lo, max(lo, hi)


def _im2col_rows(x: Array, cols: Array, i0: int, i1: int, stride: int, ph: int, pw: int) -> None:
    """Fill ``cols (N, R, Wo, KH, KW, C)`` with the receptive fields of output rows ``[i0, i1)``.

    Same layout as :func:`im2col`, but reading ``x`` directly (no padded copy): for each kernel
    offset the in-range part is one strided-slice copy and the out-of-range border strips (where
    the padded input is zero) are zeroed, because ``cols`` is a reused scratch buffer.
    """
    if cuda_kernels.supports(x, cols):      # CuPy: one kernel writes the whole chunk, padding included
        cuda_kernels.im2col_rows(x, cols, i0, i1, stride, ph, pw)
        return
    n, h, wd, c = x.shape
    _, r, wo, kh, kw, _ = cols.shape
    for p in range(kh):
        ia, ib = _valid(i0, i1, p, stride, ph, h)
        for q in range(kw):
            ja, jb = _valid(0, wo, q, stride, pw, wd)
            dst = cols[:, :, :, p, q, :]
            if ia == ib or ja == jb:
                dst[...] = 0
                continue
            dst[:, ia - i0:ib - i0, ja:jb] = x[:, ia * stride + p - ph:(ib - 1) * stride + p - ph + 1:stride,
                                                ja * stride + q - pw:(jb - 1) * stride + q - pw + 1:stride]
            if ia > i0:
                dst[:, :ia - i0] = 0
            if ib < i1:
                dst[:, ib - i0:] = 0
            if ja > 0:
                dst[:, ia - i0:ib - i0, :ja] = 0
            if jb < wo:
                dst[:, ia - i0:ib - i0, jb:] = 0


def _row_chunk(ref: Array, rows: int, bytes_per_row: int) -> int:
    """Rows per chunk so that a chunk's scratch stays within ``IM2COL_CHUNK_BYTES`` (larger on GPUs)."""
    return max(1, min(rows, chunk_bytes(ref, IM2COL_CHUNK_BYTES) // max(bytes_per_row, 1)))


def _conv_im2col(x: Array, w: Array, b: Array | None, stride: int, ph: int, pw: int) -> Array:
    """``out = im2col(x) @ w2d + b``, chunked over output rows, into a fresh ``(N, Ho, Wo, F)`` array.

    Each chunk is one GEMM of ``N * R * Wo`` rows by ``KH*KW*C``; the im2col buffer is reused scratch
    of at most ``IM2COL_CHUNK_BYTES`` (plus one row), so memory no longer grows with the image.
    """
    xp_ = get_xp(x, w)
    n, h, wd, c = x.shape
    kh, kw, _, f = w.shape
    ho = (h + 2 * ph - kh) // stride + 1
    wo = (wd + 2 * pw - kw) // stride + 1
    k = kh * kw * c
    w2d = w.reshape(k, f)
    out = xp_.empty((n, ho, wo, f), dtype=x.dtype)
    if kh == kw == 1 and stride == 1 and ph == pw == 0:
        xp_.matmul(x.reshape(n * h * wd, c), w2d, out=out.reshape(n * ho * wo, f))   # already a GEMM
        if b is not None:
            out += b
        return out
    rows = _row_chunk(x, ho, n * wo * k * x.dtype.itemsize)
    for i0 in range(0, ho, rows):
        i1 = min(ho, i0 + rows)
        cols = scratch(x, "im2col", (n, i1 - i0, wo, kh, kw, c), x.dtype)
        _im2col_rows(x, cols, i0, i1, stride, ph, pw)
        o = out[:, i0:i1].reshape(n, (i1 - i0) * wo, f)       # a view: rows of one image are contiguous
        xp_.matmul(cols.reshape(n, (i1 - i0) * wo, k), w2d, out=o)
        if b is not None:
            o += b                                              # while the chunk is still in cache
    return out


def _dx_col2im(dout: Array, w: Array, x_shape: tuple[int, ...], stride: int, pad: int) -> Array:
    """``dx = col2im(dout2d @ w2d^T)``, chunked over rows of ``dout``; any stride."""
    xp_ = get_xp(dout, w)
    n, h, wd, c = x_shape
    kh, kw, _, f = w.shape
    ho, wo = dout.shape[1:3]
    k = kh * kw * c
    w2d_t = w.reshape(k, f).T
    dx = xp_.zeros(x_shape, dtype=dout.dtype)
    rows = _row_chunk(dout, ho, n * wo * k * dout.dtype.itemsize)
    for i0 in range(0, ho, rows):
        i1 = min(ho, i0 + rows)
        dcols = scratch(dout, "im2col", (n, i1 - i0, wo, kh, kw, c), dout.dtype)
        xp_.matmul(dout[:, i0:i1].reshape(n, (i1 - i0) * wo, f), w2d_t, out=dcols.reshape(n, (i1 - i0) * wo, k))
        if cuda_kernels.supports(dcols, dx):  # CuPy: one gather kernel over the rows this chunk reaches
            cuda_kernels.col2im_rows_add(dcols, dx, i0, i1, stride, pad)
            continue
        for p in range(kh):
            ia, ib = _valid(i0, i1, p, stride, pad, h)
            for q in range(kw):
                ja, jb = _valid(0, wo, q, stride, pad, wd)
                if ia == ib or ja == jb:
                    continue
                # distinct destinations within one offset: a plain strided +=, safe on GPUs
                dx[:, ia * stride + p - pad:(ib - 1) * stride + p - pad + 1:stride,
                   ja * stride + q - pad:(jb - 1) * stride + q - pad + 1:stride] += \
                    dcols[:, ia - i0:ib - i0, ja:jb, p, q]
    return dx


def _dw_im2col(x: Array, dout: Array, kh: int, kw: int, stride: int, pad: int) -> Array:
    """``dw = im2col(x)^T @ dout2d``, accumulated over row chunks; shape ``(KH, KW, C, F)``."""
    xp_ = get_xp(x, dout)
    n, _, _, c = x.shape
    ho, wo, f = dout.shape[1:]
    k = kh * kw * c
    dw = xp_.zeros((k, f), dtype=dout.dtype)
    part = scratch(dout, "dw_part", (k, f), dout.dtype)
    rows = _row_chunk(x, ho, n * wo * k * x.dtype.itemsize)
    for i0 in range(0, ho, rows):
        i1 = min(ho, i0 + rows)
        cols = scratch(x, "im2col", (n, i1 - i0, wo, kh, kw, c), x.dtype)
        _im2col_rows(x, cols, i0, i1, stride, pad, pad)
        for j in range(n):
            xp_.matmul(cols[j].reshape(-1, k).T, dout[j, i0:i1].reshape(-1, f), out=part)
            dw += part
    return dw.reshape(kh, kw, c, f)


# Scratch budget for one im2col chunk. ~8 MiB keeps every VGG layer's GEMM above ~2000 rows (efficient)
# while the chunk is still L3-resident; see benchmarks/README.md for the measurements behind it.
IM2COL_CHUNK_BYTES = 8 * 2 ** 20

FORWARD_METHODS = ("auto", "im2col", "winograd", "winograd4")
BACKWARD_METHODS = ("auto", "im2col", "col2im", "winograd", "winograd4")

# Dispatch thresholds for 3x3/stride-1/pad-1 convolutions, from per-layer measurements of VGG19's
# shapes at 256 and 512 px (benchmarks/README.md): from 64 channels on, F(2x2,3x3) beats im2col by
# 1.3-2x and F(4x4,3x3) beats F(2x2,3x3) by another 1.1-1.35x -- but F(4x4,3x3)'s weight transform
# (float64, 36/9 of the kernel's size, and a second one for dx) costs about what it saves in one
# call, so it is chosen only when the transformed weights can be cached (read-only weights).
# Below 64 channels (VGG's 3-channel first layer) the GEMM is too thin for Winograd to pay.
WINOGRAD_MIN_CHANNELS = 64
WINOGRAD4_MIN_CHANNELS = 64


def _is_3x3_same(w: Array, stride: int, pad: int) -> bool:
    return tuple(w.shape[:2]) == (3, 3) and stride == 1 and pad == 1


def _auto_method(w: Array, c: int, f: int) -> str:
    """Forward algorithm for a 3x3/s1/p1 conv with ``C`` inputs and ``F`` outputs (dx: swap them).

    On CuPy arrays: im2col. The Winograd paths are dozens of element-wise kernel launches per chunk,
    untested for speed on a GPU (no GPU was available when the thresholds were measured); im2col is
    one gather kernel plus one cuBLAS GEMM per (large) chunk. ``method="winograd"`` still runs there.
    """
    if get_xp(w).__name__ != "numpy":
        return "im2col"
    if min(c, f) >= WINOGRAD4_MIN_CHANNELS and _cacheable(w):
        return "winograd4"
    if min(c, f) >= WINOGRAD_MIN_CHANNELS:
        return "winograd"
    return "im2col"


# ---------------------------------------------------------------------------- transformed weights
# Winograd needs U = G w G^T. Recomputing it every call costs ~2 ms for a 512x512 kernel on the CPU
# (several % of a VGG iteration, and all of F(4x4,3x3)'s gain), so U is cached per weight array —
# but only for arrays that cannot change behind the cache's back: NumPy arrays marked read-only
# (``w.flags.writeable = False``, as numpynst.vgg.VGG may do for its parameters), whose whole base
# chain is read-only too. Writable arrays (e.g. weights under a gradient check, which perturbs them
# in place) are always transformed afresh. Entries die with their weight array (weak reference).
_U_CACHE: dict = {}


def _cacheable(w: Array) -> bool:
    a = w
    while a is not None:
        flags = getattr(a, "flags", None)
        if flags is None or not hasattr(flags, "writeable") or flags.writeable:
            return False                    # writable, or not a NumPy array (CuPy has no such flag)
        a = a.base
    return True


def _transformed(w: Array, kind: str) -> Array:
    """``U`` for ``kind`` in ``"f2"`` (F(2x2,3x3)), ``"f4"``, ``"f4_flip"`` (F(4x4,3x3), fwd / dx)."""
    make = {"f2": winograd.transform_weights,
            "f4": winograd4.transform_weights,
            "f4_flip": lambda a: winograd4.transform_weights(a, flip=True)}[kind]
    if not _cacheable(w):
        return make(w)
    key = (id(w), kind)
    hit = _U_CACHE.get(key)
    if hit is not None and hit[0]() is w:
        return hit[1]
    u = make(w)
    u.flags.writeable = False
    _U_CACHE[key] = (weakref.ref(w, lambda _ref, k=key: _U_CACHE.pop(k, None)), u)
    return u


def conv2d_forward(x: Array, w: Array, b: Array, stride: int = 1, pad: int = 1, *,
                   method: str = "auto") -> tuple[Array, ConvCache]:
    """Convolution ``out = im2col(x) @ w2d + b`` (see the module docstring for the sums).

    Args:
        x: ``(N, H, W, C)`` input. w: ``(KH, KW, C, F)`` filters. b: ``(F,)`` biases (or None).
        stride, pad: positive stride; symmetric zero padding on H and W.
        method: ``"im2col"`` (chunked im2col + one GEMM per chunk; any shape), ``"winograd"``
            (F(2x2,3x3), 3x3/stride 1/pad 1 only, see :mod:`numpynst.winograd`), ``"winograd4"``
            (F(4x4,3x3), :mod:`numpynst.winograd4`), or ``"auto"`` (what measured fastest for the
            shape, see ``_auto_method``).
    Returns:
        ``(out, cache)``, ``out`` of shape ``(N, Ho, Wo, F)`` in the dtype of ``x`` and ``w``.
    Raises:
        ValueError naming the shapes for a wrong ndim, a channel mismatch, a kernel larger than the
        padded input, a non-positive stride, or a method that does not apply.
    """
    _validate(x, w, b, stride, pad)
    if method not in FORWARD_METHODS:
        raise ValueError(f"conv2d_forward: method must be one of {', '.join(FORWARD_METHODS)}, got {method!r}")
    xp_ = get_xp(x, w, b)
    dt = xp_.result_type(x.dtype, w.dtype)       # never b's: a float64 bias must not promote float32
    x = x.astype(dt, copy=False)
    w = w.astype(dt, copy=False)
    b = None if b is None else b.astype(dt, copy=False)
    same3 = _is_3x3_same(w, stride, pad)
    if method.startswith("winograd") and not same3:
        raise ValueError(f"conv2d_forward: method {method!r} needs a 3x3 kernel, stride 1, pad 1; got "
                         f"w.shape={tuple(w.shape)}, stride={stride}, pad={pad}")
    if method == "auto":
        method = _auto_method(w, x.shape[3], w.shape[3]) if same3 else "im2col"
    if method == "winograd":
        u = _transformed(w, "f2")
        return winograd.conv3x3(x, u, b), ConvCache(x, w, stride, pad, u)
    if method == "winograd4":
        return winograd4.conv3x3(x, _transformed(w, "f4"), b), ConvCache(x, w, stride, pad)
    return _conv_im2col(x, w, b, stride, pad, pad), ConvCache(x, w, stride, pad)


def conv2d_backward(dout: Array, cache: ConvCache, weight_grads: bool = True, *,
                    method: str = "auto") -> tuple[Array, Array | None, Array | None]:
    """Gradients of the convolution.

    With ``dout2d = dout.reshape(N*Ho*Wo, F)`` and ``w2d = w.reshape(KH*KW*C, F)``::

        dx = col2im(dout2d @ w2d^T)      dw = (im2col(x)^T @ dout2d).reshape(w.shape)
        db = dout2d.sum(axis=0)

    For stride 1 the first line is itself a convolution: ``dx[n,y,z,c] = sum_{p,q,f}
    doutpad[n, y+p, z+q, f] * w[KH-1-p, KW-1-q, c, f]`` with ``dout`` zero-padded by ``K-1-pad``,
    i.e. a forward convolution of ``dout`` with the flipped kernel whose channel axes are swapped.
    That form needs no scatter-add and can use the forward fast paths.

    Args:
        dout: ``(N, Ho, Wo, F)``, the upstream gradient. cache: from :func:`conv2d_forward`.
        weight_grads: when False, skip ``dw``/``db`` (and the im2col they need) and return
            ``(dx, None, None)``; style transfer only ever needs ``dx``.
        method: how to compute ``dx``: ``"col2im"`` (GEMM + scatter-add; any stride), ``"im2col"``
            (forward conv of ``dout`` with the flipped kernel; stride 1, ``pad < K``),
            ``"winograd"`` / ``"winograd4"`` (the same with Winograd; 3x3/stride 1/pad 1), or ``"auto"``.
    Returns:
        ``(dx, dw, db)`` with the shapes of ``x``, ``w`` and ``b``.
    """
    x, w, stride, pad = cache.x, cache.w, cache.stride, cache.pad
    kh, kw, c, f = w.shape
    ho, wo = conv_output_size(x.shape[1], kh, stride, pad), conv_output_size(x.shape[2], kw, stride, pad)
    if tuple(dout.shape) != (x.shape[0], ho, wo, f):
        raise ValueError(f"conv2d_backward: dout.shape={tuple(dout.shape)} does not match the forward "
                         f"output {(x.shape[0], ho, wo, f)}")
    if method not in BACKWARD_METHODS:
        raise ValueError(f"conv2d_backward: method must be one of {', '.join(BACKWARD_METHODS)}, got {method!r}")
    xp_ = get_xp(dout, x, w)
    dout = dout.astype(x.dtype, copy=False)
    same3 = _is_3x3_same(w, stride, pad)
    flippable = stride == 1 and pad <= kh - 1 and pad <= kw - 1
    if (method.startswith("winograd") and not same3) or (method == "im2col" and not flippable):
        raise ValueError(f"conv2d_backward: method {method!r} does not apply to w.shape={tuple(w.shape)}, "
                         f"stride={stride}, pad={pad}")
    if method == "auto":
        if same3:
            method = _auto_method(w, f, c)
        # a narrow dx (e.g. the 3 colour channels under block1_conv1) is cheaper scattered than
        # gathered: col2im touches 9*C values per pixel, im2col on dout 9*F
        if method == "im2col" and not (flippable and c >= f // 2):
            method = "col2im"
    if method == "winograd":
        u = cache.u if cache.u is not None and cache.u.shape[0] == 16 else _transformed(w, "f2")
        dx = winograd.conv3x3(dout, u, flip=True)
    elif method == "winograd4":
        dx = winograd4.conv3x3(dout, _transformed(w, "f4_flip"))
    elif method == "im2col":
        w_flip = xp_.ascontiguousarray(w[::-1, ::-1].transpose(0, 1, 3, 2))     # (KH, KW, F, C)
        dx = _conv_im2col(dout, w_flip, None, 1, kh - 1 - pad, kw - 1 - pad)
    else:
        dx = _dx_col2im(dout, w, x.shape, stride, pad)
    if not weight_grads:
        return dx, None, None
    dw = _dw_im2col(x, dout, kh, kw, stride, pad)
    db = dout.sum(axis=(0, 1, 2))
    return dx, dw, db
