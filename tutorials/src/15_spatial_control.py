# Source of tutorials/15_spatial_control.ipynb (build with: python tutorials/_build.py)

# %% [markdown]
# # 15 · Spatial control: a style per region, and the photo's colours
#
# **Why this matters.** The Gram matrix of notebook 6 forgets *where* features occur; that is
# what makes it a description of style. It also means that a plain style transfer paints the
# whole picture alike. People want more: the sky from one painting and the land from another, a
# face left as a photograph, the painting's strokes in the photo's own colours. Gatys, Ecker,
# Bethge, Hertzmann & Shechtman ("Controlling Perceptual Factors in Neural Style Transfer", CVPR
# 2017) give the method this notebook builds:
#
# 1. a **mask** per region, carried down to every style layer's grid (two ways: resizing, or
#    eroding by the receptive field);
# 2. **guided Gram matrices**: one Gram matrix per region, from the features weighted by the
#    region's mask, normalised by the region's own mass;
# 3. **colour control**: luminance-only transfer, or matching the painting's colour histogram to
#    the photo's before the run (mean and covariance of RGB, derived below).
#
# Every formula is checked numerically, and a two-region picture is made and measured.

# %%
import os

import numpy as np
import matplotlib.pyplot as plt
from matplotlib_inline.backend_inline import set_matplotlib_formats

FAST = os.environ.get("NUMPYNST_FAST") == "1"   # the test suite sets this: small sizes, quick run
set_matplotlib_formats("jpeg")
plt.rcParams.update({"figure.dpi": 80})

from numpynst.arch import layer_table
from numpynst.gradcheck import numerical_gradient, rel_error
from numpynst.guided import guided_grams, guided_layer_cost, guided_target, layer_masks
from numpynst.image import color_statistics, color_transform, load_image, match_color, preserve_color, sample_path
from numpynst.losses import gram_matrix, style_layer_cost, style_target
from numpynst.transfer import stylize
from numpynst.vgg import VGG

rng = np.random.default_rng(0)
print("fast mode" if FAST else "full mode")

# %% [markdown]
# ## 1. How a mask travels down the network
#
# A mask is a picture: white (1) where a style applies, black (0) where it does not, grey for a
# blend. The style cost, though, lives on each layer's grid of positions, and a position of a
# deep layer stands for a whole patch of pixels. Two numbers of each layer say which patch
# (notebook 4 and the tiles' derivation): its **spacing** $j$ (input pixels between neighbouring
# positions, doubled by each pool) and its **reach** $a$ (how far beyond its own $j \times j$ cell
# it sees, on each side; each 3×3 convolution adds $j$). Position $p$ *owns* the pixels
# $[pj,\ pj + j - 1]$ and *sees* $[pj - a,\ pj + j - 1 + a]$: its receptive field, $j + 2a$ wide.

# %%
table = [layer for layer in layer_table("vgg19") if layer.name.endswith("conv1")]
print(f"{'layer':<14}{'spacing j':>10}{'reach a':>9}{'field j+2a':>12}")
for layer in table:
    print(f"{layer.name:<14}{layer.spacing:>10}{layer.reach:>9}{layer.spacing + 2 * layer.reach:>12}")
reach = {layer.name: layer.reach for layer in table}
assert reach["block5_conv1"] == 70           # 2*1 + 2*2 + 4*4 + 4*8 + 16
geometry = {layer.name: (layer.reach, layer.spacing) for layer in table}

# %% [markdown]
# Two ways to give a position its mask value:
#
# * **resize**: the mean of the mask over the cell the position owns. That is 2×2 averaging at
#   every pool, the mask "pooled along" with the features. Every region survives at every layer,
#   but a position just inside the boundary *sees* up to $a$ pixels of the other region, so the
#   other region's texture can leak into this region's statistics.
# * **erode**: the minimum of the mask over the whole receptive field. A position belongs to a
#   region only if everything it sees is inside it: nothing leaks, but a band of width $a$ along
#   the boundary belongs to neither region at that layer, and a region narrower than $2a$
#   vanishes from the layer.
#
# A horizontal boundary in a 256-pixel-high picture shows the difference: the rows each region
# keeps at every style layer.

