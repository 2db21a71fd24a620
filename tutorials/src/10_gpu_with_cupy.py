# Source of tutorials/10_gpu_with_cupy.ipynb (build with: python tutorials/_build.py)

# %% [markdown]
# # 10 · The same code on a GPU, with CuPy
#
# **Why this matters.** On a laptop CPU a 512-pixel stylization takes minutes; the convolutions of
# notebook 1 are exactly the kind of work a GPU does many times faster (section 4 measures by how
# much, on the machine that ran the stored outputs). We do not want a
# second implementation for the GPU: two versions of every layer would drift apart, and every
# gradient check would have to be done twice.
#
# [CuPy](https://cupy.dev) implements most of NumPy's API on NVIDIA GPUs: `cupy.matmul`,
# `cupy.pad`, slicing, `cupy.where` do what their NumPy namesakes do, on GPU memory. So `numpynst`
# writes every function once, against an *array module* `xp` taken from its inputs:
#
# ```python
# from numpynst.backend import get_xp
#
# def gram_matrix(a):
#     xp = get_xp(a)          # numpy for NumPy arrays, cupy for CuPy arrays (unused here: @ is enough)
#     A = a.reshape(-1, a.shape[-1])
#     return A.T @ A
# ```
#
# This notebook shows how the switch works, which rules keep the GPU busy, and times the two
# backends. **It runs without a GPU** — it then says why CuPy is unavailable and times NumPy only.

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
from numpynst import layers
from numpynst.backend import backend_name, cupy_available, get_xp, resolve, to_device, to_host
from numpynst.gradcheck import rel_error
from numpynst.image import load_image, resize_image, sample_path
from numpynst.losses import gram_matrix, style_layer_cost
from numpynst.vgg import VGG

rng = np.random.default_rng(0)
print("fast mode" if FAST else "full mode")

# %% [markdown]
# ## 1. Is there a GPU?
#
# `numpynst/backend.py` is the only module that imports CuPy. `cupy_available()` tries the import
# and asks the CUDA driver for a device; it returns `(True, "")` or `(False, reason)`:

# %%
HAVE_GPU, reason = cupy_available()
if HAVE_GPU:
    cp = resolve("cupy")                 # the cupy module, obtained through numpynst.backend
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    gpu_name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    print("CuPy", cp.__version__, "on", gpu_name, f"({props['totalGlobalMem'] / 2**30:.0f} GiB)")
else:
    cp = None
    print("No GPU backend here, so this notebook times NumPy only.")
    print("Reason:", reason)

# %% [markdown]
# ## 2. How the switch works
#
# * **`resolve(name)`** turns `"numpy"`, `"cupy"` or `"auto"` into the module (`"auto"` picks CuPy
#   when it works); asking for `"cupy"` where it cannot run raises a `BackendError` with the
#   reason.
# * **`get_xp(*arrays)`** returns `cupy` if the arrays are CuPy arrays, else `numpy`, and refuses a
#   mix (that would hide a slow host↔device copy).
# * **`to_device(a, xp)` / `to_host(a)`** are the explicit copies. They happen only at the edges of
#   a run: the image goes to the GPU once, the result comes back once.
#
# The same calls on NumPy arrays (and on CuPy arrays, when there is a GPU):

# %%
backends = ["numpy"] + (["cupy"] if HAVE_GPU else [])
x_host = rng.standard_normal((1, 16, 16, 8)).astype(np.float32)
w_host = (rng.standard_normal((3, 3, 8, 4)) * 0.1).astype(np.float32)
results = {}
for name in backends:
    xp = resolve(name)
    x, w = to_device(x_host, xp), to_device(w_host, xp)     # host -> device (a no-op for numpy)
    out, cache = layers.conv2d_forward(x, w, None)           # the same function for both
    dx, _, _ = layers.conv2d_backward(xp.ones_like(out), cache, weight_grads=False)
    G = gram_matrix(out)
    J, _ = style_layer_cost(G * 1.1, out)
    print(f"{name:5s}: out {type(out).__module__}.{type(out).__name__} {out.shape}, "
          f"get_xp(out) is {get_xp(out).__name__}, J is a 0-d {type(J).__module__} array")
    results[name] = [to_host(a) for a in (out, dx, G, J)]    # device -> host, once, for comparing

try:
    resolve("cupy")
    print("resolve('cupy') works here")
except numpynst.BackendError as exc:
    print("resolve('cupy') ->", type(exc).__name__ + ":", exc)

# %% [markdown]
# When both backends ran, their results must agree to float32 rounding (relative errors around
# $10^{-7}$–$10^{-6}$: the GPU sums in a different order).

# %%
if HAVE_GPU:
    for label, a, b in zip(["conv out", "conv dx", "Gram", "style J"], results["numpy"], results["cupy"]):
        err = rel_error(a, b)
        print(f"{label:9s}: NumPy vs CuPy relative error {err:.1e}   (around 1e-7 to 1e-6)")
        assert err < 1e-4
