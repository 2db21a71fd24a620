"""Chunked im2col: the convolution as GEMMs over bands of output rows, and ``dx`` / ``dw`` likewise.

Speed only. Textbook twins: :func:`numpynst.layers.conv.im2col` / :func:`~numpynst.layers.conv.col2im`
(:func:`im2col_rows` is one band of ``im2col``) and, for the whole results,
:func:`~numpynst.layers.conv.conv2d_forward_naive` / :func:`~numpynst.layers.conv.conv2d_backward_naive`;
tests/test_conv_fast.py checks they agree, with one output row per chunk and with the default chunks.

How it is faster than the textbook ``cols @ w2d`` (each choice measured per VGG19 layer, see
benchmarks/README.md):

* **Chunks.** ``cols`` is built for a band of output rows at a time (``IM2COL_CHUNK_BYTES``, 8 MiB)
  in a reused scratch buffer (:mod:`numpynst.layers.fast.workspace`), reading ``x`` directly instead
  of an ``np.pad`` copy. Memory no longer grows 9x with the image, and the band stays in cache.
* **dx as a convolution.** For stride 1, ``dx`` is the forward convolution of ``dout`` with the kernel
  flipped in both spatial axes and its channel axes swapped (:func:`dx_flipped`): no scatter-add, and
  every forward fast path serves the backward pass too.
"""

from __future__ import annotations

from typing import Any

from ...backend import get_xp
from ..geometry import output_size
from . import cuda_kernels, parallel
from .workspace import rows_per_chunk, scratch

Array = Any

# Scratch budget for one im2col chunk. ~8 MiB keeps every VGG layer's GEMM above ~2000 rows (efficient)
# while the chunk is still L3-resident; see benchmarks/README.md for the measurements behind it.
IM2COL_CHUNK_BYTES = 8 * 2 ** 20


def gemm(xp, a: Array, b: Array, out: Array) -> None:
    """``out[...] = a @ b``. float16 operands: products and sums in float32, ``out`` rounded to float16
    once, as cuBLAS's float16 GEMM with float32 compute (what CuPy runs) does; on NumPy that
    arithmetic is emulated by widening the operands to float32 (NumPy's own float16 matmul is a
    slow non-BLAS loop)."""
    if xp.__name__ == "numpy" and a.dtype == xp.float16:
        out[...] = xp.matmul(a.astype(xp.float32), b.astype(xp.float32))
        return
    xp.matmul(a, b, out=out)


