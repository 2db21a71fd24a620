# Source of tutorials/06_style_gram_matrix.ipynb (build with: python tutorials/_build.py)

# %% [markdown]
# # 6 · Style: the Gram matrix, the style cost, and texture synthesis
#
# **Why this matters.** The content cost of notebook 5 asks for the same features *in the same
# places*. Style is the opposite: a painting's brush strokes, colours and textures appear all over
# the canvas, and a stylized photo should show them wherever its own content is. So the style of
# an image must be described by statistics that **do not depend on position**. Gatys et al. used
# the correlations between a layer's channels — the **Gram matrix** — at several layers at once.
#
# This notebook builds the idea from a toy example, derives the style cost and its gradient,
# checks them, and then synthesizes textures from a style image alone, showing what each layer
# contributes and what the per-layer weights $\lambda_l$ do.

# %%
import os
import time

import numpy as np
import matplotlib.pyplot as plt
from matplotlib_inline.backend_inline import set_matplotlib_formats

FAST = os.environ.get("NUMPYNST_FAST") == "1"   # the test suite sets this: small sizes, quick run
set_matplotlib_formats("jpeg")
plt.rcParams.update({"figure.dpi": 80})

from numpynst.gradcheck import check_directional, numerical_gradient, numerical_gradient_array, rel_error
from numpynst.image import load_image, sample_path
from numpynst.losses import gram_backward, gram_matrix, style_layer_cost
from numpynst.optim import LBFGS, minimize
from numpynst.vgg import VGG, deprocess, preprocess

rng = np.random.default_rng(0)
print("fast mode" if FAST else "full mode")

# %% [markdown]
# ## 1. Style as channel co-activation
#
# Reshape one layer's activations $a$ ($n_H \times n_W \times n_C$) into a matrix $A$ with one
# **row per pixel** and one **column per channel** ($n_H n_W \times n_C$). The Gram matrix is
#
# $$
# G = A^\top A, \qquad G_{kk'} = \sum_{i,j} a_{ijk}\, a_{ijk'} .
# $$
#
# $G_{kk'}$ is large when channels $k$ and $k'$ are **active at the same pixels**. The diagonal
# $G_{kk}$ says how much of feature $k$ there is overall. And the sum over pixels forgets *where*.
#
# A toy layer with three channels makes this concrete. Imagine units that detect "vertical
# lines", "horizontal lines" and "orange". Two images:
#
# * **A**: orange vertical stripes on the left, grey horizontal stripes on the right;
# * **B**: grey vertical stripes on the left, orange horizontal stripes on the right.
#
# Each contains the same amount of vertical lines, of horizontal lines and of orange — the
# diagonals of their Gram matrices agree. What differs is *which features go together*: in A,
# "vertical" and "orange" fire together; in B, "horizontal" and "orange". That pairing is exactly
# what we would call the style of the stripes. A third image, **A shuffled**, has A's pixels in a
# random order: nothing is where it was, and its Gram matrix is *identical* to A's.

# %%
side = 32
yy, xx = np.mgrid[:side, :side]
left = xx < side // 2
vertical = left & (xx % 4 < 2)                 # stripe pixels on the left half
horizontal = ~left & (yy % 4 < 2)              # stripe pixels on the right half


def toy_image(orange_on_vertical):
    """(RGB picture, activations (H, W, 3) of the channels [vertical, horizontal, orange])."""
    orange = vertical if orange_on_vertical else horizontal
    acts = np.stack([vertical, horizontal, orange], axis=-1).astype(float)
    rgb = np.full((side, side, 3), 255, np.uint8)
    rgb[vertical | horizontal] = (120, 120, 120)
    rgb[orange] = (255, 140, 0)
    return rgb, acts


