"""Numerical gradients by central differences, and the relative error used to compare them.

For a scalar function ``f`` and an input ``x``, the central difference

    df/dx_i ≈ (f(x + h e_i) - f(x - h e_i)) / (2h)

has truncation error O(h^2 f''') and round-off error O(eps |f| / h). In float64 (eps ≈ 1e-16) the
sweet spot is h ≈ 1e-5 to 1e-6, where both are ~1e-10 relative: an analytic gradient that is right
agrees to ~1e-8 or better, one that is wrong is off by O(1). In float32 (eps ≈ 6e-8) the best
achievable agreement is only ~1e-3, which is why every check in numpynst runs in float64.

Three flavours, from thorough to cheap:

* :func:`numerical_gradient` — every coordinate (2 evaluations per element; small inputs only).
* :func:`numerical_gradient_sparse` — a random subset of coordinates.
* :func:`directional_derivative` — one random direction ``v``: compares ``<grad, v>`` with
  ``(f(x + h v) - f(x - h v)) / 2h``, two evaluations whatever the size of ``x``.

All functions work on NumPy and CuPy arrays (``x`` is perturbed in place and restored).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .backend import get_xp, to_float

Array = Any
ScalarFn = Callable[[Array], Any]


def rel_error(a: Array, b: Array) -> float:
    """Relative error ``||a - b||_2 / max(||a||_2, ||b||_2)`` as a Python float.

    A norm-based error rather than an element-wise maximum: element-wise ratios explode on
    coordinates whose true gradient is ~0 (e.g. behind a ReLU) and say nothing about the whole.
    Two zero arrays have error 0.
    """
    xp = get_xp(a, b)
    a = xp.asarray(a, dtype=xp.float64)
    b = xp.asarray(b, dtype=xp.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes differ, {a.shape} vs {b.shape}")
    num = to_float(xp.linalg.norm((a - b).ravel()))
    den = max(to_float(xp.linalg.norm(a.ravel())), to_float(xp.linalg.norm(b.ravel())))
    if den == 0.0:
        return 0.0 if num == 0.0 else float("inf")
    return num / den


def _scalar(f: ScalarFn, x: Array) -> float:
    return to_float(f(x))


def numerical_gradient(f: ScalarFn, x: Array, h: float = 1e-5) -> Array:
    """Gradient of scalar ``f`` at ``x`` by central differences over every coordinate.

    ``x`` is modified in place during the computation and restored. Returns an array like ``x``.
    """
    xp = get_xp(x)
    grad = xp.zeros_like(x)
    flat_x = x.reshape(-1)  # a view: x must be contiguous so writes reach f's input
    if not _shares_memory(flat_x, x):
        raise ValueError("numerical_gradient needs a contiguous x")
    flat_g = grad.reshape(-1)
    for i in range(flat_x.size):
        old = flat_x[i].copy()
        flat_x[i] = old + h
        fp = _scalar(f, x)
        flat_x[i] = old - h
        fm = _scalar(f, x)
        flat_x[i] = old
        flat_g[i] = (fp - fm) / (2.0 * h)
    return grad


def numerical_gradient_array(f: Callable[[Array], Array], x: Array, dout: Array,
                             h: float = 1e-5) -> Array:
    """Numerical gradient of ``sum(f(x) * dout)`` w.r.t. ``x`` for an array-valued ``f``.

    This is exactly what a layer's ``backward(dout, cache)`` must return, so it checks a layer
    without writing a scalar loss around it.
    """
    xp = get_xp(x, dout)
    return numerical_gradient(lambda z: xp.sum(f(z) * dout), x, h)


def numerical_gradient_sparse(f: ScalarFn, x: Array, n: int = 20, h: float = 1e-5,
                              rng: np.random.Generator | int | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """Central differences at ``n`` random flat coordinates of ``x``.

    Returns ``(idx, values)``: flat indices (NumPy int array) and the numerical partial derivatives
    there, to be compared with ``analytic.reshape(-1)[idx]``.
    """
    rng = np.random.default_rng(rng)
    xp = get_xp(x)
    flat_x = x.reshape(-1)
    if not _shares_memory(flat_x, x):
        raise ValueError("numerical_gradient_sparse needs a contiguous x")
    idx = rng.choice(flat_x.size, size=min(n, flat_x.size), replace=False)
    vals = np.empty(len(idx), dtype=np.float64)
    for k, i in enumerate(idx):
        old = flat_x[int(i)].copy()
        flat_x[int(i)] = old + h
        fp = _scalar(f, x)
        flat_x[int(i)] = old - h
        fm = _scalar(f, x)
        flat_x[int(i)] = old
        vals[k] = (fp - fm) / (2.0 * h)
    del xp
    return idx, vals


def random_direction(x: Array, rng: np.random.Generator | int | None = 0) -> Array:
    """A unit-norm Gaussian direction shaped like ``x``, on ``x``'s device and dtype."""
    rng = np.random.default_rng(rng)
    v = rng.standard_normal(x.shape)
    v /= np.linalg.norm(v)
    xp = get_xp(x)
    return xp.asarray(v, dtype=x.dtype)


def directional_derivative(f: ScalarFn, x: Array, v: Array, h: float = 1e-5) -> float:
    """``(f(x + h v) - f(x - h v)) / (2h)``, the derivative of ``f`` at ``x`` along ``v``."""
    fp = _scalar(f, x + h * v)
    fm = _scalar(f, x - h * v)
    return (fp - fm) / (2.0 * h)


def check_directional(f: ScalarFn, x: Array, grad: Array, n_dirs: int = 3, h: float = 1e-5,
                      rng: np.random.Generator | int | None = 0) -> float:
    """Largest relative error between ``<grad, v>`` and the numerical directional derivative.

    Uses ``n_dirs`` random unit directions. Each direction costs two evaluations of ``f``, so this
    checks a gradient of any size (a whole VGG's pixel gradient) in seconds.
    """
    rng = np.random.default_rng(rng)
    xp = get_xp(x, grad)
    worst = 0.0
    for _ in range(n_dirs):
        v = random_direction(x, rng)
        analytic = to_float(xp.sum(grad * v))
        numeric = directional_derivative(f, x, v, h)
        denom = max(abs(analytic), abs(numeric))
        err = 0.0 if denom == 0.0 else abs(analytic - numeric) / denom
        worst = max(worst, err)
    return worst


def _shares_memory(view: Array, base: Array) -> bool:
    xp = get_xp(base)
    if xp is np:
        return np.shares_memory(view, base)
    return view.data.ptr == base.data.ptr
