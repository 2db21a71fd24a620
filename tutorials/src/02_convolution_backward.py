# Source of tutorials/02_convolution_backward.ipynb (build with: python tutorials/_build.py)

# %% [markdown]
# # 2 · Convolution, backward: $dx$, $dw$, $db$ on paper, then checked by finite differences
#
# **Why this matters.** Style transfer changes the *pixels* of an image to lower a cost measured
# deep inside VGG. It needs $\partial J / \partial x$, the gradient of the cost with respect to the
# input, and getting it means passing a gradient backwards through sixteen convolutions. Training a
# network would also need $\partial J / \partial w$ and $\partial J / \partial b$; we derive all
# three, because the derivation is the same and the checks are cheap.
#
# The plan: derive the three gradients by hand (1-D first, then the general case), transcribe them
# as loops, and check each against **central differences** — the one test that does not trust our
# algebra. Then rewrite them as matrix products (im2col again) and as a convolution with the flipped
# kernel.
#
# Prerequisite: [notebook 1](01_convolution_forward.ipynb) (the forward pass and im2col).

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
from numpynst.gradcheck import check_directional, numerical_gradient, numerical_gradient_array, rel_error

rng = np.random.default_rng(0)
record("eps32", float(np.finfo(np.float32).eps))
record("eps64", float(np.finfo(np.float64).eps))
print("fast mode" if FAST else "full mode")

# %% [markdown]
# ## 1. The setting
#
# A layer's backward pass receives $\delta = \partial L / \partial\, \text{out}$ — the gradient of
# *some* scalar loss $L$ with respect to the layer's output, same shape as the output — and must
# return the gradients with respect to its inputs. The chain rule says: $L$ depends on $x$ only
# through the outputs, so
#
# $$
# \frac{\partial L}{\partial x_k} = \sum_{\text{outputs } o} \frac{\partial L}{\partial o}\,
# \frac{\partial o}{\partial x_k} = \sum_o \delta_o \frac{\partial o}{\partial x_k}.
# $$
#
# For a convolution every output is a sum of products $u \cdot v$ of one input value and one
# weight. A term $u v$ has $\partial (u v) / \partial u = v$. So the whole derivation is one rule:
#
# > **every product $u \cdot v$ that went into output $o$ sends $\delta_o \cdot v$ back to $u$ and
# > $\delta_o \cdot u$ back to $v$.**
#
# ### Warm-up in 1-D
#
# $y_i = \sum_{p=0}^{K-1} x_{i+p}\, w_p + b$ (no padding, stride 1), with $\delta_i = \partial L/\partial y_i$:
#
# $$
# \frac{\partial L}{\partial b} = \sum_i \delta_i, \qquad
# \frac{\partial L}{\partial w_p} = \sum_i \delta_i\, x_{i+p}, \qquad
# \frac{\partial L}{\partial x_k} = \sum_{p} \delta_{k-p}\, w_p \quad (\text{over } p \text{ with } 0 \le k-p < n_y).
# $$
#
# The weight gradient correlates the input with $\delta$; the input gradient slides the kernel
# *backwards* over $\delta$ — a convolution with the **flipped** kernel (section 4).
#
# ### The general case
#
# The forward pass (notebook 1) is
# $\text{out}[n,i,j,f] = b_f + \sum_{p,q,c} \tilde x[n, iS+p, jS+q, c]\, w[p,q,c,f]$, with
# $\tilde x$ the zero-padded input. Applying the rule to every term:
#
# $$
# \frac{\partial L}{\partial b_f} = \sum_{n,i,j} \delta[n,i,j,f], \qquad
# \frac{\partial L}{\partial w[p,q,c,f]} = \sum_{n,i,j} \tilde x[n, iS+p, jS+q, c]\; \delta[n,i,j,f],
# $$
#
# $$
# \frac{\partial L}{\partial \tilde x[n, y, z, c]} = \sum_{\substack{i, p:\; iS + p = y \\ j, q:\; jS + q = z}}
#   \; \sum_f \delta[n,i,j,f]\; w[p,q,c,f],
# $$
#
# and $\partial L/\partial x$ is $\partial L/\partial \tilde x$ with the padding border cut off (the
# padding zeros are constants: the gradient that reaches them goes nowhere).
#
# As code: run the forward loops again, and at each product send the gradient to both factors.
# Deliberately naive:

# %%
def conv_backward_loops(dout, x, w, stride=1, pad=1):
    """(dx, dw, db) of out = conv(x, w, b), by sending dout back through every product of the forward sum."""
    N, H, W, C = x.shape
    KH, KW, _, F = w.shape
    _, Ho, Wo, _ = dout.shape
    xpad = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    dxpad = np.zeros_like(xpad)
    dw = np.zeros_like(w)
    db = np.zeros(F)
    for n in range(N):
        for i in range(Ho):
            for j in range(Wo):
                rows = slice(i * stride, i * stride + KH)
                cols = slice(j * stride, j * stride + KW)
                for f in range(F):
                    g = dout[n, i, j, f]
                    db[f] += g                                   # d out / d b_f = 1
                    dw[:, :, :, f] += g * xpad[n, rows, cols, :]  # the window multiplied w[..., f]
                    dxpad[n, rows, cols, :] += g * w[:, :, :, f]  # w[..., f] multiplied the window
    dx = dxpad[:, pad:pad + H, pad:pad + W, :]                   # cut the padding off
    return dx, dw, db

# %% [markdown]
# ## 2. The numerical check
#
# For a scalar function, the **central difference**
# $\frac{f(x + h e_k) - f(x - h e_k)}{2h}$ approximates $\partial f/\partial x_k$ with error
# $O(h^2)$ from truncation plus $O(\varepsilon |f| / h)$ from rounding. In float64
# ($\varepsilon = {{eps64:.1e}}$) with $h = 10^{-5}$ both are around $10^{-10}$ relative.
#
# A layer's output is an array, not a scalar. The trick: pick a random $\delta$ and check the scalar
# $L(x) = \sum \text{out}(x) \odot \delta$, whose gradient with respect to `out` is exactly $\delta$. So
# $\partial L/\partial x$ must be `conv_backward(g)[0]` — that is what
# `numpynst.gradcheck.numerical_gradient_array(f, x, g)` computes.
#
# We compare with the **relative error** $\|a - b\| / \max(\|a\|, \|b\|)$. An analytic gradient that
# is right gives about $10^{-10}$ or less in float64; one with a wrong index or a missing term is
# off by $O(1)$. We check $dx$, $dw$ and $db$ separately, for several strides and paddings:

# %%
def conv(x, w, b, stride, pad):
    return layers.conv2d_forward(x, w, b, stride=stride, pad=pad)[0]


print(f"{'x shape':>14} {'w shape':>14} S P   {'dx':>8} {'dw':>8} {'db':>8}   (each should be around 1e-10 or smaller)")
for xs, ws, s, p in [((2, 5, 6, 3), (3, 3, 3, 4), 1, 1), ((2, 5, 6, 3), (3, 3, 3, 4), 2, 0),
                     ((1, 7, 7, 2), (3, 3, 2, 3), 2, 1), ((1, 6, 5, 2), (2, 3, 2, 3), 1, 0)]:
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[3])
    dout = rng.standard_normal(conv(x, w, b, s, p).shape)
    dx, dw, db = conv_backward_loops(dout, x, w, s, p)
    errs = [rel_error(dx, numerical_gradient_array(lambda x_: conv(x_, w, b, s, p), x, dout)),
            rel_error(dw, numerical_gradient_array(lambda w_: conv(x, w_, b, s, p), w, dout)),
            rel_error(db, numerical_gradient_array(lambda b_: conv(x, w, b_, s, p), b, dout))]
    print(f"{str(xs):>14} {str(ws):>14} {s} {p}   " + " ".join(f"{e:8.1e}" for e in errs))
    assert max(errs) < 1e-9

# %% [markdown]
# **Why float64.** How small can the error of a central difference get in float32
# ($\varepsilon = {{eps32:.1e}}$)? Two error sources compete. *Truncation*,
# $O(h^2 f''')$, vanishes for a convolution: $L(x) = \sum \text{out}(x) \odot \delta$ is **linear** in
# $x$, its third derivative is 0, so the difference quotient is exact at any step $h$ — only the
# *rounding* of the two evaluations of $L$ is left, about $\varepsilon |L| / h$ relative, which
# *shrinks* as $h$ grows. Behind a nonlinearity (here $\tanh$, a stand-in for any smooth layer)
# truncation returns, growing like $h^2$, and the two meet at a floor. Both rows below, for the
# same $x$, $w$, $\delta$:

# %%
x32, w32, b32 = (a.astype(np.float32) for a in (x, w, b))
dout32 = dout.astype(np.float32)
out32, cache32 = layers.conv2d_forward(x32, w32, b32, stride=1, pad=0)
dx_lin = layers.conv2d_backward(dout32, cache32)[0]
dx_tanh = layers.conv2d_backward(dout32 * (1 - np.tanh(out32) ** 2), cache32)[0]   # chain rule through tanh
steps = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
err32 = {"conv (linear)": [], "tanh(conv)": []}
for h in steps:
    err32["conv (linear)"].append(rel_error(dx_lin, numerical_gradient_array(
        lambda x_: conv(x_, w32, b32, 1, 0), x32, dout32, h=h)))
    err32["tanh(conv)"].append(rel_error(dx_tanh, numerical_gradient_array(
        lambda x_: np.tanh(conv(x_, w32, b32, 1, 0)), x32, dout32, h=h)))
print("float32, h =   " + "  ".join(f"{h:7.0e}" for h in steps))
for name, errs in err32.items():
    print(f"{name:>14}: " + "  ".join(f"{e:7.1e}" for e in errs))
lin, nonlin = np.array(err32["conv (linear)"]), np.array(err32["tanh(conv)"])
claim("lin_growth", (lin[1:] / lin[:-1]).min(), 3, None)   # linear: rounding only, ~10x per decade of h
claim("lin_large_h", lin[0], None, 1e-5)
record("lin_small_h", lin[-1])
claim("tanh_large_h", nonlin[0], 1e-3, 3e-2)                  # tanh: truncation at large h
claim("tanh_drop", nonlin[0] / nonlin[1], 10, None)
claim("tanh_floor", nonlin.min(), 3e-5, 3e-4)                 # ... and a floor
record("tanh_best_h", steps[int(nonlin.argmin())])

# %% [markdown]
# The linear row is pure rounding: each tenfold smaller step makes the error larger, by at least
# {{lin_growth:.1f}} times per decade here, from {{lin_large_h:.1e}} at $h = 0.1$ to
# {{lin_small_h:.1e}} at $h = 10^{-5}$. So a float32 check of a *linear* layer works, with a large
# step. The $\tanh$ row is what a network looks like: truncation makes $h = 0.1$ bad
# ({{tanh_large_h:.1e}}, {{tanh_drop:.0f}} times worse than $h = 10^{-2}$), rounding makes small
# steps bad, and the best step ($h = {{tanh_best_h:g}}$) gives only {{tanh_floor:.1e}} (the cell
# asserts a floor between {{tanh_floor.lo:.0e}} and {{tanh_floor.hi:.0e}}). A bug that spoils one
# gradient entry in ten thousand, or a subtly wrong scale, hides
# under that floor; float64 pushes it to ~$10^{-10}$. Every gradient check in `numpynst`
# therefore runs in float64 (every layer works in both dtypes).

# %% [markdown]
# ## 3. The library's backward pass, and the matrix form
#
# `numpynst.layers.conv2d_backward(dout, cache)` returns the same three arrays. It must agree with
# our loops to rounding error (around $10^{-16}$), and with the numerical gradient (around
# $10^{-10}$):

# %%
x, w, b = rng.standard_normal((2, 6, 7, 3)), rng.standard_normal((3, 3, 3, 4)), rng.standard_normal(4)
for s, p in [(1, 1), (2, 1), (1, 0)]:
    out, cache = layers.conv2d_forward(x, w, b, stride=s, pad=p)
    dout = rng.standard_normal(out.shape)
    lib = layers.conv2d_backward(dout, cache)
    ours = conv_backward_loops(dout, x, w, s, p)
    num_dx = numerical_gradient_array(lambda x_: conv(x_, w, b, s, p), x, dout)
    e_ours = max(rel_error(a, c) for a, c in zip(lib, ours))
    e_num = rel_error(lib[0], num_dx)
    print(f"stride {s} pad {p}: library vs loops {e_ours:.1e} (should be around 1e-16), "
          f"dx vs numerical {e_num:.1e} (around 1e-10)")
    assert e_ours < 1e-15 and e_num < 1e-9