rgb_A, acts_A = toy_image(True)
rgb_B, acts_B = toy_image(False)
perm = rng.permutation(side * side)
rgb_S = rgb_A.reshape(-1, 3)[perm].reshape(side, side, 3)
acts_S = acts_A.reshape(-1, 3)[perm].reshape(side, side, 3)
names = ["vertical", "horizontal", "orange"]
fig, axes = plt.subplots(2, 3, figsize=(10, 6.2))
for col, (title, rgb, acts) in enumerate([("A", rgb_A, acts_A), ("B", rgb_B, acts_B), ("A shuffled", rgb_S, acts_S)]):
    G = gram_matrix(acts)
    axes[0, col].imshow(rgb)
    axes[0, col].set_title(title)
    axes[0, col].axis("off")
    axes[1, col].imshow(G, cmap="Oranges", vmin=0, vmax=300)
    for (r, c), v in np.ndenumerate(G):
        axes[1, col].text(c, r, int(v), ha="center", va="center")
    axes[1, col].set_xticks(range(3), names, fontsize=8)
    axes[1, col].set_yticks(range(3), names, fontsize=8)
    axes[1, col].set_title(f"Gram matrix of {title}")
plt.show()

G_A, G_B, G_S = gram_matrix(acts_A), gram_matrix(acts_B), gram_matrix(acts_S)
assert np.array_equal(np.diag(G_A), np.diag(G_B))         # same amount of each feature
assert G_A[0, 2] > 0 and G_A[1, 2] == 0 and G_B[0, 2] == 0 and G_B[1, 2] > 0   # different pairings
assert np.array_equal(G_A, G_S)                            # position forgotten: exactly equal

# %% [markdown]
# **The same on a real image.** Cut the style image into $32\times32$ tiles and shuffle them: the
# picture falls apart, but at a shallow layer (units seeing a few pixels) its Gram matrix barely
# changes — only the tile seams are new. Another image has a very different Gram matrix. (Relative
# differences $\|G_1 - G_2\| / \max \|G\|$.)

