"""Losses: every gradient against central differences (float64), the Gram matrix against a naive
double loop, closed-form values, invariances, dtypes, and the error messages for bad shapes."""

import numpy as np
import pytest

from numpynst.backend import to_host
from numpynst.gradcheck import numerical_gradient, numerical_gradient_array, rel_error
from numpynst.losses import (content_cost, gram_backward, gram_matrix, style_layer_cost,
                             total_variation, total_variation_value)

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
