# Source of tutorials/07_optimizers.ipynb (build with: python tutorials/_build.py)

# %% [markdown]
# # 7 · The optimizers: gradient descent, momentum, Adam, L-BFGS and its line searches
#
# **Why this matters.** Notebooks 5 and 6 gave a cost $J$ and its gradient; notebook 8 will
# minimize their sum over the pixels of an image. *How* to minimize decides whether that takes
# ten evaluations of $J$ or a thousand, and whether a start from noise goes anywhere at all. This
# notebook derives the four methods the series uses, checks each on problems whose answer is known
# (a quadratic, the Rosenbrock function) against `scipy.optimize`, and then runs them on a real
# style-transfer objective at a small size. All curves are drawn **per evaluation** of the
# function and its gradient — one forward and one backward pass through VGG, the unit of cost —
# not per iteration, since an iteration of a line-search method may evaluate several points.
#
# Notation: $f$ the function, $g_k = \nabla f(x_k)$, $\eta$ a step size, $H$ the Hessian
# $\nabla^2 f$ (and, in section 4, $H_k$ an approximation of its *inverse*).

# %%
import os

import numpy as np
import matplotlib.pyplot as plt
from matplotlib_inline.backend_inline import set_matplotlib_formats
import scipy
import scipy.optimize as so

FAST = os.environ.get("NUMPYNST_FAST") == "1"   # the test suite sets this: small sizes, quick run
set_matplotlib_formats("jpeg")
plt.rcParams.update({"figure.dpi": 80})

from numpynst.claims import claim, record
from numpynst.image import load_image, sample_path
from numpynst.objective import Objective
from numpynst.optim import DEFAULT_LBFGS_GROWTH, DEFAULT_LBFGS_HISTORY, LBFGS, Adam, GradientDescent, minimize
from numpynst.transfer import DEFAULT_GD_LR
from numpynst.vgg import VGG

rng = np.random.default_rng(0)
print("scipy", scipy.__version__)
print("fast mode" if FAST else "full mode")


class Counted:
    """Wrap fun(x) -> (f, g): count the evaluations and keep f after each, for curves per evaluation."""

    def __init__(self, fun):
        self.fun, self.values = fun, []

    def __call__(self, x):
        f, g = self.fun(x)[:2]
        self.values.append(float(f))
        return f, g


def run(fun, x0, optimizer, evaluations):
    """numpynst.optim.minimize for a budget of evaluations; returns (result, f per evaluation)."""
    counted = Counted(fun)
    result = minimize(counted, np.array(x0, dtype=np.float64), optimizer, evaluations - 1)
    return result, np.array(counted.values)


def run_scipy(fun, x0, evaluations, **options):
    """scipy's L-BFGS-B (a strong-Wolfe line search) for at most `evaluations` evaluations."""
    counted = Counted(lambda x: tuple(np.asarray(v, dtype=np.float64) for v in fun(x)[:2]))
    res = so.minimize(counted, np.array(x0, dtype=np.float64), jac=True, method="L-BFGS-B",
                      callback=lambda xk: run_scipy.iterates.append(xk.copy()),
                      options={"maxfun": evaluations, "maxiter": evaluations, "ftol": 0.0, "gtol": 0.0,
                               **options})
    # maxfun is checked between iterations: the last line search may run past it; cut the curve
    return res, np.array(counted.values[:evaluations])


run_scipy.iterates = []          # the points after each iteration of the latest run (its callback)

# %% [markdown]
# ## 1. Gradient descent, and why its step must be small
#
# The notes' rule is $x_{k+1} = x_k - \eta\, g_k$. On a quadratic $f(x) = \tfrac12 x^\top H x$
# with eigenvalues $\lambda_\min \le \dots \le \lambda_\max$ of $H$, the gradient is $Hx$, and
# along each eigenvector the coordinate is multiplied by $1 - \eta\lambda$ per step. Every factor
# must be below 1 in size, so
#
# $$
# 0 < \eta < \frac{2}{\lambda_\max},
# $$
#
# and the best single $\eta = 2/(\lambda_\max + \lambda_\min)$ still leaves the slowest direction
# shrinking only by $\frac{\kappa - 1}{\kappa + 1}$ per step, $\kappa = \lambda_\max/\lambda_\min$
# the condition number. The stiffest direction sets the step; the flattest sets the time. A
# 20-dimensional quadratic with $\kappa = 100$:

# %%
n = 20
lams = np.logspace(0, 2, n)                       # eigenvalues 1 .. 100: kappa = 100
H_quad = np.diag(lams)


def quad(x):
    return 0.5 * x @ H_quad @ x, H_quad @ x


