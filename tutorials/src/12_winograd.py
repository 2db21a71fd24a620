# Source of tutorials/12_winograd.ipynb (build with: python tutorials/_build.py)

# %% [markdown]
# # 12 · The speed-up that runs: Winograd's F(2×2, 3×3)
#
# **Why this matters.** Nearly all of a style-transfer iteration is 3×3 convolutions (sixteen of
# them in VGG19, forward and backward). Notebook 1 computed one as a matrix product (im2col):
# $9\,C F$ multiply-adds per output pixel. `numpynst` does not run that on the CPU: for VGG's
# layers it runs **Winograd's minimal filtering** algorithm (Lavin & Gray, 2015), which computes
# a 2×2 block of outputs with 16 multiplications per channel pair instead of 36. This notebook
# derives it — first the 1-D F(2, 3), then the 2-D version, which nests the 1-D one along rows and
# columns — checks every step against the direct convolution, and ends at the library's code,
# `numpynst/layers/fast/winograd.py`, so that you can read the function that actually runs.
#
# Prerequisites: [notebook 1](01_convolution_forward.ipynb) (the convolution and its loops).

# %%
import os
import time

import numpy as np
import matplotlib.pyplot as plt
from matplotlib_inline.backend_inline import set_matplotlib_formats

FAST = os.environ.get("NUMPYNST_FAST") == "1"   # the test suite sets this: small sizes, quick run
set_matplotlib_formats("jpeg")
plt.rcParams.update({"figure.dpi": 80})

from numpynst import layers
from numpynst.claims import claim, record
from numpynst.gradcheck import rel_error
from numpynst.layers.fast import winograd

rng = np.random.default_rng(0)
print("fast mode" if FAST else "full mode")

# %% [markdown]
# ## 1. The 1-D problem: two outputs of a 3-tap filter
#
# A convolutional layer (in the deep-learning sense: a *correlation*) with a 3-tap filter $g$
# computes from four inputs $d_0..d_3$ two outputs,
#
# $$
# y_0 = d_0 g_0 + d_1 g_1 + d_2 g_2, \qquad y_1 = d_1 g_0 + d_2 g_1 + d_3 g_2 ,
# $$
#
# six multiplications. The outputs share inputs ($d_1$, $d_2$) and all share the filter, and
# Winograd found that four multiplications suffice. The cleanest way to see where they come
# from is through **polynomials**.
#
# **Step 1: a product of polynomials with four multiplications.** Multiply
# $U(t) = u_0 + u_1 t$ by $V(t) = g_0 + g_1 t + g_2 t^2$. The product $Q = U V$ has degree 3, so
# four numbers pin it down — its values at four points. Take $t = 0, 1, -1$ and "$\infty$" (the
# leading coefficient, $u_1 g_2$):
#
# $$
# Q(0) = u_0 g_0, \quad Q(1) = (u_0 + u_1)(g_0 + g_1 + g_2), \quad
# Q(-1) = (u_0 - u_1)(g_0 - g_1 + g_2), \quad Q(\infty) = u_1 g_2 ,
# $$
#
# one multiplication each. The coefficients $s_k = \sum_{i + j = k} u_i g_j$ come back by
# interpolation: $s_0 = Q(0)$, $s_3 = Q(\infty)$, and from $Q(\pm 1) = s_0 \pm s_1 + s_2 \pm s_3$,
# $s_1 = \frac{Q(1) - Q(-1)}{2} - s_3$ and $s_2 = \frac{Q(1) + Q(-1)}{2} - s_0$. In matrices:
#
# $$
# s = M\,\big[(E_g\, g) \odot (E_u\, u)\big], \quad
# E_u = \begin{pmatrix} 1 & 0 \\ 1 & 1 \\ 1 & -1 \\ 0 & 1 \end{pmatrix}, \;
# E_g = \begin{pmatrix} 1 & 0 & 0 \\ 1 & 1 & 1 \\ 1 & -1 & 1 \\ 0 & 0 & 1 \end{pmatrix}, \;
# M = \begin{pmatrix} 1 & 0 & 0 & 0 \\ 0 & \frac12 & -\frac12 & -1 \\ -1 & \frac12 & \frac12 & 0 \\ 0 & 0 & 0 & 1 \end{pmatrix}.
# $$
#
# **Step 2: transpose.** For a fixed $g$, $u \mapsto s$ is a linear map, a $4 \times 2$ matrix
# $K_g$ with $(K_g)_{ki} = g_{k-i}$. Our layer's map $d \mapsto y$ is its **transpose**:
# $y_i = \sum_k d_k\, g_{k-i} = (K_g^\top d)_i$. Transposing
# $K_g = M\, \mathrm{diag}(E_g g)\, E_u$ gives an algorithm for $y$ with the same four products:
#
# $$
# y = E_u^\top \big[(E_g\, g) \odot (M^\top d)\big]
# \qquad\text{i.e.}\qquad
# y = A_W^\top \big[(\Gamma g) \odot (B^\top d)\big], \quad A_W^\top = E_u^\top,\; \Gamma = E_g,\; B^\top = M^\top .
# $$
#
# $\Gamma g$ (the filter's four transformed values) is computed once per filter and reused for every
# output; $B^\top d$ and $A_W^\top m$ take only additions and halvings. Let us check it against the
# two sums above, with random numbers:

