"""Exact tiles: ``J(x)`` and ``dJ/dx`` of a picture too big for one VGG pass, computed tile by tile.

**Why tiles can be exact.** Every term of ``J`` (:mod:`numpynst.transfer`) is a function of sums
over positions ``p`` of a layer's activation ``a^l`` (``nH x nW`` positions, ``C`` channels)::

    G^l = sum_p a_p a_p^T                    (C x C; the style cost is f_l(G^l))
    J_content = 1/(4 n) sum_p |a_p - a_C,p|^2      (n = nH nW C of the whole image)
    TV = 1/N sum over neighbouring pixel pairs of (x_q - x_q')^2

Cut the image into tiles whose *interiors* partition it, and run VGG on each tile with a *halo*
of extra pixels around it (the crop). A position of layer ``l`` inside the interior depends only on
input pixels within ``reach(l)`` of its own cell (the receptive field, below); when the halo is at
least that reach, every interior activation computed on the crop equals the whole-image value, as
the same function of the same pixels (where a crop edge is the image edge, both see the same zero
padding). So:

1. **Pass 1** (:func:`tile_statistics`, forward only, no tape): sum each tile's interior Gram
   pieces ``sum_{p in tile} a_p a_p^T``. Each position of each layer lies in exactly one interior,
   so the sums are the whole-image ``G^l``, whence ``J_style^l`` and ``M^l = dJ/dG^l``.
2. **Pass 2** (:func:`tile_gradient`, forward with tape, then backward): at an interior position
   the whole-image ``dJ/da_p`` needs only ``a_p`` and the global quantities:
   ``(M^l + M^lT) a_p`` for the style (:func:`numpynst.losses.gram_backward`), ``alpha (a_p - a_C,p) / (2n)``
   for the content. Seed these on the interior, zero on the halo, backpropagate through the crop's
   network: this is ``d/dx`` of ``sum_{p in tile} (terms of p)``, a function of the crop's pixels
   only. ``J`` is the sum of these per-tile functions over all tiles, so the sum of the tiles'
   ``dJ/dx`` (each added into its crop's place) is the whole-image gradient — exact, up to the
   order of float additions. TV is handled the same way with a 1-pixel halo (:func:`tile_tv`).

**The reach (receptive-field recursion).** Track, walking forward, the grid spacing ``j`` of a
layer (in input pixels) and how far ``a`` beyond its own ``j x j`` cell a unit sees, on each side:
a 3x3 convolution (pad 1) adds one neighbour at spacing ``j`` on each side, ``a += j``; a 2x2/2 pool
covers two cells of the old grid, exactly one cell of the new one, ``j *= 2`` (``a`` unchanged)::

    conv: a <- a + j        pool: j <- 2 j        a_0 = 0, j_0 = 1

so each 3x3 conv after the k-th pool widens the receptive field ``r = j + 2a`` by ``2 * 2^k``
(:func:`receptive`; VGG19's ``block5_conv1``: ``a = 2*1 + 2*2 + 4*4 + 4*8 + 1*16 = 70``, ``r = 156``).

**The pooling grid.** A tile's crop must start on a multiple of ``2^P`` (``P`` pools in front of the
deepest layer used): then each pool window of the crop is a pool window of the whole image. Tile
origins are multiples of ``2^P`` and the halo is the reach rounded up to one (:func:`halo_for`),
so crops start on the grid too; a crop is clipped at the image's edges. At a layer of spacing ``s``
the interior of tile rows ``[y0, y1)`` is rows ``[(y0 - cy0) / s, floor((y1 - cy0) / s))`` of the
crop's activation (``cy0`` the crop's first row): ``y1`` is a grid multiple or the image's last
row, so floor mode drops the same remainder as on the whole image.

**Cost.** Pass 1 and pass 2 each run a forward: one evaluation costs ``2F + B`` per crop against
``F + B`` whole. :class:`TiledObjective` keeps the tape of the *last* tile of pass 1 and starts
pass 2 with it, saving one forward per evaluation (with one tile, tiled costs what whole does).

**API for workers.** :func:`tile_statistics` and :func:`tile_gradient` are pure functions of
(model, the crop's pixels, the :class:`Tile`, the global quantities): a Dask worker holding the
model can run them; the driver sums Gram pieces (:func:`sum_pieces`), forms ``M^l``
(:meth:`TiledObjective.gram_gradients`), and adds the crops' gradients (:func:`add_crop`).

Shapes: images ``(1, H, W, 3)`` channels-last, activations ``(1, nH, nW, C)``, Grams ``(C, C)``;
any float dtype, NumPy or CuPy (``xp`` from the arrays).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

from .backend import get_xp
from .checks import integer
from .errors import OptionError
from .losses import content_cost, gram_backward, gram_matrix
from .objective import DEFAULT_CONTENT_LAYER, Evaluation, Objective

Array = Any


# ---------------------------------------------------------------------------- geometry
def receptive(layer_names: Sequence[str], deepest: str) -> dict[str, tuple[int, int]]:
    """``{layer: (reach a, spacing j)}`` for every layer up to ``deepest`` (the recursion above).

    A unit at position ``p`` of a layer with spacing ``j`` depends on input pixels
    ``[p j - a, p j + j - 1 + a]`` (each axis) and no others; its receptive field is ``j + 2a``.
    """
    a, j, out = 0, 1, {}
    for name in layer_names[:list(layer_names).index(deepest) + 1]:
        if name.endswith("_pool"):
            j *= 2
        else:
            a += j
        out[name] = (a, j)
    return out


def deepest_layer(model, names: Iterable[str]) -> str:
    """The layer of ``names`` furthest into ``model``."""
    return max(names, key=model.layer_names.index)


def halo_for(model, names: Iterable[str]) -> int:
    """Smallest exact halo for these layers: the deepest one's reach rounded up to the pooling grid."""
    names = list(names)
    factor, deepest = model.pool_factor(names), deepest_layer(model, names)
    reach = receptive(model.layer_names, deepest)[deepest][0]
    return factor * math.ceil(reach / factor)


