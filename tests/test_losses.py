"""Losses: every gradient against central differences (float64), the Gram matrix against a naive
double loop, closed-form values, invariances, dtypes, and the error messages for bad shapes."""

import numpy as np
import pytest

from numpynst.backend import to_host
from numpynst.gradcheck import numerical_gradient, numerical_gradient_array, rel_error
from numpynst.losses import (box_slices, content_at_blank, content_cost, gram_backward, gram_matrix,
                             smoothness, smoothness_box, style_at_blank, style_constant,
                             style_from_gram, style_layer_cost, style_layer_cost_weighted, style_target,
                             total_variation,
                             total_variation_value)

GRAD_TOL = 1e-8   # float64 central differences of these polynomials land around 1e-10

SHAPES = [(1, 5, 4, 3), (4, 3, 2)]   # with and without the batch axis of 1


def _randn(xp, rng, shape, dtype=np.float64):
    return xp.asarray(rng.standard_normal(shape), dtype=dtype)


def _is_0d(xp, J, dtype):
    return isinstance(J, xp.ndarray) and J.ndim == 0 and J.dtype == dtype


# ---------------------------------------------------------------------------------------------
# Gram matrix

def _gram_naive(a):
    """G[k, l] = sum_{i,j} a[i,j,k] a[i,j,l] by explicit loops (host, float64)."""
    a = np.asarray(a, dtype=np.float64).reshape(a.shape[-3:])
    nH, nW, nC = a.shape
    G = np.zeros((nC, nC))
    for k in range(nC):
        for l in range(nC):
            s = 0.0
            for i in range(nH):
                for j in range(nW):
                    s += a[i, j, k] * a[i, j, l]
            G[k, l] = s
    return G


@pytest.mark.parametrize("shape", SHAPES)
def test_gram_matches_naive_loops(xp, rng, shape):
    a = _randn(xp, rng, shape)
    G = gram_matrix(a)
    assert G.shape == (shape[-1], shape[-1])
    np.testing.assert_allclose(to_host(G), _gram_naive(to_host(a)), rtol=1e-12, atol=1e-12)


def test_gram_is_symmetric_psd(xp, rng):
    a = _randn(xp, rng, (1, 6, 5, 7))
    G = to_host(gram_matrix(a))
    np.testing.assert_array_equal(G, G.T)
    eig = np.linalg.eigvalsh(G)
    assert eig.min() >= -1e-12 * eig.max()
    # Rank <= number of pixels: with 3 pixels and 7 channels, 4 eigenvalues vanish.
    eig_low = np.linalg.eigvalsh(to_host(gram_matrix(_randn(xp, rng, (1, 3, 1, 7)))))
    assert np.sum(np.abs(eig_low) < 1e-10 * eig_low.max()) == 4


def test_gram_sums_over_pixels(xp):
    # A constant activation c over P pixels: every entry of G is P c^2 (grows with area).
    for nH, nW in [(2, 3), (4, 6)]:
        G = to_host(gram_matrix(xp.full((nH, nW, 3), 2.0)))
        np.testing.assert_allclose(G, np.full((3, 3), nH * nW * 4.0))


@pytest.mark.parametrize("shape", SHAPES)
def test_gram_backward_matches_numerical(xp, rng, shape):
    a = _randn(xp, rng, shape)
    dG = _randn(xp, rng, (shape[-1], shape[-1]))   # deliberately not symmetric
    num = numerical_gradient_array(gram_matrix, a, dG)
    da = gram_backward(dG, a)
    assert da.shape == a.shape
    assert rel_error(da, num) < GRAD_TOL


def test_gram_rejects_bad_shapes(xp, rng):
    with pytest.raises(ValueError, match=r"\(2, 4, 4, 3\)"):
        gram_matrix(_randn(xp, rng, (2, 4, 4, 3)))   # a batch of 2 has no single Gram matrix
    with pytest.raises(ValueError, match=r"\(4, 3\)"):
        gram_matrix(_randn(xp, rng, (4, 3)))
    with pytest.raises(ValueError, match=r"\(3, 3\).*\(2, 2\)"):
        gram_backward(_randn(xp, rng, (2, 2)), _randn(xp, rng, (4, 4, 3)))


