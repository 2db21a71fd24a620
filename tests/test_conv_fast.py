"""The convolution fast paths agree with the naive twins: chunked im2col, dx as a convolution of
dout with the flipped kernel, chunked col2im, Winograd F(2x2,3x3); dtype is preserved and scratch
buffers never leak into results."""

import numpy as np
import pytest

from numpynst.backend import to_host
from numpynst.layers.conv import conv2d_backward, conv2d_backward_naive, conv2d_forward, conv2d_forward_naive
from numpynst.layers.fast import dispatch, winograd
from numpynst.layers.fast import im2col as fast_im2col
from numpynst.gradcheck import rel_error

TOL = {np.float64: 1e-12, np.float32: 1e-5}

# (N, H, W, C, F): odd and even sizes, 1-pixel maps, N > 1
WINO_CASES = [(1, 6, 8, 3, 4), (2, 5, 7, 4, 3), (1, 1, 1, 2, 3), (1, 2, 3, 3, 2), (2, 9, 4, 5, 6), (1, 3, 1, 2, 2)]


def _inputs(xp, rng, n, h, w, c, f, dtype, k=(3, 3)):
    x = xp.asarray(rng.standard_normal((n, h, w, c)), dtype=dtype)
    wt = xp.asarray(rng.standard_normal((*k, c, f)), dtype=dtype)
    b = xp.asarray(rng.standard_normal(f), dtype=dtype)
    return x, wt, b


@pytest.mark.parametrize("case", WINO_CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_winograd_forward_and_dx_match_naive(xp, rng, case, dtype):
    x, w, b = _inputs(xp, rng, *case, dtype)
    out, cache = conv2d_forward(x, w, b, method="winograd")
    ref, ref_cache = conv2d_forward_naive(x, w, b)
    assert out.dtype == dtype and out.shape == ref.shape
    assert rel_error(out, ref) < TOL[dtype]
    dout = xp.asarray(rng.standard_normal(out.shape), dtype=dtype)
    dx, dw, db = conv2d_backward(dout, cache, method="winograd")
    dx_ref, dw_ref, db_ref = conv2d_backward_naive(dout, ref_cache)
    for a, r in ((dx, dx_ref), (dw, dw_ref), (db, db_ref)):
        assert a.dtype == dtype
        assert rel_error(a, r) < TOL[dtype]


def test_winograd_chunks_agree_with_one_chunk(xp, rng, monkeypatch):
    x, w, b = _inputs(xp, rng, 2, 11, 9, 4, 5, np.float64)
    whole = winograd.conv3x3(x, winograd.transform_weights(w), b)
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 1)          # one row of tiles per chunk
    chunked = winograd.conv3x3(x, winograd.transform_weights(w), b)
    assert rel_error(chunked, whole) < 1e-15
    assert rel_error(chunked, conv2d_forward_naive(x, w, b)[0]) < 1e-12


