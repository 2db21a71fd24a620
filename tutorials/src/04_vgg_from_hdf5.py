# Source of tutorials/04_vgg_from_hdf5.ipynb (build with: python tutorials/_build.py)

# %% [markdown]
# # 4 · VGG19 from an HDF5 file, and what its layers see
#
# **Why this matters.** Style transfer does not compare images pixel by pixel: it compares what a
# network *trained to recognise objects* sees in them. Gatys et al. used VGG19 (Simonyan &
# Zisserman, 2014), trained on ImageNet. Its layers turn an image into a stack of feature maps,
# shallow layers responding to edges and colours, deep layers to textures and object parts over
# large regions. Notebook 5 builds the *content* cost on a deep layer, notebook 6 the *style* cost
# on several.
#
# This notebook opens the weights file with `h5py`, builds the network from the layers of
# notebooks 1–3, checks it against `numpynst.VGG`, and then looks inside: shapes, receptive
# fields, feature maps, and what makes single units fire.

# %%
import os
import time

import numpy as np
import matplotlib.pyplot as plt
from matplotlib_inline.backend_inline import set_matplotlib_formats

FAST = os.environ.get("NUMPYNST_FAST") == "1"   # the test suite sets this: small sizes, quick run
set_matplotlib_formats("jpeg")
plt.rcParams.update({"figure.dpi": 80})

import h5py
from numpynst import layers
from numpynst.claims import claim, record
from numpynst.gradcheck import directional_derivative, random_direction, rel_error
from numpynst.image import load_image, sample_path
from numpynst.tiled import receptive as receptive_reach
from numpynst.vgg import IMAGENET_MEAN_BGR, VGG, deprocess, preprocess
from numpynst.weights import default_weights_path

rng = np.random.default_rng(0)
print("fast mode" if FAST else "full mode")

# %% [markdown]
# ## 1. What is in the file
#
# `numpynst` ships VGG19's convolutional weights in the layout of Keras's "notop" files (the
# dense classifier layers, which style transfer never uses, are left out). HDF5 is a container of
# *groups* (like folders) and *datasets* (arrays), each with *attributes*. The root lists the
# layers in network order; each conv layer is a group holding a kernel `(3, 3, C_in, C_out)` and a
# bias `(C_out,)`.

# %%
path = default_weights_path()
print(path.name, f"{path.stat().st_size / 2**20:.1f} MiB")
with h5py.File(path, "r") as f:
    for key, value in f.attrs.items():
        if key != "layer_names":
            print(f"  attribute {key}: {value}")
    layer_names = [n.decode() for n in f.attrs["layer_names"]]
    print("layers:", ", ".join(layer_names))
    print()
    total = 0
    for name in layer_names:
        group = f[name]
        for ds_name in (n.decode() for n in group.attrs["weight_names"]):
            ds = group[ds_name]
            total += ds.size
            if ds.ndim == 4:
                print(f"  {name}/{ds_name:22s} {str(ds.shape):18s} {ds.dtype}")
    print(f"{total:,} parameters")

# %% [markdown]
# Two things to notice. The arrays are **float16**: half the size of float32, and we convert them
# to float32 (or float64) when loading. And the attributes say the kernels were **quantized**:
# each layer uses at most 256 distinct values (a small codebook), which is what made the source
# file small. Let us verify that claim, and that the bias has one entry per output channel:

# %%
with h5py.File(path, "r") as f:
    for name in ["block1_conv1", "block3_conv1", "block5_conv4"]:
        W = f[name][f"{name}_W_1:0"][()]
        b = f[name][f"{name}_b_1:0"][()]
        # counted in float32: NumPy 2.4's sort of large float16 arrays can come back unsorted,
        # and np.unique (which sorts) then over-counts
        n_values = np.unique(W.astype(np.float32)).size
        print(f"{name}: W {W.shape} {W.dtype}, {n_values} distinct values; b {b.shape}")
        assert n_values <= 256 and b.shape == (W.shape[3],)

# %% [markdown]
# ## 2. The network, by hand
#
# VGG19 is five blocks; block $b$ is $n_b$ × [3×3 convolution, stride 1, padding 1 → ReLU],
# then a 2×2 max pooling with stride 2, with $n = (2, 2, 4, 4, 4)$ and widths
# $64, 128, 256, 512, 512$. Layer names follow Keras: `block3_conv2` is the output of the second
# convolution of block 3 **after** its ReLU.
#
# With the weights in a dict, the forward pass is a short loop over the layer names, using the
# layers of notebooks 1–3:

# %%
def read_params(path, dtype=np.float32):
    """{conv name: (W (3, 3, C_in, C_out), b (C_out,))} straight from the HDF5 file."""
    params = {}
    with h5py.File(path, "r") as f:
        for name in (n.decode() for n in f.attrs["layer_names"]):
            if "_conv" in name:
                params[name] = (f[name][f"{name}_W_1:0"][()].astype(dtype),
                                f[name][f"{name}_b_1:0"][()].astype(dtype))
    return params


def vgg_forward(x, params, names, until):
    """Run the layers in `names` in order up to `until`; return every layer's output."""
    outputs = {}
    a = x
    for name in names:
        if "_conv" in name:
            w, b = params[name]
            a, _ = layers.conv2d_forward(a, w, b, stride=1, pad=1)
            a, _ = layers.relu_forward(a)
        elif name.endswith("_pool"):
            a, _ = layers.maxpool_forward(a, size=2, stride=2)
        else:
            continue                                  # "input_1"
        outputs[name] = a
        if name == until:
            return outputs


params = read_params(path)
print(len(params), "conv layers:", ", ".join(params))

# %% [markdown]
# **Pre-processing.** The original weights were trained in Caffe, on images with the channels in
# **BGR** order, on a 0–255 scale, with the ImageNet mean colour subtracted. A network fed plain
# RGB in 0–1 still runs, but its features are not the ones it learned. `numpynst.vgg.preprocess`
# does the conversion and `deprocess` undoes it (adds the mean back, BGR → RGB, rounds and clips
# to `uint8`); on a `uint8` image the round trip must be exact:

# %%
size = 96 if FAST else 192
rgb = load_image(sample_path("chelsea"), size=size)
x = preprocess(rgb)
print("RGB", rgb.shape, rgb.dtype, "-> x", x.shape, x.dtype, "; mean (B, G, R) subtracted:", IMAGENET_MEAN_BGR)
print("x[0, 0, 0] =", x[0, 0, 0], " from RGB", rgb[0, 0])
assert np.array_equal(deprocess(x), rgb)

# %% [markdown]
# **Check** our loop against `numpynst.VGG`, which does the same with caches for the backward pass.
# Same layers, same float32 — and here the same arithmetic too. `conv2d_forward` picks its
# algorithm per layer from a table measured on VGG19's shapes (`numpynst/layers/fast/dispatch.py`):
# im2col for the 3-channel first layer, Winograd F(2x2,3x3) for most layers (notebook 12 derives
# it), and the larger F(4x4,3x3) only for 512-channel layers on maps of at least 33x33 — and only
# when the weights are read-only, because its transformed weights must be cached to pay. At 192 px
# (128x192) block 4's maps are 16x24, so our loop and `VGG` run the same algorithm at every layer
# and agree bit for bit.

# %%
model = VGG.from_h5()                                     # the shipped VGG19, float32, NumPy
print(model)
names = ["block1_conv1", "block3_conv1", "block5_conv1"]
ours = vgg_forward(x, params, layer_names, until="block5_conv1")
theirs = model.forward(x, names)
for name, a in theirs.items():
    print(f"{name}: {a.shape}, relative error {rel_error(ours[name], a):.1e} (0: the same algorithm)")
    assert rel_error(ours[name], a) == 0.0

# %% [markdown]
# On a bigger picture the two part ways. At {{big_h}}x{{big_w}} px block 4's maps are
# {{b4_h}}x{{b4_w}}: `VGG`,
# whose weights are read-only, runs block 4 with F(4x4,3x3), while our freshly read (writable)
# arrays get F(2x2,3x3). Both compute the same sums in a different order, so they round differently: 0 up to
# `block3_conv1`, {{b5_err:.1e}} at `block5_conv1`, the first layer after block 4 (asserted below
# {{b5_err.hi:.0e}}). Marking our
# weights read-only makes the algorithms, and so the results, identical again — bit for bit:

# %%
big = preprocess(load_image(sample_path("chelsea"), size=336 if FAST else 400))
theirs = model.forward(big, names)
ours_big = vgg_forward(big, params, layer_names, until="block5_conv1")
for w, b in params.values():
    w.flags.writeable = b.flags.writeable = False         # now conv2d_forward may cache, as VGG does
