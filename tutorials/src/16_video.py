# Source of tutorials/16_video.ipynb (build with: python tutorials/_build.py)

# %% [markdown]
# # 16 · Video without flicker: optical flow, warping, occlusions and a temporal cost
#
# **Why this matters.** Stylize a clip one frame at a time and it flickers: every frame's
# optimisation lands in its own local minimum, so brush strokes jump about although the scene
# barely moves. Ruder, Dosovitskiy and Brox ("Artistic style transfer for videos", GCPR 2016) give
# the remedy used here:
#
# 1. start frame $t$ from the previous *result*, moved along the motion (warped by the optical flow);
# 2. add a **temporal cost** that penalises departing from that warped result, except where the
#    flow cannot be trusted (occlusions, motion boundaries).
#
# This notebook builds each piece and checks it: optical flow (section 1), warping and its
# gradient (2), occlusion detection (3), the temporal cost (4), and then measures flicker with and
# without the temporal terms (5). It uses a clip whose motion we *know*, so every estimate can be
# compared with the truth.
#
# Prerequisites: notebook 8 (style transfer), and the gradient-checking habit of notebooks 2 and 5.

# %%
import os
import time

import numpy as np
import matplotlib.pyplot as plt
from matplotlib.colors import hsv_to_rgb
from matplotlib_inline.backend_inline import set_matplotlib_formats

FAST = os.environ.get("NUMPYNST_FAST") == "1"   # the test suite sets this: small sizes, quick run
set_matplotlib_formats("jpeg")
plt.rcParams.update({"figure.dpi": 80})

from numpynst.gradcheck import numerical_gradient, rel_error
from numpynst.image import load_image, sample_path
from numpynst.video.flow import compute_flow, consistency_weights
from numpynst.video.synthetic import known_motion_clip
from numpynst.video.temporal import temporal_cost
from numpynst.video.warp import plan, warp, warp_backward, warp_naive

rng = np.random.default_rng(0)
print("fast mode" if FAST else "full mode")

# %% [markdown]
# ## 0. A clip with known motion
#
# :func:`known_motion_clip` pans and zooms across the bundled coffee photo by fractions of a pixel
# per frame and moves a disc cut from the cat photo over it. Because it rendered the frames, it
# knows for every pixel of frame $t$ where that point was in frame $t-1$ (the true **backward flow**)
# and which pixels were visible in both frames.

# %%
clip = known_motion_clip(load_image(sample_path("coffee"), size=256), load_image(sample_path("chelsea"), size=120),
                         n_frames=8)
T, H, W, _ = clip.frames.shape
print(f"{T} frames of {W}x{H}; visible in consecutive frames: {clip.visible[1:].mean():.1%} of the pixels")
fig, axes = plt.subplots(1, 4, figsize=(12, 2.6))
for ax, t in zip(axes, (0, 2, 4, 6)):
    ax.imshow(clip.frames[t]); ax.set_title(f"frame {t}"); ax.axis("off")
plt.show()

# %% [markdown]
# ## 1. Optical flow in one page
#
# Optical flow gives every pixel a displacement $(u, v)$ from one frame to the next. The
# assumption behind every method is **brightness constancy**: a point of the scene keeps its
# brightness as it moves,
#
# $$ I(x + u,\; y + v,\; t + 1) = I(x, y, t). $$
#
# A first-order Taylor expansion turns it into one linear equation per pixel,
# $I_x u + I_y v + I_t = 0$: one equation, two unknowns. Only the flow component along the image
# gradient is determined (the *aperture problem*), so every method adds an assumption: the flow is
# constant in a small window (Lucas–Kanade), or smooth over the image (Horn–Schunck). Large motions
# break the linearisation, so methods work coarse to fine over an image pyramid. OpenCV's **DIS**
# (dense inverse search, Kroeger et al. 2016) matches small patches by inverse-compositional
# Gauss–Newton on each pyramid level and blends them into a dense field; Farnebäck (2003) fits a
# quadratic polynomial to every neighbourhood and reads the displacement off how it moved.
#
# Writing a flow method is not this project's lesson: OpenCV computes it
# (:func:`numpynst.video.flow.compute_flow`). We check it against the truth. The usual colour code
# shows direction as hue and length as brightness.

