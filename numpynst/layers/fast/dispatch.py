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
import weakref
from typing import Any

from ...backend import get_xp
from . import im2col, winograd, winograd4

Array = Any

FORWARD_METHODS = ("auto", "im2col", "winograd", "winograd4")
BACKWARD_METHODS = ("auto", "im2col", "col2im", "winograd", "winograd4", "winograd4_flip")

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
    """The ``"auto"`` method for 3x3/s1/p1 convolutions on CuPy: ``$NUMPYNST_GPU_CONV``, default im2col.

    im2col is one gather kernel plus one cuBLAS GEMM per (large) chunk; the Winograd paths are
    dozens of element-wise kernel launches per chunk, and measured slower. The variable
    (``im2col``, ``winograd`` or ``winograd4``) lets a benchmark compare them in one run on the
    device (benchmarks/vgg_step.py ``--gpu-conv``) without touching any caller.
    Measurements: benchmarks/README.md, section "GPU (CuPy)" ("Convolution variants").
    """
    name = os.environ.get("NUMPYNST_GPU_CONV", "im2col").strip().lower() or "im2col"
    if name not in FORWARD_METHODS[1:]:
        raise ValueError(f"NUMPYNST_GPU_CONV must be one of {', '.join(FORWARD_METHODS[1:])}, got {name!r}")
    return name


def _auto_method(w: Array, c: int, f: int, pixels: int | None) -> str:
    """Algorithm for a 3x3/s1/p1 conv with ``C`` inputs and ``F`` outputs on maps of ``pixels``
    positions (the table above; dx: swap C and F; ``None``: large).

    On CuPy arrays: :func:`gpu_method` (im2col unless the environment says otherwise).
    """
    if get_xp(w).__name__ != "numpy":
        return gpu_method()
    if min(c, f) < WINOGRAD_MIN_CHANNELS:
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
    if (method.startswith("winograd") and not same3) or (method == "im2col" and not flippable):
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
    raise ValueError(f"conv2d_backward: no fast path {method!r}")


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
