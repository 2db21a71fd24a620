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
# Prerequisites: notebook 4 (VGG, preprocessing). Notation: $a^{(C)}$ and $a^{(G)}$ are the
# activations of one layer for the content image $C$ and the generated image $G$, each of shape
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

from numpynst.gradcheck import check_directional, numerical_gradient, rel_error
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
# J_\text{content}(C, G) = \frac{1}{4\, n_H n_W n_C} \sum_{i,j,k} \left(a^{(C)}_{ijk} - a^{(G)}_{ijk}\right)^2 .
# $$
#
# A squared distance between two activation volumes, divided by their size so that the cost does
# not grow with the layer (the factor 4 is a convention from the original formulation; it only
# rescales the weight $\alpha$ of notebook 7).
#
# **Gradient.** Each term of the sum involves one entry of $a^{(G)}$, so
#
# $$
# \frac{\partial J}{\partial a^{(G)}_{ijk}} = \frac{1}{4 n_H n_W n_C} \cdot 2\left(a^{(C)}_{ijk} - a^{(G)}_{ijk}\right)\cdot(-1)
# \quad\Longrightarrow\quad
# \frac{\partial J}{\partial a^{(G)}} = \frac{a^{(G)} - a^{(C)}}{2\, n_H n_W n_C}.
# $$
#
# `numpynst.losses.content_cost(a_C, a_G)` returns both, `(J, dJ/da_G)`. First, that it computes
# the formula (exact to rounding, around $10^{-16}$):

# %%
a_C = rng.standard_normal((1, 4, 5, 3))
a_G = rng.standard_normal((1, 4, 5, 3))
J, dJ = content_cost(a_C, a_G)
n = a_G.size
J_formula = np.sum((a_C - a_G) ** 2) / (4 * n)
print(f"J = {float(J):.15f}, formula {J_formula:.15f}, relative difference {abs(float(J) - J_formula) / J_formula:.1e}")
assert abs(float(J) - J_formula) < 1e-14 * J_formula
assert np.allclose(dJ, (a_G - a_C) / (2 * n), rtol=1e-14, atol=0)

# %% [markdown]
# **Numerical check** of the gradient. $J$ is quadratic in $a^{(G)}$, so the central difference has
# no truncation error at all: only rounding, around $10^{-10}$ in float64.

# %%
num = numerical_gradient(lambda a: content_cost(a_C, a)[0], a_G.copy())
err = rel_error(dJ, num)
print(f"content cost gradient: relative error {err:.1e}   (should be around 1e-10)")
assert err < 1e-8

# %% [markdown]
# ## 2. Down to the pixels
#
# The variable of style transfer is the image $x$, and $a^{(G)} = a(x)$ is VGG's activation of
# $x$. By the chain rule the pixel gradient is one backward pass through VGG, seeded with
# $\partial J / \partial a^{(G)}$ at the content layer:
#
# $$
# \frac{\partial J}{\partial x} = \left(\frac{\partial a}{\partial x}\right)^{\!\top} \frac{\partial J}{\partial a^{(G)}}
# = \texttt{model.backward(\{layer: dJ/da\})}.
# $$
#
# That is the whole objective for a content-only problem. Checked with a directional derivative
# through the real VGG19 in float64. The step is $h = 10^{-4}$ along a unit direction: pixel
# values are of order 100 and $J$ of order $10^3$, so a smaller step would lose the difference
# $J(x + hv) - J(x - hv)$ in rounding. Expect around $10^{-8}$ — or up to a few times $10^{-6}$
# when the step happens to cross a ReLU or max-pooling kink somewhere among the network's
# half-million units (each crossing shifts the difference quotient by roughly one unit's share,
# $\sim 10^{-6}$). A wrong gradient would be off by $O(1)$.

# %%
def content_objective(model, a_C, layer):
    """fun(x) -> (J, dJ/dx) for the content cost at `layer` (x of the model's dtype)."""
    def fun(x):
        a_G = model.forward(x, [layer])[layer]
        J, dJ_da = content_cost(a_C, a_G)
        return J, model.backward({layer: dJ_da})
    return fun


model64 = VGG.from_h5(dtype=np.float64)
x_small = preprocess(load_image(sample_path("chelsea"), size=48), dtype=np.float64)[:, :32, :48]
a_target = model64.forward(x_small, ["block3_conv2"], keep_cache=False)["block3_conv2"].copy()
fun64 = content_objective(model64, a_target, "block3_conv2")
x_probe = x_small + rng.normal(0.0, 20.0, size=x_small.shape)       # somewhere away from the optimum
J, dx = fun64(x_probe)
err = check_directional(lambda z: fun64(z)[0], x_probe, dx, h=1e-4)
print(f"J(x) = {float(J):.4g}; directional check of dJ/dx through VGG19: {err:.1e}   (around 1e-8, at most ~1e-6)")
assert err < 1e-5

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
for layer in layers_to_try:
    rmse = np.sqrt(np.mean((recon[layer].astype(float) - rgb.astype(float)) ** 2))
    print(f"{layer}: pixel RMSE {rmse:5.1f}")

# %% [markdown]
# What the pictures show (the effect is clearest in the full-size run):
#
# * **block1–2** reconstruct the photo almost exactly: shallow layers are nearly invertible — they
#   keep the colours and the fine texture.
# * **block3–4** keep the *layout* and the shapes — the eyes, the ears, the stripes of the fur — but
#   the exact colours and the fine texture start to wander; high-frequency patterns appear where the
#   network does not care.
# * **block5** keeps roughly where the big parts are, little else.
#
# This is the freedom style transfer exploits. Matching the content at `block4_conv2` (the default
# in `numpynst`) pins down *what is where*, and leaves the colours and textures free to be taken
# from the painting. A shallow content layer would pin down the pixels themselves and leave no
# room for any style.
#
# ## Summary
#
# * $J_\text{content} = \frac{1}{4 n_H n_W n_C}\sum (a^{(C)} - a^{(G)})^2$, with
#   $\partial J/\partial a^{(G)} = (a^{(G)} - a^{(C)})/(2 n_H n_W n_C)$ — checked to ~$10^{-10}$.
# * The pixel gradient is one VGG backward pass seeded at the content layer — checked through VGG19
#   to ~$10^{-8}$ in float64.
# * Reconstructions from activations show what each layer keeps: pixels (shallow), layout and
#   shapes (deep).
#
# Next: [notebook 6](06_style_gram_matrix.ipynb) — the style cost, built from the *correlations*
# between a layer's channels instead of the activations themselves.
#
# ## Exercises
#
# 1. Reconstruct from `block4_conv2` starting from three different noise seeds. What is the same in
#    all three, what differs?
# 2. Reconstruct from a pooling layer (`block3_pool`) and compare with `block3_conv4`.
# 3. Build `VGG.from_h5(pooling="avg")` and repeat the `block4_conv2` reconstruction. Gatys et
#    al. preferred average pooling for synthesis; can you see why (notebook 3, section 4)?
# 4. Replace the squared distance by $\sum |a^{(C)} - a^{(G)}|$. Derive its gradient. Why is the
#    numerical check harder for it?
