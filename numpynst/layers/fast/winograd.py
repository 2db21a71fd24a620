"""Winograd F(2x2, 3x3): a 3x3, stride-1, pad-1 convolution with 2.25x fewer multiplications.

Speed only. Textbook twin: :func:`numpynst.layers.conv.conv2d_forward_naive` with a 3x3 kernel,
stride 1, pad 1 (and :func:`~numpynst.layers.conv.conv2d_backward_naive`'s ``dx`` for
``flip=True``); tests/test_conv_fast.py checks they agree.

Why: a direct 3x3 convolution costs ``9 C F`` multiply-adds per output pixel. Winograd's minimal
filtering algorithm (Lavin & Gray 2015, "Fast Algorithms for Convolutional Neural Networks") computes
a 2x2 block of outputs from a 4x4 block of inputs with 16 products per (input channel, filter) pair
instead of 36, i.e. ``4 C F`` per output pixel. In VGG, where nearly all the time is GEMM, that
bound is what makes a NumPy implementation able to beat a direct-convolution framework.

The math, for one channel pair, a 4x4 input tile ``d`` (rows ``2i-1 .. 2i+2`` of the zero-padded
input, likewise columns) and a 3x3 filter ``g``::

    Y (2x2) = A^T [ (G g G^T) * (B^T d B) ] A          (* is the element-wise product)

          [1  0 -1  0]          [ 1    0    0 ]
    B^T = [0  1  1  0]      G = [1/2  1/2  1/2]      A^T = [1 1  1  0]
          [0 -1  1  0]          [1/2 -1/2  1/2]            [0 1 -1 -1]
          [0  1  0 -1]          [ 0    0    1 ]

Summed over input channels, the element-wise product becomes, for each of the 16 tile positions
``k = 4a + b``, one matrix product over ``C``::

    V[k] (P, C) = (B^T d B)[a, b] for the P tiles       U[k] (C, F) = (G g G^T)[a, b]
    M[k] (P, F) = V[k] @ U[k]                           out tile = A^T M A  (+ bias)

so the whole convolution is 16 GEMMs of ``P = N * ceil(H/2) * ceil(W/2)`` rows (``4 C F`` per output
pixel) plus two cheap transforms of ~20 additions per tile and channel.

**Backward for free.** ``dx`` of a 3x3 "same" convolution is the same convolution of ``dout`` with the
kernel flipped in both spatial axes and its channel axes swapped. Flipping ``g`` permutes the rows of
``G`` (``G J = P G`` with ``P`` swapping rows 0 and 3; rows 1 and 2 are symmetric), so the
transformed flipped kernel is ``U[pi(a), pi(b)]^T`` with ``pi = (3, 1, 2, 0)``: the forward pass's
``U`` re-indexed, no second weight transform (``flip=True`` below).

Accuracy: the transforms have coefficients 1 and 1/2 only; in float32 the result agrees with the
direct sum to ~1e-6 relative (norm-wise), in float64 to ~1e-15 (tests/test_conv_fast.py).

Memory: the work is chunked over rows of tiles so that the transformed tiles ``V`` and products ``M``
stay a few MiB (cache-sized) whatever the image size; the scratch buffers are reused across calls
(:mod:`numpynst.layers.fast.workspace`). Everything is strided slices, element-wise ops with
``out=`` and ``matmul``: the same code runs on NumPy and CuPy.
"""

from __future__ import annotations

from typing import Any

from ...backend import get_xp
from . import parallel
from .workspace import rows_per_chunk, scratch

Array = Any

# Tile index permutation that turns U of a kernel into U of the spatially flipped kernel (see above).
_FLIP = (3, 1, 2, 0)

# Scratch budget for one chunk of tiles (V and M together), in bytes. Large enough for GEMMs of
# thousands of rows, small enough that the transforms run out of the L2/L3 caches.
CHUNK_BYTES = 8 * 2 ** 20


def transform_weights(w: Array) -> Array:
    """``U = G g G^T`` for every channel pair: ``w (3, 3, C, F) -> U (16, C, F)``, contiguous.

    ``U[4a + b, c, f] = (G w[:, :, c, f] G^T)[a, b]``; computed in ``w``'s dtype.
    """
    if tuple(w.shape[:2]) != (3, 3):
        raise ValueError(f"winograd: expects a 3x3 kernel, got w.shape={tuple(w.shape)}")
    xp = get_xp(w)
    half = w.dtype.type(0.5)
    c, f = w.shape[2:]
    u = xp.empty((4, 4, c, f), dtype=w.dtype)
    t = xp.empty((4, 3, c, f), dtype=w.dtype)
    # rows: G g  (t[a, q] = sum_p G[a, p] g[p, q])
    t[0] = w[0]
    t[3] = w[2]
    xp.add(w[0], w[2], out=t[1])
    t[1] *= half
    xp.subtract(t[1], w[1] * half, out=t[2])
    t[1] += w[1] * half
    # columns: (G g) G^T  (u[a, b] = sum_q t[a, q] G[b, q])
    u[:, 0] = t[:, 0]
    u[:, 3] = t[:, 2]
    xp.add(t[:, 0], t[:, 2], out=u[:, 1])
    u[:, 1] *= half
    xp.subtract(u[:, 1], t[:, 1] * half, out=u[:, 2])
    u[:, 1] += t[:, 1] * half
    return u.reshape(16, c, f)


