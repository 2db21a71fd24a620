# Source of tutorials/13_measuring_pictures.ipynb (build with: python tutorials/_build.py)

# %% [markdown]
# # 13 · Measuring pictures: how much photo, how much painting
#
# **Why this matters.** The objective $J$ that `stylize` minimises says how well the optimiser did
# its job, not whether the picture looks painted: a lower $J$ at a small style weight is still a
# photo under a texture. To compare settings, tools and defaults we want numbers that judge the
# *picture*: how much of the photo's layout it kept, and how far it has moved from the photo's
# feature statistics towards the painting's. And the judge of style should not be the very
# quantity the optimiser minimised (the Gram matrices), or every Gram-matching result would look
# perfect by construction.
#
# This notebook derives the three figures of `numpynst.metrics` (and `numpynst evaluate`), checks
# each piece against its definition, and measures a few pictures:
#
# * the **content distance** $C$ at block4_conv2;
# * the **style gap closed** $S = 1 - D(x, s)/D(c, s)$, with $D$ the Gram distance ($S_{gram}$) and
#   the sliced Wasserstein distance ($S_{swd}$).

# %%
import itertools
import math
import os

import numpy as np
import matplotlib.pyplot as plt
from matplotlib_inline.backend_inline import set_matplotlib_formats

FAST = os.environ.get("NUMPYNST_FAST") == "1"   # the test suite sets this: small sizes, quick run
set_matplotlib_formats("jpeg")
plt.rcParams.update({"figure.dpi": 80})

from numpynst import metrics as M
from numpynst.claims import record
from numpynst.image import load_image, resize_to, sample_path
from numpynst.transfer import stylize
from numpynst.vgg import VGG

SIZE = 64 if FAST else 128
record("size", SIZE)
model = VGG.from_h5()
rng = np.random.default_rng(0)
print("fast mode" if FAST else "full mode", "- pictures at", SIZE, "px")

# %% [markdown]
# ## 1. Content distance
#
# With $F(\cdot)$ the block4_conv2 activations as a matrix (one row per position),
#
# $$ C(x) = \frac{\lVert F(x) - F(c) \rVert^2}{\lVert F(c) \rVert^2}. $$
#
# It is 0 for the photo $c$ itself, 1 for an image with no activations at all (a "blank" image),
# and it grows as the layout of the photo's objects is lost. It compares position by position,
# so the result and the photo must have the same size: `evaluate` takes the photo at the result's
# size. The relative form is the same normalisation as `stylize`'s calibrated content term.

