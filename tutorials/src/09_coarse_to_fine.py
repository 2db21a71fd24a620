# Source of tutorials/09_coarse_to_fine.ipynb (build with: python tutorials/_build.py)

# %% [markdown]
# # 9 · Coarse to fine: why large strokes are born at small sizes
#
# **Why this matters.** Notebook 8 stylized small images. At print size the same objective
# produces a fine, even texture — the painting's brush marks come out small, as if the painting had
# been photographed from far away. The reason is a fixed length: every VGG unit sees a patch of a
# fixed number of *pixels*, its receptive field, whatever the image's size. This notebook measures
# that length against the image, runs `stylize` from coarse to fine (`scales=[...]`: solve at a
# fraction of the size, upsample the result, continue at the next size), and measures what it
# changes and what it costs.

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
from numpynst.arch import layer_table
from numpynst.claims import claim, record
from numpynst.image import load_image, resize_to, sample_path
from numpynst.objective import DEFAULT_STYLE_LAYERS
from numpynst.vgg import VGG, deprocess, preprocess

print("fast mode" if FAST else "full mode")

# %% [markdown]
# ## 1. The receptive field against the image
#
# A unit of layer $l$ depends on a square of input pixels whose side follows the recursion of
# notebook 4: each 3×3 convolution adds $2j$ (with $j$ the layer's spacing, the product of the
# pooling strides before it), each 2×2 pooling adds $j$ and doubles $j$. `numpynst.arch.layer_table`
# keeps the spacing $j$ and the reach $a$ (how far beyond its own $j \times j$ cell a unit sees), so
# the receptive field is $j + 2a$. For the five style layers, and as a fraction of the side of an
# image at the three sizes of a coarse-to-fine run ending at {{full}} px:

# %%
full = 96 if FAST else 256
scales = [0.25, 0.5, 1.0]
table = {layer.name: layer for layer in layer_table("vgg19")}
rf = {name: table[name].spacing + 2 * table[name].reach for name in DEFAULT_STYLE_LAYERS}
print(f"{'layer':14s} {'field':>6s}   " + "   ".join(f"at {int(full * s):3d} px" for s in scales))
for name in DEFAULT_STYLE_LAYERS:
    print(f"{name:14s} {rf[name]:4d} px   " + "   ".join(f"{rf[name] / (full * s):8.2f}  " for s in scales))
record("full", full)
record("rf5", rf["block5_conv1"])
record("rf4", rf["block4_conv1"])
record("rf3", rf["block3_conv1"])
record("frac5_full", rf["block5_conv1"] / full)
record("frac5_coarse", rf["block5_conv1"] / (full * scales[0]))
record("rf5_in_full_px", rf["block5_conv1"] / scales[0])

# %% [markdown]
# A `block5_conv1` unit sees {{rf5}} pixels: {{frac5_full:.2f}} of the side at {{full}} px, but
# {{frac5_coarse:.2f}} image widths at the coarsest scale — there every deep unit sees the whole
# picture. What it sees there, once the result is upsampled 4 times, spans
# {{rf5_in_full_px:.0f}} pixels of the final image. The style term matches the *statistics* of
# such patches, so the largest structure it can organise is of the order of the receptive field
# — in pixels of the image being optimised. At a coarse scale that is a large part of the
# picture.
#
# **Measured, not only counted.** The gradient of one unit with respect to the input is non-zero
# only inside its receptive field (notebook 4 checks this). With average pooling (no max-pooling
# holes) the support of a central `block4_conv1` unit fills its field when the image is larger, and
# the whole image when it is smaller:

# %%
model_avg = VGG.from_h5(pooling="avg")
support = {}
for side in (48, 128) if not FAST else (48, 96):
    x = preprocess(load_image(sample_path("content"), size=side))[:, : side // 16 * 16, : side // 16 * 16]
    a = model_avg.forward(x, ["block4_conv1"])["block4_conv1"]
    seed = np.zeros_like(a)
    ci, cj = a.shape[1] // 2, a.shape[2] // 2
    seed[0, ci, cj, int(np.argmax(a[0, ci, cj]))] = 1.0
    mag = np.abs(model_avg.backward({"block4_conv1": seed})[0]).sum(axis=2)
    rows, cols = np.nonzero(mag > 1e-6 * mag.max())
    support[side] = (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1, x.shape[1], x.shape[2])
    print(f"image {x.shape[1]}x{x.shape[2]}: gradient support of a central block4_conv1 unit "
          f"{support[side][0]}x{support[side][1]} px (field {rf['block4_conv1']} px)")
small, large = support[48], support[max(support)]
claim("support_small", small[0] / small[2], 1.0, 1.0)           # the whole height of the small image
claim("support_large", max(large[:2]), None, rf["block4_conv1"])  # within the field on the larger one
record("support_large_h", large[0])

# %% [markdown]
# On the 48-pixel image the unit's gradient covers the whole height (asserted); on the larger one
# it stays within the field ({{support_large_h}} of {{rf4}} pixels, asserted at most the field).
#
# ## 2. A run from coarse to fine
#
# `stylize(..., scales=[0.25, 0.5, 1])` solves at a quarter of the size, then at half, then at full
# size. Each scale's content *and* style images are resized by the scale, so the style's strokes
# shrink with the picture and keep the same size relative to the receptive fields. Between scales
# the last scale's best image — the float pixels, not a rounded picture — is **upsampled** with a
# Lanczos filter (`numpynst.image.resize_to`, the function that resizes inputs) to the next size
# and starts the next run: the fine scale inherits the coarse layout and only adds detail. We
# record, through `stylize`'s callback, the image and the clock at the end of each scale, and run
# the same budget at full size alone beside it:

# %%
iterations = 3 if FAST else 30
content = load_image(sample_path("content"))
style = load_image(sample_path("ihc"))
model = VGG.from_h5()
marks = []           # (scale, iteration, seconds since the start, image at that point)
t0 = time.perf_counter()


def watch(p):
    marks.append((p.scale, p.iteration, time.perf_counter() - t0, p.x))


# style weight 1 (stylize's default until issue 26 raised it to 10), as when this was measured
multi = numpynst.stylize(content, style, model=model, size=full, iterations=iterations, scales=scales,
                         beta=1.0, tol=None, callback=watch)
t_multi = time.perf_counter() - t0
t0 = time.perf_counter()
single = numpynst.stylize(content, style, model=model, size=full, iterations=iterations, scales=[1.0],
                          beta=1.0, tol=None)
t_single = time.perf_counter() - t0
per_scale = {}
for s in scales:
    rows = [m for m in marks if m[0] == s]
    start = max([m[2] for m in marks if m[0] < s], default=0.0)
    per_scale[s] = (rows[-1][2] - start, deprocess(rows[-1][3]), rows[-1][3].shape)
    print(f"scale {s:4g}: {per_scale[s][2][1]}x{per_scale[s][2][2]} px, {len(rows)} iterations, "
          f"{per_scale[s][0]:.1f} s")
print(f"coarse to fine {t_multi:.0f} s in all, full size alone {t_single:.0f} s")

fig, axes = plt.subplots(1, 5, figsize=(17, 3.6))
panels = [(f"scale {s:g} ({per_scale[s][2][2]}x{per_scale[s][2][1]})", per_scale[s][1]) for s in scales]
panels += [("coarse to fine, final", multi.image), (f"{full} px alone, same iterations", single.image)]
for ax, (title, img) in zip(axes, panels):
    ax.imshow(img)
    ax.set_title(title, fontsize=10)
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# The first panels are the three scales' results at their own sizes (the coarse ones drawn as
# large as the others, so their pixels show); the last two are the final pictures of the two runs.
#
# **What the coarse scales changed.** To compare the *size* of the structures rather than the
# pictures, take what the stylization added, the result minus the photo (luminance), and measure
# its correlation length: the shift at which the added pattern's autocorrelation falls to one half.
# Fine grain decorrelates within a pixel or two; large strokes stay correlated over many.

# %%
def correlation_length(img, ref):
    """Shift (pixels) at which the autocorrelation of the luminance of img - ref falls below 1/2,
    averaged over the two axes (circular autocorrelation by FFT, the mean removed)."""
    y = (img.astype(np.float64) - ref.astype(np.float64)) @ np.array([0.299, 0.587, 0.114])
    y -= y.mean()
    power = np.abs(np.fft.fft2(y)) ** 2
    ac = np.real(np.fft.ifft2(power))
    ac /= ac[0, 0]
    lengths = []
    for profile in (ac[:, 0], ac[0, :]):
        below = np.flatnonzero(profile[: len(profile) // 2] < 0.5)
        lengths.append(float(below[0]) if below.size else float(len(profile) // 2))
    return float(np.mean(lengths))


photo = resize_to(content, multi.image.shape[:2])
len_multi = correlation_length(multi.image, photo)
len_single = correlation_length(single.image, resize_to(content, single.image.shape[:2]))
print(f"correlation length of (result - photo): coarse to fine {len_multi:.1f} px, full size alone {len_single:.1f} px")
record("len_multi", len_multi)
record("len_single", len_single)
claim("len_ratio", len_multi / len_single, 1.2, None, fast=None)

# %% [markdown]
# The pattern the coarse-to-fine run added stays correlated over {{len_multi:.1f}} pixels, the
# single-scale one over {{len_single:.1f}}: {{len_ratio:.1f}} times larger structures (asserted
# above {{len_ratio.lo:g}} in the full run), from the same objective, the same weights and the same
# number of iterations at full size. The strokes were laid down where the image was small and the
# units saw most of it.
#
# ## 3. Upsampling between scales
#
# The start of each finer scale is the previous result, upsampled. How far is that from where the
# finer scale ends, and how good a start is it? The calibrated $J$ at the start and the end of each
# scale (each scale's objective is calibrated anew, at its own size), beside the single-scale run's
# (which starts from the photo), and the mean change that each finer scale makes to its upsampled
# start:

# %%
J = np.asarray(multi.history["J"])
starts = {s: J[k * (iterations + 1)] for k, s in enumerate(scales)}
ends = {s: J[(k + 1) * (iterations + 1) - 1] for k, s in enumerate(scales)}
for s in scales:
    print(f"scale {s:4g}: J at the start {starts[s]:.3f}, at the end {ends[s]:.3f}")
print(f"full size from the photo: J at the start {single.history['J'][0]:.3f}, at the end {single.history['J'][-1]:.3f}")
changes = {}
for prev, s in zip(scales, scales[1:]):
    up = resize_to(per_scale[prev][1].astype(np.float32), per_scale[s][1].shape[:2])
    changes[s] = float(np.abs(per_scale[s][1].astype(float) - np.clip(up, 0, 255)).mean())
    print(f"scale {s:4g}: mean |result - upsampled start| = {changes[s]:.1f} grey levels")
record("J_start_full_c2f", starts[1.0])
record("J_start_photo", single.history["J"][0])
record("J_end_c2f", ends[1.0])
record("J_end_single", single.history["J"][-1])
record("change_half", changes[0.5])
record("change_full", changes[1.0])
record("start_ratio", starts[1.0] / single.history["J"][0])
claim("c2f_ends_lower", ends[1.0] / single.history["J"][-1], 0, 1.0, fast=None)

fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
up = np.clip(resize_to(per_scale[0.5][1].astype(np.float32), per_scale[1.0][1].shape[:2]), 0, 255)
for ax, (title, img) in zip(axes, [("scale 0.5 result", per_scale[0.5][1]),
                                   ("upsampled: the start of scale 1", up.astype(np.uint8)),
                                   ("scale 1 result", per_scale[1.0][1])]):
    ax.imshow(img)
    ax.set_title(title, fontsize=10)
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# The upsampled result starts the full scale at $J = {{J_start_full_c2f:.3f}}$, {{start_ratio:.2f}}
# times the photo's {{J_start_photo:.3f}}: the photo is the content target itself (content term 0),
# while the upsampled picture is already a painting, off the photo's content and short of the fine
# detail that the style statistics at the new size ask for. Yet the coarse-to-fine run *ends* lower,
# $J$ = {{J_end_c2f:.3f}} against {{J_end_single:.3f}} for the same number of iterations at full
# size (asserted): the coarse scales did work that the full scale alone does slowly — arranging
# the large structures. The finest scale changes its start by {{change_full:.1f}} grey levels on
# average (the half scale its own by {{change_half:.1f}}): it sharpens and adds grain; the layout
# of the strokes stays.
#
# ## 4. The cost per scale
#
# An iteration costs one forward and one backward pass, which grow with the number of pixels: a
# quarter of the side is a sixteenth of the work. Measured above (the wall clock per scale, on a
# machine shared with other jobs, so the ratios are approximate):

# %%
px = {s: per_scale[s][2][1] * per_scale[s][2][2] for s in scales}
for s in scales:
    print(f"scale {s:4g}: {px[s]:6d} px ({px[s] / px[1.0]:.3f} of full), {per_scale[s][0]:.1f} s "
          f"({per_scale[s][0] / per_scale[1.0][0]:.3f} of the full scale's time)")
extra = (per_scale[0.25][0] + per_scale[0.5][0]) / per_scale[1.0][0]
record("extra", extra)
record("pixels_extra", (px[0.25] + px[0.5]) / px[1.0])
record("t_ratio_half", per_scale[1.0][0] / per_scale[0.5][0])
claim("coarse_cheaper", extra, 0, 1.0, fast=None)

# %% [markdown]
# The two coarse scales together have {{pixels_extra:.2f}} of the full scale's pixels and took
# {{extra:.2f}} of its time (asserted below 1): the strokes come almost for free. The full scale
# took {{t_ratio_half:.1f}} times as long as the half scale for 4 times the pixels; small images
# pay fixed costs per call (loading, calibrating, Python overhead) that do not shrink with them.
#
# ## Summary
#
# * A VGG unit's receptive field is a fixed number of pixels ({{rf5}} for `block5_conv1`); the
#   style term organises structures up to that size, in pixels of the image being optimised.
# * Coarse to fine optimises first where the receptive fields cover much of the picture, then
#   upsamples (Lanczos, float pixels) and refines: here the added pattern's correlation length grew
#   {{len_ratio:.1f}}-fold for {{extra:.2f}} of the full scale's time extra.
# * The upsampled coarse result starts the full scale higher than the photo does, but the run
#   ends lower ({{J_end_c2f:.3f}} against {{J_end_single:.3f}}); the fine scale mostly adds detail.
#
# Next: [notebook 10](10_gpu_with_cupy.ipynb) runs the same code on a GPU.
#
# ## Exercises
#
# 1. Run `scales=[0.5, 1]` and `scales=[0.125, 0.25, 0.5, 1]`. How does the correlation length
#    change with the coarsest scale?
# 2. Give the single-scale run as many iterations as the coarse-to-fine run's total evaluations
#    cost in time. Does it catch up in $J$? In stroke size?
# 3. Keep the style image at full size at every scale (resize only the content). What happens to
#    the strokes at the coarse scales, and why (notebook 6: the Gram matrices sum over pixels)?
