"""Layers: analytic backward passes vs central differences (float64), fast vs naive convolution,
pooling's floor mode and tie rule, dtype preservation, and argument validation."""

import numpy as np
import pytest

from numpynst.backend import to_host
from numpynst.gradcheck import numerical_gradient_array, rel_error
from numpynst.layers import (avgpool_backward, avgpool_backward_naive, avgpool_forward,
                             avgpool_forward_naive, col2im, conv2d_backward, conv2d_backward_naive,
                             conv2d_forward, conv2d_forward_naive, im2col, maxpool_backward,
                             maxpool_backward_naive, maxpool_forward, maxpool_forward_naive,
                             relu_backward, relu_backward_naive, relu_forward)

GRAD_TOL = 1e-7   # the required bound; float64 central differences land around 1e-10

CONV_CASES = [
    # (N, H, W, C, KH, KW, F, stride, pad)
    (2, 7, 6, 3, 3, 3, 4, 1, 1),
    (2, 7, 6, 3, 3, 3, 4, 2, 0),
    (1, 8, 5, 2, 3, 3, 3, 2, 1),
    (3, 5, 9, 4, 1, 1, 5, 1, 0),
    (2, 6, 6, 3, 2, 3, 2, 1, 0),
]


def _conv_inputs(xp, rng, case, dtype=np.float64):
    n, h, w, c, kh, kw, f, s, p = case
    x = xp.asarray(rng.standard_normal((n, h, w, c)), dtype=dtype)
    wt = xp.asarray(rng.standard_normal((kh, kw, c, f)), dtype=dtype)
    b = xp.asarray(rng.standard_normal(f), dtype=dtype)
    return x, wt, b, s, p


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_gradients_match_central_differences(xp, rng, case):
    x, w, b, s, p = _conv_inputs(xp, rng, case)
    out, cache = conv2d_forward(x, w, b, stride=s, pad=p)
    dout = xp.asarray(rng.standard_normal(out.shape))
    dx, dw, db = conv2d_backward(dout, cache)
    assert rel_error(dx, numerical_gradient_array(lambda z: conv2d_forward(z, w, b, s, p)[0], x, dout)) < GRAD_TOL
    assert rel_error(dw, numerical_gradient_array(lambda z: conv2d_forward(x, z, b, s, p)[0], w, dout)) < GRAD_TOL
    assert rel_error(db, numerical_gradient_array(lambda z: conv2d_forward(x, w, z, s, p)[0], b, dout)) < GRAD_TOL


@pytest.mark.parametrize("case", CONV_CASES)
def test_naive_conv_gradients_match_central_differences(xp, rng, case):
    x, w, b, s, p = _conv_inputs(xp, rng, case)
    out, cache = conv2d_forward_naive(x, w, b, stride=s, pad=p)
    dout = xp.asarray(rng.standard_normal(out.shape))
    dx, dw, _ = conv2d_backward_naive(dout, cache)
    assert rel_error(dx, numerical_gradient_array(lambda z: conv2d_forward_naive(z, w, b, s, p)[0], x, dout)) < GRAD_TOL
    assert rel_error(dw, numerical_gradient_array(lambda z: conv2d_forward_naive(x, z, b, s, p)[0], w, dout)) < GRAD_TOL


@pytest.mark.parametrize("case", CONV_CASES + [(4, 11, 13, 3, 3, 3, 8, 2, 1), (2, 16, 12, 8, 3, 3, 16, 1, 1)])
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_fast_conv_matches_naive(xp, rng, case, dtype, tol):
    x, w, b, s, p = _conv_inputs(xp, rng, case, dtype)
    out_fast, c_fast = conv2d_forward(x, w, b, stride=s, pad=p)
    out_naive, c_naive = conv2d_forward_naive(x, w, b, stride=s, pad=p)
    assert out_fast.shape == out_naive.shape
    assert out_fast.dtype == dtype
    assert rel_error(out_fast, out_naive) < tol
    dout = xp.asarray(rng.standard_normal(out_fast.shape), dtype=dtype)
    for a, b_ in zip(conv2d_backward(dout, c_fast), conv2d_backward_naive(dout, c_naive)):
        assert a.dtype == dtype
        assert rel_error(a, b_) < tol


def test_conv_output_size_and_skip_weight_grads(xp, rng):
    x, w, b, _, _ = _conv_inputs(xp, rng, (2, 9, 8, 3, 3, 3, 5, 1, 1))
    out, cache = conv2d_forward(x, w, b, stride=2, pad=1)
    assert out.shape == (2, 5, 4, 5)                       # (9 + 2 - 3)//2 + 1, (8 + 2 - 3)//2 + 1
    dout = xp.asarray(rng.standard_normal(out.shape))
    dx, dw, db = conv2d_backward(dout, cache, weight_grads=False)
    assert dw is None and db is None
    assert rel_error(dx, conv2d_backward(dout, cache)[0]) == 0.0