# %%
model = VGG.from_h5()
style_size = 64 if FAST else 192
style = load_image(sample_path("style"), size=style_size)        # the demo painting: "ihc"
style = style[: style.shape[0] // 32 * 32, : style.shape[1] // 32 * 32]
h, w = style.shape[0] // 32, style.shape[1] // 32
tiles = style.reshape(h, 32, w, 32, 3).transpose(0, 2, 1, 3, 4).reshape(h * w, 32, 32, 3)
shuffled = tiles[rng.permutation(h * w)].reshape(h, w, 32, 32, 3).transpose(0, 2, 1, 3, 4).reshape(style.shape)
other = load_image(sample_path("chelsea"), size=style_size * 2)[: style.shape[0], : style.shape[1]]

grams = {}
for label, img in [("style", style), ("tiles shuffled", shuffled), ("another image", other)]:
    a = model.forward(model.preprocess(img), ["block1_conv1", "block3_conv1"], keep_cache=False)
    grams[label] = {k: gram_matrix(v) for k, v in a.items()}
for label in ["tiles shuffled", "another image"]:
    d = {k: rel_error(grams[label][k], grams["style"][k]) for k in grams["style"]}
    print(f"{label:15s}: block1_conv1 {d['block1_conv1']:.2f}, block3_conv1 {d['block3_conv1']:.2f}")

fig, axes = plt.subplots(1, 4, figsize=(13, 3.2))
for ax, (label, img) in zip(axes[:3], [("style", style), ("tiles shuffled", shuffled), ("another image", other)]):
    ax.imshow(img)
    ax.set_title(label)
    ax.axis("off")
axes[3].imshow(np.log1p(grams["style"]["block1_conv1"][:32, :32] / 1e3), cmap="magma")
axes[3].set_title("log G, block1_conv1 (32 ch.)")
axes[3].axis("off")
plt.show()

# %% [markdown]
# ## 2. The style cost and its gradient
#
# For one layer, with $G^{(S)}$ the style image's Gram matrix and $G^{(G)}$ the generated image's:
#
# $$
# J^{[l]}_\text{style}(S, G) = \frac{1}{(2\, n_H n_W n_C)^2} \sum_{k,k'} \left(G^{(S)}_{kk'} - G^{(G)}_{kk'}\right)^2 ,
# \qquad
# J_\text{style} = \sum_l \lambda_l\, J^{[l]}_\text{style}.
# $$
#
# (Gram entries sum over $n_H n_W$ pixels, hence the normalization; $\lambda_l$ weighs the layers.)
#
# **Gradient, in two steps.** Write $c = 1/(2 n_H n_W n_C)^2$ and $D = G^{(G)} - G^{(S)}$.
#
# 1. Each term depends on one entry of $G^{(G)}$: $\;\partial J/\partial G^{(G)} = 2 c D$.
# 2. Through the Gram matrix. $G_{kl} = \sum_p A_{pk} A_{pl}$ ($p$ runs over pixels). An entry
#    $A_{pm}$ appears in row $m$ of $G$ (as $A_{pk}$, $k = m$) and in column $m$ (as $A_{pl}$,
#    $l = m$). So for any upstream gradient $\bar G = \partial J / \partial G$:
#
# $$
# \frac{\partial J}{\partial A_{pm}} = \sum_l \bar G_{ml} A_{pl} + \sum_k \bar G_{km} A_{pk}
# \quad\Longrightarrow\quad
# \frac{\partial J}{\partial A} = A\,(\bar G^\top + \bar G).
# $$
#
# With $\bar G = 2cD$ and $D$ symmetric:
#
# $$
# \frac{\partial J^{[l]}_\text{style}}{\partial A} = 4c\, A\, \left(G^{(G)} - G^{(S)}\right)
# = \frac{A\,(G^{(G)} - G^{(S)})}{(n_H n_W n_C)^2},
# $$
#
# reshaped back to $n_H \times n_W \times n_C$. `numpynst.losses.gram_backward(dG, a)` is step 2;
# `style_layer_cost(G_S, a_G)` returns `(J, dJ/da_G)`.
#
# **Checks** in float64 (each around $10^{-10}$): the Gram backward with a *non-symmetric*
# upstream gradient (so both terms of step 2 are exercised), the style cost's gradient against
# central differences, and the closed form above.

# %%
a = rng.standard_normal((1, 4, 5, 3))
dG = rng.standard_normal((3, 3))                                   # deliberately not symmetric
err_gram = rel_error(gram_backward(dG, a), numerical_gradient_array(gram_matrix, a, dG))
print(f"Gram matrix backward:     relative error {err_gram:.1e}   (should be around 1e-10)")

G_target = gram_matrix(rng.standard_normal((1, 4, 5, 3)))
J, dJ = style_layer_cost(G_target, a)
num = numerical_gradient(lambda z: style_layer_cost(G_target, z)[0], a.copy())
err_style = rel_error(dJ, num)
print(f"style cost gradient:      relative error {err_style:.1e}   (should be around 1e-10)")

nH, nW, nC = a.shape[1:]
A = a.reshape(-1, nC)
closed = (A @ (A.T @ A - G_target) / (nH * nW * nC) ** 2).reshape(a.shape)
J_formula = np.sum((G_target - A.T @ A) ** 2) / (2 * nH * nW * nC) ** 2
print(f"closed form vs library:   gradient {rel_error(dJ, closed):.1e}, J {abs(float(J) - J_formula) / J_formula:.1e}   (around 1e-16)")
assert err_gram < 1e-8 and err_style < 1e-8 and rel_error(dJ, closed) < 1e-13

# %% [markdown]
# **Why float64.** $J$ is a *fourth* power of the activations, so its values span many orders of
# magnitude and float32 central differences are hopeless for checking (errors around $10^{-2}$):

# %%
a32, G32 = a.astype(np.float32), G_target.astype(np.float32)
dJ32 = style_layer_cost(G32, a32)[1]
num32 = numerical_gradient(lambda z: style_layer_cost(G32, z)[0], a32.copy(), h=1e-3)
print(f"float32: relative error {rel_error(dJ32, num32):.1e}   (float64 above: ~1e-10)")

# %% [markdown]
# Through the network to the pixels: the style cost of several layers is one backward pass
# seeded at every style layer at once (`VGG.backward` adds the gradients where the paths meet).
# Directional check through VGG19 in float64, step $h = 10^{-4}$ as in notebook 5 (around
# $10^{-8}$, up to ~$10^{-6}$ if the step crosses a ReLU or pooling kink):

# %%
def style_objective(model, targets, weights):
    """fun(x) -> (J, dJ/dx) for J = sum_l weights[l] * J_style^l(targets[l], a_l(x))."""
    names = list(targets)

    def fun(x):
        acts = model.forward(x, names)
        J, grads = 0.0, {}
        for name in names:
            j, g = style_layer_cost(targets[name], acts[name])
            J = J + weights[name] * j
            grads[name] = weights[name] * g
        return J, model.backward(grads)
    return fun


model64 = VGG.from_h5(dtype=np.float64)
xs = preprocess(load_image(sample_path("style"), size=32), dtype=np.float64)
check_layers = {"block1_conv1": 0.5, "block2_conv1": 0.5}
targets64 = {k: gram_matrix(v) for k, v in model64.forward(xs, list(check_layers), keep_cache=False).items()}
fun64 = style_objective(model64, targets64, check_layers)
x_probe = preprocess(load_image(sample_path("chelsea"), size=48), dtype=np.float64)[:, :32, :32]
J, dx = fun64(x_probe)
err = check_directional(lambda z: fun64(z)[0], x_probe, dx, h=1e-4)
print(f"style cost through VGG19 (2 layers): directional check {err:.1e}   (around 1e-8, at most ~1e-6)")
assert err < 1e-5

# %% [markdown]
# ## 3. Texture synthesis from a style image alone
#
# Minimize $J_\text{style}$ alone, starting from noise: the result has the style image's channel
# correlations at the chosen layers and nothing else — a **texture**. The generated image has the
# style image's size here; with another size the target Gram matrices would have to be rescaled by
# the ratio of pixel counts (they sum over pixels), which `numpynst.transfer` does.
#
# Following Gatys et al., we add the layers `block1_conv1`, ..., `block5_conv1` one at a time,
# each set with equal weights $\lambda_l = 1/L$:

# %%
size, iterations = (48, 5) if FAST else (128, 120)
style_rgb = load_image(sample_path("style"), size=size)
style_rgb = style_rgb[: style_rgb.shape[0] // 16 * 16, : style_rgb.shape[1] // 16 * 16]
x_S = model.preprocess(style_rgb)
all_layers = ["block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1"]
style_acts = model.forward(x_S, all_layers, keep_cache=False)
style_grams = {k: gram_matrix(v) for k, v in style_acts.items()}


def synthesize(weights, iterations, seed=0):
    """Minimize sum_l weights[l] J_style^l from noise; returns (RGB image, J per iteration)."""
    fun = style_objective(model, {k: style_grams[k] for k in weights}, weights)
    shape = x_S.shape

    def flat_fun(x_flat):
        J, dx = fun(x_flat.reshape(shape))
        return J, dx.reshape(-1)

    x0 = np.random.default_rng(seed).normal(0.0, 10.0, size=shape).astype(np.float32).reshape(-1)
    history = [float(flat_fun(x0)[0])]
    result = minimize(flat_fun, x0, LBFGS(), iterations, callback=lambda k, x, f, g: history.append(float(f)))
    return deprocess(result.x.reshape(shape)), history


textures = {}
t0 = time.perf_counter()
for depth in range(1, len(all_layers) + 1):
    chosen = all_layers[:depth]
    textures[depth] = synthesize({k: 1.0 / depth for k in chosen}, iterations)
    h = textures[depth][1]
    print(f"layers up to {chosen[-1]}: J {h[0]:.3g} -> {h[-1]:.3g}")
    assert h[-1] < h[0]
print(f"{len(textures)} syntheses of {iterations} iterations in {time.perf_counter() - t0:.0f} s")

fig, axes = plt.subplots(1, 6, figsize=(16, 3))
axes[0].imshow(style_rgb)
axes[0].set_title("style image")
for ax, depth in zip(axes[1:], textures):
    ax.imshow(textures[depth][0])
    ax.set_title(f"block1 .. block{depth}", fontsize=10)
for ax in axes:
    ax.axis("off")
plt.show()

# %% [markdown]
# With only `block1_conv1` the result has the right colours and little else: its units see 3×3
# pixels, so their correlations are colour and pixel-level statistics. Each deeper layer adds
# structure at a larger scale — the blobs and edges of the cells, then their arrangement. The
# layout of the style image is not reproduced anywhere: the Gram matrices do not know it.
#
# ### The per-layer weights $\lambda_l$
#
# The per-layer costs are of very different sizes — $J^{[l]}$ is a fourth power of activations
# whose typical size changes from layer to layer. Here are the five layers' costs at the noise
# start, unweighted:

# %%
fun_all = style_objective(model, style_grams, {k: 1.0 for k in all_layers})
x_noise = np.random.default_rng(0).normal(0.0, 10.0, size=x_S.shape).astype(np.float32)
acts_noise = model.forward(x_noise, all_layers, keep_cache=False)
for k in all_layers:
    print(f"{k}: J_style = {float(style_layer_cost(style_grams[k], acts_noise[k])[0]):.3g}")

# %% [markdown]
# So "equal weights" are not equal influence: with $\lambda_l = 1/5$ each, the layers with the
# largest costs dominate the early iterations. Shifting the weights shifts the result between
# fine and coarse structure. Two extremes, each over all five layers:

# %%
shallow = dict(zip(all_layers, [0.6, 0.3, 0.07, 0.02, 0.01]))
deep = dict(zip(all_layers, [0.01, 0.02, 0.07, 0.3, 0.6]))
weighted = {label: synthesize(wts, iterations) for label, wts in [("shallow-heavy", shallow), ("deep-heavy", deep)]}
fig, axes = plt.subplots(1, 4, figsize=(11, 3))
panels = [("style image", style_rgb), ("equal weights", textures[5][0]),
          ("shallow-heavy λ", weighted["shallow-heavy"][0]), ("deep-heavy λ", weighted["deep-heavy"][0])]
for ax, (title, img) in zip(axes, panels):
    ax.imshow(img)
    ax.set_title(title, fontsize=10)
    ax.axis("off")
plt.show()

# %% [markdown]
# ## Summary
#
# * The Gram matrix $G = A^\top A$ holds channel co-activations: *which features occur together*,
#   summed over all positions — so it describes style/texture and forgets layout (it is exactly
#   invariant to shuffling the pixels).
# * $J^{[l]}_\text{style} = \frac{1}{(2 n_H n_W n_C)^2}\|G^{(S)} - G^{(G)}\|^2$ with
#   $\partial J/\partial A = A (G^{(G)} - G^{(S)}) / (n_H n_W n_C)^2$; through a Gram matrix,
#   $\partial J/\partial A = A(\bar G + \bar G^\top)$. All checked to ~$10^{-10}$ in float64.
# * Matching Gram matrices from noise synthesizes textures; deeper layers add larger-scale
#   structure; the weights $\lambda_l$ move the balance between fine and coarse, and must be read
#   against the very different sizes of the per-layer costs.
#
# Next: [notebook 7](07_style_transfer.ipynb) adds the content cost back: style transfer.
#
# ## Exercises
#
# 1. Show that $G$ is symmetric positive semi-definite. What does a zero eigenvalue mean for the
#    channels?
# 2. The "mean activation" per channel is a simpler position-free statistic. Synthesize with a cost
#    on channel means only (derive its gradient). What is missing?
# 3. Synthesize with a style image twice the size of the generated one, without rescaling the target
#    Gram matrices, and then with the rescaling by the pixel-count ratio. What changes?
# 4. Use `VGG.from_h5(pooling="avg")` for the synthesis. Compare with the max-pooling result.
