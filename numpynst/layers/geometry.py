"""Window geometry shared by convolution and pooling: how many outputs fit along one axis.

A window of length ``k`` slides over ``size`` inputs padded with ``pad`` zeros on each side, moving
``stride`` at a time, and is applied only where it fits entirely (floor mode)::

    output_size(size, k, stride, pad) = (size + 2 pad - k) // stride + 1

so a remainder of the padded input shorter than ``stride`` past the last full window is dropped.
This is the only place the formula is written; the layers, the fast paths and the CUDA kernel
wrappers all call it.
"""

from __future__ import annotations


def output_size(size: int, k: int, stride: int, pad: int = 0) -> int:
    """``(size + 2 pad - k) // stride + 1``: output length along one spatial axis."""
    return (size + 2 * pad - k) // stride + 1
