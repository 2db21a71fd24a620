# Source of tutorials/14_beyond_the_gram_matrix.ipynb (build with: python tutorials/_build.py)

# %% [markdown]
# # 14 · Beyond the Gram matrix: mean and covariance, sliced Wasserstein
#
# **Why this matters.** Notebook 6 defined style as the Gram matrix $G = A^\top A$ of a layer's
# activations and matched it. It works, and it is what the notes teach — but it is one choice
# among several. Li et al. (2017) showed that matching Gram matrices is matching two *distributions*
# of feature vectors by a maximum mean discrepancy with a quadratic kernel; seen that way, other
# distances between the same two distributions are natural candidates:
#
# * the **Wasserstein-2 distance between Gaussians** fitted to the features (mean and covariance),
#   the default style loss of crowsonkb's *style-transfer-pytorch*;
# * the **sliced Wasserstein distance** between the full distributions (Heitz et al., CVPR 2021),
#   which sees more than second moments.
#
# This notebook derives each loss and its gradient by hand, checks every gradient numerically,
# and compares the three pictures. In numpynst they are `--style-loss gram | mean-cov | swd`
# (`numpynst.losses`, `numpynst.style_stats`; user guide: `docs/style_losses.md`).

# %%
import os
import time

import numpy as np
import matplotlib.pyplot as plt
from matplotlib_inline.backend_inline import set_matplotlib_formats

FAST = os.environ.get("NUMPYNST_FAST") == "1"   # the test suite sets this: small sizes, quick run
set_matplotlib_formats("jpeg")
plt.rcParams.update({"figure.dpi": 80})

from numpynst import stylize
from numpynst.gradcheck import numerical_gradient, rel_error
from numpynst.image import load_image, sample_path
from numpynst.losses import (mean_cov_backward, mean_cov_cost, mean_cov_target, moments,
                             quantiles, sqrtm_sym, sqrtm_sym_backward, style_layer_cost, swd_backward,
                             swd_cost)
from numpynst.objective import Objective
from numpynst.vgg import VGG, preprocess

rng = np.random.default_rng(0)
print("fast mode" if FAST else "full mode")

# %% [markdown]
# ## 1. The Gram matrix is a maximum mean discrepancy
#
# Treat the $P$ positions of a layer as $P$ samples $x_p \in \mathbb{R}^C$ of a distribution, and
# the style image's $Q$ positions as samples $y_q$. The **maximum mean discrepancy** with kernel $k$
# compares two sample sets through the average kernel values within and across them:
#
# $$
# \mathrm{MMD}^2 = \frac{1}{P^2}\sum_{p,p'} k(x_p, x_{p'}) + \frac{1}{Q^2}\sum_{q,q'} k(y_q, y_{q'})
#                - \frac{2}{PQ}\sum_{p,q} k(x_p, y_q).
# $$
#
# Take the **quadratic kernel** $k(x, y) = (x^\top y)^2$. Since
# $(x^\top y)^2 = \sum_{c,d} x_c x_d\, y_c y_d = \langle x x^\top, y y^\top\rangle_F$ (the entrywise
# inner product of the two rank-one matrices), every double sum factorises:
# $\sum_{p,q} k(x_p, y_q) = \langle \sum_p x_p x_p^\top, \sum_q y_q y_q^\top\rangle_F = \langle G_x, G_y\rangle_F$, so
#
# $$
# \mathrm{MMD}^2 = \Big\| \frac{G_x}{P} - \frac{G_y}{Q} \Big\|_F^2 .
# $$
#
# Matching Gram matrices (normalised per position) *is* driving this MMD to zero. numpynst's style
# cost is $\|G - G_S\|^2 / (2PC)^2$ with $G_S$ rescaled to $P$ positions ($G_S = \tfrac{P}{Q} G_y$),
# which is $\mathrm{MMD}^2 / (4C^2)$. Both identities, checked on random data:

# %%
P, Q, C = 30, 45, 5
X = rng.normal(0.3, 1.0, (P, C))
Y = rng.normal(0.0, 1.5, (Q, C))
k = lambda U, V: (U @ V.T) ** 2                         # noqa: E731  the quadratic kernel, all pairs
mmd2_kernel = k(X, X).mean() + k(Y, Y).mean() - 2 * k(X, Y).mean()
mmd2_gram = np.sum((X.T @ X / P - Y.T @ Y / Q) ** 2)
J_style, _ = style_layer_cost(Y.T @ Y * (P / Q), X.reshape(1, P, 1, C))
print(f"MMD^2 by kernel sums {mmd2_kernel:.10f}, from Gram matrices {mmd2_gram:.10f}, "
      f"relative error {rel_error(mmd2_kernel, mmd2_gram):.1e}")
print(f"numpynst style cost x 4C^2 = {float(J_style) * 4 * C**2:.10f}")
assert rel_error(mmd2_kernel, mmd2_gram) < 1e-12 and rel_error(float(J_style) * 4 * C**2, mmd2_gram) < 1e-12

# %% [markdown]
# **What it captures and what it misses.** The quadratic kernel's features are the products
# $x_c x_d$: the MMD sees the second moments $E[x x^\top]$ and nothing else. Two distributions with
# the same second moments are the same "style" to it, however different they look. A small
# example in one channel: samples at $\pm 1$ (two spikes) and samples from a Gaussian of variance 1.

# %%
n = 2000
spikes = rng.choice([-1.0, 1.0], size=(n, 1))
gauss = rng.standard_normal((n, 1))
gauss /= np.sqrt(np.mean(gauss ** 2))                 # exactly the same second moment
gram_gap = np.sum((spikes.T @ spikes / n - gauss.T @ gauss / n) ** 2)
w1d = np.mean((np.sort(spikes[:, 0]) - np.sort(gauss[:, 0])) ** 2)   # 1-D W2^2 by sorting (section 4)
print(f"Gram (MMD) gap: {gram_gap:.2e}    Wasserstein-2^2 by sorting: {w1d:.3f}")
assert gram_gap < 1e-20 and w1d > 0.1
fig, ax = plt.subplots(figsize=(6, 2.2))
ax.hist(spikes[:, 0], bins=60, range=(-3.5, 3.5), alpha=0.6, label="two spikes")
ax.hist(gauss[:, 0], bins=60, range=(-3.5, 3.5), alpha=0.6, label="Gaussian")
ax.set_title("same E[x^2]: identical to the Gram loss")
ax.legend()
plt.show()

# %% [markdown]
# ## 2. Mean and covariance: Wasserstein-2 between Gaussians
#
# Fit a Gaussian to each feature set: $\mu = \frac1P\sum_p x_p$, $S = \frac1P\sum_p x_p x_p^\top - \mu\mu^\top$.
# The squared Wasserstein-2 distance — the least mean squared distance by which one distribution
# can be moved onto the other — has a closed form between Gaussians (Dowson & Landau 1982):
#
# $$
# W_2^2 = \|\mu - \mu_s\|^2 + \operatorname{tr}\big(S + S_s - 2\,(S_s^{1/2} S\, S_s^{1/2})^{1/2}\big).
# $$
#
# In one dimension it is $(\mu-\mu_s)^2 + (\sigma - \sigma_s)^2$: the trace term becomes
# $\sigma^2 + \sigma_s^2 - 2\sigma\sigma_s$. The pieces it needs are **sums over positions**,
# $\sum_p x_p$ and $\sum_p x_p x_p^\top$ (the Gram matrix again), so it tiles exactly like the Gram
# loss. numpynst adds a small ridge $\epsilon I$ to both covariances (`losses.COV_RIDGE` times the
# style's mean variance), for a reason section 3 makes plain.
#
# Check 1: for diagonal covariances (which commute) the trace term is $\sum_i (\sqrt{s_i} - \sqrt{t_i})^2$.

