"""2-D convolution (cross-correlation, as in every deep-learning framework), forward and backward.

Shapes (channels-last, as in Keras files)::

    x    (N, H, W, C)            input activations
    w    (KH, KW, C, F)          filters
    b    (F,)                    biases
    out  (N, Ho, Wo, F)          Ho = (H + 2 pad - KH) // stride + 1, likewise Wo (geometry.output_size)

Forward, with ``xpad`` the zero-padded input::

    out[n, i, j, f] = b[f] + sum_{p, q, c} xpad[n, i*s + p, j*s + q, c] * w[p, q, c, f]

Backward. Given ``dout = dL/dout`` (same shape as ``out``), the chain rule gives, for each term in the
sum above, the derivative with respect to the two factors it multiplies::

    db[f]          = sum_{n, i, j} dout[n, i, j, f]
    dw[p, q, c, f] = sum_{n, i, j} xpad[n, i*s + p, j*s + q, c] * dout[n, i, j, f]
    dxpad[n, i*s + p, j*s + q, c] += sum_f dout[n, i, j, f] * w[p, q, c, f]   (for every i, j, p, q)

and ``dx`` is ``dxpad`` with the padding cut off (padding is a constant, it passes no gradient on).

Two implementations with one signature:

* :func:`conv2d_forward_naive` / :func:`conv2d_backward_naive` loop over output positions and read like
  the formulas above. They are the reference the fast paths are tested against.
* :func:`conv2d_forward` / :func:`conv2d_backward` rewrite the sums as matrix products (im2col): gather
  every receptive field into one row of a matrix ``cols`` of shape ``(N*Ho*Wo, KH*KW*C)``; then the
  forward pass is the single GEMM ``cols @ w.reshape(KH*KW*C, F)``, ``dw = cols^T @ dout2d`` and
  ``dcols = dout2d @ w2d^T`` which col2im scatters back onto the input grid. :func:`im2col` and
  :func:`col2im` below are that gather and scatter, loops over the ``KH*KW`` kernel offsets, each
  copying one strided slice: no index arrays, no duplicate-index scatter (undefined on GPUs), the
  same code on NumPy and CuPy.

How the fast ops are made fast lives in :mod:`numpynst.layers.fast`, each choice measured per VGG19
layer (benchmarks/README.md): chunked im2col in reused scratch, ``dx`` as a convolution of ``dout``
with the flipped kernel (:mod:`~numpynst.layers.fast.im2col`), Winograd F(2x2,3x3) and F(4x4,3x3)
for 3x3/stride-1/pad-1 layers of 64+ channels (:mod:`~numpynst.layers.fast.winograd`,
:mod:`~numpynst.layers.fast.winograd4`), and the rule that picks one
(:mod:`~numpynst.layers.fast.dispatch`). The ``method`` argument forces one path.

The cache keeps the input, not ``cols``: ``cols`` is ``KH*KW`` times larger than ``x``, and style
transfer (which never needs ``dw``) would otherwise hold nine copies of every VGG activation.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ..backend import get_xp
from ..checks import integer
from .fast import cuda_kernels, dispatch
from .fast.im2col import dw_im2col
from .geometry import output_size

Array = Any


class ConvCache(NamedTuple):
    """What ``conv2d_backward`` needs from the forward pass."""

    x: Array               # (N, H, W, C) input, unpadded
    w: Array               # (KH, KW, C, F)
    stride: int
    pad: int
    method: str = "naive"  # the path that made it: "naive", "im2col", "winograd" or "winograd4"
    u: Array = None        # method "winograd" only: U (16, C, F), w's F(2x2,3x3) transform; backward reuses it


# The name numpynst.layers has always exported for geometry.output_size.
conv_output_size = output_size


def _validate(x: Array, w: Array, b: Array | None, stride: int, pad: int) -> tuple[int, int]:
    """``(stride, pad)`` as ints; ``ValueError`` naming the shapes when the arguments cannot be convolved."""
    if getattr(x, "ndim", None) != 4:
        raise ValueError(f"conv2d: x must be 4-D (N, H, W, C), got shape {getattr(x, 'shape', None)}")
    if getattr(w, "ndim", None) != 4:
        raise ValueError(f"conv2d: w must be 4-D (KH, KW, C_in, C_out), got shape {getattr(w, 'shape', None)}")
    if x.shape[3] != w.shape[2]:
        raise ValueError(f"conv2d: channel mismatch, x has C={x.shape[3]} (x.shape={tuple(x.shape)}) "
                         f"but w expects C_in={w.shape[2]} (w.shape={tuple(w.shape)})")
    if b is not None and tuple(b.shape) != (w.shape[3],):
        raise ValueError(f"conv2d: b must have shape ({w.shape[3]},) to match w.shape={tuple(w.shape)}, "
                         f"got {tuple(b.shape)}")
    stride = integer("conv2d: stride", stride, minimum=1, error=ValueError)
    pad = integer("conv2d: pad", pad, minimum=0, error=ValueError)
    hp, wp = x.shape[1] + 2 * pad, x.shape[2] + 2 * pad
    if w.shape[0] > hp or w.shape[1] > wp:
        raise ValueError(f"conv2d: kernel {w.shape[0]}x{w.shape[1]} (w.shape={tuple(w.shape)}) is larger "
                         f"than the padded input {hp}x{wp} (x.shape={tuple(x.shape)}, pad={pad})")
    return stride, pad


def _pad(x: Array, pad: int) -> Array:
    if pad == 0:
        return x
    xp = get_xp(x)
    return xp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))


# --------------------------------------------------------------------------------------------
# Naive reference: one output position at a time, exactly the sums in the module docstring.
# --------------------------------------------------------------------------------------------

def conv2d_forward_naive(x: Array, w: Array, b: Array, stride: int = 1, pad: int = 1) -> tuple[Array, ConvCache]:
    """Reference convolution: a loop over output positions ``(i, j)``.

    Same signature, shapes and result as :func:`conv2d_forward`; slow, but each line is a formula.
    """
    stride, pad = _validate(x, w, b, stride, pad)
    xp = get_xp(x, w, b)
    n, h, wd, _ = x.shape
    kh, kw, _, f = w.shape
    ho, wo = output_size(h, kh, stride, pad), output_size(wd, kw, stride, pad)
    xpad = _pad(x, pad)
    out = xp.empty((n, ho, wo, f), dtype=xp.result_type(x, w))
    for i in range(ho):
        for j in range(wo):
            window = xpad[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]   # (N, KH, KW, C)
            # out[n, i, j, f] = b[f] + sum_{p,q,c} window[n, p, q, c] * w[p, q, c, f]
            out[:, i, j, :] = xp.tensordot(window, w, axes=([1, 2, 3], [0, 1, 2])) + b
    return out, ConvCache(x, w, stride, pad)


def conv2d_backward_naive(dout: Array, cache: ConvCache,
                          weight_grads: bool = True) -> tuple[Array, Array | None, Array | None]:
    """Reference backward pass: the loop of :func:`conv2d_forward_naive`, run in reverse.

    Returns ``(dx, dw, db)``; ``(dx, None, None)`` when ``weight_grads`` is False.
    """
    x, w, stride, pad = cache.x, cache.w, cache.stride, cache.pad
    xp = get_xp(dout, x, w)
    kh, kw = w.shape[:2]
    ho, wo = dout.shape[1:3]
    xpad = _pad(x, pad)
    dxpad = xp.zeros_like(xpad, dtype=xp.result_type(dout, w))
    dw = xp.zeros_like(w) if weight_grads else None
    for i in range(ho):
        for j in range(wo):
            rows, cols = slice(i * stride, i * stride + kh), slice(j * stride, j * stride + kw)
            g = dout[:, i, j, :]                                             # (N, F)
            # dxpad[n, i*s+p, j*s+q, c] += sum_f g[n, f] * w[p, q, c, f]
            dxpad[:, rows, cols, :] += xp.tensordot(g, w, axes=([1], [3]))
            if weight_grads:
                # dw[p, q, c, f] += sum_n xpad[n, i*s+p, j*s+q, c] * g[n, f]
                dw += xp.tensordot(xpad[:, rows, cols, :], g, axes=([0], [0]))
    dx = dxpad[:, pad:pad + x.shape[1], pad:pad + x.shape[2], :]
    if not weight_grads:
        return dx, None, None
    db = dout.sum(axis=(0, 1, 2))
    return dx, dw, db


# --------------------------------------------------------------------------------------------
# The sums as matrix products: im2col (gather) and its adjoint col2im (scatter-add).
# --------------------------------------------------------------------------------------------

def im2col(x: Array, kh: int, kw: int, stride: int, pad: int) -> Array:
    """Gather receptive fields: ``(N, H, W, C) -> cols (N*Ho*Wo, KH*KW*C)``.

    Row ``(n, i, j)`` of ``cols`` is the window ``xpad[n, i*s:i*s+KH, j*s:j*s+KW, :]`` flattened in
    ``(p, q, c)`` order, which is the order of ``w.reshape(KH*KW*C, F)``. Built with one strided-slice
    copy per kernel offset ``(p, q)``: ``KH*KW`` large contiguous copies instead of ``N*Ho*Wo`` small ones.
    """
    if cuda_kernels.supports(x):            # CuPy: the same gather as one kernel launch
        return cuda_kernels.im2col(x, kh, kw, stride, pad)
    xp = get_xp(x)
    n, h, wd, c = x.shape
    ho, wo = output_size(h, kh, stride, pad), output_size(wd, kw, stride, pad)
    xpad = _pad(x, pad)
    cols = xp.empty((n, ho, wo, kh, kw, c), dtype=x.dtype)
    for p in range(kh):
        for q in range(kw):
            cols[:, :, :, p, q, :] = xpad[:, p:p + stride * ho:stride, q:q + stride * wo:stride, :]
    return cols.reshape(n * ho * wo, kh * kw * c)


def col2im(cols: Array, x_shape: tuple[int, int, int, int], kh: int, kw: int, stride: int, pad: int) -> Array:
    """Adjoint of :func:`im2col`: scatter-add ``cols (N*Ho*Wo, KH*KW*C)`` back to ``(N, H, W, C)``.

    Overlapping windows add up. Each kernel offset ``(p, q)`` writes a strided slice whose elements are
    all distinct, so the ``+=`` is a plain elementwise add (safe on GPUs, unlike a fancy-index scatter
    with repeated indices); the overlap is handled by the loop over offsets.
    """
    if cuda_kernels.supports(cols):         # CuPy: one gather kernel, each element sums its sources
        return cuda_kernels.col2im(cols, x_shape, kh, kw, stride, pad)
    xp = get_xp(cols)
    n, h, wd, c = x_shape
    ho, wo = output_size(h, kh, stride, pad), output_size(wd, kw, stride, pad)
    cols6 = cols.reshape(n, ho, wo, kh, kw, c)
    dxpad = xp.zeros((n, h + 2 * pad, wd + 2 * pad, c), dtype=cols.dtype)
    for p in range(kh):
        for q in range(kw):
            dxpad[:, p:p + stride * ho:stride, q:q + stride * wo:stride, :] += cols6[:, :, :, p, q, :]
    return dxpad[:, pad:pad + h, pad:pad + wd, :]


def _common_dtype(x: Array, w: Array, b: Array | None) -> tuple[Array, Array, Array | None]:
    """``x``, ``w`` and ``b`` in the result type of ``x`` and ``w`` (never ``b``'s: a float64 bias must
    not promote float32)."""
    dt = get_xp(x, w, b).result_type(x.dtype, w.dtype)
    return x.astype(dt, copy=False), w.astype(dt, copy=False), None if b is None else b.astype(dt, copy=False)


def conv2d_forward(x: Array, w: Array, b: Array, stride: int = 1, pad: int = 1, *,
                   method: str = "auto", relu: bool = False) -> tuple[Array, ConvCache]:
    """Convolution ``out = im2col(x) @ w2d + b`` (see the module docstring for the sums).

    Args:
        x: ``(N, H, W, C)`` input. w: ``(KH, KW, C, F)`` filters. b: ``(F,)`` biases (or None).
        stride, pad: positive stride; symmetric zero padding on H and W.
        method: ``"im2col"`` (chunked im2col + one GEMM per chunk; any shape), ``"winograd"``
            (F(2x2,3x3), 3x3/stride 1/pad 1 only, see :mod:`numpynst.layers.fast.winograd`),
            ``"winograd4"`` (F(4x4,3x3), :mod:`numpynst.layers.fast.winograd4`), or ``"auto"`` (what
            measured fastest for the shape, see :func:`numpynst.layers.fast.dispatch.forward_method`).
        relu: return ``max(conv, 0)``: the convolution and the ReLU after it in one go, the ReLU
            applied as each band of output is written (no second pass over an activation-sized
            array). ``out`` is then exactly ``relu_forward(conv2d_forward(...)[0])[0]``; the ReLU's
            backward needs only ``out`` (:class:`numpynst.layers.relu.ReluCache` ``(out)``), and the
            returned cache is the convolution's, as without ``relu``.
    Returns:
        ``(out, cache)``, ``out`` of shape ``(N, Ho, Wo, F)`` in the dtype of ``x`` and ``w``.
    Raises:
        ValueError naming the shapes for a wrong ndim, a channel mismatch, a kernel larger than the
        padded input, a non-positive stride, or a method that does not apply.
    """
    stride, pad = _validate(x, w, b, stride, pad)
    x, w, b = _common_dtype(x, w, b)
    method = dispatch.forward_method(w, stride, pad, method, x.shape[1] * x.shape[2])   # the path, by shape
    out, u = dispatch.forward(x, w, b, stride, pad, method, relu=bool(relu))
    return out, ConvCache(x, w, stride, pad, method, u)


def conv2d_backward(dout: Array, cache: ConvCache, weight_grads: bool = True, *,
                    method: str = "auto") -> tuple[Array, Array | None, Array | None]:
    """Gradients of the convolution.

    With ``dout2d = dout.reshape(N*Ho*Wo, F)`` and ``w2d = w.reshape(KH*KW*C, F)``::

        dx = col2im(dout2d @ w2d^T)      dw = (im2col(x)^T @ dout2d).reshape(w.shape)
        db = dout2d.sum(axis=0)

    For stride 1 the first line is itself a convolution: ``dx[n,y,z,c] = sum_{p,q,f}
    doutpad[n, y+p, z+q, f] * w[KH-1-p, KW-1-q, c, f]`` with ``dout`` zero-padded by ``K-1-pad``,
    i.e. a forward convolution of ``dout`` with the flipped kernel whose channel axes are swapped.
    That form needs no scatter-add and can use the forward fast paths.

    Args:
        dout: ``(N, Ho, Wo, F)``, the upstream gradient. cache: from :func:`conv2d_forward`.
        weight_grads: when False, skip ``dw``/``db`` (and the im2col they need) and return
            ``(dx, None, None)``; style transfer only ever needs ``dx``.
        method: how to compute ``dx``: ``"col2im"`` (GEMM + scatter-add; any stride), ``"im2col"``
            (forward conv of ``dout`` with the flipped kernel; stride 1, ``pad < K``),
            ``"winograd"`` / ``"winograd4"`` (the same with Winograd; 3x3/stride 1/pad 1), or ``"auto"``
            (see :func:`numpynst.layers.fast.dispatch.backward_method`: col2im for every kernel that is
            not 3x3/stride 1/pad 1).
    Returns:
        ``(dx, dw, db)`` with the shapes of ``x``, ``w`` and ``b``.
    """
    x, w, stride, pad = cache.x, cache.w, cache.stride, cache.pad
    kh, kw, _, f = w.shape
    ho, wo = output_size(x.shape[1], kh, stride, pad), output_size(x.shape[2], kw, stride, pad)
    if tuple(dout.shape) != (x.shape[0], ho, wo, f):
        raise ValueError(f"conv2d_backward: dout.shape={tuple(dout.shape)} does not match the forward "
                         f"output {(x.shape[0], ho, wo, f)}")
    method = dispatch.backward_method(w, stride, pad, method, x.shape[1] * x.shape[2])   # the path, by shape
    get_xp(dout, x, w)                                           # a NumPy/CuPy mix fails here, not deep inside
    dout = dout.astype(x.dtype, copy=False)
    dx = dispatch.dx(dout, w, x.shape, stride, pad, method, u=cache.u if cache.method == "winograd" else None)
    if not weight_grads:
        return dx, None, None
    return dx, dw_im2col(x, dout, kh, kw, stride, pad), dout.sum(axis=(0, 1, 2))
