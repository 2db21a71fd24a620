# Source of tutorials/07_style_transfer.ipynb (build with: python tutorials/_build.py)

# %% [markdown]
# # 7 · Style transfer: $J = \alpha J_\text{content} + \beta J_\text{style}$, and how to minimize it
#
# **Why this matters.** Everything so far comes together here. Notebook 5 gave a cost that keeps a
# photo's *content* (deep activations), notebook 6 one that imposes a painting's *style* (Gram
# matrices at several layers). Style transfer minimizes their weighted sum over the pixels of one
# image, plus a small smoothness term:
#
# $$
# J(x) = \alpha\, J_\text{content}(C, x) + \beta \sum_l \lambda_l\, J^{[l]}_\text{style}(S, x) + w_\text{TV}\, \mathrm{TV}(x).
# $$
#
# This notebook adds the last piece (total variation), checks the whole objective's gradient, and
# then studies the choices that matter in practice: the optimizer (gradient descent, Adam,
# L-BFGS), the balance $\alpha/\beta$, the TV weight, and keeping the photo's colours.

# %%
import os
import time

import numpy as np
import matplotlib.pyplot as plt
from matplotlib_inline.backend_inline import set_matplotlib_formats

FAST = os.environ.get("NUMPYNST_FAST") == "1"   # the test suite sets this: small sizes, quick run
set_matplotlib_formats("jpeg")
plt.rcParams.update({"figure.dpi": 80})

import numpynst
from numpynst.gradcheck import check_directional, numerical_gradient, rel_error
from numpynst.image import load_image, preserve_color, rgb_to_yiq, sample_path
from numpynst.losses import total_variation
from numpynst.optim import make_optimizer, minimize
from numpynst.transfer import DEFAULT_GD_LR, Objective
from numpynst.vgg import VGG, deprocess, preprocess

rng = np.random.default_rng(0)
print("fast mode" if FAST else "full mode")

# %% [markdown]
# ## 1. Total variation: a smoothness prior
#
# Optimizing pixels through a CNN tends to add high-frequency noise the network hardly notices.
# A penalty on differences between neighbouring pixels discourages it:
#
# $$
# \mathrm{TV}(x) = \frac{1}{NHWC}\Big[\sum_{n,i,j,c} (x_{n,i+1,j,c} - x_{n,i,j,c})^2 + \sum_{n,i,j,c} (x_{n,i,j+1,c} - x_{n,i,j,c})^2\Big].
# $$
#
# (Squared differences keep it smooth for the optimizer; dividing by the number of entries makes
# the weight mean the same at every image size.)
#
# **Gradient.** A vertical difference $v_{i} = x_{i+1} - x_{i}$ enters with $+1$ for $x_{i+1}$ and
# $-1$ for $x_i$, so its square sends $+2v_i$ to $x_{i+1}$ and $-2v_i$ to $x_i$. Summing,
#
# $$
# \frac{\partial\, \mathrm{TV}}{\partial x_{i}} = \frac{2}{NHWC}\big(v_{i-1} - v_{i}\big) + (\text{the same along } j),
# $$
#
# with the terms that fall off the image left out. Check (float64, around $10^{-10}$), plus the
# two obvious invariants: a constant image costs 0 and has gradient 0.

# %%
x = rng.standard_normal((1, 5, 6, 3))
J, g = total_variation(x)
err = rel_error(g, numerical_gradient(lambda z: total_variation(z)[0], x.copy()))
print(f"TV gradient: relative error {err:.1e}   (should be around 1e-10)")
J0, g0 = total_variation(np.full((1, 5, 6, 3), 7.0))
print(f"constant image: TV = {float(J0)}, max |gradient| = {np.abs(g0).max()}")
assert err < 1e-8 and float(J0) == 0.0 and not g0.any()

# %% [markdown]
# ## 2. The whole objective, and its gradient
#
# `numpynst.transfer.Objective` computes the targets once — the content activation at
# `block4_conv2`, the style Gram matrices at `block1_conv1` ... `block5_conv1` (rescaled if the
# style image's size differs) — and then `value_and_grad(x)` runs one forward pass to every layer
# involved, the three costs, and **one** backward pass seeded at all those layers at once:
#
# $$
# \frac{\partial J}{\partial x} = \texttt{VGG.backward}\Big(\{\text{content layer}: \alpha\, \partial J_c/\partial a,\;\; l: \beta \lambda_l\, \partial J^{[l]}_s/\partial a\}\Big) + w_\text{TV}\, \frac{\partial\, \mathrm{TV}}{\partial x}.
# $$
#
# Two checks in float64 at a small size: the value is the weighted sum of its parts (rounding only,
# around $10^{-16}$), and the gradient passes the directional check (step $h = 10^{-4}$ as in
# notebooks 5 and 6; around $10^{-8}$, up to ~$10^{-6}$ when the step crosses a kink).

