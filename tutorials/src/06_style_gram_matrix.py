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
# checks them, shows why an image without activations is a trap for the optimizer, and then
# synthesizes textures from a style image alone, showing what each layer contributes and what the
# per-layer weights $\lambda_l$ do.

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
from numpynst.gradcheck import check_directional, numerical_gradient, numerical_gradient_array, rel_error
from numpynst.image import load_image, sample_path
from numpynst.losses import gram_backward, gram_matrix, style_layer_cost
from numpynst.optim import LBFGS, minimize
from numpynst.vgg import VGG, deprocess, preprocess

rng = np.random.default_rng(0)
record("eps32", float(np.finfo(np.float32).eps))
record("eps64", float(np.finfo(np.float64).eps))
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
style = load_image(sample_path("ihc"), size=style_size)        # the demo painting: "ihc"
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
# For one layer, with $G^{(S)}$ the style image's Gram matrix and $G^{(X)}$ the generated image's:
#
# $$
# J^{[l]}_\text{style}(S, X) = \frac{1}{(2\, n_H n_W n_C)^2} \sum_{k,k'} \left(G^{(S)}_{kk'} - G^{(X)}_{kk'}\right)^2 ,
# \qquad
# J_\text{style} = \sum_l \lambda_l\, J^{[l]}_\text{style}.
# $$
#
# (Gram entries sum over $n_H n_W$ pixels, hence the normalization; $\lambda_l$ weighs the layers.
# Where each constant comes from — the course notes, this library, Gatys et al. — is the table in
# [notebook 5](05_content_cost.ipynb), section 4.)
#
# **Gradient, in two steps.** Write $c = 1/(2 n_H n_W n_C)^2$ and $D = G^{(X)} - G^{(S)}$.
#
# 1. Each term depends on one entry of $G^{(X)}$: $\;\partial J/\partial G^{(X)} = 2 c D$.
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
# \frac{\partial J^{[l]}_\text{style}}{\partial A} = 4c\, A\, \left(G^{(X)} - G^{(S)}\right)
# = \frac{A\,(G^{(X)} - G^{(S)})}{(n_H n_W n_C)^2},
# $$
#
# reshaped back to $n_H \times n_W \times n_C$. `numpynst.losses.gram_backward(dG, a)` is step 2;
# `style_layer_cost(G_S, a_G)` returns `(J, dJ/da_G)`.
#
# **Checks** in float64 (each asserted between {{err_gram.lo:.0e}} and {{err_gram.hi:.0e}}; the closed
# form to rounding, below {{closed_err.hi:.0e}}): the Gram backward with a *non-symmetric*
# upstream gradient (so both terms of step 2 are exercised), the style cost's gradient against
# central differences, and the closed form above.

# %%
a = rng.standard_normal((1, 4, 5, 3))
dG = rng.standard_normal((3, 3))                                   # deliberately not symmetric
err_gram = rel_error(gram_backward(dG, a), numerical_gradient_array(gram_matrix, a, dG))
print(f"Gram matrix backward:     relative error {err_gram:.1e}")

G_target = gram_matrix(rng.standard_normal((1, 4, 5, 3)))
J, dJ = style_layer_cost(G_target, a)
num = numerical_gradient(lambda z: style_layer_cost(G_target, z)[0], a.copy())
err_style = rel_error(dJ, num)
print(f"style cost gradient:      relative error {err_style:.1e}")

nH, nW, nC = a.shape[1:]
A = a.reshape(-1, nC)
closed = (A @ (A.T @ A - G_target) / (nH * nW * nC) ** 2).reshape(a.shape)
J_formula = np.sum((G_target - A.T @ A) ** 2) / (2 * nH * nW * nC) ** 2
print(f"closed form vs library:   gradient {rel_error(dJ, closed):.1e}, J {abs(float(J) - J_formula) / J_formula:.1e}")
claim("err_gram", err_gram, 1e-13, 1e-8)
claim("err_style", err_style, 1e-13, 1e-8)
claim("closed_err", max(rel_error(dJ, closed), abs(float(J) - J_formula) / J_formula), 0, 1e-13)

# %% [markdown]
# **Why float64.** A central difference has two errors. *Truncation*: $(J(a+h) - J(a-h))/2h$
# differs from $J'$ by about $\tfrac{h^2}{6} J'''$, which shrinks with $h$. *Rounding*: $J$ itself
# is computed only to about $\varepsilon |J|$ ($\varepsilon$, the machine epsilon, is
# {{eps64:.1e}} in float64 and {{eps32:.1e}} in float32), and the difference divides
# that by $2h$, so it *grows* as $h$ shrinks. Both, for the style cost above, at four steps $h$:

# %%
a32, G32 = a.astype(np.float32), G_target.astype(np.float32)
dJ32 = style_layer_cost(G32, a32)[1]
steps = [1e-1, 1e-2, 1e-3, 1e-4]
err64, err32 = {}, {}
print("     h   float64   float32")
for h in steps:
    err64[h] = rel_error(dJ, numerical_gradient(lambda z: style_layer_cost(G_target, z)[0], a.copy(), h=h))
    err32[h] = rel_error(dJ32, numerical_gradient(lambda z: style_layer_cost(G32, z)[0], a32.copy(), h=h))
    print(f"{h:6.0e}   {err64[h]:.1e}   {err32[h]:.1e}")
claim("trunc64", min(err64[h] / err64[h / 10] for h in steps[:-1]), 50, 200)   # float64: ~h^2 all the way
for h in steps:
    record(f"e32_{-int(np.log10(h))}", err32[h])
claim("round32_1", err32[1e-3] / err32[1e-2], 3, None)          # below h = 1e-2 rounding wins
claim("round32_2", err32[1e-4] / err32[1e-3], 3, None)
claim("floor32", min(err32.values()), 1e-6, 1e-4)

# %% [markdown]
# float64 follows the truncation error — at least {{trunc64:.0f}} times smaller for every 10 times
# smaller $h$ here (asserted: 50 to 200, where $h^2$ gives 100) — all the way down (the
# $h = 10^{-5}$ of the check above gives {{err_style:.0e}}). float32 follows it only to
# $h = 10^{-2}$, where it reaches {{e32_2:.1e}}; below that, rounding takes over and the error
# grows with every tenfold smaller step ({{round32_1:.0f}} and {{round32_2:.0f}} times): {{e32_3:.1e}}
# at $h = 10^{-3}$, {{e32_4:.1e}} at $h = 10^{-4}$. So a float32 check of this gradient cannot get
# below about {{floor32:.0e}}: enough to catch a wrong formula (an error of order 1), not to show
# that a right one is right to the last digits. Every check in these notebooks is done in float64.

# %% [markdown]
# Through the network to the pixels: the style cost of several layers is one backward pass
# seeded at every style layer at once (`VGG.backward` adds the gradients where the paths meet).
# Directional check through VGG19 in float64, step $h = 10^{-4}$ as in notebook 5. Expect at most
# {{dir_style.hi:.0e}} (this run: {{dir_style:.1e}}) — not the $10^{-10}$ above: the error is measured relative to the directional
# derivative $D = \langle \nabla J, v\rangle$, which along a random direction $v$ is much smaller
# than $\|\nabla J\|$ (notebook 5, section 2, takes this check apart direction by direction):
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
xs = preprocess(load_image(sample_path("ihc"), size=32), dtype=np.float64)
check_layers = {"block1_conv1": 0.5, "block2_conv1": 0.5}
targets64 = {k: gram_matrix(v) for k, v in model64.forward(xs, list(check_layers), keep_cache=False).items()}
fun64 = style_objective(model64, targets64, check_layers)
x_probe = preprocess(load_image(sample_path("chelsea"), size=48), dtype=np.float64)[:, :32, :32]
J, dx = fun64(x_probe)
err = check_directional(lambda z: fun64(z)[0], x_probe, dx, h=1e-4)
print(f"style cost through VGG19 (2 layers): directional check {err:.1e}")
claim("dir_style", err, None, 1e-6)


