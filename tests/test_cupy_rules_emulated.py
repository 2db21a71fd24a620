"""Rules CuPy enforces and NumPy does not, emulated on the CPU, so that code meant for the GPU
fails here first (tests/test_gpu.py repeats the real thing on a device).

* ``cupy.where(condition, x, y)`` calls ``condition.astype('?')``: a Python ``bool`` condition is an
  AttributeError there, while ``numpy.where(True, x, y)`` works.

The emulation: ``numpynst.optim`` gets an array module that is NumPy except for a ``where`` with
CuPy's rule (its ``get_xp`` is patched; nothing else changes).
"""

from __future__ import annotations

import types

import numpy as np
import pytest

import numpynst.optim as optim
from numpynst.layers.fast import dispatch


def _strict_xp():
    mod = types.ModuleType("cupy_rules")
    mod.__dict__.update({k: getattr(np, k) for k in dir(np) if not k.startswith("__")})

    def where(condition, x=None, y=None):
        if x is None and y is None:
            return np.nonzero(condition)
        condition.astype("?")            # what cupy.where does first: no Python bools
        return np.where(condition, x, y)
    mod.where = where
    return mod


def test_strict_where_refuses_a_python_bool():
    xp = _strict_xp()
    with pytest.raises(AttributeError):
        xp.where(True, np.ones(2), np.zeros(2))
    np.testing.assert_array_equal(xp.where(np.array(True), np.ones(2), np.zeros(2)), np.ones(2))


@pytest.mark.parametrize("name", ["gd", "adam", "lbfgs"])
def test_minimize_with_extras_follows_cupy_where_rule(monkeypatch, name):
    """stylize's loop (``fun`` returning extra values) on every optimizer: GD and Adam report
    ``accepted`` as the Python True, which must not reach ``where``."""
    xp = _strict_xp()
    monkeypatch.setattr(optim, "get_xp", lambda *arrays: xp)
    target = np.linspace(-1.0, 2.0, 7)

    def fun(x):
        d = x - target
        f = np.asarray(0.5 * d @ d)
        return f, d.copy(), np.stack([f, 2.0 * f])

    opt = optim.make_optimizer(name, lr=None if name == "lbfgs" else 0.5)
    res = optim.minimize(fun, np.zeros(7), opt, 8)
    assert res.iterations == 8 and res.history.shape == (9, 3)
    np.testing.assert_allclose(res.history[:, 1], res.history[:, 0])          # extras of the kept point
    np.testing.assert_allclose(res.history[:, 2], 2 * res.history[:, 0])
    assert res.history[-1, 0] < res.history[0, 0]


def test_gpu_conv_method_from_the_environment(monkeypatch):
    monkeypatch.delenv("NUMPYNST_GPU_CONV", raising=False)
    assert dispatch.gpu_method() == "measure"
    for name in ("winograd", "winograd4", " IM2COL ", "implicit", "measure"):
        monkeypatch.setenv("NUMPYNST_GPU_CONV", name)
        assert dispatch.gpu_method() == name.strip().lower()
    monkeypatch.setenv("NUMPYNST_GPU_CONV", "fft")
    with pytest.raises(ValueError, match="NUMPYNST_GPU_CONV must be one of measure, im2col, implicit, winograd, "
                                         "winograd4, got 'fft'"):
        dispatch.gpu_method()
    # NumPy arrays never consult it: the CPU choice stays the measured one
    w = np.zeros((3, 3, 64, 64), np.float32)
    assert dispatch.forward_method(w, 1, 1, "auto") == "winograd"
