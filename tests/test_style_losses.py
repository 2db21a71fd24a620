"""Style losses beyond the Gram matrix (numpynst.losses, numpynst.style_stats): mean and covariance
(Wasserstein-2 between Gaussians) and sliced Wasserstein.

Every gradient against float64 central differences (relative error <= 1e-7), the matrix square
root's at repeated, near-equal and zero eigenvalues; closed forms (commuting covariances, the 1-D
quantile function); invariances; the statistics' pieces summing over tiles; PyTorch autograd on the
costs (tests/test_objective_vs_torch.py has the whole objective); float32 against float64.
"""

import numpy as np
import pytest

from numpynst.backend import to_host
from numpynst.errors import OptionError
from numpynst.gradcheck import numerical_gradient, rel_error
from numpynst.losses import (COV_RIDGE, mean_cov_at_blank, mean_cov_backward, mean_cov_cost,
                             mean_cov_from_sums, mean_cov_sums_backward, mean_cov_target, moments,
                             quantiles, sqrtm_sym, sqrtm_sym_backward, swd_at_blank, swd_backward,
                             swd_cost)
from numpynst.style_stats import (STYLE_LOSSES, SWD_MAX_DIRECTIONS, GramStatistic, MeanCovStatistic,
                                  SwdStatistic, add_pieces, check_style_loss, make_statistic)

GRAD_TOL = 1e-7


def _orthogonal(rng, n):
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return q


def _sym(rng, eigenvalues):
    U = _orthogonal(rng, len(eigenvalues))
    return (U * np.asarray(eigenvalues, dtype=np.float64)) @ U.T


def _target_of(xp, b):
    s1, s2 = moments(b)
    return mean_cov_target(s1, s2, b.shape[-3] * b.shape[-2])


# ------------------------------------------------------------------------- matrix square root
def test_sqrtm_squares_back(xp, rng):
    M = xp.asarray(_sym(rng, [0.5, 1.0, 2.0, 9.0]))
    Y, _ = sqrtm_sym(M)
    assert rel_error(Y @ Y, M) < 1e-14 and rel_error(Y, Y.T) < 1e-15


@pytest.mark.parametrize("eigenvalues", [
    [0.3, 1.0, 2.5, 4.0, 7.0],                # distinct
    [1.0, 1.0, 1.0, 3.0, 5.0],                # an exactly repeated eigenvalue (a 3-dim eigenspace)
    [2.0, 2.0 + 1e-9, 0.7, 0.7 + 1e-12, 5.0],  # near-equal pairs
])
def test_sqrtm_backward_matches_central_differences(xp, rng, eigenvalues):
    """The Sylvester-form backward U((U^T dY U) o 1/(s_i+s_j))U^T, for a general (non-symmetric) dY:
    repeated and near-equal eigenvalues need no guard (only sums s_i + s_j appear)."""
    M = xp.asarray(_sym(rng, eigenvalues))
    dY = xp.asarray(rng.standard_normal(M.shape))
    _, cache = sqrtm_sym(M)
    analytic = sqrtm_sym_backward(dY, cache)
    numeric = numerical_gradient(lambda m: xp.sum(sqrtm_sym(m)[0] * dY), M.copy(), h=1e-6)
    assert rel_error(analytic, numeric) < GRAD_TOL


def test_sqrtm_backward_of_trace_is_half_inverse_root(xp, rng):
    """d tr(M^1/2) / dM = M^(-1/2) / 2: the special case the Wasserstein cost uses."""
    M = _sym(rng, [0.2, 1.0, 3.0, 8.0])
    _, cache = sqrtm_sym(xp.asarray(M))
    g = sqrtm_sym_backward(xp.eye(4), cache)
    lam, U = np.linalg.eigh(M)
    assert rel_error(g, (U / np.sqrt(lam)) @ U.T / 2) < 1e-13