# %%
def target_from(Y):
    s1, s2 = moments(Y.reshape(1, -1, 1, Y.shape[1]))
    return mean_cov_target(s1, s2, Y.shape[0])


Z, _ = np.linalg.qr(rng.standard_normal((64, C + 1)))
basis = Z[:, 1:] - Z[:, 1:].mean(axis=0)
basis /= basis.std(axis=0)                             # centred, uncorrelated, unit variance
sd_x, sd_y = rng.uniform(0.5, 2.0, C), rng.uniform(0.5, 2.0, C)
mu_x, mu_y = rng.normal(0, 1, C), rng.normal(0, 1, C)
Xg, Yg = basis * sd_x + mu_x, basis[::-1] * sd_y + mu_y
t = target_from(Yg)
J, _ = mean_cov_cost(Xg.reshape(1, 64, 1, C), t)
closed = np.sum((mu_x - mu_y) ** 2) + np.sum((np.sqrt(sd_x**2 + t.eps) - np.sqrt(sd_y**2 + t.eps)) ** 2)
print(f"W2^2: numpynst {float(J):.12f}   closed form {closed:.12f}")
assert rel_error(float(J), closed) < 1e-10

# %% [markdown]
# Check 2: in one dimension, $W_2^2$ between two *empirical* distributions is the mean squared
# difference of their sorted samples (section 4). For many Gaussian samples it approaches the
# Gaussian closed form:

# %%
a1 = rng.normal(1.0, 2.0, 200_000)
b1 = rng.normal(-0.5, 0.7, 200_000)
sorted_w2 = np.mean((np.sort(a1) - np.sort(b1)) ** 2)
gauss_w2 = (a1.mean() - b1.mean()) ** 2 + (a1.std() - b1.std()) ** 2
print(f"by sorting {sorted_w2:.4f}   Gaussian closed form {gauss_w2:.4f}")
assert abs(sorted_w2 - gauss_w2) < 0.02 * gauss_w2

# %% [markdown]
# ## 3. The gradient through the matrix square root
#
# Write $M = R S R$ with $R = S_s^{1/2}$ (computed once: the style side is constant) and
# $Y = M^{1/2}$. The cost's only hard part is $-2\operatorname{tr} Y$. Differentiate $Y Y = M$:
#
# $$ dY\,Y + Y\,dY = dM, $$
#
# a Sylvester equation for $dY$. In the eigenbasis of the symmetric $M = U\,\mathrm{diag}(l)\,U^\top$
# ($Y = U\,\mathrm{diag}(s)\,U^\top$, $s = \sqrt l$), with $B = U^\top dY\, U$ and $E = U^\top dM\, U$ it
# is elementwise: $B_{ij}(s_i + s_j) = E_{ij}$. So
#
# $$
# dY = U\Big[\frac{U^\top dM\,U}{s_i + s_j}\Big]U^\top, \qquad
# \frac{\partial J}{\partial M} = U\Big[\frac{U^\top \bar Y\, U}{s_i + s_j}\Big]U^\top
# $$
#
# for an upstream gradient $\bar Y = \partial J/\partial Y$ (symmetrised), the second by taking the
# adjoint of the first (the matrix $1/(s_i+s_j)$ is symmetric). For $J = -2\operatorname{tr} Y$,
# $\bar Y = -2I$ and only the diagonal survives: $\partial J/\partial M = -M^{-1/2}$. Then
# $\partial J/\partial S = I + R\,(\partial J/\partial M)\,R$, and through $S = \frac{s_2}{P} - \mu\mu^\top$,
# $\mu = \frac{s_1}{P}$: $\partial J/\partial s_2 = D/P$, $\partial J/\partial s_1 = (2(\mu-\mu_s) - 2D\mu)/P$
# with $D = \partial J/\partial S$; each position gets $\partial J/\partial x_p = \partial J/\partial s_1 + 2\,\partial J/\partial s_2\, x_p$.
#
# **Near-equal eigenvalues.** The formula has sums $s_i + s_j$, never differences: the square root
# is smooth wherever $M$ is positive definite, even when eigenvalues coincide (the eigenvectors
# themselves are then not unique, but the formula gives the same matrix for any choice). Checked
# at distinct, repeated and nearly repeated eigenvalues, against central differences:

# %%
def random_sym(eigenvalues):
    U, _ = np.linalg.qr(rng.standard_normal((len(eigenvalues), len(eigenvalues))))
    return (U * np.asarray(eigenvalues)) @ U.T


for name, lam in [("distinct", [0.3, 1.0, 2.5, 4.0]), ("repeated", [1.0, 1.0, 1.0, 3.0]),
                  ("near-equal", [2.0, 2.0 + 1e-9, 0.7, 5.0])]:
    M = random_sym(lam)
    Ybar = rng.standard_normal((4, 4))
    analytic = sqrtm_sym_backward(Ybar, sqrtm_sym(M)[1])
    numeric = numerical_gradient(lambda m: np.sum(sqrtm_sym(m)[0] * Ybar), M.copy(), h=1e-6)
    err = rel_error(analytic, numeric)
    print(f"{name:10s} eigenvalues {lam}: relative error {err:.1e}   (the check: below 1e-7)")
    assert err < 1e-7

# %% [markdown]
# **Zero eigenvalues** are another matter: $\sqrt{l}$ has an infinite slope at $l = 0$, and
# $1/(s_i+s_j)$ blows up. They are not rare here — a ReLU layer often has channels that never fire
# in the generated image, and then its covariance is singular. The size of the gradient as the
# smallest eigenvalue shrinks:

# %%
sizes = []
for smallest in [1e-2, 1e-4, 1e-6, 1e-8]:
    M = random_sym([smallest, 1.0, 2.0])
    sizes.append(np.abs(sqrtm_sym_backward(-2 * np.eye(3), sqrtm_sym(M)[1])).max())
    print(f"smallest eigenvalue {smallest:.0e}: largest gradient entry {sizes[-1]:.3g}")
assert sizes[-1] > 100 * sizes[0]

# %% [markdown]
# numpynst therefore (1) clamps eigenvalues below 0 (rounding) to 0 in the forward pass, (2) keeps
# $s_i + s_j$ above $10^{-8} \max s$ in the backward pass (active only at rounding level), and
# (3) adds the ridge $\epsilon I$ to both covariances, so $M$'s eigenvalues stay above
# $\epsilon\,\lambda_{\min}(S_s + \epsilon I) > 0$ and the cost is smooth everywhere. With a dead
# channel, the whole cost's gradient still passes a central-difference check:

# %%
A = rng.normal(1.0, 1.0, (1, 4, 5, 6))
A[..., 2] = 0.0                                       # a channel that never fires
t = target_from(rng.normal(0.5, 2.0, (18, 6)))
J, cache = mean_cov_cost(A, t)
analytic = mean_cov_backward(cache)
numeric = numerical_gradient(lambda z: mean_cov_cost(z, t)[0], A.copy(), h=1e-4)
err = rel_error(analytic, numeric)
print(f"dJ/da with a dead channel: relative error {err:.1e}")
assert err < 1e-7

