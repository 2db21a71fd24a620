"""Optimizers: convergence on an ill-conditioned quadratic and on Rosenbrock, evaluation counts
(L-BFGS must beat gradient descent by a wide margin), the two-loop recursion against a dense BFGS
matrix, the device-side line search (monotone values, rejection of non-finite trials, no host
decisions), dtypes, and option errors."""

import math

import numpy as np
import pytest

from numpynst.backend import to_host
from numpynst.errors import OptionError
from numpynst.optim import (LBFGS, Adam, GradientDescent, MinimizeResult, make_optimizer,
                            minimize)

N = 50
COND = 1e3


def _quadratic(xp, dtype=np.float64, cond=COND, seed=0):
    """f(x) = 1/2 x^T A x - b^T x with A SPD (eigenvalues log-spaced in [1, cond]), n = 50.

    Evaluated as 1/2 e^T A e with e = x - x*, which is the same function up to the constant
    -1/2 b^T x*, but keeps full relative precision near the minimum (f* = 0): the textbook form
    loses f's last digits to cancellation, and with them any line search's ability to see
    progress below ~1e-8 relative error in x. Returns (fun, x*, largest eigenvalue).
    """
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((N, N)))
    ev = np.logspace(0.0, math.log10(cond), N)
    A = (Q * ev) @ Q.T
    A = (A + A.T) / 2
    b = rng.standard_normal(N)
    x_star = np.linalg.solve(A, b)
    A_d, xs_d = xp.asarray(A, dtype=dtype), xp.asarray(x_star, dtype=dtype)

    def fun(x):
        e = x - xs_d
        Ae = A_d @ e
        return 0.5 * (e @ Ae), Ae

    return fun, x_star, ev[-1]


def _rosenbrock(xp):
    def fun(x):
        a, b = x[0], x[1]
        f = (1 - a) ** 2 + 100 * (b - a * a) ** 2
        g = xp.stack([-2 * (1 - a) - 400 * a * (b - a * a), 200 * (b - a * a)])
        return f, g
    return fun


def _evals_to_tol(xp, fun, x_star, opt, tol, max_steps, dtype=np.float64):
    """Evaluations of fun (the start included) until ||x - x*|| <= tol ||x*||; None if never."""
    x0 = xp.zeros(x_star.shape, dtype=dtype)
    ref = np.linalg.norm(x_star)
    hit = []

    def cb(k, x, f, g):
        if np.linalg.norm(to_host(x).astype(np.float64) - x_star) <= tol * ref:
            hit.append(k + 1)
            return True
        return False

    res = minimize(fun, x0, opt, max_steps, cb)
    assert res.x.dtype == dtype
    return hit[0] if hit else None


# ---------------------------------------------------------------------------------------------
# Convergence and evaluation counts

def test_lbfgs_needs_far_fewer_evaluations_than_gd(xp):
    fun, x_star, L = _quadratic(xp)
    n_lbfgs = _evals_to_tol(xp, fun, x_star, LBFGS(), 1e-8, 1000)
    # Measured ~290. Without the curvature pairs (steepest descent with the gamma scaling) it
    # takes ~620, with the pairs but no gamma scaling ~940: both fail this bound.
    assert n_lbfgs is not None and n_lbfgs <= 400
    # Gradient descent at its best fixed step 1/L contracts the slowest mode by (1 - 1/cond) per
    # step: ~cond * ln(1e8) ~ 17000 evaluations.
    n_gd = _evals_to_tol(xp, fun, x_star, GradientDescent(lr=1.0 / L), 1e-8, 20000)
    assert n_gd is not None and n_gd > 20 * n_lbfgs


def test_adam_converges_on_quadratic(xp):
    fun, x_star, _ = _quadratic(xp)
    n = _evals_to_tol(xp, fun, x_star, Adam(lr=3e-3), 1e-6, 2000)   # measured ~920
    assert n is not None


def test_lbfgs_small_history_still_converges(xp):
    fun, x_star, _ = _quadratic(xp, cond=100.0)
    assert _evals_to_tol(xp, fun, x_star, LBFGS(history=1), 1e-8, 400) is not None