# ---------------------------------------------------------------------------------------------
# Content cost

@pytest.mark.parametrize("shape", SHAPES)
def test_content_gradient_matches_numerical(xp, rng, shape):
    a_C, a_G = _randn(xp, rng, shape), _randn(xp, rng, shape)
    J, grad = content_cost(a_C, a_G)
    assert _is_0d(xp, J, np.float64) and grad.shape == a_G.shape
    num = numerical_gradient(lambda z: content_cost(a_C, z)[0], a_G)
    assert rel_error(grad, num) < GRAD_TOL


def test_content_values(xp, rng):
    a_C = _randn(xp, rng, (1, 5, 4, 3))
    J, grad = content_cost(a_C, a_C.copy())
    assert float(J) == 0.0 and float(xp.abs(grad).max()) == 0.0
    # a_G = a_C + 1: every squared difference is 1, J = n / (4 n) = 1/4 whatever the size.
    for shape in [(1, 5, 4, 3), (2, 7, 6)]:
        a_C = _randn(xp, rng, shape)
        J, _ = content_cost(a_C, a_C + 1.0)
        assert abs(float(J) - 0.25) < 1e-14


def test_content_accepts_batch_axis_on_either_side(xp, rng):
    a_C, a_G = _randn(xp, rng, (5, 4, 3)), _randn(xp, rng, (1, 5, 4, 3))
    J1, g1 = content_cost(a_C, a_G)
    J2, g2 = content_cost(a_C[None], a_G[0])
    assert g1.shape == (1, 5, 4, 3) and g2.shape == (5, 4, 3)
    assert float(J1) == float(J2)
    np.testing.assert_array_equal(to_host(g1)[0], to_host(g2))


def test_content_shape_mismatch_names_both_shapes(xp, rng):
    with pytest.raises(ValueError, match=r"\(1, 4, 4, 3\).*\(1, 4, 5, 3\)"):
        content_cost(_randn(xp, rng, (1, 4, 4, 3)), _randn(xp, rng, (1, 4, 5, 3)))


# ---------------------------------------------------------------------------------------------
# Style cost

@pytest.mark.parametrize("shape", SHAPES)
def test_style_gradient_matches_numerical(xp, rng, shape):
    G_S = gram_matrix(_randn(xp, rng, shape))
    a_G = _randn(xp, rng, shape)
    J, grad = style_layer_cost(G_S, a_G)
    assert _is_0d(xp, J, np.float64) and grad.shape == a_G.shape
    num = numerical_gradient(lambda z: style_layer_cost(G_S, z)[0], a_G)
    assert rel_error(grad, num) < GRAD_TOL


def test_style_gradient_with_nonsymmetric_target(xp, rng):
    # The general dJ/dA = 2c A (D + D^T) stays exact even for a target that is not a Gram matrix.
    a_G = _randn(xp, rng, (1, 3, 4, 3))
    G_S = _randn(xp, rng, (3, 3))
    num = numerical_gradient(lambda z: style_layer_cost(G_S, z)[0], a_G)
    assert rel_error(style_layer_cost(G_S, a_G)[1], num) < GRAD_TOL


def test_style_values(xp, rng):
    a = _randn(xp, rng, (1, 5, 4, 3))
    J, grad = style_layer_cost(gram_matrix(a), a)
    assert abs(float(J)) < 1e-28 and float(xp.abs(grad).max()) < 1e-14
    # Ones over P pixels and nC channels against a zero target: G = P * ones, so
    # J = nC^2 P^2 / (2 P nC)^2 = 1/4 for every size.
    for nH, nW, nC in [(5, 4, 3), (2, 9, 6)]:
        J, _ = style_layer_cost(xp.zeros((nC, nC)), xp.ones((1, nH, nW, nC)))
        assert abs(float(J) - 0.25) < 1e-14


