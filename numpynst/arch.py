"""The VGG16/VGG19 architecture tables: block layout and Keras layer names.

The one place that knows the shape of the network, imported alike by the model
(:mod:`numpynst.vgg`) and the weights reader (:mod:`numpynst.weights`)::

    block b = n_b x [conv 3x3, pad 1, stride 1 -> ReLU]  then  2x2 pool, stride 2
    VGG16: n = (2, 2, 3, 3, 3)      VGG19: n = (2, 2, 4, 4, 4)

Names are Keras's: ``block3_conv2`` is the post-ReLU output of block 3's second convolution,
``block3_pool`` the output of block 3's pool.

:func:`layer_table` walks the blocks once and gives every output its geometry (kind, index, grid
spacing, pooling factor, receptive reach, channels): the model, the tiles and the planner read it
instead of parsing names.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, NamedTuple, Sequence

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
    return tuple(layer.name for layer in layer_table(arch))


class Layer(NamedTuple):
    """One output of the trunk and its geometry, fixed by the architecture (channels by the weights).

    ``spacing`` ``j`` and ``reach`` ``a`` follow the receptive-field recursion, walking forward from
    ``a_0 = 0``, ``j_0 = 1`` (the input): a 3x3 convolution (pad 1) adds one neighbour at spacing
    ``j`` on each side, ``a <- a + j``; a 2x2/2 pool covers two cells of the old grid, exactly one of
    the new, ``j <- 2 j``. A unit at position ``p`` (each axis) then depends on the input pixels
    ``[p j - a, p j + j - 1 + a]`` and no others: its receptive field is ``j + 2a`` pixels wide.
    """

    name: str          # Keras's name, e.g. "block3_conv2"
    kind: str          # "conv" (3x3 convolution + ReLU) or "pool" (2x2 window, stride 2)
    index: int         # position in network order, 0 for block1_conv1
    spacing: int       # j: input pixels between neighbouring positions of the output, 2^(pools up to it)
    pool_factor: int   # 2^(pools strictly in front of it): input sides that are multiples of it
                       # leave no remainder row/column at any pool this layer's output depends on
    reach: int         # a: how far beyond its own j x j cell a unit sees, on each side
    channels: int      # C of the output (a pool keeps its block's width)


def layer_table(arch: str, widths: Mapping[str, int] | None = None) -> tuple[Layer, ...]:
    """Every output of ``arch`` in network order, with its :class:`Layer` geometry.

    ``widths``: ``{conv name: output channels}`` (a model's, from its weights; a file may hold a
    narrower model than ImageNet's); default :data:`BLOCK_WIDTHS`. VGG19's ``block5_conv1``:
    ``a = 2*1 + 2*2 + 4*4 + 4*8 + 1*16 = 70``, ``j = 16``, receptive field 156 px.
    """
    table: list[Layer] = []
    reach, spacing = 0, 1
    for b, n in enumerate(blocks(arch), 1):
        for i in range(1, n + 1):
            name = f"block{b}_conv{i}"
            width = BLOCK_WIDTHS[b - 1] if widths is None else int(widths[name])
            reach += spacing
            table.append(Layer(name, "conv", len(table), spacing, spacing, reach, width))
        table.append(Layer(f"block{b}_pool", "pool", len(table), 2 * spacing, spacing, reach, width))
        spacing *= 2
    return tuple(table)


def arch_of(layer_names: Sequence[str]) -> str:
    """The architecture whose :func:`all_layer_names` are ``layer_names``."""
    names = tuple(layer_names)
    for arch in ARCH_BLOCKS:
        if all_layer_names(arch) == names:
            return arch
    raise OptionError(f"these layer names are not those of {' or '.join(ARCH_BLOCKS)}: {', '.join(names)}")


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