# %%
model64 = VGG.from_h5(dtype=np.float64)
xc = preprocess(load_image(sample_path("content"), size=48), dtype=np.float64)[:, :32, :48]
xs = preprocess(load_image(sample_path("style"), size=48), dtype=np.float64)
obj64 = Objective(model64, xc, xs, alpha=1.0, beta=1e-2, tv_weight=1.0)
x_probe = xc + rng.normal(0.0, 20.0, size=xc.shape)
J, dx, parts = obj64.evaluate(x_probe)          # J, dJ/dx and the unweighted terms
parts = {k: float(v) for k, v in parts.items()}
recombined = 1.0 * parts["content"] + 1e-2 * parts["style"] + 1.0 * parts["tv"]
print("parts:", {k: f"{v:.4g}" for k, v in parts.items()})
print(f"J = {float(J):.10g}, alpha Jc + beta Js + w TV = {recombined:.10g}")
err = check_directional(lambda z: obj64.value_and_grad(z)[0], x_probe, dx, h=1e-4)
print(f"directional check of dJ/dx: {err:.1e}   (around 1e-8, at most ~1e-6)")
assert abs(float(J) - recombined) < 1e-12 * abs(recombined) and err < 1e-5

# %% [markdown]
# ## 3. The loop, and `stylize`
#
# The optimizers in `numpynst.optim` see only a function on flat arrays, `fun(x) -> (J, dJ/dx)`,
# and take one step per evaluation. Style transfer is then three lines — start from the content
# photo and step:

# %%
size, iterations = (48, 4) if FAST else (160, 100)
content = load_image(sample_path("content"), size=size)
style = load_image(sample_path("style"), size=size)
content16 = content[: content.shape[0] // 16 * 16, : content.shape[1] // 16 * 16]   # see notebook 3
model = VGG.from_h5()                                                              # float32 for speed
obj = Objective(model, model.preprocess(content16), model.preprocess(style))
x0 = model.preprocess(content16).reshape(-1)
result = minimize(obj.flat(), x0, make_optimizer("lbfgs"), iterations=5)
print(f"J: {float(obj.value_and_grad(x0.reshape(obj.shape))[0]):.4g} -> {float(result.f):.4g} after "
      f"{result.iterations} L-BFGS steps ({result.evaluations} evaluations)")

# %% [markdown]
# `numpynst.stylize` wraps that loop with what a real run needs: loading and resizing, working at a
# multiple of the pooling factor, keeping the best image seen, a loss history, stopping rules,
# coarse-to-fine scales, Ctrl-C safety. We use it from here on, passing the model so that it is
# loaded once. `tol=None` runs every iteration, so the curves below compare equal budgets.
#
# ## 4. Gradient descent vs Adam vs L-BFGS
#
# * **Gradient descent**, $x \leftarrow x - \eta\, \nabla J$: the textbook method. Its step must
#   be small enough for the *stiffest* direction, so it crawls along the flat ones.
# * **Adam** rescales each pixel's step by a running estimate of its gradient's size: each pixel
#   moves by about $\eta$ per step (here $\eta = 5$ grey levels).
# * **L-BFGS** builds a curvature model from the last 10 steps and takes quasi-Newton steps, with a
#   line search instead of a learning rate.
#
# Every step of all three costs one forward and one backward pass, so iterations are a fair
# measure of cost.

# %%
runs = {}
for name, lr in [("gd", DEFAULT_GD_LR), ("adam", 5.0), ("lbfgs", None)]:
    runs[name] = numpynst.stylize(content, style, model=model, iterations=iterations,
                                  optimizer=name, lr=lr, tol=None)
    r = runs[name]
    J = r.history["J"]
    print(f"{name:6s} lr={lr}: J {J[0]:.4g} -> {min(J):.4g} ({min(J) / J[0]:.1%} of the start), {r.seconds:.0f} s")
    assert min(J) < J[0]

fig = plt.figure(figsize=(15, 3.4))
ax = fig.add_subplot(1, 5, 1)
for name, r in runs.items():
    J = np.asarray(r.history["J"])
    ax.plot(J / J[0], label=name)
ax.set_yscale("log")
ax.set_xlabel("iteration")
ax.set_ylabel("J / J(start)")
ax.legend()
for k, (title, img) in enumerate([("content", content)] + [(n, r.image) for n, r in runs.items()], start=2):
    a = fig.add_subplot(1, 5, k)
    a.imshow(img)
    a.set_title(title)
    a.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# L-BFGS reaches the lowest cost for the same number of network passes and needs no learning
# rate; Adam comes close once its step size is right; plain gradient descent, limited by the
# largest stable step, has barely moved. (`numpynst`'s default is L-BFGS.)
#
# ## 5. The balance $\alpha / \beta$
#
# Only the ratio matters for *where* the minimum is. Keeping $\alpha = 1$ and raising $\beta$
# trades the photo's structure for the painting's texture:

# %%
short = max(2, iterations * 3 // 5)
betas = [0.1, 1.0, 10.0]     # calibrated style weights (range 0..10)
by_beta = {b: numpynst.stylize(content, style, model=model, iterations=short, beta=b, tol=None) for b in betas}
fig, axes = plt.subplots(1, len(betas), figsize=(4 * len(betas), 3.1))
for ax, b in zip(axes, betas):
    r = by_beta[b]
    ax.imshow(r.image)
    ax.set_title(f"beta = {b:g}: content {r.history['content'][-1]:.3g}, style {r.history['style'][-1]:.3g}", fontsize=9)
    ax.axis("off")
plt.show()

# %% [markdown]
# ## 6. Total variation weight
#
# Without TV the result keeps a fine, noisy grain; with a large weight it turns flat and blurry.
# (Zoom in on the fur.)

# %%
tvs = [0.0, 0.1, 1.0]        # calibrated TV weights (range 0..1)
by_tv = {w: numpynst.stylize(content, style, model=model, iterations=short, tv_weight=w, tol=None) for w in tvs}
fig, axes = plt.subplots(1, len(tvs), figsize=(4 * len(tvs), 3.1))
for ax, w in zip(axes, tvs):
    r = by_tv[w]
    ax.imshow(r.image)
    ax.set_title(f"tv_weight = {w:g}: TV(x) = {r.history['tv'][-1]:.3g}", fontsize=9)
    ax.axis("off")
plt.show()
if not FAST:   # fast mode's few iterations end before TV (~0.1% of J at first) has any effect
    assert by_tv[1.0].history["tv"][-1] < by_tv[0.0].history["tv"][-1]      # more weight, smoother image

# %% [markdown]
# ## 7. Keeping the photo's colours
#
# Often one wants the painting's *strokes* but the photo's *colours*. Gatys et al. (2016) proposed
# *luminance-only transfer*: convert both images to a luminance/chroma space (YIQ), keep the
# stylized luminance $Y$ and the photo's chroma $(I, Q)$:
#
# $$
# [Y, I, Q]_\text{out} = [\,Y_\text{stylized},\; I_\text{content},\; Q_\text{content}\,].
# $$
#
# `numpynst.image.preserve_color(content, stylized)` does this (and `stylize(...,
# preserve_color=True)` applies it at the end). Check: the output's chroma is the photo's and its
# luminance the stylized image's, up to rounding to 8 bits and clipping to the RGB gamut (mean
# differences of a grey level or less):

# %%
stylized = runs["lbfgs"].image
kept = preserve_color(content, stylized)
yiq_out, yiq_content, yiq_stylized = rgb_to_yiq(kept), rgb_to_yiq(content), rgb_to_yiq(stylized)
d_chroma = np.abs(yiq_out[..., 1:] - yiq_content[..., 1:]).mean()
d_luma = np.abs(yiq_out[..., 0] - yiq_stylized[..., 0]).mean()
print(f"mean |chroma - content chroma| = {d_chroma:.2f}, mean |luminance - stylized luminance| = {d_luma:.2f}  (grey levels)")
assert d_chroma < 2.0 and d_luma < 2.0

fig, axes = plt.subplots(1, 4, figsize=(14, 3.1))
for ax, (title, img) in zip(axes, [("content", content), ("style", style), ("stylized", stylized),
                                   ("stylized, photo's colours", kept)]):
    ax.imshow(img)
    ax.set_title(title)
    ax.axis("off")
plt.show()

# %% [markdown]
# ## Summary
#
# * $J = \alpha J_\text{content} + \beta \sum_l \lambda_l J^{[l]}_\text{style} + w_\text{TV}\,\mathrm{TV}$;
#   its pixel gradient is one VGG backward pass seeded at every layer involved, plus the TV
#   gradient — checked through VGG19 in float64.
# * L-BFGS needs no learning rate and gets furthest per network pass; Adam is a close second
#   with a good step size; plain gradient descent is far behind.
# * $\beta/\alpha$ moves the result between photo and texture; TV removes grain; luminance-only
#   transfer keeps the photo's colours.
#
# Next: [notebook 8](08_gpu_with_cupy.ipynb) runs the same code on a GPU.
#
# ## Exercises
#
# 1. Start from noise (`init="noise"`) instead of the content photo. How many more iterations
#    does L-BFGS need to reach the same $J$? Does the result look different?
# 2. Move the content layer to `block2_conv2` and to `block5_conv2` (`content_layer=...`). Relate
#    what you see to notebook 5's reconstructions.
# 3. Find the largest stable learning rate for gradient descent on this pair (try a few values
#    around `DEFAULT_GD_LR`). What happens just above it?
# 4. Blend two styles: `numpynst.stylize(content, [style_a, style_b], style_blend=[0.7, 0.3])`.
#    The targets are blended Gram matrices — why does that make sense (notebook 6)?
