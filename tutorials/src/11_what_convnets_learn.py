# Source of tutorials/11_what_convnets_learn.ipynb (build with: python tutorials/_build.py)

# %% [markdown]
# # 11 · What deep ConvNets learn: the nine patches that excite a unit most
#
# **Why this matters.** Style transfer rests on one claim: shallow VGG layers respond to simple,
# local things (colours, edges) and deep layers to larger, more complex ones (textures, parts of
# objects). Notebook 4 looked at whole feature maps and at synthetic patterns. Here is the more
# direct test of Zeiler & Fergus (2013), the one the deeplearning.ai course shows: pick a unit
# (one channel of one layer), run many images through the network, find the **nine positions
# where that unit is most active**, and cut out of the images exactly the pixels that unit can
# see — its receptive field. Whatever those nine patches share is what the unit detects.
#
# Prerequisites: [notebook 4](04_vgg_from_hdf5.ipynb) (VGG19, receptive fields).

# %%
import os

import numpy as np
import matplotlib.pyplot as plt
from matplotlib_inline.backend_inline import set_matplotlib_formats

FAST = os.environ.get("NUMPYNST_FAST") == "1"   # the test suite sets this: small sizes, quick run
set_matplotlib_formats("jpeg")
plt.rcParams.update({"figure.dpi": 80})

from numpynst.claims import claim, record
from numpynst.image import load_image, sample_path
from numpynst.tiled import receptive
from numpynst.vgg import IMAGENET_MEAN_BGR, VGG

print("fast mode" if FAST else "full mode")

# %% [markdown]
# ## 1. Which pixels a unit sees
#
# Notebook 4 derived the receptive field by walking forward through the layers: each 3×3
# convolution reaches one more cell of the current grid on each side, each 2×2 pooling doubles the
# grid spacing. `numpynst.tiled.receptive` keeps that recursion (the library uses it to cut big
# images into exactly equivalent tiles): for every layer, the spacing $j$ of its grid in input
# pixels and the reach $a$ beyond a unit's own $j \times j$ cell. The unit at row $p$ sees input
# rows
#
# $$
# p\,j - a \;\;\dots\;\; p\,j + j - 1 + a, \qquad \text{a window of } r = j + 2a \text{ pixels},
# $$
#
# and likewise for columns. Near the border part of that window lies outside the image. We crop
# from the image padded with the ImageNet mean colour, which preprocessing turns into zeros: the
# first convolution's own zero padding. That is exactly what a `block1_conv1` unit saw — and only
# approximately what a deeper unit saw, for a reason section 3 measures.

# %%
model = VGG.from_h5()                                     # the shipped VGG19, float32
shown = ["block1_conv2", "block3_conv3", "block5_conv1"]
reach = receptive(model.layer_names, shown[-1])
for name in shown:
    a_, j_ = reach[name]
    print(f"{name}: grid spacing {j_:2d} px, reach {a_:3d} px, receptive field {j_ + 2 * a_} px")
    record(f"rf_{name.split('_')[0]}", j_ + 2 * a_)
MEAN_RGB = np.array(IMAGENET_MEAN_BGR[::-1])              # what the zero padding looks like


def patch(rgb, layer, p, q, pad):
    """The receptive field of unit (p, q) of `layer`: (r, r, 3) pixels of `rgb`, pre-padded by `pad`."""
    a_, j_ = reach[layer]
    top, left = p * j_ - a_ + pad, q * j_ - a_ + pad
    return rgb[top:top + j_ + 2 * a_, left:left + j_ + 2 * a_]

# %% [markdown]
# **Check** that the window is right, with the backward pass as in notebook 4: the gradient of one
# unit with respect to the input must vanish outside its window (and, with average pooling, fill
# it, up to the units that a ReLU switches off). In float64, "non-zero" meaning above $10^{-12}$ of
# the peak (the Winograd convolutions leave ~$10^{-16}$ rounding noise where the exact value is 0):

