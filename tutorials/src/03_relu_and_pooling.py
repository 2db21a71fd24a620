# Source of tutorials/03_relu_and_pooling.ipynb (build with: python tutorials/_build.py)

# %% [markdown]
# # 3 · ReLU and pooling: forward, backward, the tie rule
#
# **Why this matters.** Between its convolutions VGG applies two other operations: the ReLU
# $\max(x, 0)$ after every convolution, and a 2×2 pooling at the end of every block. Both are
# cheap, but both are *not differentiable everywhere*: ReLU has a kink at 0, and max pooling has
# one wherever two values of a window tie for the maximum. A backward pass must pick a gradient
# there, and a gradient check must not put its finite difference across such a point.
#
# This notebook derives both backward passes, checks them numerically, states the **tie rule**
# `numpynst` uses, and shows why average pooling (which Gatys et al. preferred for synthesis)
# sends gradients to every pixel while max pooling does not.

# %%
import os

import numpy as np
import matplotlib.pyplot as plt
from matplotlib_inline.backend_inline import set_matplotlib_formats

FAST = os.environ.get("NUMPYNST_FAST") == "1"   # the test suite sets this: small sizes, quick run
set_matplotlib_formats("jpeg")
plt.rcParams.update({"figure.dpi": 80})
np.set_printoptions(precision=3, suppress=True)

from numpynst import layers
from numpynst.claims import claim, record
from numpynst.gradcheck import numerical_gradient, numerical_gradient_array, rel_error
from numpynst.image import load_image, sample_path

rng = np.random.default_rng(0)
ROUNDING = (1e-13, 5e-10)   # the range stated for a check whose only error is float64 rounding
record("eps64", float(np.finfo(np.float64).eps))
print("fast mode" if FAST else "full mode")

# %% [markdown]
# ## 1. ReLU
#
# $$
# \text{out} = \max(x, 0), \qquad
# \frac{\partial\, \text{out}}{\partial x} = \begin{cases} 1 & x > 0 \\ 0 & x < 0 \end{cases}
# \quad\Longrightarrow\quad dx = \delta \odot [x > 0].
# $$
#
# Elementwise, so the gradient is a mask: units that were "off" in the forward pass pass no
# gradient back. At exactly $x = 0$ there is no derivative; any value in $[0, 1]$ is a valid
# *subgradient*. `numpynst` uses 0 (the mask is $x > 0$, strict), as PyTorch and cuDNN do.
#
# **Check**, with inputs kept at least 0.1 away from the kink, so that no finite difference
# (step $h = 10^{-5}$) crosses it. ReLU is linear on each side, so the only error is rounding —
# about $\varepsilon = {{eps64:.1e}}$ times the size of the summed values, divided by $h$: the cell
# asserts {{relu_err.lo:.0e}} to {{relu_err.hi:.0e}} (as in notebook 2, there is no truncation error to add); this run gives
# {{relu_err:.1e}}.

# %%
x = rng.standard_normal((2, 4, 5, 3))
x += 0.1 * np.sign(x)                      # |x| >= 0.1: far from the kink
out, cache = layers.relu_forward(x)
dout = rng.standard_normal(out.shape)
dx = layers.relu_backward(dout, cache)
num = numerical_gradient_array(lambda x_: layers.relu_forward(x_)[0], x, dout)
err = rel_error(dx, num)
print(f"ReLU dx: relative error {err:.1e}   ({ROUNDING[0]:.0e} to {ROUNDING[1]:.0e})")
claim("relu_err", err, *ROUNDING)
assert np.array_equal(dx, np.where(x > 0, dout, 0.0))   # exactly the mask formula

# %% [markdown]
# **At the kink.** The central difference at $x = 0$ sees the slope 1 on one side and 0 on the
# other and reports their average, 0.5. The backward pass reports 0. Both are valid subgradients,
# so neither is wrong — but a gradient check that lands on a kink will "fail". That is why every
# check keeps its inputs away from 0.

# %%
x0 = np.array([[[[-1.0, 0.0, 2.0]]]])
out, cache = layers.relu_forward(x0)
print("x                :", x0.ravel())
print("analytic   dx    :", layers.relu_backward(np.ones_like(x0), cache).ravel(), " (0 at the kink, by choice)")
print("central difference:", numerical_gradient(lambda z: layers.relu_forward(z)[0].sum(), x0.copy()).ravel(),
      " (0.5 at the kink: the average of both sides)")

