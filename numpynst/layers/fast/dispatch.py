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
BACKWARD_METHODS = ("auto", "im2col", "col2im", "winograd", "winograd4")

# Dispatch thresholds for 3x3/stride-1/pad-1 convolutions, from per-layer measurements of VGG19's
# shapes at 256 and 512 px (benchmarks/README.md): from 64 channels on, F(2x2,3x3) beats im2col by
# 1.3-2x and F(4x4,3x3) beats F(2x2,3x3) by another 1.1-1.35x -- but F(4x4,3x3)'s weight transform
# (float64, 36/9 of the kernel's size, and a second one for dx) costs about what it saves in one
# call, so it is chosen only when the transformed weights can be cached (read-only weights).
# Below 64 channels (VGG's 3-channel first layer) the GEMM is too thin for Winograd to pay.
WINOGRAD_MIN_CHANNELS = 64
WINOGRAD4_MIN_CHANNELS = 64


def _is_3x3_same(w: Array, stride: int, pad: int) -> bool:
    return tuple(w.shape[:2]) == (3, 3) and stride == 1 and pad == 1


def gpu_method() -> str:
    """The ``"auto"`` method for 3x3/s1/p1 convolutions on CuPy: ``$NUMPYNST_GPU_CONV``, default im2col.

    im2col is one gather kernel plus one cuBLAS GEMM per (large) chunk; the Winograd paths are
    dozens of element-wise kernel launches per chunk and were not measured on a GPU when this default
    was set. The variable (``im2col``, ``winograd`` or ``winograd4``) lets a benchmark compare them in
    one run on the device (benchmarks/vgg_step.py ``--gpu-conv``) without touching any caller.
    """
    name = os.environ.get("NUMPYNST_GPU_CONV", "im2col").strip().lower() or "im2col"
    if name not in FORWARD_METHODS[1:]:
        raise ValueError(f"NUMPYNST_GPU_CONV must be one of {', '.join(FORWARD_METHODS[1:])}, got {name!r}")
    return name


def _auto_method(w: Array, c: int, f: int) -> str:
    """Forward algorithm for a 3x3/s1/p1 conv with ``C`` inputs and ``F`` outputs (dx: swap them).

    On CuPy arrays: :func:`gpu_method` (im2col unless the environment says otherwise).
    """
    if get_xp(w).__name__ != "numpy":
        return gpu_method()
    if min(c, f) >= WINOGRAD4_MIN_CHANNELS and _cacheable(w):
        return "winograd4"
    if min(c, f) >= WINOGRAD_MIN_CHANNELS:
        return "winograd"
    return "im2col"


def forward_method(w: Array, stride: int, pad: int, method: str) -> str:
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
    return _auto_method(w, w.shape[2], w.shape[3]) if same3 else "im2col"


def backward_method(w: Array, stride: int, pad: int, method: str) -> str:
    """The ``dx`` path for ``method``: ``"col2im"``, ``"im2col"``, ``"winograd"`` or ``"winograd4"``.

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
    method = _auto_method(w, f, c)
    return "col2im" if method == "im2col" and c < f // 2 else method


def forward(x: Array, w: Array, b: Array | None, stride: int, pad: int, method: str) -> tuple[Array, Array | None]:
    """``(out, u)``: the convolution by the resolved ``method``, and for ``"winograd"`` the F(2x2,3x3)
    transform ``u (16, C, F)`` of ``w``, which the backward pass reuses (else None)."""
    if method == "winograd":
        u = _transformed(w, "f2")
        return winograd.conv3x3(x, u, b), u
    if method == "winograd4":
        return winograd4.conv3x3(x, _transformed(w, "f4"), b), None
    if method == "im2col":
        return im2col.conv_im2col(x, w, b, stride, pad, pad), None
    raise ValueError(f"conv2d_forward: no fast path {method!r}")


def dx(dout: Array, w: Array, x_shape: tuple[int, ...], stride: int, pad: int, method: str,
       u: Array | None = None) -> Array:
    """``dx`` by the resolved ``method``; ``u``: the F(2x2,3x3) transform of ``w`` when the forward
    pass made one (``"winograd"`` reuses it instead of transforming ``w`` again)."""
    if method == "winograd":
        return winograd.conv3x3(dout, _transformed(w, "f2") if u is None else u, flip=True)
    if method == "winograd4":
        return winograd4.conv3x3(dout, _transformed(w, "f4_flip"))
    if method == "im2col":
        return im2col.dx_flipped(dout, w, pad)
    if method == "col2im":
        return im2col.dx_col2im(dout, w, x_shape, stride, pad)
    raise ValueError(f"conv2d_backward: no fast path {method!r}")


# ---------------------------------------------------------------------------- transformed weights
# Winograd needs U = G w G^T. Recomputing it every call costs ~2 ms for a 512x512 kernel on the CPU
# (several % of a VGG iteration, and all of F(4x4,3x3)'s gain), so U is cached per weight array --
# but only for arrays that cannot change behind the cache's back: NumPy arrays marked read-only
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
    """``U`` for ``kind`` in ``"f2"`` (F(2x2,3x3)), ``"f4"``, ``"f4_flip"`` (F(4x4,3x3), fwd / dx)."""
    make = {"f2": winograd.transform_weights,
            "f4": winograd4.transform_weights,
            "f4_flip": lambda a: winograd4.transform_weights(a, flip=True)}[kind]
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