# %%
model64 = VGG.from_h5(pooling="avg", dtype=np.float64)
probe = model64.preprocess(load_image(sample_path("chelsea"), size=96 if FAST else 192))
for name in shown:
    a = model64.forward(probe, [name])[name]
    p, q = a.shape[1] // 2, a.shape[2] // 2
    seed = np.zeros_like(a)
    seed[0, p, q, int(np.argmax(a[0, p, q]))] = 1.0
    mag = np.abs(model64.backward({name: seed})[0]).sum(axis=2)
    rows, cols = np.nonzero(mag > 1e-12 * mag.max())
    a_, j_ = reach[name]
    lo_r, lo_c = p * j_ - a_, q * j_ - a_                # the window's first row and column
    print(f"{name}: unit ({p}, {q}); gradient in rows {rows.min()}..{rows.max()}, cols {cols.min()}..{cols.max()}; "
          f"window rows {lo_r}..{lo_r + j_ + 2 * a_ - 1}, cols {lo_c}..{lo_c + j_ + 2 * a_ - 1} (clipped to the image)")
    assert rows.min() >= lo_r and rows.max() <= lo_r + j_ + 2 * a_ - 1
    assert cols.min() >= lo_c and cols.max() <= lo_c + j_ + 2 * a_ - 1
del model64

# %% [markdown]
# ## 2. The nine most active positions
#
# We run the five bundled images (three photos, a Hubble deep-field picture and a stained-tissue
# microscope image) through VGG19 and keep
# each chosen layer's activations. For a unit, the nine largest values over all images and
# positions are the candidates — but neighbouring positions see nearly the same pixels, so the top
# nine would often be one spot nine times. As Zeiler & Fergus's nine come from different images of
# a large data set, we space ours out: after taking a position, we skip the positions of the same
# image whose windows overlap it by more than half.

# %%
names = ["chelsea", "astronaut", "coffee", "hubble", "ihc"]
side = 96 if FAST else 256
images = [load_image(sample_path(n), size=side) for n in names]
acts = {layer: [] for layer in shown}
for rgb in images:
    out = model.forward(model.preprocess(rgb), shown, keep_cache=False)
    for layer in shown:
        acts[layer].append(out[layer][0].copy())
print("images:", ", ".join(f"{n} {im.shape[0]}x{im.shape[1]}" for n, im in zip(names, images)))


