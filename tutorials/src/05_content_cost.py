# Source of tutorials/05_content_cost.ipynb (build with: python tutorials/_build.py)

# %% [markdown]
# # 5 · The content cost: gradient, check, and what a layer remembers of an image
#
# **Why this matters.** Style transfer looks for an image that has the *content* of a photo and
# the *style* of a painting. "Content" must be something a painting-like image can share with a
# photo although every pixel differs. Gatys et al.'s answer: the activations of a **deep** VGG
# layer. Two images have the same content when that layer responds to them in the same way — the
# same features (an eye, an ear, an edge of the table) in the same places.
#
# This notebook defines the content cost, derives its gradient, checks it, and then answers the
# question "what does a layer keep?" directly: starting from noise, we search for an image whose
# activations at one layer match the photo's, for layers from shallow to deep, and look at the
# results.
#
# Prerequisites: notebook 4 (VGG, preprocessing). Notation: $a^{(C)}$ and $a^{(X)}$ are the
# activations of one layer for the content image $C$ and the generated image $X$, each of shape
# $n_H \times n_W \times n_C$.

# %%
import os
import time

import numpy as np
import matplotlib.pyplot as plt
from matplotlib_inline.backend_inline import set_matplotlib_formats

FAST = os.environ.get("NUMPYNST_FAST") == "1"   # the test suite sets this: small sizes, quick run
set_matplotlib_formats("jpeg")
plt.rcParams.update({"figure.dpi": 80})

from numpynst.claims import claim, record
from numpynst.gradcheck import directional_derivative, numerical_gradient, random_direction, rel_error
from numpynst.image import load_image, sample_path
from numpynst.losses import content_cost
from numpynst.optim import LBFGS, minimize
from numpynst.vgg import VGG, deprocess, preprocess

rng = np.random.default_rng(0)
print("fast mode" if FAST else "full mode")

# %% [markdown]
# ## 1. The cost and its gradient
#
# $$
# J_\text{content}(C, X) = \frac{1}{4\, n_H n_W n_C} \sum_{i,j,k} \left(a^{(C)}_{ijk} - a^{(X)}_{ijk}\right)^2 .
# $$
#
# A squared distance between two activation volumes, divided by their size so that the cost does
# not grow with the layer. This form, the 4 included, comes from the deeplearning.ai course's
# programming assignment; Gatys et al. write $\frac12 \sum (F - P)^2$ with no size factor, and the
# course's lecture notes the plain $\lVert a^{(C)} - a^{(X)}\rVert^2$. Section 4 puts the three side
# by side, for the style cost too, and shows when the constant matters.
#
# **Gradient.** Each term of the sum involves one entry of $a^{(X)}$, so
#
# $$
# \frac{\partial J}{\partial a^{(X)}_{ijk}} = \frac{1}{4 n_H n_W n_C} \cdot 2\left(a^{(C)}_{ijk} - a^{(X)}_{ijk}\right)\cdot(-1)
# \quad\Longrightarrow\quad
# \frac{\partial J}{\partial a^{(X)}} = \frac{a^{(X)} - a^{(C)}}{2\, n_H n_W n_C}.
# $$
#
# `numpynst.losses.content_cost(a_C, a_G)` returns both, `(J, dJ/da_G)`. First, that it computes
# the formula, exact to rounding (relative difference {{formula_diff:.1e}}, asserted below
# {{formula_diff.hi:.0e}}):

# %%
a_C = rng.standard_normal((1, 4, 5, 3))
a_G = rng.standard_normal((1, 4, 5, 3))
J, dJ = content_cost(a_C, a_G)
n = a_G.size
J_formula = np.sum((a_C - a_G) ** 2) / (4 * n)
print(f"J = {float(J):.15f}, formula {J_formula:.15f}, relative difference {abs(float(J) - J_formula) / J_formula:.1e}")
claim("formula_diff", abs(float(J) - J_formula) / J_formula, 0, 1e-14)
assert np.allclose(dJ, (a_G - a_C) / (2 * n), rtol=1e-14, atol=0)

