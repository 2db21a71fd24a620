# Source of tutorials/01_convolution_forward.ipynb (build with: python tutorials/_build.py)

# %% [markdown]
# # 1 · Convolution, forward: loops → im2col → one matrix product
#
# **Why this matters.** Style transfer runs a VGG19 network forward and backward once per
# iteration, hundreds of iterations per picture. VGG19 is sixteen 3×3 convolutions with ReLUs and
# a few poolings in between, and the convolutions take almost all of the time. So we want a
# convolution that is *obviously correct* (a direct transcription of the formula) and one that is
# *fast*, and a way to check that they agree.
#
# This notebook:
#
# 1. writes the definition as loops and checks it against `numpynst`;
# 2. works out the output shape for any padding and stride;
# 3. rewrites the sum as **im2col** — gather every receptive field into one row of a matrix —
#    so that the whole layer becomes **one matrix product** (GEMM), the operation BLAS libraries
#    run at close to the machine's peak speed;
# 4. times {{n_versions}} versions: our loops, the library's naive reference loops, im2col with one
#    GEMM, and the library's automatic choice of algorithm.
#
# Conventions used throughout `numpynst` (those of Keras weight files): activations are
# *channels-last* `(N, H, W, C)` and kernels are `(KH, KW, C_in, C_out)`.

# %%
import os
import time

import numpy as np
import matplotlib.pyplot as plt
from matplotlib_inline.backend_inline import set_matplotlib_formats

FAST = os.environ.get("NUMPYNST_FAST") == "1"   # the test suite sets this: small sizes, quick run
set_matplotlib_formats("jpeg")                   # JPEG figures keep the notebook file small
plt.rcParams.update({"figure.dpi": 80})
np.set_printoptions(precision=4, suppress=True)

from numpynst import layers
from numpynst.claims import claim, record
from numpynst.gradcheck import rel_error
from numpynst.image import load_image, sample_path

rng = np.random.default_rng(0)
print("fast mode" if FAST else "full mode")

# %% [markdown]
# ## 1. The definition
#
# A convolution layer with $F$ filters of size $K_H \times K_W$ over $C$ input channels, stride
# $S$ and zero padding $P$ maps $x$ of shape $(N, H, W, C)$ to
#
# $$
# \text{out}[n, i, j, f] \;=\; b_f \;+\; \sum_{p=0}^{K_H-1} \sum_{q=0}^{K_W-1} \sum_{c=0}^{C-1}
#     \tilde x[n,\; iS + p,\; jS + q,\; c]\; w[p, q, c, f],
# $$
#
# where $\tilde x$ is $x$ with $P$ rows/columns of zeros added on every side. Each output value
# is the dot product of one **receptive field** (a $K_H \times K_W \times C$ window of the input)
# with one filter, plus a bias. Strictly speaking this is a *cross-correlation* (the kernel is not
# flipped); every deep-learning framework computes this and calls it convolution, and so do we.
#
# Here is the formula as loops — deliberately naive, one output number at a time:

# %%
def conv_loops(x, w, b, stride=1, pad=1):
    """out[n, i, j, f] = b[f] + sum_{p,q,c} xpad[n, i*stride + p, j*stride + q, c] * w[p, q, c, f]"""
    N, H, W, C = x.shape
    KH, KW, _, F = w.shape
    Ho = (H + 2 * pad - KH) // stride + 1
    Wo = (W + 2 * pad - KW) // stride + 1
    xpad = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    out = np.zeros((N, Ho, Wo, F), dtype=x.dtype)
    for n in range(N):
        for i in range(Ho):
            for j in range(Wo):
                window = xpad[n, i * stride:i * stride + KH, j * stride:j * stride + KW, :]  # (KH, KW, C)
                for f in range(F):
                    out[n, i, j, f] = np.sum(window * w[:, :, :, f]) + b[f]
    return out

# %% [markdown]
# **Check.** `numpynst.layers` has a reference version (`conv2d_forward_naive`, a loop over output
# positions) and the fast one (`conv2d_forward`). All three compute the same sums in a different
# order, so in float64 they should agree to rounding error: a relative error around
# $10^{-16}$–$10^{-15}$. We try several kernel sizes, strides and paddings, including a non-square
# input and a kernel that does not fit the input evenly.

