"""Which fast path computes a convolution, and the cache of Winograd-transformed weights.

Speed only. Textbook twins: :func:`numpynst.layers.conv.conv2d_forward_naive` and
:func:`~numpynst.layers.conv.conv2d_backward_naive`. Every method named here computes their result
(up to rounding); tests/test_conv_fast.py checks each one against them. ``conv2d_forward`` and
``conv2d_backward`` ask :func:`forward_method` / :func:`backward_method` which path to take, then run
it with :func:`forward` / :func:`dx`.

The transform cache lives here, not beside F(2x2,3x3), because it serves both Winograd variants
and :mod:`~numpynst.layers.fast.winograd4` already imports :mod:`~numpynst.layers.fast.winograd`.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from typing import Any, Callable

from ...backend import get_xp, matmul_precision
from . import cuda_kernels, im2col, winograd, winograd4

Array = Any

FORWARD_METHODS = ("auto", "im2col", "winograd", "winograd4", "implicit", "measure")
BACKWARD_METHODS = ("auto", "im2col", "col2im", "winograd", "winograd4", "winograd4_flip", "implicit", "measure")
GPU_METHODS = ("measure", "im2col", "implicit", "winograd", "winograd4")

# The CPU choice for 3x3/stride-1/pad-1 convolutions, from a table measured on every VGG19 conv
# shape (benchmarks/conv_layers.py). It depends on the shape only, so the same shape always takes
# the same path (results are reproducible run to run):
#
#   channels C, F and map size                forward       dx
#   min(C, F) < 64                            im2col        col2im when dx is narrow (C < F/2), else im2col
#   max(C, F) >= 512 on maps of 33x33 or more F(4x4,3x3)    F(4x4,3x3) transposed: the forward's U
#   anything else                             F(2x2,3x3)    F(2x2,3x3): the forward's U, re-indexed
#
# Why: at 64-256 channels, and on maps of 32x32 or less, F(2x2,3x3) measured the better choice
# (there the transforms, not the products, dominate, and its transforms are cheaper; its U is also
# smaller: 16/9 of the weights, F(4x4,3x3)'s 36/9); at 512 channels on larger maps F(4x4,3x3) was
# faster forward and its transposed dx as fast or faster.
# F(4x4,3x3) of the flipped kernel ("winograd4_flip") is faster for dx than the transposed
# algorithm but needs a second transformed copy of the weights: explicit only.
# F(4x4,3x3) pays only with its transform cached: chosen only for read-only weights (see
# _cacheable); F(2x2,3x3) otherwise. Below 64 channels (VGG's 3-channel first layer) the GEMMs are
# too thin for Winograd.
# Measurements: benchmarks/README.md, section "CPU speed, second round" ("The per-layer choice").
WINOGRAD_MIN_CHANNELS = 64
WINOGRAD4_MIN_WIDEST = 512
WINOGRAD4_MIN_PIXELS = 33 * 33


def _is_3x3_same(w: Array, stride: int, pad: int) -> bool:
    return tuple(w.shape[:2]) == (3, 3) and stride == 1 and pad == 1


def gpu_method() -> str:
    """The ``"auto"`` method for 3x3/s1/p1 convolutions on CuPy: ``$NUMPYNST_GPU_CONV``, default
    ``measure``.

    ``measure`` (the default): per layer shape, im2col + cuBLAS against the implicit-GEMM kernel
    (:func:`numpynst.layers.fast.cuda_kernels.conv_implicit`), timed on the device at the shape's
    first call and the faster kept (:func:`measured`); ``im2col`` or ``implicit`` force one path;
    ``winograd``/``winograd4`` are dozens of element-wise kernel launches per chunk and measured
    slower (benchmarks/README.md, "GPU (CuPy)", "Convolution variants"). The variable lets a
    benchmark compare them in one run on the device (benchmarks/vgg_step.py ``--gpu-conv``).
    """
    name = os.environ.get("NUMPYNST_GPU_CONV", "measure").strip().lower() or "measure"
    if name not in GPU_METHODS:
        raise ValueError(f"NUMPYNST_GPU_CONV must be one of {', '.join(GPU_METHODS)}, got {name!r}")
    return name


def _auto_method(w: Array, c: int, f: int, pixels: int | None) -> str:
    """Algorithm for a 3x3/s1/p1 conv with ``C`` inputs and ``F`` outputs on maps of ``pixels``
    positions (the table above; dx: swap C and F; ``None``: large).

    On CuPy arrays: :func:`gpu_method` (measured per shape unless the environment says otherwise).
    float16 weights on NumPy: im2col (Winograd's transforms would round in float16).
    """
    if get_xp(w).__name__ != "numpy":
        return gpu_method()
    if min(c, f) < WINOGRAD_MIN_CHANNELS or w.dtype.itemsize < 4:   # float16: the transforms would round
        return "im2col"
    large = pixels is None or pixels >= WINOGRAD4_MIN_PIXELS
    if max(c, f) >= WINOGRAD4_MIN_WIDEST and large and _cacheable(w):
        return "winograd4"
    return "winograd"


def forward_method(w: Array, stride: int, pad: int, method: str, pixels: int | None = None) -> str:
    """The forward path for ``method``: ``"im2col"``, ``"winograd"`` or ``"winograd4"``.

    ``"auto"`` is what measured fastest for the shape: :func:`_auto_method` for a 3x3/stride 1/pad 1
    kernel, im2col for every other shape (Winograd exists for 3x3 "same" convolutions only).
    Raises ValueError for an unknown method, or a Winograd method on another shape.
    """
    if method not in FORWARD_METHODS:
        raise ValueError(f"conv2d_forward: method must be one of {', '.join(FORWARD_METHODS)}, got {method!r}")
    if method in ("implicit", "measure") and get_xp(w).__name__ == "numpy":
        raise ValueError(f"conv2d_forward: method {method!r} runs on CuPy arrays only (a CUDA kernel)")
    same3 = _is_3x3_same(w, stride, pad)
    if method.startswith("winograd") and not same3:
        raise ValueError(f"conv2d_forward: method {method!r} needs a 3x3 kernel, stride 1, pad 1; got "
                         f"w.shape={tuple(w.shape)}, stride={stride}, pad={pad}")
    if method != "auto":
        return method
    return _auto_method(w, w.shape[2], w.shape[3], pixels) if same3 else "im2col"


def backward_method(w: Array, stride: int, pad: int, method: str, pixels: int | None = None) -> str:
    """The ``dx`` path for ``method``: ``"col2im"``, ``"im2col"``, ``"winograd"``, ``"winograd4"`` (the
    transposed F(4x4,3x3) on the forward's U) or ``"winograd4_flip"`` (F(4x4,3x3) of the flipped
    kernel: a second transformed copy of the weights, cached; never chosen by ``"auto"``).

    ``"auto"``: col2im (GEMM + scatter-add, any stride) for every kernel that is not 3x3/stride 1/
    pad 1; for those, the forward rule with the channel counts swapped, except that a narrow ``dx``
    (``C < F/2``, e.g. the 3 colour channels under block1_conv1) is cheaper scattered than gathered:
    col2im touches ``9 C`` values per pixel, im2col on ``dout`` ``9 F``.
    Raises ValueError for an unknown method, or one that does not apply to the shape.
    """
    if method not in BACKWARD_METHODS:
        raise ValueError(f"conv2d_backward: method must be one of {', '.join(BACKWARD_METHODS)}, got {method!r}")
    kh, kw, c, f = w.shape
    same3 = _is_3x3_same(w, stride, pad)
    flippable = stride == 1 and pad <= kh - 1 and pad <= kw - 1
    if method in ("implicit", "measure") and get_xp(w).__name__ == "numpy":
        raise ValueError(f"conv2d_backward: method {method!r} runs on CuPy arrays only (a CUDA kernel)")
    if (method.startswith("winograd") and not same3) or (method in ("im2col", "implicit", "measure")
                                                         and not flippable):
        raise ValueError(f"conv2d_backward: method {method!r} does not apply to w.shape={tuple(w.shape)}, "
                         f"stride={stride}, pad={pad}")
    if method != "auto":
        return method
    if not same3:
        return "col2im"
    method = _auto_method(w, f, c, pixels)
    return "col2im" if method == "im2col" and c < f // 2 else method


def forward(x: Array, w: Array, b: Array | None, stride: int, pad: int, method: str,
            relu: bool = False) -> tuple[Array, Array | None]:
    """``(out, u)``: the convolution by the resolved ``method`` (``max(conv, 0)`` with ``relu``), and
    for ``"winograd"`` the F(2x2,3x3) transform ``u (16, C, F)`` of ``w``, which the backward pass
    reuses (else None)."""
    if method == "winograd":
        u = _transformed(w, "f2")
        return winograd.conv3x3(x, u, b, relu=relu), u
    if method == "winograd4":
        return winograd4.conv3x3(x, _transformed(w, "f4"), b, relu=relu), None
    if method == "im2col":
        return im2col.conv_im2col(x, w, b, stride, pad, pad, relu=relu), None
    if method == "implicit":
        _need_kernels(x, w)
        return cuda_kernels.conv_implicit(x, w, b, stride, pad, pad, relu=relu), None
    if method == "measure":
        runs = {"im2col": lambda: im2col.conv_im2col(x, w, b, stride, pad, pad, relu=relu)}
        if cuda_kernels.supports(x, w):
            runs["implicit"] = lambda: cuda_kernels.conv_implicit(x, w, b, stride, pad, pad, relu=relu)
        return measured(("forward", tuple(x.shape), tuple(w.shape), stride, pad, x.dtype.str,
                         matmul_precision(get_xp(x))), runs, x)[1], None
    raise ValueError(f"conv2d_forward: no fast path {method!r}")


def dx(dout: Array, w: Array, x_shape: tuple[int, ...], stride: int, pad: int, method: str,
       u: Array | None = None) -> Array:
    """``dx`` by the resolved ``method``; ``u``: the F(2x2,3x3) transform of ``w`` when the forward
    pass made one (``"winograd"`` reuses it instead of transforming ``w`` again)."""
    if method == "winograd":
        return winograd.conv3x3(dout, _transformed(w, "f2") if u is None else u, flip=True)
    if method == "winograd4":
        return winograd4.conv3x3_dx(dout, _transformed(w, "f4"))      # the forward's U, transposed
    if method == "winograd4_flip":
        return winograd4.conv3x3(dout, _transformed(w, "f4_flip"))   # a second U, of the flipped kernel
    if method == "im2col":
        return im2col.dx_flipped(dout, w, pad)
    if method == "col2im":
        return im2col.dx_col2im(dout, w, x_shape, stride, pad)
    if method == "implicit":
        _need_kernels(dout, w)
        return cuda_kernels.conv_implicit_dx(dout, w, pad)
    if method == "measure":       # the CuPy rule (col2im for a narrow dx, else im2col) against the kernel
        base = "col2im" if x_shape[-1] < w.shape[3] // 2 else "im2col"
        runs = {base: (lambda: im2col.dx_col2im(dout, w, x_shape, stride, pad)) if base == "col2im" else
                (lambda: im2col.dx_flipped(dout, w, pad))}
        if cuda_kernels.supports(dout, w):
            runs["implicit"] = lambda: cuda_kernels.conv_implicit_dx(dout, w, pad)
        return measured(("dx", tuple(dout.shape), tuple(w.shape), stride, pad, dout.dtype.str,
                         matmul_precision(get_xp(dout))), runs, dout)[1]
    raise ValueError(f"conv2d_backward: no fast path {method!r}")


def _need_kernels(*arrays: Array) -> None:
    if not cuda_kernels.supports(*arrays):
        raise ValueError("method 'implicit' needs CuPy float32/float64 arrays with the CUDA kernels enabled "
                         "(NUMPYNST_CUDA_KERNELS), got " + ", ".join(f"{type(a).__name__} {a.dtype}" for a in arrays))


# ---------------------------------------------------------------------------- measured choice on the GPU
# On a GPU the faster path of a layer depends on the card, the shape and the precision, so it is
# measured there, once per (forward|dx, shapes, stride, pad, dtype, matmul precision) and process, as
# cuDNN's benchmark mode does: the shape's first call runs every candidate once (compiling kernels,
# filling the memory pool), then MEASURE_REPEAT times, each timed by CUDA events; the median decides.
# The implicit GEMM must beat the array path by MEASURE_MARGIN to be chosen, so near-ties keep the
# established path; the choice then holds for every later call with the same key (one shape, one
# path: results repeat within a run). The first call's result is the winner's own output (one
# more run: no candidate's output is kept while others run, so the measurement needs no extra memory).
# Cost: (1 + MEASURE_REPEAT) runs of each candidate plus the winner's, once per shape: a few
# iterations' worth of convolutions per scale of a run (and per tile shape of a tiled scale).
# NUMPYNST_GPU_CONV=im2col or =implicit skips the measurement. :func:`measured_choices` lists the
# choices made (benchmarks report them).
MEASURE_REPEAT = 3
MEASURE_MARGIN = 0.95
_CHOICES: dict[tuple, dict] = {}
_CHOICES_LOCK = threading.Lock()


def _cuda_timer(xp) -> Callable[[Callable[[], Any]], tuple[float, Any]]:
    def timed(run: Callable[[], Any]) -> tuple[float, Any]:
        start, end = xp.cuda.Event(), xp.cuda.Event()
        start.record()
        out = run()
        end.record()
        end.synchronize()
        return xp.cuda.get_elapsed_time(start, end) / 1e3, out
    return timed


def _host_timer(run: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = run()
    return time.perf_counter() - t0, out


def measured(key: tuple, runs: dict[str, Callable[[], Array]], *arrays: Array,
             timer=None) -> tuple[str, Array]:
    """``(method, result)``: the method chosen for ``key`` among ``runs`` (name -> a call computing the
    result; the first is the established path), measuring them on this key's first call.

    ``timer(run) -> (seconds, result)``; default: CUDA events when ``arrays`` are CuPy arrays, the
    host clock otherwise.
    """
    hit = _CHOICES.get(key)
    if hit is not None and hit["method"] in runs:
        return hit["method"], runs[hit["method"]]()
    if len(runs) == 1:
        (name, run), = runs.items()
        return name, run()
    if timer is None:
        xp = get_xp(*arrays)
        timer = _host_timer if xp.__name__ == "numpy" else _cuda_timer(xp)
    seconds: dict[str, float] = {}
    for name, run in runs.items():     # no result is kept meanwhile: at most one output is alive
        run()                                              # warm-up: compilation, pool
        times = [timer(run)[0] for _ in range(MEASURE_REPEAT)]
        seconds[name] = sorted(times)[len(times) // 2]
    names = list(runs)
    best = names[0]
    for name in names[1:]:
        if seconds[name] < MEASURE_MARGIN * seconds[best]:
            best = name
    with _CHOICES_LOCK:
        _CHOICES.setdefault(key, {"method": best, "seconds": dict(seconds)})
    method = _CHOICES[key]["method"]
    return method, runs[method]()


def measured_choices() -> dict[tuple, dict]:
    """``{key: {"method", "seconds": {candidate: median seconds}}}`` of every measured choice so far."""
    with _CHOICES_LOCK:
        return {k: {"method": v["method"], "seconds": dict(v["seconds"])} for k, v in _CHOICES.items()}


def forget_choices() -> None:
    """Drop the measured choices (the next call of each shape measures again)."""
    with _CHOICES_LOCK:
        _CHOICES.clear()


# ---------------------------------------------------------------------------- transformed weights
# Winograd needs U = G w G^T. Recomputing it every call would cost all of F(4x4,3x3)'s gain
# (benchmarks/README.md, "The per-layer choice"), so U is cached per weight array -- but only for
# arrays that cannot change behind the cache's back: NumPy arrays marked read-only
# (``w.flags.writeable = False``, as numpynst.vgg.VGG may do for its parameters), whose whole base
# chain is read-only too. Writable arrays (e.g. weights under a gradient check, which perturbs them
# in place) are always transformed afresh. Entries die with their weight array (weak reference).
_U_CACHE: dict = {}


def _cacheable(w: Array) -> bool:
    a = w
    while a is not None:
        flags = getattr(a, "flags", None)
        if flags is None or not hasattr(flags, "writeable") or flags.writeable:
            return False                    # writable, or not a NumPy array (CuPy has no such flag)
        a = a.base
    return True


def _transformed(w: Array, kind: str) -> Array:
    """``U`` for ``kind`` in ``"f2"`` (F(2x2,3x3)), ``"f4"`` (F(4x4,3x3), forward and transposed dx)
    or ``"f4_flip"`` (F(4x4,3x3) of the flipped, channel-swapped kernel: dx as a forward conv)."""
    make = {"f2": winograd.transform_weights, "f4": winograd4.transform_weights,
            "f4_flip": lambda a: winograd4.transform_weights(a[::-1, ::-1].transpose(0, 1, 3, 2))}[kind]
    if not _cacheable(w):
        return make(w)
    key = (id(w), kind)
    hit = _U_CACHE.get(key)
    if hit is not None and hit[0]() is w:
        return hit[1]
    u = make(w)
    u.flags.writeable = False
    _U_CACHE[key] = (weakref.ref(w, lambda _ref, k=key: _U_CACHE.pop(k, None)), u)
    return u