def test_lbfgs_rosenbrock(xp):
    fun = _rosenbrock(xp)
    x = xp.asarray([-1.2, 1.0])
    f, g = fun(x)
    opt = LBFGS()
    values = [float(f)]
    for _ in range(100):                     # measured: ~50 evaluations to 1e-6
        x, f, g = opt.step(fun, x, f, g)
        values.append(float(f))
    assert np.linalg.norm(to_host(x) - 1.0) < 1e-6
    assert all(b <= a for a, b in zip(values, values[1:])), "an accepted step increased f"


def test_lbfgs_values_never_increase(xp):
    fun, x_star, _ = _quadratic(xp, cond=100.0)
    x = xp.asarray(np.random.default_rng(5).standard_normal(N) * 10)
    f, g = fun(x)
    f0 = float(f)
    opt = LBFGS(history=5)
    rejected = 0
    for _ in range(150):
        history = None if opt.S is None else (opt.S.copy(), opt.Y.copy(), opt.rho.copy())
        x_new, f_new, g_new = opt.step(fun, x, f, g)
        assert float(f_new) <= float(f)
        if not bool(opt.accepted):          # a rejected trial changes nothing but t
            rejected += 1
            assert float(f_new) == float(f) and bool(xp.all(x_new == x))
            assert all(bool(xp.all(a == b)) for a, b in zip(history, (opt.S, opt.Y, opt.rho)))
        x, f, g = x_new, f_new, g_new
    assert rejected > 0                      # the line search was exercised
    assert float(f) < 1e-12 * f0


def test_lbfgs_rejects_non_finite_trials(xp):
    fun0, x_star, _ = _quadratic(xp, cond=100.0)
    poisoned = {3: "nan", 4: "nan", 6: "inf", 8: "nan-grad"}   # evaluation number -> fault
    calls = [0]

    def fun(x):
        calls[0] += 1
        f, g = fun0(x)
        fault = poisoned.get(calls[0])
        if fault == "nan":
            return f * np.nan, g * np.nan
        if fault == "inf":
            return f + np.inf, g
        if fault == "nan-grad":
            return f, g * np.nan
        return f, g

    opt = LBFGS()
    x = xp.zeros(N)
    f, g = fun(x)
    for k in range(2, 300):                 # step k makes evaluation k
        t_before = float(opt.t) if opt.t is not None else 1.0
        x_new, f_new, g_new = opt.step(fun, x, f, g)
        if k in poisoned:
            assert not bool(opt.accepted)
            assert bool(xp.all(x_new == x)) and float(f_new) == float(f)
            assert bool(xp.all(g_new == g))
            assert math.isclose(float(opt.t), 0.1 * t_before, rel_tol=1e-12)   # shrunk hard
        assert bool(xp.all(xp.isfinite(x_new))) and math.isfinite(float(f_new))
        x, f, g = x_new, f_new, g_new
    assert np.linalg.norm(to_host(x) - x_star) <= 1e-8 * np.linalg.norm(x_star)


def test_lbfgs_float32(xp):
    fun, x_star, _ = _quadratic(xp, dtype=np.float32, cond=100.0)
    opt = LBFGS()
    n = _evals_to_tol(xp, fun, x_star, opt, 1e-4, 300, dtype=np.float32)
    assert n is not None
    assert opt.S.dtype == np.float32 and opt.rho.dtype == np.float32 and opt.t.dtype == np.float32


@pytest.mark.parametrize("make", [lambda: GradientDescent(1e-2), lambda: Adam(1e-2), LBFGS])
def test_float32_stays_float32(xp, make):
    fun, _, _ = _quadratic(xp, dtype=np.float32, cond=100.0)
    x = xp.zeros(N, dtype=np.float32)
    f, g = fun(x)
    opt = make()
    for _ in range(3):
        x, f, g = opt.step(fun, x, f, g)
        assert x.dtype == np.float32 and g.dtype == np.float32 and f.dtype == np.float32


