"""The layers of a VGG network, forward and backward, in one namespace.

Every op follows one contract::

    out, cache = op_forward(x, ...)
    dx         = op_backward(dout, cache)          # conv: dx, dw, db = conv2d_backward(dout, cache)

The implementations live in one module per idea: :mod:`numpynst.conv` (convolution, naive and
im2col), :mod:`numpynst.activations` (ReLU) and :mod:`numpynst.pooling` (max/average pooling).
"""

from .activations import ReluCache, relu_backward, relu_forward
from .conv import (ConvCache, col2im, conv2d_backward, conv2d_backward_naive, conv2d_forward,
                   conv2d_forward_naive, conv_output_size, im2col)
from .pooling import (AvgPoolCache, MaxPoolCache, avgpool_backward, avgpool_forward,
                      maxpool_backward, maxpool_forward, maxpool_forward_naive)

__all__ = [
    "ConvCache", "ReluCache", "MaxPoolCache", "AvgPoolCache",
    "conv2d_forward", "conv2d_backward", "conv2d_forward_naive", "conv2d_backward_naive",
    "conv_output_size", "im2col", "col2im",
    "relu_forward", "relu_backward",
    "maxpool_forward", "maxpool_backward", "maxpool_forward_naive",
    "avgpool_forward", "avgpool_backward",
]