def test_style_invariant_to_pixel_permutation(xp, rng):
    G_S = gram_matrix(_randn(xp, rng, (1, 5, 4, 3)))
    a_G = _randn(xp, rng, (1, 5, 4, 3))
    perm = rng.permutation(20)
    a_P = a_G.reshape(20, 3)[xp.asarray(perm)].reshape(1, 5, 4, 3)
    J, grad = style_layer_cost(G_S, a_G)
    J_P, grad_P = style_layer_cost(G_S, a_P)
    assert abs(float(J) - float(J_P)) <= 1e-12 * abs(float(J))
    # ... and the gradient is permuted the same way as the pixels.
    np.testing.assert_allclose(to_host(grad_P).reshape(20, 3), to_host(grad).reshape(20, 3)[perm],
                               rtol=1e-10, atol=1e-14)


def test_style_shape_mismatch_names_both_shapes(xp, rng):
    with pytest.raises(ValueError, match=r"\(3, 3\).*\(1, 4, 4, 5\)"):
        style_layer_cost(xp.zeros((3, 3)), _randn(xp, rng, (1, 4, 4, 5)))


# ---------------------------------------------------------------------------------------------
# Total variation

@pytest.mark.parametrize("shape", [(1, 5, 4, 3), (2, 3, 4, 2), (5, 4, 3)])
def test_tv_gradient_matches_numerical(xp, rng, shape):
    x = _randn(xp, rng, shape)
    J, grad = total_variation(x)
    assert _is_0d(xp, J, np.float64) and grad.shape == x.shape
    num = numerical_gradient(lambda z: total_variation(z)[0], x)
    assert rel_error(grad, num) < GRAD_TOL


def test_tv_values(xp):
    J, grad = total_variation(xp.full((1, 6, 5, 3), 7.5))
    assert float(J) == 0.0 and float(xp.abs(grad).max()) == 0.0
    # A ramp along W, x[..., j, :] = j: every horizontal difference is 1 and every vertical one 0,
    # so J = H (W - 1) C / (H W C) = (W - 1) / W — a mean, whatever H and C.
    for H, W, C in [(4, 5, 3), (9, 2, 1)]:
        ramp = xp.broadcast_to(xp.arange(W, dtype=xp.float64)[None, None, :, None], (1, H, W, C))
        J, _ = total_variation(xp.ascontiguousarray(ramp))
        assert abs(float(J) - (W - 1) / W) < 1e-14


def test_tv_rejects_bad_shapes(xp):
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        total_variation(xp.zeros((4, 4)))
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        total_variation_value(xp.zeros((4, 4)))


@pytest.mark.parametrize("shape", [(1, 7, 5, 3), (9, 4, 3), (1, 1, 6, 3), (1, 6, 1, 3), (2, 10, 3, 2)])
@pytest.mark.parametrize("rows", [1, 2, 3, 6, 256])
def test_tv_value_in_bands_equals_tv(xp, rng, shape, rows):
    # every difference counted once whatever the band height (bands that split the image at each
    # row, at uneven places, or not at all), and float64 sums even for float32 input
    x = _randn(xp, rng, shape) * 50
    assert abs(total_variation_value(x, rows) - float(total_variation(x)[0])) <= 1e-12 * float(total_variation(x)[0])
    x32 = x.astype(np.float32)
    J64 = float(total_variation(x32.astype(np.float64))[0])
    assert abs(total_variation_value(x32, rows) - J64) <= 1e-12 * J64


# ---------------------------------------------------------------------------------------------
# the smoothness term over boxes (tiles, bands, the whole image)

def test_smoothness_is_total_variation():
    assert smoothness is total_variation


@pytest.mark.parametrize("shape", [(1, 7, 5, 3), (9, 4, 3)])
def test_whole_image_is_one_box(xp, rng, shape):
    x = _randn(xp, rng, shape)
    H, W = shape[-3], shape[-2]
    rows, cols = box_slices(x.shape, 0, H, 0, W)
    assert (rows, cols) == (slice(0, H), slice(0, W))
    J, grad = smoothness_box(x, H, W, 1.0 / x.size)
    J0, grad0 = total_variation(x)
    assert float(J) == float(J0) and bool(xp.all(grad == grad0))