def _bump(xp):
    """f(x) = 1e6 / (1 + |x/w|^2), w = 100: concave for |x| < w/sqrt(3), so from a small x the
    cost curves downwards along -g and the accepted pairs fail the curvature test (s.y < 0) until
    x is ~w away. The bootstrap step 1/|g|_1 moves x by 1 in the 1-norm, far less than w, as on
    an image's loss (pixels on a 0..255 scale, |g|_1 in the thousands)."""
    def fun(x):
        q = 1.0 + (x @ x) * 1e-4
        return 1e6 / q, (-2e2 / (q * q)) * x
    return fun


def test_lbfgs_grows_the_step_while_no_pair_is_stored(xp):
    fun = _bump(xp)
    x = xp.full(N, 1e-3)
    f, g = fun(x)
    opt = LBFGS(growth=4.0)
    ts, stored = [], []
    for _ in range(12):
        t_used = 1.0 if opt.t is None else float(opt.t)
        x_new, f_new, g_new = opt.step(fun, x, f, g)
        ts.append((t_used, bool(opt.accepted), float(opt.t)))
        stored.append(int(np.count_nonzero(to_host(opt.rho))))
        x, f, g = x_new, f_new, g_new
    grown = [(a, nt) for (a, acc, nt), n in zip(ts, stored) if acc and n == 0]
    assert len(grown) >= 2                              # steps in the concave region (measured 2)
    assert all(nt == pytest.approx(4.0 * a, rel=1e-12) for a, nt in grown)
    after = [nt for (a, acc, nt), n in zip(ts, stored) if acc and n > 0]
    assert after and all(nt == 1.0 for nt in after)     # a stored pair ends the extrapolation
    assert float(f) < 5e4                               # left the bump (f(0) = 1e6)


def test_lbfgs_without_growth_stalls_on_the_bump(xp):
    """The failure the growth fixes: with growth 1, t stays 1 and x moves by ~1/|g|_1 per step."""
    fun = _bump(xp)
    x = xp.full(N, 1e-3)
    res = minimize(fun, x, LBFGS(growth=1.0), 12)
    assert float(res.f) > 0.99e6
    res = minimize(fun, x, LBFGS(), 12)
    assert float(res.f) < 5e4