# %% [markdown]
# The library does not loop. In notebook 1 the forward pass was one matrix product,
# $\text{out}_{2D} = \text{cols}\; W_2 + b$ with `cols = im2col(x)` of shape $(NH_oW_o, K_HK_WC)$
# and $W_2$ = `w.reshape(KH*KW*C, F)`. The gradient of a matrix product $Y = A B$ is
# $\partial L/\partial A = \Delta B^\top$ and $\partial L/\partial B = A^\top \Delta$, so with
# $\Delta_{2D}$ = `dout.reshape(-1, F)`:
#
# $$
# \frac{\partial L}{\partial W_2} = \text{cols}^\top \Delta_{2D}, \qquad
# \frac{\partial L}{\partial b} = \mathbf 1^\top \Delta_{2D}, \qquad
# \frac{\partial L}{\partial\, \text{cols}} = \Delta_{2D}\, W_2^\top .
# $$
#
# The last one is a gradient for *cols*, a matrix holding up to nine copies of every input value.
# im2col is a linear map $x \mapsto Mx$ that only copies; the gradient flows back through its
# **transpose** $M^\top$, which *adds* the copies' gradients back into the place they came from.
# That is **col2im** (a scatter-add). Two checks: that `col2im` is the transpose of `im2col` —
# the dot-product test $\langle Mx, Y\rangle = \langle x, M^\top Y\rangle$, exact up to rounding,
# around $10^{-16}$ — and that the three matrix formulas give the gradients:

# %%
for s, p in [(1, 1), (2, 0), (2, 1)]:
    cols = layers.im2col(x, 3, 3, s, p)
    Y = rng.standard_normal(cols.shape)
    lhs, rhs = np.sum(cols * Y), np.sum(x * layers.col2im(Y, x.shape, 3, 3, s, p))
    print(f"stride {s} pad {p}: <im2col(x), Y> = {lhs:+.12f}, <x, col2im(Y)> = {rhs:+.12f}, "
          f"relative difference {abs(lhs - rhs) / abs(lhs):.1e} (around 1e-16)")
    assert abs(lhs - rhs) < 1e-15 * abs(lhs)

out, cache = layers.conv2d_forward(x, w, b, stride=2, pad=1)
dout = rng.standard_normal(out.shape)
G2 = dout.reshape(-1, 4)
cols = layers.im2col(x, 3, 3, 2, 1)
dw_mat = (cols.T @ G2).reshape(w.shape)
db_mat = G2.sum(axis=0)
dx_mat = layers.col2im(G2 @ w.reshape(-1, 4).T, x.shape, 3, 3, 2, 1)
errs = [rel_error(a, c) for a, c in zip((dx_mat, dw_mat, db_mat), conv_backward_loops(dout, x, w, 2, 1))]
print("matrix form vs loops: dx %.1e, dw %.1e, db %.1e (around 1e-16)" % tuple(errs))
assert max(errs) < 1e-15

# %% [markdown]
# **What $dx$ looks like.** Send a gradient of ones back through a $3\times3$ kernel of ones: each
# input pixel receives one unit from every window that covers it. With stride 1 that is 9 inside,
# 6 along the edges and 4 in the corners (the padding windows are missing). With stride 2 the
# windows overlap unevenly — some pixels are covered once, some twice, some four times — the
# origin of the *checkerboard artefacts* of strided and transposed convolutions.

# %%
img = np.zeros((1, 9, 9, 1))
ones_w = np.ones((3, 3, 1, 1))
fig, axes = plt.subplots(1, 2, figsize=(8, 4))
for ax, (s, p) in zip(axes, [(1, 1), (2, 1)]):
    out, cache = layers.conv2d_forward(img, ones_w, np.zeros(1), stride=s, pad=p)
    cover = layers.conv2d_backward(np.ones_like(out), cache)[0][0, :, :, 0]
    ax.imshow(cover, cmap="viridis", vmin=0, vmax=9)
    for (r, c), v in np.ndenumerate(cover):
        ax.text(c, r, int(v), ha="center", va="center", color="w")
    ax.set_title(f"dx of sum(out), stride {s}, pad {p}")
    ax.axis("off")