ours_ro = vgg_forward(big, params, layer_names, until="block5_conv1")
for name, a in theirs.items():
    err, err_ro = rel_error(ours_big[name], a), rel_error(ours_ro[name], a)
    print(f"{name}: {a.shape}, relative error {err:.1e} with writable weights (0 before block 4, "
          f"~1e-6 after), {err_ro:.1e} with read-only ones (0)")
    assert err_ro == 0.0 and (err > 0) == (name == "block5_conv1")
claim("b5_err", rel_error(ours_big["block5_conv1"], theirs["block5_conv1"]), 0, 4e-6)
record("big_h", big.shape[1])
record("big_w", big.shape[2])
record("b4_h", big.shape[1] // 2 // 2 // 2)      # block 4 runs after three 2x2 poolings (floor mode)
record("b4_w", big.shape[2] // 2 // 2 // 2)

# %% [markdown]
# ## 3. Shapes and receptive fields
#
# Convolutions keep the size, each pooling halves it; the channel count grows from 64 to 512. So
# deep layers hold many features over a coarse grid. Each unit of a deep layer depends on a
# square of input pixels, its **receptive field**. Walking forward, a 3×3 convolution widens it by
# 2 steps of the current grid spacing $j$ and a 2×2 pooling by one step, after which the spacing
# doubles:
#
# $$
# \text{conv: } r \leftarrow r + 2j, \qquad \text{pool: } r \leftarrow r + j,\; j \leftarrow 2j,
# \qquad r_0 = j_0 = 1.
# $$

# %%
r, j = 1, 1
receptive = {}
print(f"{'layer':14s} {'output shape':>20s} {'receptive field':>16s}")
for name in layer_names[1:]:
    if "_conv" in name:
        r += 2 * j
    else:
        r, j = r + j, 2 * j
    receptive[name] = r
    print(f"{name:14s} {str(ours[name].shape if name in ours else '-'):>20s} {r:>10d} px")
    if name == "block5_conv1":
        break

# numpynst.tiled keeps the same recursion (it sizes the halo of exact tiles): per layer the spacing
# j and the reach a beyond the unit's own j x j cell; r = j + 2a, and unit p sees pixels
# [p j - a, p j + j - 1 + a] of each axis (notebook 11 crops exactly these)
table = receptive_reach(model.layer_names, "block5_conv1")
for key, name in [("rf_b1", "block1_conv1"), ("rf_b4", "block4_conv1"), ("rf_b5", "block5_conv1")]:
    record(key, receptive[name])
assert all(receptive[name] == j_ + 2 * a_ for name, (a_, j_) in table.items() if name in receptive)

# %% [markdown]
# **Check with the backward pass.** The gradient of one unit with respect to the input is non-zero
# only inside that unit's receptive field, so its support must fit in an $r \times r$ square.
# (With average pooling and no dead ReLUs in the way the support fills the whole square; max
# pooling routes the gradient to one pixel per window and leaves holes — notebook 3.)
# "Non-zero" means above $10^{-12}$ of the peak: the fast convolution (Winograd, notebook 12) does
# not reproduce exact zeros but leaves rounding noise of ~$10^{-16}$ of the peak where the exact
# gradient is 0.

# %%
model_avg = VGG.from_h5(pooling="avg", dtype=np.float64)
side = 96
xc = preprocess(load_image(sample_path("chelsea"), size=side), dtype=np.float64)[:, :side, :side]
for name in ["block2_conv1", "block3_conv1", "block4_conv1"]:
    a = model_avg.forward(xc, [name])[name]
    g = np.zeros_like(a)
    ci, cj = a.shape[1] // 2, a.shape[2] // 2
    g[0, ci, cj, int(np.argmax(a[0, ci, cj]))] = 1.0    # the most active channel at the centre
    dx = model_avg.backward({name: g})
    mag = np.abs(dx[0]).sum(axis=2)
    rows, cols = np.nonzero(mag > 1e-12 * mag.max())
    h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    print(f"{name}: gradient support {h}x{w} px, receptive field {receptive[name]}x{receptive[name]} px")
    assert h <= receptive[name] and w <= receptive[name]

# %% [markdown]
# While we hold a float64 model: its backward pass is checked like any layer's, with a directional
# derivative through the whole network, $L(x) = \sum a(x) \odot R$ for a random $R$ at
# `block3_conv1`. The step is $h = 10^{-4}$, as pixel values are of order 100.
#
# What error to expect? Convolutions are linear, ReLU and pooling piecewise linear, so $L$ is
# piecewise linear in $x$: as long as the step crosses no kink (no ReLU switches on or off), the
# difference quotient has no truncation error, and what is left is the rounding of $L$ divided by
# $2h$ — as in notebook 2. Relative to $D = \langle \nabla L, v\rangle$ that error swings widely,
# because $|D|$ does: a random unit direction in $n = 32 \cdot 32 \cdot 3$ dimensions has
# $|D| \approx \|\nabla L\| / \sqrt n$, sometimes ten times less. The steady number is the error
# relative to $\|\nabla L\|$. Over {{n_R}} random $R$ and {{n_dir}} directions each, this run measured
# {{dir_D_min:.1e}} to {{dir_D_max:.1e}} relative to $|D|$, but {{dir_grad_min:.1e}} to
# {{dir_grad_max:.1e}} relative to $\|\nabla L\|$ (asserted below {{dir_grad_max.hi:.0e}};
# notebook 5 takes such an error apart). A wrong gradient would be off by $O(1)$.

# %%
small = preprocess(load_image(sample_path("chelsea"), size=32), dtype=np.float64)
directions = np.random.default_rng(0)
rel_D, rel_grad = [], []
n_R, n_dir = (2, 2) if FAST else (4, 3)
for trial in range(n_R):
    R = rng.standard_normal(model_avg.forward(small, ["block3_conv1"])["block3_conv1"].shape)
    model_avg.forward(small, ["block3_conv1"])
    dx = model_avg.backward({"block3_conv1": R})
    L = lambda z: np.sum(model_avg.forward(z, ["block3_conv1"], keep_cache=False)["block3_conv1"] * R)
    for k in range(n_dir):
        v = random_direction(small, directions)
        D = float(np.sum(dx * v))
        miss = abs(directional_derivative(L, small, v, h=1e-4) - D)
        rel_D.append(miss / abs(D))
        rel_grad.append(miss / np.linalg.norm(dx))
        print(f"R {trial}, direction {k}: D / |grad| = {D / np.linalg.norm(dx):+.1e}, "
              f"error relative to |D| {rel_D[-1]:.1e}, relative to |grad| {rel_grad[-1]:.1e}")
record("n_R", n_R)
record("n_dir", n_dir)
record("dir_D_min", min(rel_D))
record("dir_D_max", max(rel_D))
record("dir_grad_min", min(rel_grad))
claim("dir_grad_max", max(rel_grad), None, 2e-9)

# %% [markdown]
# ## 4. Feature maps: what each level encodes
#
# For five depths we show the photo's six most active channels (largest mean activation). Each
# small image is one channel's map: bright where that feature is present.

# %%
depths = ["block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1"]
acts = model.forward(x, depths, keep_cache=False)
n_show = 6
fig, axes = plt.subplots(len(depths), n_show + 1, figsize=(2.0 * (n_show + 1), 1.45 * len(depths)))
for row, name in zip(axes, depths):
    a = acts[name][0]
    row[0].imshow(rgb)
    row[0].set_ylabel(name, fontsize=9)
    top = np.argsort(a.mean(axis=(0, 1)))[::-1][:n_show]
    for ax, c in zip(row[1:], top):
        ax.imshow(a[:, :, c], cmap="viridis")
        ax.set_title(f"ch {c}, {a.shape[0]}x{a.shape[1]}", fontsize=8)
    for ax in row:
        ax.set_xticks([])
        ax.set_yticks([])
plt.show()

# %% [markdown]
# Reading the rows from top to bottom:
#
# * **block1**: full resolution; maps look like the photo filtered for one colour or one edge
#   orientation — each unit sees 3×3 pixels.
# * **block2–3**: textures and contours; the fur, the whiskers, the edges of the eyes.
# * **block4–5**: coarse grids ($1/8$ and $1/16$ of the image) of units that each see a large
#   part of the photo; they fire on *parts* (the eyes, the nose) and are sparse. Where exactly
#   each colour was is mostly gone; *what* is where remains. That is why the content cost lives
#   at `block4_conv2`.
#
# ## 5. What makes a unit fire
#
# A way to see a unit's preference directly: start from a grey image with a little noise and do
# gradient **ascent** on the pixels to maximize the channel's mean activation. The gradient is one
# backward pass seeded with $\partial(\text{mean}) / \partial a = 1 / (H W)$ on that channel. We
# normalize each step (the raw gradient's scale varies enormously between layers).
#
# Which channels? The six maps above were the channels with the largest *mean* response, and for
# block 1 those are colour units: a colour covers much of the photo, so a unit tuned to it is on
# nearly everywhere. An edge unit fires strongly, but only along the edges — a large *peak*, a
# small mean. So we show, per layer, the four channels with the largest peak response on the
# photo, which brings in both kinds.

# %%
def preferred_pattern(model, name, channel, side, steps, lr=4.0, seed=0):
    """Pixels that maximize the mean activation of `channel` at layer `name` (normalized gradient ascent)."""
    x = np.random.default_rng(seed).normal(0.0, 8.0, size=(1, side, side, 3)).astype(model.dtype)
    for _ in range(steps):
        a = model.forward(x, [name])[name]
        g = np.zeros_like(a)
        g[..., channel] = 1.0 / (a.shape[1] * a.shape[2])
        dx = model.backward({name: g})
        x += lr * dx / (np.abs(dx).mean() + 1e-12)
        np.clip(x, -120.0, 140.0, out=x)             # stay near the range of real pixel values
    return deprocess(x), float(a[..., channel].mean())


side, steps = (32, 3) if FAST else (80, 30)
shown = [("block1_conv2", 4), ("block2_conv2", 4), ("block3_conv3", 4), ("block4_conv3", 4)]
fig, axes = plt.subplots(len(shown), 4, figsize=(8, 2.1 * len(shown)))
t0 = time.perf_counter()
for row, (name, n) in zip(axes, shown):
    a = acts.get(name, model.forward(x, [name], keep_cache=False)[name])[0]
    channels = np.argsort(a.max(axis=(0, 1)))[::-1][:n]           # the largest peak responses
    if name == "block1_conv2":
        for k, c in enumerate(channels):
            record(f"c1_{k}", int(c))                             # the text below names them
    for ax, c in zip(row, channels):
        img, act = preferred_pattern(model, name, int(c), side, steps)
        ax.imshow(img)
        ax.set_title(f"{name} ch {c}", fontsize=8)
        ax.axis("off")
print(f"{len(shown) * 4} patterns, {steps} steps each, in {time.perf_counter() - t0:.0f} s")
plt.show()

# %% [markdown]
# Row by row. `block1_conv2` wants either a **colour** (channel {{c1_2}}: a flat red square) or an
# **oriented edge**: parallel bright/dark stripes at one orientation (channels {{c1_0}} and {{c1_3}}
# nearly horizontal, {{c1_1}} diagonal) — one edge, repeated across the square because we maximised the *mean*
# over all positions. `block2_conv2` wants coloured stripes and wavy edges; `block3_conv3` denser
# textures with curved, interleaved strokes; `block4_conv3` larger motifs, round eye-like blobs and
# swirls, several times the size of the block-1 stripes. (Notebook 11 asks the same question of real
# images: which patches excite a unit most.)
# Notebook 6 uses exactly this hierarchy: matching the *statistics* of several of these layers at
# once reproduces a painting's texture at several scales.
#
# ## Summary
#
# * The weights file is HDF5: one group per layer with a `(3, 3, C_in, C_out)` kernel and a bias;
#   `numpynst`'s copy is float16 with 256-value codebooks per layer.
# * VGG19 = 16 × (conv 3×3 → ReLU) with 4–5 max poolings; with the layers of notebooks 1–3 the
#   forward pass is a ten-line loop; it matches `numpynst.VGG` bit for bit once its weights are
#   read-only like the model's (same Winograd variant), to {{b5_err:.0e}} in float32 otherwise.
# * Inputs are Caffe-style: BGR, 0–255, ImageNet mean subtracted.
# * Receptive fields grow from {{rf_b1}} px (`block1_conv1`) to {{rf_b4}} px (`block4_conv1`) and
#   {{rf_b5}} px (`block5_conv1`); shallow layers encode colour and edges, deep layers parts and layout.
#
# Next: [notebook 5](05_content_cost.ipynb) — the content cost, and what an image looks like when
# only one layer's activations are kept.
#
# ## Exercises
#
# 1. Feed the network RGB instead of BGR (`x[..., ::-1]`) and compare the `block5_conv1` feature
#    maps with the correct ones. How different are they (relative error)?
# 2. Check the receptive-field formula for `block5_conv1` with the backward-pass experiment above
#    (you need an image wider than 156 px).
# 3. Dead units: what fraction of `block5_conv1`'s values are exactly zero for this photo? For a
#    photo of noise?
# 4. Replace the normalization in `preferred_pattern` by plain gradient ascent with a fixed step.
#    What goes wrong, and for which layers?