@pytest.mark.parametrize("hw,tile", [((21, 30), (8, 16)), ((7, 9), (3, 2)), ((5, 6), (5, 6)), ((6, 5), (1, 1))])
def test_boxes_of_a_partition_add_up_to_the_whole(xp, rng, hw, tile):
    """Interiors that partition the image own every difference once: the boxes' J parts and
    gradients (added into their places, halo included) are the whole image's."""
    x = _randn(xp, rng, (1, *hw, 3)) * 40
    J, grad = total_variation(x)
    Jt, gt = 0.0, xp.zeros_like(x)
    for y0 in range(0, hw[0], tile[0]):
        for x0 in range(0, hw[1], tile[1]):
            y1, x1 = min(y0 + tile[0], hw[0]), min(x0 + tile[1], hw[1])
            rows, cols = box_slices(x.shape, y0, y1, x0, x1)
            j, g = smoothness_box(x[:, rows, cols], y1 - y0, x1 - x0, 1.0 / x.size)
            Jt += float(j)
            gt[:, rows, cols] += g
    assert abs(Jt - float(J)) <= 1e-13 * float(J) and rel_error(gt, grad) < 1e-13


def test_banded_value_is_the_float64_value(xp, rng):
    x = _randn(xp, rng, (1, 13, 6, 3), np.float32) * 50
    J64 = float(total_variation(x.astype(np.float64))[0])
    for rows in (1, 4, 13, 100):
        assert abs(total_variation_value(x, rows) - J64) <= 1e-12 * J64


# ---------------------------------------------------------------------------------------------
# the style cost from the Gram matrix; the style target's rescaling; the calibration values

def test_style_from_gram_gradient_matches_central_differences(xp, rng):
    n = 5 * 4 * 3
    G = gram_matrix(_randn(xp, rng, (1, 5, 4, 3)))
    G_S = gram_matrix(_randn(xp, rng, (1, 5, 4, 3)))
    J, dG = style_from_gram(G, G_S, n)
    assert _is_0d(xp, J, np.float64) and dG.shape == G.shape
    num = numerical_gradient(lambda z: style_from_gram(z, G_S, n)[0], G.copy())
    assert rel_error(dG, num) < 1e-9
    k = style_constant(n)
    assert k == 1.0 / (2 * n)
    assert abs(float(J) - float(xp.sum((k * (G - G_S)) ** 2))) <= 1e-14 * float(J)
    # weights and a scale fold into the gradient only: d/dG of (w1 w2 / s) J
    J2, dG2 = style_from_gram(G, G_S, n, (0.3, 7.0), 4.0)
    assert float(J2) == float(J) and rel_error(dG2, dG * (0.3 * 7.0 / 4.0)) < 1e-14
    # G is not modified
    G0 = G.copy()
    style_from_gram(G, G_S, n)
    assert bool(xp.all(G == G0))


def test_style_layer_cost_is_gram_then_style_from_gram_then_gram_backward(xp, rng):
    a = _randn(xp, rng, (1, 4, 6, 5))
    G_S = gram_matrix(_randn(xp, rng, (1, 4, 6, 5)))
    J, grad = style_layer_cost(G_S, a)
    J1, dG = style_from_gram(gram_matrix(a), G_S, a.size)
    assert float(J) == float(J1) and bool(xp.all(grad == gram_backward(dG, a)))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("symmetric", [True, False])
def test_weighted_style_cost_is_the_weight_times_the_textbook_one(xp, rng, shape, symmetric):
    """The lean path (syrk Gram, the weight folded into the C x C matrix, the product written into
    a given buffer) against weight x the textbook composition, float64; and its own gradient
    against central differences, for a Gram target and for a target that is not symmetric."""
    a = _randn(xp, rng, shape)
    G_S = gram_matrix(_randn(xp, rng, shape)) if symmetric else _randn(xp, rng, (shape[-1], shape[-1]))
    w = 0.37
    J, g = style_layer_cost(G_S, a)
    out = xp.full(a.shape, np.nan)                     # whatever the buffer held is overwritten
    Jw, gw = style_layer_cost_weighted(G_S, a, w, out)
    assert gw is out and _is_0d(xp, Jw, np.float64)
    assert float(Jw) == pytest.approx(float(J), rel=1e-14)
    assert rel_error(gw, w * g) < 1e-13
    num = numerical_gradient(lambda z: w * style_layer_cost_weighted(G_S, z, w)[0], a)
    assert rel_error(style_layer_cost_weighted(G_S, a, w)[1], num) < GRAD_TOL
    with pytest.raises(ValueError, match="G_S must be"):
        style_layer_cost_weighted(G_S[:-1, :-1], a, w)
    with pytest.raises(ValueError, match="out must be a C-contiguous"):
        style_layer_cost_weighted(G_S, a, w, xp.zeros(a.shape[::-1]).T)