# %%
cases = [  # (x shape, w shape, stride, pad)
    ((2, 7, 9, 3), (3, 3, 3, 4), 1, 1),
    ((2, 7, 9, 3), (3, 3, 3, 4), 2, 1),
    ((1, 8, 8, 2), (2, 3, 2, 5), 1, 0),
    ((1, 9, 7, 4), (5, 5, 4, 3), 3, 2),
]
for xs, ws, s, p in cases:
    x = rng.standard_normal(xs)
    w = rng.standard_normal(ws)
    b = rng.standard_normal(ws[3])
    ref = conv_loops(x, w, b, s, p)
    naive, _ = layers.conv2d_forward_naive(x, w, b, stride=s, pad=p)
    fast, _ = layers.conv2d_forward(x, w, b, stride=s, pad=p)
    e1, e2 = rel_error(ref, naive), rel_error(ref, fast)
    print(f"x {xs} w {ws} stride {s} pad {p} -> out {ref.shape}:  "
          f"naive {e1:.1e}, fast {e2:.1e}   (should be around 1e-16)")
    assert ref.shape == fast.shape and e1 < 1e-13 and e2 < 1e-13

# %% [markdown]
# ## 2. Shapes, padding and stride
#
# Along one axis the window starts at $0, S, 2S, \dots$ and must end inside the padded input of
# length $H + 2P$, so the number of outputs is
#
# $$
# H_o = \left\lfloor \frac{H + 2P - K_H}{S} \right\rfloor + 1 ,
# $$
#
# likewise $W_o$. Two cases matter for VGG:
#
# * $K = 3, P = 1, S = 1$: $H_o = H$, a **"same"** convolution. Every VGG conv layer is one, so
#   only the poolings shrink the image.
# * $S = 2$ halves the size (rounding down): a strided convolution is a convolution followed by
#   keeping every second row and column.
#
# `numpynst.layers.conv_output_size` is this formula. We check it on the shapes that actually
# come out of the convolution:

# %%
print(f"{'H':>4} {'K':>2} {'S':>2} {'P':>2} {'Ho':>4}")
for H, K, S, P in [(224, 3, 1, 1), (224, 3, 2, 1), (224, 3, 1, 0), (7, 3, 2, 0), (8, 3, 2, 0), (5, 5, 1, 2), (32, 7, 3, 3)]:
    Ho = layers.conv_output_size(H, K, S, P)
    out, _ = layers.conv2d_forward(np.zeros((1, H, H, 1)), np.zeros((K, K, 1, 1)), np.zeros(1), stride=S, pad=P)
    assert out.shape[1:3] == (Ho, Ho)
    print(f"{H:>4} {K:>2} {S:>2} {P:>2} {Ho:>4}")

# %% [markdown]
# **What a filter does.** A $3\times3$ filter that subtracts the left column from the right one
# (a Sobel filter) responds to *vertical* edges; its transpose responds to *horizontal* edges.
# Stacked as two output channels of one layer, `w` has shape `(3, 3, 1, 2)`. With stride 2 the maps
# are half the size: the same edges, sampled more coarsely. (Look at the borders: the zero padding
# is itself an edge, from the image to black.)

# %%
size = 96 if FAST else 192
grey = load_image(sample_path("chelsea"), size=size).mean(axis=2, keepdims=True)[None] / 255.0  # (1, H, W, 1)
sobel = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=float)
w_edges = np.stack([sobel, sobel.T], axis=-1)[:, :, None, :]     # (3, 3, C_in=1, C_out=2)
edges1, _ = layers.conv2d_forward(grey, w_edges, np.zeros(2), stride=1, pad=1)
edges2, _ = layers.conv2d_forward(grey, w_edges, np.zeros(2), stride=2, pad=1)
print("input", grey.shape, "-> stride 1:", edges1.shape, " stride 2:", edges2.shape)

