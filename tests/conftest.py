"""Shared fixtures: the array backends every numerical test runs on.

``xp`` is parametrized over NumPy and CuPy. Where CuPy or a GPU is missing the CuPy cases are
skipped with the reason (``pytest -rs`` shows it), and the suite still passes on the CPU.
"""

import numpy as np
import pytest

from numpynst.backend import cupy_available, resolve

_CUPY_OK, _CUPY_REASON = cupy_available()

BACKENDS = [
    pytest.param("numpy", id="numpy"),
    pytest.param("cupy", id="cupy", marks=[pytest.mark.gpu,
                                          pytest.mark.skipif(not _CUPY_OK, reason=f"no GPU backend: {_CUPY_REASON}")]),
]


@pytest.fixture(params=BACKENDS)
def xp(request):
    """The array module under test (numpy, or cupy where a GPU is usable)."""
    return resolve(request.param)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def asxp(xp, a, dtype=None):
    """Host array -> the backend under test."""
    return xp.asarray(a, dtype=dtype)


@pytest.fixture
def model(xp):
    """A tiny float64 VGG on each backend (test_objective.py, test_transfer.py)."""
    from numpynst.testing import tiny_vgg
    return tiny_vgg(dtype=np.float64, backend="numpy" if xp.__name__ == "numpy" else "cupy")