else:
    print("Skipped: needs CuPy and a GPU (" + reason.split(";")[0] + ").")

# %% [markdown]
# ## 3. Rules that keep a GPU busy
#
# A GPU is fast only while it has work queued. CuPy launches kernels *asynchronously*: Python
# continues while the GPU computes. Anything that needs a **value on the host** waits for the
# GPU to finish everything queued and copies the value back — a *synchronization*:
#
# * `float(J)`, `print(J)`, `if J < best:` on a CuPy scalar;
# * `to_host(a)`, `a.get()`, `np.asarray(a)`.
#
# One per iteration leaves the GPU idle between iterations. So in `numpynst`:
#
# * costs are returned as **0-d arrays**, never Python floats (`J` above);
# * the L-BFGS line search decides on the device with `xp.where` — no `if` on a device value;
# * `stylize` keeps the loss history in a device buffer and copies it to the host only every
#   `log_every` iterations (default 10 on CuPy);
# * the best image so far is tracked on the device with `where`.
#
# And two rules for writing the layers once for both backends: no scatter with repeated indices
# (undefined on GPUs — im2col's col2im and the pooling backward are loops of strided `+=` over
# the kernel offsets, notebook 2), and no `import cupy` outside `backend.py`.
#
# ## 4. Timings
#
# On a GPU we must synchronize before reading the clock, or we would time only the kernel
# *launches*. `timed` does that on CuPy and nothing on NumPy:

# %%
def timed(fn, xp, repeat=3):
    """Best wall time of fn() over `repeat` runs (after one warm-up run), synchronizing on CuPy."""
    sync = xp.cuda.Device().synchronize if xp is not np else (lambda: None)
    fn()
    sync()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


sizes = [32, 64] if FAST else [128, 256, 512]
table = {}
for name in backends:
    xp = resolve(name)
    for side in sizes:
        x = to_device(rng.standard_normal((1, side, side, 128)).astype(np.float32), xp)
        w = to_device((rng.standard_normal((3, 3, 128, 128)) * 0.03).astype(np.float32), xp)
        out, cache = layers.conv2d_forward(x, w, None)
        t_fwd = timed(lambda: layers.conv2d_forward(x, w, None), xp)
        t_bwd = timed(lambda: layers.conv2d_backward(out, cache, weight_grads=False), xp)
        gflop = 2 * side * side * 128 * 9 * 128 / 1e9
        table[name, side] = (t_fwd, t_bwd)
        print(f"{name:5s} conv 3x3, 128->128 channels, {side}x{side}: forward {t_fwd * 1e3:8.2f} ms "
              f"({gflop / t_fwd:6.0f} GFLOP/s), backward dx {t_bwd * 1e3:8.2f} ms")
if HAVE_GPU:
    for side in sizes:
        print(f"{side}x{side}: GPU speed-up forward {table['numpy', side][0] / table['cupy', side][0]:.0f}x, "
              f"backward {table['numpy', side][1] / table['cupy', side][1]:.0f}x")
else:
    print("(CuPy timings skipped: no GPU backend.)")

# %% [markdown]
# Now a whole style-transfer iteration: VGG19 forward to `block5_conv1`, the content and five style
# costs, and the backward pass to the pixels — `Objective.value_and_grad` on each backend.
# `VGG.from_h5(backend=...)` copies the weights to the device once.

