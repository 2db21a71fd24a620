# Source of tutorials/08_style_transfer.ipynb (build with: python tutorials/_build.py)

# %% [markdown]
# # 8 · Style transfer: $J = \alpha J_\text{content} + \beta J_\text{style}$, and how to minimize it
#
# **Why this matters.** Everything so far comes together here. Notebook 5 gave a cost that keeps a
# photo's *content* (deep activations), notebook 6 one that imposes a painting's *style* (Gram
# matrices at several layers). Style transfer minimizes their weighted sum over the pixels of one
# image, plus a small smoothness term:
#
# $$
# J(x) = \alpha\, J_\text{content}(C, x) + \beta \sum_l \lambda_l\, J^{[l]}_\text{style}(S, x) + \gamma\, R(x).
# $$
#
# ($x$ is the generated image $X$ as the code holds it: preprocessed pixels.) This notebook adds the
# last piece (the smoothness term $R$), checks the whole objective's value and gradient, and then
# studies the choices that matter in practice: the optimizer (gradient descent, Adam, L-BFGS, per
# evaluation of $J$), the balance $\alpha/\beta$, the smoothness weight, the start (the photo or
# noise), the content layer, and keeping the photo's colours.

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
from numpynst.claims import claim, record
from numpynst.gradcheck import check_directional, numerical_gradient, rel_error
from numpynst.image import load_image, preserve_color, rgb_to_yiq, sample_path
from numpynst.losses import content_cost, gram_matrix, style_layer_cost, total_variation
from numpynst.optim import make_optimizer, minimize
from numpynst.objective import RAW_ALPHA, RAW_BETA, RAW_TV_WEIGHT
from numpynst.transfer import DEFAULT_GD_LR, Objective
from numpynst.vgg import VGG, deprocess, preprocess

rng = np.random.default_rng(0)
print("fast mode" if FAST else "full mode")

# %% [markdown]
# ## 1. The smoothness term: squared differences (the notes' "total variation")
#
# Optimizing pixels through a CNN tends to add high-frequency noise the network hardly notices.
# A penalty on differences between neighbouring pixels discourages it:
#
# $$
# R(x) = \frac{1}{NHWC}\Big[\sum_{n,i,j,c} (x_{n,i+1,j,c} - x_{n,i,j,c})^2 + \sum_{n,i,j,c} (x_{n,i,j+1,c} - x_{n,i,j,c})^2\Big].
# $$
#
# **A name to read with care.** The course notes, most NST code and `numpynst`'s option
# (`tv_weight`, `numpynst.losses.total_variation`) call this *total variation*. It is not: total
# variation proper (Rudin, Osher & Fatemi 1992) sums the *absolute* differences,
#
# $$
# \mathrm{TV}_1(x) = \frac{1}{NHWC}\Big[\sum |x_{n,i+1,j,c} - x_{n,i,j,c}| + \sum |x_{n,i,j+1,c} - x_{n,i,j,c}|\Big].
# $$
#
# $R$ is a *quadratic* penalty (the discrete Dirichlet energy). The two differ where it shows: a
# sharp edge. Squares punish one big jump more than many small steps of the same total rise, so $R$
# prefers to smear an edge into a ramp; $\mathrm{TV}_1$ charges only the total rise and keeps the
# edge. We keep $R$ because its squares make it smooth for the optimizer and for gradient checks
# (no kink at a zero difference); dividing by the number of entries makes the weight mean the same
# at every image size. Both on two one-row images that rise by the same 8 grey levels, in one step
# or in eight:

# %%
def tv_l1(x):
    """Total variation proper: the mean absolute difference of neighbouring pixels (for comparison)."""
    return (np.abs(np.diff(x, axis=1)).sum() + np.abs(np.diff(x, axis=2)).sum()) / x.size


edge = np.concatenate([np.zeros(8), np.full(8, 8.0)]).reshape(1, 1, 16, 1)     # one jump of 8
ramp = np.concatenate([np.zeros(4), np.arange(1.0, 9.0), np.full(4, 8.0)]).reshape(1, 1, 16, 1)  # 8 steps of 1
for label, img in [("edge", edge), ("ramp", ramp)]:
    print(f"{label}: R (squared differences) {float(total_variation(img)[0]):.3f},  TV_1 (absolute) {tv_l1(img):.3f}")