@pytest.mark.slow
def test_lbfgs_texture_synthesis_from_noise_matches_adam():
    """Tutorial 6's failure case on the shipped VGG19: a texture from grey noise (std 10) with one
    shallow style layer. The default L-BFGS must reach a J within 2x of Adam's (lr 5) after the
    same number of evaluations (measured at 64 px, 100 evaluations: L-BFGS 3.0, Adam 85; before
    the step growth L-BFGS stayed at the starting J, 3.5e5)."""
    from numpynst.image import load_image, sample_path
    from numpynst.losses import gram_matrix, style_layer_cost
    from numpynst.vgg import VGG, preprocess

    model = VGG.from_h5()
    layer = "block1_conv1"
    style = load_image(sample_path("ihc"), size=64)
    xs = preprocess(style[: style.shape[0] // 16 * 16, : style.shape[1] // 16 * 16])
    target = gram_matrix(model.forward(xs, [layer], keep_cache=False)[layer])

    def fun(x_flat):
        a = model.forward(x_flat.reshape(xs.shape), [layer])[layer]
        J, da = style_layer_cost(target, a)
        return J, model.backward({layer: da}).reshape(-1)

    x0 = np.random.default_rng(0).normal(0.0, 10.0, size=xs.shape).astype(np.float32).reshape(-1)
    j_adam = float(minimize(fun, x0, Adam(lr=5.0), 100).best_f)
    res = minimize(fun, x0, make_optimizer("lbfgs"), 100)
    j0 = float(res.history[0, 0])
    assert float(res.best_f) <= 2.0 * j_adam < 1e-2 * j0


# ---------------------------------------------------------------------------------------------
# The two-loop recursion is exactly the L-BFGS matrix

def _dense_lbfgs_matrix(S, Y, rho, gamma):
    """H from H0 = gamma I and the BFGS update H <- (I - r s y^T) H (I - r y s^T) + r s s^T,
    applied with the stored pairs from oldest (last row) to newest (row 0); empty rows skipped."""
    n = S.shape[1]
    H = gamma * np.eye(n)
    I = np.eye(n)
    for i in reversed(range(S.shape[0])):
        if rho[i] == 0:
            continue
        s, y, r = S[i], Y[i], rho[i]
        V = I - r * np.outer(y, s)
        H = V.T @ H @ V + r * np.outer(s, s)
    return H


@pytest.mark.parametrize("steps", [3, 12])      # history partly filled / full and wrapped
def test_two_loop_matches_dense_bfgs(xp, steps):
    fun, _, _ = _quadratic(xp, cond=100.0)
    opt = LBFGS(history=5)
    x = xp.asarray(np.random.default_rng(1).standard_normal(N))
    f, g = fun(x)
    for _ in range(steps):
        x, f, g = opt.step(fun, x, f, g)
    S, Y, rho = to_host(opt.S), to_host(opt.Y), to_host(opt.rho)
    assert np.count_nonzero(rho) == min(steps, 5)
    H = _dense_lbfgs_matrix(S, Y, rho, float(opt.gamma))
    # gamma is s.y / y.y of the newest pair
    assert math.isclose(float(opt.gamma), S[0] @ Y[0] / (Y[0] @ Y[0]), rel_tol=1e-12)
    v = np.random.default_rng(2).standard_normal(N)
    d, slope = opt._direction(xp, xp.asarray(v))
    assert np.linalg.norm(to_host(d) + H @ v) <= 1e-10 * np.linalg.norm(H @ v)
    assert math.isclose(float(slope), -(v @ H @ v), rel_tol=1e-10)
    # Secant equation of the newest pair: H y = s.
    np.testing.assert_allclose(H @ Y[0], S[0], rtol=1e-9, atol=1e-12 * np.abs(S[0]).max())


# ---------------------------------------------------------------------------------------------
# Exact first steps of the simple methods

def test_gd_step_is_textbook(xp):
    fun, _, _ = _quadratic(xp)
    x0 = xp.asarray(np.random.default_rng(3).standard_normal(N))
    f0, g0 = fun(x0)
    x1, f1, g1 = GradientDescent(lr=0.01).step(fun, x0, f0, g0)
    np.testing.assert_array_equal(to_host(x1), to_host(x0) - 0.01 * to_host(g0))
    assert float(f1) == float(fun(x1)[0])


def test_adam_first_step_is_lr_times_sign(xp):
    # With bias correction, m^ = g and v^ = g^2 after one step: x moves by lr * g / (|g| + eps).
    fun, _, _ = _quadratic(xp)
    x0 = xp.asarray(np.random.default_rng(4).standard_normal(N))
    f0, g0 = fun(x0)
    x1, _, _ = Adam(lr=0.5).step(fun, x0, f0, g0)
    np.testing.assert_allclose(to_host(x1 - x0), -0.5 * np.sign(to_host(g0)), rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# No host decisions inside a step

class _NoSync(np.ndarray):
    """A NumPy array that refuses to become a host value, standing in for a CuPy array: any
    ``if``, ``float()``, ``int()`` or ``.item()`` on a value derived from fun's outputs raises.

    NumPy turns 0-d results (a dot product, an element) into NumPy scalars, which would escape
    the guard; like CuPy, this class keeps them 0-d arrays."""

    def __array_wrap__(self, arr, context=None, return_scalar=False):
        return np.asarray(arr).view(_NoSync)

    def __getitem__(self, key):
        out = super().__getitem__(key)
        return out if isinstance(out, np.ndarray) else np.asarray(out).view(_NoSync)

    def __bool__(self):
        raise AssertionError("bool() of an array value inside the optimizer (a GPU sync)")

    def __float__(self):
        raise AssertionError("float() of an array value inside the optimizer (a GPU sync)")

    def __int__(self):
        raise AssertionError("int() of an array value inside the optimizer (a GPU sync)")

    def __index__(self):
        raise AssertionError("index from an array value inside the optimizer (a GPU sync)")

    def item(self, *args):
        raise AssertionError(".item() inside the optimizer (a GPU sync)")


@pytest.mark.parametrize("make", [lambda: GradientDescent(1e-3), lambda: Adam(1e-2), LBFGS])
def test_steps_make_no_host_decisions(make):
    fun0, x_star, _ = _quadratic(np, cond=100.0)

    def fun(x):
        f, g = fun0(np.asarray(x))
        return np.asarray(f).view(_NoSync), g.view(_NoSync)

    with pytest.raises(AssertionError):     # the guard itself works
        bool(fun(np.zeros(N))[0] < 1)
    res = minimize(fun, np.zeros(N).view(_NoSync), make(), 60)
    assert np.asarray(res.f) < np.asarray(fun(np.zeros(N))[0])


# ---------------------------------------------------------------------------------------------
# minimize, state, options

def test_minimize_drops_its_reference_to_x0():
    """A caller that passes its only reference to x0 gets it freed after minimize's copy: one
    image-sized vector less for the whole loop (stylize relies on it at print size)."""
    import weakref
    fun0, _, _ = _quadratic(np)
    holder = [np.zeros(N)]
    ref, seen = weakref.ref(holder[0]), []

    def fun(x):
        seen.append(ref() is not None)
        return fun0(x)
    res = minimize(fun, holder.pop(), Adam(0.1), 3)
    assert seen == [False] * 4 and res.iterations == 3


def test_minimize_counts_and_stops(xp):
    fun0, _, _ = _quadratic(xp)
    calls = [0]

    def fun(x):
        calls[0] += 1
        return fun0(x)

    x0 = xp.zeros(N)
    res = minimize(fun, x0, LBFGS(), 7)
    assert isinstance(res, MinimizeResult)
    assert (res.iterations, res.evaluations, calls[0]) == (7, 8, 8)   # one evaluation per step
    assert float(xp.abs(x0).max()) == 0.0                              # x0 untouched
    calls[0] = 0
    res = minimize(fun, x0, Adam(0.1), 50, callback=lambda k, x, f, g: k == 3)
    assert (res.iterations, res.evaluations, calls[0]) == (3, 4, 4)
    with pytest.raises(OptionError, match="iterations"):
        minimize(fun, x0, LBFGS(), -1)


@pytest.mark.parametrize("opt", [Adam(0.1), LBFGS()], ids=["adam", "lbfgs"])
def test_state_is_tied_to_the_problem(xp, opt):
    fun, _, _ = _quadratic(xp)
    x = xp.zeros(N)
    f, g = fun(x)
    opt.step(fun, x, f, g)
    small = lambda z: (z @ z, 2 * z)   # noqa: E731
    z = xp.ones(3)
    with pytest.raises(ValueError, match="reset"):
        opt.step(small, z, *small(z))
    opt.reset()
    opt.step(small, z, *small(z))
    with pytest.raises(ValueError, match="1-D"):
        opt.step(small, xp.ones((2, 2)), xp.asarray(8.0), xp.ones((2, 2)))


def test_make_optimizer_defaults():
    assert isinstance(make_optimizer("lbfgs"), LBFGS) and make_optimizer("LBFGS").history == 10
    adam = make_optimizer("adam")
    assert isinstance(adam, Adam) and adam.lr == 5.0
    assert make_optimizer("adam", lr=2.0, beta1=0.5).beta1 == 0.5
    assert make_optimizer("gd", lr=1e-3).lr == 1e-3
    assert make_optimizer("lbfgs", history=4).history == 4


@pytest.mark.parametrize("args, kw, pattern", [
    (("sgd",), {}, "optimizer must be one of gd, adam, lbfgs, got 'sgd'"),
    (("adam",), {"lr": 0}, "lr must be a positive finite number, got 0"),
    (("adam",), {"lr": -1.0}, "lr must be a positive"),
    (("gd",), {"lr": float("nan")}, "lr must be a positive finite"),
    (("gd",), {"lr": "fast"}, "lr must be a positive number, got 'fast'"),
    (("gd",), {}, "optimizer 'gd' needs a learning rate"),
    (("lbfgs",), {"lr": 1.0}, "option lr does not apply to optimizer 'lbfgs'"),
    (("adam",), {"history": 3}, "option 'history' does not apply to optimizer 'adam'"),
    (("lbfgs",), {"history": 0}, "history must be a positive integer, got 0"),
    (("lbfgs",), {"history": 2.5}, "history must be a positive integer"),
    (("lbfgs",), {"c1": 1.5}, "c1 must be in"),
    (("lbfgs",), {"growth": 0.5}, "growth must be >= 1, got 0.5"),
    (("adam",), {"beta1": 1.0}, r"beta1 must be in \[0, 1\), got 1.0"),
    (("adam",), {"eps": 0.0}, "eps must be a positive"),
])
def test_make_optimizer_errors(args, kw, pattern):
    with pytest.raises(OptionError, match=pattern):
        make_optimizer(*args, **kw)


# ---------------------------------------------------------------------------------------------
# The ring of curvature pairs against the straightforward list of pairs

class _ListLBFGS:
    """L-BFGS as the textbook writes it, decisions on the host: the pairs in a Python list, newest
    first, the oldest dropped by ``pop()``; the same step rules as :class:`LBFGS` (Armijo test,
    quadratic backtracking, growth while no pair, cosine curvature test), NumPy float64 only."""

    def __init__(self, history, c1=1e-4, growth=4.0):
        self.m, self.c1, self.growth = history, c1, growth
        self.pairs = []            # (s, y, rho), newest first
        self.gamma, self.t = 0.0, 1.0

    def direction(self, g):
        q = g.copy()
        alphas = []
        for s, y, rho in self.pairs:
            a = rho * (s @ q)
            q -= a * y
            alphas.append(a)
        gamma = self.gamma if self.pairs else 1.0 / max(np.sum(np.abs(g)), 1.0)
        r = gamma * q
        for (s, y, rho), a in reversed(list(zip(self.pairs, alphas))):
            b = rho * (y @ r)
            r += (a - b) * s
        d = -r
        gd = g @ d
        if not gd < 0:
            d, gd = -gamma * g, -gamma * (g @ g)
        return d, gd

    def step(self, fun, x, f, g):
        d, gd = self.direction(g)
        t = self.t
        x_t = x + t * d
        f_t, g_t = fun(x_t)
        finite = np.isfinite(f_t) and np.all(np.isfinite(g_t))
        accepted = finite and f_t <= f + self.c1 * t * gd
        with np.errstate(all="ignore"):
            t_quad = -gd * t * t / (2.0 * (f_t - f - gd * t))
        t_quad = min(max(t_quad, 0.1 * t), 0.5 * t) if finite and np.isfinite(t_quad) else 0.1 * t
        if accepted:
            s, y = x_t - x, g_t - g
            sy = s @ y
            if sy > math.sqrt(np.finfo(np.float64).eps) * math.sqrt(s @ s) * math.sqrt(y @ y):
                self.pairs.insert(0, (s, y, 1.0 / sy))
                if len(self.pairs) > self.m:
                    self.pairs.pop()
                self.gamma = sy / (y @ y)
            self.t = t * self.growth if not self.pairs else 1.0
            return x_t, f_t, g_t
        self.t = t_quad
        return x, f, g


def _bumpy(x):
    """A non-convex function with a curvature that changes sign (pairs get skipped) and an
    overflow to inf for large steps (trials get rejected)."""
    with np.errstate(over="ignore"):
        e = np.exp(np.minimum(x, 800.0))
    f = np.sum(np.cos(3.0 * x) + 0.05 * x * x) + 1e-300 * np.sum(e * e)
    g = -3.0 * np.sin(3.0 * x) + 0.1 * x + 2e-300 * e * e
    return np.asarray(f), g


@pytest.mark.parametrize("problem", ["quadratic", "rosenbrock", "bumpy"])
def test_ring_gives_the_iterates_of_the_list_of_pairs(problem):
    """The ring (pairs written into a spare slot, the head advanced on the device) takes exactly the
    steps of the textbook list of pairs, float64, through many wraps of a short history."""
    if problem == "quadratic":
        fun, _, _ = _quadratic(np, cond=100.0)
        x = np.random.default_rng(11).standard_normal(N) * 3
    elif problem == "rosenbrock":
        fun, x = _rosenbrock(np), np.array([-1.2, 1.0])
    else:
        fun, x = _bumpy, np.random.default_rng(12).standard_normal(30) * 2
    ring, ref = LBFGS(history=3), _ListLBFGS(3)
    f, g = fun(x)
    xr, fr, gr = x.copy(), f, g.copy()
    pushes = rejections = 0
    for _ in range(80):
        before = len(ref.pairs), ref.pairs[0][2] if ref.pairs else None
        x, f, g = ring.step(fun, x, f, g)
        xr, fr, gr = ref.step(fun, xr, fr, gr)
        np.testing.assert_array_equal(x, xr)
        np.testing.assert_array_equal(g, gr)
        assert float(f) == float(fr) and float(ring.t) == ref.t
        pushes += (len(ref.pairs), ref.pairs[0][2] if ref.pairs else None) != before
        rejections += not bool(ring.accepted)
        rows = len(ref.pairs)
        for row, (s, y, _) in enumerate(ref.pairs):
            np.testing.assert_array_equal(ring.S[row], s)
            np.testing.assert_array_equal(ring.Y[row], y)
        np.testing.assert_array_equal(ring.rho[:rows], [p[2] for p in ref.pairs])
        assert not np.any(ring.rho[rows:])
    assert pushes > 3, "the ring never wrapped"
    if problem != "quadratic":
        assert rejections > 0, "no trial was rejected: the test misses that path"


def test_ring_state_round_trips_and_continues_bit_for_bit():
    """state_dict() after the ring wrapped holds the rows newest first (the checkpoint format of the
    shifted buffers), and a fresh optimizer loaded from it continues with the very same steps."""
    fun, _, _ = _quadratic(np, cond=100.0)
    x = np.random.default_rng(13).standard_normal(N)
    f, g = fun(x)
    opt = LBFGS(history=4)
    for _ in range(9):
        x, f, g = opt.step(fun, x, f, g)
    state = opt.state_dict()
    assert state["S"].shape == (4, N) and state["rho"].shape == (4,)
    np.testing.assert_array_equal(state["S"], opt.S)
    assert int(opt._head) != 0, "the ring has not moved: the test would not see a slot mix-up"
    twin = LBFGS(history=4)
    twin.load_state(state)
    xa, fa, ga = x.copy(), f, g.copy()
    for _ in range(6):
        x, f, g = opt.step(fun, x, f, g)
        xa, fa, ga = twin.step(fun, xa, fa, ga)
        np.testing.assert_array_equal(x, xa)
        np.testing.assert_array_equal(g, ga)


def test_ring_loads_a_state_of_rows_written_by_hand_and_refuses_another_history():
    """A state in the format of the shifted (m, n) buffers (as checkpoints written before the ring
    hold) gives the direction of the same pairs; one with another number of rows is refused."""
    rng = np.random.default_rng(14)
    S, Y = rng.standard_normal((3, 6)), rng.standard_normal((3, 6))
    Y = S + 0.1 * Y                       # positive s.y
    rho = 1.0 / np.einsum("ij,ij->i", S, Y)
    rho[2] = 0.0                          # an empty row, as in a history not yet full
    state = {"name": "lbfgs", "S": S, "Y": Y, "rho": rho, "gamma": np.asarray(0.5),
             "t": np.asarray(1.0), "accepted": np.asarray(True)}
    opt = LBFGS(history=3)
    opt.load_state(state)
    np.testing.assert_array_equal(opt.S, S)
    ref = _ListLBFGS(3)
    ref.pairs, ref.gamma = [(S[i], Y[i], rho[i]) for i in range(2)], 0.5
    v = rng.standard_normal(6)
    d, gd = opt._direction(np, v)
    d_ref, gd_ref = ref.direction(v)
    np.testing.assert_array_equal(d, d_ref)
    assert float(gd) == float(gd_ref)
    with pytest.raises(ValueError, match="history=5"):
        LBFGS(history=5).load_state(state)