# %%
content = load_image(sample_path("content"))
style = load_image(sample_path("ihc"))
step_sizes = [64] if FAST else [128, 256, 512]
per_iter = {}
for name in backends:
    model = VGG.from_h5(backend=name)
    for side in step_sizes:
        c = resize_image(content, side)
        c = c[: c.shape[0] // 16 * 16, : c.shape[1] // 16 * 16]
        obj = numpynst.Objective(model, model.preprocess(c), model.preprocess(resize_image(style, side)))
        x = model.preprocess(c)
        per_iter[name, side] = timed(lambda: obj.value_and_grad(x), model.xp, repeat=2)
        J, _ = obj.value_and_grad(x)
        print(f"{name:5s} {c.shape[0]}x{c.shape[1]}: {per_iter[name, side] * 1e3:8.1f} ms per iteration, "
              f"J = {float(J):.6g}")
    del model

fig, ax = plt.subplots(figsize=(5.5, 3.2))
for name in backends:
    ax.plot(step_sizes, [per_iter[name, s] for s in step_sizes], "o-", label=name)
ax.set_xscale("log", base=2)
ax.set_yscale("log")
ax.set_xlabel("image size (longest side, px)")
ax.set_ylabel("seconds per iteration")
ax.set_title("one style-transfer iteration (forward + backward)")
ax.legend()
plt.show()

pixels = {}
for name in backends:
    for side in step_sizes:
        c = resize_image(content, side)
        pixels[side] = (c.shape[0] // 16 * 16) * (c.shape[1] // 16 * 16)
    for small, big in zip(step_sizes, step_sizes[1:]):
        t_ratio, p_ratio = per_iter[name, big] / per_iter[name, small], pixels[big] / pixels[small]
        verdict = ("less than" if t_ratio < 0.85 * p_ratio else "more than" if t_ratio > 1.15 * p_ratio
                   else "about")
        print(f"{name:5s} {small} -> {big} px: time x{t_ratio:.1f} for x{p_ratio:.1f} the pixels "
              f"({verdict} proportional)")
    for side in step_sizes:
        print(f"{name:5s} {side} px: {per_iter[name, side] / pixels[side] * 1e6:.1f} us per pixel")

# %% [markdown]
# The work of an iteration is proportional to the pixel count, so the ideal time ratio per
# doubling of the side is the pixel ratio printed beside it (a little above 4: the sides are cut to
# multiples of 16). A measured ratio departs from it both ways, and the printed time per pixel
# shows which way: *less* than proportional where costs that do not grow with the image — Python
# calls and per-call setup in each of the dozens of layer calls, matrix products too small to run
# at full speed — are a large share of a small image; *more* than proportional when the larger
# image's activations (a 512 px layer of 64 channels is 44 MB in float32) no longer fit in the
# CPU's caches, or when other jobs compete for the cores.
#
# **Which machine.** The stored outputs come from the host of an NVIDIA H200
# (`benchmarks/gpu_check.sh`), and its NumPy lines are that host's CPU, not the 2-core machine
# that the other notebooks and `benchmarks/README.md` were timed on. Its NumPy ratios are less than
# proportional, and at the small sizes its times per iteration are *longer* than the 2-core
# machine's (`benchmarks/README.md` has its figures). This notebook does not measure why; the likely
# causes are that a BLAS library spreading small matrix products over many threads spends more on
# starting and joining them than it gains, and a lower clock per core — so read the NumPy lines
# as one machine's, and the GPU lines against the NumPy lines of the *same* run. On the GPU the
# time per iteration hardly changes from 128 to 256 px (printed above): fixed costs, hundreds of
# kernel launches and their Python calls, are all there is at those sizes, so the speed-up grows
# with the image. Either way, 200 L-BFGS iterations at 512 px take minutes on a CPU.
#
# ## 5. A whole run on the GPU
#
# From the user's side the backend is one argument; inputs and result are ordinary NumPy `uint8`
# images, and the copies happen inside `stylize`, once at each end:
#
# ```python
# result = numpynst.stylize("photo.jpg", "painting.jpg", size=512, backend="cupy")   # or "auto"
# numpynst.save_image("out.png", result.image)
# ```
#
# or `numpynst stylize photo.jpg painting.jpg -o out.png --backend cupy` on the command line.

# %%
side, iterations = (48, 3) if FAST else (256, 20)
for name in backends:
    r = numpynst.stylize(content, style, size=side, iterations=iterations, backend=name, tol=None,
                         scales=[1.0], beta=1.0)     # full size only, style weight 1: as when measured
    print(f"{name:5s}: {r.iterations} L-BFGS iterations at {side} px in {r.seconds:.1f} s "
          f"({r.seconds / r.iterations:.2f} s each); J {r.history['J'][0]:.4g} -> {min(r.history['J']):.4g}; "
          f"result {type(r.image).__module__} {r.image.dtype} {r.image.shape}")
    assert isinstance(r.image, np.ndarray) and r.image.dtype == np.uint8

# %% [markdown]
# ## Summary
#
# * One implementation: every function takes its array module from its inputs
#   (`xp = get_xp(...)`); `numpynst.backend` is the only place that imports CuPy.
# * Explicit copies at the edges only (`to_device`, `to_host`); costs stay 0-d device arrays;
#   decisions are made on the device with `where`; the host is synchronized every `log_every`
#   iterations, not every one.
# * The same functions agree across backends to float32 rounding; the GPU's advantage grows with
#   the image size.
# * Without a GPU, `cupy_available()` says why, `backend="auto"` falls back to NumPy, and
#   `backend="cupy"` fails with that reason.
#
# ## Exercises
#
# 1. Add `print(float(J))` inside a loop of `obj.value_and_grad` calls on CuPy and time it against
#    a loop without it. How much does one synchronization per iteration cost at 128 px? At 512 px?
# 2. Time the conv layer in float64 on both backends. Consumer GPUs have far less float64 than
#    float32 throughput — what ratio do you see?
# 3. Find the largest image that fits in your GPU's memory for a style-transfer iteration. Which
#    arrays dominate (notebook 1: the im2col scratch; the VGG caches)?
# 4. Write a function that works on both backends without `get_xp` (only methods and operators of
#    the arrays). Which NumPy functions could you not avoid?
