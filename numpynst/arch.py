"""The VGG16/VGG19 architecture tables: block layout and Keras layer names.

The one place that knows the shape of the network, imported alike by the model
(:mod:`numpynst.vgg`) and the weights reader (:mod:`numpynst.weights`)::

    block b = n_b x [conv 3x3, pad 1, stride 1 -> ReLU]  then  2x2 pool, stride 2
    VGG16: n = (2, 2, 3, 3, 3)      VGG19: n = (2, 2, 4, 4, 4)

Names are Keras's: ``block3_conv2`` is the post-ReLU output of block 3's second convolution,
``block3_pool`` the output of block 3's pool.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import OptionError

# conv layers per block
ARCH_BLOCKS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
# output channels of each conv in block b, both architectures; a file may hold a narrower model
# (the test suite's tiny one), never a wider one: the weights reader bounds what it allocates by it
BLOCK_WIDTHS = (64, 128, 256, 512, 512)


def blocks(arch: str) -> tuple[int, ...]:
    """Conv layers per block of ``arch``; :class:`OptionError` for an unknown architecture."""
    try:
        return ARCH_BLOCKS[arch]
    except (KeyError, TypeError):
        raise OptionError(f"architecture must be one of {', '.join(ARCH_BLOCKS)}, got {arch!r}") from None


def conv_layer_names(arch: str) -> tuple[str, ...]:
    """``("block1_conv1", "block1_conv2", "block2_conv1", ...)`` for ``"vgg16"`` or ``"vgg19"``."""
    return tuple(f"block{b}_conv{i}" for b, n in enumerate(blocks(arch), 1) for i in range(1, n + 1))


def all_layer_names(arch: str) -> tuple[str, ...]:
    """Every output name in network order: each block's convs followed by its ``blockN_pool``."""
    names: list[str] = []
    for b, n in enumerate(blocks(arch), 1):
        names += [f"block{b}_conv{i}" for i in range(1, n + 1)] + [f"block{b}_pool"]
    return tuple(names)


def known_layer_names() -> frozenset[str]:
    """Every layer name of either architecture (VGG19's is a superset of VGG16's)."""
    return frozenset(name for arch in ARCH_BLOCKS for name in all_layer_names(arch))


def parse_layer_weights(value: Any) -> dict[str, float]:
    """Style layers and their weights from text, a list of names or a mapping.

    ``"block1_conv1:0.5,block3_conv1"`` (``,``, ``;`` or spaces between items; a missing weight is 1)
    -> ``{"block1_conv1": 0.5, "block3_conv1": 1.0}``; ``["block1_conv1", ...]`` weighs each 1;
    a dict is checked as it is. Raises :class:`ValueError` with the reason (callers add the option,
    file or cell): an unknown layer name, a weight that is not a finite number, or no layer at all.
    """
    if isinstance(value, str):
        pairs = [item.partition(":") for item in re.split(r"[;,\s]+", value.strip()) if item]
        value = {name: (w if w else 1.0) for name, _, w in pairs}
    elif isinstance(value, (list, tuple)):
        value = {name: 1.0 for name in value}
    if not isinstance(value, dict) or not value:
        raise ValueError("give at least one layer, e.g. block1_conv1:0.5,block2_conv1:0.5")
    known = known_layer_names()
    out: dict[str, float] = {}
    for name, weight in value.items():
        if not isinstance(name, str) or name.strip() not in known:
            raise ValueError(f"{name!r} is not a VGG layer name (such as block1_conv1)")
        try:
            w = float(weight)
        except (TypeError, ValueError):
            raise ValueError(f"weight {weight!r} of {name!r} is not a number") from None
        if isinstance(weight, bool) or w != w or w in (float("inf"), float("-inf")):
            raise ValueError(f"weight {weight!r} of {name!r} is not a finite number")
        out[name.strip()] = w
    return out