fig, axes = plt.subplots(1, 5, figsize=(15, 2.6))
panels = [(grey[0, :, :, 0], "input"), (edges1[0, :, :, 0], "vertical edges (S=1)"),
          (edges1[0, :, :, 1], "horizontal edges (S=1)"), (edges2[0, :, :, 0], "vertical edges (S=2)"),
          (edges2[0, :, :, 1], "horizontal edges (S=2)")]
for ax, (img, title) in zip(axes, panels):
    if title == "input":
        ax.imshow(img, cmap="gray")
    else:  # symmetric colour scale: red and blue are edges of opposite sign, white is "no edge"
        v = np.percentile(np.abs(img), 99)
        ax.imshow(img, cmap="RdBu", vmin=-v, vmax=v)
    ax.set_title(f"{title}\n{img.shape[0]}x{img.shape[1]}", fontsize=9)
    ax.axis("off")
plt.show()

# %% [markdown]
# ## 3. im2col: the whole layer as one matrix product
#
# The loops do $N H_o W_o F$ small dot products of length $K_H K_W C$. Group them:
#
# * put every receptive field, flattened in $(p, q, c)$ order, as a **row** of a matrix
#   $\text{cols}$ of shape $(N H_o W_o,\; K_H K_W C)$ ("image to columns", the name is historical);
# * put every filter, flattened the same way, as a **column** of $W_2 =$ `w.reshape(KH*KW*C, F)`.
#
# Then all the dot products at once are one matrix product:
#
# $$
# \text{out}_{2D} = \text{cols}\; W_2 + \mathbf{1} b^\top, \qquad
# \text{out} = \text{out}_{2D}.\text{reshape}(N, H_o, W_o, F).
# $$
#
# `w.reshape` is free (channels-last kernels are already stored in $(p, q, c, f)$ order), so all
# the work is in building `cols`. The direct way copies one window per output position:

# %%
def im2col_per_window(x, KH, KW, stride, pad):
    """cols[(n, i, j), (p, q, c)] = xpad[n, i*stride + p, j*stride + q, c]: one copy per output position."""
    N, H, W, C = x.shape
    Ho = (H + 2 * pad - KH) // stride + 1
    Wo = (W + 2 * pad - KW) // stride + 1
    xpad = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    cols = np.empty((N, Ho, Wo, KH * KW * C), dtype=x.dtype)
    for i in range(Ho):
        for j in range(Wo):
            cols[:, i, j, :] = xpad[:, i * stride:i * stride + KH, j * stride:j * stride + KW, :].reshape(N, -1)
    return cols.reshape(N * Ho * Wo, KH * KW * C)

# %% [markdown]
# That is $N H_o W_o$ small copies. `numpynst.layers.im2col` builds the same matrix the other way
# round: for each of the $K_H K_W$ kernel offsets $(p, q)$ it copies **one strided slice** —
# `xpad[:, p : p + S*Ho : S, q : q + S*Wo : S, :]` is exactly the input value at offset $(p, q)$ of
# every window — into its place. Nine big copies for a 3×3 kernel instead of $H_o W_o$ small ones,
# and no index arrays, so the same code runs on a GPU with CuPy (notebook 10). The two matrices
# must be identical (the error should be exactly 0: only copies, no arithmetic), and the GEMM must
# reproduce the loops (around $10^{-16}$):

# %%
x = rng.standard_normal((2, 6, 7, 3))
w = rng.standard_normal((3, 3, 3, 4))
b = rng.standard_normal(4)
for stride, pad in [(1, 1), (2, 0), (2, 1)]:
    cols_a = im2col_per_window(x, 3, 3, stride, pad)
    cols_b = layers.im2col(x, 3, 3, stride, pad)
    Ho, Wo = layers.conv_output_size(6, 3, stride, pad), layers.conv_output_size(7, 3, stride, pad)
    out_gemm = (cols_b @ w.reshape(-1, 4) + b).reshape(2, Ho, Wo, 4)
    err_cols = np.abs(cols_a - cols_b).max()
    err_out = rel_error(out_gemm, conv_loops(x, w, b, stride, pad))
    print(f"stride {stride} pad {pad}: cols {cols_b.shape}, max |difference| {err_cols} (should be 0); "
          f"GEMM vs loops {err_out:.1e} (should be around 1e-16)")
    assert err_cols == 0 and err_out < 1e-13