def test_sqrtm_backward_near_zero_eigenvalues(xp, rng):
    """Small but positive eigenvalues (1e-3 of the largest): the formula is still the derivative."""
    M = xp.asarray(_sym(rng, [4e-3, 4e-2, 1.5, 4.0]))
    dY = xp.asarray(rng.standard_normal((4, 4)))
    analytic = sqrtm_sym_backward(dY, sqrtm_sym(M)[1])
    numeric = numerical_gradient(lambda m: xp.sum(sqrtm_sym(m)[0] * dY), M.copy(), h=1e-7)
    assert rel_error(analytic, numeric) < GRAD_TOL


def test_sqrtm_at_zero_eigenvalues_is_finite_and_exact_on_the_range(xp, rng):
    """A singular M (rank 2 of 4): sqrt is not differentiable there (infinite slope at 0). The
    forward clamps rounding below 0; the backward keeps s_i + s_j above SQRT_FLOOR * max(s), so the
    gradient is finite, and on the range (directions U_r E U_r^T that keep the null space) it is the
    true derivative, checked against central differences of the range's own 2 x 2 square root."""
    U = _orthogonal(rng, 4)
    lam = np.array([0.0, 0.0, 1.5, 4.0])
    M = (U * lam) @ U.T
    Y, cache = sqrtm_sym(xp.asarray(M))
    assert rel_error(Y @ Y, xp.asarray(M)) < 1e-14
    dY = rng.standard_normal((4, 4))
    g = to_host(sqrtm_sym_backward(xp.asarray(dY), cache))
    assert np.isfinite(g).all()
    Ur = U[:, 2:]
    E = rng.standard_normal((2, 2))
    E = (E + E.T) / 2

    def f(t):                                   # sum(sqrt(M + t Ur E Ur^T) * dY), null space untouched
        w, V = np.linalg.eigh(np.diag(lam[2:]) + t * E)
        return np.sum((Ur @ (V * np.sqrt(w)) @ V.T @ Ur.T) * dY)
    h = 1e-6
    numeric = (f(h) - f(-h)) / (2 * h)
    analytic = np.sum((Ur.T @ g @ Ur) * E)
    assert abs(analytic - numeric) <= 1e-7 * abs(numeric)


# ------------------------------------------------------------------------- mean and covariance
def test_w2_closed_form_for_commuting_covariances(xp, rng):
    """Diagonal covariances commute: W2^2 = |mu - mu_s|^2 + sum_i (sqrt(s_i) - sqrt(t_i))^2. Features
    drawn so that the empirical covariance is exactly diagonal (orthogonal centred columns)."""
    P, C = 64, 5
    Z, _ = np.linalg.qr(rng.standard_normal((P, C + 1)))
    basis = Z[:, 1:] - Z[:, 1:].mean(axis=0)               # centred, orthogonal columns
    basis /= np.linalg.norm(basis, axis=0) / np.sqrt(P)    # unit variance each
    sd_x, sd_s = rng.uniform(0.5, 3, C), rng.uniform(0.5, 3, C)
    mu_x, mu_s = rng.normal(0, 2, C), rng.normal(0, 2, C)
    a = (basis * sd_x + mu_x).reshape(1, 8, 8, C)
    b = (basis[::-1] * sd_s + mu_s).reshape(1, 8, 8, C)
    target = _target_of(xp, xp.asarray(b))
    J, _ = mean_cov_cost(xp.asarray(a), target)
    eps = target.eps
    expected = (np.sum((mu_x - mu_s) ** 2)
                + np.sum((np.sqrt(sd_x ** 2 + eps) - np.sqrt(sd_s ** 2 + eps)) ** 2))
    assert abs(float(J) - expected) < 1e-11 * expected


@pytest.mark.parametrize("dead", [False, True])
def test_mean_cov_gradient_matches_central_differences(xp, rng, dead):
    """dJ/da through the mean, the covariance and the matrix square root; with a dead channel (all
    zero, as after a ReLU) the generated covariance is singular and the ridge keeps J smooth."""
    a = rng.normal(1.0, 1.0, (1, 4, 5, 6))
    if dead:
        a[..., 2] = 0.0
    target = _target_of(xp, xp.asarray(rng.normal(0.5, 2.0, (1, 6, 3, 6))))
    a = xp.asarray(a)
    J, cache = mean_cov_cost(a, target)
    g = mean_cov_backward(cache)
    assert g.shape == a.shape
    numeric = numerical_gradient(lambda z: mean_cov_cost(z, target)[0], a.copy(), h=1e-4)
    assert rel_error(g, numeric) < GRAD_TOL