# %% [markdown]
# ## 3. The blank activation $A = 0$ is a stationary point
#
# Leave out the constant $c$ and look at one layer's style cost as a function of the activation
# matrix alone, $f(A) = \sum_{k,k'} \big(G^{(S)} - A^\top A\big)_{kk'}^2 = \|D\|^2$ with the
# symmetric $D = G^{(S)} - A^\top A$. A small change $dA$ changes $A^\top A$ by
# $dA^\top A + A^\top dA$, so, with $\langle X, Y\rangle = \operatorname{tr}(X^\top Y)$,
#
# $$
# df = 2\langle D, dD\rangle = -2\langle D,\, dA^\top A\rangle - 2\langle D,\, A^\top dA\rangle
#    = -4\,\langle A D,\, dA\rangle
# \quad\Longrightarrow\quad
# \nabla f(A) = -4\,A\,\big(G^{(S)} - A^\top A\big)
# $$
#
# (both traces are $\operatorname{tr}(A D\, dA^\top)$ because $D$ is symmetric). This is
# section 2's $4cA(G^{(X)} - G^{(S)})$ without the $c$.
#
# The gradient starts with a factor $A$: **at $A = 0$ it is exactly zero**, whatever the target.
# And $A = 0$ is not a minimum but the top of a hill. Along any direction $V$,
#
# $$
# f(\epsilon V) = \|G^{(S)}\|^2 - 2\epsilon^2\,\langle G^{(S)}, V^\top V\rangle + \epsilon^4\,\|V^\top V\|^2,
# \qquad \langle G^{(S)}, V^\top V\rangle = \sum_p v_p^\top G^{(S)} v_p \ \ge 0
# $$
#
# ($v_p$ the rows of $V$; $G^{(S)}$ is positive semi-definite), so the cost *falls* quadratically
# in every direction that touches the style's channels. For an optimizer this means:
#
# * **from exactly $A = 0$**, gradient descent never moves: the gradient is 0, and so is each step;
# * **from small noise** $A_0 = \epsilon V$, the gradient is $\approx -4 A G^{(S)}$, of size
#   $\epsilon$. A step of size $\eta$ multiplies $A$ by about $I + 4\eta G^{(S)}$, so $A$ grows
#   geometrically, and the time to leave the hilltop grows like $\log(1/\epsilon)$: a plateau,
#   then a fall. Each factor 1000 in $\epsilon$ adds about $\ln 1000 / \ln(1 + 4\eta\lambda_\max)$
#   steps, $\lambda_\max$ the largest eigenvalue of $G^{(S)}$;
# * near the top, the cost curves **downwards** along $-\nabla f$ (negative curvature) — which
#   trips up L-BFGS, as section 4 shows.
#
# A toy with three channels (the target is the Gram matrix of 64 random colours) shows all three:

# %%
A_target = rng.uniform(0.0, 1.0, (64, 3)) * np.array([1.0, 0.6, 0.3])     # 64 "pixels", 3 channels
G_toy = A_target.T @ A_target


def f_toy(A):
    return float(np.sum((G_toy - A.T @ A) ** 2))


def grad_toy(A):
    return -4.0 * A @ (G_toy - A.T @ A)


A_probe = rng.standard_normal((64, 3))
err_toy = rel_error(grad_toy(A_probe), numerical_gradient(f_toy, A_probe.copy()))
zero = np.zeros((64, 3))
print(f"-4 A (G_S - A^T A) vs central differences: relative error {err_toy:.1e}")
print(f"at A = 0: f = {f_toy(zero):.6g} = ||G_S||^2 = {np.sum(G_toy ** 2):.6g}, "
      f"max |gradient| = {np.abs(grad_toy(zero)).max()}")
V = rng.standard_normal((64, 3))
for eps in [1e-3, 1e-2, 1e-1]:
    drop, predicted = f_toy(zero) - f_toy(eps * V), 2 * eps ** 2 * np.sum(G_toy * (V.T @ V))
    print(f"  eps = {eps:5g}: f(0) - f(eps V) = {drop:.4e},   2 eps^2 <G_S, V^T V> = {predicted:.4e}")
    record(f"quartic_{-int(np.log10(eps))}", abs(drop - predicted) / predicted)
assert err_toy < 1e-8 and not grad_toy(zero).any()

lam_max = np.linalg.eigvalsh(G_toy).max()
eta = 0.025 / lam_max                       # step: 4 eta lam_max = 0.1, well inside stability
starts = [0.0, 1e-6, 1e-3, 1e-1]
curves, plateau = {}, {}
for eps in starts:
    A = eps * V
    curve = [f_toy(A)]
    for _ in range(300):
        A = A - eta * grad_toy(A)
        curve.append(f_toy(A))
    curves[eps] = np.array(curve)
    below = np.flatnonzero(curves[eps] < 0.5 * f_toy(zero))
    plateau[eps] = int(below[0]) if below.size else None
    print(f"start eps = {eps:5g}: f falls below half of f(0) after {plateau[eps]} steps")
per_1000 = np.log(1e3) / np.log(1 + 4 * eta * lam_max)
print(f"predicted extra steps per factor 1000 in eps: {per_1000:.0f};  measured 1e-6 vs 1e-3: "
      f"{plateau[1e-6] - plateau[1e-3]}")
record("per_1000", per_1000)
record("plateau_extra", plateau[1e-6] - plateau[1e-3])
assert plateau[0.0] is None and np.all(curves[0.0] == f_toy(zero))     # from 0: never moves
assert plateau[1e-6] > plateau[1e-3] > plateau[1e-1]
assert abs((plateau[1e-6] - plateau[1e-3]) - per_1000) < 0.15 * per_1000

