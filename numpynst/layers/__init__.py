"""The layers of a VGG network, forward and backward, in one namespace.

Every op follows one contract::

    out, cache = op_forward(x, ...)
    dx         = op_backward(dout, cache)          # conv: dx, dw, db = conv2d_backward(dout, cache)

``cache`` holds what the backward pass needs from the forward pass, and nothing else.

One module per idea, each with its math in the docstring and naive loop twins (``*_naive``) beside
the ops, which read like the formulas and are what the ops are tested against:

* :mod:`numpynst.layers.conv` -- convolution: naive loops, textbook im2col/col2im, the ops;
* :mod:`numpynst.layers.relu` -- ReLU;
* :mod:`numpynst.layers.pooling` -- max and average pooling (floor mode, first-maximum tie rule);
* :mod:`numpynst.layers.geometry` -- the output-size formula they share.

:mod:`numpynst.layers.fast` holds what only makes them fast (chunked im2col, Winograd, branch-free
masks, scratch buffers, CUDA kernels); each of its modules names the textbook twin it must agree with.
"""

from .conv import (ConvCache, col2im, conv2d_backward, conv2d_backward_naive, conv2d_forward,
                   conv2d_forward_naive, conv_output_size, im2col)
from .pooling import (AvgPoolCache, MaxPoolCache, avgpool_backward, avgpool_backward_naive,
                      avgpool_forward, avgpool_forward_naive, maxpool_backward, maxpool_backward_naive,
                      maxpool_forward, maxpool_forward_naive)
from .relu import ReluCache, relu_backward, relu_backward_naive, relu_forward

__all__ = [
    "ConvCache", "ReluCache", "MaxPoolCache", "AvgPoolCache",
    "conv2d_forward", "conv2d_backward", "conv2d_forward_naive", "conv2d_backward_naive",
    "conv_output_size", "im2col", "col2im",
    "relu_forward", "relu_backward", "relu_backward_naive",
    "maxpool_forward", "maxpool_backward", "maxpool_forward_naive", "maxpool_backward_naive",
    "avgpool_forward", "avgpool_backward", "avgpool_forward_naive", "avgpool_backward_naive",
]