def test_im2col_col2im_are_adjoint(xp, rng):
    """<im2col(x), c> == <x, col2im(c)> for all x, c: col2im is the transpose of the gather."""
    shape = (2, 7, 6, 3)
    x = xp.asarray(rng.standard_normal(shape))
    cols = im2col(x, 3, 3, 2, 1)
    c = xp.asarray(rng.standard_normal(cols.shape))
    lhs = float(to_host((cols * c).sum()))
    rhs = float(to_host((x * col2im(c, shape, 3, 3, 2, 1)).sum()))
    assert abs(lhs - rhs) <= 1e-12 * max(abs(lhs), 1.0)


def test_relu_gradient_and_kink_rule(xp, rng):
    x = rng.standard_normal((2, 4, 5, 3))
    x[np.abs(x) < 0.05] = 0.5                    # keep the kink out of the finite differences
    x = xp.asarray(x)
    out, cache = relu_forward(x)
    dout = xp.asarray(rng.standard_normal(out.shape))
    assert rel_error(relu_backward(dout, cache), numerical_gradient_array(lambda z: relu_forward(z)[0], x, dout)) < GRAD_TOL
    z = xp.asarray([[-1.0, 0.0, 2.0]]).reshape(1, 1, 3, 1)
    o, c = relu_forward(z)
    assert to_host(relu_backward(xp.ones_like(z), c)).ravel().tolist() == [0.0, 0.0, 1.0]


def _tie_free(rng, shape):
    """Distinct values (a permutation), so no window has a tie and max pooling is differentiable."""
    return (rng.permutation(int(np.prod(shape))).reshape(shape) / 7.0).astype(np.float64)


@pytest.mark.parametrize("shape, size, stride", [((2, 7, 5, 3), 2, 2), ((1, 6, 6, 2), 3, 2),
                                                 ((2, 5, 9, 2), 3, 1), ((1, 4, 4, 1), 2, 1)])
def test_maxpool_gradient_and_naive(xp, rng, shape, size, stride):
    x = xp.asarray(_tie_free(rng, shape))
    out, cache = maxpool_forward(x, size, stride)
    assert rel_error(out, maxpool_forward_naive(x, size, stride)) == 0.0
    assert out.shape[1] == (shape[1] - size) // stride + 1          # floor mode
    dout = xp.asarray(rng.standard_normal(out.shape))
    num = numerical_gradient_array(lambda z: maxpool_forward(z, size, stride)[0], x, dout)
    assert rel_error(maxpool_backward(dout, cache), num) < GRAD_TOL


def test_maxpool_floor_mode_drops_remainder(xp):
    x = xp.arange(1 * 5 * 5 * 1, dtype=xp.float64).reshape(1, 5, 5, 1)
    out, cache = maxpool_forward(x)
    assert out.shape == (1, 2, 2, 1)
    assert to_host(out).ravel().tolist() == [6.0, 8.0, 16.0, 18.0]
    dx = to_host(maxpool_backward(xp.ones_like(out), cache))
    assert dx[0, 4, :, 0].tolist() == [0.0] * 5 and dx[0, :, 4, 0].tolist() == [0.0] * 5


def test_maxpool_ties_go_to_first_maximum(xp):
    x = xp.asarray([[3.0, 3.0], [3.0, 1.0]]).reshape(1, 2, 2, 1)
    out, cache = maxpool_forward(x)
    dx = to_host(maxpool_backward(xp.full(out.shape, 5.0), cache)).reshape(2, 2)
    assert dx.tolist() == [[5.0, 0.0], [0.0, 0.0]]
    # an all-equal window (e.g. a saturated ReLU region of zeros): still exactly one recipient
    z = xp.zeros((1, 4, 4, 2))
    o, c = maxpool_forward(z)
    d = to_host(maxpool_backward(xp.ones_like(o), c))
    assert d.sum() == o.size and d[0, 0::2, 0::2, :].sum() == o.size


@pytest.mark.parametrize("shape, size, stride", [((2, 7, 5, 3), 2, 2), ((1, 7, 7, 2), 3, 2), ((1, 5, 4, 2), 2, 1)])
def test_avgpool_gradient(xp, rng, shape, size, stride):
    x = xp.asarray(rng.standard_normal(shape))
    out, cache = avgpool_forward(x, size, stride)
    expected = to_host(x)[:, :size, :size, :].mean(axis=(1, 2))
    assert np.allclose(to_host(out)[:, 0, 0, :], expected)
    dout = xp.asarray(rng.standard_normal(out.shape))
    num = numerical_gradient_array(lambda z: avgpool_forward(z, size, stride)[0], x, dout)
    assert rel_error(avgpool_backward(dout, cache), num) < GRAD_TOL


# ------------------------------------------------------------------ fast ops == their naive twins
POOL_TWIN_CASES = [((2, 7, 5, 3), 2, 2), ((1, 7, 7, 2), 3, 2), ((2, 5, 9, 2), 3, 1), ((1, 4, 6, 2), 2, 1),
                   ((1, 9, 9, 1), 3, 3), ((2, 4, 5, 2), 1, 1)]