# %%
photo = load_image(sample_path("chelsea"), size=SIZE)
painting = load_image(sample_path("hubble"), size=SIZE)
judge = M.Judge(photo, painting, model)
shuffled = photo.reshape(-1, 3)[rng.permutation(photo.shape[0] * photo.shape[1])].reshape(photo.shape)
blurred = resize_to(resize_to(photo, (photo.shape[0] // 4, photo.shape[1] // 4)), photo.shape[:2])
for name, img in [("the photo", photo), ("the photo blurred 4x", blurred), ("its pixels shuffled", shuffled)]:
    print(f"C({name}) = {judge.distances(img)[0]:.4f}")
assert judge.distances(photo)[0] == 0.0
assert judge.distances(blurred)[0] < judge.distances(shuffled)[0]

# %% [markdown]
# ## 2. Style statistics that forget *where*: the Gram matrix per position
#
# Notebook 6 described style by the Gram matrix $G = A^\top A$ of a layer's activations $A$
# ($N$ positions $\times$ $C$ channels). Dividing by $N$ makes it a *mean* over positions,
# $G = \frac1N \sum_i f_i f_i^\top$, so a result and a painting of different sizes compare. The
# relative distance at layer $l$ is
#
# $$ D^l_{gram}(x, s) = \frac{\lVert G_l(x) - G_l(s) \rVert_F^2}{\lVert G_l(s) \rVert_F^2}, $$
#
# 1 for a blank image, 0 for the painting's statistics; $D_{gram}$ is its mean over the layers
# block1_conv1 ... block5_conv1. A permutation of the positions changes nothing: check it.

# %%
A = rng.normal(size=(500, 8))
perm = rng.permutation(500)
print("Gram of permuted rows - Gram:", np.abs(M.gram(A[perm]) - M.gram(A)).max())
assert np.allclose(M.gram(A[perm]), M.gram(A), rtol=1e-12, atol=1e-14)
assert M.gram_distance(M.gram(np.zeros((10, 8))), M.gram(A)) == 1.0

# %% [markdown]
# ## 3. A judge that Gram matching does not optimise: the sliced Wasserstein distance
#
# The Gram matrix holds second moments only: two very different distributions of features can
# share it. A distance between the whole distributions: treat each row of $F_l$ as a sample.
# In one dimension the squared 2-Wasserstein distance between two distributions is the
# integral of the squared difference of their quantile functions,
#
# $$ W_2^2(a, b) = \int_0^1 \big(Q_a(t) - Q_b(t)\big)^2\, dt , $$
#
# because in one dimension the cheapest way to move mass is in order (the monotone coupling).
# For two samples of the same size $n$ it is $\frac1n\sum_i (a_{(i)} - b_{(i)})^2$: sort both and
# compare in order. For sizes $n \ne m$ (a painting with another aspect ratio), $Q_a$ and $Q_b$ are
# step functions with steps at $i/n$ and $j/m$, and the integral is a finite sum over the merged
# steps — exact, no resampling.
#
# The definition behind it is the cheapest *coupling*: with $L$ equally weighted atoms on each
# side every coupling is a permutation, so a brute force over all permutations gives the true
# value. Check the sorted formula and the merged steps against it:

# %%
def brute_force_w2(a, b):
    L = math.lcm(len(a), len(b))
    ra, rb = np.repeat(a, L // len(a)), np.repeat(b, L // len(b))
    return min(np.mean((ra - rb[list(p)]) ** 2) for p in itertools.permutations(range(L)))


one = np.ones((1, 1))
for n, m in [(6, 6), (2, 3), (4, 2)]:
    a, b = rng.normal(size=n), rng.normal(1.0, 2.0, size=m)
    fast = float(M.wasserstein2(M.quantiles(a[:, None], one), M.quantiles(b[:, None], one))[0])
    brute = brute_force_w2(a, b)
    print(f"n={n} m={m}: quantiles {fast:.12f}  brute force {brute:.12f}")
    assert abs(fast - brute) <= 1e-12 * brute

# %% [markdown]
# In $C$ dimensions there is no sorting, so the distance is **sliced**: project the features on
# $P$ random unit directions $\theta_p$ and average the one-dimensional distances,
#
# $$ SW_l(x, s) = \frac1P \sum_p W_2^2(F_l(x)\theta_p,\ F_l(s)\theta_p), \qquad
#    D^l_{swd} = \frac{SW_l(x, s)}{SW_l(\text{blank}, s)} , $$
#
# where the blank image's distance is the painting's mean squared projection (all mass at 0).
# The directions are seeded (`default_rng([seed, layer])`), so the figure is the same every run;
# another seed moves it a little — by how much, for the photo's own gap and a half-way image:

# %%
half = np.clip(0.5 * photo.astype(float) + 0.5 * resize_to(painting, photo.shape[:2]), 0, 255).astype(np.uint8)
seeds = range(2 if FAST else 5)
spread = [M.Judge(photo, painting, model, seed=k)(half).style_swd for k in seeds]
print("S_swd of the half-way image over seeds:", " ".join(f"{v:.3f}" for v in spread))
assert max(spread) - min(spread) < 0.1

# %% [markdown]
# ## 4. Style gap closed
#
# Finally $S = 1 - D(x, s) / D(c, s)$: the fraction of the photo's distance to the painting that
# the result has covered. 0 at the photo (exactly: same numbers on both sides), 1 at the
# painting's statistics. A painting has its own layout, so it is far from the photo in $C$: style
# can always be bought with content, and a result is judged by the pair $(C, S)$ — a point on a
# frontier, not a single number.

# %%
square = resize_to(painting, photo.shape[:2])
m_photo = M.Judge(photo, square, model)(photo)
m_paint = M.Judge(photo, square, model)(square)
print("the photo:    ", m_photo)
print("the painting: ", m_paint)
assert (m_photo.style_gram, m_photo.style_swd, m_photo.content) == (0.0, 0.0, 0.0)
assert (m_paint.style_gram, m_paint.style_swd) == (1.0, 1.0)

# %% [markdown]
# ## 5. Measuring stylized pictures
#
# Three pictures of the photo in the painting's style: with `stylize`'s defaults until issue 26
# (style weight 1), with its defaults now (style weight {{beta_default:g}}; at this size a single
# scale), and at a stronger style weight. `measure` (and `numpynst evaluate`) take the photo at the
# result's size and the painting as `stylize` sizes it.

# %%
iterations = 10 if FAST else 80
from numpynst.objective import DEFAULT_BETA
record("beta_default", DEFAULT_BETA)
settings = {"style weight 1": {"beta": 1.0}, "default": {}, "style weight 30": {"beta": 30.0}}
results, rows = {}, {}
for name, opts in settings.items():
    res = stylize(photo, painting, model=model, iterations=iterations, **opts)
    results[name] = res.image
    rows[name] = M.measure(res.image, photo, painting, model=model)
    print(f"{name:16s} C {rows[name].content:.3f}  S_gram {rows[name].style_gram:.3f}  S_swd {rows[name].style_swd:.3f}")
assert rows["style weight 1"].style_gram < rows["default"].style_gram < rows["style weight 30"].style_gram
record("c_weight1", rows["style weight 1"].content)
record("c_default", rows["default"].content)

fig, axes = plt.subplots(1, 4, figsize=(12, 3.2))
axes[0].imshow(photo)
axes[0].set_title("photo")
for ax, (name, img) in zip(axes[1:], results.items()):
    ax.imshow(img)
    ax.set_title(f"{name}\nC {rows[name].content:.2f}  S_swd {rows[name].style_swd:.2f}", fontsize=9)
for ax in axes:
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# At this size, {{size}} px with a single scale, the default style weight takes the photo's layout
# apart: $C$ = {{c_default:.2f}} (a blank image's distance is 1), the galaxy's dark field and its
# stars everywhere, where style weight 1 keeps the cat ($C$ = {{c_weight1:.2f}}). The default is
# chosen for the default size, 512 px coarse to fine, where the same weight keeps the photo's
# subject ([docs/gallery.md](../docs/gallery.md) measures every bundled pair there); for small
# pictures a lower style weight is the better choice. $C$ and $S$ say so in numbers before the eye
# does.
#
# ## Summary
#
# * $C$ measures the photo's layout kept (0 = all of it); $S_{gram}$ and $S_{swd}$ the share of
#   the way from the photo's feature statistics to the painting's (1 = all of it).
# * $S_{gram}$ is what the style loss minimises; $S_{swd}$ compares whole distributions of
#   features along seeded directions, with an exact one-dimensional transport, and is the fairer
#   judge.
# * `numpynst evaluate RESULT --content PHOTO --style PAINTING` prints the three; the benchmark
#   `benchmarks/pictures.py` draws the frontier ($C$ against $S_{swd}$) of many settings, with
#   neural-style's published picture as the point to reach (docs/pictures.md).
#
# **Exercises.** (1) Measure a result with a mask over one half of the picture
# (`M.Judge(photo, painting, model, mask=...)`): is the style even across the picture?
# (2) Raise the number of directions and watch the spread over seeds shrink as $1/\sqrt{P}$.