def test_mean_cov_is_zero_at_the_target_and_invariant_to_positions(xp, rng):
    b = xp.asarray(rng.normal(0, 1, (1, 5, 4, 6)))
    target = _target_of(xp, b)
    J, _ = mean_cov_cost(b, target)
    assert abs(float(J)) < 1e-12 * mean_cov_at_blank(target)
    a = xp.asarray(rng.normal(0, 1, (1, 5, 4, 6)))
    perm = rng.permutation(20)
    shuffled = a.reshape(20, 6)[xp.asarray(perm)].reshape(1, 4, 5, 6)      # other positions, shape
    assert rel_error(mean_cov_cost(a, target)[0], mean_cov_cost(shuffled, target)[0]) < 1e-13


def test_mean_cov_at_blank_is_the_cost_of_zero_activations(xp, rng):
    """Calibration: J(0) = |mu_s|^2 + tr(S_s) (E_s|a|^2) up to the ridge."""
    b = xp.asarray(rng.normal(1.0, 2.0, (1, 6, 5, 4)))
    target = _target_of(xp, b)
    zero = xp.zeros((1, 3, 3, 4))
    J, _ = mean_cov_cost(zero, target)
    assert abs(mean_cov_at_blank(target) - float(J)) < 1e-12 * float(J)
    second_moment = float(xp.mean(xp.sum(b * b, axis=-1)))
    assert abs(mean_cov_at_blank(target) - second_moment) < 3 * np.sqrt(COV_RIDGE) * second_moment


def test_mean_cov_sums_gradient_matches_central_differences(xp, rng):
    """(dJ/ds1, dJ/ds2) of the cost from the sums, the form the tiles use."""
    a = xp.asarray(rng.normal(1.0, 1.0, (1, 5, 5, 4)))
    target = _target_of(xp, xp.asarray(rng.normal(0.0, 1.5, (1, 4, 4, 4))))
    s1, s2 = moments(a)
    d1, d2 = mean_cov_sums_backward(mean_cov_from_sums(s1, s2, 25, target)[1])
    n1 = numerical_gradient(lambda z: mean_cov_from_sums(z, s2, 25, target)[0], s1.copy(), h=1e-5)
    n2 = numerical_gradient(lambda z: mean_cov_from_sums(s1, z, 25, target)[0], s2.copy(), h=1e-4)
    assert rel_error(d1, n1) < GRAD_TOL and rel_error(d2, n2) < GRAD_TOL


def test_mean_cov_pieces_of_tiles_add_up(xp, rng):
    a = xp.asarray(rng.normal(0, 1, (1, 6, 7, 5)))
    st = MeanCovStatistic()
    total = None
    for rows in (slice(0, 2), slice(2, 6)):
        for cols in (slice(0, 3), slice(3, 7)):
            total = add_pieces(total, st.measure(xp.ascontiguousarray(a[:, rows, cols]), (rows, cols)))
    for whole, summed in zip(st.measure(a), total):
        assert rel_error(whole, summed) < 1e-14


# ------------------------------------------------------------------------- sliced Wasserstein
def _naive_quantiles(samples, weights, n):
    """Host loop: the mixture's quantile function at levels (r + 1/2)/n, by linear interpolation
    between sorted samples placed at the midpoints of their masses."""
    out = np.empty((n, samples[0].shape[1]))
    for k in range(out.shape[1]):
        vals = np.concatenate([s[:, k] for s in samples])
        mass = np.concatenate([np.full(len(s), w / len(s)) for s, w in zip(samples, weights)])
        mass /= mass.sum()
        pairs = sorted(zip(vals, mass))
        cum, mids = 0.0, []
        for _, m in pairs:
            mids.append(cum + m / 2)
            cum += m
        for r in range(n):
            t = (r + 0.5) / n
            if t <= mids[0]:
                out[r, k] = pairs[0][0]
            elif t >= mids[-1]:
                out[r, k] = pairs[-1][0]
            else:
                j = next(i for i in range(len(mids)) if mids[i + 1] >= t)
                f = (t - mids[j]) / (mids[j + 1] - mids[j])
                out[r, k] = pairs[j][0] * (1 - f) + pairs[j + 1][0] * f
    return out