plt.figure(figsize=(6, 3.2))
for eps in starts:
    plt.plot(curves[eps] / f_toy(zero), label=f"start {eps:g}" + (" (A = 0)" if eps == 0 else " x noise"))
plt.yscale("log")
plt.xlabel("gradient descent step")
plt.ylabel("f / f(0)")
plt.legend(fontsize=8)
plt.title("toy style cost from A = 0 and from noise of three sizes", fontsize=10)
plt.show()

# %% [markdown]
# The gradient formula checks, the gradient at $A = 0$ is exactly zero, and the drop from the top
# is $2\epsilon^2\langle G^{(S)}, V^\top V\rangle$ to leading order (the $\epsilon^4$ term changes
# it by {{quartic_2:.1e}} of itself at $\epsilon = 0.01$ and by {{quartic_1:.1%}} at $\epsilon = 0.1$). From $A = 0$ the curve is flat forever; from noise it sits on a plateau
# whose length grows by the predicted number of steps per factor 1000 in $\epsilon$
# ({{per_1000:.0f}} predicted, {{plateau_extra}} measured), then falls.
# (The later, shallower shoulders are the weaker eigen-directions of $G^{(S)}$, which grow more
# slowly, $\lambda$ by $\lambda$.)
#
# In VGG the variable is the image, not $A$, and no image gives blank activations $A = 0$ (a black
# image, all pixels 0, does not: the biases
# and the mean pixel see to that). But section 4's noise start is close to the hilltop all the same.
#
# ## 4. Texture synthesis from a style image alone
#
# Minimize $J_\text{style}$ alone, starting from noise: the result has the style image's channel
# correlations at the chosen layers and nothing else — a **texture**. The generated image has the
# style image's size here; with another size the target Gram matrices would have to be rescaled by
# the ratio of pixel counts (they sum over pixels), which `numpynst.transfer` does.
#
# First, where the noise start sits. The optimizer's start is Gaussian noise of 10 grey levels
# around the mean pixel. Its activations, and each layer's style cost there against the cost at
# $A = 0$, $J^{[l]}(0) = c\,\|G^{(S)}\|^2$:

# %%
size, iterations = (48, 5) if FAST else (96, 100)
style_rgb = load_image(sample_path("ihc"), size=size)
style_rgb = style_rgb[: style_rgb.shape[0] // 16 * 16, : style_rgb.shape[1] // 16 * 16]
x_S = model.preprocess(style_rgb)
all_layers = ["block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1"]
style_acts = model.forward(x_S, all_layers, keep_cache=False)
style_grams = {k: gram_matrix(v) for k, v in style_acts.items()}


def noise_start(seed=0):
    return np.random.default_rng(seed).normal(0.0, 10.0, size=x_S.shape).astype(np.float32)


acts_noise = model.forward(noise_start(), all_layers, keep_cache=False)
J_start = {k: float(style_layer_cost(style_grams[k], acts_noise[k])[0]) for k in all_layers}
ratios, sizes = [], []
for k in all_layers:
    J_zero = float(style_layer_cost(style_grams[k], np.zeros_like(acts_noise[k]))[0])
    size_ratio = np.linalg.norm(acts_noise[k]) / np.linalg.norm(style_acts[k])
    print(f"{k}: |a(noise)| / |a(style)| = {size_ratio:.2f},  J at the noise start {J_start[k]:.3g} "
          f"= {J_start[k] / J_zero:.1%} of J at A = 0")
    ratios.append(J_start[k] / J_zero)
    sizes.append(size_ratio)
claim("shoulder_min", min(ratios), 0.8, 1.0)
claim("shoulder_max", max(ratios), 0.8, 1.0)
record("act_ratio_min", min(sizes))
record("act_ratio_max", max(sizes))

# %% [markdown]
# The noise image's activations are {{act_ratio_min:.2f}} to {{act_ratio_max:.2f}} of the style
# image's (in norm), and every layer's cost is between {{shoulder_min:.1%}} and {{shoulder_max:.1%}}
# of its value at $A = 0$: the start is on the hilltop's shoulder. Along
# $-\nabla J$ the cost should then fall *faster* than its tangent line predicts. With only
# `block1_conv1`, for steps that move the largest pixel by 1, 10 and 30 grey levels:

# %%
def style_objective_flat(weights, shape):
    """The flat fun(x) -> (J, dJ/dx) of sum_l weights[l] J_style^l that numpynst.optim minimizes."""
    fun = style_objective(model, {k: style_grams[k] for k in weights}, weights)

    def flat_fun(x_flat):
        J, dx = fun(x_flat.reshape(shape))
        return J, dx.reshape(-1)
    return flat_fun


fun1 = style_objective_flat({"block1_conv1": 1.0}, x_S.shape)
x0 = noise_start().reshape(-1)
J0, g0 = fun1(x0)
g0_64 = g0.astype(np.float64)
for move in [1.0, 10.0, 30.0]:
    t = move / np.abs(g0).max()
    Jt, gt = fun1(x0 - t * g0)
    tangent = float(J0) - t * float(g0_64 @ g0_64)
    s_dot_y = float((-t * g0_64) @ (gt - g0).astype(np.float64))
    print(f"move {move:4g}: J {float(Jt):.7g}, tangent line {tangent:.7g}, below it by "
          f"{tangent - float(Jt):8.3g};  s.y = {s_dot_y:.3g}")
    assert float(Jt) < tangent and s_dot_y < 0
probe = LBFGS()
record("n_pixels", x0.size)
record("mean_move", 1.0 / x0.size)                   # the bootstrap step moves x by 1 in the 1-norm
record("growth", probe.growth)
record("memory", probe.history)

# %% [markdown]
# Below the tangent, and $s \cdot y < 0$ for the step $s = -t\nabla J$ and the change of gradient
# $y$: negative curvature. L-BFGS builds its model of the inverse Hessian only from pairs with
# $s \cdot y > 0$, a positive curvature (precisely: $\cos(s, y)$ above a small threshold; see
# `numpynst.optim.LBFGS`'s docstring), so here it rejects every pair. Until it stores one, its
# step is the bootstrap $-g/\|g\|_1$, whose 1-norm is 1: the $n = {{n_pixels}}$ pixel values move
# by $1/n = {{mean_move:.1e}}$ grey levels on average. What happens next depends on the line search:
#
# * one that only **backtracks** (Armijo: accept the first of $t = 1, \tfrac12, \dots$ that lowers
#   $J$ enough) accepts $t = 1$ at once and starts the next iteration at $t = 1$ again: it stays on
#   the shoulder for good, a step of $1/n$ at a time;
# * a **strong-Wolfe** search (SciPy's, PyTorch's `line_search_fn="strong_wolfe"`) also demands
#   that the slope has flattened, $|g(x + td)^\top d| \le c_2 |g^\top d|$; on the shoulder the
#   slope gets *steeper*, so it extrapolates, multiplying $t$ within the iteration until the
#   slope turns, and leaves;
# * the library's L-BFGS takes one evaluation per step (so that no value has to cross from a GPU to
#   the host) and cannot search within an iteration; instead it **grows** the step, by
#   {{growth:g}} per accepted step, while no pair is stored, so within about ten steps it moves
#   pixels by grey levels, off the shoulder, where the curvature is positive and pairs are stored.
#
# Notebook 7 derives the three and runs them side by side. Here the first and the last, on
# `block1_conv1` alone (`LBFGS(growth=1.0)` switches the growth off and is the backtracking
# variant), with the number of curvature pairs each holds at the end (at most {{memory}}):

# %%
def synthesize(weights, iterations, seed=0, optimizer=None):
    """Minimize sum_l weights[l] J_style^l from noise; returns (RGB image, J per iteration)."""
    flat_fun = style_objective_flat(weights, x_S.shape)
    x0 = noise_start(seed).reshape(-1)
    history = [float(flat_fun(x0)[0])]
    result = minimize(flat_fun, x0, optimizer or LBFGS(), iterations,
                      callback=lambda k, x, f, g: history.append(float(f)))
    return deprocess(result.x.reshape(x_S.shape)), history


t0 = time.perf_counter()
optimizers = {"no growth": LBFGS(growth=1.0), "library default": LBFGS()}
block1 = {label: synthesize({"block1_conv1": 1.0}, iterations, optimizer=opt) for label, opt in optimizers.items()}
pairs = {label: int(np.count_nonzero(opt.rho > 0)) for label, opt in optimizers.items()}
style_mean = style_rgb.reshape(-1, 3).mean(axis=0)
for label, (img, hist) in block1.items():
    colour_gap = np.abs(img.reshape(-1, 3).mean(axis=0) - style_mean).max()
    print(f"L-BFGS, {label:15s}: J {hist[0]:.3g} -> {hist[-1]:.3g}, {pairs[label]} curvature pairs;  mean colour "
          f"{np.round(img.reshape(-1, 3).mean(axis=0))} vs the style's {np.round(style_mean)} "
          f"(largest gap {colour_gap:.0f} grey levels)")
print(f"two syntheses of {iterations} iterations in {time.perf_counter() - t0:.0f} s")
if not FAST:    # fast mode's 5 iterations are still growing the step
    assert block1["no growth"][1][-1] > 0.9 * block1["no growth"][1][0] and pairs["no growth"] == 0
    assert pairs["library default"] > 0
    assert block1["library default"][1][-1] < 1e-3 * block1["library default"][1][0]
gaps = {label: np.abs(img.reshape(-1, 3).mean(axis=0) - style_mean).max() for label, (img, _) in block1.items()}
claim("gap_grow", gaps["library default"], None, 25, fast=None)
claim("gap_ratio", gaps["library default"] / gaps["no growth"], None, 0.5, fast=None)
record("gap_stall", gaps["no growth"])
record("fall_orders", np.log10(block1["library default"][1][0] / block1["library default"][1][-1]))

fig = plt.figure(figsize=(15, 3.2))
ax = fig.add_subplot(1, 5, 1)
for label, (img, hist) in block1.items():
    ax.plot(np.asarray(hist) / hist[0], label=label)
ax.set_yscale("log")
ax.set_xlabel("iteration")
ax.set_ylabel("J / J(start)")
ax.legend(fontsize=8)
panels = [("style image", style_rgb), ("noise start", deprocess(noise_start())),
          ("block1_conv1, no growth", block1["no growth"][0]),
          ("block1_conv1, library L-BFGS", block1["library default"][0])]
for k, (title, img) in enumerate(panels, start=2):
    a_ = fig.add_subplot(1, 5, k)
    a_.imshow(img)
    a_.set_title(title, fontsize=10)
    a_.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# Without growth, $J$ does not move off the shoulder (no curvature pair is ever stored) and the
# picture is the noise start. With it, $J$ falls by {{fall_orders:.1f}} orders of magnitude, the
# history fills up, and the grey noise takes on the style's colours — the pale blue-grey ground and
# the brown and orange of the cells; the mean colour comes within {{gap_grow:.0f}} grey levels of
# the style's, against {{gap_stall:.0f}} for the stalled run. Only colours and small blotches: `block1_conv1`'s units see 3×3 pixels,
# so their correlations are colour and pixel-level statistics, and nothing more.
#
# Now, following Gatys et al., we add the layers `block1_conv1`, ..., `block5_conv1` one at a
# time, each set with equal weights $\lambda_l = 1/L$:

# %%
textures = {1: block1["library default"]}
t0 = time.perf_counter()
for depth in range(2, len(all_layers) + 1):
    chosen = all_layers[:depth]
    textures[depth] = synthesize({k: 1.0 / depth for k in chosen}, iterations)
print(f"{len(textures) - 1} syntheses of {iterations} iterations in {time.perf_counter() - t0:.0f} s")
for depth, (img, h) in textures.items():
    print(f"layers up to {all_layers[depth - 1]}: J {h[0]:.3g} -> {h[-1]:.3g}")
    assert h[-1] < h[0]

# Does a texture keep the style image's layout? Compare both at a coarse grid (cells of 16 x 16
# pixels, block5's spacing): the correlation of their cell-mean brightness, and the same for the
# noise start as a baseline. And how far each layer's units see, against the image's size.
from numpynst.arch import layer_table


def coarse(img, cell=16):
    y = img.astype(np.float64).mean(axis=2)
    h, w = y.shape[0] // cell, y.shape[1] // cell
    return y[: h * cell, : w * cell].reshape(h, cell, w, cell).mean(axis=(1, 3)).ravel()


def layout_corr(img, ref=style_rgb):
    return float(np.corrcoef(coarse(img), coarse(ref))[0, 1])


turned = style_rgb[::-1, ::-1]                 # the same painting upside down: its statistics, another layout
n_cells = coarse(style_rgb).size
record("n_cells", n_cells)
record("chance", 1 / np.sqrt(n_cells - 1))     # the spread of a correlation between unrelated layouts
record("self_turned", layout_corr(style_rgb, turned))

table = {layer.name: layer for layer in layer_table("vgg19")}
record("side", style_rgb.shape[0])
record("map5", style_rgb.shape[0] // table["block5_conv1"].spacing)
record("corr_noise", layout_corr(deprocess(noise_start())))
for depth, (img, _) in textures.items():
    name = all_layers[depth - 1]
    rf = table[name].spacing + 2 * table[name].reach
    record(f"corr_{depth}", layout_corr(img))
    record(f"turned_{depth}", layout_corr(img, turned))
    record(f"rf_{depth}", rf)
    print(f"layers up to {name}: receptive field {rf} px on a {style_rgb.shape[0]} px image; "
          f"layout correlation with the style image {layout_corr(img):+.2f}, with it upside down "
          f"{layout_corr(img, turned):+.2f}")
print(f"noise start: layout correlation {layout_corr(deprocess(noise_start())):+.2f}")
if not FAST:
    claim("corr_block1_alone", abs(layout_corr(textures[1][0])), 0, 2 / np.sqrt(n_cells - 1))
    claim("corr_deeper_max", max(layout_corr(textures[d][0]) for d in textures if d > 1), 2 / np.sqrt(n_cells - 1), None)

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
# Each deeper layer adds structure at a larger scale — the streaks and edges of the cells, then
# whole cell shapes and their arrangement. A Gram matrix sums over positions, so it should not know
# where anything is. But look at the figure: from `block1 .. block2` on, the textures put light and
# dark regions roughly where the painting has them. Measured on a grid of {{n_cells}} cells of
# 16 × 16 pixels (the correlation of the cells' mean brightness with the painting's; between
# unrelated layouts it scatters by about ±{{chance:.2f}}, and the noise start gives
# {{corr_noise:+.2f}}): `block1` alone {{corr_1:+.2f}}, then {{corr_2:+.2f}}, {{corr_3:+.2f}},
# {{corr_4:+.2f}}, {{corr_5:+.2f}} with each deeper layer added (the cell asserts block1 within
# twice the chance spread, and the deeper ones above it). Against the same painting upside down —
# the same statistics, another layout — the five give {{turned_1:+.2f}}, {{turned_2:+.2f}},
# {{turned_3:+.2f}}, {{turned_4:+.2f}}, {{turned_5:+.2f}}; the painting itself against its
# upside-down copy gives {{self_turned:+.2f}}, so a texture that copied the painting's layout would
# score about that there.
#
# What lets positions in is the image's size. Every layer pads its input with zeros, so a unit near
# the border responds differently from one in the middle: its activation carries its position, and
# a Gram matrix of position-carrying features does record the layout. At {{side}} pixels that is
# most units of the deep layers — a `block4_conv1` unit sees {{rf_4}} pixels and a `block5_conv1`
# unit {{rf_5}}, so every one of them sees the border — and their maps are small ({{map5}}
# positions a side at block 5), so each Gram matrix is a sum of few outer products. That explains
# the deep layers' share; that `block1 .. block2` (units of {{rf_2}} pixels) already correlates this
# much is more than the border bands alone obviously give, and one synthesis does not settle it.
# On a picture much larger than the receptive fields (the usual 512 px) most units see no border;
# notebook 9 measures the receptive fields against the image. Once `block4_conv1` is in, the
# surface turns speckled with off-colour grain: its cost dominates $J$ (next), and the pixel-level
# statistics of `block1_conv1` are left unmatched.
#
# ### The per-layer weights $\lambda_l$
#
# The per-layer costs at the start (printed in the first cell of this section) are of very
# different sizes: $J^{[l]}$ is a fourth power of activations whose typical size changes from
# layer to layer. So "equal weights" are not equal influence. With $\lambda_l = 1/5$ each, the
# layers' shares of $J$ at the start are:

# %%
for k in all_layers:
    print(f"{k}: {100 * J_start[k] / sum(J_start.values()):.3g}% of J")
top = max(all_layers, key=J_start.get)
record("top_layer", top)
record("top_share", J_start[top] / sum(J_start.values()))

# %% [markdown]
# `{{top_layer}}` carries {{top_share:.1%}} of it: raw weights between 0.01 and 0.6 (a factor 60)
# would hardly shift the balance. To make
# $\lambda_l$ mean *a share*, divide each layer's cost by its value at the start:
#
# $$
# \lambda_l = \frac{w_l}{J^{[l]}(x_0)}, \qquad \sum_l w_l = 1,
# $$
#
# so that every layer starts at $w_l$ and the $w_l$ say how the effort is split. (This is what
# `stylize`'s default *calibrated* weights do, with $J^{[l]}$ at $A = 0$ instead of at the noise
# start — {{shoulder_min:.1%}} to {{shoulder_max:.1%}} of it, as printed above. Notebook 8 uses them.) Equal shares, and two
# extremes:

# %%
shares = {"equal shares": [0.2] * 5,
          "shallow-heavy": [0.6, 0.3, 0.07, 0.02, 0.01],
          "deep-heavy": [0.01, 0.02, 0.07, 0.3, 0.6]}
t0 = time.perf_counter()
weighted = {}
for label, w in shares.items():
    weights = {k: wl / J_start[k] for k, wl in zip(all_layers, w)}
    img, hist = synthesize(weights, iterations)
    acts = model.forward(model.preprocess(img), all_layers, keep_cache=False)
    left = {k: float(style_layer_cost(style_grams[k], acts[k])[0]) / J_start[k] for k in all_layers}
    weighted[label] = img, left
    print(f"{label:14s}: J {hist[0]:.3g} -> {hist[-1]:.3g};  J_l(result) / J_l(start): "
          + ", ".join(f"{k.split('_')[0]} {v:.2g}" for k, v in left.items()))
print(f"{len(shares)} syntheses of {iterations} iterations in {time.perf_counter() - t0:.0f} s")
if not FAST:
    assert weighted["shallow-heavy"][1]["block1_conv1"] < weighted["deep-heavy"][1]["block1_conv1"]
    assert weighted["deep-heavy"][1]["block5_conv1"] < weighted["shallow-heavy"][1]["block5_conv1"]
for label, key in [("shallow-heavy", "sh"), ("deep-heavy", "dp")]:
    for k in all_layers:
        record(f"{key}_{k.split('_')[0]}", weighted[label][1][k])

fig, axes = plt.subplots(1, 5, figsize=(14, 3))
panels = [("style image", style_rgb), ("raw λ = 1/5", textures[5][0])] + \
         [(f"{label} (w = {shares[label][0]:g}..{shares[label][-1]:g})", weighted[label][0]) for label in shares]
for ax, (title, img) in zip(axes, panels):
    ax.imshow(img)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
plt.show()

# %% [markdown]
# The printed ratios say what each setting bought: how far each layer's cost fell from its start
# (the pictures are the rounded RGB results, measured again through VGG). Shallow-heavy shares
# drive `block1`'s and `block2`'s costs furthest down (to {{sh_block1:.1e}} and {{sh_block2:.1e}} of
# their start) and leave `block5`'s at {{sh_block5:.2f}}: clean colours and smooth surfaces, with
# the cell shapes coming through from the smaller shares of the deeper layers. Deep-heavy shares do
# the opposite: `block1`'s cost stays at {{dp_block1:.2f}} of its start, and the cells' shapes and
# arrangement come with a surface speckled by off-colour grain. Equal shares sit in between. The
# raw $\lambda = 1/5$ panel (Gatys' setting from the figure above, where `{{top_layer}}` carries
# {{top_share:.1%}} of $J$) looks
# like the deep-heavy one.
#
# ## Summary
#
# * The Gram matrix $G = A^\top A$ holds channel co-activations: *which features occur together*,
#   summed over all positions — so it describes style/texture and forgets layout (it is exactly
#   invariant to shuffling the positions of a feature map; only features that themselves carry
#   their position, as deep units that see the image border do, bring layout back).
# * $J^{[l]}_\text{style} = \frac{1}{(2 n_H n_W n_C)^2}\|G^{(S)} - G^{(X)}\|^2$ with
#   $\partial J/\partial A = A (G^{(X)} - G^{(S)}) / (n_H n_W n_C)^2$; through a Gram matrix,
#   $\partial J/\partial A = A(\bar G + \bar G^\top)$. All checked to {{err_style:.0e}} in float64;
#   float32 central differences cannot do better than {{floor32:.0e}} here.
# * $A = 0$ is a stationary point of the style cost — a hilltop, not a minimum: from exactly 0
#   nothing moves, from small noise the descent first sits on a plateau. A noise image is near
#   that top, where the cost curves downwards; the library's L-BFGS grows its step until it finds
#   positive curvature, and then synthesizes the texture.
# * Matching Gram matrices from noise synthesizes textures; deeper layers add larger-scale
#   structure; the weights $\lambda_l$ move the balance between fine and coarse once they are
#   read as shares of each layer's starting cost.
#
# Next: [notebook 7](07_optimizers.ipynb) takes the optimizers apart (gradient descent, Adam, L-BFGS and
# its line searches), and [notebook 8](08_style_transfer.ipynb) adds the content cost back: style transfer.
#
# ## Exercises
#
# 1. Show that $G$ is symmetric positive semi-definite. What does a zero eigenvalue mean for the
#    channels?
# 2. The "mean activation" per channel is a simpler position-free statistic. Synthesize with a cost
#    on channel means only (derive its gradient). Is $A = 0$ a stationary point of that cost?
#    What is missing from the result?
# 3. In the toy, start gradient descent from $\epsilon V$ with $V$ orthogonal to the top
#    eigenvector of $G^{(S)}$ (project it out). Which direction does $A$ grow in, and how fast?
# 4. Synthesize with a style image twice the size of the generated one, without rescaling the target
#    Gram matrices, and then with the rescaling by the pixel-count ratio. What changes?
# 5. Use `VGG.from_h5(pooling="avg")` for the synthesis. Compare with the max-pooling result.