# %% [markdown]
# ## 2. Max pooling
#
# A $k\times k$ window with stride $s$ (VGG: $k = s = 2$) keeps the largest value of each window
# and channel:
#
# $$
# \text{out}[n,i,j,c] = \max_{0 \le p, q < k} x[n,\, is+p,\, js+q,\, c].
# $$
#
# Near a point where the maximum is unique, the output *is* that one input: it has derivative 1
# with respect to the arg-max and 0 with respect to the others. So the backward pass **routes**
# each $\delta[n,i,j,c]$ to the position of its window's maximum and sends nothing elsewhere:
#
# $$
# dx[n,\, is+p^*,\, js+q^*,\, c] \mathrel{+}= \delta[n,i,j,c], \qquad (p^*, q^*) = \arg\max_{p,q} x[n, is+p, js+q, c].
# $$
#
# The forward pass remembers $(p^*, q^*)$ for every output (a `uint8` per output value, in
# `cache.argmax`), so the backward pass needs no comparison.
#
# First the forward pass against `maxpool_forward_naive`, which loops over the windows (they must
# be identical, max |difference| 0):

# %%
for shape, k, s in [((2, 8, 8, 3), 2, 2), ((1, 7, 9, 2), 2, 2), ((1, 9, 9, 2), 3, 2), ((1, 6, 6, 1), 3, 3)]:
    x = rng.standard_normal(shape)
    out, _ = layers.maxpool_forward(x, size=k, stride=s)
    ref = layers.maxpool_forward_naive(x, size=k, stride=s)
    print(f"x {shape}, {k}x{k} windows, stride {s} -> out {out.shape}: max |difference| {np.abs(out - ref).max()}")
    assert np.array_equal(out, ref)

# %% [markdown]
# The backward check needs inputs **without ties** and whose order a step of $h = 10^{-5}$ cannot
# change: we use a random permutation of well-separated values (spacing 0.01). Then max pooling
# is locally linear and the error is rounding only ({{maxpool_err.lo:.0e}} to {{maxpool_err.hi:.0e}}; here
# {{maxpool_err_min:.1e}} to {{maxpool_err:.1e}}). We include
# overlapping windows (3×3, stride 2), where one input can be the maximum of several windows and
# collects the gradient of each:

# %%
def tie_free(shape):
    """Distinct values 0.01 apart, in random order: no ties, and no finite step reorders them."""
    return rng.permutation(np.arange(np.prod(shape)) * 0.01).reshape(shape)


errs = []
for shape, k, s in [((2, 6, 6, 3), 2, 2), ((1, 7, 9, 2), 2, 2), ((1, 9, 9, 2), 3, 2)]:
    x = tie_free(shape)
    out, cache = layers.maxpool_forward(x, size=k, stride=s)
    dout = rng.standard_normal(out.shape)
    dx = layers.maxpool_backward(dout, cache)
    num = numerical_gradient_array(lambda x_: layers.maxpool_forward(x_, size=k, stride=s)[0], x, dout)
    err = rel_error(dx, num)
    print(f"max pool {k}x{k}/{s} on {shape}: relative error {err:.1e}")
    errs.append(err)
record("maxpool_err_min", min(errs))
claim("maxpool_err", max(errs), *ROUNDING)

# %% [markdown]
# ### The tie rule
#
# When several values of a window share the maximum, the maximum is not differentiable: raising
# any one of them raises the output, lowering one does not lower it. `numpynst` sends the
# **whole gradient to the first maximum in row-major order** (smallest $p$, then smallest $q$) —
# the rule of PyTorch and cuDNN. It is one valid subgradient among many, and it keeps an
# invariant: gradient is *routed*, never copied, so for non-overlapping windows
# $\sum dx = \sum \delta$.
#
# The central difference, again, averages: in a window with two tied maxima, nudging either one
# up makes it the maximum (slope 1), nudging it down hands the maximum to the other (slope 0),
# so it reports 0.5 for each.

# %%
x = np.array([[3.0, 3.0], [1.0, 0.0]]).reshape(1, 2, 2, 1)   # two tied maxima, in the top row
out, cache = layers.maxpool_forward(x)
dx = layers.maxpool_backward(np.ones_like(out), cache)
num = numerical_gradient(lambda z: layers.maxpool_forward(z)[0].sum(), x.copy())
print("window:\n", x[0, :, :, 0])
print("numpynst dx (first maximum takes it all):\n", dx[0, :, :, 0])
print("central difference (splits it):\n", num[0, :, :, 0])
assert dx[0, 0, 0, 0] == 1.0 and dx.sum() == 1.0