def test_quantiles_same_size_are_the_sorted_values(xp, rng):
    Y = rng.standard_normal((17, 3))
    assert np.array_equal(to_host(quantiles([xp.asarray(Y)], [1.0], 17)), np.sort(Y, axis=0))
    # the general path (two copies of the same image) gives the same values
    assert rel_error(quantiles([xp.asarray(Y), xp.asarray(Y)], [0.5, 0.5], 17), np.sort(Y, axis=0)) < 1e-14


@pytest.mark.parametrize("sizes,weights,n", [((40,), (1.0,), 13), ((9,), (1.0,), 31),
                                             ((12, 30), (0.7, 0.3), 20)])
def test_quantiles_match_naive_interpolation(xp, rng, sizes, weights, n):
    samples = [rng.standard_normal((p, 2)) * (i + 1) for i, p in enumerate(sizes)]
    got = quantiles([xp.asarray(s) for s in samples], list(weights), n)
    assert rel_error(got, _naive_quantiles(samples, weights, n)) < 1e-13


def _swd_setup(xp, rng, shape=(1, 4, 5, 6), K=7, style_positions=33):
    V = rng.standard_normal((shape[-1], K))
    V /= np.linalg.norm(V, axis=0)
    Y = rng.normal(0.5, 2.0, (style_positions, shape[-1])) @ V
    Q = quantiles([xp.asarray(Y)], [1.0], shape[1] * shape[2])
    return xp.asarray(rng.standard_normal(shape)), xp.asarray(V), Q


def test_swd_gradient_matches_central_differences(xp, rng):
    """Sorting's gradient scattered back through the permutation (random data: no ties)."""
    a, V, Q = _swd_setup(xp, rng)
    J, cache = swd_cost(a, V, Q)
    g = swd_backward(cache)
    numeric = numerical_gradient(lambda z: swd_cost(z, V, Q)[0], a.copy(), h=1e-6)
    assert g.shape == a.shape and rel_error(g, numeric) < GRAD_TOL


def test_swd_equals_sorted_squared_differences(xp, rng):
    """Same sizes: J = mean over directions and ranks of (sort(A v) - sort(B v))^2, written out."""
    a, V, _ = _swd_setup(xp, rng)
    b = rng.standard_normal((20, 6))
    Q = quantiles([xp.asarray(b @ to_host(V))], [1.0], 20)
    X, Yb = to_host(a).reshape(20, 6) @ to_host(V), b @ to_host(V)
    expected = np.mean((np.sort(X, axis=0) - np.sort(Yb, axis=0)) ** 2)
    assert abs(float(swd_cost(a, V, Q)[0]) - expected) < 1e-13 * expected


def test_swd_is_zero_for_a_permutation_and_blank_is_mean_square(xp, rng):
    a, V, _ = _swd_setup(xp, rng)
    flat = to_host(a).reshape(20, 6)
    Q = quantiles([xp.asarray(flat[rng.permutation(20)] @ to_host(V))], [1.0], 20)
    assert float(swd_cost(a, V, Q)[0]) < 1e-28
    J0, _ = swd_cost(xp.zeros_like(a), V, Q)
    assert abs(swd_at_blank(Q) - float(J0)) < 1e-13 * float(J0)


def test_swd_rejects_mismatched_quantiles(xp, rng):
    a, V, Q = _swd_setup(xp, rng)
    with pytest.raises(ValueError, match=r"Q \(10, 7\); V must be \(6, K\) and Q \(20, K\)"):
        swd_cost(a, V, Q[:10])