class Tile(NamedTuple):
    """One tile: its interior ``[y0, y1) x [x0, x1)`` and its crop ``[cy0, cy1) x [cx0, cx1)``
    (interior plus halo, clipped to the image), in image pixels."""

    y0: int
    y1: int
    x0: int
    x1: int
    cy0: int
    cy1: int
    cx0: int
    cx1: int

    def interior(self, spacing: int) -> tuple[slice, slice]:
        """Rows and columns of the interior in the crop's activation at a layer of this spacing."""
        s = spacing
        return (slice((self.y0 - self.cy0) // s, (self.y1 - self.cy0) // s),
                slice((self.x0 - self.cx0) // s, (self.x1 - self.cx0) // s))

    @property
    def crop_pixels(self) -> int:
        return (self.cy1 - self.cy0) * (self.cx1 - self.cx0)


def tile_grid(hw: tuple[int, int], tile_hw: tuple[int, int], halo: int, factor: int) -> list[Tile]:
    """Tiles of at most ``tile_hw`` interior pixels covering an ``hw`` image, row-major.

    ``tile_hw`` and ``halo`` must be multiples of ``factor`` (the pooling grid, see the module
    docstring); interiors are cut at multiples of ``tile_hw``, the last row/column of tiles takes
    what is left (any size, so odd image sizes work).
    """
    (H, W), (th, tw) = hw, tile_hw
    for name, v in (("tile height", th), ("tile width", tw), ("halo", halo)):
        if v % factor or v < 0 or (v == 0 and name != "halo"):
            raise OptionError(f"{name} {v} is not a positive multiple of the pooling grid {factor}")
    return [Tile(y0, min(y0 + th, H), x0, min(x0 + tw, W),
                 max(0, y0 - halo), min(H, y0 + th + halo), max(0, x0 - halo), min(W, x0 + tw + halo))
            for y0 in range(0, H, th) for x0 in range(0, W, tw)]


def crop(x: Array, tile: Tile) -> Array:
    """The crop of ``x`` ``(1, H, W, C)`` under ``tile`` (a view)."""
    return x[:, tile.cy0:tile.cy1, tile.cx0:tile.cx1, :]


def add_crop(total: Array, piece: Array, tile: Tile) -> None:
    """``total[crop] += piece``: add one tile's ``dJ/d(crop)`` into the whole-image gradient."""
    total[:, tile.cy0:tile.cy1, tile.cx0:tile.cx1, :] += piece


def interior(a: Array, tile: Tile, spacing: int) -> Array:
    """The interior positions of the crop's activation ``a`` ``(1, h, w, C)`` (a view)."""
    rows, cols = tile.interior(spacing)
    return a[:, rows, cols, :]


def sum_pieces(pieces: Iterable[Mapping[str, Array]]) -> dict[str, Array]:
    """``{layer: sum of the pieces}`` over tiles (Gram pieces from :func:`tile_statistics`)."""
    total: dict[str, Array] = {}
    for piece in pieces:
        for n, g in piece.items():
            total[n] = g.copy() if n not in total else total[n] + g
    return total


# ---------------------------------------------------------------------------- per-tile passes
def spacings(model, names: Iterable[str]) -> dict[str, int]:
    """``{layer: grid spacing 2^k}`` (``k`` pools in front of it) for ``names``."""
    names = list(names)
    table = receptive(model.layer_names, deepest_layer(model, names))
    return {n: table[n][1] for n in names}


def tile_statistics(model, x_crop: Array, tile: Tile, style_layers: Iterable[str],
                    content_layer: str | None = None) -> tuple[dict[str, Array], Array | None]:
    """Pass 1 on one crop (forward, no tape): ``({layer: interior Gram piece (C, C)}, content piece)``.

    The content piece, the interior of the content layer's activation (``(1, h, w, C)``, a copy),
    is returned when ``content_layer`` is given (to build the content target), else ``None``.
    """
    names = list(dict.fromkeys([*style_layers, *([content_layer] if content_layer else [])]))
    acts = model.forward(x_crop, names, keep_cache=False)
    return statistics_of(model, acts, tile, style_layers, content_layer)


def statistics_of(model, acts: Mapping[str, Array], tile: Tile, style_layers: Iterable[str],
                  content_layer: str | None = None) -> tuple[dict[str, Array], Array | None]:
    """:func:`tile_statistics` from the crop's activations ``{layer: (1, h, w, C)}``."""
    style_layers = list(style_layers)
    step = spacings(model, [*style_layers, *([content_layer] if content_layer else [])])
    xp = get_xp(*acts.values())
    grams = {n: gram_matrix(xp.ascontiguousarray(interior(acts[n], tile, step[n]))) for n in style_layers}
    piece = None if content_layer is None else interior(acts[content_layer], tile, step[content_layer]).copy()
    return grams, piece


def tile_gradient(model, x_crop: Array, tile: Tile, gram_grads: Mapping[str, Array],
                  content_layer: str | None = None, content_piece: Array | None = None,
                  content_weight: float = 0.0, content_size: int = 1,
                  acts: Mapping[str, Array] | None = None) -> tuple[Array, Array]:
    """Pass 2 on one crop: ``(dJ/d(crop) (1, ch, cw, 3), this tile's unweighted J_content part)``.

    Args:
        gram_grads: ``{style layer: M = dJ/dG (C, C)}``, weights included (from the global Grams).
        content_layer, content_piece: the content layer and the target's interior piece for this
            tile; ``content_weight`` is alpha and ``content_size`` the whole image's ``n = nH nW C``
            at the content layer (the cost's normaliser).
        acts: the crop's activations from the model's last forward, made with its tape kept
            (``keep_cache=True``): reused instead of running the forward again. Pass the only
            reference (the caller keeping none) for the backward to free them as it goes.
    The content part is ``sum_{p in tile} |a_p - a_C,p|^2 / (4 n)`` (0-d); 0 without a content layer.
    """
    xp = get_xp(x_crop)
    names = list(dict.fromkeys([*gram_grads, *([content_layer] if content_layer else [])]))
    step = spacings(model, names)
    acts = model.forward(x_crop, names) if acts is None else acts
    seeds: dict[str, Array] = {}
    for n, M in gram_grads.items():
        g = xp.zeros_like(acts[n])
        rows, cols = tile.interior(step[n])
        g[:, rows, cols, :] = gram_backward(M, xp.ascontiguousarray(interior(acts[n], tile, step[n])))
        seeds[n] = g
    j_content = xp.zeros((), dtype=x_crop.dtype)
    a = None if content_layer is None else interior(acts[content_layer], tile, step[content_layer])
    if a is not None and a.size:        # a tile at the bottom/right may own no position of a deep layer
        # content_cost normalises by the piece's own n; rescale to the whole image's n
        j_piece, g_piece = content_cost(content_piece, xp.ascontiguousarray(a))
        ratio = g_piece.size / content_size
        j_content = j_piece * xp.asarray(ratio, dtype=j_piece.dtype)
        g = seeds.get(content_layer)
        g = xp.zeros_like(acts[content_layer]) if g is None else g
        rows, cols = tile.interior(step[content_layer])
        g[:, rows, cols, :] += g_piece * xp.asarray(ratio * content_weight, dtype=g_piece.dtype)
        seeds[content_layer] = g
    # the activations are also the tape's layer inputs: with no reference left here, the backward
    # frees each one as it passes it (release=True) instead of holding them all until it returns
    del acts, a
    return model.backward(seeds, release=True), j_content


def tile_tv(x: Array, tile: Tile) -> tuple[Array, Array, Tile]:
    """TV terms owned by one tile: ``(J part, dJ/d(box), box)``, ``box`` the interior plus one
    pixel below and right (the tile's 1-pixel halo) as a :class:`Tile` whose crop is the box.

    A tile owns the differences ``x[i+1] - x[i]`` whose first pixel ``i`` is in its interior
    (:func:`numpynst.losses.total_variation`, normalised by the whole image's ``x.size``).
    """
    xp = get_xp(x)
    H, W = x.shape[1], x.shape[2]
    by1, bx1 = min(tile.y1 + 1, H), min(tile.x1 + 1, W)
    box = Tile(tile.y0, tile.y1, tile.x0, tile.x1, tile.y0, by1, tile.x0, bx1)
    h, w = tile.y1 - tile.y0, tile.x1 - tile.x0
    v = crop(x, box)
    dh = v[:, 1:, :w] - v[:, :-1, :w]          # rows y0..min(y1, H-1)-1 to the next row
    dw = v[:, :h, 1:] - v[:, :h, :-1]          # interior rows, columns x0..min(x1, W-1)-1
    scale = 1.0 / x.size
    J = (xp.sum(dh * dh) + xp.sum(dw * dw)) * scale
    g = xp.zeros_like(v)
    g[:, 1:, :w] += dh
    g[:, :-1, :w] -= dh
    g[:, :h, 1:] += dw
    g[:, :h, :-1] -= dw
    g *= 2.0 * scale
    return xp.asarray(J, dtype=x.dtype), g, box


# ---------------------------------------------------------------------------- the objective
def as_tile_hw(tile: int | tuple[int, int]) -> tuple[int, int]:
    """``tile`` (a side, or ``(height, width)``) as ``(height, width)``, positive integers."""
    th, tw = (tile, tile) if isinstance(tile, int) else tile
    return integer("tile", th), integer("tile", tw)


class TiledObjective(Objective):
    """:class:`numpynst.transfer.Objective` computed over exact tiles (see the module docstring).

    Same contract: ``evaluate(x) -> Evaluation(J, grad, parts)``, ``value_and_grad``, ``flat``,
    ``.shape``, ``.xp``; same options, plus:

    Args:
        tile: interior tile size in pixels, a side or ``(height, width)``, each a multiple of
            the pooling grid ``model.pool_factor(layers)``.
        halo: pixels of context around each tile (default :func:`halo_for`, the smallest exact
            one; smaller values are allowed only to demonstrate that they are not exact).

    Memory: the model, the image-sized arrays (``x``, the gradient), the content target
    (``a_C`` at the content layer: one activation, kept in per-tile pieces), the Grams, and one
    crop's tape at a time. The targets are computed tile by tile too (the style image is resized to
    the content's size, so it is as big).
    """

    def __init__(self, model, content: Array, style: Array | Sequence[Array], *,
                 tile: int | tuple[int, int], halo: int | None = None,
                 content_layer: str = DEFAULT_CONTENT_LAYER,
                 style_layers: Mapping[str, float] | None = None, **weights: Any):
        self.init_options(model, content, style, content_layer=content_layer,
                          style_layers=style_layers, **weights)
        names = self.outputs
        self.factor = model.pool_factor(names)
        self.halo = halo_for(model, names) if halo is None else integer("halo", halo, minimum=0)
        self.tile_hw = as_tile_hw(tile)
        self.tiles = tile_grid(self.shape[1:3], self.tile_hw, self.halo, self.factor)
        step = spacings(model, names)
        # whole-image positions per layer (floor mode at every pool), for the normalisers
        self.positions = {n: (self.shape[1] // step[n]) * (self.shape[2] // step[n]) for n in names}
        self.content_size = self.positions[content_layer] * model.channels(content_layer)

        _, self.content_pieces, _ = self._statistics(content, content_layer)
        self.content_target = None          # the whole-image target is never assembled
        self.style_targets = {}
        for img, w in zip(self.style_images, self.blend):
            style_tiles = tile_grid(tuple(img.shape[1:3]), self.tile_hw, self.halo, self.factor)
            s_grams = sum_pieces(tile_statistics(model, crop(img, t), t, self.style_layers)[0]
                                 for t in style_tiles)
            for n, g in s_grams.items():
                s_pos = (img.shape[1] // step[n]) * (img.shape[2] // step[n])
                g = g * self.xp.asarray(self.positions[n] / s_pos * w, dtype=g.dtype)  # "Style images of another size"
                self.style_targets[n] = g if n not in self.style_targets else self.style_targets[n] + g
        del self.style_images
        shapes = {n: (1, self.shape[1] // step[n], self.shape[2] // step[n], model.channels(n))
                  for n in self.style_layers}
        self.calibrate(self.content_pieces, shapes, content)    # the same weighting as Objective

    def _statistics(self, x: Array, content_layer: str | None, keep_last: bool = False):
        """Pass 1 over every tile: ``(global Grams of x, content pieces, last)``; with ``keep_last``
        the last tile runs with its tape kept and ``last`` is its activations (else ``None``)."""
        pieces, grams, last = [], [], None
        for i, t in enumerate(self.tiles):
            if keep_last and i == len(self.tiles) - 1:
                last = self.model.forward(crop(x, t), self.outputs)
                g, p = statistics_of(self.model, last, t, self.style_layers, content_layer)
            else:
                g, p = tile_statistics(self.model, crop(x, t), t, self.style_layers, content_layer)
            grams.append(g)
            pieces.append(p)
        return sum_pieces(grams), pieces, last

    def gram_gradients(self, grams: Mapping[str, Array]) -> tuple[Array, dict[str, Array]]:
        """From the global Grams of ``x``: ``(sum_l lambda_l J_style^l / s_l, {l: beta lambda_l / s_l dJ_style^l/dG})``.

        ``J_style^l = sum (k (G - G_S))^2`` with ``k = 1/(2 nH nW C)`` of the whole image, so
        ``dJ_style^l/dG = 2 k^2 (G - G_S)`` (:func:`numpynst.losses.style_layer_cost`); ``s_l`` is
        the layer's calibration scale (``self.scales``, 1 for raw weights), as in ``Objective``.
        """
        xp = self.xp
        j_style, out = None, {}
        for n, lam in self.style_layers.items():
            k = 1.0 / (2.0 * self.positions[n] * self.model.channels(n))
            E = (grams[n] - xp.asarray(self.style_targets[n], dtype=grams[n].dtype)) * k
            j = xp.sum(E * E) * (lam / self.scales.style[n])
            j_style = j if j_style is None else j_style + j
            out[n] = E * (2.0 * k * self.beta * lam / self.scales.style[n])
        return (xp.zeros((), dtype=self.model.dtype) if j_style is None else j_style), out

    def _gradients(self, x: Array, M: Mapping[str, Array], last: list):
        """Pass 2 over every tile: yields ``(tile index, dJ/d(crop), J_content part)``, the last
        tile first while its pass-1 tape is still the model's. ``last`` holds that tile's
        activations (or ``None``) and is emptied: tile_gradient gets the only reference, so the
        activations are freed during its backward, not kept through the whole pass."""
        n = len(self.tiles) - 1
        for i in [n, *range(n)]:
            t = self.tiles[i]
            g, j = tile_gradient(self.model, crop(x, t), t, M, self.content_layer, self.content_pieces[i],
                                 self.alpha / self.scales.content, self.content_size,
                                 acts=last.pop() if i == n else None)
            yield i, g, j

    def evaluate(self, x: Array) -> Evaluation:
        """``J``, ``dJ/dx`` and the unweighted parts at ``x`` ``(1, H, W, 3)``: pass 1, then pass 2."""
        if tuple(x.shape) != self.shape:
            raise ValueError(f"value_and_grad: x.shape={tuple(x.shape)} != content shape {self.shape}")
        xp, sc = self.xp, self.scales
        grams, _, last_acts = self._statistics(x, None, keep_last=True)
        last = [last_acts]
        del last_acts                       # handed over: see _gradients
        j_style, M = self.gram_gradients(grams)
        dx = xp.zeros(self.shape, dtype=x.dtype)
        j_content = xp.zeros((), dtype=x.dtype)
        for i, g, j in self._gradients(x, M, last):
            add_crop(dx, g, self.tiles[i])
            j_content = j_content + j
            del g
        self.model.clear()
        j_tv = xp.zeros((), dtype=x.dtype)
        for t in self.tiles:
            jt, gt, box = tile_tv(x, t)
            j_tv = j_tv + jt
            if self.tv_weight:
                add_crop(dx, gt * xp.asarray(self.tv_weight / sc.tv, dtype=gt.dtype), box)
        j_content, j_tv = j_content / sc.content, j_tv / sc.tv     # x / 1.0 == x: raw mode is exact
        J = self.alpha * j_content + self.beta * j_style + self.tv_weight * j_tv
        return Evaluation(J, dx, {"content": j_content, "style": j_style, "tv": j_tv})