@pytest.mark.parametrize("shape, size, stride", POOL_TWIN_CASES)
def test_maxpool_backward_matches_naive_twin(xp, rng, shape, size, stride):
    """Tie-free float64 input: the recorded arg-max routes dout exactly as the window-by-window
    search for the first maximum does (equal for disjoint windows, sums in another order otherwise)."""
    x = xp.asarray(_tie_free(rng, shape))
    out, cache = maxpool_forward(x, size, stride)
    dout = xp.asarray(rng.standard_normal(out.shape))
    fast, naive = to_host(maxpool_backward(dout, cache)), to_host(maxpool_backward_naive(dout, x, size, stride))
    if stride >= size:
        assert np.array_equal(fast, naive)
    else:
        assert rel_error(fast, naive) < 1e-14


def test_maxpool_backward_naive_twin_keeps_the_tie_rule(xp):
    x = xp.asarray([[3.0, 3.0], [3.0, 1.0]]).reshape(1, 2, 2, 1)
    out, cache = maxpool_forward(x)
    dout = xp.full(out.shape, 5.0)
    assert to_host(maxpool_backward_naive(dout, x)).reshape(2, 2).tolist() == [[5.0, 0.0], [0.0, 0.0]]
    z = xp.zeros((1, 4, 4, 2))                              # all-equal windows: first entry of each
    o, c = maxpool_forward(z)
    ones = xp.ones_like(o)
    assert np.array_equal(to_host(maxpool_backward_naive(ones, z)), to_host(maxpool_backward(ones, c)))


@pytest.mark.parametrize("shape, size, stride", POOL_TWIN_CASES)
def test_avgpool_matches_naive_twins(xp, rng, shape, size, stride):
    x = xp.asarray(rng.standard_normal(shape))
    out, cache = avgpool_forward(x, size, stride)
    assert rel_error(out, avgpool_forward_naive(x, size, stride)) < 1e-14
    dout = xp.asarray(rng.standard_normal(out.shape))
    assert rel_error(avgpool_backward(dout, cache), avgpool_backward_naive(dout, cache)) < 1e-14


def test_relu_backward_matches_naive_twin_bit_for_bit(xp, rng):
    x = rng.standard_normal((2, 5, 4, 3))
    x[0, 0, 0, :] = 0.0                                     # the kink: derivative 0 in both
    x = xp.asarray(x)
    _, cache = relu_forward(x)
    dout = xp.asarray(rng.standard_normal(x.shape))
    assert np.array_equal(to_host(relu_backward(dout, cache)), to_host(relu_backward_naive(dout, cache)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_op_preserves_dtype(xp, rng, dtype):
    x = xp.asarray(rng.standard_normal((1, 6, 6, 3)), dtype=dtype)
    w = xp.asarray(rng.standard_normal((3, 3, 3, 2)), dtype=dtype)
    b = xp.asarray(rng.standard_normal(2), dtype=dtype)
    out, cache = conv2d_forward(x, w, b)
    assert out.dtype == dtype and all(g.dtype == dtype for g in conv2d_backward(out, cache))
    for fwd, bwd in ((relu_forward, relu_backward), (maxpool_forward, maxpool_backward),
                     (avgpool_forward, avgpool_backward)):
        o, c = fwd(x)
        assert o.dtype == dtype and bwd(o, c).dtype == dtype


def test_bad_arguments_raise_valueerror_naming_shapes(xp):
    x = xp.zeros((1, 4, 4, 3))
    w = xp.zeros((3, 3, 3, 2))
    b = xp.zeros(2)
    with pytest.raises(ValueError, match=r"x must be 4-D.*\(4, 4, 3\)"):
        conv2d_forward(x[0], w, b)
    with pytest.raises(ValueError, match=r"channel mismatch.*C=3.*C_in=2.*\(3, 3, 2, 2\)"):
        conv2d_forward(x, xp.zeros((3, 3, 2, 2)), b)
    with pytest.raises(ValueError, match=r"kernel 7x7.*larger than the padded input 6x6.*\(1, 4, 4, 3\)"):
        conv2d_forward(x, xp.zeros((7, 7, 3, 2)), b, pad=1)
    with pytest.raises(ValueError, match="stride must be a positive integer, got 0"):
        conv2d_forward(x, w, b, stride=0)
    with pytest.raises(ValueError, match="stride must be a positive integer, got -1"):
        maxpool_forward(x, 2, -1)
    with pytest.raises(ValueError, match=r"b must have shape \(2,\)"):
        conv2d_forward(x, w, xp.zeros(3))
    with pytest.raises(ValueError, match=r"window 5x5 is larger than the input 4x4"):
        avgpool_forward(x, 5, 1)
    with pytest.raises(ValueError, match=r"x must be 4-D.*\(4, 4, 3\)"):
        maxpool_forward(x[0])
    with pytest.raises(ValueError, match=r"dout.shape=\(1, 4, 4, 2\) != forward shape \(1, 4, 4, 3\)"):
        relu_backward(xp.zeros((1, 4, 4, 2)), relu_forward(x)[1])