# %%
def flow_to_rgb(f, vmax=None):
    mag, ang = np.hypot(f[..., 0], f[..., 1]), np.arctan2(f[..., 1], f[..., 0])
    vmax = vmax or max(mag.max(), 1e-6)
    hsv = np.stack([(ang + np.pi) / (2 * np.pi), np.ones_like(mag), np.clip(mag / vmax, 0, 1)], -1)
    return hsv_to_rgb(hsv)


t = 4
est = {m: compute_flow(clip.frames[t], clip.frames[t - 1], m) for m in ("dis", "farneback")}
vis = clip.visible[t]
for m, f in est.items():
    epe = np.hypot(*(f - clip.flows[t]).transpose(2, 0, 1))
    print(f"{m:9}: endpoint error on visible pixels: median {np.median(epe[vis]):.2f} px, "
          f"mean {epe[vis].mean():.2f} px (true motion up to {np.hypot(*clip.flows[t].transpose(2, 0, 1)).max():.2f} px)")
vmax = np.hypot(*clip.flows[t].transpose(2, 0, 1)).max()
fig, axes = plt.subplots(1, 3, figsize=(12, 3))
for ax, (title, f) in zip(axes, [("true backward flow", clip.flows[t]), ("DIS", est["dis"]), ("Farnebäck", est["farneback"])]):
    ax.imshow(flow_to_rgb(f, vmax)); ax.set_title(title); ax.axis("off")
plt.show()

# %% [markdown]
# ## 2. Warping and its gradient
#
# A backward flow $w$ says where each pixel of frame $t$ *was*, so the previous result moved onto
# frame $t$'s pixels is $\mathrm{warp}(x_{t-1}, w)(p) = x_{t-1}(p + w(p))$. The point $p + w(p)$
# falls between four pixels; with $i_0 = \lfloor y \rfloor$, $j_0 = \lfloor x \rfloor$,
# $a = y - i_0$, $b = x - j_0$, **bilinear** interpolation is
#
# $$ \mathrm{out}_{ij} = (1-a)(1-b)\, I_{i_0 j_0} + (1-a)\,b\, I_{i_0, j_0+1} + a(1-b)\, I_{i_0+1, j_0} + ab\, I_{i_0+1, j_0+1}. $$
#
# For a fixed flow this is linear in the image: $\mathrm{out} = M I$ with a sparse $M$ holding
# four weights per row. So the gradient of any loss $L$ with respect to the image is
# $\partial L/\partial I = M^\top\, \partial L/\partial \mathrm{out}$: each output pixel sends its
# upstream gradient back to its four sources with the same weights. Several outputs can read the
# same source, so this is a scatter-**add** with repeated indices, which
# `numpynst.video.warp.warp_backward` does with `bincount` (plain fancy-index `+=` would keep only
# one of the duplicates). Three checks: against the plain loop, the adjoint identity
# $\langle MI, G\rangle = \langle I, M^\top G\rangle$, and central differences in float64.

# %%
img = rng.standard_normal((9, 11, 3))
flow = rng.uniform(-3, 3, size=(9, 11, 2))
G = rng.standard_normal((9, 11, 3))
p = plan(flow)
print("vectorised vs loop, relative error:", rel_error(warp(img, p), warp_naive(img, flow)))
adj = abs(np.sum(warp(img, p) * G) - np.sum(img * warp_backward(G, p)))
print("adjoint identity, |<MI,G> - <I,M^T G>|:", adj)
numeric = numerical_gradient(lambda z: np.sum(G * warp(z, p)), img.copy())
err = rel_error(warp_backward(G, p), numeric)
print("backward vs central differences, relative error:", err)
assert err < 1e-7 and adj < 1e-10

# %% [markdown]
# With the true flow the previous frame, warped, matches the current one wherever the point was
# visible; what is left is interpolation (bilinear sampling blurs a little) and rounding. Where it
# was not visible (the disc's trail, the edge the camera uncovers) the warp has nothing right to
# show.

# %%
warped = warp(clip.frames[t - 1].astype(np.float64), clip.flows[t])
diff = np.abs(clip.frames[t] - warped).mean(-1)
print(f"|frame t - warp(frame t-1)|: {diff[vis].mean():.2f} grey levels on visible pixels, "
      f"{diff[~vis].mean():.2f} on the others; without warping {np.abs(clip.frames[t] - clip.frames[t - 1].astype(float)).mean(-1)[vis].mean():.2f}")