# %% [markdown]
# **Numerical check** of the gradient. $J$ is quadratic in $a^{(X)}$, so the central difference has
# no truncation error at all: only rounding, asserted between {{content_grad_err.lo:.0e}} and
# {{content_grad_err.hi:.0e}} in float64 (this run: {{content_grad_err:.1e}}).

# %%
num = numerical_gradient(lambda a: content_cost(a_C, a)[0], a_G.copy())
err = rel_error(dJ, num)
print(f"content cost gradient: relative error {err:.1e}")
claim("content_grad_err", err, 1e-13, 1e-8)

# %% [markdown]
# ## 2. Down to the pixels
#
# The variable of style transfer is the image $x$, and $a^{(X)} = a(x)$ is VGG's activation of
# $x$. By the chain rule the pixel gradient is one backward pass through VGG, seeded with
# $\partial J / \partial a^{(X)}$ at the content layer:
#
# $$
# \frac{\partial J}{\partial x} = \left(\frac{\partial a}{\partial x}\right)^{\!\top} \frac{\partial J}{\partial a^{(X)}}
# = \texttt{model.backward(\{layer: dJ/da\})}.
# $$
#
# That is the whole objective for a content-only problem. Checked with a directional derivative
# through the real VGG19 in float64, with step $h = 10^{-4}$ along a unit direction (pixel values
# are of order 100; here $J = {{J_probe:.3g}}$).
#
# What error to expect, and why? Convolutions are linear, ReLU and max pooling piecewise linear,
# so $a(x)$ is piecewise linear and $J$ piecewise **quadratic** in $x$. As long as the step from
# $x - hv$ to $x + hv$ switches no ReLU on or off and hands no pooling window to another winner,
# the central difference of a quadratic is exact: there is no truncation error, only the rounding
# of $J(x \pm hv)$ divided by $2h$ — which grows as $h$ shrinks. A large step, on the other hand,
# crosses kinks, and each crossing adds an error that no rounding explains. So we measure, for
# six random directions and several steps, the error relative to $|D|$ with
# $D = \langle \nabla J, v\rangle$, and count the units that switch between $x - hv$ and $x + hv$:

# %%
def content_objective(model, a_C, layer):
    """fun(x) -> (J, dJ/dx) for the content cost at `layer` (x of the model's dtype)."""
    def fun(x):
        a_G = model.forward(x, [layer])[layer]
        J, dJ_da = content_cost(a_C, a_G)
        return J, model.backward({layer: dJ_da})
    return fun


