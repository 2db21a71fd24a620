"""Guided Gram matrices (numpynst.guided): masks down the network against naive loops, the cost's
gradient against float64 central differences and PyTorch's autograd, and its defining properties
(one all-ones region is the unguided cost; soft partitions add up; a region's size does not matter)."""

import numpy as np
import pytest

from numpynst.arch import layer_table
from numpynst.gradcheck import numerical_gradient, rel_error
from numpynst.guided import (empty_regions, guided_at_blank, guided_backward, guided_from_grams,
                             guided_grams, guided_layer_cost, guided_target, layer_masks, mask_eroded,
                             mask_resized, region_mass)
from numpynst.losses import gram_matrix, style_layer_cost, style_target

GRAD_TOL = 1e-8


def _soft_masks(rng, R, h, w):
    m = rng.uniform(0.05, 1.0, size=(R, h, w))
    return m / m.sum(axis=0, keepdims=True)


# ---------------------------------------------------------------------------- masks down the network
def _pool_floor(m):
    """One 2x2/2 average pool in floor mode, by loops."""
    h, w = m.shape[0] // 2, m.shape[1] // 2
    out = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            out[i, j] = m[2 * i:2 * i + 2, 2 * j:2 * j + 2].mean()
    return out


@pytest.mark.parametrize("spacing", [1, 2, 4, 8])
def test_resized_mask_is_repeated_floor_pooling(rng, spacing):
    m = rng.uniform(size=(37, 29))              # odd sides: every pool drops a remainder row/column
    want = m
    for _ in range(int(np.log2(spacing))):
        want = _pool_floor(want)
    got = mask_resized(m, spacing)
    assert got.shape == (37 // spacing, 29 // spacing)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def _eroded_naive(m, spacing, reach):
    H, W = m.shape
    out = np.zeros((H // spacing, W // spacing))
    for p in range(out.shape[0]):
        for q in range(out.shape[1]):
            r0, r1 = max(0, p * spacing - reach), min(H, p * spacing + spacing + reach)
            c0, c1 = max(0, q * spacing - reach), min(W, q * spacing + spacing + reach)
            out[p, q] = m[r0:r1, c0:c1].min()
    return out


@pytest.mark.parametrize("spacing,reach", [(1, 0), (1, 1), (1, 2), (2, 3), (4, 6), (8, 13), (4, 21)])
def test_eroded_mask_is_the_minimum_over_the_clipped_receptive_field(rng, spacing, reach):
    m = rng.uniform(size=(2, 35, 27))
    got = mask_eroded(m, spacing, reach)
    for r in range(2):
        np.testing.assert_array_equal(got[r], _eroded_naive(m[r], spacing, reach))


def test_erosion_of_a_half_plane_leaves_a_band_of_the_reach():
    """A hard boundary at row 32: at block3_conv1 (spacing 4, reach 10) region 'top' keeps exactly
    the positions whose receptive field ends above row 32, i.e. 4p + 3 + 10 < 32."""
    top = np.zeros((64, 40))
    top[:32] = 1.0
    geo = {layer.name: (layer.reach, layer.spacing) for layer in layer_table("vgg19")}
    reach, spacing = geo["block3_conv1"]
    assert (reach, spacing) == (10, 4)
    eroded = layer_masks(top[None], {"block3_conv1": geo["block3_conv1"]}, "erode")["block3_conv1"][0]
    rows = np.flatnonzero(eroded[:, 0])
    assert rows.max() == max(p for p in range(16) if 4 * p + 3 + 10 < 32)
    resized = layer_masks(top[None], {"block3_conv1": geo["block3_conv1"]}, "resize")["block3_conv1"][0]
    assert np.flatnonzero(resized[:, 0]).max() == 32 // 4 - 1        # the cell, not the field
    assert region_mass(eroded[None])[0] < region_mass(resized[None])[0]


def test_empty_regions_reports_a_region_eroded_away():
    m = np.zeros((2, 32, 32))
    m[0, :, :] = 1.0
    m[1, 14:18, :] = 1.0                         # a 4-px stripe: gone once the reach exceeds 1
    per_layer = layer_masks(m, {"a": (0, 1), "b": (3, 2)}, "erode")
    assert empty_regions(per_layer) == [(1, "b")]
    assert empty_regions(layer_masks(m, {"a": (0, 1), "b": (3, 2)}, "resize")) == []


# ---------------------------------------------------------------------------- guided Gram and cost
def test_guided_grams_match_a_double_loop(rng):
    a = rng.standard_normal((1, 4, 5, 3))
    m = rng.uniform(size=(2, 4, 5))
    G = guided_grams(a, m)
    for r in range(2):
        want = sum(m[r, i, j] * np.outer(a[0, i, j], a[0, i, j]) for i in range(4) for j in range(5))
        np.testing.assert_allclose(G[r], want, rtol=1e-12)


def test_soft_partition_adds_up_to_the_unguided_gram(rng):
    """Masks weigh positions by m (not m^2): masks summing to 1 split each position's a a^T."""
    a = rng.standard_normal((6, 7, 4))
    m = _soft_masks(rng, 3, 6, 7)
    np.testing.assert_allclose(guided_grams(a, m).sum(axis=0), gram_matrix(a), rtol=1e-12)


def test_one_all_ones_region_is_the_unguided_style_cost(rng):
    a = rng.standard_normal((1, 6, 5, 4))
    a_style = rng.standard_normal((1, 9, 7, 4)) + 0.3
    T = guided_target(a_style)[None]
    J, g = guided_layer_cost(a, np.ones((1, 6, 5)), T)
    G_S = style_target(gram_matrix(a_style), 6 * 5, 9 * 7)
    J0, g0 = style_layer_cost(G_S, a)
    assert float(J) == pytest.approx(float(J0), rel=1e-12)
    assert rel_error(g, g0) < 1e-12


def test_style_mask_target_is_the_regions_mean_outer_product(rng):
    a = rng.standard_normal((5, 6, 3))
    mask = np.zeros((5, 6))
    mask[1:4, 2:5] = 1.0
    rows = a[1:4, 2:5].reshape(-1, 3)
    np.testing.assert_allclose(guided_target(a, mask), rows.T @ rows / len(rows), rtol=1e-12)
    with pytest.raises(ValueError, match="no mass"):
        guided_target(a, np.zeros((5, 6)))


def test_a_regions_cost_does_not_depend_on_its_size(rng):
    """Repeating a region's positions (a region twice as big with the same texture) leaves its
    normalised statistic, hence its cost, unchanged: a small region is not drowned."""
    C = 3
    T = np.stack([np.eye(C), 2 * np.eye(C)])
    left = rng.standard_normal((4, 3, C))
    right = rng.standard_normal((4, 5, C))
    a_small = np.concatenate([left, right], axis=1)             # region 0: 3 columns, region 1: 5
    a_big = np.concatenate([left, left, right], axis=1)         # region 0 twice as wide
    m_small = np.zeros((2, 4, 8)); m_small[0, :, :3] = 1; m_small[1, :, 3:] = 1
    m_big = np.zeros((2, 4, 11)); m_big[0, :, :6] = 1; m_big[1, :, 6:] = 1
    J_small, _ = guided_layer_cost(a_small, m_small, T, [0.5, 0.5])
    J_big, _ = guided_layer_cost(a_big, m_big, T, [0.5, 0.5])
    assert float(J_small) == pytest.approx(float(J_big), rel=1e-12)


@pytest.mark.parametrize("shape", [(1, 5, 4, 3), (4, 6, 2)])
def test_guided_cost_gradient_matches_central_differences(rng, shape):
    a = rng.standard_normal(shape)
    m = _soft_masks(rng, 3, *shape[-3:-1])
    m[2] *= 0.5                                   # not a partition: the general case
    T = rng.standard_normal((3, shape[-1], shape[-1]))
    T = T @ T.transpose(0, 2, 1)
    w = [0.2, 0.5, 0.3]

    J, g = guided_layer_cost(a, m, T, w)
    num = numerical_gradient(lambda v: guided_layer_cost(v, m, T, w)[0], a.copy())
    assert rel_error(g, num) < GRAD_TOL
    G = guided_grams(a, m)
    dG_num = numerical_gradient(lambda v: guided_from_grams(v, T, region_mass(m), w)[0], G.copy())
    assert rel_error(guided_from_grams(G, T, region_mass(m), w)[1], dG_num) < GRAD_TOL


def test_guided_gradient_is_folded_with_factors_and_scale(rng):
    a = rng.standard_normal((3, 4, 2))
    m = _soft_masks(rng, 2, 3, 4)
    T = np.stack([np.eye(2), np.ones((2, 2))])
    G = guided_grams(a, m)
    J, dG = guided_from_grams(G, T, region_mass(m), [0.5, 0.5])
    J2, dG2 = guided_from_grams(G, T, region_mass(m), [0.5, 0.5], factors=(3.0, 2.0), scale=4.0)
    assert float(J2) == float(J)
    np.testing.assert_allclose(dG2, dG * 1.5, rtol=1e-14)


def test_empty_region_contributes_nothing(rng):
    a = rng.standard_normal((3, 4, 2))
    m = np.stack([np.ones((3, 4)), np.zeros((3, 4))])
    T = np.stack([np.eye(2), np.eye(2)])
    J, g = guided_layer_cost(a, m, T, [0.5, 0.5])
    J1, g1 = guided_layer_cost(a, m[:1], T[:1], [0.5])
    assert np.isfinite(float(J)) and float(J) == pytest.approx(float(J1), rel=1e-14)
    np.testing.assert_allclose(g, g1, rtol=1e-14)


def test_blank_value_is_the_calibration_scale(rng):
    T = rng.standard_normal((2, 3, 3))
    J, _ = guided_from_grams(np.zeros((2, 3, 3)), T, [4.0, 9.0], [0.25, 0.75])
    assert guided_at_blank(T, [0.25, 0.75]) == pytest.approx(float(J), rel=1e-12)


def test_float32_stays_float32(rng):
    a = rng.standard_normal((1, 4, 4, 3)).astype(np.float32)
    m = _soft_masks(rng, 2, 4, 4).astype(np.float32)
    J, g = guided_layer_cost(a, m, np.stack([np.eye(3, dtype=np.float32)] * 2))
    assert J.dtype == np.float32 and J.ndim == 0 and g.dtype == np.float32 and g.shape == a.shape


def test_shape_errors_name_the_problem(rng):
    a = rng.standard_normal((1, 4, 4, 3))
    with pytest.raises(ValueError, match=r"masks must have shape \(R, 4, 4\)"):
        guided_grams(a, np.ones((2, 4, 5)))
    with pytest.raises(ValueError, match="dG must have shape"):
        guided_backward(np.zeros((2, 2, 2)), a, np.ones((2, 4, 4)))
    with pytest.raises(ValueError, match="mask mode"):
        layer_masks(np.ones((1, 4, 4)), {"x": (0, 1)}, "blur")


def test_guided_cost_matches_torch_autograd(rng):
    torch = pytest.importorskip("torch")
    a = rng.standard_normal((1, 6, 5, 4))
    m = _soft_masks(rng, 2, 6, 5)
    T = rng.standard_normal((2, 4, 4))
    w = [0.3, 0.7]
    J, g = guided_layer_cost(a, m, T, w)

    at = torch.tensor(a, requires_grad=True)
    A = at.reshape(-1, 4)
    jt = 0
    for r in range(2):
        mr = torch.tensor(m[r].reshape(-1))
        G = (A * mr[:, None]).T @ A / mr.sum()
        jt = jt + w[r] * ((G - torch.tensor(T[r])) ** 2).sum() / (4 * 4 ** 2)
    jt.backward()
    assert float(J) == pytest.approx(jt.item(), rel=1e-12)
    assert rel_error(g, at.grad.numpy()) < 1e-12


@pytest.mark.parametrize("kind", ["gram", "mean-cov"])
def test_region_statistic_gradient_matches_central_differences(rng, kind):
    """measure -> cost -> backward of the masked statistic (the seam's three steps) against float64
    central differences of its cost, with soft overlapping masks and blend weights."""
    from numpynst.guided import RegionStatistic
    from numpynst.losses import mean_cov_target
    a = rng.standard_normal((1, 5, 6, 3))
    m = rng.uniform(0.1, 1, (2, 5, 6))
    st = RegionStatistic(kind, m, [0.4, 0.6])
    sty = [rng.standard_normal((40, 3)) @ rng.standard_normal((3, 3)) + 1 for _ in range(2)]
    if kind == "gram":
        T = np.stack([s.T @ s / 40 for s in sty])
    else:
        T = [mean_cov_target(s.sum(0) / 40, s.T @ s / 40, 1.0) for s in sty]
    J, d = st.cost(st.measure(a), T, 30, weights=(2.0,), scale=4.0)
    g = st.backward(d, a) * 2.0                      # weights (2,) / scale 4 fold into d
    num = numerical_gradient(lambda v: st.cost(st.measure(v), T, 30)[0], a.copy(), h=1e-4)
    assert rel_error(g, num) < 1e-8
    # the pieces of two halves add up to the whole map's (what tiles rely on)
    top = st.measure(np.ascontiguousarray(a[:, :2]), (slice(0, 2), slice(0, 6)))
    bottom = st.measure(np.ascontiguousarray(a[:, 2:]), (slice(2, 5), slice(0, 6)))
    for whole, p, q in zip(st.measure(a), top, bottom):
        np.testing.assert_allclose(p + q, whole, rtol=1e-12)