def test_weight_transform_is_G_g_Gt_and_flip_is_a_permutation(xp, rng):
    w = rng.standard_normal((3, 3, 2, 3))
    G = np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]])
    expected = np.einsum("ap,pqcf,bq->abcf", G, w, G).reshape(16, 2, 3)
    u = to_host(winograd.transform_weights(xp.asarray(w)))
    assert np.abs(u - expected).max() < 1e-14
    # the transform of the flipped, channel-swapped kernel is U re-indexed by pi = (3, 1, 2, 0)
    u_flip = to_host(winograd.transform_weights(xp.asarray(np.ascontiguousarray(w[::-1, ::-1].swapaxes(2, 3)))))
    pi = [3, 1, 2, 0]
    perm = [4 * pi[k // 4] + pi[k % 4] for k in range(16)]
    assert np.abs(u_flip - u[perm].swapaxes(1, 2)).max() < 1e-14


# (N, H, W, C, KH, KW, F, stride, pad)
IM2COL_CASES = [
    (2, 7, 6, 3, 3, 3, 4, 1, 1), (1, 9, 8, 2, 3, 3, 3, 2, 1), (2, 6, 7, 3, 2, 3, 2, 1, 0),
    (1, 8, 5, 2, 5, 5, 3, 1, 2), (1, 7, 7, 3, 3, 3, 2, 3, 2), (2, 5, 5, 4, 1, 1, 3, 1, 0),
    (1, 6, 6, 2, 3, 3, 2, 1, 2),        # pad == K - 1: the flipped-kernel dx has padding 0
]


@pytest.mark.parametrize("case", IM2COL_CASES)
@pytest.mark.parametrize("chunk", [1, None])
def test_chunked_im2col_paths_match_naive(xp, rng, monkeypatch, case, chunk):
    if chunk is not None:
        monkeypatch.setattr(fast_im2col, "IM2COL_CHUNK_BYTES", chunk)   # one output row per chunk
    n, h, w_, c, kh, kw, f, s, p = case
    x, w, b = _inputs(xp, rng, n, h, w_, c, f, np.float64, (kh, kw))
    out, cache = conv2d_forward(x, w, b, s, p, method="im2col")
    ref, ref_cache = conv2d_forward_naive(x, w, b, s, p)
    assert rel_error(out, ref) < 1e-12
    dout = xp.asarray(rng.standard_normal(out.shape))
    dx_ref, dw_ref, db_ref = conv2d_backward_naive(dout, ref_cache)
    methods = ["col2im"] + (["im2col"] if s == 1 else [])
    for m in methods:
        dx, dw, db = conv2d_backward(dout, cache, method=m)
        assert rel_error(dx, dx_ref) < 1e-12, m
        assert rel_error(dw, dw_ref) < 1e-12 and rel_error(db, db_ref) < 1e-12


@pytest.mark.parametrize("method", ["im2col", "winograd", "auto"])
def test_float32_stays_float32_with_a_float64_bias(xp, rng, method):
    x = xp.asarray(rng.standard_normal((1, 6, 5, 64)), dtype=np.float32)
    w = xp.asarray(rng.standard_normal((3, 3, 64, 64)) * 0.05, dtype=np.float32)
    b64 = xp.asarray(rng.standard_normal(64))                 # float64
    out, cache = conv2d_forward(x, w, b64, method=method)
    assert out.dtype == np.float32
    assert all(g.dtype == np.float32 for g in conv2d_backward(out, cache))
    ref = conv2d_forward_naive(x.astype(np.float64), w.astype(np.float64), b64)[0]
    assert rel_error(out, ref) < 1e-5


def test_auto_dispatch_agrees_with_naive_on_wide_layers(xp, rng):
    """C = F = 64 selects Winograd under "auto" on NumPy (the VGG case; im2col on CuPy); the result
    is the naive one either way."""
    x, w, b = _inputs(xp, rng, 1, 6, 7, 64, 64, np.float64)
    out, cache = conv2d_forward(x, w, b)
    assert (cache.u is not None) == (xp is np)                 # Winograd ran and kept U for backward
    ref, ref_cache = conv2d_forward_naive(x, w, b)
    assert rel_error(out, ref) < 1e-12
    dout = xp.asarray(rng.standard_normal(out.shape))
    assert rel_error(conv2d_backward(dout, cache, False)[0], conv2d_backward_naive(dout, ref_cache, False)[0]) < 1e-12


def test_results_never_alias_scratch(xp, rng):
    """Two calls reuse the same scratch buffers; the first result must survive the second call."""
    x1, w, b = _inputs(xp, rng, 1, 8, 8, 64, 64, np.float64)
    x2 = xp.asarray(rng.standard_normal(x1.shape))
    for method in ("im2col", "winograd"):
        o1, _ = conv2d_forward(x1, w, b, method=method)
        keep = o1.copy()
        conv2d_forward(x2, w, b, method=method)
        assert rel_error(o1, keep) == 0.0


def test_bad_methods_raise_valueerror(xp, rng):
    x, w, b = _inputs(xp, rng, 1, 6, 6, 2, 2, np.float64)
    with pytest.raises(ValueError, match="method must be one of auto, im2col, winograd"):
        conv2d_forward(x, w, b, method="fft")
    with pytest.raises(ValueError, match=r"'winograd' needs a 3x3 kernel, stride 1, pad 1.*stride=2"):
        conv2d_forward(x, w, b, stride=2, method="winograd")
    _, cache = conv2d_forward(x, w, b, stride=2)
    with pytest.raises(ValueError, match=r"method 'im2col' does not apply.*stride=2"):
        conv2d_backward(xp.zeros((1, 3, 3, 2)), cache, method="im2col")
    with pytest.raises(ValueError, match=r"dout.shape=\(1, 4, 3, 2\) does not match the forward output \(1, 3, 3, 2\)"):
        conv2d_backward(xp.zeros((1, 4, 3, 2)), cache)


# ------------------------------------------------------------------------------ F(4x4, 3x3)
@pytest.mark.parametrize("case", WINO_CASES + [(1, 13, 6, 4, 5), (1, 8, 8, 3, 4)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_winograd4_forward_and_dx_match_naive(xp, rng, case, dtype):
    x, w, b = _inputs(xp, rng, *case, dtype)
    out, cache = conv2d_forward(x, w, b, method="winograd4")
    ref, ref_cache = conv2d_forward_naive(x, w, b)
    assert out.dtype == dtype and out.shape == ref.shape
    assert rel_error(out, ref) < TOL[dtype]
    dout = xp.asarray(rng.standard_normal(out.shape), dtype=dtype)
    dx = conv2d_backward(dout, cache, False, method="winograd4")[0]
    assert dx.dtype == dtype
    assert rel_error(dx, conv2d_backward_naive(dout, ref_cache, False)[0]) < TOL[dtype]


def test_winograd4_chunks_and_weight_transform(xp, rng, monkeypatch):
    from numpynst.layers.fast import winograd4
    w = rng.standard_normal((3, 3, 2, 3))
    G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                  [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])
    expected = np.einsum("ap,pqcf,bq->abcf", G, w, G).reshape(36, 2, 3)
    assert np.abs(to_host(winograd4.transform_weights(xp.asarray(w))) - expected).max() < 1e-14
    x, w, b = _inputs(xp, rng, 2, 11, 10, 3, 4, np.float64)
    u = winograd4.transform_weights(w)
    whole = winograd4.conv3x3(x, u, b)
    monkeypatch.setattr(winograd4, "CHUNK_BYTES", 1)
    assert rel_error(winograd4.conv3x3(x, u, b), whole) < 1e-15


# ------------------------------------------------------------------------------ transform cache
def test_transforms_are_cached_only_for_read_only_weights(rng):
    x = rng.standard_normal((1, 34, 34, 64))              # maps above 32x32 ...
    w = rng.standard_normal((3, 3, 64, 512)) * 0.02       # ... and 512 channels: F(4x4,3x3) when cacheable
    b = np.zeros(512)
    # writable weights: never cached, and an in-place change is seen by the next call
    out1, c1 = conv2d_forward(x, w, b)
    assert not dispatch._cacheable(w) and c1.u is not None
    w[1, 1] *= 2.0
    assert rel_error(conv2d_forward(x, w, b)[0], conv2d_forward_naive(x, w, b)[0]) < 1e-12
    # a writable base makes a read-only view uncacheable too (the base can still change)
    view = w[:]
    view.flags.writeable = False
    assert not dispatch._cacheable(view)
    # read-only weights: auto picks F(4x4,3x3) with cached U (same object on the next call)
    wr = w.copy()
    wr.flags.writeable = False
    out, cache = conv2d_forward(x, wr, b)
    assert dispatch._cacheable(wr) and (id(wr), "f4") in dispatch._U_CACHE
    u = dispatch._transformed(wr, "f4")
    assert dispatch._transformed(wr, "f4") is u and not u.flags.writeable
    ref, ref_cache = conv2d_forward_naive(x, wr, b)
    assert rel_error(out, ref) < 1e-12
    dout = rng.standard_normal(out.shape)
    assert rel_error(conv2d_backward(dout, cache, False)[0], conv2d_backward_naive(dout, ref_cache, False)[0]) < 1e-12
    # dx runs the transposed algorithm on the same U: no second transform is made or kept
    assert [k for k in dispatch._U_CACHE if k[0] == id(wr)] == [(id(wr), "f4")]
    # the entries die with the weight array
    key = id(wr)
    del wr, cache, ref_cache          # every holder of the array
    import gc
    gc.collect()
    assert not [k for k in dispatch._U_CACHE if k[0] == key]


def test_auto_follows_the_measured_table():
    def pick(c, f, hw, read_only=True):
        w = np.zeros((3, 3, c, f), np.float32)
        w.flags.writeable = not read_only
        return (dispatch.forward_method(w, 1, 1, "auto", hw * hw), dispatch.backward_method(w, 1, 1, "auto", hw * hw))
    assert pick(3, 64, 512) == ("im2col", "col2im")                 # block1_conv1: thin GEMM, narrow dx
    assert pick(64, 64, 512) == ("winograd", "winograd")             # blocks 1-2: F(2x2,3x3)
    assert pick(256, 256, 128) == ("winograd", "winograd")           # block 3
    assert pick(256, 512, 64) == ("winograd4", "winograd4")          # block 4: F(4x4,3x3), transposed dx
    assert pick(512, 512, 32) == ("winograd", "winograd")            # block5 at 512 px: small map
    assert pick(512, 512, 64) == ("winograd4", "winograd4")          # block5 at 1024 px
    assert pick(512, 512, 64, read_only=False) == ("winograd", "winograd")   # no cached U: F(2x2,3x3)
    assert pick(3, 3, 1, True)[0] == "im2col"
    w = np.zeros((1, 1, 64, 64), np.float32)                          # not 3x3: im2col / col2im
    assert (dispatch.forward_method(w, 1, 0, "auto", 100), dispatch.backward_method(w, 1, 0, "auto", 100)) == \
        ("im2col", "col2im")