# %%
E_u = np.array([[1, 0], [1, 1], [1, -1], [0, 1]], dtype=float)
E_g = np.array([[1, 0, 0], [1, 1, 1], [1, -1, 1], [0, 0, 1]], dtype=float)
C = np.array([[1, 0, 0, 0], [0, 0.5, -0.5, -1], [-1, 0.5, 0.5, 0], [0, 0, 0, 1]])

u, g = rng.standard_normal(2), rng.standard_normal(3)
s = C @ ((E_g @ g) * (E_u @ u))                       # four products
print("polynomial product, 4 products:", s, "\n                      np.convolve:", np.convolve(u, g))
assert np.allclose(s, np.convolve(u, g), rtol=1e-14, atol=1e-14)

A_T, G, B_T = E_u.T, E_g, C.T


def f23(d, g):
    """y (2,) = the 3-tap correlation of d (4,) with g (3,), by F(2, 3): four multiplications."""
    return A_T @ ((G @ g) * (B_T @ d))


def f23_direct(d, g):
    return np.array([d[0] * g[0] + d[1] * g[1] + d[2] * g[2], d[1] * g[0] + d[2] * g[1] + d[3] * g[2]])


worst = 0.0
for _ in range(1000):
    d, g = rng.standard_normal(4), rng.standard_normal(3)
    worst = max(worst, rel_error(f23(d, g), f23_direct(d, g)))
print(f"F(2,3) vs the direct sums, 1000 random (d, g): worst relative error {worst:.1e} (rounding: 1e-16 to a few 1e-15)")
assert worst < 1e-14

# %% [markdown]
# Written out, the four products are
# $m_0 = (d_0 - d_2)\,g_0$, $m_1 = (d_1 + d_2)\,\frac{g_0 + g_1 + g_2}{2}$,
# $m_2 = (d_2 - d_1)\,\frac{g_0 - g_1 + g_2}{2}$, $m_3 = (d_3 - d_1)\,g_2$, and
# $y_0 = m_0 + m_1 + m_2$, $y_1 = m_1 - m_2 + m_3$ — expand them and every cross term cancels.
# The halves can sit in $B^\top$ (as derived) or in $\Gamma$ (once per filter, free at run time); the
# library puts them in $\Gamma$, and flips the sign of the fourth row. Such diagonal rescalings leave
# the result unchanged as long as, position by position, the factors on $A_W^\top$, $\Gamma$ and $B^\top$
# multiply to one. The library's three matrices (from the docstring of `winograd.py`) are exactly
# ours rescaled:

# %%
B_T_lib = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=float)
G_lib = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
A_T_lib = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=float)
on_B, on_G, on_A = np.array([1, 2, 2, -1.0]), np.array([1, 0.5, 0.5, 1]), np.array([1, 1, 1, -1.0])
assert np.array_equal(B_T_lib, on_B[:, None] * B_T) and np.array_equal(G_lib, on_G[:, None] * G)
assert np.array_equal(A_T_lib, A_T * on_A[None, :]) and np.array_equal(on_B * on_G * on_A, np.ones(4))
d, g = rng.standard_normal(4), rng.standard_normal(3)
print("library matrices:", A_T_lib @ ((G_lib @ g) * (B_T_lib @ d)), " ours:", f23(d, g))

# %% [markdown]
# **Counting.** Per pair of outputs: direct, $2 \times 3 = 6$ multiplications; F(2, 3), 4 —
# plus $\Gamma g$, which is computed once per filter and reused across the whole image, and additions
# ($B^\top d$: 4, $A_W^\top m$: 4). On a long signal, F(2, 3) runs over tiles of four inputs that
# overlap by two (each tile makes two outputs):

# %%
def correlate_f23(x, g):
    """3-tap 'valid' correlation of a 1-D x by F(2, 3) over overlapping tiles; len(x) - 2 must be even."""
    Gg = G @ g                                          # once per filter
    tiles = np.lib.stride_tricks.sliding_window_view(x, 4)[::2]   # (n_tiles, 4), stride 2
    return ((Gg * (tiles @ B_T.T)) @ A_T.T).reshape(-1)           # 4 products per tile


