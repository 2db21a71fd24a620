# Source of tutorials/00_the_whole_picture.ipynb (build with: python tutorials/_build.py)

# %% [markdown]
# # 0 · The whole picture: one cost, one update, and where each piece is derived
#
# **What we are after.** Take a photo and a painting, and make a new image that shows *what* the
# photo shows, painted the way the painting is painted. Gatys, Ecker & Bethge (2015) turned this
# into an optimisation problem over the pixels of the new image, and the ten notebooks that follow
# build every piece of it from scratch. This one shows the result first, then the one formula
# behind it, then a map: which notebook derives which symbol. It is meant to run in seconds (a
# small image and few iterations, with `numpynst.stylize`'s default settings otherwise).

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
from numpynst.image import load_image, sample_path
from numpynst.vgg import VGG

print("fast mode" if FAST else "full mode")

# %% [markdown]
# ## 1. The result first
#
# The bundled demo pair — a photo of a cat, and as the style a stained-tissue microscope image
# (IHC; of the freely licensed images, the one with the most striking texture: brown cell walls
# in rows against pale blue) — through `numpynst.stylize`, everything at its defaults except the
# size (128 pixels on the long side) and the number of iterations (40). An iteration at this size
# is about a quarter of the work of one at 256 px, which the README times at 0.54 s on a 2-core
# laptop CPU, so on such a machine the run takes seconds; the time printed below is what the
# machine that made this run took (it was shared with other jobs).

# %%
size, iterations = (64, 5) if FAST else (128, 40)
content, style = load_image(sample_path("content")), load_image(sample_path("style"))
t0 = time.perf_counter()
result = numpynst.stylize(content, style, size=size, iterations=iterations)
seconds = time.perf_counter() - t0
J = result.history["J"]
print(f"{result.iterations} iterations in {seconds:.1f} s; J fell from {J[0]:.4g} to {min(J):.4g} "
      f"({min(J) / J[0]:.1%} of the start); stopped: {result.stopped}")
assert min(J) < J[0]

fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
for ax, img, title in zip(axes, [content, style, result.image], ["content C (photo)", "style S (IHC microscope image)",
                                                                  f"generated G ({result.iterations} iterations)"]):
    ax.imshow(img)
    ax.set_title(title)
    ax.axis("off")
plt.show()

# %% [markdown]
# ## 2. The one formula
#
# The generated image $G$ (its pixels, preprocessed: notebook 4) is the only unknown. It should be
# close to the photo $C$ in *content* and to the style image $S$ in *style*, and both are measured
# inside VGG19, a network trained to recognise objects:
#
# $$
# J(G) = \alpha\, J_\text{content}(C, G) + \beta\, J_\text{style}(S, G)
# \;\big(+\; \gamma\, \mathrm{TV}(G)\big)
# $$
#
# * $J_\text{content}$ compares VGG's activations $a^{[l]}$ of $C$ and $G$ at one deep layer
#   (`block4_conv2` by default): same features in the same places.
# * $J_\text{style} = \sum_l \lambda_l J^{[l]}_\text{style}$ compares, at five layers, the **Gram
#   matrices** $G^{[l]} = A^\top A$ of the activations — which features occur together, wherever
#   they are.
# * $\alpha$, $\beta$ weigh the two (and a small total-variation term keeps neighbouring pixels
#   close); `stylize` calibrates each term to its starting size, so the default weights mean the
#   same for any pair of images.
#
# **The update.** Minimise $J$ by moving the pixels against the gradient,
#
# $$
# G \;:=\; G - \eta\, \frac{\partial J}{\partial G},
# $$
#
# where $\partial J / \partial G$ is one backward pass through VGG (notebooks 2–5). Here it is,
# literally, for ten steps, with `numpynst.Objective` (the notes' $J$, uncalibrated) giving $J$
# and $\partial J/\partial G$. The step size $\eta$: we take the one for which the linear
# approximation $J(G - \eta \nabla J) \approx J - \eta \lVert\nabla J\rVert^2$ predicts a 10 % decrease,
# $\eta = 0.1\, J / \lVert\nabla J\rVert^2$ — a step with no units to tune:

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
    x = x - eta * grad                                           # G := G - eta dJ/dG
history.append(float(objective.value_and_grad(x)[0]))
print("J over ten gradient steps:", " ".join(f"{h:.4g}" for h in history))
print(f"after ten steps J is {history[-1] / history[0]:.1%} of the start")
assert history[-1] < history[0]

# %% [markdown]
# Plain gradient descent works but is slow: a step small enough for the steepest directions is too
# small for the flat ones. `stylize` uses L-BFGS, which estimates the curvature from the last few
# gradients and takes much longer steps; notebook 8 compares the two (and Adam) at equal cost.
#
# ## 3. The map: where each symbol is derived
#
# | symbol / piece | what it is | derived and checked in |
# |---|---|---|
# | $a^{[l]}$, the conv layer | $\sum_{p,q,c} x\, w + b$ as loops and as one matrix product | [1 · convolution, forward](01_convolution_forward.ipynb) |
# | $\partial J/\partial x$ through a conv | $dx$, $dw$, $db$ on paper, central differences | [2 · convolution, backward](02_convolution_backward.ipynb) |
# | ReLU, pooling | forward, backward, the tie rule | [3 · ReLU and pooling](03_relu_and_pooling.ipynb) |
# | VGG19, preprocessing, receptive fields | the network from its HDF5 weights | [4 · VGG19 from HDF5](04_vgg_from_hdf5.ipynb) |
# | $J_\text{content}$, its normalisation | the cost, its gradient, what a layer keeps | [5 · the content cost](05_content_cost.ipynb) |
# | $G^{[l]}$, $J_\text{style}$, $\lambda_l$ | the Gram matrix and the style cost; textures | [6 · style and the Gram matrix](06_style_gram_matrix.ipynb) |
# | $J$, $\alpha$, $\beta$, TV, the update | the full objective; GD vs Adam vs L-BFGS | [8 · style transfer](08_style_transfer.ipynb) |
# | the same on a GPU | CuPy arrays, timings | [10 · on a GPU with CuPy](10_gpu_with_cupy.ipynb) |
# | what the units of $a^{[l]}$ detect | the nine patches that excite a unit most | [11 · what ConvNets learn](11_what_convnets_learn.ipynb) |
# | the convolution that actually runs | Winograd's F(2×2, 3×3) | [12 · Winograd](12_winograd.ipynb) |
#
# Read them in order: each uses only what the ones before it built. Every gradient on the way is
# checked against central differences, and each check states the error it expects and why.
#
# ## Exercises
#
# 1. Run `numpynst.stylize` on your own photo and painting (paths work as well as arrays). Try
#    `init="noise"`: the same cost, started from random pixels.
# 2. In the gradient-descent loop above, ask for a 50 % predicted decrease instead of 10 %. What
#    happens to $J$, and why does a linear prediction stop being trustworthy for large steps?