# %% [markdown]
# What `cols` looks like for one small single-channel image: row $k$ is the $3\times3$ window
# around output pixel $k$. Neighbouring rows share six of their nine values — **each input value is
# copied up to $K_H K_W = 9$ times**. That is the price of the trick.

# %%
tiny = np.arange(1, 26, dtype=float).reshape(1, 5, 5, 1)
cols_tiny = layers.im2col(tiny, 3, 3, 1, 1)
fig, axes = plt.subplots(1, 2, figsize=(9, 4.6), gridspec_kw={"width_ratios": [1, 1.2]})
axes[0].imshow(tiny[0, :, :, 0], cmap="viridis")
for (r, c), v in np.ndenumerate(tiny[0, :, :, 0]):
    axes[0].text(c, r, int(v), ha="center", va="center", color="w", fontsize=9)
axes[0].set_title("input 5x5 (pad 1 adds zeros around it)")
axes[1].imshow(cols_tiny, cmap="viridis", aspect="auto")
for (r, c), v in np.ndenumerate(cols_tiny):
    axes[1].text(c, r, int(v), ha="center", va="center", color="w", fontsize=6)
axes[1].set_title(f"cols: {cols_tiny.shape[0]} windows x {cols_tiny.shape[1]} values")
axes[1].set_xlabel("offset (p, q) in the 3x3 window")
axes[1].set_ylabel("output position (i, j)")
plt.show()

# %% [markdown]
# For a real layer that duplication is large: VGG's `block1_conv2` at 512×512 px has a
# $64$-channel input, so `cols` holds $512 \cdot 512 \cdot 9 \cdot 64$ numbers.

# %%
H = W = 512
for name, C in [("block1_conv2", 64), ("block3_conv1", 128), ("block5_conv1", 512)]:
    h = H // {"block1_conv2": 1, "block3_conv1": 4, "block5_conv1": 16}[name]
    x_mb = h * h * C * 4 / 2**20
    print(f"{name}: input {h}x{h}x{C} float32 = {x_mb:7.1f} MiB,  cols = {9 * x_mb:7.1f} MiB")

# %% [markdown]
# This is why `numpynst.layers.conv2d_forward` builds `cols` in **chunks of output rows** (a few
# MiB each, reused between calls) and runs one GEMM per chunk: the memory no longer grows with the
# image, and the chunk stays in the CPU cache while the GEMM reads it. For wide 3×3 layers it can
# also use Winograd's algorithm (`method="winograd"`, fewer multiplications); all methods compute
# the same function, so they agree to rounding error (float64: around $10^{-15}$):

# %%
x = rng.standard_normal((1, 10, 12, 16))
w = rng.standard_normal((3, 3, 16, 8))
b = rng.standard_normal(8)
ref = conv_loops(x, w, b)
for method in ["im2col", "winograd", "winograd4", "auto"]:
    out, _ = layers.conv2d_forward(x, w, b, method=method)
    err = rel_error(out, ref)
    print(f"method={method:9s}: relative error {err:.1e}   (should be around 1e-15)")
    assert err < 1e-12

# %% [markdown]
# ## 4. How much faster?
#
# A convolution costs $2 N H_o W_o F K_H K_W C$ floating-point operations (a multiply and an add
# per term of the sum). We time the {{n_versions}} versions on one mid-sized layer and report the rate in
# GFLOP/s. The loops pay Python's overhead once per output number; the reference loops once per
# output *position*; the GEMM once per layer.

# %%
def best_time(fn, repeat=3):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


