"""What-if for ``vgg_step.py --whatif eltwise``: branch-free ReLU/max-pool backward and pool forward.

Not part of numpynst. On the benchmark machine ``np.where(mask, a, 0)``, ``np.copyto(..., where=mask)``
and boolean-mask assignment run at ~0.3 GB/s when the mask is random (a ReLU or max-pool mask is
~50/50: the CPU mispredicts every other element), 10x slower than a multiply by the same mask. The
ReLU and max-pool backward passes and the pool forward's arg-max bookkeeping use exactly those ops,
and together cost ~30% of a numpynst VGG iteration at 256 px (``--breakdown``). These drop-in
replacements give bit-identical results (checked by :func:`check` before a what-if run) with
multiplies and bitwise ANDs instead, to measure what the change would buy end to end. The owners
of numpynst/activations.py and numpynst/pooling.py can take the idea (or not).
"""

from __future__ import annotations

import numpy as np

from numpynst import activations, pooling


def relu_backward(dout, cache):
    """``dout`` where ``out > 0``, else +0.0 — as ``where(out > 0, dout, 0)`` (NaN behind a dead unit
    becomes 0 too), by AND-ing the bit patterns with an all-ones/all-zeros mask."""
    out = cache.out
    if dout.shape != out.shape:
        return activations.relu_backward(dout, cache)
    xp = np
    uint = {4: xp.uint32, 8: xp.uint64}[dout.dtype.itemsize]
    mask = (out > 0).astype(uint)
    xp.negative(mask, out=mask)                       # 1 -> 0xFF..FF, 0 -> 0 (unsigned wrap-around)
    res = xp.ascontiguousarray(dout).view(uint) & mask
    return res.view(dout.dtype)


def maxpool_forward(x, size=2, stride=2):
    """Same output and first-maximum arg-max as pooling.maxpool_forward, branch-free (2x2/2 only)."""
    if size != 2 or stride != 2:
        return pooling.maxpool_forward(x, size, stride)
    ho, wo = pooling._check(x, size, stride, "maxpool_forward")
    out = pooling._window(x, 0, 0, ho, wo, stride).copy()
    argmax = np.zeros(out.shape, dtype=np.uint8)
    for k in range(1, 4):
        v = pooling._window(x, k // 2, k % 2, ho, wo, stride)
        better = v > out                               # strict: ties keep the earlier offset
        np.maximum(out, v, out=out)
        np.multiply(argmax, ~better, out=argmax)       # argmax = better ? k : argmax
        argmax += better.view(np.uint8) * np.uint8(k)
    return out, pooling.MaxPoolCache(tuple(x.shape), argmax, size, stride)


def maxpool_backward(dout, cache):
    """Route dout to the arg-max by multiplying with ``argmax == k`` (2x2/2: windows are disjoint)."""
    x_shape, argmax, size, stride = cache
    if size != 2 or stride != 2 or tuple(dout.shape) != tuple(argmax.shape):
        return pooling.maxpool_backward(dout, cache)
    ho, wo = argmax.shape[1:3]
    dx = np.zeros(x_shape, dtype=dout.dtype)
    for k in range(4):
        np.multiply(dout, argmax == k, out=pooling._window(dx, k // 2, k % 2, ho, wo, stride))
    return dx


def check(rng=None) -> None:
    """Raise AssertionError unless the replacements match numpynst's ops bit for bit."""
    rng = rng or np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((1, 9, 8, 5)).astype(dtype)
        x[0, :2, :2, 0] = 1.0                          # a tie
        x[0, 2, 2, 1] = np.nan
        o1, c1 = pooling.maxpool_forward(x)
        o2, c2 = maxpool_forward(x)
        assert np.array_equal(o1, o2, equal_nan=True) and np.array_equal(c1.argmax, c2.argmax)
        d = rng.standard_normal(o1.shape).astype(dtype)
        assert np.array_equal(pooling.maxpool_backward(d, c1), maxpool_backward(d, c2))
        r, rc = activations.relu_forward(x)
        g = rng.standard_normal(x.shape).astype(dtype)
        g[0, 0, 0, :] = np.nan
        a, b = activations.relu_backward(g, rc), relu_backward(g, rc)
        assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)


def install(layers_mod) -> None:
    """Swap the replacements into ``numpynst.layers`` (what VGG calls)."""
    check()
    layers_mod.relu_backward = relu_backward
    layers_mod.maxpool_forward = maxpool_forward
    layers_mod.maxpool_backward = maxpool_backward