x = rng.integers(0, 3, size=(2, 8, 8, 4)).astype(float)       # small integers: ties everywhere
out, cache = layers.maxpool_forward(x)
dout = rng.standard_normal(out.shape)
dx = layers.maxpool_backward(dout, cache)
print(f"with many ties: sum(dx) = {dx.sum():.12f}, sum(dout) = {dout.sum():.12f}  (equal: routed, never copied)")
assert np.isclose(dx.sum(), dout.sum(), rtol=1e-12, atol=1e-12)
assert np.count_nonzero(dx) <= dout.size                     # at most one receiver per window

# %% [markdown]
# **Do ties happen in VGG?** Exact ties between positive floats are rare — but after a ReLU, a
# window of four zeros is a tie, and it is common. It does no harm: the gradient goes to the
# first zero, and the ReLU below it (whose output was 0) blocks it. Let us count on random
# pre-activations with a negative bias, so that many units are off:

# %%
z = rng.standard_normal((1, 32, 32, 16)) - 1.0
a, relu_cache = layers.relu_forward(z)
p, pool_cache = layers.maxpool_forward(a)
ties = (np.sum(a.reshape(1, 16, 2, 16, 2, 16).max(axis=(2, 4), keepdims=True)
               == a.reshape(1, 16, 2, 16, 2, 16), axis=(2, 4)) > 1)
dz = layers.relu_backward(layers.maxpool_backward(np.ones_like(p), pool_cache), relu_cache)
print(f"{ties.mean():.0%} of the pool windows are ties (all zeros after the ReLU)")
print(f"gradient reaching z from the tied windows: {np.abs(dz.reshape(1, 16, 2, 16, 2, 16).sum(axis=(2, 4))[ties]).max()}")

# %% [markdown]
# ## 3. Average pooling
#
# $$
# \text{out}[n,i,j,c] = \frac{1}{k^2} \sum_{p,q} x[n,\, is+p,\, js+q,\, c]
# \quad\Longrightarrow\quad
# dx[n,\, is+p,\, js+q,\, c] \mathrel{+}= \frac{\delta[n,i,j,c]}{k^2} \;\; \text{for every } (p, q).
# $$
#
# Linear, differentiable everywhere, no tie rule needed. Checked like the others (asserted
# {{avgpool_err.lo:.0e}} to {{avgpool_err.hi:.0e}}; here {{avgpool_err_min:.1e}} to {{avgpool_err:.1e}}):

# %%
errs = []
for shape, k, s in [((2, 6, 6, 3), 2, 2), ((1, 7, 9, 2), 2, 2), ((1, 9, 9, 2), 3, 2)]:
    x = rng.standard_normal(shape)
    out, cache = layers.avgpool_forward(x, size=k, stride=s)
    dout = rng.standard_normal(out.shape)
    dx = layers.avgpool_backward(dout, cache)
    num = numerical_gradient_array(lambda x_: layers.avgpool_forward(x_, size=k, stride=s)[0], x, dout)
    err = rel_error(dx, num)
    print(f"avg pool {k}x{k}/{s} on {shape}: relative error {err:.1e}")
    errs.append(err)
record("avgpool_err_min", min(errs))
claim("avgpool_err", max(errs), *ROUNDING)

# %% [markdown]
# ### Odd sizes: floor mode
#
# $H_o = \lfloor (H - k)/s \rfloor + 1$: a 7-pixel row pooled by 2 gives 3 outputs, and the last
# pixel belongs to no window. It is dropped from the forward pass and receives **zero gradient**.
# Through VGG's four poolings in front of `block5`, an image whose sides are not multiples of 16
# has up to 15 rows and columns that deep layers never see — `numpynst.stylize` therefore works at
# a multiple of the pooling factor and resizes back at the end.

# %%
x = tie_free((1, 7, 7, 1))
out, cache = layers.maxpool_forward(x)
dx_max = layers.maxpool_backward(np.ones_like(out), cache)
out, cache = layers.avgpool_forward(x)
dx_avg = layers.avgpool_backward(np.ones_like(out), cache)
print("7x7 input -> output", out.shape[1:3])
print("max pool dx:\n", dx_max[0, :, :, 0])
print("avg pool dx:\n", dx_avg[0, :, :, 0])
assert not dx_max[0, 6, :, 0].any() and not dx_avg[0, :, 6, 0].any()

