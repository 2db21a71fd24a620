"""Tiny VGGs with random weights, for tests and tutorials that need a network but not ImageNet.

A tiny VGG has the real layer names and block layout (so code written for VGG19 runs unchanged)
but a few channels per block, so a forward/backward pass takes milliseconds and a full numerical
gradient check is affordable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .arch import ARCH_BLOCKS, conv_layer_names
from .vgg import VGG
from .weights import write_vgg_h5

DEFAULT_WIDTHS = (4, 6, 8, 8, 8)


def tiny_params(arch: str = "vgg19", widths: tuple[int, ...] = DEFAULT_WIDTHS,
                seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Random float64 ``{conv name: (W (3,3,Cin,Cout), b (Cout,))}``; block ``k`` has ``widths[k]`` channels.

    He scaling, ``W ~ N(0, 2 / (9 Cin))``, keeps activations O(1) through the ReLUs; biases
    ``~ N(0, 0.1^2)`` so that no unit sits exactly at the ReLU kink.
    """
    blocks = ARCH_BLOCKS[arch]
    if len(widths) != len(blocks):
        raise ValueError(f"widths needs {len(blocks)} entries (one per block), got {widths!r}")
    rng = np.random.default_rng(seed)
    params = {}
    cin = 3
    names = iter(conv_layer_names(arch))
    for width, n in zip(widths, blocks):
        for _ in range(n):
            w = rng.standard_normal((3, 3, cin, width)) * np.sqrt(2.0 / (9 * cin))
            b = 0.1 * rng.standard_normal(width)
            params[next(names)] = (w, b)
            cin = width
    return params


def tiny_vgg(arch: str = "vgg19", widths: tuple[int, ...] = DEFAULT_WIDTHS, seed: int = 0,
             dtype: Any = np.float64, backend: str = "numpy", pooling: str = "max") -> VGG:
    """A :class:`~numpynst.vgg.VGG` with :func:`tiny_params` weights (float64 by default)."""
    return VGG.from_params(arch, tiny_params(arch, widths, seed), backend=backend, pooling=pooling,
                           dtype=dtype)


def write_tiny_vgg_h5(path: str | os.PathLike, arch: str = "vgg19",
                      widths: tuple[int, ...] = DEFAULT_WIDTHS, seed: int = 0,
                      dtype: Any = np.float32) -> Path:
    """Write :func:`tiny_params` as a Keras-layout HDF5 file (what :meth:`VGG.from_h5` reads)."""
    return write_vgg_h5(path, tiny_params(arch, widths, seed), dtype=dtype)