# ------------------------------------------------------------------------- statistics
def test_style_loss_names_and_errors():
    assert STYLE_LOSSES == ("gram", "mean-cov", "swd")
    with pytest.raises(OptionError, match="must be one of gram, mean-cov, swd, got 'wasserstein'"):
        check_style_loss("wasserstein")
    with pytest.raises(OptionError, match=f"swd_directions .* must be in 1..{SWD_MAX_DIRECTIONS}"):
        make_statistic("swd", "block1_conv1", 8, directions=SWD_MAX_DIRECTIONS + 1)
    st = make_statistic("swd", "block1_conv1", 8)
    with pytest.raises(OptionError, match="needs at least 16 positions .* style image #1 has 9 at block5_conv1"):
        st.check("block5_conv1", 9, "style image #1")
    with pytest.raises(OptionError, match="no per-tile sums"):
        st.cost((None,), None, 1)


def test_swd_directions_are_seeded_unit_vectors():
    one = SwdStatistic("block2_conv1", 8, 5, dtype=np.float64)
    two = SwdStatistic("block2_conv1", 8, 5, dtype=np.float64)
    other = SwdStatistic("block3_conv1", 8, 5, dtype=np.float64)
    assert np.array_equal(one.V, two.V) and not np.allclose(one.V, other.V)
    assert np.allclose(np.linalg.norm(one.V, axis=0), 1.0) and one.V.shape == (8, 5)
    assert SwdStatistic("block2_conv1", 8).V.shape == (8, 8)            # default K = channels


@pytest.mark.parametrize("stat", [GramStatistic(), MeanCovStatistic()])
def test_layer_cost_is_measure_cost_backward(xp, rng, stat):
    """The whole-map cost equals the tiles' route (measure -> cost on the sums -> backward)."""
    a = xp.asarray(rng.normal(0.5, 1, (1, 5, 4, 6)))
    b = xp.asarray(rng.normal(0.2, 2, (1, 3, 7, 6)))
    target = stat.target([(stat.measure(b), 21, 1.0)], 20)
    J, g = stat.layer_cost(target, a)
    J2, d = stat.cost(stat.measure(a), target, 20, (2.0, 0.5), 4.0)
    g2 = stat.backward(d, a)
    assert rel_error(J, J2) < 1e-14 and rel_error(g * 0.25, g2) < 1e-13


def test_float32_agrees_with_float64(rng):
    """float32 costs and gradients against float64 (statistics in float64 inside): mean-cov to
    ~1e-5, swd to ~1e-6 (the sort order is the same unless two projections are within float32's
    rounding)."""
    a64 = rng.normal(0.5, 1.0, (1, 6, 6, 8))
    b64 = rng.normal(0.2, 2.0, (1, 5, 7, 8))
    out = {}
    for dt in (np.float64, np.float32):
        a, b = a64.astype(dt), b64.astype(dt)
        mc = MeanCovStatistic()
        J1, g1 = mc.layer_cost(mc.target([(mc.measure(b), 35, 1.0)], 36), a)
        sw = SwdStatistic("block1_conv1", 8, dtype=dt)
        J2, g2 = sw.layer_cost(sw.target([(sw.measure(b), 35, 1.0)], 36), a)
        assert J1.dtype == dt and g1.dtype == dt and J2.dtype == dt and g2.dtype == dt
        out[dt] = (J1, g1, J2, g2)
    (J1, g1, J2, g2), (K1, h1, K2, h2) = out[np.float64], out[np.float32]
    assert rel_error(J1, K1) < 1e-5 and rel_error(g1, h1) < 1e-4
    assert rel_error(J2, K2) < 1e-5 and rel_error(g2, h2) < 1e-5


