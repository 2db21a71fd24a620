"""Winograd F(4x4, 3x3): the larger-tile variant, 4x fewer multiplications than direct convolution.

Speed only. Textbook twin: :func:`numpynst.layers.conv.conv2d_forward_naive` with a 3x3 kernel,
stride 1, pad 1 (and :func:`~numpynst.layers.conv.conv2d_backward_naive`'s ``dx`` for the
``flip=True`` transform); tests/test_conv_fast.py checks they agree.

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

Unlike F(2x2,3x3) the point set is not symmetric under ``t -> 1/t``, so the transform of the
flipped kernel (for ``dx``) is not a re-indexing of ``U``: :func:`transform_weights` takes
``flip=True`` and transforms ``w[::-1, ::-1].swapaxes(2, 3)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...backend import get_xp
from .winograd import padded_rows
from .workspace import rows_per_chunk, scratch

Array = Any

_G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
               [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])

# Scratch budget per chunk of tiles (V and M together), bytes; see winograd.CHUNK_BYTES.
CHUNK_BYTES = 8 * 2 ** 20


def transform_weights(w: Array, flip: bool = False) -> Array:
    """``U = G g G^T`` per channel pair: ``w (3, 3, C, F) -> U (36, C, F)`` (``(36, F, C)`` with flip).

    ``flip=True`` transforms ``w[::-1, ::-1].swapaxes(2, 3)``, the kernel whose convolution of ``dout``
    is ``dx``. Computed in float64 and rounded once to ``w``'s dtype (the 1/6, 1/12, 1/24 entries
    are not exact in binary).
    """
    if tuple(w.shape[:2]) != (3, 3):
        raise ValueError(f"winograd4: expects a 3x3 kernel, got w.shape={tuple(w.shape)}")
    xp = get_xp(w)
    if flip:
        w = w[::-1, ::-1].transpose(0, 1, 3, 2)
    c, f = w.shape[2:]
    g = xp.asarray(_G)
    w64 = xp.ascontiguousarray(w, dtype=xp.float64).reshape(3, 3, c * f)
    t = xp.matmul(g, w64)                                  # t[p, b, :] = sum_q G[b, q] w[p, q, :]
    u = xp.tensordot(g, t, axes=([1], [0]))                # u[a, b, :] = sum_p G[a, p] t[p, b, :]
    return xp.ascontiguousarray(u.reshape(36, c, f), dtype=w.dtype)


def conv3x3(x: Array, u: Array, bias: Array | None = None) -> Array:
    """3x3 convolution, stride 1, zero padding 1, via F(4x4, 3x3).

    Args:
        x: ``(N, H, W, C)``, any ``H, W >= 1`` (edge tiles are cut).
        u: ``(36, C, F)`` from :func:`transform_weights`.
        bias: optional ``(F,)``.
    Returns:
        ``(N, H, W, F)`` in ``x``'s dtype.
    """
    xp = get_xp(x, u)
    dt = x.dtype
    n, h, wd, c = x.shape
    if u.shape[0] != 36 or u.shape[1] != c:
        raise ValueError(f"winograd4.conv3x3: u.shape={tuple(u.shape)} does not fit x.shape={tuple(x.shape)}")
    f = u.shape[2]
    th, tw = (h + 3) // 4, (wd + 3) // 4
    wp = 4 * tw + 2
    per_tile_row = 36 * n * tw * (c + f) * dt.itemsize
    rows = rows_per_chunk(x, th, per_tile_row, CHUNK_BYTES)
    out = xp.empty((n, h, wd, f), dtype=dt)
    for t0 in range(0, th, rows):
        t1 = min(th, t0 + rows)
        r = t1 - t0
        p_ = n * r * tw
        v = scratch(x, "wino4_v", (36, n, r, tw, c), dt)
        _input_tiles(x, t0, t1, tw, wp, v)
        v = v.reshape(36, p_, c)
        m = scratch(x, "wino4_m", (36, p_, f), dt)
        for k in range(36):
            xp.matmul(v[k], u[k], out=m[k])
        if bias is not None:
            m[7] += bias      # A^T e_1 e_1^T A is all ones: b at tile position (1, 1) reaches all 16 outputs
        _output_tiles(m.reshape(36, n, r, tw, f), out, t0, t1, h, wd)
    return out


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


def _input_tiles(x: Array, t0: int, t1: int, tw: int, wp: int, v: Array) -> None:
    """``V = B^T d B`` for tile rows ``[t0, t1)`` into ``v (36, N, R, tw, C)``."""
    n, _, wd, c = x.shape
    dt = x.dtype
    r = t1 - t0
    # padded rows 4*t0 .. 4*t1+1 (x row = padded row - 1)
    xc = padded_rows(x, scratch(x, "wino4_xc", (n, 4 * r + 2, wp, c), dt), 4 * t0 - 1)
    tr = scratch(x, "wino4_t", (6, n, r, wp, c), dt)
    tmp = scratch(x, "wino4_tmp", (n, r, wp, c), dt)
    _bt([xc[:, k:k + 4 * r:4] for k in range(6)], list(tr), tmp)
    tmp2 = scratch(x, "wino4_tmp2", (n, r, tw, c), dt)
    for k in range(6):
        _bt([tr[k][:, :, j:j + 4 * tw:4] for j in range(6)], [v[6 * k + j] for j in range(6)], tmp2)


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


def _output_tiles(m: Array, out: Array, t0: int, t1: int, h: int, wd: int) -> None:
    """``Y = A^T M A`` for tile rows ``[t0, t1)``; ``m (36, N, R, tw, F)`` is overwritten."""
    n, r, tw, f = m.shape[1:]
    dt = m.dtype
    t = [scratch(m, "wino4_o1", (n, r, tw, f), dt), scratch(m, "wino4_o2", (n, r, tw, f), dt)]
    z = scratch(m, "wino4_z", (4, 6, n, r, tw, f), dt)
    # Rows: Z[i, b] = sum_a A^T[i, a] M[a, b] for each tile column position b.
    for b in range(6):
        _at([m[6 * a + b] for a in range(6)], [z[i, b] for i in range(4)], t)
    # Columns: out[4t + i, 4j + jj] = sum_b Z[i, b] A[b, jj], written into strided views of out;
    # rows/columns beyond the image (partial edge tiles) are cut.
    y = scratch(m, "wino4_y", (4, n, r, tw, f), dt)
    for i in range(4):
        nr = min(r, max(0, (h - i - 4 * t0 + 3) // 4))
        if nr <= 0:
            continue
        _at([z[i, b] for b in range(6)], [y[jj] for jj in range(4)], t)
        rows_sl = slice(4 * t0 + i, 4 * t0 + i + 4 * nr - 3, 4)
        for jj in range(4):
            nc = (wd - jj + 3) // 4
            if nc > 0:
                out[:, rows_sl, jj::4] = y[jj, :, :nr, :nc]
