"""Bilinear backward warping of an image by a flow field, and its backward pass.

**Forward.** A flow ``f`` of shape ``(H, W, 2)`` holds, for every output pixel ``(i, j)``, where to
look in the source image: ``(i + f[i, j, 1], j + f[i, j, 0])`` (``f[..., 0]`` is the horizontal
component ``u``, ``f[..., 1]`` the vertical ``v``: OpenCV's order). The sample point falls between
four pixels; with ``y = i + v``, ``x = j + u``, ``i0 = floor(y)``, ``j0 = floor(x)``, ``a = y - i0``,
``b = x - j0``::

    out[i, j, c] = (1-a)(1-b) img[i0,   j0,   c] + (1-a) b img[i0,   j0+1, c]
                 +  a   (1-b) img[i0+1, j0,   c] +  a    b img[i0+1, j0+1, c]

Sample points outside the picture are clamped to its border (so the output is always defined);
:func:`inside` says which points were in, since a pixel that came from outside has no reliable
value (the temporal cost gives it weight 0).

**Backward.** For a fixed flow, ``out = M img`` with a sparse matrix ``M`` whose row ``(i, j)`` holds
the four weights above in the columns of the four neighbours. The gradient of a scalar ``L`` with
respect to the image is therefore ``dL/dimg = M^T dL/dout``: every output pixel sends its upstream
gradient back to its four source pixels, scaled by the same weights,

    dimg[i0 + di, j0 + dj, c] += w_(di,dj)[i, j] * dout[i, j, c]      (di, dj in {0, 1})

Several output pixels may read the same source pixel, so this is a scatter-*add* with repeated
indices. Fancy-index ``+=`` silently keeps only one of the duplicates; ``bincount`` with weights sums
them and runs unchanged on NumPy and CuPy (:func:`warp_backward`). The flow's own gradient is never
needed here: the temporal cost warps the *previous* frame's result, which is a constant.

:func:`warp_naive` is the textbook loop over pixels, kept as the reference the vectorised version
is tested against.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ..backend import get_xp

Array = Any


class WarpPlan(NamedTuple):
    """The four source pixels of every output pixel and their weights, for one flow and image size.

    ``index``: ``(4, H*W)`` flat indices ``i * W + j`` into the source; ``weight``: ``(4, H*W)`` the
    bilinear weights (each column sums to 1); ``shape``: ``(H, W)``.
    """

    index: Array
    weight: Array
    shape: tuple[int, int]


def _corners(coord: Array, n: int, xp) -> tuple[Array, Array, Array]:
    """Clamped ``(lower index, upper index, fraction)`` of sample coordinates along an axis of length n."""
    c = xp.clip(coord, 0, n - 1)
    lo = xp.floor(c).astype(xp.int64)
    lo = xp.minimum(lo, max(n - 2, 0))           # so that lo + 1 is still in the picture
    hi = xp.minimum(lo + 1, n - 1)
    return lo, hi, c - lo


def plan(flow: Array) -> WarpPlan:
    """The :class:`WarpPlan` of ``flow`` ``(H, W, 2)``; compute it once to warp many images."""
    xp = get_xp(flow)
    H, W = int(flow.shape[0]), int(flow.shape[1])
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must have shape (H, W, 2), got {tuple(flow.shape)}")
    ii = xp.arange(H, dtype=flow.dtype)[:, None]
    jj = xp.arange(W, dtype=flow.dtype)[None, :]
    i0, i1, a = _corners(ii + flow[..., 1], H, xp)
    j0, j1, b = _corners(jj + flow[..., 0], W, xp)
    index = xp.stack([i0 * W + j0, i0 * W + j1, i1 * W + j0, i1 * W + j1]).reshape(4, -1)
    weight = xp.stack([(1 - a) * (1 - b), (1 - a) * b, a * (1 - b), a * b]).reshape(4, -1)
    return WarpPlan(index, weight, (H, W))


def inside(flow: Array, margin: float = 0.0) -> Array:
    """Boolean ``(H, W)``: the sample point of each pixel lies in the picture (``margin`` pixels of slack)."""
    xp = get_xp(flow)
    H, W = flow.shape[:2]
    y = xp.arange(H, dtype=flow.dtype)[:, None] + flow[..., 1]
    x = xp.arange(W, dtype=flow.dtype)[None, :] + flow[..., 0]
    return (y >= -margin) & (y <= H - 1 + margin) & (x >= -margin) & (x <= W - 1 + margin)


def _as_plan(flow_or_plan: Array | WarpPlan) -> WarpPlan:
    return flow_or_plan if isinstance(flow_or_plan, WarpPlan) else plan(flow_or_plan)


def warp(img: Array, flow: Array | WarpPlan) -> Array:
    """``img`` ``(H, W, C)`` or ``(1, H, W, C)`` sampled bilinearly at ``pixel + flow`` (see the module)."""
    p = _as_plan(flow)
    shape = img.shape
    flat = img.reshape(p.shape[0] * p.shape[1], shape[-1])
    out = (p.weight[..., None] * flat[p.index]).sum(axis=0)
    return out.astype(img.dtype, copy=False).reshape(shape)


def warp_backward(dout: Array, flow: Array | WarpPlan) -> Array:
    """``dL/dimg = M^T dout``: the gradient of :func:`warp` with respect to the image (same shape as ``dout``)."""
    p = _as_plan(flow)
    xp = get_xp(dout)
    shape = dout.shape
    n = p.shape[0] * p.shape[1]
    d = dout.reshape(n, shape[-1])
    index = p.index.reshape(-1)
    # one bincount per channel: sums every contribution to a source pixel, duplicates included
    cols = [xp.bincount(index, weights=(p.weight * d[:, c][None, :]).reshape(-1), minlength=n)
            for c in range(shape[-1])]
    return xp.stack(cols, axis=-1).astype(dout.dtype, copy=False).reshape(shape)


def warp_naive(img, flow):
    """The same warp as a plain loop over output pixels (NumPy only; the reference for tests)."""
    import math

    import numpy as np
    img = np.asarray(img)
    H, W = img.shape[-3], img.shape[-2]
    src = img.reshape(H, W, -1)
    out = np.zeros_like(src, dtype=np.float64)
    for i in range(H):
        for j in range(W):
            y = min(max(i + float(flow[i, j, 1]), 0.0), H - 1.0)
            x = min(max(j + float(flow[i, j, 0]), 0.0), W - 1.0)
            i0, j0 = min(int(math.floor(y)), max(H - 2, 0)), min(int(math.floor(x)), max(W - 2, 0))
            i1, j1 = min(i0 + 1, H - 1), min(j0 + 1, W - 1)
            a, b = y - i0, x - j0
            out[i, j] = ((1 - a) * (1 - b) * src[i0, j0] + (1 - a) * b * src[i0, j1]
                         + a * (1 - b) * src[i1, j0] + a * b * src[i1, j1])
    return out.astype(img.dtype).reshape(img.shape)