# %%
H, W = 256, 64
top = np.zeros((H, W))
top[: H // 2] = 1.0
masks = np.stack([top, 1 - top])
resized = layer_masks(masks, geometry, "resize")
eroded = layer_masks(masks, geometry, "erode")
print(f"{'layer':<14}{'rows (resize)':>15}{'top keeps (erode)':>19}{'bottom keeps':>14}")
for n, (a, j) in geometry.items():
    r, e = resized[n], eroded[n]
    print(f"{n:<14}{r.shape[1]:>15}{int((e[0, :, 0] == 1).sum()):>19}{int((e[1, :, 0] == 1).sum()):>14}")
    # a position is in the eroded top region iff its field ends above the boundary: p j + j - 1 + a < H/2
    assert int((e[0, :, 0] == 1).sum()) == max(0, min(r.shape[1], (H // 2 - a - j) // j + 1))
field5 = geometry["block5_conv1"][1] + 2 * geometry["block5_conv1"][0]
assert field5 > H // 2 and (eroded["block5_conv1"][0, :, 0] == 1).sum() < resized["block5_conv1"].shape[1] / 4

fig, axes = plt.subplots(2, 5, figsize=(12, 4.4))
for k, n in enumerate(geometry):
    axes[0, k].imshow(resized[n][0], cmap="gray", vmin=0, vmax=1, aspect="auto")
    axes[1, k].imshow(eroded[n][0], cmap="gray", vmin=0, vmax=1, aspect="auto")
    axes[0, k].set_title(n, fontsize=9)
axes[0, 0].set_ylabel("resize")
axes[1, 0].set_ylabel("erode")
for ax in axes.flat:
    ax.set_xticks([]), ax.set_yticks([])
plt.suptitle("the top region's mask at each style layer")
plt.tight_layout()
plt.show()

# %% [markdown]
# At block5_conv1 the receptive field is taller than either region: the eroded regions keep only
# the rows at the picture's edge, where the field is clipped (beyond the edge is zero padding,
# which belongs to no region). Erosion is exact about leakage and costly for small regions;
# resizing keeps every layer. Which to choose is a measured question (section 4).
#
# ## 2. The guided Gram matrix
#
# With $A$ the layer's activations as a $P \times C$ matrix and $m_r$ region $r$'s mask at the
# layer (one value per position),
#
# $$
# G_r = \sum_i m_{r,i}\, a_i a_i^\top = A^\top \operatorname{diag}(m_r) A, \qquad
# M_r = \sum_i m_{r,i}, \qquad \hat G_r = G_r / M_r .
# $$
#
# **Weight $m$, not $m^2$.** Gatys et al. multiply the features by the mask, which weighs a
# position by $m^2$. For hard masks the two agree; for soft ones, weighing by $m$ makes a position
# a *weighted member* of each region: where two masks cross as $t$ and $1-t$, the regions' Gram
# matrices add up exactly to the unguided one. A check:

# %%
a = rng.standard_normal((6, 7, 4))
t = rng.uniform(size=(6, 7))
soft = np.stack([t, 1 - t])
print("sum_r G_r == G:", np.allclose(guided_grams(a, soft).sum(axis=0), gram_matrix(a)))
assert np.allclose(guided_grams(a, soft).sum(axis=0), gram_matrix(a))

# %% [markdown]
# **Normalise per region.** $G_r$ sums over the region: a region covering 5% of the picture has
# a Gram matrix 20 times smaller than one covering all of it, and its squared cost 400 times
# smaller. $\hat G_r$, the mean outer product over the region, does not depend on the region's
# size. The target $T_r$ is the same statistic of the style image (over all of it, or over its
# own *style mask*). The layer's cost, with blend weights $w_r$ (summing to 1),
#
# $$
# J = \sum_r w_r\, c\, \lVert \hat G_r - T_r \rVert_F^2, \qquad c = \frac{1}{4C^2},
# $$
#
# is, for one region covering everything, exactly notebook 6's cost
# $\lVert A^\top A - G_S \tfrac{P}{P_S} \rVert^2 / (2PC)^2$ — checked here:

# %%
a_gen = rng.standard_normal((1, 6, 5, 4))
a_sty = rng.standard_normal((1, 9, 7, 4)) + 0.3
J_guided, g_guided = guided_layer_cost(a_gen, np.ones((1, 6, 5)), guided_target(a_sty)[None])
J_plain, g_plain = style_layer_cost(style_target(gram_matrix(a_sty), 30, 63), a_gen)
print(f"guided {float(J_guided):.10f}   unguided {float(J_plain):.10f}   gradient rel. error "
      f"{rel_error(g_guided, g_plain):.1e}")
assert abs(float(J_guided) - float(J_plain)) < 1e-12 * float(J_plain) and rel_error(g_guided, g_plain) < 1e-12

# %% [markdown]
# **The gradient.** With $E_r = \hat G_r - T_r$: $\partial J / \partial G_r = 2 w_r c E_r / M_r$ ($M_r$
# is a constant of the mask), and through $G_r = A^\top \operatorname{diag}(m_r) A$ (an entry
# $A_{ik}$ appears in row $k$ and column $k$ of $G_r$, each time weighted by $m_{r,i}$):
#
# $$
# \frac{\partial J}{\partial A} = \sum_r \operatorname{diag}(m_r)\, A \left(\frac{\partial J}{\partial G_r}
# + \frac{\partial J}{\partial G_r}^{\!\top}\right) = \sum_r \frac{4 w_r c}{M_r} \operatorname{diag}(m_r) A E_r .
# $$
#
# Each position's gradient needs only its own activation, its mask values and the global
# $\partial J/\partial G_r$: the same structure as the plain Gram matrix, which is why exact tiles
# (print size) work with masks unchanged. Central differences in float64:

# %%
a = rng.standard_normal((1, 5, 4, 3))
m = rng.uniform(0.05, 1, size=(3, 5, 4))
T = rng.standard_normal((3, 3, 3))
T = T @ T.transpose(0, 2, 1)
w = [0.2, 0.5, 0.3]
J, g = guided_layer_cost(a, m, T, w)
num = numerical_gradient(lambda v: guided_layer_cost(v, m, T, w)[0], a.copy())
err = rel_error(g, num)
print(f"relative error of dJ/da: {err:.1e}   (float64 central differences: expect ~1e-10)")
assert err < 1e-8

# %% [markdown]
# ## 3. Two regions, two paintings
#
# The cat photo, its top half painted like the stained tissue (`ihc`) and its bottom half like
# the Hubble deep field, both bundled. `stylize(..., masks=[top, bottom])` (the CLI:
# `--masks top.png bottom.png`) does everything above; a mask may be a file of any size or an
# array, and is resized to the photo.

# %%
SIZE, ITERS = (48, 2) if FAST else (160, 50)
BETA = 5.0            # a style weight (0..100, calibrated; default 10): the regions' styles visible in few iterations
model = VGG.from_h5()
photo = load_image(sample_path("chelsea"), size=SIZE)
styles = [sample_path("ihc"), sample_path("hubble")]
h, w = photo.shape[:2]
top = np.zeros((h, w), np.float32)
top[: h // 2] = 1.0
region_masks = [top, 1 - top]
results = {mode: stylize(photo, styles, model=model, iterations=ITERS, beta=BETA, masks=region_masks,
                         mask_mode=mode).image
           for mode in ("resize", "erode")}
singles = [stylize(photo, s, model=model, iterations=ITERS, beta=BETA).image for s in styles]

paint = [load_image(s, size=SIZE) for s in styles]
panels = [("photo", photo), ("mask: top", top), ("ihc", paint[0]), ("hubble", paint[1]),
          ("ihc everywhere", singles[0]), ("hubble everywhere", singles[1]),
          ("masks, resized", results["resize"]), ("masks, eroded", results["erode"])]
fig, axes = plt.subplots(2, 4, figsize=(12, 5))
for ax, (title, im) in zip(axes.flat, panels):
    ax.imshow(im, cmap="gray") if im.ndim == 2 else ax.imshow(im)
    ax.set_title(title, fontsize=10)
    ax.set_xticks([]), ax.set_yticks([])
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 4. Measuring the boundary
#
# Where do the styles mix? Cut the result into horizontal strips of 8 rows, and compare each
# strip's mean outer product of features at the three finest style layers (where the strokes
# live) with each painting's: $d_P = \lVert \hat G_{\text{strip}} - T_P\rVert^2 / \lVert T_P \rVert^2$.
# The share $t = d_A / (d_A + d_B)$ is near 0 where the strip looks like painting A and near 1
# where it looks like B. The band where $t$ changes is where the styles mix; compare its width
# with the reach of the style layers.

# %%
fine = ["block1_conv1", "block2_conv1", "block3_conv1"]


def mean_outer(act):
    A = act.reshape(-1, act.shape[-1]).astype(np.float64)
    return A.T @ A / len(A)


def features(rgb):
    acts, _ = model.forward_tape(model.preprocess(rgb), fine, keep=False)
    return acts


targets = [{n: mean_outer(v) for n, v in features(p).items()} for p in paint]
strip = 8


def profile(image):
    acts = features(image)
    rows, share = [], []
    for y0 in range(0, image.shape[0] - strip + 1, 2):
        d = [0.0, 0.0]
        for n in fine:
            j = model.layer(n).spacing
            g = mean_outer(acts[n][:, y0 // j:(y0 + strip) // j])
            for k in (0, 1):
                d[k] += float(np.sum((g - targets[k][n]) ** 2) / np.sum(targets[k][n] ** 2))
        rows.append(y0 + strip / 2)
        share.append(d[0] / (d[0] + d[1]))
    return np.array(rows), np.array(share)


plt.figure(figsize=(7, 3.2))
for name, im in [("resize", results["resize"]), ("erode", results["erode"]),
                 ("ihc everywhere", singles[0]), ("hubble everywhere", singles[1])]:
    plt.plot(*profile(im), label=name)
plt.axvline(h / 2, color="k", ls="--", lw=0.8)
plt.axvspan(h / 2 - reach["block3_conv1"], h / 2 + reach["block3_conv1"], color="grey", alpha=0.15)
plt.xlabel("row (dashed: the boundary; shaded: +- block3_conv1's reach)")
plt.ylabel("t = d_A / (d_A + d_B)")
plt.legend(fontsize=8)
plt.tight_layout()
plt.show()
y, t_resize = profile(results["resize"])
above, below = t_resize[y < h / 2 - reach["block3_conv1"]], t_resize[y > h / 2 + reach["block3_conv1"]]
print(f"resize: mean t above the band {above.mean():.2f}, below it {below.mean():.2f}")
if not FAST:
    assert below.mean() > above.mean()     # the bottom looks more like hubble than the top does

# %% [markdown]
# The figures at 256 px with *The Starry Night* and *The Shipwreck*, measured with issue 26's
# style-gap metric over each region, are in `docs/masks.md` (from `benchmarks/masks.py`). In
# short: resizing closes each region's gap towards its own painting about as a single-style run
# does; eroding leaves the boundary band to the content and the deep layers to nobody in a picture
# this small, and closes less. The default is **resize**; erosion is there for large pictures
# whose regions are many receptive fields tall.
#
# ## 5. Colour: the photo's palette
#
# Gatys et al. (2016, "Preserving Color in Neural Artistic Style Transfer") give two ways to
# keep the photo's colours. `--color keep` is the first: transfer, then put the photo's chroma
# back (luminance-only transfer, notebook 8). `--color match` is the second: before the run,
# move the painting's colours so that their **mean and covariance** are the photo's.
#
# An affine map $x' = A x + b$ of the painting's pixels gives them the mean $A\mu_s + b$ and the
# covariance $A C_s A^\top$. Asking for $\mu_c$ and $C_c$: $b = \mu_c - A\mu_s$ and
# $A C_s A^\top = C_c$, solved by $A = C_c^{1/2} C_s^{-1/2}$
# (check: $C_c^{1/2} C_s^{-1/2} C_s C_s^{-1/2} C_c^{1/2} = C_c$). So
#
# $$
# x' = \mu_c + C_c^{1/2} C_s^{-1/2} (x - \mu_s).
# $$
#
# Any square root works; numpynst takes the **symmetric** one from the eigendecomposition,
# $S^{1/2} = U \operatorname{diag}(\sqrt{\lambda}) U^\top$, because it treats R, G and B alike
# (the Cholesky factor maps R with R alone, G with R and G, ...: permuting the channels changes
# its result). Check on the two pictures: the matched painting's statistics are the photo's.

# %%
hub = load_image(sample_path("hubble"), size=SIZE).astype(np.float64)
A_map, b_map = color_transform(hub, photo)
mapped = hub @ A_map.T + b_map
mu_c, C_c = color_statistics(photo)
mu_m, C_m = color_statistics(mapped)
print("mean:      photo", np.round(mu_c, 2), " matched", np.round(mu_m, 2))
print("max |C_matched - C_photo| / max |C_photo| =", f"{np.abs(C_m - C_c).max() / np.abs(C_c).max():.1e}")
assert np.allclose(mu_m, mu_c, atol=1e-8) and np.allclose(C_m, C_c, rtol=1e-8, atol=1e-6)

# %%
matched_run = stylize(photo, sample_path("hubble"), model=model, iterations=ITERS, beta=BETA, color="match").image
row = [("photo", photo), ("hubble", paint[1]), ("hubble, matched", match_color(paint[1], photo)),
       ("--color style", singles[1]), ("--color keep", preserve_color(photo, singles[1])),
       ("--color match", matched_run)]
fig, axes = plt.subplots(1, 6, figsize=(15, 2.6))
for ax, (title, im) in zip(axes, row):
    ax.imshow(im)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([]), ax.set_yticks([])
plt.tight_layout()
plt.show()

# %% [markdown]
# `keep` changes only the colours after the run: the texture is the painting's, the hues the
# photo's. `match` changes the painting before the run, so the optimisation never has to fight
# between the photo's colours (content cost) and the painting's (style cost): the strokes come
# out in the photo's palette.
#
# ## Summary
#
# * A mask reaches a layer by its mean over each position's cell (**resize**, the default) or
#   its minimum over the receptive field (**erode**: no leakage, but a band of the layer's reach
#   and every region narrower than the field are lost at that layer).
# * The guided Gram matrix $\hat G_r = A^\top \operatorname{diag}(m_r) A / M_r$ weighs a position by
#   its mask and normalises by the region's mass; with one all-ones region it is the plain cost.
#   Its gradient is per position, so tiles stay exact (`tests/test_masks.py` checks tiled ==
#   whole with masks).
# * Histogram matching by mean and covariance: $x' = \mu_c + C_c^{1/2} C_s^{-1/2}(x - \mu_s)$.
#
# **Exercises.** (1) Give the two masks a soft boundary 40 px wide and look at the band. (2) Use
# `style_masks` to take the style from the sky of a painting only. (3) Compare `--style-loss
# mean-cov` with masks to the Gram version.