x = rng.standard_normal(1002)
g = rng.standard_normal(3)
direct = np.correlate(x, g, mode="valid")
err = rel_error(correlate_f23(x, g), direct)
n_out = direct.size
print(f"{n_out} outputs: direct {3 * n_out} multiplications, F(2,3) {4 * n_out // 2} (+3 for G g); "
      f"relative error {err:.1e}")
assert err < 1e-14

# %% [markdown]
# ## 2. Two dimensions: nest the 1-D algorithm
#
# A 3×3 filter on a 4×4 input tile $d$ gives a 2×2 output tile. The 2-D correlation is a 1-D
# correlation along the rows of a 1-D correlation along the columns, so apply F(2, 3) once per
# axis — $B^\top$ on the left *and* $B$ on the right, likewise for $\Gamma$ and $A_W$:
#
# $$
# Y_{2\times2} = A_W^\top \Big[ (\Gamma\, g\, \Gamma^\top) \odot (B^\top d\, B) \Big] A_W .
# $$
#
# $\Gamma g \Gamma^\top$ and $B^\top d B$ are 4×4, so the element-wise product is **16 multiplications**
# for 4 outputs, against $4 \times 9 = 36$ directly: 2.25 times fewer. With $C$ input channels the
# products are summed over $c$ before $A_W^\top \cdot A_W$ (which is linear), so for each of the 16
# positions the sum over channels is a matrix product — the whole layer becomes **16 matrix
# products** of (tiles × $C$) by ($C$ × $F$). Check one tile against the direct sums:

# %%
def f22_33(d, g):
    """Y (2, 2) from a 4x4 tile d and a 3x3 filter g: 16 products."""
    return A_T_lib @ ((G_lib @ g @ G_lib.T) * (B_T_lib @ d @ B_T_lib.T)) @ A_T_lib.T


d, g = rng.standard_normal((4, 4)), rng.standard_normal((3, 3))
direct = np.array([[np.sum(d[i:i + 3, j:j + 3] * g) for j in range(2)] for i in range(2)])
err = rel_error(f22_33(d, g), direct)
print(f"one tile: F(2x2,3x3) vs the direct 3x3 sums, relative error {err:.1e}; products 16 vs 36")
assert err < 1e-14

# %% [markdown]
# ## 3. The library's function
#
# `numpynst/layers/fast/winograd.py` is this formula at scale. `transform_weights(w)` computes
# $U = \Gamma g \Gamma^\top$ for every channel pair, `w (3, 3, C, F) -> U (16, C, F)`, with the library's
# $\Gamma$; `conv3x3(x, U, b)` cuts the zero-padded input into 4×4 tiles that overlap by 2, applies
# $B^\top d B$ to all of them, does the 16 matrix products `V[k] @ U[k]`, applies $A_W^\top \cdot A_W$,
# and writes the 2×2 output tiles (odd sizes get cut edge tiles). Its first step, against our $\Gamma$:

# %%
Cin, Fout = 3, 4
w = rng.standard_normal((3, 3, Cin, Fout))
U = winograd.transform_weights(w)                     # (16, Cin, Fout)
ours = np.stack([[G_lib @ w[:, :, c, f] @ G_lib.T for f in range(Fout)] for c in range(Cin)])  # (C, F, 4, 4)
err = rel_error(U, ours.transpose(2, 3, 0, 1).reshape(16, Cin, Fout))
print(f"transform_weights vs G g G^T: relative error {err:.1e}")
assert err < 1e-15

# %% [markdown]
# And the whole convolution against `conv2d_forward_naive`, the loop of notebook 1, in float64 on
# odd sizes (partial edge tiles) — then in float32, where the two algorithms round differently.
# Both agree to rounding: at most {{wino_err64:.0e}} and {{wino_err32:.0e}} relative in this run, a few
# machine epsilons ({{eps64:.1e}} and {{eps32:.1e}}; asserted below {{wino_err64.hi:.0e}} and {{wino_err32.hi:.0e}}).

# %%
worst = {}
for dtype, bound in ((np.float64, 1e-14), (np.float32, 1e-5)):
    for shape in ((1, 7, 9, 3), (2, 10, 6, 5)):
        x = rng.standard_normal(shape).astype(dtype)
        w = rng.standard_normal((3, 3, shape[3], 4)).astype(dtype)
        b = rng.standard_normal(4).astype(dtype)
        fast = winograd.conv3x3(x, winograd.transform_weights(w), b)
        naive = layers.conv2d_forward_naive(x, w, b, stride=1, pad=1)[0]
        err = rel_error(fast, naive)
        print(f"{np.dtype(dtype).name}, x {shape}: winograd.conv3x3 vs naive loops, relative error {err:.1e}")
        worst[dtype] = max(worst.get(dtype, 0.0), err)