def top_positions(layer, channel, k=9):
    """[(value, image index, p, q)] of the k largest activations of `channel`, windows overlapping at most half."""
    a_, j_ = reach[layer]
    keep_out = max(1, (j_ + 2 * a_) // (2 * j_))          # in grid steps: half a window
    cands = []
    for i, a in enumerate(acts[layer]):
        v = a[:, :, channel]
        for flat in np.argsort(v, axis=None)[::-1][:50 * k]:
            cands.append((float(v.flat[flat]), i, *np.unravel_index(flat, v.shape)))
    cands.sort(key=lambda t: -t[0])
    picked = []
    for val, i, p, q in cands:
        if all(i != i2 or max(abs(p - p2), abs(q - q2)) >= keep_out for _, i2, p2, q2 in picked):
            picked.append((val, i, int(p), int(q)))
        if len(picked) == k:
            break
    return picked

# %% [markdown]
# Which units? For each layer, the three channels with the largest single response over the five
# images (the same rule as notebook 4's pattern figure: a large peak, not a large mean, which would
# favour units that respond weakly to everything).

# %%
pad = max(a_ for a_, _ in reach.values()) + 1
padded = [np.concatenate([np.broadcast_to(MEAN_RGB, (im.shape[0], pad, 3)), im,
                          np.broadcast_to(MEAN_RGB, (im.shape[0], pad, 3))], axis=1) for im in images]
padded = [np.concatenate([np.broadcast_to(MEAN_RGB, (pad, im.shape[1], 3)), im,
                          np.broadcast_to(MEAN_RGB, (pad, im.shape[1], 3))], axis=0).astype(np.uint8)
          for im in padded]
units = {}
for layer in shown:
    peaks = np.max([a.max(axis=(0, 1)) for a in acts[layer]], axis=0)
    units[layer] = [int(c) for c in np.argsort(peaks)[::-1][:3]]
    for k, c in enumerate(units[layer]):
        record(f"ch_{layer.split('_')[0]}_{k}", c)

fig = plt.figure(figsize=(12, 12.5))
outer = fig.add_gridspec(len(shown), 3, hspace=0.25, wspace=0.08)
for row, layer in enumerate(shown):
    r = reach[layer][1] + 2 * reach[layer][0]
    for col, channel in enumerate(units[layer]):
        inner = outer[row, col].subgridspec(3, 3, hspace=0.04, wspace=0.04)
        picks = top_positions(layer, channel)
        for k, (val, i, p, q) in enumerate(picks):
            ax = fig.add_subplot(inner[k // 3, k % 3])
            crop = patch(padded[i], layer, p, q, pad)
            assert crop.shape == (r, r, 3)                 # the whole window, padding included
            ax.imshow(crop, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if k == 1:
                ax.set_title(f"{layer} ch {channel} ({r}x{r} px)", fontsize=9)
plt.show()
for layer in shown:
    for channel in units[layer]:
        picks = top_positions(layer, channel)
        print(f"{layer} ch {channel:3d}: top-9 activations {picks[0][0]:.0f} .. {picks[-1][0]:.0f}, "
              f"from images {sorted({names[i] for _, i, _, _ in picks})}")

# %% [markdown]
# What the patches show, layer by layer (the three rows of the figure):
#
# * **`block1_conv2`** sees {{rf_block1}}×{{rf_block1}} pixels, and its strongest units are **edge
#   and colour-contrast detectors**: channels {{ch_block1_0}} and {{ch_block1_1}} fire on a
#   horizontal boundary, dark above and bright below, nine times the same small motif; channel
#   {{ch_block1_2}} on a bright or coloured spot against a darker surround.
# * **`block3_conv3`** sees {{rf_block3}}×{{rf_block3}} pixels: **small parts and textures**.
#   Channels {{ch_block3_0}} and {{ch_block3_1}} fire on round, shiny or patterned things against
#   orange-red — the astronaut's suit and mission patch, the red saucer of the coffee cup, the
#   cat's eye; channel {{ch_block3_2}} on small bright dots on black, the galaxies of the Hubble
#   field (and once on a shiny rounded object).
# * **`block5_conv1`** sees {{rf_block5}}×{{rf_block5}} pixels, most of an image at this size:
#   **whole objects** — the astronaut's face and suit, the cat's face, the coffee cup. Its nine
#   patches mix several of these, include the same object at shifted positions, and many lie at an
#   image border (grey: the padding) — with five images it is hard to say *which* object a block-5
#   unit prefers.
#
# Five images are a tiny data set (Zeiler & Fergus used the ImageNet validation set), so a unit's
# nine patches here come from what these five happen to contain; the progression from small and
# simple to large and composite is the point. Style transfer uses exactly this: the Gram matrices
# of `block1`–`block5` (notebook 6) summarise which of these detectors fire together, at every
# scale, and the content cost (notebook 5) keeps a deep layer's *where*.
#
# ## 3. Exact only at the first layer
#
# The crops show a unit's whole window, with the mean colour where the window leaves the image.
# For a `block1_conv1` unit that *is* its input: the layer pads the preprocessed image with zeros,
# and a mean-coloured pixel preprocesses to zero. Every deeper layer pads *its own input* — the
# previous layer's activations — with zeros, and that is not what the previous layer computes from
# mean-coloured pixels: a zero input gives each unit its bias, and after the ReLU a bias is not 0.
# So near the border a deep unit saw "image, then zeros at every layer", which no picture, mean
# padding included, reproduces. Measured: each layer's activations of the image alone against those
# of the same image padded by the mean colour (by a multiple of 16 pixels, so that the pooling grids
# line up), at the same units; only the units whose window reaches beyond the image can differ.
# (Away from the border the crop is exactly the input the unit depended on, but not equally: a deep
# unit weighs the middle of its window far more than its rim.)

# %%
check = ["block1_conv1", "block1_conv2", "block3_conv3", "block5_conv1"]
rgb16 = images[0][: images[0].shape[0] // 16 * 16, : images[0].shape[1] // 16 * 16].astype(np.float32)
margin = 32
big16 = np.broadcast_to(MEAN_RGB.astype(np.float32), (rgb16.shape[0] + 2 * margin, rgb16.shape[1] + 2 * margin, 3)).copy()
big16[margin:margin + rgb16.shape[0], margin:margin + rgb16.shape[1]] = rgb16     # framed by the mean colour
alone = model.forward(model.preprocess(rgb16), check, keep_cache=False)
framed = model.forward(model.preprocess(big16), check, keep_cache=False)
diffs, cores = {}, {}
for layer in check:
    a_, j_ = receptive(model.layer_names, layer)[layer]
    o = margin // j_                                     # the padded image's units, shifted by the margin
    a = alone[layer]
    b = framed[layer][:, o:o + a.shape[1], o:o + a.shape[2]]
    clear = -(-a_ // j_)                                 # units p with p j - a >= 0: window inside the image
    diffs[layer] = float(np.abs(a - b).max() / np.abs(a).max())
    core = np.abs(a - b)[:, clear:a.shape[1] - clear, clear:a.shape[2] - clear]
    cores[layer] = float(core.max() / np.abs(a).max()) if core.size else float("nan")
    tag = layer.replace("_conv", "_")
    record(f"pad_diff_{tag}", diffs[layer])
    record(f"core_diff_{tag}", cores[layer])
    record(f"clear_{tag}", int(core.shape[1] * core.shape[2]) if core.size else 0)
    print(f"{layer:13s}: image alone vs mean-padded, largest difference {diffs[layer]:.1e} of the layer's peak; "
          f"{core.shape[1] * core.shape[2] if core.size else 0} units clear of the border differ by {cores[layer]:.1e}")
claim("first_layer_exact", diffs["block1_conv1"], 0, 1e-5)
claim("second_layer_differs", diffs["block1_conv2"], 1e-3, None)
claim("clear_units_agree", max(v for v in cores.values() if v == v), 0, 1e-4)

# %% [markdown]
# `block1_conv1` agrees to {{pad_diff_block1_1:.0e}} of its peak (float32 rounding; asserted below
# {{first_layer_exact.hi:.0e}}). Already `block1_conv2` differs by {{pad_diff_block1_2:.1e}} of its
# peak at the border, `block3_conv3` by {{pad_diff_block3_3:.1e}}, `block5_conv1` by
# {{pad_diff_block5_1:.1e}} — while the units whose windows stay inside the image agree to float32
# rounding ({{core_diff_block1_2:.0e}} over {{clear_block1_2}} such units of `block1_conv2`,
# {{core_diff_block3_3:.0e}} over {{clear_block3_3}} of `block3_conv3`; asserted below
# {{clear_units_agree.hi:.0e}}). At this size `block5_conv1` has {{clear_block5_1}} units whose
# window fits inside the image: every one of its crops includes padding. So the border crops of
# the deeper rows show the window, not an input that would reproduce the activation.
#
# ## Exercises
#
# 1. Show the top nine for a *random* unit of `block3_conv3` instead of the most active ones. Is
#    it as easy to say what it detects?
# 2. Replace max pooling by average pooling (`VGG.from_h5(pooling="avg")`). Do the top patches
#    change?
# 3. Add your own photos to `names` (any image path works with `load_image`) and watch the
#    `block5_conv1` patches change.