fig, axes = plt.subplots(1, 3, figsize=(12, 3))
for ax, (title, im) in zip(axes, [("frame t", clip.frames[t]), ("frame t-1 warped", np.clip(warped, 0, 255).astype(np.uint8)),
                                  ("|difference|", diff)]):
    ax.imshow(im, cmap="magma" if im.ndim == 2 else None); ax.set_title(title); ax.axis("off")
plt.show()

# %% [markdown]
# ## 3. Occlusion detection
#
# Without the truth we must guess where the flow is untrustworthy. Ruder et al.'s two tests on the
# estimated flows, both in `numpynst.video.flow`:
#
# * **forward–backward consistency.** Follow the backward flow $w$ from frame $t$ to $t-1$, then
#   the forward flow $w'$ (from $t-1$ to $t$, read at the point reached) back: a visible point
#   returns home, $w + w' \approx 0$. A point that was hidden in frame $t-1$ does not:
#   $|w + w'|^2 > 0.01\,(|w|^2 + |w'|^2) + 0.5$ marks a *disocclusion*;
# * **motion boundaries**: $|\nabla u|^2 + |\nabla v|^2 > 0.01\,|w|^2 + 0.002$ — at the edge of a
#   moving object the flow is least reliable.
#
# Pixels whose source lies outside the previous frame are dropped too. The weights are 0 there and
# 1 elsewhere. How well do they find the truly hidden pixels?

# %%
back = est["dis"]
fwd = compute_flow(clip.frames[t - 1], clip.frames[t], "dis")
wts = consistency_weights(back, fwd)
hidden = ~vis
print(f"weight 0 on {1 - wts.mean():.1%} of the pixels; of the truly hidden pixels "
      f"{(wts[hidden] == 0).mean():.1%} get weight 0, of the visible ones {(wts[vis] == 0).mean():.1%}")
fig, axes = plt.subplots(1, 2, figsize=(8, 3))
axes[0].imshow(hidden, cmap="gray"); axes[0].set_title("truly not visible in t-1")
axes[1].imshow(wts == 0, cmap="gray"); axes[1].set_title("weight 0 (DIS, both tests)")
for ax in axes:
    ax.axis("off")
plt.show()

# %% [markdown]
# ## 4. The temporal cost
#
# With $t = \mathrm{warp}(x_{t-1}, w)$ the warped previous result and $D = H\,W\,C$:
#
# $$ J_\text{temporal}(x) = \frac1D \sum_{i,j} w_{ij} \sum_c (x_{ijc} - t_{ijc})^2,
# \qquad \frac{\partial J_\text{temporal}}{\partial x_{ijc}} = \frac2D\, w_{ij}\,(x_{ijc} - t_{ijc}). $$
#
# The previous result is a constant here, so the gradient needs no warp backward at all: it is
# a weighted difference. The video loop adds $\gamma\, J_\text{temporal} / s$ to the style-transfer
# objective (with calibrated weights, $s$ is the variance of the frame's pixel values, so the term
# is relative like the others; `numpynst.video.temporal`). Checked like every cost here:

# %%
x = rng.standard_normal((1, 6, 7, 3))
target = rng.standard_normal((1, 6, 7, 3))
w_ = (rng.uniform(size=(6, 7)) > 0.3).astype(float)
J, g = temporal_cost(x, target, w_)
err = rel_error(g, numerical_gradient(lambda z: temporal_cost(z, target, w_)[0], x.copy()))
print(f"J = {float(J):.4f}; gradient vs central differences, relative error {err:.1e}")
assert err < 1e-7

# %% [markdown]
# ## 5. Flicker, measured
#
# Now the whole loop, `numpynst.video.stylize_video` (the `numpynst video` command): every frame
# stylized in the bundled `ihc` style, once **independently** and once **with the temporal terms**
# (warped start + temporal cost, DIS flow). The measure uses the *true* flow, so it does not
# flatter the method with its own estimate: the temporal error of frame $t$ is
# $\mathrm{mean}\,|\mathrm{out}_t - \mathrm{warp}(\mathrm{out}_{t-1}, w_\text{true})|$ over the truly
# visible pixels. The input clip's own value is the floor: interpolation alone.
#
# (In fast mode a tiny random VGG and a few iterations stand in for VGG19: the numbers then only
# show that the code runs.)