claim("wino_err64", worst[np.float64], None, 1e-14)
claim("wino_err32", worst[np.float32], None, 1e-5)
record("eps64", float(np.finfo(np.float64).eps))
record("eps32", float(np.finfo(np.float32).eps))

# %% [markdown]
# ## 4. What it buys
#
# Multiplications per output pixel and channel pair: direct 9, F(2×2, 3×3) $16/4 = 4$, and the
# library's larger F(4×4, 3×3) (`winograd4.py`, 6×6 tiles, 36 products for 16 outputs) 2.25. The
# transforms add work that does not shrink with the tile count — $B^\top d B$ per tile and
# channel, $A_W^\top m A_W$ per tile and output channel — which is why `numpynst` uses Winograd only
# from 64 channels on, and the larger F(4×4) only for 512-channel layers on maps of at least 33×33
# whose weights are read-only (so their larger transform can be cached): below that, the
# transforms cost more than the extra products saved (the table in `dispatch.py`). Timed on one VGG-sized layer, im2col and Winograd interleaved
# (best of five each). The measured ratio — {{wino_ratio:.2f}} in this run, where above 1 means
# Winograd was faster — falls short of 2.25 (asserted): the input and output transforms and the 16
# separate, thinner matrix products take back part of what the multiplications save. The stored
# run was made on a machine shared with other jobs, with one BLAS thread, so its milliseconds and
# its ratio are noisy. The per-layer
# measurements against im2col are in `benchmarks/README.md` ("CPU speed, second round"); the
# comment above the table in `dispatch.py` explains the other choice, F(2×2) against F(4×4): at
# 64–256 channels and on maps of 32×32 or less F(2×2) measured the better one (there the
# transforms dominate, and its transforms are cheaper), F(4×4) only at 512 channels on larger maps:

# %%
side, C = (16, 64) if FAST else (64, 128)
x = rng.standard_normal((1, side, side, C)).astype(np.float32)
w = (rng.standard_normal((3, 3, C, C)) * 0.05).astype(np.float32)
b = np.zeros(C, np.float32)
best = {"im2col": np.inf, "winograd": np.inf}
for _ in range(5):
    for method in best:
        t0 = time.perf_counter()
        out = layers.conv2d_forward(x, w, b, method=method)[0]
        best[method] = min(best[method], time.perf_counter() - t0)
ratio = best["im2col"] / best["winograd"]
print(f"x {x.shape}, w {w.shape}: im2col {best['im2col'] * 1e3:.1f} ms, winograd F(2x2) "
      f"{best['winograd'] * 1e3:.1f} ms, ratio {ratio:.2f} (the multiplication count alone: 2.25)")
claim("wino_ratio", ratio, None, 2.25, fast=None)

fig, ax = plt.subplots(figsize=(5.5, 2.8))
ax.bar(["direct / im2col", "F(2x2,3x3)", "F(4x4,3x3)"], [9, 4, 2.25], color=["0.6", "C0", "C1"])
ax.set_ylabel("multiplications per output\nper channel pair")
ax.set_title("3x3 convolution: multiplications")
plt.show()

# %% [markdown]
# ## Summary
#
# * F(2, 3) is a product of polynomials evaluated at $0, 1, -1, \infty$ (4 multiplications instead
#   of 6), transposed into a correlation: $y = A_W^\top[(\Gamma g) \odot (B^\top d)]$.
# * In 2-D it nests along both axes: $Y = A_W^\top[(\Gamma g \Gamma^\top) \odot (B^\top d B)]A_W$, 16
#   multiplications for a 2×2 output tile instead of 36; over channels, 16 matrix products.
# * `winograd.transform_weights` and `winograd.conv3x3` are exactly this; they agree with the
#   naive loop to {{wino_err64:.0e}} in float64.
#
# ## Exercises
#
# 1. Derive F(3, 2) (three outputs of a 2-tap filter): a product of a degree-2 and a degree-1
#    polynomial, evaluated at $0, 1, -1, \infty$. How many multiplications instead of 6?
# 2. Add the points $t = 2$ and $t = -2$ to get F(4, 3): six products for four outputs instead of
#    twelve. Why do larger tiles lose accuracy in float32? Measure it with `winograd4.conv3x3`.
# 3. The backward pass $dx$ of a 3×3 "same" convolution is the same convolution with the flipped
#    kernel (notebook 2). Read how `conv3x3(..., flip=True)` gets the flipped kernel's $U$ without
#    a second weight transform, and check it against `conv2d_backward_naive`.
