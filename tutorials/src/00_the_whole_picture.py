# Source of tutorials/00_the_whole_picture.ipynb (build with: python tutorials/_build.py)

# %% [markdown]
# # 0 · The whole picture: one cost, one update, and where each piece is derived
#
# **What we are after.** Take a photo and a painting, and make a new image that shows *what* the
# photo shows, painted the way the painting is painted. Gatys, Ecker & Bethge (2015) turned this
# into an optimisation problem over the pixels of the new image, and the twelve notebooks that
# follow build every piece of it from scratch. This one shows the result first, then the one
# formula behind it, then a map: which notebook derives which symbol, with a table of the symbols
# (each letter means one thing throughout the series). It uses a small image and few iterations
# (with `numpynst.stylize`'s default settings otherwise); section 1 prints what that costs.

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
from numpynst.image import load_image, sample_path
from numpynst.vgg import VGG

record("eps32", float(np.finfo(np.float32).eps))   # the machine epsilons the series quotes
record("eps64", float(np.finfo(np.float64).eps))
print("fast mode" if FAST else "full mode")

# %% [markdown]
# ## 1. The result first
#
# The bundled demo pair — a photo of a cat, and as the style Van Gogh's *The Starry Night* (a
# crop; the painting is in the public domain) — through `numpynst.stylize`, everything at its defaults except the
# size ({{size}} pixels on the long side) and the number of iterations ({{iterations}}). On the
# machine that made the stored run (2 CPU cores, shared with other jobs, so take the time as an
# order of magnitude) the call took {{seconds:.0f}} s, {{per_iteration:.2f}} s per iteration
# (model loading and the calibration included, so slightly more than the iterations alone).

# %%
size, iterations = (64, 5) if FAST else (128, 40)
content, style = load_image(sample_path("content")), load_image(sample_path("style"))
t0 = time.perf_counter()
result = numpynst.stylize(content, style, size=size, iterations=iterations)
seconds = time.perf_counter() - t0
J = result.history["J"]
record("size", size)
record("iterations", iterations)
record("seconds", seconds)
record("per_iteration", seconds / result.iterations)
print(f"{result.iterations} iterations in {seconds:.1f} s; J fell from {J[0]:.4g} to {min(J):.4g} "
      f"({min(J) / J[0]:.1%} of the start); stopped: {result.stopped}")
assert min(J) < J[0]

fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
for ax, img, title in zip(axes, [content, style, result.image], ["content C (photo)", "style S (The Starry Night)",
                                                                  f"generated X ({result.iterations} iterations)"]):
    ax.imshow(img)
    ax.set_title(title)
    ax.axis("off")
plt.show()

# %% [markdown]
# ## 2. The one formula
#
# The generated image $X$ (its pixels, preprocessed: notebook 4) is the only unknown. It should be
# close to the photo $C$ in *content* and to the style image $S$ in *style*, and both are measured
# inside VGG19, a network trained to recognise objects:
#
# $$
# J(X) = \alpha\, J_\text{content}(C, X) + \beta\, J_\text{style}(S, X)
# \;\big(+\; \gamma\, R(X)\big)
# $$
#
# * $J_\text{content}$ compares VGG's activations $a^{[l]}$ of $C$ and $X$ at one deep layer
#   (`block4_conv2` by default): same features in the same places.
# * $J_\text{style} = \sum_l \lambda_l J^{[l]}_\text{style}$ compares, at five layers, **Gram
#   matrices**. Write one layer's activation, of shape $n_H \times n_W \times n_C$, as a matrix
#   $A^{[l]}$ with one row per position ($n_H n_W$ rows) and one column per channel ($n_C$
#   columns); its Gram matrix $G^{[l]} = A^{[l]\top} A^{[l]}$ ($n_C \times n_C$) says which
#   features occur together, wherever they are.
# * $\alpha$, $\beta$ weigh the two, and $\gamma$ a smoothness term $R$: the sum of squared
#   differences of neighbouring pixels (the notes call it "total variation", but total variation
#   proper sums absolute differences; notebook 8 shows both). `stylize` divides each term by a
#   scale measured once from the targets: the content and style terms by their value at a blank
#   image ($A = 0$), the smoothness term by the photo's own. Each term is then a relative error (1
#   for a blank image, 0 at its target), so the default weights mean the same for any pair of
#   images (notebook 8, section 3).
#
# **The update.** Minimise $J$ by moving the pixels against the gradient,
#
# $$
# X \;:=\; X - \eta\, \frac{\partial J}{\partial X},
# $$
#
# where $\partial J / \partial X$ is one backward pass through VGG (notebooks 2–5). Here it is,
# literally, for ten steps, with `numpynst.Objective` (the notes' $J$, not divided by any scale)
# giving $J$ and $\partial J/\partial X$. The step size $\eta$: we take the one for which the
# linear approximation $J(X - \eta \nabla J) \approx J - \eta \lVert\nabla J\rVert^2$ predicts a
# 10 % decrease, $\eta = 0.1\, J / \lVert\nabla J\rVert^2$ — a step with no units to tune:

# %%
model = VGG.from_h5()
c = load_image(sample_path("content"), size=size)
c = c[: c.shape[0] // 16 * 16, : c.shape[1] // 16 * 16]          # whole pooling windows (notebook 3)
s = load_image(sample_path("style"), size=size)
objective = numpynst.Objective(model, model.preprocess(c), model.preprocess(s))
x = model.preprocess(c)                                          # start from the photo itself
history = []
for step in range(10):
    J_now, grad = objective.value_and_grad(x)
    J_now = float(J_now)
    history.append(J_now)
    eta = 0.1 * J_now / float(np.sum(grad * grad))
    x = x - eta * grad                                           # X := X - eta dJ/dX
history.append(float(objective.value_and_grad(x)[0]))
print("J over ten gradient steps:", " ".join(f"{h:.4g}" for h in history))
print(f"after ten steps J is {history[-1] / history[0]:.1%} of the start")
claim("gd_ratio", history[-1] / history[0], 0.0, 1.0)

# %% [markdown]
# After ten steps $J$ is {{gd_ratio:.1%}} of its start. Plain gradient descent works but is slow:
# a step small enough for the steepest directions is too small for the flat ones. `stylize` uses
# L-BFGS, which estimates the curvature from the last few gradients and takes much longer steps;
# notebook 7 derives it beside gradient descent and Adam, and notebook 8 compares the three on
# style transfer, per evaluation of $J$.
#
# ## 3. The symbols
#
# One letter, one meaning, in every notebook of the series:
#
# | symbol | meaning |
# |---|---|
# | $C$, $S$, $X$ | the content photo, the style image, the generated image (the unknown; `x` in code) |
# | $x$, $w$, $b$, $y$ | a layer's input, weights, bias, output (notebooks 1–3) |
# | $\delta$, $\Delta$ | an upstream gradient $\partial L/\partial y$ at a layer's output (`dout` in code); $\Delta$ as a matrix |
# | $a^{[l]}$, $A^{[l]}$ | the activation of layer $l$ ($n_H \times n_W \times n_C$), and the same as an $n_H n_W \times n_C$ matrix |
# | $a^{(C)}$, $a^{(S)}$, $a^{(X)}$ | one layer's activation for $C$, $S$, $X$ |
# | $G^{[l]}$, $G^{(S)}$, $G^{(X)}$ | Gram matrices, $A^\top A$ (only ever a Gram matrix) |
# | $J$, $J_\text{content}$, $J^{[l]}_\text{style}$, $R$ | the cost, its parts, the smoothness term |
# | $\alpha$, $\beta$, $\gamma$, $\lambda_l$ | the content, style and smoothness weights; the style layers' weights |
# | $\eta$ | a step size (learning rate) |
# | $h$ | the step of a finite difference |
# | $\varepsilon$ | machine epsilon: {{eps32:.2e}} in float32, {{eps64:.2e}} in float64 (`np.finfo`) |
# | $d$, $g$, $\Gamma$, $B$, $A_W$ | Winograd: input tile, filter, and the filter, input and output transforms (notebook 12) |
#
# ## 4. The map: where each piece is derived
#
# | symbol / piece | what it is | derived and checked in |
# |---|---|---|
# | $a^{[l]}$, the conv layer | $\sum_{p,q,c} x\, w + b$ as loops and as one matrix product | [1 · convolution, forward](01_convolution_forward.ipynb) |
# | $\partial J/\partial x$ through a conv | $dx$, $dw$, $db$ on paper, central differences | [2 · convolution, backward](02_convolution_backward.ipynb) |
# | ReLU, pooling | forward, backward, the tie rule | [3 · ReLU and pooling](03_relu_and_pooling.ipynb) |
# | VGG19, preprocessing, receptive fields | the network from its HDF5 weights | [4 · VGG19 from HDF5](04_vgg_from_hdf5.ipynb) |
# | $J_\text{content}$, its normalisation | the cost, its gradient, what a layer keeps | [5 · the content cost](05_content_cost.ipynb) |
# | $G^{[l]}$, $J_\text{style}$, $\lambda_l$ | the Gram matrix and the style cost; textures | [6 · style and the Gram matrix](06_style_gram_matrix.ipynb) |
# | $\eta$, the update | gradient descent, momentum, Adam, L-BFGS and its line searches | [7 · the optimizers](07_optimizers.ipynb) |
# | $J$, $\alpha$, $\beta$, $\gamma$, $R$ | the full objective; the weights, the start, the colours | [8 · style transfer](08_style_transfer.ipynb) |
# | scales | coarse to fine: receptive field vs image size, cost per scale | [9 · coarse to fine](09_coarse_to_fine.ipynb) |
# | the same on a GPU | CuPy arrays, timings | [10 · on a GPU with CuPy](10_gpu_with_cupy.ipynb) |
# | what the units of $a^{[l]}$ detect | the nine patches that excite a unit most | [11 · what ConvNets learn](11_what_convnets_learn.ipynb) |
# | the convolution that actually runs | Winograd's F(2×2, 3×3) | [12 · Winograd](12_winograd.ipynb) |
#
# Read them in order: each uses only what the ones before it built. Every gradient on the way is
# checked against central differences, and each check states the error it expects and why. No
# number in the text is typed by hand: each is filled in from the run (`numpynst.claims`), and a
# range the text states is asserted, so the notebook fails when the text and its output disagree.
#
# ## Exercises
#
# 1. Run `numpynst.stylize` on your own photo and painting (paths work as well as arrays). Try
#    `init="noise"`: the same cost, started from random pixels.
# 2. In the gradient-descent loop above, ask for a 50 % predicted decrease instead of 10 %. What
#    happens to $J$, and why does a linear prediction stop being trustworthy for large steps?