# %%
import tempfile
from pathlib import Path

from numpynst.image import save_image
from numpynst.video import stylize_video

# the same scene at half the size (a VGG19 iteration on a 2-core CPU then takes a fraction of a second)
clip = known_motion_clip(load_image(sample_path("coffee"), size=128), load_image(sample_path("chelsea"), size=60),
                         n_frames=6, size=(48, 64), pan=(0.65, 0.22), radius=9, start=(15, 20), velocity=(1.85, 0.6))
n = len(clip.frames)
work = Path(tempfile.mkdtemp())
(work / "in").mkdir()
for i in range(n):
    save_image(work / "in" / f"{i:05d}.png", clip.frames[i])     # a folder of numbered frames
settings = dict(iterations=2 if FAST else 10, log=None, beta=1.0)   # style weight 1, as when measured
if FAST:
    from numpynst.testing import write_tiny_vgg_h5
    settings["weights"] = str(write_tiny_vgg_h5(work / "tiny.h5"))


def temporal_errors(frames):
    return [np.abs(frames[k].astype(float) - warp(frames[k - 1].astype(float), clip.flows[k]))[clip.visible[k]].mean()
            for k in range(1, len(frames))]


def run(name, independent):
    t0 = time.perf_counter()
    r = stylize_video(work / "in", str(sample_path("ihc")), work / name, independent=independent, **settings)
    print(f"{name:12}: {r.stylized} frames in {time.perf_counter() - t0:.0f} s")
    return np.stack([load_image(work / name / f"{k:05d}.png") for k in range(n)])


results = {"independent": run("independent", True)}

# %%
results["temporal"] = run("temporal", False)
floor = np.mean(temporal_errors(clip.frames))
errs = {k: temporal_errors(v) for k, v in results.items()}
print(f"input clip (floor): {floor:.2f}")
for k, e in errs.items():
    print(f"{k:12}: mean temporal error {np.mean(e):.2f} grey levels  (per frame: {', '.join(f'{v:.1f}' for v in e)})")
print(f"temporal / independent: {np.mean(errs['temporal']) / np.mean(errs['independent']):.2f}")

# %%
fig, axes = plt.subplots(2, 4, figsize=(12, 4.6))
for r_, name in enumerate(results):
    for c, k in enumerate(range(n - 4, n)):
        axes[r_, c].imshow(results[name][k]); axes[r_, c].set_xticks([]); axes[r_, c].set_yticks([])
        axes[0, c].set_title(f"frame {k}")
    axes[r_, 0].set_ylabel(name)
plt.tight_layout(); plt.show()

plt.figure(figsize=(6, 3))
for k, e in errs.items():
    plt.plot(range(1, n), e, "o-", label=k)
plt.axhline(floor, color="gray", ls=":", label="input clip (interpolation)")
plt.xlabel("frame t"); plt.ylabel("mean |out_t - warp(out_t-1)|"); plt.legend(); plt.tight_layout(); plt.show()

# %% [markdown]
# ## Summary
#
# * Optical flow rests on brightness constancy and an extra smoothness assumption; OpenCV's DIS
#   gives it in milliseconds at these sizes, close to the true motion away from the moving edges.
# * Bilinear warping is linear in the image; its backward is the transpose, a scatter-add with
#   repeated indices (`bincount`), checked against central differences.
# * Forward–backward consistency and motion boundaries find where the flow cannot be trusted;
#   those pixels get weight 0.
# * The temporal cost is a weighted squared distance to the warped previous result; with the warped
#   start it makes consecutive results agree along the motion, which the measurement shows directly
#   against the true flow. `benchmarks/video_flicker.py` and `docs/video.md` give the figures for
#   longer runs and several temporal weights.
#
# **Exercises.** (1) Replace DIS by Farnebäck (`flow="farneback"`) and compare the temporal error.
# (2) Set the temporal weight to 0 but keep the warped start: how much of the gain is the start
# alone? (3) Ruder et al. also use *long-term* terms (frames $t-2$, $t-4$, ...) and a multi-pass
# scheme alternating the direction; sketch how `TemporalObjective` would take several targets.