side, C, F = (12, 8, 8) if FAST else (32, 64, 64)
x = rng.standard_normal((1, side, side, C)).astype(np.float32)
w = (rng.standard_normal((3, 3, C, F)) * 0.1).astype(np.float32)
b = np.zeros(F, dtype=np.float32)
flops = 2 * side * side * F * 9 * C
timings = {
    "loops (this notebook)": best_time(lambda: conv_loops(x, w, b), repeat=1),
    "conv2d_forward_naive": best_time(lambda: layers.conv2d_forward_naive(x, w, b)),
    "im2col + one GEMM": best_time(lambda: layers.conv2d_forward(x, w, b, method="im2col")),
    "conv2d_forward (auto)": best_time(lambda: layers.conv2d_forward(x, w, b)),
}
print(f"x (1, {side}, {side}, {C}), w (3, 3, {C}, {F}): {flops / 1e6:.1f} MFLOP")
base = timings["loops (this notebook)"]
for name, t in timings.items():
    print(f"  {name:24s} {t * 1e3:9.2f} ms   {flops / t / 1e9:8.2f} GFLOP/s   {base / t:8.0f}x the loops")
record("n_versions", len(timings))
record("gemm_rate", flops / timings["im2col + one GEMM"] / 1e9)
claim("gemm_speedup", base / timings["im2col + one GEMM"], 100, None, fast=None)   # tiny in fast mode

# %% [markdown]
# Finally, why all this matters: the floating-point work of one VGG19 forward pass, layer by layer
# (all sixteen conv layers; style transfer stops at `block5_conv1`, and its backward pass to the
# pixels, without weight gradients, costs about as much again: one GEMM per layer for $dx$).

# %%
from numpynst.vgg import ARCH_BLOCKS

widths = (64, 128, 256, 512, 512)
side, c_in, total = 512, 3, 0.0
rows = []
for block, (n_conv, width) in enumerate(zip(ARCH_BLOCKS["vgg19"], widths), 1):
    for k in range(1, n_conv + 1):
        gflop = 2 * side * side * width * 9 * c_in / 1e9
        rows.append((f"block{block}_conv{k}", side, c_in, width, gflop))
        total += gflop
        c_in = width
    side //= 2
for name, s, ci, co, g in rows:
    print(f"{name:13s} {s:4d}x{s:<4d} {ci:4d} -> {co:4d} channels {g:7.2f} GFLOP")
print(f"{'total':13s} {'':33s} {total:7.2f} GFLOP per forward pass at 512x512")
record("gflop_512", total)
record("forward_512_s", total / record("gemm_rate", flops / timings["im2col + one GEMM"] / 1e9))

# %% [markdown]
# ## Summary
#
# * A convolution output is the dot product of a receptive field with a filter, plus a bias;
#   $H_o = \lfloor (H + 2P - K)/S \rfloor + 1$.
# * im2col turns all those dot products into **one matrix product** `cols @ w.reshape(-1, F)`, at
#   the price of copying every input value up to $K_H K_W$ times — so `numpynst` builds `cols`
#   in chunks.
# * Building `cols` with one strided slice per kernel offset needs no index arrays and runs
#   unchanged on NumPy and CuPy.
# * Every version agrees with the loops to ~$10^{-16}$ in float64; the GEMM ran
#   {{gemm_speedup:.0f}} times faster than the loops here ({{gemm_rate:.0f}} GFLOP/s).
# * One VGG19 forward pass at 512×512 is {{gflop_512:.0f}} GFLOP; at the GEMM's rate measured above
#   that is {{forward_512_s:.0f}} s, so the GEMM's rate decides whether a picture takes minutes or hours.
#
# Next: [notebook 2](02_convolution_backward.ipynb) derives the backward pass.
#
# ## Exercises
#
# 1. Show that a $1\times1$ convolution is the matrix product `x.reshape(-1, C) @ w.reshape(C, F)`,
#    and check it with `layers.conv2d_forward(..., pad=0)`.
# 2. Add *dilation* $D$ to `conv_loops` (the window reads `xpad[n, i*S + p*D, j*S + q*D, c]`).
#    What is the new output size? Which line of `layers.im2col` would change?
# 3. With stride $S = K$ the windows do not overlap. How many times is each input value copied
#    into `cols` then? Verify by counting with `layers.im2col` on an array of ones.
# 4. Time `conv2d_forward(..., method="im2col")` for $C = F = 16, 64, 256$ at a fixed image size.
#    Why does the GFLOP/s rate grow with the channel count?
