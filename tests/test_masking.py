"""numpynst.layers.fast.masking: the bit-pattern selections equal NumPy's where/copyto exactly, NaN
and inf included, for every float width, contiguous or strided; and the ops built on them keep
their rules."""

from __future__ import annotations

import numpy as np
import pytest

from numpynst.layers import pooling
from numpynst.layers.fast import masking

SPECIALS = [np.nan, -np.nan, np.inf, -np.inf, -0.0, 0.0]


def _data(rng, shape, dtype):
    a = rng.standard_normal(shape).astype(dtype)
    flat = a.reshape(-1)
    flat[:len(SPECIALS)] = SPECIALS
    return a


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_select_is_where_bit_for_bit(rng, dtype):
    a = _data(rng, (3, 7, 5), dtype)
    mask = rng.random(a.shape) < 0.5
    got = masking.select(mask, a)
    want = np.where(mask, a, dtype(0))
    assert got.dtype == a.dtype
    assert np.array_equal(got.view(f"u{a.itemsize}"), want.view(f"u{a.itemsize}"))   # -0.0, NaN payloads too


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_select_into_strided_out_and_in_place(rng, dtype):
    big = np.full((4, 10, 6), 7, dtype=dtype)
    out = big[:, ::2, 1::2]                                     # a strided window, like pooling's
    a = _data(rng, out.shape, dtype)
    mask = rng.random(a.shape) < 0.5
    assert masking.select(mask, a, out=out) is out
    assert np.array_equal(out, np.where(mask, a, 0), equal_nan=True)
    assert (big[:, 1::2] == 7).all() and (big[:, ::2, ::2] == 7).all()   # nothing else touched
    b = a.copy()
    masking.select(mask, b, out=b)
    assert np.array_equal(b, np.where(mask, a, 0), equal_nan=True)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_update_is_copyto_where_bit_for_bit(rng, dtype):
    a = _data(rng, (5, 9), dtype)
    out = _data(rng, (5, 9), dtype)[::-1]
    mask = rng.random(a.shape) < 0.5
    want = out.copy()
    np.copyto(want, a, where=mask)
    assert masking.update(mask, a, out) is out
    assert np.array_equal(out.view(f"u{a.itemsize}"), want.view(f"u{a.itemsize}"))


def test_non_float_falls_back_to_where(rng):
    a = rng.integers(-5, 5, (4, 4))
    mask = a > 0
    assert np.array_equal(masking.select(mask, a), np.where(mask, a, 0))


@pytest.mark.parametrize("size, stride", [(2, 2), (2, 3), (3, 2), (2, 1)])
def test_maxpool_backward_routes_like_the_loop(rng, size, stride):
    """Disjoint windows (written) and overlapping ones (accumulated) against an explicit loop."""
    x = rng.standard_normal((2, 9, 8, 3))
    out, cache = pooling.maxpool_forward(x, size, stride)
    dout = rng.standard_normal(out.shape)
    want = np.zeros_like(x)
    for n, i, j, c in np.ndindex(*out.shape):
        p, q = divmod(int(cache.argmax[n, i, j, c]), size)
        want[n, i * stride + p, j * stride + q, c] += dout[n, i, j, c]
    got = pooling.maxpool_backward(dout, cache)
    if stride >= size:                          # one contribution per element: exact
        assert np.array_equal(got, want)
    else:                                       # sums, in another order
        np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-14)


def test_maxpool_nan_never_takes_over():
    """A NaN first in its window stays the maximum; a later NaN never replaces a number."""
    x = np.array([np.nan, 1, 2, np.nan, 5, np.nan, 0, 3], dtype=np.float32).reshape(1, 2, 4, 1)
    out, cache = pooling.maxpool_forward(x, 2, 2)
    assert np.isnan(out[0, 0, 0, 0]) and cache.argmax[0, 0, 0, 0] == 0
    assert out[0, 0, 1, 0] == 3 and cache.argmax[0, 0, 1, 0] == 3


def test_chunked_paths_match_where_on_a_large_activation(rng, monkeypatch):
    """Several chunks (incl. a ragged last one) of a 4-D array, in place and into a fresh array."""
    monkeypatch.setattr(masking, "CHUNK_ELEMENTS", 7 * 6 * 3)
    key = _data(rng, (2, 23, 6, 3), np.float32)
    a = _data(rng, key.shape, np.float32)
    want = np.where(key > 0, a, np.float32(0))
    assert np.array_equal(masking.select_positive(key, a), want, equal_nan=True)
    b = a.copy()
    assert masking.select_positive(key, b, out=b) is b and np.array_equal(b, want, equal_nan=True)
    out = a[::-1].copy()
    want_u = out.copy()
    np.copyto(want_u, a, where=key > 0)
    assert np.array_equal(masking.update(key > 0, a, out), want_u, equal_nan=True)


def test_relu_backward_into_out_and_in_place(rng):
    from numpynst.layers import relu as activations
    x = rng.standard_normal((1, 5, 4, 3))
    _, cache = activations.relu_forward(x)
    dout = rng.standard_normal(x.shape)
    want = np.where(x > 0, dout, 0.0)
    buf = np.empty_like(dout)
    assert activations.relu_backward(dout, cache, out=buf) is buf and np.array_equal(buf, want)
    assert activations.relu_backward(dout, cache, out=dout) is dout and np.array_equal(dout, want)
    with pytest.raises(ValueError, match="out has shape"):
        activations.relu_backward(dout, cache, out=np.empty((1, 5, 4, 2)))