@pytest.mark.parametrize("workers", [2, 3])
def test_weighted_style_cost_in_bands_of_rows(xp, rng, monkeypatch, workers):
    """On several threads the Gram matrix is a sum over bands of rows and the gradient is written band
    by band: the same numbers as the one-product path to float64 rounding, whatever the count."""
    from numpynst.layers.fast import parallel
    a = _randn(xp, rng, (1, 7, 5, 4))
    G_S = gram_matrix(_randn(xp, rng, (1, 6, 5, 4)))
    J1, g1 = style_layer_cost_weighted(G_S, a, 0.5)
    monkeypatch.setattr(parallel, "parallel_for", lambda ref: workers if type(ref).__module__ == "numpy" else 1)
    J2, g2 = style_layer_cost_weighted(G_S, a, 0.5)
    assert float(J2) == pytest.approx(float(J1), rel=1e-13)
    assert rel_error(g2, g1) < 1e-13


def test_weighted_style_cost_keeps_float32(xp, rng):
    a = _randn(xp, rng, (1, 4, 5, 3), np.float32)
    J, g = style_layer_cost_weighted(gram_matrix(_randn(xp, rng, (1, 4, 5, 3), np.float32)), a, 2.0)
    assert _is_0d(xp, J, np.float32) and g.dtype == np.float32


def test_style_target_rescales_by_the_pixel_ratio(xp, rng):
    G = gram_matrix(_randn(xp, rng, (1, 6, 4, 3)))
    T = style_target(G, 12, 24, 0.5)
    assert T.dtype == G.dtype and rel_error(T, G * 0.25) < 1e-15


def test_blank_values_are_the_costs_at_zero(xp, rng):
    a_C = _randn(xp, rng, (1, 4, 5, 3))
    assert content_at_blank(a_C) == pytest.approx(float(content_cost(a_C, 0 * a_C)[0]), rel=1e-14)
    assert content_at_blank([a_C[:, :1], a_C[:, 1:]]) == pytest.approx(content_at_blank(a_C), rel=1e-14)
    G_S = gram_matrix(_randn(xp, rng, (1, 4, 5, 3)))
    assert style_at_blank(G_S, 60) == pytest.approx(float(style_from_gram(0 * G_S, G_S, 60)[0]), rel=1e-14)


# ---------------------------------------------------------------------------------------------
# dtypes

def test_float32_in_float32_out(xp, rng):
    a_C = _randn(xp, rng, (1, 5, 4, 3), np.float32)
    a_G = _randn(xp, rng, (1, 5, 4, 3), np.float32)
    assert gram_matrix(a_G).dtype == np.float32
    assert gram_backward(gram_matrix(a_G), a_G).dtype == np.float32
    for J, grad in [content_cost(a_C, a_G),
                    style_layer_cost(gram_matrix(a_C), a_G),
                    style_layer_cost(gram_matrix(a_C).astype(np.float64), a_G),  # target cast
                    total_variation(a_G)]:
        assert _is_0d(xp, J, np.float32)
        assert grad.dtype == np.float32 and grad.shape == a_G.shape
    # float32 agrees with float64 to float32 precision.
    J32, g32 = style_layer_cost(gram_matrix(a_C), a_G)
    J64, g64 = style_layer_cost(gram_matrix(a_C.astype(np.float64)), a_G.astype(np.float64))
    assert abs(float(J32) - float(J64)) < 1e-5 * abs(float(J64))
    assert rel_error(g32, g64) < 1e-5
