"""2-D convolution (cross-correlation, as in every deep-learning framework), forward and backward.

Shapes (channels-last, as in Keras files)::

    x    (N, H, W, C)            input activations
    w    (KH, KW, C, F)          filters
    b    (F,)                    biases
    out  (N, Ho, Wo, F)          Ho = (H + 2 pad - KH) // stride + 1, likewise Wo

Forward, with ``xp`` the zero-padded input::

    out[n, i, j, f] = b[f] + sum_{p, q, c} xp[n, i*s + p, j*s + q, c] * w[p, q, c, f]

Backward. Given ``dout = dL/dout`` (same shape as ``out``), the chain rule gives, for each term in the
sum above, the derivative with respect to the two factors it multiplies::

    db[f]          = sum_{n, i, j} dout[n, i, j, f]
    dw[p, q, c, f] = sum_{n, i, j} xp[n, i*s + p, j*s + q, c] * dout[n, i, j, f]
    dxp[n, i*s + p, j*s + q, c] += sum_f dout[n, i, j, f] * w[p, q, c, f]     (for every i, j, p, q)

and ``dx`` is ``dxp`` with the padding cut off (padding is a constant, it passes no gradient on).

Two implementations with one signature:

* :func:`conv2d_forward_naive` / :func:`conv2d_backward_naive` loop over output positions and read like
  the formulas above. They are the reference the fast path is tested against.
* :func:`conv2d_forward` / :func:`conv2d_backward` rewrite the sums as matrix products (im2col): gather
  every receptive field into one row of a matrix ``cols`` of shape ``(N*Ho*Wo, KH*KW*C)``; then the
  forward pass is the single GEMM ``cols @ w.reshape(KH*KW*C, F)``, ``dw = cols^T @ dout2d`` and
  ``dcols = dout2d @ w2d^T`` which col2im scatters back onto the input grid. The gather and scatter
  are loops over the ``KH*KW`` kernel offsets, each copying one strided slice: no index arrays, no
  duplicate-index scatter (undefined on GPUs), the same code on NumPy and CuPy.

The cache keeps the input, not ``cols``: ``cols`` is ``KH*KW`` times larger than ``x``, and style
transfer (which never needs ``dw``) would otherwise hold nine copies of every VGG activation.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .backend import get_xp

Array = Any


class ConvCache(NamedTuple):
    """What ``conv2d_backward`` needs from the forward pass."""

    x: Array          # (N, H, W, C) input, unpadded
    w: Array          # (KH, KW, C, F)
    stride: int
    pad: int


def conv_output_size(size: int, k: int, stride: int, pad: int) -> int:
    """``(size + 2 pad - k) // stride + 1``: output length along one spatial axis."""
    return (size + 2 * pad - k) // stride + 1


def _validate(x: Array, w: Array, b: Array | None, stride: int, pad: int) -> None:
    """Raise ``ValueError`` naming the shapes when the arguments cannot be convolved."""
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
    if not isinstance(stride, int) or isinstance(stride, bool) or stride < 1:
        raise ValueError(f"conv2d: stride must be a positive integer, got {stride!r}")
    if not isinstance(pad, int) or isinstance(pad, bool) or pad < 0:
        raise ValueError(f"conv2d: pad must be a non-negative integer, got {pad!r}")
    hp, wp = x.shape[1] + 2 * pad, x.shape[2] + 2 * pad
    if w.shape[0] > hp or w.shape[1] > wp:
        raise ValueError(f"conv2d: kernel {w.shape[0]}x{w.shape[1]} (w.shape={tuple(w.shape)}) is larger "
                         f"than the padded input {hp}x{wp} (x.shape={tuple(x.shape)}, pad={pad})")


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
    _validate(x, w, b, stride, pad)
    xp_ = get_xp(x, w, b)
    n, h, wd, _ = x.shape
    kh, kw, _, f = w.shape
    ho, wo = conv_output_size(h, kh, stride, pad), conv_output_size(wd, kw, stride, pad)
    xpad = _pad(x, pad)
    out = xp_.empty((n, ho, wo, f), dtype=xp_.result_type(x, w))
    for i in range(ho):
        for j in range(wo):
            window = xpad[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]   # (N, KH, KW, C)
            # out[n, i, j, f] = b[f] + sum_{p,q,c} window[n, p, q, c] * w[p, q, c, f]
            out[:, i, j, :] = xp_.tensordot(window, w, axes=([1, 2, 3], [0, 1, 2])) + b
    return out, ConvCache(x, w, stride, pad)


def conv2d_backward_naive(dout: Array, cache: ConvCache,
                          weight_grads: bool = True) -> tuple[Array, Array | None, Array | None]:
    """Reference backward pass: the loop of :func:`conv2d_forward_naive`, run in reverse.

    Returns ``(dx, dw, db)``; ``(dx, None, None)`` when ``weight_grads`` is False.
    """
    x, w, stride, pad = cache
    xp_ = get_xp(dout, x, w)
    kh, kw = w.shape[:2]
    ho, wo = dout.shape[1:3]
    xpad = _pad(x, pad)
    dxpad = xp_.zeros_like(xpad, dtype=xp_.result_type(dout, w))
    dw = xp_.zeros_like(w) if weight_grads else None
    for i in range(ho):
        for j in range(wo):
            rows, cols = slice(i * stride, i * stride + kh), slice(j * stride, j * stride + kw)
            g = dout[:, i, j, :]                                             # (N, F)
            # dxp[n, i*s+p, j*s+q, c] += sum_f g[n, f] * w[p, q, c, f]
            dxpad[:, rows, cols, :] += xp_.tensordot(g, w, axes=([1], [3]))
            if weight_grads:
                # dw[p, q, c, f] += sum_n xp[n, i*s+p, j*s+q, c] * g[n, f]
                dw += xp_.tensordot(xpad[:, rows, cols, :], g, axes=([0], [0]))
    dx = dxpad[:, pad:pad + x.shape[1], pad:pad + x.shape[2], :]
    if not weight_grads:
        return dx, None, None
    db = dout.sum(axis=(0, 1, 2))
    return dx, dw, db