record("R_ratio", float(total_variation(edge)[0]) / float(total_variation(ramp)[0]))
claim("tv1_ratio", tv_l1(edge) / tv_l1(ramp), 1.0, 1.0)

# %% [markdown]
# $\mathrm{TV}_1$ charges the edge and the ramp alike; $R$ charges the edge {{R_ratio:.0f}} times
# more, so it would rather blur it. That is what section 6's largest weight does. The name
# `tv_weight` stays for compatibility with the notes and other tools; in the text it is $\gamma$.
#
# **Gradient.** A vertical difference $v_{i} = x_{i+1} - x_{i}$ enters with $+1$ for $x_{i+1}$ and
# $-1$ for $x_i$, so its square sends $+2v_i$ to $x_{i+1}$ and $-2v_i$ to $x_i$. Summing,
#
# $$
# \frac{\partial R}{\partial x_{i}} = \frac{2}{NHWC}\big(v_{i-1} - v_{i}\big) + (\text{the same along } j),
# $$
#
# with the terms that fall off the image left out. Check (float64, asserted between
# {{tv_err.lo:.0e}} and {{tv_err.hi:.0e}}), plus the two obvious invariants: a constant image costs 0
# and has gradient 0.

# %%
x = rng.standard_normal((1, 5, 6, 3))
J, g = total_variation(x)
err = rel_error(g, numerical_gradient(lambda z: total_variation(z)[0], x.copy()))
print(f"R gradient: relative error {err:.1e}")
J0, g0 = total_variation(np.full((1, 5, 6, 3), 7.0))
print(f"constant image: R = {float(J0)}, max |gradient| = {np.abs(g0).max()}")
claim("tv_err", err, 1e-13, 1e-8)
assert float(J0) == 0.0 and not g0.any()

# %% [markdown]
# ## 2. The whole objective, and its gradient
#
# `numpynst.transfer.Objective` computes the targets once — the content activation at
# `block4_conv2`, the style Gram matrices at `block1_conv1` ... `block5_conv1` with
# $\lambda_l = 0.2$ each (rescaled if the style image's size differs) — and then
# `value_and_grad(x)` runs one forward pass to every layer involved, the three costs, and **one**
# backward pass seeded at all those layers at once:
#
# $$
# \frac{\partial J}{\partial x} = \texttt{VGG.backward}\Big(\{\text{content layer}: \alpha\, \partial J_c/\partial a,\;\; l: \beta \lambda_l\, \partial J^{[l]}_s/\partial a\}\Big) + \gamma\, \frac{\partial R}{\partial x}.
# $$
#
# Two checks in float64 at a small size, with `Objective`'s default *raw* weights — the library's
# choice for the notes' $J$ as written (the notes give no values): $\alpha = {{raw_alpha:g}}$,
# $\beta = {{raw_beta:g}}$, $\gamma = {{raw_tv:g}}$:
#
# 1. **The value is the weighted sum of its parts**, each part rebuilt here from scratch: the
#    targets and the probe's activations from their own forward passes, each cost from its own
#    function in `numpynst.losses` (`content_cost`, `style_layer_cost`, `total_variation`), the
#    style Gram matrices rescaled by the pixel-count ratio by hand (the style image is 48×48, the
#    probe 32×48). Only rounding should separate the two (asserted below {{J_rebuilt.hi:.0e}}
#    relative; this run: {{J_rebuilt:.1e}}).
# 2. **The gradient** passes the directional check (step $h = 10^{-4}$ as in notebooks 5 and 6).

# %%
model64 = VGG.from_h5(dtype=np.float64)
xc = preprocess(load_image(sample_path("content"), size=48), dtype=np.float64)[:, :32, :48]
xs = preprocess(load_image(sample_path("ihc"), size=48), dtype=np.float64)
obj64 = Objective(model64, xc, xs)                       # raw weights, the Objective's default
record("raw_alpha", RAW_ALPHA)
record("raw_beta", RAW_BETA)
record("raw_tv", RAW_TV_WEIGHT)
x_probe = xc + rng.normal(0.0, 20.0, size=xc.shape)
J, dx = obj64.value_and_grad(x_probe)

