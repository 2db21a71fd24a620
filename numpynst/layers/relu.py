"""ReLU, forward and backward.

    out = max(x, 0)                       (elementwise, any shape)
    dx  = dout * [x > 0]                  (the derivative of max(x, 0) is the step function)

At exactly ``x = 0`` ReLU has no derivative; we use 0 there (``x > 0``, strict), as PyTorch and
cuDNN do. Gradient checks keep inputs away from 0 so the kink never falls inside a finite
difference.

:func:`relu_forward` is already the textbook formula. :func:`relu_backward` is fast (a branch-free
bit mask on NumPy, :mod:`numpynst.layers.fast.masking`; one CUDA kernel on CuPy); its twin
:func:`relu_backward_naive` is the formula above as one ``where``, and the two agree bit for bit.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ..backend import get_xp
from .fast import cuda_kernels, masking, parallel

Array = Any


class ReluCache(NamedTuple):
    """The forward *output*: ``out > 0`` is the same mask as ``x > 0`` and ``out`` is kept anyway
    (it is the activation a caller asked for), so caching it costs no memory."""

    out: Array


def relu_forward(x: Array, out: Array | None = None) -> tuple[Array, ReluCache]:
    """``out = max(x, 0)``; shape and dtype of ``x``. Returns ``(out, cache)``.

    ``out``: optional array of ``x``'s shape and dtype to write into; it may be ``x`` itself when the
    caller owns ``x`` and no longer needs it (VGG's pre-activation: no fresh activation-sized array,
    whose first touch costs page faults). On NumPy the work runs in bands of rows on every core.
    """
    xp = get_xp(x)
    if out is None:
        out = xp.empty_like(x)
    elif tuple(out.shape) != tuple(x.shape) or out.dtype != x.dtype:
        raise ValueError(f"relu_forward: out has shape {tuple(out.shape)} and dtype {out.dtype}, "
                         f"x {tuple(x.shape)} and {x.dtype}")
    if parallel.parallel_for(x) > 1:
        parallel.run(x, lambda idx: xp.maximum(x[idx], 0, out=out[idx]), list(masking.row_blocks(x.shape)))
    else:
        xp.maximum(x, 0, out=out)
    return out, ReluCache(out)


def relu_backward(dout: Array, cache: ReluCache, out: Array | None = None) -> Array:
    """``dx = dout * (x > 0)``, same shape as ``dout``.

    ``out``: optional array of ``dout``'s shape and dtype to write ``dx`` into; it may be ``dout``
    itself when the caller owns ``dout`` and no longer needs it (saves a fresh array).
    """
    if dout.shape != cache.out.shape:
        raise ValueError(f"relu_backward: dout.shape={tuple(dout.shape)} != forward shape "
                         f"{tuple(cache.out.shape)}")
    if out is not None and (tuple(out.shape) != tuple(dout.shape) or out.dtype != dout.dtype):
        raise ValueError(f"relu_backward: out has shape {tuple(out.shape)} and dtype {out.dtype}, "
                         f"dout {tuple(dout.shape)} and {dout.dtype}")
    if cuda_kernels.supports(dout, cache.out):   # CuPy: one fused elementwise kernel, no mask array
        return cuda_kernels.relu_backward(dout, cache.out, out)
    # where(out > 0, dout, 0), not a multiply by the mask: a NaN in dout behind a dead unit stays
    # out of dx. masking does it on the bit patterns, without where()'s per-element branch.
    return masking.select_positive(cache.out, dout, out=out)


def relu_backward_naive(dout: Array, cache: ReluCache) -> Array:
    """Reference for :func:`relu_backward`: ``where(out > 0, dout, 0)``, a fresh array.

    ``where``, not ``dout * (out > 0)``: a NaN in ``dout`` behind a dead unit must not reach ``dx``.
    """
    xp = get_xp(dout, cache.out)
    return xp.where(cache.out > 0, dout, xp.zeros((), dtype=dout.dtype))
