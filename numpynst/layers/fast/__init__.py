"""Speed only: the code that makes :mod:`numpynst.layers` fast without changing what it computes.

Each module's docstring names the textbook twin (in :mod:`numpynst.layers`) it must agree with:

* :mod:`~numpynst.layers.fast.dispatch` -- which convolution path runs (``method="auto"``), and the
  cache of Winograd-transformed weights;
* :mod:`~numpynst.layers.fast.im2col` -- chunked im2col GEMMs, ``dx`` as a convolution, chunked
  col2im and ``dw``;
* :mod:`~numpynst.layers.fast.winograd` / :mod:`~numpynst.layers.fast.winograd4` -- Winograd
  F(2x2,3x3) and F(4x4,3x3) for 3x3/stride 1/pad 1 (F(4x4,3x3)'s dx as the transposed algorithm);
* :mod:`~numpynst.layers.fast.parallel` -- a layer's chunks on every core (BLAS one-threaded meanwhile);
* :mod:`~numpynst.layers.fast.masking` -- branch-free ``where(mask, a, 0)`` for ReLU and max pooling;
* :mod:`~numpynst.layers.fast.workspace` -- reused scratch buffers and the rows-per-chunk rule;
* :mod:`~numpynst.layers.fast.cuda_kernels` -- one-pass CUDA kernels for CuPy arrays.

Nothing here imports the layer modules (they import this): only :mod:`numpynst.backend`,
:mod:`numpynst.layers.geometry` and each other. This package's ``__init__`` imports nothing.
"""