def conv3x3(x: Array, u: Array, bias: Array | None = None, flip: bool = False, relu: bool = False) -> Array:
    """3x3 convolution, stride 1, zero padding 1, via Winograd F(2x2, 3x3).

    Args:
        x: ``(N, H, W, C)`` input (any H, W >= 1; odd sizes are handled by partial edge tiles).
        u: ``(16, C, F)`` from :func:`transform_weights` (``flip=False``), or — with ``flip=True`` —
            the ``(16, F, C)`` transform of a kernel ``w (3, 3, F, C)``, in which case the result is
            the convolution with ``w[::-1, ::-1].swapaxes(2, 3)``: the input gradient ``dx`` of a
            forward convolution with ``w`` when ``x`` is ``dout``.
        bias: optional ``(F,)``, added to every output.
        relu: return ``max(conv, 0)`` instead (applied to each band of output rows while it is in
            cache; used by VGG's conv+ReLU).
    Returns:
        ``(N, H, W, F)`` in ``x``'s dtype: ``out[n,i,j,f] = bias[f] + sum_{p,q,c} xpad[n,i+p,j+q,c] k[p,q,c,f]``.
    """
    xp = get_xp(x, u)
    dt = x.dtype
    n, h, wd, c = x.shape
    f = u.shape[1] if flip else u.shape[2]
    if (u.shape[2] if flip else u.shape[1]) != c or u.shape[0] != 16:
        raise ValueError(f"winograd.conv3x3: u.shape={tuple(u.shape)} does not fit x.shape={tuple(x.shape)} "
                         f"(flip={flip})")
    th, tw = (h + 1) // 2, (wd + 1) // 2                   # tiles per column / row
    per_tile_row = 16 * n * tw * (c + f) * dt.itemsize     # bytes of V and M per row of tiles
    rows = rows_per_chunk(x, th, per_tile_row, CHUNK_BYTES)

    out = xp.empty((n, h, wd, f), dtype=dt)
    kmap = [4 * _FLIP[k // 4] + _FLIP[k % 4] for k in range(16)] if flip else list(range(16))
    ub = [u[kmap[k]].T if flip else u[k] for k in range(16)]   # (C, F) operands; .T is a view

    def chunk(span: tuple[int, int]) -> None:
        t0, t1 = span
        r = t1 - t0
        v = scratch(x, "tiles", (16, n, r, tw, c), dt)
        _input_tiles(x, t0, t1, tw, v)
        p_ = n * r * tw
        v = v.reshape(16, p_, c)
        m = scratch(x, "products", (16, p_, f), dt)
        for k in range(16):
            xp.matmul(v[k], ub[k], out=m[k])
        if bias is not None:
            # A^T E A = all-ones for E the unit matrix at tile position (1, 1): adding b to M[5] adds
            # b to all four outputs of the tile, one pass over P*F instead of four.
            m[5] += bias
        _output_tiles(m.reshape(16, n, r, tw, f), out, t0, t1, h, wd)
        if relu:
            band = out[:, 2 * t0:min(h, 2 * t1)]
            xp.maximum(band, 0, out=band)

    parallel.run(x, chunk, parallel.split(th, rows, x))
    return out


def phase_rows(x: Array, xc: Array, lo: int) -> Array:
    """Fill ``xc (N, R, S, T, C)`` with rows ``lo .. lo+R-1`` of ``x`` zero-padded by one pixel on every
    side, its columns split into ``S`` phases: ``xc[:, i, p, t] = xpad[lo + 1 + i, S t + p]`` (x row
    ``lo + i``, x column ``S t + p - 1``; zeros outside ``x``). Returns ``xc``.

    Why phases: a tile's columns ``S j .. S j + K - 1`` (tile stride ``S``, tile width ``K``) are, for
    each offset ``k < K``, column ``j + k // S`` of phase ``k % S``. So the column pass of the input
    transform reads, for every offset, one *contiguous* run of ``T * C`` values per row instead of a
    stride-``S`` gather of ``C``-long runs; NumPy's element-wise loops then run over thousands of
    elements instead of ``C`` (64 in VGG's block1), which made the transforms 2-3x faster there
    (benchmarks/README.md). The one strided copy is this fill, which the zero padding needed anyway.
    ``xc`` is a reused scratch buffer, so only the strips outside ``x`` are zeroed.
    """
    n, h, wd, c = x.shape
    r, s_, t = xc.shape[1:4]
    a, b = max(lo, 0), min(lo + r, h)                      # x rows present in the band
    if a >= b:
        xc[...] = 0
        return xc
    xc[:, :a - lo] = 0
    xc[:, b - lo:] = 0
    for p in range(s_):
        t_lo = 1 if p == 0 else 0                          # x column S t + p - 1 >= 0
        t_hi = max(t_lo, min(t, (wd - p) // s_ + 1))       # x column S t + p - 1 <= W - 1
        dst = xc[:, a - lo:b - lo, p]
        if t_hi > t_lo:
            dst[:, :, t_lo:t_hi] = x[:, a:b, s_ * t_lo + p - 1:s_ * (t_hi - 1) + p:s_]
        dst[:, :, :t_lo] = 0
        dst[:, :, t_hi:] = 0
    return xc


def _input_tiles(x: Array, t0: int, t1: int, tw: int, v: Array) -> None:
    """``V = B^T d B`` for tile rows ``[t0, t1)``, written into ``v (16, N, t1 - t0, tw, C)``."""
    xp = get_xp(x)
    n, _, wd, c = x.shape
    dt = x.dtype
    r = t1 - t0
    # The padded input rows 2*t0 .. 2*t1+1 (x row = padded row - 1), columns in 2 phases.
    xc = phase_rows(x, scratch(x, "padded", (n, 2 * r + 2, 2, tw + 1, c), dt), 2 * t0 - 1)
    # Rows: t = B^T d, for every padded column (4 passes over half the chunk).
    tr = scratch(x, "rowpass", (4, n, r, 2, tw + 1, c), dt)
    d = [xc[:, k:k + 2 * r:2] for k in range(4)]
    xp.subtract(d[0], d[2], out=tr[0])
    xp.add(d[1], d[2], out=tr[1])
    xp.subtract(d[2], d[1], out=tr[2])
    xp.subtract(d[1], d[3], out=tr[3])
    # Columns: V = t B (16 passes over a quarter of the chunk), written straight into V; tile column
    # j's offset k is phase k % 2, column j + k // 2.
    for k in range(4):
        e = [tr[k][:, :, j % 2, j // 2:j // 2 + tw] for j in range(4)]
        xp.subtract(e[0], e[2], out=v[4 * k + 0])
        xp.add(e[1], e[2], out=v[4 * k + 1])
        xp.subtract(e[2], e[1], out=v[4 * k + 2])
        xp.subtract(e[1], e[3], out=v[4 * k + 3])


def _output_tiles(m: Array, out: Array, t0: int, t1: int, h: int, wd: int) -> None:
    """``Y = A^T M A`` for tile rows ``[t0, t1)``, written into ``out``'s rows ``2*t0 .. 2*t1-1``.

    ``m`` is ``(16, N, R, tw, F)`` and is overwritten (the row pass works in place).
    """
    xp = get_xp(m)
    # Rows, in place: M[0, b] <- M[0,b] + M[1,b] + M[2,b];  M[1, b] <- M[1,b] - M[2,b] - M[3,b].
    for b in range(4):
        m[b] += m[4 + b]
        m[b] += m[8 + b]
        m[4 + b] -= m[8 + b]
        m[4 + b] -= m[12 + b]
    # Columns: Y[i, 0] = Z[i,0] + Z[i,1] + Z[i,2];  Y[i, 1] = Z[i,1] - Z[i,2] - Z[i,3].
    r = t1 - t0
    rows_odd = min(r, (h - 2 * t0) // 2)                   # rows 2i+1 that exist (odd H: last is cut)
    cols_odd = wd // 2                                     # columns 2j+1 that exist
    for i in range(2):
        z = m[4 * i:4 * i + 4]
        nr = r if i == 0 else rows_odd
        if nr <= 0:
            continue
        rows_sl = slice(2 * t0 + i, 2 * t0 + i + 2 * nr - 1, 2)
        y0 = out[:, rows_sl, 0::2]                         # (N, nr, tw, F)
        xp.add(z[0, :, :nr], z[1, :, :nr], out=y0)
        y0 += z[2, :, :nr]
        if cols_odd:
            y1 = out[:, rows_sl, 1::2]                     # (N, nr, wd // 2, F)
            xp.subtract(z[1, :, :nr, :cols_odd], z[2, :, :nr, :cols_odd], out=y1)
            y1 -= z[3, :, :nr, :cols_odd]