def _ceil_div(a: int, b: int) -> int:
    return -((-a) // b)


def _valid(i0: int, i1: int, k: int, stride: int, pad: int, size: int) -> tuple[int, int]:
    """Output indices ``i`` in ``[i0, i1)`` whose input index ``i*stride + k - pad`` is inside ``[0, size)``."""
    lo = max(i0, _ceil_div(pad - k, stride))
    hi = min(i1, (size - 1 + pad - k) // stride + 1)
    return lo, max(lo, hi)


def im2col_rows(x: Array, cols: Array, i0: int, i1: int, stride: int, ph: int, pw: int) -> None:
    """Fill ``cols (N, R, Wo, KH, KW, C)`` with the receptive fields of output rows ``[i0, i1)``.

    Same layout as :func:`numpynst.layers.conv.im2col`, but reading ``x`` directly (no padded copy):
    for each kernel offset the in-range part is one strided-slice copy and the out-of-range border
    strips (where the padded input is zero) are zeroed, because ``cols`` is a reused scratch buffer.
    """
    if cuda_kernels.supports(x, cols, copy_only=True):   # CuPy: one kernel writes the chunk, padding too
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


def conv_im2col(x: Array, w: Array, b: Array | None, stride: int, ph: int, pw: int, relu: bool = False) -> Array:
    """``out = im2col(x) @ w2d + b``, chunked over output rows, into a fresh ``(N, Ho, Wo, F)`` array.

    Each chunk is one GEMM of ``N * R * Wo`` rows by ``KH*KW*C``; the im2col buffer is reused scratch
    of at most ``IM2COL_CHUNK_BYTES`` (plus one row), so memory no longer grows with the image.
    ``relu``: return ``max(out, 0)``, applied per chunk while it is in cache.
    """
    xp = get_xp(x, w)
    n, h, wd, c = x.shape
    kh, kw, _, f = w.shape
    ho, wo = output_size(h, kh, stride, ph), output_size(wd, kw, stride, pw)
    k = kh * kw * c
    w2d = w.reshape(k, f)
    out = xp.empty((n, ho, wo, f), dtype=x.dtype)
    if kh == kw == 1 and stride == 1 and ph == pw == 0:
        gemm(xp, x.reshape(n * h * wd, c), w2d, out.reshape(n * ho * wo, f))   # already a GEMM
        if b is not None:
            out += b
        if relu:
            xp.maximum(out, 0, out=out)
        return out
    rows = rows_per_chunk(x, ho, n * wo * k * x.dtype.itemsize, IM2COL_CHUNK_BYTES)

    def chunk(span: tuple[int, int]) -> None:
        i0, i1 = span
        cols = scratch(x, "tiles", (n, i1 - i0, wo, kh, kw, c), x.dtype)
        im2col_rows(x, cols, i0, i1, stride, ph, pw)
        o = out[:, i0:i1].reshape(n, (i1 - i0) * wo, f)       # a view: rows of one image are contiguous
        gemm(xp, cols.reshape(n, (i1 - i0) * wo, k), w2d, o)
        if b is not None:
            o += b                                              # while the chunk is still in cache
        if relu:
            xp.maximum(o, 0, out=o)

    parallel.run(x, chunk, parallel.split(ho, rows, x))
    return out


def dx_flipped(dout: Array, w: Array, pad: int) -> Array:
    """``dx`` of a stride-1 convolution (``pad < K``) as a forward one: ``dout`` zero-padded by
    ``K-1-pad``, convolved with ``w[::-1, ::-1]`` whose channel axes are swapped."""
    kh, kw = w.shape[:2]
    w_flip = get_xp(w).ascontiguousarray(w[::-1, ::-1].transpose(0, 1, 3, 2))     # (KH, KW, F, C)
    return conv_im2col(dout, w_flip, None, 1, kh - 1 - pad, kw - 1 - pad)


def dx_col2im(dout: Array, w: Array, x_shape: tuple[int, ...], stride: int, pad: int) -> Array:
    """``dx = col2im(dout2d @ w2d^T)``, chunked over rows of ``dout``; any stride."""
    xp = get_xp(dout, w)
    n, h, wd, c = x_shape
    kh, kw, _, f = w.shape
    ho, wo = dout.shape[1:3]
    k = kh * kw * c
    w2d_t = w.reshape(k, f).T
    dx = xp.zeros(x_shape, dtype=dout.dtype)
    rows = rows_per_chunk(dout, ho, n * wo * k * dout.dtype.itemsize, IM2COL_CHUNK_BYTES)

    def chunk(span: tuple[int, int]) -> None:
        i0, i1 = span
        dcols = scratch(dout, "tiles", (n, i1 - i0, wo, kh, kw, c), dout.dtype)
        gemm(xp, dout[:, i0:i1].reshape(n, (i1 - i0) * wo, f), w2d_t, dcols.reshape(n, (i1 - i0) * wo, k))
        if cuda_kernels.supports(dcols, dx):  # CuPy: one gather kernel over the rows this chunk reaches
            cuda_kernels.col2im_rows_add(dcols, dx, i0, i1, stride, pad)
            return
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

    # A band of dout rows [i0, i1) adds into dx rows [i0*s - pad, (i1-1)*s - pad + KH): neighbouring
    # bands overlap, bands two apart do not once every band has >= KH/s rows. So the even bands run
    # in parallel, then the odd ones; each dx element still receives its terms in a fixed order.
    spans = parallel.split(ho, rows, dout)
    if min(b - a for a, b in spans) * stride < kh:
        spans = [(a, min(ho, a + rows)) for a in range(0, ho, rows)]
        with parallel.one_blas_thread(dout):      # as in the pool: no BLAS thread left spinning
            for span in spans:
                chunk(span)
        return dx
    parallel.run(dout, chunk, spans[0::2])
    parallel.run(dout, chunk, spans[1::2])
    return dx


def dw_im2col(x: Array, dout: Array, kh: int, kw: int, stride: int, pad: int) -> Array:
    """``dw = im2col(x)^T @ dout2d``, accumulated over row chunks; shape ``(KH, KW, C, F)``."""
    xp = get_xp(x, dout)
    n, _, _, c = x.shape
    ho, wo, f = dout.shape[1:]
    k = kh * kw * c
    dw = xp.zeros((k, f), dtype=dout.dtype)
    part = scratch(dout, "dw_part", (k, f), dout.dtype)
    rows = rows_per_chunk(x, ho, n * wo * k * x.dtype.itemsize, IM2COL_CHUNK_BYTES)
    for i0 in range(0, ho, rows):
        i1 = min(ho, i0 + rows)
        cols = scratch(x, "tiles", (n, i1 - i0, wo, kh, kw, c), x.dtype)
        im2col_rows(x, cols, i0, i1, stride, pad, pad)
        for j in range(n):
            gemm(xp, cols[j].reshape(-1, k).T, dout[j, i0:i1].reshape(-1, f), part)
            dw += part
    return dw.reshape(kh, kw, c, f)