# %% [markdown]
# ## 4. Where the gradient goes, on an image
#
# Pool a greyscale photo three times (as VGG does before `block4`) and send a gradient of ones
# back. With max pooling only one pixel in each $8\times8$ block receives anything — the brightest
# one; with average pooling every pixel receives the same share, $1/64$. The figure zooms into
# nine such blocks (red lines), one square per pixel: white squares receive gradient. When the *input image* is what we
# optimize, as in style transfer, max pooling's gradient touches few pixels per step; Gatys et
# al. reported that average pooling gives "slightly more appealing results" for synthesis
# (`numpynst` offers both: `VGG.from_h5(pooling="avg")`).

# %%
size = 96 if FAST else 192
grey = load_image(sample_path("chelsea"), size=size).mean(axis=2)[None, :, :, None]
grey = grey + 1e-3 * rng.standard_normal(grey.shape)                   # break ties between equal grey levels
grads = {}
for kind, fwd, bwd in [("max", layers.maxpool_forward, layers.maxpool_backward),
                       ("avg", layers.avgpool_forward, layers.avgpool_backward)]:
    a, caches = grey, []
    for _ in range(3):
        a, c = fwd(a)
        caches.append(c)
    g = np.ones_like(a)
    for c in reversed(caches):
        g = bwd(g, c)
    grads[kind] = g[0, :, :, 0]
    print(f"{kind} pooling x3: {np.count_nonzero(grads[kind]) / grads[kind].size:.1%} of the pixels receive gradient")

fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
crop = 24                                                               # 3 x 3 blocks of 8 x 8 pixels
r0, c0 = (grey.shape[1] // 2) // 8 * 8, (grey.shape[2] // 2) // 8 * 8   # block-aligned, near the centre
axes[0].imshow(grey[0, :, :, 0], cmap="gray")
axes[0].add_patch(plt.Rectangle((c0 - 0.5, r0 - 0.5), crop, crop, fill=False, ec="r", lw=1.5))
axes[0].set_title("input (red: the crop on the right)")
for ax, kind in zip(axes[1:], ["max", "avg"]):
    support = grads[kind][r0:r0 + crop, c0:c0 + crop] != 0
    # white: the pixel receives gradient; black: it does not. Thin grey lines separate pixels and
    # red lines the 8x8 blocks, so an all-white panel reads as "every pixel" and not as "nothing".
    ax.imshow(support, cmap="gray", vmin=0, vmax=1)
    ax.set_xticks(np.arange(-0.5, crop, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, crop, 1), minor=True)
    ax.grid(which="minor", color="0.55", lw=0.5)
    for t in range(0, crop + 1, 8):
        ax.axhline(t - 0.5, color="r", lw=1.2)
        ax.axvline(t - 0.5, color="r", lw=1.2)
    ax.tick_params(which="minor", length=0)
    ax.set_title(f"dx != 0 after 3 {kind} poolings\n(white: {support.sum()} of {support.size} pixels)", fontsize=10)
for ax in axes:
    ax.set_xticks([])
    ax.set_yticks([])
plt.show()

# %% [markdown]
# ## Summary
#
# * ReLU: $dx = \delta \odot [x > 0]$; 0 at the kink (a subgradient), as in PyTorch.
# * Max pooling routes each gradient to its window's maximum; **ties go to the first maximum in
#   row-major order**, so gradient is never duplicated ($\sum dx = \sum \delta$ for non-overlapping
#   windows). Ties after a ReLU (all-zero windows) are harmless.
# * Average pooling spreads $\delta / k^2$ over the window; differentiable everywhere.
# * Floor mode drops the remainder row/column; it gets zero gradient.
# * Gradient checks need inputs away from kinks and ties; then the errors are rounding only,
#   asserted {{relu_err.lo:.0e}} to {{relu_err.hi:.0e}}.
#
# Next: [notebook 4](04_vgg_from_hdf5.ipynb) stacks these layers into VGG19 with trained weights.
#
# ## Exercises
#
# 1. Implement the "split the gradient evenly among tied maxima" rule. Check that it matches the
#    central difference on the tied window above — and explain why the test suite still checks on
#    tie-free inputs.
# 2. Leaky ReLU: $\max(x, 0.01x)$. Derive its backward pass and check it numerically.
# 3. Overlapping max pooling ($k = 3$, $s = 2$): does $\sum dx = \sum \delta$ still hold? Why?
# 4. Write `maxpool_backward` with fancy indexing (`np.add.at`) from the arg-max indices, and
#    compare its speed with `numpynst`'s loop over the $k^2$ window offsets.