# ------------------------------------------------------------------------- PyTorch autograd
def test_costs_match_torch_autograd(rng):
    """The costs written again in PyTorch (its eigh for the square root, its sort), differentiated by
    autograd, against the hand-derived backward passes (float64)."""
    torch = pytest.importorskip("torch", reason="PyTorch not installed: autograd cross-check skipped")
    a = rng.normal(1.0, 1.0, (1, 5, 4, 6))
    b = rng.normal(0.5, 2.0, (1, 6, 3, 6))
    target = _target_of(np, b)

    ta = torch.tensor(a.reshape(20, 6), requires_grad=True)
    mu = ta.mean(0)
    S = (ta.T @ ta) / 20 - torch.outer(mu, mu) + target.eps * torch.eye(6)
    Bs = torch.tensor(b.reshape(18, 6))
    mu_s = Bs.mean(0)
    S_s = (Bs.T @ Bs) / 18 - torch.outer(mu_s, mu_s) + target.eps * torch.eye(6)
    ls, Us = torch.linalg.eigh(S_s)
    R = Us @ torch.diag(ls.sqrt()) @ Us.T
    lm = torch.linalg.eigvalsh(R @ S @ R)
    tJ = ((mu - mu_s) ** 2).sum() + torch.trace(S) + torch.trace(S_s) - 2 * lm.sqrt().sum()
    tJ.backward()
    J, cache = mean_cov_cost(a, target)
    assert abs(float(J) - tJ.item()) < 1e-11 * tJ.item()     # tr + tr - 2 tr: a few digits cancel
    assert rel_error(mean_cov_backward(cache).reshape(20, 6), ta.grad.numpy()) < 1e-10

    V = rng.standard_normal((6, 9))
    V /= np.linalg.norm(V, axis=0)
    Q = quantiles([b.reshape(18, 6) @ V], [1.0], 20)
    ta = torch.tensor(a.reshape(20, 6), requires_grad=True)
    tJ = ((torch.sort(ta @ torch.tensor(V), dim=0).values - torch.tensor(Q)) ** 2).mean()
    tJ.backward()
    J, cache = swd_cost(a, V, Q)
    assert abs(float(J) - tJ.item()) < 1e-13 * tJ.item()
    assert rel_error(swd_backward(cache).reshape(20, 6), ta.grad.numpy()) < 1e-12


# ------------------------------------------------------------------------- in the objective
@pytest.mark.parametrize("style_loss", ["mean-cov", "swd"])
def test_calibration_scale_is_the_cost_at_a_blank_image(rng, style_loss):
    """Calibrated weights divide each layer by its statistic's cost for zero activations (the notes'
    'blank image'), so a blank image's style part is 1 whatever the loss."""
    from numpynst.objective import Objective
    from numpynst.testing import tiny_vgg
    model = tiny_vgg()
    c, s = rng.normal(0, 60, (1, 40, 36, 3)), rng.normal(0, 60, (1, 44, 40, 3))
    layers = {"block1_conv1": 0.5, "block3_conv1": 0.5}
    obj = Objective(model, c, s, style_layers=layers, style_loss=style_loss, weights_mode="calibrated")
    acts = model.forward(c, list(layers), keep_cache=False)
    for n in layers:
        J0, _ = obj.statistics[n].layer_cost(obj.style_targets[n], np.zeros_like(acts[n]))
        assert obj.scales.style[n] == pytest.approx(float(J0), rel=1e-12)
    raw = Objective(model, c, s, style_layers=layers, style_loss=style_loss)
    assert all(v == 1.0 for v in raw.scales.style.values())


def test_objective_refuses_bad_style_options(rng):
    from numpynst.objective import Objective
    from numpynst.testing import tiny_vgg
    model = tiny_vgg()
    c = rng.normal(0, 60, (1, 48, 48, 3))
    with pytest.raises(OptionError,
                       match=r"^style_loss \(--style-loss\) must be one of gram, mean-cov, swd, got 'l2'$"):
        Objective(model, c, c, style_loss="l2")
    with pytest.raises(OptionError, match="the generated image has 9 at block5_conv1"):
        Objective(model, c, c, style_loss="swd")          # 48 px: block5 is 3 x 3
    with pytest.raises(OptionError, match="style image #1 has 4 at block4_conv1"):
        Objective(model, c, c[:, :16, :16], style_loss="swd", style_layers={"block4_conv1": 1.0})
    with pytest.raises(OptionError, match=r"swd_directions \(--swd-directions\) must be in 1..4096, got 0"):
        Objective(model, c, c, style_loss="swd", swd_directions=0, style_layers={"block1_conv1": 1.0})