# --------------------------------------------------------------------------------------------
# Fast path: im2col + one GEMM.
# --------------------------------------------------------------------------------------------

def im2col(x: Array, kh: int, kw: int, stride: int, pad: int) -> Array:
    """Gather receptive fields: ``(N, H, W, C) -> cols (N*Ho*Wo, KH*KW*C)``.

    Row ``(n, i, j)`` of ``cols`` is the window ``xp[n, i*s:i*s+KH, j*s:j*s+KW, :]`` flattened in
    ``(p, q, c)`` order, which is the order of ``w.reshape(KH*KW*C, F)``. Built with one strided-slice
    copy per kernel offset ``(p, q)``: ``KH*KW`` large contiguous copies instead of ``N*Ho*Wo`` small ones.
    """
    xp_ = get_xp(x)
    n, h, wd, c = x.shape
    ho, wo = conv_output_size(h, kh, stride, pad), conv_output_size(wd, kw, stride, pad)
    xpad = _pad(x, pad)
    cols = xp_.empty((n, ho, wo, kh, kw, c), dtype=x.dtype)
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
    xp_ = get_xp(cols)
    n, h, wd, c = x_shape
    ho, wo = conv_output_size(h, kh, stride, pad), conv_output_size(wd, kw, stride, pad)
    cols6 = cols.reshape(n, ho, wo, kh, kw, c)
    dxpad = xp_.zeros((n, h + 2 * pad, wd + 2 * pad, c), dtype=cols.dtype)
    for p in range(kh):
        for q in range(kw):
            dxpad[:, p:p + stride * ho:stride, q:q + stride * wo:stride, :] += cols6[:, :, :, p, q, :]
    return dxpad[:, pad:pad + h, pad:pad + wd, :]


def conv2d_forward(x: Array, w: Array, b: Array, stride: int = 1, pad: int = 1) -> tuple[Array, ConvCache]:
    """Convolution ``out = im2col(x) @ w2d + b`` (see the module docstring for the sums).

    Args:
        x: ``(N, H, W, C)`` input. w: ``(KH, KW, C, F)`` filters. b: ``(F,)`` biases.
        stride, pad: positive stride; symmetric zero padding on H and W.
    Returns:
        ``(out, cache)``, ``out`` of shape ``(N, Ho, Wo, F)`` in the dtype of ``x`` and ``w``.
    Raises:
        ValueError naming the shapes for a wrong ndim, a channel mismatch, a kernel larger than the
        padded input, or a non-positive stride.
    """
    _validate(x, w, b, stride, pad)
    xp_ = get_xp(x, w, b)
    n, h, wd, _ = x.shape
    kh, kw, c, f = w.shape
    ho, wo = conv_output_size(h, kh, stride, pad), conv_output_size(wd, kw, stride, pad)
    if kh == kw == 1 and stride == 1 and pad == 0:
        cols = x.reshape(n * h * wd, c)     # a 1x1 conv is already a GEMM: no gather needed
    else:
        cols = im2col(x, kh, kw, stride, pad)
    out = cols @ w.reshape(kh * kw * c, f)
    out += b                                 # in place: no second (N*Ho*Wo, F) temporary
    return out.reshape(n, ho, wo, f), ConvCache(x, w, stride, pad)


def conv2d_backward(dout: Array, cache: ConvCache,
                    weight_grads: bool = True) -> tuple[Array, Array | None, Array | None]:
    """Gradients of the convolution.

    With ``dout2d = dout.reshape(N*Ho*Wo, F)`` and ``w2d = w.reshape(KH*KW*C, F)``::

        dx = col2im(dout2d @ w2d^T)      dw = (im2col(x)^T @ dout2d).reshape(w.shape)
        db = dout2d.sum(axis=0)

    Args:
        dout: ``(N, Ho, Wo, F)``, the upstream gradient. cache: from :func:`conv2d_forward`.
        weight_grads: when False, skip ``dw``/``db`` (and the im2col they need) and return
            ``(dx, None, None)``; style transfer only ever needs ``dx``.
    Returns:
        ``(dx, dw, db)`` with the shapes of ``x``, ``w`` and ``b``.
    """
    x, w, stride, pad = cache
    kh, kw, c, f = w.shape
    if tuple(dout.shape[:1]) + tuple(dout.shape[3:]) != (x.shape[0], f):
        raise ValueError(f"conv2d_backward: dout.shape={tuple(dout.shape)} does not match the forward "
                         f"output (N={x.shape[0]}, F={f})")
    dout2d = dout.reshape(-1, f)
    w2d = w.reshape(kh * kw * c, f)
    dcols = dout2d @ w2d.T
    if kh == kw == 1 and stride == 1 and pad == 0:
        dx = dcols.reshape(x.shape)
    else:
        dx = col2im(dcols, x.shape, kh, kw, stride, pad)
    if not weight_grads:
        return dx, None, None
    if kh == kw == 1 and stride == 1 and pad == 0:
        cols = x.reshape(-1, c)
    else:
        cols = im2col(x, kh, kw, stride, pad)
    dw = (cols.T @ dout2d).reshape(w.shape)
    db = dout2d.sum(axis=0)
    return dx, dw, db