x_start = rng.standard_normal(n)
kappa = lams.max() / lams.min()
eta_best = 2 / (lams.max() + lams.min())
steps = 200 if not FAST else 60
res_gd, f_gd = run(quad, x_start, GradientDescent(eta_best), steps + 1)
half = steps // 2      # measured over the second half: the fastest-decaying directions are gone by then
rate_gd = (f_gd[steps] / f_gd[half]) ** (1 / (2 * (steps - half)))       # f ~ rate^(2k)
record("kappa", kappa)
record("rate_gd_theory", (kappa - 1) / (kappa + 1))
claim("rate_gd", rate_gd, 0.99 * (kappa - 1) / (kappa + 1), (kappa - 1) / (kappa + 1))
print(f"kappa = {kappa:.0f}: measured contraction per step {rate_gd:.4f}, theory (k-1)/(k+1) = {(kappa - 1) / (kappa + 1):.4f}")
_, f_over = run(quad, x_start, GradientDescent(1.05 * 2 / lams.max()), 41)
claim("diverge", f_over[-1] / f_over[0], 10, None)
print(f"eta = 1.05 x 2/lambda_max: f grows {f_over[-1] / f_over[0]:.3g}-fold in 40 steps")

# %% [markdown]
# The measured contraction over the second half of the run, {{rate_gd:.4f}} per step, is the
# predicted {{rate_gd_theory:.4f}} (the cell asserts it lies within 1 % below); 5 % above the stability limit, $f$ grows
# {{diverge:.3g}}-fold in 40 steps instead. With $\kappa = {{kappa:.0f}}$, halving the error takes
# about $\kappa \ln 2 / 2$ steps.
#
# **Why the step is so small for style transfer.** The same limit holds near any point where $J$ is
# smooth, with $\lambda_\max$ the largest curvature of $J$ over all directions in pixel space, and
# the same slowness follows wherever most directions curve far less than the stiffest one. We
# measure the curvatures at the photo for the calibrated objective of notebook 8, in float64 at a
# small size, with Hessian-vector products, each a central difference of gradients,
# $Hv \approx (\nabla J(x + hv) - \nabla J(x - hv)) / 2h$: along the gradient,
# $g^\top H g / \|g\|^2$; the largest, $\lambda_\max$, by power iteration; and along random unit
# directions $v$, $v^\top H v$, whose average over directions is the mean eigenvalue
# $\operatorname{tr} H / n$ — the curvature of a typical direction:

# %%
side = 32
model64 = VGG.from_h5(dtype=np.float64)
content = load_image(sample_path("content"), size=side)
content = content[: content.shape[0] // 16 * 16, : content.shape[1] // 16 * 16]
style = load_image(sample_path("ihc"), size=side)
nst64 = Objective(model64, model64.preprocess(content), model64.preprocess(style), weights_mode="calibrated")
J_flat64 = nst64.flat()
x_photo = model64.preprocess(content).reshape(-1)
J0, g0 = J_flat64(x_photo)


def hvp(v, h=1e-2):
    """Hessian-vector product by a central difference of gradients (v of unit length; pixels ~ 100)."""
    return (J_flat64(x_photo + h * v)[1] - J_flat64(x_photo - h * v)[1]) / (2 * h)


u = g0 / np.linalg.norm(g0)
curv_g = float(u @ hvp(u))                      # g^T H g / |g|^2
v = rng.standard_normal(g0.shape)
v /= np.linalg.norm(v)
for _ in range(2 if FAST else 8):               # power iteration: v -> Hv / |Hv|
    Hv = hvp(v)
    lam = float(v @ Hv)
    v = Hv / np.linalg.norm(Hv)
lam_max = lam
random_curv = []
for _ in range(2 if FAST else 6):               # curvature along random unit directions
    w = rng.standard_normal(g0.shape)
    w /= np.linalg.norm(w)
    random_curv.append(float(w @ hvp(w)))
typical = float(np.median(random_curv))
record("n_random", len(random_curv))
record("typical_ratio", typical / lam_max)
record("halve_typical", np.log(2) / (2 * typical / lam_max))
claim("curv_ratio", curv_g / lam_max, 0, 1.0, fast=None)
claim("typical_small", typical / lam_max, 0, 0.5, fast=None)
record("n_pixels", x_photo.size)
record("curv_g", curv_g)
record("lam_max", lam_max)
record("eta_g", 1 / curv_g)
record("eta_safe", 2 / lam_max)
record("gd_lr_ratio", DEFAULT_GD_LR / (2 / lam_max))
record("move_safe", float(np.abs(2 / lam_max * g0).max()))
print(f"{x_photo.size} pixel values; curvature along g {curv_g:.3g}, largest curvature found {lam_max:.3g}")
print(f"curvature along {len(random_curv)} random directions: " + ", ".join(f"{c:.2g}" for c in random_curv)
      + f"  (median {typical / lam_max:.3f} of the largest)")
print(f"best step along g 1/curv_g = {1 / curv_g:.3g};  stable step 2/lambda_max = {2 / lam_max:.3g};  "
      f"library's DEFAULT_GD_LR {DEFAULT_GD_LR:g}")
print(f"a step of 2/lambda_max moves the most-moved pixel by {np.abs(2 / lam_max * g0).max():.3g} grey levels")

# %% [markdown]
# Along the gradient the curvature is {{curv_g:.3g}}, {{curv_ratio:.2f}} of the largest found,
# {{lam_max:.3g}} (power iteration gives a lower bound on $\lambda_\max$): the gradient points
# mostly along the stiff directions, so gradient descent can take about the step that the parabola
# along $g$ asks for — and no more, for it must stay below $2/\lambda_\max = {{eta_safe:.3g}}$.
# (Such a step moves the most-moved pixel by {{move_safe:.2g}} grey levels. The library's default
# rate for calibrated weights, `DEFAULT_GD_LR`, is {{gd_lr_ratio:.1f}} times this limit here at
# {{side}} px — unstable along the stiffest direction, which shows as the bumps of its curve in
# section 7; notebook 8 runs it at 96 px.) But a typical direction
# curves far less: the median over {{n_random}} random directions is {{typical_ratio:.3f}} of
# $\lambda_\max$ (asserted below half). Along it, a stable step shrinks the error by a factor of
# at least $1 - 2\lambda/\lambda_\max$ per step — about {{halve_typical:.0f}} steps to halve it,
# and the flattest of the {{n_pixels}} directions take far longer. The step is small because the
# stiffest directions set it for all the others; the methods below are ways around that.
#
# ## 2. Momentum
#
# The heavy ball (Polyak 1964) keeps a velocity:
#
# $$
# v_{k+1} = \mu\, v_k - \eta\, g_k, \qquad x_{k+1} = x_k + v_{k+1}.
# $$
#
# Along an eigenvector the pair $(x, v)$ evolves by a $2 \times 2$ linear map; its eigenvalues
# have size $\sqrt{\mu}$ when they are complex, and with $\eta = 4/(\sqrt{\lambda_\max} +
# \sqrt{\lambda_\min})^2$, $\mu = \big(\frac{\sqrt\kappa - 1}{\sqrt\kappa + 1}\big)^2$ every
# direction contracts by $\sqrt{\mu} = \frac{\sqrt\kappa - 1}{\sqrt\kappa + 1}$ per step: the
# square root of the condition number instead of the condition number. `numpynst` has no momentum
# optimizer (style transfer uses Adam, which contains one); it takes three lines here:

# %%
class Momentum:
    """Heavy-ball gradient descent, in numpynst.optim's step(fun, x, f, g) form (one evaluation per step)."""
    accepted = True

    def __init__(self, lr, mu):
        self.lr, self.mu, self.v = lr, mu, None

    def step(self, fun, x, f, g):
        self.v = (self.mu * self.v if self.v is not None else 0.0) - self.lr * g
        x_new = x + self.v
        f_new, g_new = fun(x_new)
        return x_new, f_new, g_new


sq = np.sqrt(kappa)
eta_hb = 4 / (np.sqrt(lams.max()) + np.sqrt(lams.min())) ** 2
mu_hb = ((sq - 1) / (sq + 1)) ** 2
res_hb, f_hb = run(quad, x_start, Momentum(eta_hb, mu_hb), steps + 1)
# the rate over the second half (the transient of the 2x2 maps gone)
res_half, _ = run(quad, x_start, Momentum(eta_hb, mu_hb), half + 1)
rate_hb = (np.linalg.norm(res_hb.x) / np.linalg.norm(res_half.x)) ** (1 / (steps - half))
record("rate_hb_theory", (sq - 1) / (sq + 1))
claim("rate_hb", rate_hb, 0.9 * (sq - 1) / (sq + 1), 1.05 * (sq - 1) / (sq + 1))
print(f"momentum: measured contraction {rate_hb:.4f} per step, theory (sqrt k - 1)/(sqrt k + 1) = {(sq - 1) / (sq + 1):.4f}")

# %% [markdown]
# Measured over the second half of the run, {{rate_hb:.3f}} per step against the predicted
# {{rate_hb_theory:.3f}} (asserted within {{rate_hb.lo:.3f}}..{{rate_hb.hi:.3f}}), where plain
# gradient descent managed {{rate_gd:.3f}}. The catch: the optimal $\eta, \mu$ need
# $\lambda_\min$ and $\lambda_\max$, which a real problem does not hand out.
#
# ## 3. Adam
#
# Adam (Kingma & Ba 2015) runs momentum on the gradient and divides each coordinate's step by a
# running root-mean-square of its own gradient:
#
# $$
# m_k = \beta_1 m_{k-1} + (1 - \beta_1) g_k, \quad v_k = \beta_2 v_{k-1} + (1 - \beta_2) g_k^2, \quad
# \hat m_k = \frac{m_k}{1 - \beta_1^k}, \ \hat v_k = \frac{v_k}{1 - \beta_2^k}, \quad
# x_{k+1} = x_k - \eta\, \frac{\hat m_k}{\sqrt{\hat v_k} + \epsilon_\text{A}}.
# $$
#
# The divisions by $1 - \beta^k$ undo the pull of the zero start ($m_0 = v_0 = 0$). At the first
# step $\hat m_1 = g_1$ and $\hat v_1 = g_1^2$, so every coordinate moves by $\eta$ exactly (up to
# $\epsilon_\text{A}$), whatever the size of its gradient: $\eta$ is in the units of $x$ — grey
# levels, for an image. Checked on the quadratic, whose gradient entries span two orders of
# magnitude:

# %%
adam = Adam(lr=0.1)
x1, _, _ = adam.step(quad, x_start.copy(), *quad(x_start))
first_moves = np.abs(x1 - x_start)
claim("adam_first_step", np.abs(first_moves / 0.1 - 1).max(), 0, 1e-6)
record("grad_span", np.abs(quad(x_start)[1]).max() / np.abs(quad(x_start)[1]).min())
print(f"gradient entries span a factor {np.abs(quad(x_start)[1]).max() / np.abs(quad(x_start)[1]).min():.0f}; "
      f"first Adam step moves every coordinate by {first_moves.min():.6f} .. {first_moves.max():.6f} (lr = 0.1)")

# %% [markdown]
# The gradient entries span a factor {{grad_span:.0f}}, the first step moves each coordinate by
# $\eta$ to {{adam_first_step:.0e}}. Adam is insensitive to the scale of $f$ — multiply $J$ by 1000
# and it takes the same steps — which is why its learning rate can have a default (5 grey levels
# for style transfer) where gradient descent's cannot. It does not know the curvature: near a
# minimum its steps stay of order $\eta$ until $\hat m$ averages out, so it wanders around the
# bottom instead of landing.
#
# ## 4. L-BFGS
#
# Newton's method steps to the minimum of the local quadratic model, $x - H^{-1}g$: one step on a
# quadratic, whatever $\kappa$. It needs $H^{-1}$, an $n \times n$ matrix — for a 512-pixel image,
# $n$ is 786 432. Quasi-Newton methods learn an approximation $H_k \approx H^{-1}$ from the
# gradients they see anyway.
#
# **The secant condition.** After a step $s_k = x_{k+1} - x_k$ the gradient changed by
# $y_k = g_{k+1} - g_k$. For a quadratic $y_k = H s_k$ exactly, so the new inverse estimate is
# asked to map $y_k$ back to $s_k$:
#
# $$
# H_{k+1}\, y_k = s_k .
# $$
#
# **BFGS** picks, among the symmetric matrices that satisfy it, the one closest to $H_k$ (in a
# weighted norm); with $\rho_k = 1 / (y_k^\top s_k)$ and $V_k = I - \rho_k\, y_k s_k^\top$:
#
# $$
# H_{k+1} = V_k^\top H_k V_k + \rho_k\, s_k s_k^\top .
# $$
#
# (Check the secant condition: $V_k y_k = y_k - \rho_k y_k (s_k^\top y_k) = 0$, so
# $H_{k+1} y_k = \rho_k s_k (s_k^\top y_k) = s_k$.) It stays positive definite as long as
# $y_k^\top s_k > 0$ — the *curvature condition*: $f$ curves upwards along the step.
#
# **The two-loop recursion.** L-BFGS keeps only the last $m$ pairs and never forms a matrix: it
# needs only the product $H_k g$. Unroll the update $m$ times from a simple start
# $H^0 = \gamma I$:
#
# $$
# H_k = (V_{k-1}^\top \cdots V_{k-m}^\top)\, H^0\, (V_{k-m} \cdots V_{k-1})
#     + \rho_{k-m} (V_{k-1}^\top \cdots V_{k-m+1}^\top)\, s_{k-m} s_{k-m}^\top (V_{k-m+1} \cdots V_{k-1})
#     + \dots + \rho_{k-1}\, s_{k-1} s_{k-1}^\top .
# $$
#
# Apply it to $q = g$ from the right. The products $V_{k-m} \cdots V_{k-1}\, g$ are built newest
# first: $V_i q = q - \rho_i (s_i^\top q)\, y_i$, so with $\alpha_i = \rho_i s_i^\top q$ the first
# loop runs $q \leftarrow q - \alpha_i y_i$ for $i = k-1, \dots, k-m$ — and the $\alpha_i$ are
# exactly the scalars $s_i^\top(\cdots)$ that the rank-one terms need. Then $r = H^0 q$. The
# transposes $V_i^\top r = r - \rho_i (y_i^\top r)\, s_i$ are applied oldest first, and each
# rank-one term adds $\rho_i s_i (s_i^\top \cdots) = \alpha_i s_i$ at its place, so the second loop
# runs $\beta = \rho_i y_i^\top r$, $r \leftarrow r + (\alpha_i - \beta)\, s_i$ for
# $i = k-m, \dots, k-1$. The result is $H_k g$ in $4mn$ multiplications:
#
# $$
# \begin{aligned}
# &q = g;\quad \text{for } i = k-1 \dots k-m:\ \alpha_i = \rho_i s_i^\top q,\ q \mathrel{-}= \alpha_i y_i \\
# &r = \gamma q;\quad \text{for } i = k-m \dots k-1:\ \beta = \rho_i y_i^\top r,\ r \mathrel{+}= (\alpha_i - \beta)\, s_i \\
# &d = -r .
# \end{aligned}
# $$
#
# $\gamma = s_{k-1}^\top y_{k-1} / y_{k-1}^\top y_{k-1}$ — the inverse curvature along the last
# step — gives the start the right scale. Checked against the dense BFGS matrix built by the
# update formula, on pairs from the quadratic (where $y = Hs$):

# %%
def two_loop(g, S, Y, gamma):
    """H g by the two-loop recursion; S, Y lists of pairs, oldest first."""
    rho = [1.0 / (y @ s) for s, y in zip(S, Y)]
    q, alphas = g.copy(), []
    for s, y, r_ in reversed(list(zip(S, Y, rho))):       # newest -> oldest
        a = r_ * (s @ q)
        q -= a * y
        alphas.append(a)
    r = gamma * q
    for (s, y, r_), a in zip(zip(S, Y, rho), reversed(alphas)):   # oldest -> newest
        b = r_ * (y @ r)
        r += (a - b) * s
    return r


m_pairs = 5
S = [rng.standard_normal(n) for _ in range(m_pairs)]
Y = [H_quad @ s for s in S]
gamma = (S[-1] @ Y[-1]) / (Y[-1] @ Y[-1])
H_dense = gamma * np.eye(n)
for s, y in zip(S, Y):                                     # the update, oldest pair first
    r_ = 1.0 / (y @ s)
    V = np.eye(n) - r_ * np.outer(y, s)
    H_dense = V.T @ H_dense @ V + r_ * np.outer(s, s)
g_test = rng.standard_normal(n)
err_two_loop = np.linalg.norm(two_loop(g_test, S, Y, gamma) - H_dense @ g_test) / np.linalg.norm(H_dense @ g_test)
err_secant = np.linalg.norm(H_dense @ Y[-1] - S[-1]) / np.linalg.norm(S[-1])
claim("err_two_loop", err_two_loop, 0, 1e-12)
claim("err_secant", err_secant, 0, 1e-12)
print(f"two-loop vs dense BFGS: relative error {err_two_loop:.1e};  secant H y = s: {err_secant:.1e}")

# %% [markdown]
# The recursion gives the dense matrix's product to {{err_two_loop:.0e}} and the secant condition
# holds for the newest pair to {{err_secant:.0e}} (both asserted below $10^{-12}$). `numpynst.optim.LBFGS` runs the
# same two loops over {{memory}} pairs (its docstring), on NumPy or CuPy arrays.
#
# ## 5. Line searches: Armijo and (strong) Wolfe
#
# The direction $d = -H_k g$ comes with no guaranteed length. A line search picks $t$ in
# $x + t d$. Two families of conditions, with $0 < c_1 < c_2 < 1$ (typically $10^{-4}$ and $0.9$):
#
# * **Armijo** (sufficient decrease): $f(x + td) \le f(x) + c_1 t\, g^\top d$. *Backtracking*
#   tries $t = 1$ and shrinks it until the test passes. It never tries a *longer* step.
# * **Strong Wolfe** adds the curvature condition $|\nabla f(x + td)^\top d| \le c_2 |g^\top d|$: the
#   slope must have flattened. A step too short leaves the slope steep, so a Wolfe search
#   *extrapolates* — it grows $t$ until the slope turns, then zooms in between. A Wolfe step also
#   guarantees $y^\top s > 0$ on any function that is bounded below along the line, so the pair can
#   always be stored. SciPy's L-BFGS-B and PyTorch's `line_search_fn="strong_wolfe"` use one; an
#   iteration then costs as many evaluations as the search needs.
#
# `numpynst`'s L-BFGS takes **one evaluation per step**, so that no value has to cross from a GPU
# to the host inside an iteration: the Armijo test is made on the device, a rejected trial is an
# iteration that does not move and shrinks $t$ (to the minimum of the fitted parabola, clipped to
# $[0.1t, 0.5t]$), and an accepted one resets $t = 1$. Pairs failing the curvature test
# ($\cos(s, y)$ below a small threshold) are not stored. That is a backtracking search — and it
# fails where the cost curves *downwards* along the step, as at notebook 6's hilltop: every pair
# fails the curvature test, the start $H^0 = I/\|g\|_1$ (a step of length 1 in the 1-norm) is never
# corrected, and each iteration moves $x$ by a vanishing amount. Hence the library's fix:
# **while no curvature pair is stored, an accepted step multiplies $t$ by {{growth:g}}** — the
# extrapolation that a Wolfe search would do within one iteration, spread over iterations.
#
# The hilltop toy of notebook 6 — $f(A) = \|G^{(S)} - A^\top A\|^2$ from small noise, here with
# "activations" of order 100 as in VGG (a target of 64 positions × 3 channels with entries up to
# 100, and a start of noise of size 1), so that the bootstrap step of 1-norm 1 is small — with
# `LBFGS(growth=1)` (plain backtracking), the library's default, and SciPy's strong-Wolfe
# L-BFGS-B, each for the same number of evaluations:

# %%
A_target = 100.0 * rng.uniform(0.0, 1.0, (64, 3)) * np.array([1.0, 0.6, 0.3])
G_toy = A_target.T @ A_target


def hilltop(a_flat):
    A = a_flat.reshape(64, 3)
    D = G_toy - A.T @ A
    return np.sum(D * D), (-4.0 * A @ D).reshape(-1)


a0 = 1.0 * rng.standard_normal(64 * 3)
budget = 60 if not FAST else 40
toy = {}
for label, opt in [("backtracking (growth 1)", LBFGS(growth=1.0)), ("numpynst (growth 4)", LBFGS())]:
    res, curve = run(hilltop, a0, opt, budget)
    toy[label] = curve
    record("pairs_" + label.split()[0], int(np.count_nonzero(opt.rho > 0)))
run_scipy.iterates = []
res_sp, curve_sp = run_scipy(hilltop, a0, budget)
toy["scipy L-BFGS-B (strong Wolfe)"] = curve_sp
record("scipy_first_move", np.abs(run_scipy.iterates[0] - a0).sum())     # the first iteration's step, 1-norm
f_top = hilltop(np.zeros(64 * 3))[0]
for label, curve in toy.items():
    print(f"{label:30s}: f/f(0) after {len(curve)} evaluations {curve[-1] / f_top:.3g}")
record("growth", DEFAULT_LBFGS_GROWTH)
record("memory", DEFAULT_LBFGS_HISTORY)
record("toy_budget", budget)
claim("toy_stuck", toy["backtracking (growth 1)"][-1] / f_top, 0.95, 1.0)
claim("toy_growth", toy["numpynst (growth 4)"][-1] / f_top, 0, 1e-3)
claim("toy_scipy", curve_sp[-1] / f_top, 0, 1e-3)
record("scipy_nit", res_sp.nit)
record("scipy_nfev", len(curve_sp))
print(f"scipy's first iteration moved A by {np.abs(run_scipy.iterates[0] - a0).sum():.3g} in the 1-norm "
      f"(the bootstrap step that backtracking accepts: 1)")

fig, ax = plt.subplots(figsize=(6.5, 3.4))
for label, curve in toy.items():
    ax.plot(np.arange(1, len(curve) + 1), curve / f_top, label=label)
ax.set_yscale("log")
ax.set_xlabel("evaluations of f and its gradient")
ax.set_ylabel("f / f(A = 0)")
ax.set_title("the hilltop toy from small noise", fontsize=10)
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# Plain backtracking is still on the hilltop after {{toy_budget}} evaluations ($f$ at
# {{toy_stuck:.4f}} of its top value, {{pairs_backtracking}} pairs stored). The growing step leaves
# it ({{toy_growth:.1e}}); so does SciPy's strong-Wolfe search ({{toy_scipy:.1e}}), in
# {{scipy_nit}} iterations for its {{scipy_nfev}} evaluations — several evaluations per iteration.
# SciPy's first iteration alone moves $A$ by {{scipy_first_move:.3g}} in the 1-norm, where
# backtracking accepts the bootstrap step of 1-norm 1. So "L-BFGS stalls from noise" is a
# statement about backtracking, not about L-BFGS.
#
# ## 6. Checked against `scipy.optimize`
#
# On the quadratic and on the Rosenbrock function $f(u, v) = (1 - u)^2 + 100 (v - u^2)^2$ (a curved
# valley, minimum at $(1, 1)$, start $(-1.2, 1)$; `scipy.optimize.rosen`), the library's L-BFGS
# and SciPy's must both find the known minimum. Gradient descent, momentum and Adam run beside
# them, for the same number of evaluations:

# %%
def rosen(x):
    return so.rosen(x), so.rosen_der(x)


problems = {"quadratic (kappa 100)": (quad, x_start, np.zeros(n), 1 / lams.max()),
            "Rosenbrock": (rosen, np.array([-1.2, 1.0]), np.ones(2), 1e-3)}
budget = 400 if not FAST else 200
curves = {}
for pname, (fun, x0, x_star, lr) in problems.items():
    curves[pname] = {}
    for label, opt in [("gradient descent", GradientDescent(lr)), ("momentum 0.9", Momentum(lr, 0.9)),
                       ("Adam", Adam(lr=1e-2)), ("numpynst L-BFGS", LBFGS())]:
        res, curve = run(fun, x0, opt, budget)
        curves[pname][label] = curve
        if label == "numpynst L-BFGS":
            best = np.asarray(res.best_x)
    res_sp, curve_sp = run_scipy(fun, x0, budget)
    curves[pname]["scipy L-BFGS-B"] = curve_sp
    key = pname.split()[0].lower()
    err_ours = np.linalg.norm(best - x_star)
    err_sp = np.linalg.norm(res_sp.x - x_star)
    need = {label: int(np.argmax(c < 1e-10)) + 1 if (c < 1e-10).any() else None for label, c in curves[pname].items()}
    claim(f"err_{key}_ours", err_ours, 0, 1e-5)
    claim(f"err_{key}_scipy", err_sp, 0, 1e-5)
    record(f"need_{key}_ours", need["numpynst L-BFGS"])
    record(f"need_{key}_scipy", need["scipy L-BFGS-B"])
    for label, tag in [("gradient descent", "gd"), ("momentum 0.9", "mom"), ("Adam", "adam")]:
        record(f"end_{key}_{tag}", curves[pname][label][-1])
    print(f"{pname}: |x - x*| numpynst L-BFGS {err_ours:.1e}, scipy {err_sp:.1e};  evaluations to f < 1e-10: {need}")
record("budget", budget)

fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
for ax, (pname, cs) in zip(axes, curves.items()):
    for label, curve in cs.items():
        ax.plot(np.arange(1, len(curve) + 1), np.maximum(curve, 1e-30), label=label)
    ax.set_yscale("log")
    ax.set_xlabel("evaluations of f and its gradient")
    ax.set_ylabel("f (minimum 0)")
    ax.set_title(pname, fontsize=10)
axes[0].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# Both L-BFGS implementations land on the minimum (distance {{err_quadratic_ours:.0e}} and
# {{err_quadratic_scipy:.0e}} on the quadratic, {{err_rosenbrock_ours:.0e}} and
# {{err_rosenbrock_scipy:.0e}} on Rosenbrock; asserted below $10^{-5}$), reaching $f < 10^{-10}$ after
# {{need_quadratic_ours}} and {{need_quadratic_scipy}} evaluations on the quadratic, {{need_rosenbrock_ours}}
# and {{need_rosenbrock_scipy}} on Rosenbrock. The first-order methods, with a step safe for the
# stiffest direction (momentum with $\mu = 0.9$, not the tuned pair of section 2), end the
# {{budget}} evaluations at $f$ = {{end_quadratic_gd:.1e}} (gradient descent), {{end_quadratic_mom:.1e}}
# (momentum) and {{end_quadratic_adam:.1e}} (Adam) on the quadratic, and {{end_rosenbrock_gd:.1e}},
# {{end_rosenbrock_mom:.1e}}, {{end_rosenbrock_adam:.1e}} in Rosenbrock's curved valley: momentum
# gets far on the quadratic, nothing first-order gets far along the valley.
#
# ## 7. On a style-transfer objective
#
# Now the calibrated objective of notebook 8 at {{side}} px (float32, as `stylize` runs), from the
# photo, each method for the same number of evaluations: gradient descent at the library's
# `DEFAULT_GD_LR`, Adam at its default 5 grey levels, the library's L-BFGS, and SciPy's L-BFGS-B
# (in float64 over the float32 objective). Then the case that needs the step growth: a texture
# from noise with `block1_conv1` alone (notebook 6, section 4).

# %%
model = VGG.from_h5()
nst = Objective(model, model.preprocess(content), model.preprocess(style), weights_mode="calibrated")
J_flat = nst.flat()
x0 = model.preprocess(content).reshape(-1)
budget = 30 if not FAST else 5
record("side", side)
record("nst_budget", budget)


def run32(opt):
    counted = Counted(J_flat)
    minimize(counted, x0.copy(), opt, budget - 1)
    return np.array(counted.values)


nst_curves = {"gradient descent": run32(GradientDescent(DEFAULT_GD_LR)), "Adam": run32(Adam(lr=5.0)),
              "numpynst L-BFGS": run32(LBFGS())}
res_sp, nst_curves["scipy L-BFGS-B"] = run_scipy(lambda z: J_flat(z.astype(np.float32)), x0, budget)
for label, curve in nst_curves.items():
    record("nst_" + label.split()[0].lower(), curve.min() / curve[0])
    print(f"{label:18s}: J/J(start) {curve.min() / curve[0]:.3f} after {len(curve)} evaluations")
record("nst_scipy_nit", res_sp.nit)

# the texture from noise: one layer, style only
style_x = model.preprocess(style[: side // 16 * 16, : side // 16 * 16])
tex = Objective(model, style_x, style_x, style_layers={"block1_conv1": 1.0}, alpha=0.0, beta=1.0,
                tv_weight=0.0, weights_mode="calibrated")
tex_flat = tex.flat()
noise = np.random.default_rng(1).normal(0.0, 10.0, size=style_x.shape).astype(np.float32).reshape(-1)
tex_curves = {}
for label, opt in [("backtracking (growth 1)", LBFGS(growth=1.0)), ("numpynst (growth 4)", LBFGS())]:
    counted = Counted(tex_flat)
    minimize(counted, noise.copy(), opt, budget - 1)
    tex_curves[label] = np.array(counted.values)
_, tex_curves["scipy L-BFGS-B (strong Wolfe)"] = run_scipy(lambda z: tex_flat(z.astype(np.float32)), noise, budget)
for label, curve in tex_curves.items():
    record("tex_" + label.split()[0].lower(), curve.min() / curve[0])
    print(f"texture, {label:30s}: J/J(start) {curve.min() / curve[0]:.3g} after {len(curve)} evaluations")
claim("tex_stuck", tex_curves["backtracking (growth 1)"].min() / tex_curves["backtracking (growth 1)"][0], 0.5, 1.0, fast=None)
claim("tex_grows", tex_curves["numpynst (growth 4)"].min() / tex_curves["numpynst (growth 4)"][0], 0, 0.1, fast=None)

fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
for ax, cs, title in [(axes[0], nst_curves, f"style transfer from the photo, {side} px"),
                      (axes[1], tex_curves, f"texture from noise, block1_conv1, {side} px")]:
    for label, curve in cs.items():
        ax.plot(np.arange(1, len(curve) + 1), curve / curve[0], label=label)
    ax.set_yscale("log")
    ax.set_xlabel("evaluations of J (one forward + one backward pass)")
    ax.set_ylabel("J / J(start)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# From the photo, after {{nst_budget}} evaluations: the library's L-BFGS at {{nst_numpynst:.3f}} of
# the starting $J$, SciPy's at {{nst_scipy:.3f}} (in {{nst_scipy_nit}} iterations), Adam at
# {{nst_adam:.3f}}, gradient descent at {{nst_gradient:.3f}}. From noise, on the texture: plain
# backtracking stays at {{tex_backtracking:.3f}} of its start (asserted above {{tex_stuck.lo:g}}),
# the growing step reaches {{tex_numpynst:.2g}} (asserted below {{tex_grows.hi:g}}), SciPy's
# strong-Wolfe search {{tex_scipy:.2g}}.
#
# ## Summary
#
# * Gradient descent is stable only for $\eta < 2/\lambda_\max$ and then contracts the flattest
#   direction by $(\kappa-1)/(\kappa+1)$ per step; on a style-transfer objective a typical
#   direction curves {{typical_ratio:.3f}} times as much as the stiffest, which sets the step.
# * Momentum improves $\kappa$ to $\sqrt\kappa$ with tuned $\eta, \mu$; Adam makes the step a
#   length in the units of $x$, independent of the scale of $f$.
# * L-BFGS: the secant condition $H_{k+1} y_k = s_k$, the BFGS update, and its product with $g$ by
#   the two-loop recursion over the last $m$ pairs — checked against the dense matrix.
# * Backtracking (Armijo) never lengthens a step; strong Wolfe extrapolates. From a hilltop the
#   first stalls, the second leaves; `numpynst`'s one-evaluation L-BFGS grows $t$ by
#   {{growth:g}} per accepted step while it has no curvature pair, and leaves too.
#
# Next: [notebook 8](08_style_transfer.ipynb) puts the content and style costs together and uses
# these optimizers on full style transfer.
#
# ## Exercises
#
# 1. Run gradient descent on the quadratic with $\eta = 1/\lambda_\max$ and $\eta =
#    2/(\lambda_\max + \lambda_\min)$. Which is faster, and why is the second at the edge?
# 2. Replace $\gamma = s^\top y / y^\top y$ in `two_loop` by 1. What happens to the first steps of
#    L-BFGS on the quadratic scaled by 1000?
# 3. Implement a strong-Wolfe L-BFGS with `scipy.optimize.line_search` and your `two_loop`, and
#    count evaluations per iteration on Rosenbrock.
# 4. Give `LBFGS` a `growth` of 2 and of 16 on the hilltop toy. How many evaluations does each need
#    to leave the top, and what does an overshoot cost?