plt.show()

# %% [markdown]
# ## 4. $dx$ as a convolution with the flipped kernel
#
# For stride 1 there is a neater form. In 1-D with padding $P$,
# $\partial L/\partial x_k = \sum_p \delta_{k+P-p}\, w_p$. Substituting $p' = K-1-p$:
#
# $$
# \frac{\partial L}{\partial x_k} = \sum_{p'} \delta_{\,k + p' - (K-1-P)}\; w_{K-1-p'},
# $$
#
# a forward convolution of $\delta$, zero-padded by $K-1-P$, with the kernel **flipped** in space. With
# channels, the kernel's input and output axes also swap (the gradient goes from $F$ channels back
# to $C$): $w_\text{flip}[p, q, f, c] = w[K_H-1-p,\, K_W-1-q,\, c,\, f]$. So the backward pass can
# reuse the fast forward code — no scatter-add at all. It must agree with the loops to around
# $10^{-16}$:

# %%
for p in (0, 1, 2):
    x, w = rng.standard_normal((2, 6, 7, 3)), rng.standard_normal((3, 3, 3, 4))
    out, cache = layers.conv2d_forward(x, w, np.zeros(4), stride=1, pad=p)
    dout = rng.standard_normal(out.shape)
    w_flip = w[::-1, ::-1].transpose(0, 1, 3, 2)            # (KH, KW, F, C)
    dx_flip, _ = layers.conv2d_forward(dout, np.ascontiguousarray(w_flip), None, stride=1, pad=3 - 1 - p)
    err = rel_error(dx_flip, conv_backward_loops(dout, x, w, 1, p)[0])
    print(f"pad {p}: flipped-kernel convolution vs loops {err:.1e} (around 1e-16)")
    assert err < 1e-15

# %% [markdown]
# ## 5. A check at full size, and what style transfer skips
#
# A full numerical gradient costs two evaluations per input value: fine for 200 values, not for a
# real layer. A **directional derivative** checks any size with two evaluations: for a random unit
# direction $v$, $\langle \nabla L, v\rangle$ must equal $\frac{L(x + hv) - L(x - hv)}{2h}$.
# `numpynst.gradcheck.check_directional` does it along three random directions and reports the
# worst relative error $|D_\text{num} - D| / |D|$, with $D = \langle \nabla L, v\rangle$.
#
# What to expect follows from the float32 experiment above. $L$ is again linear in $x$, so there
# is no truncation error and all of it is rounding: each evaluation of $L$ is a sum of
# $32 \cdot 32 \cdot 32 = 32768$ products, and its rounding error, of order
# $\varepsilon \sum |\text{terms}| \approx 10^{-16} \cdot 2 \cdot 10^4$, is divided by $2h$. The
# quantity it is compared with is small too: a random unit $v$ in $n = 32768$ dimensions has
# $|D| \approx \|\nabla L\| / \sqrt n \approx 1$, and sometimes much less (when $v$ happens to be
# nearly orthogonal to $\nabla L$). Together: $10^{-12} / (2 \cdot 10^{-5}) \approx 10^{-7}$, less or
# more with $|D|$. Over {{n_draws}} random draws of $x, w, \delta$ the errors at $h = 10^{-5}$ lie
# between {{dir5_min:.0e}} and {{dir5_max:.0e}} (asserted below {{dir5_max.hi:.0e}}), and at
# $h = 10^{-3}$ they are {{dir_gain_min:.0f}} to {{dir_gain_max:.0f}} times smaller — the larger step
# divides the rounding by a 100 times larger $2h$ (for a linear function, the larger the better).