# %% [markdown]
# ## 4. Sliced Wasserstein, and sorting's gradient
#
# Gaussians still see only two moments. The Wasserstein distance between the *full* feature
# distributions has no closed form in $C$ dimensions, but in **one** dimension it is easy: the
# optimal transport matches the $r$-th smallest value of one set with the $r$-th smallest of the
# other. So project: for a unit direction $v$, $x_p^\top v$ and $y_q^\top v$ are two 1-D sample
# sets; sort both and compare. Averaging over $K$ random directions (the columns of $V$) gives the
# **sliced Wasserstein** cost
#
# $$
# J = \frac{1}{PK}\sum_{k}\sum_{r} \big(\mathrm{sort}(A v_k)_r - q_{rk}\big)^2 ,
# $$
#
# $q_{\cdot k}$ the style's sorted projections. **Sorting's gradient**: a sorted vector is a
# permutation of its input, $\mathrm{sort}(z)_r = z_{\pi(r)}$, so (away from ties) the gradient of
# entry $r$ of the output goes back to entry $\pi(r)$ of the input — scattered through the same
# permutation `argsort` returned. Then $X = AV$ gives $\partial J/\partial A = (\partial J/\partial X)V^\top$.
#
# **Different sizes (quantile matching).** With $P \ne Q$ the sorted sets do not pair up. Read both
# as quantile functions: $P$ sorted values are $F_x^{-1}(t)$ on the steps $[r/P, (r+1)/P)$.
# $W_2^2 = \int_0^1 (F_x^{-1} - F_y^{-1})^2 dt$; replacing $F_y^{-1}$ on each step by its value at the
# step's middle $t_r = (r + \frac12)/P$ gives $\frac1P\sum_r (x_{(r)} - q_r)^2$ with
# $q_r = F_y^{-1}(t_r)$, interpolated linearly between the style's sorted values placed at the middles
# of their own steps. With $P = Q$, $q_r$ is exactly the $r$-th sorted style value.

# %%
Xa = rng.standard_normal((1, 4, 5, 6))
Vd = rng.standard_normal((6, 8))
Vd /= np.linalg.norm(Vd, axis=0)
Ys = rng.normal(0.5, 2.0, (33, 6)) @ Vd               # 33 style positions, 20 generated: quantiles
Qs = quantiles([Ys], [1.0], 20)
J, cache = swd_cost(Xa, Vd, Qs)
err = rel_error(swd_backward(cache), numerical_gradient(lambda z: swd_cost(z, Vd, Qs)[0], Xa.copy(), h=1e-6))
print(f"swd: J = {float(J):.4f}, gradient relative error {err:.1e}")
assert err < 1e-7
t_levels = (np.arange(20) + 0.5) / 20
fig, ax = plt.subplots(figsize=(6, 2.6))
ax.step((np.arange(33) + 0.5) / 33, np.sort(Ys[:, 0]), where="mid", label="style: 33 sorted values")
ax.plot(t_levels, Qs[:, 0], "o", label="q_r at (r + 1/2)/20")
ax.set_xlabel("level t")
ax.set_ylabel("quantile")
ax.legend()
plt.show()

# %% [markdown]
# **Fixed or re-drawn directions?** Heitz et al. draw new directions at every step; numpynst draws
# them once per layer (seeded) and keeps them, so $J$ is one function for the whole run — what
# L-BFGS's line search and curvature pairs assume — and the style's quantiles are computed once.
# `benchmarks/style_losses.py directions` measures both at equal evaluations, judged on directions
# neither used (figures in `benchmarks/README.md`).
#
# ## 5. The three losses on a picture
#
# Each loss has its own **calibration**: with calibrated weights (stylize's default) every style
# layer is divided by its cost at a *blank* image (all activations 0), so `--style-weight` keeps
# its range: Gram $\|G_S\|^2/(2PC)^2$; mean-cov $\|\mu_s\|^2 + \operatorname{tr} S_s$ (the style's
# mean squared feature norm, up to the ridge); swd the mean squared style projection
# $\frac{1}{PK}\sum q_{rk}^2$. A blank image therefore has style part 1 under every loss:

# %%
model = VGG.from_h5()
size = 96 if FAST else 160      # swd needs 16 positions at block5_conv1: 96 x 64 px has 6 x 4
iterations = 3 if FAST else 60
content = load_image(sample_path("chelsea"), size=size)
style = load_image(sample_path("ihc"), size=max(content.shape[:2]))
c, s = preprocess(content), preprocess(style)
blank_at_zero = {}
for loss in ("gram", "mean-cov", "swd"):
    obj = Objective(model, c, s, weights_mode="calibrated", style_loss=loss)
    acts = model.forward(c, list(obj.style_layers), keep_cache=False)
    J0 = {n: float(obj.statistics[n].layer_cost(obj.style_targets[n], 0 * acts[n])[0]) for n in acts}
    blank_at_zero[loss] = sum(lam * J0[n] / obj.scales.style[n] for n, lam in obj.style_layers.items())
    print(f"{loss:9s} style part of a blank image: {blank_at_zero[loss]:.6f}")
assert all(abs(v - 1.0) < 1e-5 for v in blank_at_zero.values())

# %% [markdown]
# Now the same photo and painting, the same weights and the same number of L-BFGS iterations,
# three losses. (At this small size the differences are subtle; the benchmark's figure,
# `docs/images/style_losses.jpg`, shows them at 256 px on the paintings of the gallery.)

# %%
results, seconds = {}, {}
for loss in ("gram", "mean-cov", "swd"):
    t0 = time.perf_counter()
    r = stylize(content, style, model=model, style_loss=loss, iterations=iterations, tol=None, beta=1.0)
    seconds[loss] = (time.perf_counter() - t0) / max(r.iterations, 1)
    results[loss] = r
    print(f"{loss:9s} style part {r.history['style'][0]:.3f} -> {r.history['style'][-1]:.3f}, "
          f"{seconds[loss]:.2f} s per iteration")
    assert r.history["style"][-1] < r.history["style"][0]
fig, axes = plt.subplots(1, 5, figsize=(15, 3.2))
for ax, (img, title) in zip(axes, [(content, "photo"), (style, "painting"),
                                   *((results[k].image, k) for k in results)]):
    ax.imshow(img)
    ax.set_title(title)
    ax.axis("off")
plt.show()

# %% [markdown]
# Time per iteration is VGG's forward and backward plus the loss: Gram's is a few matrix
# products; swd adds a sort of $P \times K$ projections per layer; mean-cov one eigendecomposition
# of a $C \times C$ matrix per layer and evaluation (in float64), a cost independent of the image's
# size, so its share is largest at small sizes (the timings above; `benchmarks/README.md` has them
# at 256 and 512 px).
#
# ## Summary
#
# * Gram matching is an MMD with the quadratic kernel $(x^\top y)^2$: it compares second moments
#   $E[x x^\top]$ and nothing else (checked: identical by kernel sums and by Gram matrices).
# * `mean-cov`: $W_2^2$ between Gaussians, from the sums $\sum x_p$, $\sum x_p x_p^\top$ (exact over
#   tiles); its gradient goes through the matrix square root, $dY = U[(U^\top dM U)/(s_i+s_j)]U^\top$:
#   fine at repeated eigenvalues, singular at zero ones, hence a ridge.
# * `swd`: sort projections on $K$ fixed random directions; the gradient goes back through the sort's
#   permutation; quantile matching handles different sizes. It sorts all positions at once, so it
#   runs on whole images only.
# * Each is calibrated by its cost at a blank image, so the style weight means the same for all three.
#
# ## Exercises
#
# 1. Replace the quadratic kernel by $(x^\top y + 1)^2$. Which statistics does the MMD match now?
#    Derive the gradient with respect to $x_p$.
# 2. Show that $\operatorname{tr}\big((S_s^{1/2} S S_s^{1/2})^{1/2}\big) = \sum_i \sqrt{\lambda_i(S_s S)}$.
#    Why does the code not compute the eigenvalues of $S_s S$ directly?
# 3. Write the gradient of $\operatorname{tr}(M^{1/2})$ with respect to $M$ without eigenvectors,
#    and say when it exists.
# 4. With $K = C$ directions, make $V$ an orthogonal matrix instead of Gaussian columns. Does the
#    loss change for $K = 1$? For $K = C$?
# 5. Swap the sort for a soft sort (a temperature $\tau$); what happens to the gradient at ties?