# the same J from scratch
content_layer = "block4_conv2"
lambdas = {f"block{i}_conv1": 0.2 for i in range(1, 6)}
a_C = model64.forward(xc, [content_layer], keep_cache=False)[content_layer]
a_S = model64.forward(xs, list(lambdas), keep_cache=False)
a_G = model64.forward(x_probe, [content_layer, *lambdas], keep_cache=False)
J_content = float(content_cost(a_C, a_G[content_layer])[0])
J_style = J_style_unscaled = 0.0
for l, lam in lambdas.items():
    pixels_ratio = (a_G[l].shape[1] * a_G[l].shape[2]) / (a_S[l].shape[1] * a_S[l].shape[2])
    J_style += lam * float(style_layer_cost(gram_matrix(a_S[l]) * pixels_ratio, a_G[l])[0])
    J_style_unscaled += lam * float(style_layer_cost(gram_matrix(a_S[l]), a_G[l])[0])
J_tv = float(total_variation(x_probe)[0])
record("style_px_ratio", (xs.shape[1] * xs.shape[2]) / (x_probe.shape[1] * x_probe.shape[2]))
rebuilt = RAW_ALPHA * J_content + RAW_BETA * J_style + RAW_TV_WEIGHT * J_tv
print(f"parts: J_content {J_content:.4g}, J_style {J_style:.4g}, R {J_tv:.4g}")
print(f"Objective's J = {float(J):.12g}")
print(f"rebuilt       = {rebuilt:.12g}   relative difference {abs(float(J) - rebuilt) / rebuilt:.1e}")
wrong = RAW_ALPHA * J_content + RAW_BETA * J_style_unscaled + RAW_TV_WEIGHT * J_tv
print(f"(without rescaling the style Grams: {wrong:.6g}, off by {abs(wrong - rebuilt) / rebuilt:.0%})")
err = check_directional(lambda z: obj64.value_and_grad(z)[0], x_probe, dx, h=1e-4)
print(f"directional check of dJ/dx: {err:.1e}")
claim("J_rebuilt", abs(float(J) - rebuilt) / rebuilt, 0, 1e-13)
claim("J_unscaled_off", abs(wrong - rebuilt) / rebuilt, 0.1, None)
claim("dir_J", err, None, 3e-6)

# %% [markdown]
# The value agrees to rounding, and the check has teeth: forgetting the rescaling of the style
# targets (the style image has {{style_px_ratio:g}} times the probe's pixels)
# moves $J$ by {{J_unscaled_off:.0%}}. The directional check gives {{dir_J:.1e}} (asserted below
# {{dir_J.hi:.0e}}), not $10^{-10}$, because it is relative to
# $D = \langle\nabla J, v\rangle$, which along a random direction is far smaller than
# $\|\nabla J\|$, and $J$ is a sum of terms of very different sizes (notebook 5, section 2,
# takes such a check apart); a wrong gradient would be off by $O(1)$.
#
# ## 3. The loop, and `stylize`
#
# The optimizers in `numpynst.optim` see only a function on flat arrays, `fun(x) -> (J, dJ/dx)`.
# Each of their iterations costs **one evaluation** of `fun` — one forward and one backward pass —
# for all three, L-BFGS included: its line search is spread over consecutive iterations (a
# rejected trial point is an iteration that does not move; notebook 7). So a run of $k$
# iterations evaluates $J$ $k + 1$ times, the start included, and the curves below are drawn per
# evaluation. Style transfer is then three lines — start from the content photo and step:

# %%
size, iterations = (48, 4) if FAST else (96, 60)
content = load_image(sample_path("content"), size=size)
style = load_image(sample_path("ihc"), size=size)
content16 = content[: content.shape[0] // 16 * 16, : content.shape[1] // 16 * 16]   # see notebook 3
model = VGG.from_h5()                                                              # float32 for speed
obj = Objective(model, model.preprocess(content16), model.preprocess(style))
x0 = model.preprocess(content16).reshape(-1)
result = minimize(obj.flat(), x0, make_optimizer("lbfgs"), iterations=5)
print(f"J: {float(obj.value_and_grad(x0.reshape(obj.shape))[0]):.4g} -> {float(result.f):.4g} after "
      f"{result.iterations} L-BFGS iterations ({result.evaluations} evaluations: the start and one per iteration)")
claim("evals_minus_iters", result.evaluations - result.iterations, 1, 1)

# %% [markdown]
# `numpynst.stylize` wraps that loop with what a real run needs: loading and resizing, working at a
# multiple of the pooling factor, keeping the best image seen, a loss history, stopping rules,
# coarse-to-fine scales, Ctrl-C safety. We use it from here on, passing the model so that it is
# loaded once. `tol=None` runs every iteration, so the curves below compare equal budgets.
#
# **Calibrated weights.** The raw $J$ above is in strange units: $J_\text{content}$ grows like
# $a^2$ and $J^{[l]}_\text{style}$ like $a^4$ in the activations, so $\beta = {{raw_beta:g}}$ means
# nothing by itself (it was chosen on one pair of images at one size). `stylize` therefore divides
# each term by a scale measured once from the targets (`weights_mode="calibrated"`, its default):
# each content and style term by its value at blank activations ($A = 0$, notebook 6's hilltop,
# which no image gives exactly), $R$ by the photo's own $R$. Then every term is a *relative* error
# — 1 at $A = 0$, 0 at its target, and 1 for $R$ when the result is exactly as rough as the photo —
# and the weights have documented ranges: content and style {{alpha_lo:g}}..{{alpha_hi:g}}
# (default {{beta_default:g}}), smoothness {{tv_lo:g}}..{{tv_hi:g}} (default {{tv_default:g}};
# README, "Choosing the weights"). The formulas and their gradients are unchanged: calibration only
# picks the raw weights $\alpha/s_c$, $\beta\lambda_l/s_l$, $\gamma/s_R$. The same start,
# calibrated:

# %%
from numpynst.objective import COEFFICIENT_RANGES, DEFAULT_BETA, DEFAULT_TV_WEIGHT

for key, (lo, hi) in [("alpha", COEFFICIENT_RANGES["alpha"]), ("tv", COEFFICIENT_RANGES["tv_weight"])]:
    record(f"{key}_lo", lo)
    record(f"{key}_hi", hi)
record("beta_default", DEFAULT_BETA)
record("tv_default", DEFAULT_TV_WEIGHT)
cal = Objective(model, model.preprocess(content16), model.preprocess(style), weights_mode="calibrated")
_, _, parts0 = cal.evaluate(x0.reshape(cal.shape))
print("scales: content {:.3g}, style {}, R {:.3g}".format(
    cal.scales.content, ", ".join(f"{s:.3g}" for s in cal.scales.style.values()), cal.scales.tv))
print("calibrated terms at the photo: " + ", ".join(f"{k} {float(v):.3g}" for k, v in parts0.items()))
claim("content_at_photo", abs(float(parts0["content"])), 0, 1e-6)
claim("R_at_photo", float(parts0["tv"]), 1 - 1e-5, 1 + 1e-5)
record("style_at_photo", float(parts0["style"]))

# %% [markdown]
# At the photo the content term is 0 (it *is* the target) and $R$ is 1 (it is the photo); the
# style term, {{style_at_photo:.2f}}, says how far the photo's Gram matrices are from the painting's,
# relative to the distance from $A = 0$. From here on all runs use the calibrated defaults unless a weight is named.
#
# ## 4. Gradient descent vs Adam vs L-BFGS
#
# * **Gradient descent**, $x \leftarrow x - \eta\, \nabla J$: the textbook method. Its step must
#   be small enough for the *stiffest* direction, so it crawls along the flat ones.
# * **Adam** rescales each pixel's step by a running estimate of its gradient's size: each pixel
#   moves by about $\eta$ per step (here $\eta = {{adam_lr:g}}$ grey levels).
# * **L-BFGS** builds a curvature model from the last {{memory}} accepted steps and takes
#   quasi-Newton steps, with a line search instead of a learning rate.
#
# Notebook 7 derives all three. Here each gets the same budget of {{iterations}} iterations, and in
# `numpynst` every iteration of all three is one evaluation of $J$ (one forward and one backward
# pass; L-BFGS's line-search trials are iterations of their own), so the curves are drawn against
# evaluations, the measure of cost.

# %%
from numpynst.optim import DEFAULT_ADAM_LR, DEFAULT_LBFGS_HISTORY

record("adam_lr", DEFAULT_ADAM_LR)
record("memory", DEFAULT_LBFGS_HISTORY)
record("iterations", iterations)
runs = {}
for name, lr in [("gd", DEFAULT_GD_LR), ("adam", DEFAULT_ADAM_LR), ("lbfgs", None)]:
    runs[name] = numpynst.stylize(content, style, model=model, iterations=iterations,
                                  optimizer=name, lr=lr, tol=None)
    r = runs[name]
    J = r.history["J"]
    print(f"{name:6s} lr={lr}: J {J[0]:.4g} -> {min(J):.4g} ({min(J) / J[0]:.1%} of the start) "
          f"in {len(J)} evaluations, {r.seconds:.0f} s")
    record(f"left_{name}", min(J) / J[0])
    assert min(J) < J[0]
if not FAST:
    assert runs["lbfgs"].J_final < runs["adam"].J_final < runs["gd"].J_final
record("evals", len(runs["lbfgs"].history["J"]))

fig = plt.figure(figsize=(15, 3.4))
ax = fig.add_subplot(1, 5, 1)
for name, r in runs.items():
    J = np.asarray(r.history["J"])
    ax.plot(np.arange(1, len(J) + 1), J / J[0], label=name)
ax.set_yscale("log")
ax.set_xlabel("evaluations of J")
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
# After {{evals}} evaluations L-BFGS is at {{left_lbfgs:.1%}} of the starting cost, Adam at
# {{left_adam:.1%}}, gradient descent at {{left_gd:.1%}}: the order asserted in the cell, with
# gaps that a budget this short keeps modest. L-BFGS needs no learning rate; gradient descent's
# step is limited by the stiffest direction (notebook 7 measures why). (`numpynst`'s default is
# L-BFGS.)
#
# ## 5. The balance $\alpha / \beta$
#
# Only the ratio matters for *where* the minimum is. Keeping $\alpha = 1$ and raising the style
# weight $\beta$ across its range trades the photo's structure for the painting's texture. Each
# panel gives the mean distance of the result from the photo (grey levels) and the two
# calibrated terms at the end (relative errors: content 0 at the photo, style 0 at the
# painting's Gram matrices):

# %%
short = max(2, iterations * 3 // 5)
betas = [0.1, 1.0, DEFAULT_BETA, 100.0]     # calibrated style weights (range 0..100, default 10)
by_beta = {b: numpynst.stylize(content, style, model=model, iterations=short, beta=b, tol=None) for b in betas}


def from_photo(img):
    """Mean |result - photo| in grey levels (the photo cropped to the result's multiple of 16)."""
    return float(np.abs(img.astype(float) - content[: img.shape[0], : img.shape[1]]).mean())


fig, axes = plt.subplots(1, len(betas), figsize=(3.6 * len(betas), 3.1))
for ax, b in zip(axes, betas):
    r = by_beta[b]
    terms = f"content {r.history['content'][-1]:.3f}, style {r.history['style'][-1]:.3f}"
    print(f"beta = {b:4g}: |result - photo| {from_photo(r.image):5.1f} grey levels, {terms}")
    tag = str(b).replace(".", "_")
    record(f"moved_{tag}", from_photo(r.image))
    record(f"content_{tag}", r.history["content"][-1])
    record(f"style_{tag}", r.history["style"][-1])
    ax.imshow(r.image)
    ax.set_title(f"beta = {b:g}: {from_photo(r.image):.1f} from the photo,\n{terms}", fontsize=9)
    ax.axis("off")
plt.show()
if not FAST:   # fast mode's few iterations hardly leave the photo
    content_end = [by_beta[b].history["content"][-1] for b in betas]
    style_end = [by_beta[b].history["style"][-1] for b in betas]
    assert all(c1 < c2 for c1, c2 in zip(content_end, content_end[1:]))    # more style weight: less photo
    assert all(s1 > s2 for s1, s2 in zip(style_end, style_end[1:]))        # ... and more painting

# %% [markdown]
# At $\beta = 0.1$ the result is the photo, softened, with a tint of the painting; at $\beta = 1$
# the texture lies lightly over it; at $\beta = {{beta_default:g}}$ (the default) the painting's
# texture covers the picture and the cat's eyes and outline are what is left of the photo; at 100
# the outline starts to break up. (At 96 px the painting's cells are large beside the cat: the
# default is chosen for pictures of 512 px, where the same weight keeps far more of the photo —
# see the style-weight sweep in `docs/options.md`.) The content term rises with every step up,
# from {{content_0_1:.3f}} to {{content_100_0:.2f}}, and the style term falls, from
# {{style_0_1:.2f}} to {{style_100_0:.3f}} (both asserted). The distance from the photo in grey
# levels grows from {{moved_0_1:.1f}} to {{moved_10_0:.1f}} at the default and no further
# ({{moved_100_0:.1f}} at 100): once the texture covers everything, more style weight rearranges
# the strokes rather than moving further from the photo's colours.
#
# ## 6. The smoothness weight $\gamma$
#
# Without $R$ the result keeps a fine, noisy grain; with the largest weight it turns flat and
# blurry — the quadratic penalty smears edges (section 1). (Zoom in on the fur.) The middle panel
# is the default, $\gamma = {{tv_default:g}}$: the $\beta = {{beta_default:g}}$ run above. Each title gives the
# result's roughness relative to the photo's, $R(x)/R(\text{photo})$, the calibrated term:

# %%
tvs = [0.0, 0.1, 1.0]        # calibrated TV weights (range 0..1, default 0.1)
by_tv = {w: by_beta[DEFAULT_BETA] if w == DEFAULT_TV_WEIGHT else
         numpynst.stylize(content, style, model=model, iterations=short, tv_weight=w, tol=None) for w in tvs}
fig, axes = plt.subplots(1, len(tvs), figsize=(4 * len(tvs), 3.1))
for ax, w in zip(axes, tvs):
    r = by_tv[w]
    print(f"tv_weight = {w:g}: R(x) / R(photo) = {r.history['tv'][-1]:.2f}")
    ax.imshow(r.image)
    ax.set_title(f"tv_weight = {w:g}: R(x)/R(photo) = {r.history['tv'][-1]:.2f}", fontsize=9)
    ax.axis("off")
plt.show()
if not FAST:   # fast mode's few iterations end before TV has much effect
    assert by_tv[1.0].history["tv"][-1] < by_tv[0.1].history["tv"][-1] < by_tv[0.0].history["tv"][-1]

# %% [markdown]
# ## 7. Starting from noise
#
# The course notes start the generated image from noise; `stylize` starts from the photo by
# default (`init="content"`), which keeps the photo's layout from the first step. From noise
# (`init="noise"`: Gaussian noise around the mean pixel) the optimizer must
# build the content too. The same calibrated weights, the same budget, the library's L-BFGS
# (which grows its step while it has no curvature pair, notebook 6, section 4):

# %%
from_noise = numpynst.stylize(content, style, model=model, iterations=iterations, init="noise", seed=0, tol=None)
from_content = runs["lbfgs"]          # section 4's L-BFGS run: the same weights and budget, init="content"
for label, r in [("content init", from_content), ("noise init", from_noise)]:
    h = r.history
    print(f"{label}: J {h['J'][0]:.4g} (content {h['content'][0]:.3g}, style {h['style'][0]:.3g}, "
          f"TV {h['tv'][0]:.3g}) -> {r.J_final:.4g} (content {h['content'][-1]:.3g}, "
          f"style {h['style'][-1]:.3g}, TV {h['tv'][-1]:.3g}), {r.seconds:.0f} s")
print(f"noise-init J / content-init J after {iterations} iterations: {from_noise.J_final / from_content.J_final:.2f}")
apart = float(np.abs(from_noise.image.astype(float) - from_content.image).mean())
print(f"mean |noise-init result - content-init result| = {apart:.1f} grey levels")
hn, hc = from_noise.history, from_content.history
record("noise_start_ratio", hn["J"][0] / hc["J"][0])
record("noise_content0", hn["content"][0])
record("noise_style0", hn["style"][0])
record("noise_R0", hn["tv"][0])
record("noise_end_ratio", from_noise.J_final / from_content.J_final)
record("noise_fell", from_noise.J_final / hn["J"][0])
record("apart", apart)
if not FAST:   # fast mode's 4 iterations have only started
    claim("noise_fell_claim", from_noise.J_final / from_noise.history["J"][0], None, 0.5)

fig = plt.figure(figsize=(14, 3.4))
ax = fig.add_subplot(1, 4, 1)
for label, r in [("content init", from_content), ("noise init", from_noise)]:
    ax.plot(np.arange(1, len(r.history["J"]) + 1), r.history["J"], label=label)
ax.set_yscale("log")
ax.set_xlabel("evaluations of J")
ax.set_ylabel("J (calibrated)")
ax.legend()
for k, (title, img) in enumerate([("content", content), ("from the photo", from_content.image),
                                  ("from noise", from_noise.image)], start=2):
    a = fig.add_subplot(1, 4, k)
    a.imshow(img)
    a.set_title(title)
    a.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# From noise, $J$ starts {{noise_start_ratio:.1f}} times higher: the content term is a relative
# error of {{noise_content0:.2f}} (1 would be blank activations), the style term
# {{noise_style0:.2f}}, and the noise is {{noise_R0:.0f}} times as rough as the photo. In the same
# {{iterations}} iterations L-BFGS brings it to {{noise_fell:.1%}} of its start, {{noise_end_ratio:.2f}}
# times the content-init run's $J$. That is a snapshot, not convergence: whether the two runs would
# end at the same cost, or in different minima, this budget does not say (exercise 1 runs more
# seeds). The two pictures share the cat's layout and the painting's texture — the layout comes
# from `block4_conv2`'s activations alone in the noise run — but not the pixels: they are
# {{apart:.0f}} grey levels apart on average, the strokes falling in different places and the
# eyes differing most visibly.
#
# ## 8. Which layer carries the content
#
# Notebook 5 reconstructed the photo from one layer's activations: shallow layers keep the
# pixels, deep layers only the arrangement of parts. The content layer in $J$ does the same job.
# Three choices, everything else at the defaults (the middle panel is the $\beta = {{beta_default:g}}$ run of
# section 5):

# %%
content_layers = ["block2_conv2", "block4_conv2", "block5_conv2"]
by_layer = {layer: by_beta[DEFAULT_BETA] if layer == "block4_conv2" else
            numpynst.stylize(content, style, model=model, iterations=short, content_layer=layer, tol=None)
            for layer in content_layers}
fig, axes = plt.subplots(1, len(content_layers) + 1, figsize=(14, 3.1))
axes[0].imshow(content)
axes[0].set_title("content")
for ax, layer in zip(axes[1:], content_layers):
    r = by_layer[layer]
    print(f"content layer {layer}: |result - photo| {from_photo(r.image):5.1f} grey levels, "
          f"content {r.history['content'][-1]:.3g}, style {r.history['style'][-1]:.3g}")
    ax.imshow(r.image)
    ax.set_title(f"content layer {layer}:\n{from_photo(r.image):.1f} from the photo", fontsize=9)
for ax in axes:
    ax.axis("off")
plt.show()
pairwise = []
for i, l1 in enumerate(content_layers):
    for l2 in content_layers[i + 1:]:
        apart = float(np.abs(by_layer[l1].image.astype(float) - by_layer[l2].image).mean())
        print(f"mean |{l1} result - {l2} result| = {apart:.1f} grey levels")
        pairwise.append(apart)
claim("layers_apart", min(pairwise), 5.0, None, fast=None)
final_style = {layer: by_layer[layer].history["style"][-1] for layer in content_layers}
moved = {layer: from_photo(by_layer[layer].image) for layer in content_layers}
for layer in content_layers:
    record(f"style_{layer.split('_')[0]}", final_style[layer])
    record(f"moved_{layer.split('_')[0]}", moved[layer])
record("highest_style", max(final_style, key=final_style.get))
record("lowest_style", min(final_style, key=final_style.get))
record("most_moved", max(moved, key=moved.get))

# %% [markdown]
# The three pictures differ (the pairwise distances are printed: at least {{layers_apart:.0f}}
# grey levels). With `block2_conv2` the content term asks for the photo's local colours and fine
# edges: the eyes and the nose keep more of their own edges, and the painting's fine grain is laid
# over the whole picture.
# With `block4_conv2` (the default, as in Gatys et al.) the outlines stay while colours and surface
# become the painting's. With `block5_conv2` only the coarse arrangement is asked for. The style
# term ends highest with `{{highest_style}}` ({{style_block2:.3f}}, {{style_block4:.3f}},
# {{style_block5:.3f}} from shallow to deep) and lowest with `{{lowest_style}}`: a shallow content
# layer does not crowd the style out — its demands (local colours and edges) are ones that a
# texture can meet at the same time. The mean distance from the photo ({{moved_block2:.1f}},
# {{moved_block4:.1f}}, {{moved_block5:.1f}} grey levels) is largest for `{{most_moved}}` here: a
# pixel distance measures how much the surface changed, not how much of the photo is still
# recognisable.
#
# ## 9. Keeping the photo's colours
#
# Often one wants the painting's *strokes* but the photo's *colours*. Two ways, both built on a
# luminance/chroma space (YIQ: $Y$ the brightness, $I, Q$ the colour):
#
# * **Luminance-only transfer** (Gatys, Bethge, Hertzmann & Shechtman 2016): run the
#   *optimization* on luminance images — the photo's $Y$ and the painting's $Y$ (matched to the
#   photo's mean and spread), each copied into three channels — and then put the photo's $I, Q$
#   back. The style term never sees the painting's colours at all.
# * **Colour swap after the run**: stylize the colour images as usual, then keep the result's $Y$
#   and replace its $I, Q$ by the photo's:
#
# $$
# [Y, I, Q]_\text{out} = [\,Y_\text{stylized},\; I_\text{content},\; Q_\text{content}\,].
# $$
#
# **`numpynst` does the second**: `numpynst.image.preserve_color(content, stylized)` is the swap,
# and `stylize(..., preserve_color=True)` applies it to the finished image; the run itself is the
# usual colour run. It is cheaper (nothing changes in the optimization) but not the same picture:
# the painting's colours did shape the strokes that the luminance keeps. Check: the output's chroma
# is the photo's and its luminance the stylized image's, up to rounding to 8 bits and clipping to
# the RGB gamut (mean differences asserted below {{d_chroma.hi:g}} grey level):

# %%
stylized = runs["lbfgs"].image
kept = preserve_color(content, stylized)
yiq_out, yiq_content, yiq_stylized = rgb_to_yiq(kept), rgb_to_yiq(content), rgb_to_yiq(stylized)
d_chroma = np.abs(yiq_out[..., 1:] - yiq_content[..., 1:]).mean()
d_luma = np.abs(yiq_out[..., 0] - yiq_stylized[..., 0]).mean()
print(f"mean |chroma - content chroma| = {d_chroma:.2f}, mean |luminance - stylized luminance| = {d_luma:.2f}  (grey levels)")
claim("d_chroma", d_chroma, 0, 1.0)
claim("d_luma", d_luma, 0, 1.0)

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
# * $J = \alpha J_\text{content} + \beta \sum_l \lambda_l J^{[l]}_\text{style} + \gamma R$;
#   its value is the sum of the separately computed costs, and its pixel gradient is one VGG
#   backward pass seeded at every layer involved, plus $R$'s gradient — checked through VGG19 in
#   float64. $R$ is a sum of squared differences, a quadratic penalty, not total variation proper
#   (the sum of absolute differences), whatever the option is called.
# * `stylize` calibrates the weights: each term divided by its value at $A = 0$ ($R$ by the
#   photo's), so the style weight moves the picture from photo to painting over its range and the
#   smoothness weight from grainy to blurry.
# * Per evaluation of $J$, L-BFGS got furthest in this budget ({{left_lbfgs:.1%}} of the start),
#   then Adam ({{left_adam:.1%}}), then gradient descent ({{left_gd:.1%}}). From noise the same
#   budget reached {{noise_end_ratio:.2f}} times the photo-start's cost, with different pixels.
# * The content layer sets how much of the photo is kept: shallow keeps the surface, deep only
#   the layout. `preserve_color` keeps the photo's colours by swapping its chroma into the result.
#
# Next: [notebook 9](09_coarse_to_fine.ipynb) runs the same objective from coarse to fine scales.
#
# Next: [notebook 10](10_gpu_with_cupy.ipynb) runs the same code on a GPU.
#
# ## Exercises
#
# 1. Run the noise start with `seed=1` and `seed=2`. How different are the results, and their
#    final $J$? What does that say about the minima of $J$?
# 2. With the content layer at `block5_conv2`, raise the content weight `alpha` (range 0..10).
#    Can a deep content layer with a large weight keep as much of the photo as `block2_conv2`?
# 3. Find the largest stable learning rate for gradient descent on this pair (try a few values
#    around `DEFAULT_GD_LR`). What happens just above it?
# 4. Blend two styles: `numpynst.stylize(content, [style_a, style_b], style_blend=[0.7, 0.3])`.
#    The targets are blended Gram matrices — why does that make sense (notebook 6)?
