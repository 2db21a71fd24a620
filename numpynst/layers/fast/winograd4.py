"""Winograd F(4x4, 3x3): the larger-tile variant, 4x fewer multiplications than direct convolution.

Speed only. Textbook twin: :func:`numpynst.layers.conv.conv2d_forward_naive` with a 3x3 kernel,
stride 1, pad 1 (and :func:`~numpynst.layers.conv.conv2d_backward_naive`'s ``dx`` for
:func:`conv3x3_dx`); tests/test_conv_fast.py checks they agree.

Same idea as :mod:`numpynst.layers.fast.winograd` (read that first), with 6x6 input tiles
producing 4x4 output tiles (interpolation points 0, 1, -1, 1/2, -1/2, infinity; Lavin & Gray 2015)::

          [4  0 -5  0  1  0]          [ 1/4     0     0 ]
          [0 -4 -4  1  1  0]          [-1/6  -1/6  -1/6 ]          [1  1  1  1  1  0]
    B^T = [0  4 -4 -1  1  0]      G = [-1/6   1/6  -1/6 ]    A^T = [0  1 -1  2 -2  0]
          [0 -2 -1  2  1  0]          [1/24  1/12   1/6 ]          [0  1  1  4  4  0]
          [0  2 -1 -2  1  0]          [1/24 -1/12   1/6 ]          [0  1 -1  8 -8  1]
          [0  4  0 -5  0  1]          [  0     0     1  ]

    out tile (4x4) = A^T [ (G g G^T) * (B^T d B) ] A:   36 GEMMs  M[k] (P, F) = V[k] (P, C) @ U[k] (C, F)

with ``P = N ceil(H/4) ceil(W/4)``: ``36/16 = 2.25`` products per output pixel and channel pair
instead of 9 (F(2x2,3x3): 4). The price: transforms with more terms (coefficients up to 8), i.e.
more element-wise passes per tile, and float32 results ~1e-6 to 1e-5 away from the direct sum
(the larger tile amplifies rounding; still far below what style transfer can see). It therefore
pays only where the GEMM dominates: many channels on small maps (VGG blocks 4-5), and only when
``U`` is computed once and reused (the transform of a 512x512 kernel costs about as much as the
products it saves in one call), see :mod:`numpynst.layers.fast.dispatch`.

**dx.** Unlike F(2x2,3x3) the point set is not symmetric under ``t -> 1/t``, so the transform of
the flipped kernel is not a re-indexing of ``U``; it would be a second transform of the same size,
cached per layer (0.19 GiB for VGG19 up to block5_conv1). :func:`conv3x3_dx` instead runs the
*transpose* of the forward algorithm, which needs only ``U`` itself (see its section below).

**Parallel and fused.** Rows of tiles are chunked (``CHUNK_BYTES`` of ``V`` and ``M`` per chunk) and
the chunks run on every core (:mod:`numpynst.layers.fast.parallel`); the input's columns are split
into 4 phases first (:func:`numpynst.layers.fast.winograd.phase_rows`) so that every element-wise
pass reads long contiguous runs; bias and (optionally) the ReLU after the convolution are applied
inside the output transform.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...backend import get_xp
from . import parallel
from .winograd import phase_rows
from .workspace import rows_per_chunk, scratch

Array = Any

_G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
               [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])

# Scratch budget per chunk of tiles (V and M together), bytes; see winograd.CHUNK_BYTES.
CHUNK_BYTES = 8 * 2 ** 20


def transform_weights(w: Array) -> Array:
    """``U = G g G^T`` per channel pair: ``w (3, 3, C, F) -> U (36, C, F)``; forward and dx both use it.

    Computed in float64 and rounded once to ``w``'s dtype (the 1/6, 1/12, 1/24 entries are not exact
    in binary).
    """
    if tuple(w.shape[:2]) != (3, 3):
        raise ValueError(f"winograd4: expects a 3x3 kernel, got w.shape={tuple(w.shape)}")
    xp = get_xp(w)
    c, f = w.shape[2:]
    g = xp.asarray(_G)
    w64 = xp.ascontiguousarray(w, dtype=xp.float64).reshape(3, 3, c * f)
    t = xp.matmul(g, w64)                                  # t[p, b, :] = sum_q G[b, q] w[p, q, :]
    u = xp.tensordot(g, t, axes=([1], [0]))                # u[a, b, :] = sum_p G[a, p] t[p, b, :]
    return xp.ascontiguousarray(u.reshape(36, c, f), dtype=w.dtype)


def conv3x3(x: Array, u: Array, bias: Array | None = None, relu: bool = False) -> Array:
    """3x3 convolution, stride 1, zero padding 1, via F(4x4, 3x3).

    Args:
        x: ``(N, H, W, C)``, any ``H, W >= 1`` (edge tiles are cut).
        u: ``(36, C, F)`` from :func:`transform_weights`.
        bias: optional ``(F,)``.
        relu: return ``max(conv, 0)`` instead, applied as the output transform writes each value
            (no separate pass over the output; used by VGG's conv+ReLU).
    Returns:
        ``(N, H, W, F)`` in ``x``'s dtype.
    """
    xp = get_xp(x, u)
    dt = x.dtype
    n, h, wd, c = x.shape
    if u.shape[0] != 36 or u.shape[1] != c:
        raise ValueError(f"winograd4.conv3x3: u.shape={tuple(u.shape)} does not fit x.shape={tuple(x.shape)}")
    f = u.shape[2]
    th, tw, spans = _tile_rows(x, c, f)
    out = xp.empty((n, h, wd, f), dtype=dt)

    def chunk(span: tuple[int, int]) -> None:
        t0, t1 = span
        r = t1 - t0
        p_ = n * r * tw
        v = scratch(x, "tiles", (36, n, r, tw, c), dt)
        _input_tiles(x, t0, t1, tw, v)
        v = v.reshape(36, p_, c)
        m = scratch(x, "products", (36, p_, f), dt)
        for k in range(36):
            xp.matmul(v[k], u[k], out=m[k])
        if bias is not None:
            m[7] += bias      # A^T e_1 e_1^T A is all ones: b at tile position (1, 1) reaches all 16 outputs
        _output_tiles(m.reshape(36, n, r, tw, f), out, t0, t1, h, wd, relu)

    parallel.run(x, chunk, spans)
    return out


def _tile_rows(a: Array, c: int, f: int) -> tuple[int, int, list[tuple[int, int]]]:
    """``(th, tw, spans)`` for an ``(N, H, W, .)`` array convolved from ``C`` to ``F`` channels: rows
    and columns of 4x4 output tiles, and the chunks of tile rows (``CHUNK_BYTES`` of ``V`` and ``M``
    each, their number a multiple of the worker count)."""
    n, h, wd = a.shape[:3]
    th, tw = (h + 3) // 4, (wd + 3) // 4
    per_tile_row = 36 * n * tw * (c + f) * a.dtype.itemsize
    return th, tw, parallel.split(th, rows_per_chunk(a, th, per_tile_row, CHUNK_BYTES), a)


def _bt(d: list, o: list, tmp: Array) -> None:
    """``o[i] = sum_j B^T[i, j] d[j]`` for the six (equal-shape) arrays ``d``; ``tmp`` is scratch.

    Common subexpressions: a = d4 - d2, b = d3 - d1 (so r3, r4 = a +- 2b, r5 = (d5 - d3) - 4b,
    r0 = 4 (d0 - d2) + a, r1 = (d3 + d4) - 4 (d1 + d2), r2 = (d4 - d3) + 4 (d1 - d2)).
    """
    xp = get_xp(tmp)
    a, b = o[3], o[4]            # computed first into outputs that are written last
    xp.subtract(d[0], d[2], out=tmp)
    tmp *= 4
    xp.subtract(d[4], d[2], out=a)
    xp.add(tmp, a, out=o[0])
    xp.add(d[1], d[2], out=tmp)
    tmp *= 4
    xp.add(d[3], d[4], out=o[1])
    o[1] -= tmp
    xp.subtract(d[1], d[2], out=tmp)
    tmp *= 4
    xp.subtract(d[4], d[3], out=o[2])
    o[2] += tmp
    xp.subtract(d[3], d[1], out=tmp)                       # tmp = b
    xp.subtract(d[5], d[3], out=o[5])
    xp.multiply(tmp, 4, out=b)                             # o[4] as a temporary: 4b
    o[5] -= b                                              # r5 = (d5 - d3) - 4b
    tmp *= 2                                               # 2b
    xp.subtract(a, tmp, out=o[4])                          # r4 = a - 2b
    a += tmp                                               # r3 = a + 2b (in place in o[3])


def _input_tiles(x: Array, t0: int, t1: int, tw: int, v: Array) -> None:
    """``V = B^T d B`` for tile rows ``[t0, t1)`` into ``v (36, N, R, tw, C)``."""
    n, _, wd, c = x.shape
    dt = x.dtype
    r = t1 - t0
    # padded rows 4*t0 .. 4*t1+1 (x row = padded row - 1), columns in 4 phases (winograd.phase_rows)
    xc = phase_rows(x, scratch(x, "padded", (n, 4 * r + 2, 4, tw + 1, c), dt), 4 * t0 - 1)
    tr = scratch(x, "rowpass", (6, n, r, 4, tw + 1, c), dt)
    tmp = scratch(x, "tmp", (n, r, 4, tw + 1, c), dt)
    _bt([xc[:, k:k + 4 * r:4] for k in range(6)], list(tr), tmp)
    tmp2 = scratch(x, "tmp2", (n, r, tw, c), dt)
    for k in range(6):      # tile column j's offset i is phase i % 4, column j + i // 4
        _bt([tr[k][:, :, i % 4, i // 4:i // 4 + tw] for i in range(6)], [v[6 * k + i] for i in range(6)], tmp2)


def _at(m: list, o: list, t: list) -> None:
    """``o[i] = sum_j A^T[i, j] m[j]`` (4 outputs from 6 inputs); ``t`` is two scratch arrays.

    With s12 = m1 + m2, d12 = m1 - m2, s34 = m3 + m4, d34 = m3 - m4:
    o0 = m0 + s12 + s34, o1 = d12 + 2 d34, o2 = s12 + 4 s34, o3 = d12 + 8 d34 + m5.
    ``o`` must not alias ``m``; ``o[2]`` and ``o[3]`` double as the s12 and d12 temporaries.
    """
    xp = get_xp(t[0])
    s34, d34 = t
    xp.add(m[3], m[4], out=s34)
    xp.subtract(m[3], m[4], out=d34)
    s12, d12 = o[2], o[3]
    xp.add(m[1], m[2], out=s12)
    xp.subtract(m[1], m[2], out=d12)
    xp.add(m[0], s12, out=o[0])
    o[0] += s34
    xp.multiply(d34, 2, out=o[1])
    o[1] += d12
    s34 *= 4
    s12 += s34                                             # o2 = s12 + 4 s34
    d34 *= 8
    d12 += d34
    d12 += m[5]                                            # o3 = d12 + 8 d34 + m5


def _output_tiles(m: Array, out: Array, t0: int, t1: int, h: int, wd: int, relu: bool = False) -> None:
    """``Y = A^T M A`` (``max(Y, 0)`` with ``relu``) for tile rows ``[t0, t1)``; ``m (36, N, R, tw, F)``
    is overwritten."""
    n, r, tw, f = m.shape[1:]
    dt = m.dtype
    t = [scratch(m, "tmp3", (n, r, tw, f), dt), scratch(m, "tmp4", (n, r, tw, f), dt)]
    z = scratch(m, "halfway", (4, 6, n, r, tw, f), dt)
    # Rows: Z[i, b] = sum_a A^T[i, a] M[a, b] for each tile column position b.
    for b in range(6):
        _at([m[6 * a + b] for a in range(6)], [z[i, b] for i in range(4)], t)
    # Columns: out[4t + i, 4j + jj] = sum_b Z[i, b] A[b, jj], written into strided views of out;
    # rows/columns beyond the image (partial edge tiles) are cut.
    y = scratch(m, "out_rows", (4, n, r, tw, f), dt)
    for i in range(4):
        nr = min(r, max(0, (h - i - 4 * t0 + 3) // 4))
        if nr <= 0:
            continue
        _at([z[i, b] for b in range(6)], [y[jj] for jj in range(4)], t)
        rows_sl = slice(4 * t0 + i, 4 * t0 + i + 4 * nr - 3, 4)
        for jj in range(4):
            nc = (wd - jj + 3) // 4
            if nc > 0 and relu:
                get_xp(m).maximum(y[jj, :, :nr, :nc], 0, out=out[:, rows_sl, jj::4])
            elif nc > 0:
                out[:, rows_sl, jj::4] = y[jj, :, :nr, :nc]


# ------------------------------------------------------------------------------ dx: the transpose
# dx of y = conv3x3(x, u) is the transpose of the same linear map applied to dy. Per tile the
# forward map is  x-tile (6x6, overlapping) -> V = B^T d B -> M[k] = V[k] U[k] -> Y = A^T M A (4x4),
# so its transpose is  dY (4x4, disjoint) -> M' = A dY A^T (6x6) -> G[k] = M'[k] U[k]^T -> D = B G B^T
# (6x6), and the D of neighbouring tiles, which overlap by two rows/columns, are *added* into dx.
# It uses the forward pass's U (transposed inside the GEMM, free), so dx needs no second weight
# transform: the flipped-kernel route needed one of the same size, 36/9 of the weights, cached for
# every layer (0.19 GiB for VGG19 up to block5_conv1: the difference between numpynst's and
# PyTorch's peak memory at 512 px).

def _a(d: list, o: list) -> None:
    """``o[a] = sum_i A^T[i, a] d[i]`` (6 outputs from 4; ``A^T`` of the module docstring).

    o0 = d0, o5 = d3; with e = d0 + d2, od = d1 + d3: o1 = e + od, o2 = e - od;
    with e4 = d0 + 4 d2, od8 = 2 d1 + 8 d3: o3 = e4 + od8, o4 = e4 - od8.
    """
    xp = get_xp(o[0])
    o[0][...] = d[0]
    o[5][...] = d[3]
    xp.add(d[0], d[2], out=o[3])               # e (o3, o4 as temporaries)
    xp.add(d[1], d[3], out=o[4])               # od
    xp.add(o[3], o[4], out=o[1])
    xp.subtract(o[3], o[4], out=o[2])
    xp.multiply(d[2], 4, out=o[3])
    o[3] += d[0]                               # e4
    xp.multiply(d[3], 4, out=o[4])
    o[4] += d[1]
    o[4] *= 2                                  # od8 = 2 (d1 + 4 d3)
    o[3] += o[4]                               # o3 = e4 + od8
    o[4] *= -2
    o[4] += o[3]                               # o4 = (e4 + od8) - 2 od8 = e4 - od8


def _b(d: list, o: list, tmp: Array) -> None:
    """``o[l] = sum_b B^T[b, l] d[b]`` (``B d``, 6 from 6); ``o`` must not alias ``d``.

    With m12 = d1 - d2, m34 = d3 - d4, s12 = d1 + d2, s34 = d3 + d4:
    o0 = 4 d0, o1 = 4 (d5 - m12) - 2 m34, o2 = -5 d0 - 4 s12 - s34, o3 = m12 + 2 m34 - 5 d5,
    o4 = d0 + s12 + s34, o5 = d5.
    """
    xp = get_xp(tmp)
    m12, m34 = o[1], o[3]                      # computed into outputs that are finished last
    xp.subtract(d[1], d[2], out=m12)
    xp.subtract(d[3], d[4], out=m34)
    xp.add(d[1], d[2], out=o[4])               # s12
    xp.add(d[3], d[4], out=tmp)                # s34
    xp.multiply(o[4], -4, out=o[2])
    o[2] -= tmp
    o[4] += tmp
    o[4] += d[0]                               # o4 = d0 + s12 + s34
    xp.multiply(d[0], 5, out=tmp)
    o[2] -= tmp                                # o2 = -5 d0 - 4 s12 - s34
    xp.multiply(d[0], 4, out=o[0])
    xp.subtract(d[5], m12, out=tmp)
    tmp *= 4                                   # 4 (d5 - m12)
    m34 *= 2                                   # 2 m34
    m12 += m34
    xp.multiply(d[5], 5, out=o[5])             # o5 as a temporary: 5 d5
    m12 -= o[5]                                # o3 = m12 + 2 m34 - 5 d5 (in o[1] for now)
    xp.subtract(tmp, m34, out=tmp)             # 4 (d5 - m12) - 2 m34 = o1
    o[3][...] = m12
    o[1][...] = tmp
    o[5][...] = d[5]


def _band_to_rows(band: Array, lo: int, hi: int, dest: Array, dest_row0: int, wd: int) -> None:
    """Write band rows ``[lo, hi)`` (phase layout ``(N, rows, 4, T, C)``: padded column ``4 s + p``
    at ``[..., p, s]``) into ``dest`` rows ``dest_row0 ..``, dropping the padding columns."""
    t = band.shape[3]
    for p in range(4):
        s_lo = 1 if p == 0 else 0                          # x column 4 s + p - 1 >= 0
        s_hi = min(t, (wd - p) // 4 + 1)                   # x column <= W - 1
        if s_hi > s_lo:
            dest[:, dest_row0:dest_row0 + hi - lo, 4 * s_lo + p - 1:4 * (s_hi - 1) + p:4] = band[:, lo:hi, p, s_lo:s_hi]


def conv3x3_dx(dy: Array, u: Array) -> Array:
    """``dx`` of ``y = conv3x3(x, u)`` (3x3, stride 1, pad 1) given ``dy = dL/dy``, from the same ``U``.

    Args:
        dy: ``(N, H, W, F)``. u: ``(36, C, F)``, the forward transform (:func:`transform_weights`).
    Returns:
        ``(N, H, W, C)``: ``dx[n,y,z,c] = sum_{p,q,f} dypad[n, y+p, z+q, f] w[2-p, 2-q, c, f]``, i.e.
        :func:`numpynst.layers.conv.conv2d_backward_naive`'s ``dx`` (tests/test_conv_fast.py).

    Chunked over rows of tiles like the forward pass, on every core. A chunk's tiles add into padded
    rows ``4 t0 .. 4 t1 + 1``; the two rows it shares with each neighbouring chunk are kept apart
    ("seams") and summed after all chunks are done, so chunks never write the same element. The
    scratch buffers are the forward pass's (same names): a thread never runs both at once, and
    sharing them keeps one set of buffers per thread instead of two.
    """
    xp = get_xp(dy, u)
    dt = dy.dtype
    n, h, wd, f = dy.shape
    if u.shape[0] != 36 or u.shape[2] != f:
        raise ValueError(f"winograd4.conv3x3_dx: u.shape={tuple(u.shape)} does not fit dy.shape={tuple(dy.shape)}")
    c = u.shape[1]
    th, tw, spans = _tile_rows(dy, f, c)
    dx = xp.empty((n, h, wd, c), dtype=dt)
    seams: dict = {}

    def chunk(i: int) -> None:
        t0, t1 = spans[i]
        r = t1 - t0
        p_ = n * r * tw
        # dY tiles, disjoint 4x4: yc[i, j][:, t, s] = dy[:, 4 (t0 + t) + i, 4 s + j], zeros outside.
        yc = scratch(dy, "padded", (4, 4, n, r, tw, f), dt)
        for a in range(4):
            nr = min(r, max(0, (h - 1 - a - 4 * t0) // 4 + 1))
            for b in range(4):
                nc = max(0, (wd - 1 - b) // 4 + 1)
                dst = yc[a, b]
                if nr and nc:
                    dst[:, :nr, :nc] = dy[:, 4 * t0 + a:4 * t0 + a + 4 * (nr - 1) + 1:4, b:b + 4 * (nc - 1) + 1:4]
                dst[:, nr:] = 0
                dst[:, :nr, nc:] = 0
        # M' = A dY A^T: rows (4 -> 6) for each column, then columns.
        z = scratch(dy, "halfway", (6, 4, n, r, tw, f), dt)
        for b in range(4):
            _a([yc[a, b] for a in range(4)], [z[k, b] for k in range(6)])
        m = scratch(dy, "tiles", (36, n, r, tw, f), dt)
        for k in range(6):
            _a([z[k, b] for b in range(4)], [m[6 * k + l] for l in range(6)])
        m = m.reshape(36, p_, f)
        g = scratch(dy, "products", (36, p_, c), dt)
        for k in range(36):
            xp.matmul(m[k], u[k].T, out=g[k])
        g = g.reshape(36, n, r, tw, c)
        # D = B G B^T: columns (for each tile row position k), then rows; D overwrites G.
        s = scratch(dy, "rowpass", (6, 6, n, r, tw, c), dt)
        tmp = scratch(dy, "tmp2", (n, r, tw, c), dt)
        for k in range(6):
            _b([g[6 * k + l] for l in range(6)], [s[k, l] for l in range(6)], tmp)
        for l in range(6):
            _b([s[k, l] for k in range(6)], [g[6 * k + l] for k in range(6)], tmp)
        # Overlap-add into the band: padded row 4 (t0 + t) + kk, padded column 4 s + p at
        # band[:, t, kk, p, s]; D[k, l] of tile (t, s) goes to band[:, t + k // 4, k % 4, l % 4, s + l // 4].
        band = scratch(dy, "out_rows", (n, r + 1, 4, 4, tw + 1, c), dt)
        for k in range(4):
            for l in range(4):
                band[:, :r, k, l, :tw] = g[6 * k + l]
        band[:, r] = 0
        band[:, :r, :, :, tw] = 0
        for k in range(4):
            for l in (4, 5):
                band[:, :r, k, l - 4, 1:tw + 1] += g[6 * k + l]
        for k in (4, 5):
            for l in range(6):
                band[:, 1:r + 1, k - 4, l % 4, l // 4:l // 4 + tw] += g[6 * k + l]
        rows = band.reshape(n, 4 * (r + 1), 4, tw + 1, c)       # local row L = padded row 4 t0 + L
        lo = 2 if t0 > 0 else 1                                  # L = 0 is padded row 0: no x row
        hi = min(4 * r, h + 1 - 4 * t0)                          # exclusive rows end; x row < h
        if t1 == th:
            hi = min(4 * r + 2, h + 1 - 4 * t0)
        if hi > lo:
            _band_to_rows(rows, lo, hi, dx, 4 * t0 + lo - 1, wd)
        top = rows[:, 0:2].copy() if t0 > 0 else None
        bottom = rows[:, 4 * r:4 * r + 2].copy() if t1 < th else None
        seams[i] = (top, bottom)

    parallel.run(dy, chunk, list(range(len(spans))))
    for i in range(len(spans) - 1):
        t1 = spans[i][1]
        both = seams[i][1] + seams[i + 1][0]                      # padded rows 4 t1, 4 t1 + 1
        hi = min(2, h + 1 - 4 * t1)
        if hi > 0:
            _band_to_rows(both, 0, hi, dx, 4 * t1 - 1, wd)
    return dx