def switched_units(model, x, v, h, layer):
    """(ReLUs that switch on/off, max-pool windows whose winner changes) between x - h v and x + h v."""
    names = model.layer_names[: model.layer_names.index(layer) + 1]
    convs = [n for n in names if "_conv" in n]
    lo = model.forward(x - h * v, convs, keep_cache=False)
    hi = model.forward(x + h * v, convs, keep_cache=False)
    relus = sum(int(np.count_nonzero((lo[n] > 0) != (hi[n] > 0))) for n in convs)

    def winners(a):                                     # index 0..3 of each 2x2 window's maximum
        n_, H, W, C = a.shape
        a = a[:, : H // 2 * 2, : W // 2 * 2].reshape(n_, H // 2, 2, W // 2, 2, C)
        return a.transpose(0, 1, 3, 5, 2, 4).reshape(n_, H // 2, W // 2, C, 4).argmax(axis=-1)

    pools = 0
    for pool in (n for n in names if n.endswith("_pool") and model.pooling == "max"):
        below = [c for c in convs if c.startswith(pool.split("_")[0] + "_")][-1]   # the conv the pool reads
        pools += int(np.count_nonzero(winners(lo[below]) != winners(hi[below])))
    return relus, pools


model64 = VGG.from_h5(dtype=np.float64)
x_small = preprocess(load_image(sample_path("chelsea"), size=48), dtype=np.float64)[:, :32, :48]
a_target = model64.forward(x_small, ["block3_conv2"], keep_cache=False)["block3_conv2"].copy()
fun64 = content_objective(model64, a_target, "block3_conv2")
x_probe = x_small + rng.normal(0.0, 20.0, size=x_small.shape)       # somewhere away from the optimum
J, dx = fun64(x_probe)
grad_norm = np.linalg.norm(dx)
record("J_probe", float(J))
steps = (1e-2, 1e-4, 1e-6)
print(f"J(x) = {float(J):.4g}, |grad| = {grad_norm:.3g}; per step h: relative error [ReLUs, pool windows switched]")
print(f"{'direction':>9} {'D/|grad|':>9}   " + "   ".join(f"h = {h:<14.0e}" for h in steps) + "  error/|grad| at h=1e-4")
directions = np.random.default_rng(0)
rows = []          # per direction: D/|grad|, {h: (error/|D|, error/|grad|, ReLUs switched, pools switched)}
for k in range(6):
    v = random_direction(x_probe, directions)
    D = float(np.sum(dx * v))
    per_h = {}
    for h in steps:
        miss = abs(directional_derivative(lambda z: fun64(z)[0], x_probe, v, h) - D)
        relus, pools = switched_units(model64, x_probe, v, h, "block3_conv2")
        per_h[h] = (miss / abs(D), miss / grad_norm, relus, pools)
    rows.append((D / grad_norm, per_h))
    print(f"{k:>9} {D / grad_norm:+9.1e}   " + "   ".join(
        f"{f'{e:7.1e} [{r},{p}]':<18}" for e, _, r, p in per_h.values()) + f"  {per_h[1e-4][1]:.1e}")

at4 = [r[1][1e-4] for r in rows]
claim("switched_at_1e4", sum(r + p for _, _, r, p in at4), 0, 0)          # no kink inside the step
claim("rounding_worse_at_1e6", min(r[1][1e-6][1] / r[1][1e-4][1] for r in rows), 1, None)
record("n_dims", x_probe.size)
record("sqrt_n", np.sqrt(x_probe.size))
record("relD_min", min(e for e, _, _, _ in at4))
record("relD_max", max(e for e, _, _, _ in at4))
record("relG_min", min(g for _, g, _, _ in at4))
claim("relG_max", max(g for _, g, _, _ in at4), None, 3e-9)
k_small = int(np.argmin([abs(r[0]) for r in rows]))
record("k_small", k_small)
record("D_small", abs(rows[k_small][0]))
kinked = [r[1][1e-2][0] for r in rows if r[1][1e-2][2] + r[1][1e-2][3] > 0]
smooth = [r[1][1e-2][0] / r[1][1e-4][0] for r in rows if r[1][1e-2][2] + r[1][1e-2][3] == 0]
record("n_kinked", len(kinked))
record("kinked_min", min(kinked, default=float("nan")))
record("kinked_max", max(kinked, default=float("nan")))
claim("smooth_1e2_vs_1e4", max(smooth), None, 1.0)          # without a switch, 1e-2 beats 1e-4

# %% [markdown]
# Reading the table (the same in every run: the probe and the directions are seeded):
#
# * At $h = 10^{-4}$ **no unit switches** (asserted), so the error is rounding. Relative to $|D|$
#   it ranges from {{relD_min:.1e}} to {{relD_max:.1e}} — but that spread is $|D|$'s, not the
#   error's: a random direction in {{n_dims}} dimensions has $|D| \approx \|\nabla J\|/\sqrt{n} =
#   \|\nabla J\|/{{sqrt_n:.0f}}$, and one nearly orthogonal to $\nabla J$ (direction {{k_small}},
#   $|D| = {{D_small:.1e}}\, \|\nabla J\|$) divides the same absolute error by a much smaller
#   number. Divided by $\|\nabla J\|$ instead, the error is {{relG_min:.1e}} to {{relG_max:.1e}}
#   in every direction (asserted below {{relG_max.hi:.0e}}).
# * At $h = 10^{-6}$ nothing switches either, and the error is larger in every direction: rounding,
#   divided by a smaller $2h$.
# * At $h = 10^{-2}$ the step switches a ReLU or a pooling window in {{n_kinked}} of the six
#   directions, and there the error jumps to {{kinked_min:.1e}}–{{kinked_max:.1e}}: a kink. Without
#   a switch, $10^{-2}$ is the most accurate step of the three (asserted).
#
# The same experiment with average pooling (`VGG.from_h5(pooling="avg")`: only ReLU kinks left)
# gives the same picture, which is the point: at the step we use, the errors are rounding over a
# small $|D|$, not kinks. A wrong gradient would be off by $O(1)$ in every row.

# %% [markdown]
# ## 3. What each layer keeps: reconstruction from activations
#
# Take the activations $a^{(C)}$ of the photo at one layer and forget the photo. Which images have
# exactly these activations? We find one by minimizing $J_\text{content}$ over the pixels, starting
# from noise:
#
# $$
# x^\star = \arg\min_x \; J_\text{content}\big(a^{(C)}, a(x)\big).
# $$
#
# Whatever the layer does not encode is left free, so it stays at whatever the optimization
# happened to produce from the noise. We use L-BFGS (`numpynst.optim.LBFGS`; notebook 7 compares
# optimizers) on the flattened image. The image is cropped to a multiple of 16 pixels so that no
# border row falls off the end of a pooling (notebook 3).

# %%
size, iterations = (48, 5) if FAST else (128, 150)
rgb = load_image(sample_path("chelsea"), size=size)
rgb = rgb[: rgb.shape[0] // 16 * 16, : rgb.shape[1] // 16 * 16]
model = VGG.from_h5()                                   # float32 for speed; the checks above used float64
x_C = model.preprocess(rgb)
print("content image", rgb.shape)


def reconstruct(layer, iterations, seed=0):
    """Minimize the content cost at `layer` from noise; returns (RGB image, J per iteration)."""
    a_C = model.forward(x_C, [layer], keep_cache=False)[layer].copy()
    fun = content_objective(model, a_C, layer)
    shape = x_C.shape

    def flat_fun(x_flat):
        J, dx = fun(x_flat.reshape(shape))
        return J, dx.reshape(-1)

    x0 = np.random.default_rng(seed).normal(0.0, 10.0, size=shape).astype(np.float32).reshape(-1)
    history = [float(flat_fun(x0)[0])]
    result = minimize(flat_fun, x0, LBFGS(), iterations,
                      callback=lambda k, x, f, g: history.append(float(f)))
    return deprocess(result.x.reshape(shape)), history


layers_to_try = ["block1_conv2", "block2_conv2", "block3_conv2", "block4_conv2", "block5_conv2"]
recon, hist = {}, {}
for layer in layers_to_try:
    t0 = time.perf_counter()
    recon[layer], hist[layer] = reconstruct(layer, iterations)
    h = hist[layer]
    print(f"{layer}: J {h[0]:.3g} -> {h[-1]:.3g} ({h[-1] / h[0]:.1e} of the start) in {time.perf_counter() - t0:.0f} s")
    assert h[-1] < h[0]                                   # L-BFGS only accepts decreasing steps

# %%
fig, axes = plt.subplots(1, len(layers_to_try) + 1, figsize=(2.9 * (len(layers_to_try) + 1), 2.6))
axes[0].imshow(rgb)
axes[0].set_title("original")
for ax, layer in zip(axes[1:], layers_to_try):
    ax.imshow(recon[layer])
    ax.set_title(f"from {layer}", fontsize=10)
for ax in axes:
    ax.axis("off")
plt.show()

fig, ax = plt.subplots(figsize=(6, 3.2))
for layer in layers_to_try:
    h = np.asarray(hist[layer])
    ax.plot(h / h[0], label=layer)
ax.set_yscale("log")
ax.set_xlabel("L-BFGS iteration")
ax.set_ylabel("J / J(start)")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# How far is each reconstruction from the photo, pixel by pixel (root-mean-square difference on the
# 0–255 scale)? The activations were matched in every case — the cost fell by orders of
# magnitude — yet the pixels drift further from the photo the deeper the layer:

# %%
rmse = {}
for layer in layers_to_try:
    rmse[layer] = np.sqrt(np.mean((recon[layer].astype(float) - rgb.astype(float)) ** 2))
    print(f"{layer}: pixel RMSE {rmse[layer]:5.1f}")
    record(f"rmse_{layer.split('_')[0]}", rmse[layer])
steps_up = [rmse[b] / rmse[a] for a, b in zip(layers_to_try, layers_to_try[1:])]
claim("rmse_growth", min(steps_up), 1.0, None, fast=None)      # deeper: further from the photo

# %% [markdown]
# What the pictures show (the effect is clearest in the full-size run; RMSE from the cell above):
#
# * **block1 to block3** reconstruct the photo closely (RMSE {{rmse_block1:.1f}}, {{rmse_block2:.1f}}
#   and {{rmse_block3:.1f}} grey levels): the shallow layers are nearly invertible — they keep the
#   colours and the fine texture; at block3 only the finest grain starts to differ.
# * **block4** keeps the *layout* and the shapes — the eyes, the ears, the stripes of the fur — but
#   the exact colours and the fine texture wander (RMSE {{rmse_block4:.1f}}); high-frequency
#   patterns appear where the network does not care.
# * **block5** keeps roughly where the big parts are, little else (RMSE {{rmse_block5:.1f}}).
#
# This is the freedom style transfer exploits. Matching the content at `block4_conv2` (the default
# in `numpynst`) pins down *what is where*, and leaves the colours and textures free to be taken
# from the painting. A shallower content layer asks for more of the photo's own pixels — its local
# colours and fine edges; notebook 8 (section 8) shows what that does beside a style term.

# %% [markdown]
# ## 4. Whose normalisation? The course notes, this library, Gatys et al.
#
# The constant in front of a cost is a choice, and three sources make three choices. Here
# $n_H, n_W, n_C$ are the sizes of layer $l$'s activation, $M = n_H n_W$ its number of positions,
# $n = M n_C$, and $G = A^\top A$ with $A$ the activation reshaped to $M \times n_C$:
#
# | | content cost, one layer | style cost of layer $l$ |
# |---|---|---|
# | course lecture notes | $\lVert a^{(C)} - a^{(X)} \rVert^2$ (no size constant) | $\frac{1}{(2 n_H n_W n_C)^2}\, \lVert G^{(S)} - G^{(X)} \rVert_F^2$ |
# | `numpynst` (= the course's programming assignment) | $\frac{1}{4 n_H n_W n_C} \sum (a^{(C)} - a^{(X)})^2$ | $\frac{1}{(2 n_H n_W n_C)^2} \sum_{kk'} (G^{(S)}_{kk'} - G^{(X)}_{kk'})^2$ |
# | Gatys, Ecker & Bethge (2015) | $\frac12 \sum (F - P)^2$ | $\frac{1}{4 N_l^2 M_l^2} \sum_{ij} (G_{ij} - A_{ij})^2$ |
#
# Factor by factor:
#
# * **Gatys' $\frac12$** on the content cost makes its gradient exactly $F - P$ (the $2$ of the
#   square cancels). It is not normalised by the layer's size; Gatys' $F$, $P$ are our $a^{(X)}$,
#   $a^{(C)}$ reshaped to $N_l \times M_l$ ($N_l$ filters = $n_C$, $M_l$ positions = $n_H n_W$).
# * **The course's $\frac{1}{4 n_H n_W n_C}$** (from its programming assignment, not from the
#   paper) divides by the number of entries $n$, so the content cost is a *mean* squared difference
#   (times $\frac14$) and does not grow with the image or the layer; the 4 mirrors the style cost's
#   $(2 \cdot)^2$. The lecture notes write the plain squared norm, which grows with $n$.
# * **The style constant $\frac{1}{(2 n_H n_W n_C)^2} = \frac{1}{4 n_C^2 M^2}$** is Gatys' own
#   ($N_l = n_C$, $M_l = M$): the library and the paper agree exactly here. $G$ sums over $M$
#   positions, so its entries grow like $M$ and the squared difference like $M^2$; dividing by
#   $M^2$ makes the cost independent of the image size, and $n_C^2$ of the number of Gram entries.
# * **The notes' style cost is the library's.** One version of the notes writes the squared
#   Frobenius norm $\lVert G^{(S)} - G^{(X)}\rVert_F^2$, the other the sum of squares
#   $\sum_{kk'}(G^{(S)}_{kk'} - G^{(X)}_{kk'})^2$: the same function, with the same constant as
#   the paper and the library. (An *unsquared* norm would be a different function, not a
#   rescaling: its gradient $(G^{(X)} - G^{(S)}) / \lVert G^{(X)} - G^{(S)}\rVert_F$ has unit size
#   however close the match, and no derivative at the optimum.)
# * **What $G$ is.** $G_{kk'} = \sum_p a_{pk} a_{pk'}$ is an *uncentred* second-moment
#   (co-occurrence) matrix: no mean is subtracted and nothing is divided by standard deviations.
#   It is neither a correlation (the lecture's word) nor a covariance (the notes say
#   "technically cross co-variance"): a covariance would be $G/M - \mu \mu^\top$ with $\mu$ the
#   channel means. After a ReLU every activation is $\ge 0$, so the means are far from 0 and
#   $M \mu\mu^\top$ is a large part of $G$ — see the cell below.
#
# **Why the per-layer constant matters.** With one content layer, any constant in front of
# $J_\text{content}$ is absorbed by $\alpha$; with one style layer, likewise by $\beta$. But the
# style cost sums several layers, $J_\text{style} = \sum_l \lambda_l\, c_l\, \lVert G^{(S)}_l -
# G^{(X)}_l \rVert_F^2$, and the constants $c_l = 1/(2 n_H^l n_W^l n_C^l)^2$ differ from layer to
# layer by orders of magnitude. One global $\beta$ can rescale all the terms together, never one
# against another: dropping the $c_l$ (or changing them) is the same as changing every $\lambda_l$
# by its own factor. For the five default style layers at 256 px:

# %%
from numpynst.transfer import DEFAULT_STYLE_LAYERS

style_rgb = load_image(sample_path("ihc"), size=256)                # the demo style image, 256 x 256
acts = model.forward(model.preprocess(style_rgb), list(DEFAULT_STYLE_LAYERS), keep_cache=False)
c, shares = {}, []
print(f"{'layer':>13} {'nH x nW x nC':>16} {'c_l = 1/(2n)^2':>15} {'c_l / c_block1':>15} {'|M mu mu^T| / |G|':>18}")
for layer, a in acts.items():
    nH, nW, nC = a.shape[1:]
    c[layer] = 1.0 / (2.0 * nH * nW * nC) ** 2
    A = a[0].reshape(-1, nC).astype(np.float64)            # M x nC
    G, mu = A.T @ A, A.mean(axis=0)                        # G = A^T A; mu: the channel means
    share = np.linalg.norm(A.shape[0] * np.outer(mu, mu)) / np.linalg.norm(G)
    print(f"{layer:>13} {f'{nH} x {nW} x {nC}':>16} {c[layer]:15.2e} {c[layer] / c['block1_conv1']:15.0f} {share:18.2f}")
    shares.append(share)
claim("share_min", min(shares), 0.5, 1.0)                  # the means make up most of G
claim("share_max", max(shares), 0.5, 1.0)
assert c["block5_conv1"] / c["block1_conv1"] == 1024.0    # 32 times fewer entries, squared

# %% [markdown]
# From `block1_conv1` (256 × 256 × 64 entries) to `block5_conv1` (16 × 16 × 512) the number of
# entries shrinks 32-fold, so $c_l$ grows 1024-fold. Without the constants, the shallow layers'
# raw squared Gram differences — their entries are sums over up to 256 times more positions —
# would outweigh the deep layers' by orders of magnitude, and the equal $\lambda_l = 0.2$ would
# mean nothing. With them, each layer's cost is a size-free number and the $\lambda_l$ weigh
# comparable quantities (notebook 6 shows how different the per-layer costs still are). All of
# this is about the raw $J$ — `Objective`'s default, the one these notebooks derive.
# `numpynst.stylize` by default *calibrates* the weights: it divides each layer's cost by its value
# at blank activations ($A = 0$, which no image gives exactly: notebook 6), $c_l \lVert G^{(S)}_l\rVert_F^2$, so $c_l$ cancels and every layer's term becomes
# the relative error $\lVert G^{(X)}_l - G^{(S)}_l\rVert_F^2 / \lVert G^{(S)}_l\rVert_F^2$ — there the
# constant no longer matters, by construction (`numpynst.transfer.calibration`).
#
# The last column: at every layer the channel-mean part $M\mu\mu^\top$ alone is {{share_min:.0%}} to
# {{share_max:.0%}} of the
# size of $G$ (norm ratio) — $G$ is mostly "how much of each feature, on average", and only the
# rest is how features co-vary. Matching $G$ matches both.

# %% [markdown]
# ## Summary
#
# * $J_\text{content} = \frac{1}{4 n_H n_W n_C}\sum (a^{(C)} - a^{(X)})^2$, with
#   $\partial J/\partial a^{(X)} = (a^{(X)} - a^{(C)})/(2 n_H n_W n_C)$ — checked to {{content_grad_err:.0e}}.
# * The pixel gradient is one VGG backward pass seeded at the content layer — checked through VGG19
#   in float64: no unit switches at $h = 10^{-4}$, the error is rounding, {{relG_min:.0e}} to
#   {{relG_max:.0e}} of $\lVert\nabla J\rVert$ (larger relative to a small $|D|$); larger steps cross
#   kinks.
# * The $\frac{1}{4 n_H n_W n_C}$ is the course assignment's (Gatys: $\frac12$, no size factor); the
#   style constant $\frac{1}{(2 n_H n_W n_C)^2}$ is Gatys' own, and with several style layers it
#   sets their relative weights, so $\beta$ cannot absorb it. $G$ is an uncentred second-moment
#   matrix.
# * Reconstructions from activations show what each layer keeps: pixels (shallow), layout and
#   shapes (deep).
#
# Next: [notebook 6](06_style_gram_matrix.ipynb) — the style cost, built from the co-occurrences
# (Gram matrix) of a layer's channels instead of the activations themselves.
#
# ## Exercises
#
# 1. Reconstruct from `block4_conv2` starting from three different noise seeds. What is the same in
#    all three, what differs?
# 2. Reconstruct from a pooling layer (`block3_pool`) and compare with `block3_conv4`.
# 3. Build `VGG.from_h5(pooling="avg")` and repeat the `block4_conv2` reconstruction. Gatys et
#    al. preferred average pooling for synthesis; can you see why (notebook 3, section 4)?
# 4. Replace the squared distance by $\sum |a^{(C)} - a^{(X)}|$. Derive its gradient. Why is the
#    numerical check harder for it?
