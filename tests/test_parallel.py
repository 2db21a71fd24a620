"""The chunks-on-every-core machinery (numpynst.layers.fast.parallel) and what runs through it: the
results agree with the naive twins whatever the number of chunks, the same call gives the same bits,
BLAS gets its thread count back, errors and nested calls behave, and the fused/in-place forms equal
the separate ops."""

import threading

import numpy as np
import pytest

from numpynst import layers
from numpynst.gradcheck import rel_error
from numpynst.layers.conv import conv2d_backward, conv2d_backward_naive, conv2d_forward, conv2d_forward_naive
from numpynst.layers.fast import im2col as fast_im2col
from numpynst.layers.fast import masking, parallel, winograd, winograd4

BLAS = parallel._blas()[0] is not None


def test_split_covers_the_range_in_equal_chunks_a_multiple_of_the_workers(monkeypatch):
    monkeypatch.setattr(parallel, "parallel_for", lambda ref: 2)
    for total, per in [(1, 5), (7, 3), (16, 3), (128, 3), (10, 100), (5, 1)]:
        spans = parallel.split(total, per, np.zeros(1))
        assert spans[0][0] == 0 and spans[-1][1] == total
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))           # contiguous, no overlap
        sizes = [b - a for a, b in spans]
        assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
        assert max(sizes) <= per or len(spans) == total
        assert len(spans) % 2 == 0 or len(spans) == total                     # no thread idles at the end
    assert parallel.split(0, 3, np.zeros(1)) == []


def test_run_calls_every_item_once_and_restores_blas_threads():
    before = parallel.workers()
    seen, lock = [], threading.Lock()
    inside = []

    def fn(i):
        with lock:
            seen.append(i)
            if BLAS:
                inside.append(parallel._blas()[1]())        # BLAS threads while the region runs
    parallel.run(np.zeros(1), fn, list(range(23)))
    assert sorted(seen) == list(range(23))
    assert parallel.workers() == before
    if BLAS and before > 1:
        assert set(inside) == {1}                          # one BLAS thread per worker: no over-subscription
        assert parallel._blas()[1]() == before


def test_run_reraises_the_first_error_and_leaves_no_region_open():
    def fn(i):
        if i == 3:
            raise KeyError("chunk 3")
    with pytest.raises(KeyError, match="chunk 3"):
        parallel.run(np.zeros(1), fn, list(range(8)))
    assert parallel._state["depth"] == 0
    if BLAS:
        assert parallel._blas()[1]() == parallel.workers()


def test_a_call_from_inside_a_chunk_runs_serially_in_that_thread():
    outer = []

    def inner_fn(i):
        outer.append(threading.current_thread().name)

    def fn(i):
        assert parallel.parallel_for(np.zeros(1)) == 1
        parallel.run(np.zeros(1), inner_fn, [0, 1, 2])    # nested: must not wait on the same pool
    parallel.run(np.zeros(1), fn, [0, 1, 2, 3])
    assert len(outer) == 12


# ------------------------------------------------------------------------------ conv paths
CASES = [(1, 17, 13, 5, 6), (2, 9, 22, 4, 3), (1, 40, 9, 3, 5)]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("method", ["im2col", "winograd", "winograd4"])
@pytest.mark.parametrize("chunk", [1, 4000])
def test_many_chunks_agree_with_naive_and_are_reproducible(rng, monkeypatch, case, method, chunk):
    # tiny chunk budgets: every conv runs as many chunks on the pool (and dx's seams are exercised)
    for mod, name in ((winograd, "CHUNK_BYTES"), (winograd4, "CHUNK_BYTES"), (fast_im2col, "IM2COL_CHUNK_BYTES")):
        monkeypatch.setattr(mod, name, chunk)
    n, h, w_, c, f = case
    x = rng.standard_normal((n, h, w_, c))
    w = rng.standard_normal((3, 3, c, f))
    b = rng.standard_normal(f)
    out, cache = conv2d_forward(x, w, b, method=method)
    ref, ref_cache = conv2d_forward_naive(x, w, b)
    assert rel_error(out, ref) < 1e-12
    dout = rng.standard_normal(out.shape)
    dx_method = {"im2col": "col2im"}.get(method, method)
    dx = conv2d_backward(dout, cache, False, method=dx_method)[0]
    assert rel_error(dx, conv2d_backward_naive(dout, ref_cache, False)[0]) < 1e-12
    again = conv2d_backward(dout, cache, False, method=dx_method)[0]
    assert np.array_equal(dx, again) and np.array_equal(out, conv2d_forward(x, w, b, method=method)[0])


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_transposed_and_flipped_winograd4_dx_agree_with_naive(rng, monkeypatch, dtype, tol):
    monkeypatch.setattr(winograd4, "CHUNK_BYTES", 1)          # one row of tiles per chunk: many seams
    x = rng.standard_normal((2, 23, 18, 6)).astype(dtype)
    w = rng.standard_normal((3, 3, 6, 7)).astype(dtype)
    _, cache = conv2d_forward(x, w, None, method="winograd4")
    _, ref_cache = conv2d_forward_naive(x, w, np.zeros(7, dtype))
    dout = rng.standard_normal((2, 23, 18, 7)).astype(dtype)
    ref = conv2d_backward_naive(dout, ref_cache, False)[0]
    for m in ("winograd4", "winograd4_flip"):
        dx = conv2d_backward(dout, cache, False, method=m)[0]
        assert dx.dtype == dtype and rel_error(dx, ref) < tol, m