# %%
side, C, F = (8, 4, 4) if FAST else (32, 32, 32)
errs5, errs3 = [], []
for draw in range(2 if FAST else 6):
    x = rng.standard_normal((1, side, side, C))
    w = rng.standard_normal((3, 3, C, F)) / np.sqrt(9 * C)
    b = rng.standard_normal(F)
    delta = rng.standard_normal((1, side, side, F))               # the upstream gradient
    out, cache = layers.conv2d_forward(x, w, b)
    dx = layers.conv2d_backward(delta, cache, weight_grads=False)[0]
    errs = {h: check_directional(lambda x_: np.sum(conv(x_, w, b, 1, 1) * delta), x, dx, h=h) for h in (1e-5, 1e-3)}
    print(f"draw {draw}: x {x.shape}: directional check of dx, relative error {errs[1e-5]:.1e} at h=1e-5, "
          f"{errs[1e-3]:.1e} at h=1e-3")
    errs5.append(errs[1e-5])
    errs3.append(errs[1e-3])
errs5, errs3 = np.array(errs5), np.array(errs3)
record("n_draws", len(errs5))
record("dir5_min", errs5.min())
claim("dir5_max", errs5.max(), None, 5e-7)
claim("dir_gain_min", (errs5 / errs3).min(), 3, None)
record("dir_gain_max", (errs5 / errs3).max())
claim("dir3_max", errs3.max(), None, 5e-8)

# %% [markdown]
# Style transfer optimizes the image, never the network, so it needs only $dx$.
# `conv2d_backward(dout, cache, weight_grads=False)` skips $dw$ and $db$ — and with them a second
# pass over the receptive fields. On a VGG-sized layer the backward pass with weight gradients took
# {{skip_ratio:.1f}} times as long as the one without, in the run below:

# %%
side, C = (16, 16) if FAST else (64, 128)
x = rng.standard_normal((1, side, side, C)).astype(np.float32)
w = (rng.standard_normal((3, 3, C, C)) * 0.05).astype(np.float32)
out, cache = layers.conv2d_forward(x, w, np.zeros(C, np.float32))
dout = np.ones_like(out)


def best_time(fn, repeat=3):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


times = {flag: best_time(lambda: layers.conv2d_backward(dout, cache, weight_grads=flag)) for flag in (True, False)}
for flag, t in times.items():
    print(f"weight_grads={flag!s:5}: {t * 1e3:7.1f} ms for x {x.shape}, w {w.shape}")
print(f"ratio {times[True] / times[False]:.1f} (best of 3; absolute times depend on the machine and its load)")
claim("skip_ratio", times[True] / times[False], 1.3, None, fast=None)   # small layers: overheads

# %% [markdown]
# ## Summary
#
# * One rule derives everything: a product $u v$ in output $o$ sends $\delta_o v$ to $u$ and $\delta_o u$
#   to $v$. Hence $db = \sum \delta$, $dw$ = input windows correlated with $\delta$, $dx$ = $\delta$ spread back
#   through the kernel onto the receptive fields.
# * Checked against central differences in float64: around $10^{-10}$. For a linear op the only
#   error is rounding, which shrinks as the step grows; behind a nonlinearity float32 bottoms out
#   at {{tanh_floor:.0e}}, too coarse to trust, so checks run in float64.
# * In matrix form: $dW_2 = \text{cols}^\top \Delta$, $d\,\text{cols} = \Delta W_2^\top$, and
#   $dx = $ col2im$(d\,\text{cols})$, because col2im is the transpose of im2col.
# * For stride 1, $dx$ is a forward convolution of $\delta$ with the flipped, channel-swapped kernel.
# * Style transfer needs only $dx$ (`weight_grads=False`).
#
# Next: [notebook 3](03_relu_and_pooling.ipynb), the other two layers of VGG.
#
# ## Exercises
#
# 1. Break `conv_backward_loops` on purpose (e.g. forget to cut off the padding, or use
#    `w[:, :, :, 0]` for every filter) and watch the relative error jump to $O(1)$.
# 2. Derive $dx$ for stride 2 as a convolution: insert $S-1$ zeros between the entries of $\delta$
#    ("dilate" it) and then convolve with the flipped kernel. Check it numerically.
# 3. Why does the directional check use several random directions rather than one fixed one?
#    Construct a wrong gradient that passes the check along $v = (1, 1, \dots, 1)/\sqrt n$.
# 4. Show that `numerical_gradient` with $h = 10^{-2}$ and $h = 10^{-8}$ is *worse* than with
#    $h = 10^{-5}$ in float64, and explain both failures.