@pytest.mark.parametrize("method", ["im2col", "winograd", "winograd4"])
def test_fused_relu_is_relu_of_the_convolution(rng, monkeypatch, method):
    monkeypatch.setattr(winograd4, "CHUNK_BYTES", 1)
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 1)
    x = rng.standard_normal((1, 11, 9, 4))
    w = rng.standard_normal((3, 3, 4, 5))
    b = rng.standard_normal(5)
    x[0, 3, 3, 0] = np.nan                                     # NaN stays NaN through max(., 0), as in relu_forward
    fused, _ = conv2d_forward(x, w, b, method=method, relu=True)
    plain, _ = conv2d_forward(x, w, b, method=method)
    expected, _ = layers.relu_forward(plain)
    assert np.array_equal(np.isnan(fused), np.isnan(expected))
    ok = ~np.isnan(expected)
    assert np.array_equal(fused[ok], expected[ok]) and (fused[ok] >= 0).all()


def test_relu_forward_in_place_and_into_out(rng):
    x = rng.standard_normal((2, 33, 17, 6))
    ref = np.maximum(x, 0)
    out, cache = layers.relu_forward(x.copy())
    assert np.array_equal(out, ref) and cache.out is out
    y = x.copy()
    same, _ = layers.relu_forward(y, out=y)
    assert same is y and np.array_equal(y, ref)
    with pytest.raises(ValueError, match="relu_forward: out has shape"):
        layers.relu_forward(x, out=np.empty((2, 33, 17, 5)))


@pytest.mark.parametrize("shape, size, stride", [((2, 37, 22, 3), 2, 2), ((1, 41, 30, 5), 3, 3),
                                                 ((1, 23, 19, 4), 3, 2), ((1, 20, 20, 2), 2, 3)])
def test_pooling_in_many_bands_matches_the_naive_twins(rng, monkeypatch, shape, size, stride):
    monkeypatch.setattr(masking, "CHUNK_ELEMENTS", 50)        # a few output rows per band: many bands
    x = rng.standard_normal(shape)
    x[0, 0:2, 0:2, 0] = 1.5                                   # a tie: the first maximum wins
    out, cache = layers.maxpool_forward(x, size, stride)
    assert np.array_equal(out, layers.maxpool_forward_naive(x, size, stride))
    dout = rng.standard_normal(out.shape)
    dx, ref = layers.maxpool_backward(dout, cache), layers.maxpool_backward_naive(dout, x, size, stride)
    if stride >= size:                                        # disjoint windows: one term per element
        assert np.array_equal(dx, ref)
    else:                                                     # overlaps add terms in another order
        assert rel_error(dx, ref) < 1e-15
    g = rng.standard_normal(x.shape)
    assert np.array_equal(layers.relu_backward(g, layers.relu_forward(x)[1]),
                          layers.relu_backward_naive(g, layers.relu_forward(x)[1]))


@pytest.mark.skipif(not BLAS, reason="BLAS is not an OpenBLAS this module can steer")
def test_one_blas_thread_and_a_single_chunk_hold_blas_at_one_thread():
    """Between and instead of parallel regions (a lone chunk, an optimiser's dot products) BLAS runs
    on one thread too, so that its own threads are never woken to spin beside the pool's; the count
    is given back afterwards."""
    set_, get = parallel._blas()
    saved = get()
    set_(2)
    try:
        seen = []
        with parallel.one_blas_thread(np.zeros(1)):
            seen.append(get())
        assert get() == 2
        parallel.run(np.zeros(1), lambda item: seen.append(get()), ["one chunk"])
        assert seen == [1, 1] and get() == 2
        with parallel.one_blas_thread([0.0]):          # not a NumPy array: nothing changes
            assert get() == 2
    finally:
        set_(saved)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_products_in_bands_of_rows_equal_the_whole_products(rng, monkeypatch, workers):
    monkeypatch.setattr(parallel, "parallel_for", lambda ref: workers)
    A, B = rng.standard_normal((37, 6)), rng.standard_normal((6, 4))
    out = np.full((37, 4), np.nan)
    assert parallel.rows_product(A, B, out) is out
    assert rel_error(out, A @ B) < 1e-14
    G = parallel.gram_rows(A)
    assert rel_error(G, A.T @ A) < 1e-14 and np.array_equal(G, G.T)
