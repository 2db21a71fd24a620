"""Exact tiles: ``J(x)`` and ``dJ/dx`` of a picture too big for one VGG pass, computed tile by tile.

**Why tiles can be exact.** Every term of ``J`` (:mod:`numpynst.objective`, costs in
:mod:`numpynst.losses`) is a function of sums over positions ``p`` of a layer's activation ``a^l``
(``nH x nW`` positions, ``C`` channels)::

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
   so the sums are the whole-image ``G^l``, whence ``J_style^l`` and ``M^l = dJ/dG^l``
   (:func:`numpynst.losses.style_from_gram`).
2. **Pass 2** (:func:`tile_gradient`, forward with tape, then backward): at an interior position
   the whole-image ``dJ/da_p`` needs only ``a_p`` and the global quantities:
   ``(M^l + M^lT) a_p`` for the style (:func:`numpynst.losses.gram_backward`), ``alpha (a_p - a_C,p) / (2n)``
   for the content.

   The Gram matrix is one *style statistic* (:mod:`numpynst.style_stats`): any statistic whose
   pieces are sums over positions tiles the same way (``mean-cov``'s ``sum_p a_p`` and
   ``sum_p a_p a_p^T``): pass 1 sums each layer's ``statistic.measure`` pieces, the cost and
   ``d = dJ/d(pieces)`` are computed once from the sums (:meth:`TiledObjective.style_gradients`),
   pass 2 seeds ``statistic.backward(d, interior)``. ``swd`` (sorting all positions) is refused. Seed these on the interior, zero on the halo, backpropagate through the crop's
   network: this is ``d/dx`` of ``sum_{p in tile} (terms of p)``, a function of the crop's pixels
   only. ``J`` is the sum of these per-tile functions over all tiles, so the sum of the tiles'
   ``dJ/dx`` (each added into its crop's place) is the whole-image gradient — exact, up to the
   order of float additions. TV is handled the same way with a 1-pixel halo: each tile owns the
   smoothness box of its interior (:func:`tile_tv`, :func:`numpynst.losses.smoothness_box`).

**The reach (receptive-field recursion).** Track, walking forward, the grid spacing ``j`` of a
layer (in input pixels) and how far ``a`` beyond its own ``j x j`` cell a unit sees, on each side:
a 3x3 convolution (pad 1) adds one neighbour at spacing ``j`` on each side, ``a += j``; a 2x2/2 pool
covers two cells of the old grid, exactly one cell of the new one, ``j *= 2`` (``a`` unchanged)::

    conv: a <- a + j        pool: j <- 2 j        a_0 = 0, j_0 = 1

so each 3x3 conv after the k-th pool widens the receptive field ``r = j + 2a`` by ``2 * 2^k``
(VGG19's ``block5_conv1``: ``a = 2*1 + 2*2 + 4*4 + 4*8 + 1*16 = 70``, ``r = 156``). The model's
layer table holds both numbers for every layer (``model.layers``, built once by
:func:`numpynst.arch.layer_table`); :func:`receptive` reads them by name.

**The pooling grid.** A tile's crop must start on a multiple of ``2^P`` (``P`` pools in front of the
deepest layer used): then each pool window of the crop is a pool window of the whole image. Tile
origins are multiples of ``2^P`` and the halo is the reach rounded up to one (:func:`halo_for`),
so crops start on the grid too; a crop is clipped at the image's edges. At a layer of spacing ``s``
the interior of tile rows ``[y0, y1)`` is rows ``[(y0 - cy0) / s, floor((y1 - cy0) / s))`` of the
crop's activation (``cy0`` the crop's first row): ``y1`` is a grid multiple or the image's last
row, so floor mode drops the same remainder as on the whole image.

**Cost.** Pass 1 and pass 2 each run a forward: one evaluation costs ``2F + B`` per crop against
``F + B`` whole. The in-process runner keeps the tape of the *last* tile of pass 1 (the forward
returns it, :meth:`numpynst.vgg.VGG.forward_tape`) and hands it to pass 2, which starts with that
tile, saving one forward per evaluation (with one tile, tiled costs what whole does).

**Runners.** :func:`tile_statistics` and :func:`tile_gradient` are pure functions of (model, the
crop's pixels, the :class:`Tile`, the global quantities), so the passes can run anywhere the
model is loaded. :class:`TiledObjective` sums the Gram pieces (:func:`sum_pieces`), forms ``M^l``
(:meth:`TiledObjective.gram_gradients`) and adds the crops' gradients (:func:`add_crop`); a
*tile runner* runs the passes over the tiles: :class:`LocalTileRunner` in this process (the
default), :class:`numpynst.tiled_dask.DaskTileRunner` on Dask workers.

Shapes: images ``(1, H, W, 3)`` channels-last, activations ``(1, nH, nW, C)``, Grams ``(C, C)``;
any float dtype, NumPy or CuPy (``xp`` from the arrays).
"""

from __future__ import annotations

import copy
import math
from typing import Any, Iterable, Iterator, Mapping, NamedTuple, Sequence

from .arch import arch_of, layer_table
from .backend import get_xp
from .checks import integer
from .errors import OptionError
from .losses import box_slices, content_cost, smoothness_box
from .objective import Evaluation, Objective, check_x, combine
from .style_stats import StyleStatistic, add_pieces, as_statistics

Array = Any


# ---------------------------------------------------------------------------- geometry
def receptive(layer_names: Sequence[str], deepest: str) -> dict[str, tuple[int, int]]:
    """``{layer: (reach a, spacing j)}`` for every layer up to ``deepest`` (the recursion above),
    read from the layer table of the architecture whose names are ``layer_names``.

    A unit at position ``p`` of a layer with spacing ``j`` depends on input pixels
    ``[p j - a, p j + j - 1 + a]`` (each axis) and no others; its receptive field is ``j + 2a``.
    """
    table = layer_table(arch_of(layer_names))
    stop = [layer.name for layer in table].index(deepest)
    return {layer.name: (layer.reach, layer.spacing) for layer in table[:stop + 1]}


def halo_for(model, names: Iterable[str]) -> int:
    """Smallest exact halo for these layers: the deepest one's reach rounded up to the pooling grid."""
    deepest = model.deepest(names)
    factor = deepest.pool_factor
    return factor * math.ceil(deepest.reach / factor)


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

    def region(self, spacing: int) -> tuple[slice, slice]:
        """Rows and columns of the interior in the *whole image's* activation at this spacing (the
        crop starts on the grid: its first row there is ``cy0 / spacing``): a statistic's ``where``."""
        (r, c), s = self.interior(spacing), spacing
        return (slice(r.start + self.cy0 // s, r.stop + self.cy0 // s),
                slice(c.start + self.cx0 // s, c.stop + self.cx0 // s))

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


def sum_pieces(pieces: Iterable[Mapping[str, tuple]]) -> dict[str, tuple]:
    """``{layer: sum of the pieces}`` over tiles (each a tuple of arrays from :func:`tile_statistics`,
    summed entry by entry)."""
    total: dict[str, tuple] = {}
    for piece in pieces:
        for n, g in piece.items():
            total[n] = add_pieces(total.get(n), g)
    return total


# ---------------------------------------------------------------------------- per-tile passes
def spacings(model, names: Iterable[str]) -> dict[str, int]:
    """``{layer: grid spacing 2^k}`` (``k`` pools up to it) for ``names``."""
    return {n: model.layer(n).spacing for n in names}


def tile_statistics(model, x_crop: Array, tile: Tile,
                    style_layers: Mapping[str, StyleStatistic] | Iterable[str],
                    content_layer: str | None = None) -> tuple[dict[str, tuple], Array | None]:
    """Pass 1 on one crop (forward, no tape): ``({layer: interior pieces}, content piece)``.

    ``style_layers``: ``{layer: style statistic}`` (bare names: the Gram statistic); the pieces are
    ``statistic.measure`` of the interior (``(G,)`` for the Gram matrix). The content piece, the
    interior of the content layer's activation (``(1, h, w, C)``, a copy),
    is returned when ``content_layer`` is given (to build the content target), else ``None``.
    """
    names = list(dict.fromkeys([*style_layers, *([content_layer] if content_layer else [])]))
    acts, _ = model.forward_tape(x_crop, names, keep=False)
    return statistics_of(model, acts, tile, style_layers, content_layer)


def statistics_of(model, acts: Mapping[str, Array], tile: Tile,
                  style_layers: Mapping[str, StyleStatistic] | Iterable[str],
                  content_layer: str | None = None) -> tuple[dict[str, tuple], Array | None]:
    """:func:`tile_statistics` from the crop's activations ``{layer: (1, h, w, C)}``."""
    stats = as_statistics(style_layers)
    step = spacings(model, [*stats, *([content_layer] if content_layer else [])])
    xp = get_xp(*acts.values())
    pieces = {n: st.measure(xp.ascontiguousarray(interior(acts[n], tile, step[n])), tile.region(step[n]))
              for n, st in stats.items()}
    piece = None if content_layer is None else interior(acts[content_layer], tile, step[content_layer]).copy()
    return pieces, piece


def tile_gradient(model, x_crop: Array, tile: Tile, style_grads: Mapping[str, Any],
                  content_layer: str | None = None, content_piece: Array | None = None,
                  content_weight: float = 0.0, content_size: int = 1,
                  forward: tuple[Mapping[str, Array], Any] | None = None,
                  statistics: Mapping[str, StyleStatistic] | None = None) -> tuple[Array, Array]:
    """Pass 2 on one crop: ``(dJ/d(crop) (1, ch, cw, 3), this tile's unweighted J_content part)``.

    Args:
        style_grads: ``{style layer: d}``, ``d = dJ/d(pieces)`` of the layer's statistic, weights
            included (from the global sums: :meth:`TiledObjective.style_gradients`); for the Gram
            statistic ``(M,)``, ``M = dJ/dG (C, C)``, or ``M`` alone.
        statistics: ``{style layer: statistic}`` whose ``backward`` maps ``d`` to the interior's
            positions (default: the Gram statistic for every layer).
        content_layer, content_piece: the content layer and the target's interior piece for this
            tile; ``content_weight`` is alpha and ``content_size`` the whole image's ``n = nH nW C``
            at the content layer (the cost's normaliser).
        forward: ``(activations, tape)`` of this crop from :meth:`~numpynst.vgg.VGG.forward_tape`
            (tape kept) to every layer needed: reused instead of running the forward again. Pass
            the only reference (the caller keeping none) for the backward to free the activations
            as it goes.
    The content part is ``sum_{p in tile} |a_p - a_C,p|^2 / (4 n)`` (0-d); 0 without a content layer.
    """
    xp = get_xp(x_crop)
    names = list(dict.fromkeys([*style_grads, *([content_layer] if content_layer else [])]))
    stats = as_statistics(style_grads if statistics is None else statistics)
    step = spacings(model, names)
    acts, tape = model.forward_tape(x_crop, names) if forward is None else forward
    del forward
    seeds: dict[str, Array] = {}
    for n, d in style_grads.items():
        g = xp.zeros_like(acts[n])
        rows, cols = tile.interior(step[n])
        g[:, rows, cols, :] = stats[n].backward(d if isinstance(d, tuple) else (d,),
                                                xp.ascontiguousarray(interior(acts[n], tile, step[n])),
                                                tile.region(step[n]))
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
    return model.backward_tape(seeds, tape, release=True), j_content


def tile_tv(x: Array, tile: Tile) -> tuple[Array, Array, Tile]:
    """TV terms owned by one tile: ``(J part, dJ/d(box), box)``, ``box`` the interior plus one
    pixel below and right (the tile's 1-pixel halo) as a :class:`Tile` whose crop is the box.

    A tile owns the differences ``x[i+1] - x[i]`` whose first pixel ``i`` is in its interior
    (:func:`numpynst.losses.smoothness_box`, normalised by the whole image's ``x.size``).
    """
    rows, cols = box_slices(x.shape, tile.y0, tile.y1, tile.x0, tile.x1)
    box = Tile(tile.y0, tile.y1, tile.x0, tile.x1, rows.start, rows.stop, cols.start, cols.stop)
    J, g = smoothness_box(crop(x, box), tile.y1 - tile.y0, tile.x1 - tile.x0, 1.0 / x.size)
    return get_xp(x).asarray(J, dtype=x.dtype), g, box


def statistics_pass(model, x: Array, tiles: Sequence[Tile],
                    style_layers: Mapping[str, StyleStatistic] | Iterable[str],
                    content_layer: str | None = None, keep: Sequence[str] | None = None):
    """Pass 1 over ``tiles`` of ``x`` in this process: ``(global sums, content pieces, last)``.

    ``{layer: sum of the tiles' interior pieces}`` (:func:`tile_statistics`), then one content
    piece per tile (``None`` each
    without ``content_layer``). With ``keep`` (layer names) the last tile's forward runs to those
    layers with its tape kept, and ``last`` is ``[(activations, tape)]`` for pass 2 to start from
    (:func:`tile_gradient`'s ``forward``: pop it, so that pass 2 holds the only reference); else
    ``last`` is empty.
    """
    style_layers = as_statistics(style_layers)
    grams, pieces, last = [], [], []
    for i, t in enumerate(tiles):
        if keep is not None and i == len(tiles) - 1:
            acts, tape = model.forward_tape(crop(x, t), keep)
            g, p = statistics_of(model, acts, t, style_layers, content_layer)
            last.append((acts, tape))
            del acts, tape
        else:
            g, p = tile_statistics(model, crop(x, t), t, style_layers, content_layer)
        grams.append(g)
        pieces.append(p)
    return sum_pieces(grams), pieces, last


# ---------------------------------------------------------------------------- the objective
def as_tile_hw(tile: int | tuple[int, int]) -> tuple[int, int]:
    """``tile`` (a side, or ``(height, width)``) as ``(height, width)``, positive integers."""
    th, tw = (tile, tile) if isinstance(tile, int) else tile
    return integer("tile", th), integer("tile", tw)


class LocalTileRunner:
    """Runs pass 1 and pass 2 of a :class:`TiledObjective` in this process, tile after tile.

    A tile runner has four methods, called by the objective:

    * ``check(model)``, before any work: refuse a model the runner cannot use;
    * ``start(objective)``, once its targets are built: place the tiles, send the constants;
      returns the content pieces the objective keeps (``None`` when the runner holds them);
    * ``statistics(objective, x) -> (global sums, last)``: pass 1 (``{layer: summed pieces}`` of
      ``objective.statistics``); ``last`` is handed to
    * ``gradients(objective, x, M, last)``: pass 2 (``M``: ``{layer: dJ/d(pieces)}``), yielding
      ``(tile index, dJ/d(crop), J_content
      part)`` for every tile, in any order (the objective adds them where they belong).

    This one keeps the last tile's pass-1 tape and starts pass 2 with that tile (one forward fewer
    per evaluation); it holds no state of its own, so one runner may serve several objectives.
    """

    def check(self, model) -> None:
        pass

    def start(self, objective: TiledObjective) -> list:
        return objective.content_pieces

    def statistics(self, objective: TiledObjective, x: Array) -> tuple[dict[str, Array], list]:
        grams, _, last = statistics_pass(objective.model, x, objective.tiles, objective.statistics,
                                         keep=objective.outputs)
        return grams, last

    def gradients(self, objective: TiledObjective, x: Array, M: Mapping[str, Array],
                  last: list) -> Iterator[tuple[int, Array, Array]]:
        """The last tile first, from its pass-1 forward: ``last`` is emptied as it is handed over,
        so tile_gradient gets the only reference to its activations and frees them during its
        backward, rather than they be kept through the whole pass."""
        o = objective
        n = len(o.tiles) - 1
        for i in [n, *range(n)]:
            t = o.tiles[i]
            g, j = tile_gradient(o.model, crop(x, t), t, M, o.content_layer, o.content_pieces[i],
                                 o.alpha / o.scales.content, o.content_size,
                                 forward=last.pop() if i == n and last else None, statistics=o.statistics)
            yield i, g, j


class TiledObjective(Objective):
    """:class:`numpynst.objective.Objective` computed over exact tiles (see the module docstring).

    Same contract: ``evaluate(x) -> Evaluation(J, grad, parts)``, ``value_and_grad``, ``flat``,
    ``.shape``, ``.xp``; same options and the same construction (options, blend, rescaling,
    calibration: :class:`~numpynst.objective.Objective`'s constructor, with the targets measured
    tile by tile), plus:

    Args:
        tile: interior tile size in pixels, a side or ``(height, width)``, each a multiple of
            the pooling grid ``model.pool_factor(layers)``.
        halo: pixels of context around each tile (default :func:`halo_for`, the smallest exact
            one; smaller values are allowed only to demonstrate that they are not exact).
        runner: what runs the two passes over the tiles: :class:`LocalTileRunner` (default, this
            process) or :class:`numpynst.tiled_dask.DaskTileRunner` (Dask workers).

    Attributes: ``tiles``, ``halo``, ``factor`` (the pooling grid), ``tile_hw``, ``runner``;
    ``content_pieces`` (the content target's interior pieces, one per tile: the whole target is
    never assembled, ``content_target`` is ``None``; ``None`` too when the runner holds them).

    Memory: the model, the image-sized arrays (``x``, the gradient), the content target
    (``a_C`` at the content layer: one activation, kept in per-tile pieces), the Grams, and one
    crop's tape at a time. The targets are computed tile by tile too (the style image is resized to
    the content's size, so it is as big).
    """

    def __init__(self, model, content: Array, style: Array | Sequence[Array], *,
                 tile: int | tuple[int, int], halo: int | None = None, runner: Any = None,
                 **options: Any):
        self.runner = LocalTileRunner() if runner is None else runner
        self.runner.check(model)            # before the targets: they are the expensive part
        self._tile_option, self._halo_option = tile, halo
        super().__init__(model, content, style, **options)
        # The content target stays in per-tile pieces, never assembled (_content_statistics
        # measured it so); the runner may take them over (Dask: to the workers).
        self.content_pieces, self.content_target = self.content_target, None
        self.content_pieces = self.runner.start(self)

    def _lay_out(self) -> None:
        """The tile grid of the generated image (the content's size) for the objective's layers."""
        model, names = self.model, self.outputs
        self.factor = model.pool_factor(names)
        halo = self._halo_option
        self.halo = halo_for(model, names) if halo is None else integer("halo", halo, minimum=0)
        self.tile_hw = as_tile_hw(self._tile_option)
        self.tiles = tile_grid(self.shape[1:3], self.tile_hw, self.halo, self.factor)
        self.step = spacings(model, names)
        # whole-image positions per layer (floor mode at every pool), for the normalisers
        self.positions = {n: (self.shape[1] // s) * (self.shape[2] // s) for n, s in self.step.items()}
        self.content_size = self.positions[self.content_layer] * model.channels(self.content_layer)

    def _content_statistics(self, content: Array) -> tuple[list, dict[str, tuple[int, ...]]]:
        """Pass 1 over the content's tiles (laid out here: the generated image has the content's
        size): ``(the content target's interior pieces, one per tile, {style layer: shape})``."""
        self._lay_out()
        _, pieces, _ = statistics_pass(self.model, content, self.tiles, self.style_layers, self.content_layer)
        shapes = {n: (1, self.shape[1] // self.step[n], self.shape[2] // self.step[n], self.model.channels(n))
                  for n in self.style_layers}
        return pieces, shapes

    def _check_statistics(self) -> None:
        bad = [n for n, st in self.statistics.items() if not st.sums]
        if bad:
            raise OptionError(f"style_loss {self.statistics[bad[0]].name} (--style-loss) cannot run over exact "
                              f"tiles (it sorts all positions at once): choose --style-loss mean-cov or gram, "
                              f"or a whole image (a smaller --size or a larger --max-memory)")

    def _style_statistics(self, image: Array, statistics: Mapping[str, StyleStatistic]) -> dict[str, tuple[tuple, int]]:
        """Pass 1 over the style image's own tiles: ``{style layer: (summed pieces, positions nH nW)}``."""
        tiles = tile_grid(tuple(image.shape[1:3]), self.tile_hw, self.halo, self.factor)
        grams, _, _ = statistics_pass(self.model, image, tiles, statistics)
        return {n: (g, (image.shape[1] // self.step[n]) * (image.shape[2] // self.step[n]))
                for n, g in grams.items()}

    def with_runner(self, runner: Any) -> TiledObjective:
        """This objective, its targets built once, with its passes run by ``runner`` (a new object
        sharing the targets; this one is unchanged)."""
        runner.check(self.model)
        other = copy.copy(self)
        other.runner = runner
        other.content_pieces = runner.start(other)
        return other

    def style_gradients(self, sums: Mapping[str, tuple]) -> tuple[Array, dict[str, tuple]]:
        """From the global sums of ``x`` (pass 1):
        ``(sum_l lambda_l J_style^l / s_l, {l: beta lambda_l / s_l dJ_style^l/d(pieces)})``.

        ``J_style^l`` and its gradient are the layer statistic's ``cost`` with the whole image's
        positions (for the Gram matrix :func:`numpynst.losses.style_from_gram` with ``n = nH nW C``);
        ``s_l`` is the layer's calibration scale (``self.scales``, 1 for raw weights), as in ``Objective``.
        """
        xp = self.xp
        j_style, out = None, {}
        for n, lam in self.style_layers.items():
            s = self.scales.style[n]
            j, out[n] = self.statistics[n].cost(sums[n], self.style_targets[n], self.positions[n],
                                                (self.beta, lam), s)
            j = j * (lam / s)
            j_style = j if j_style is None else j_style + j
        return (xp.zeros((), dtype=self.model.dtype) if j_style is None else j_style), out

    def evaluate(self, x: Array) -> Evaluation:
        """``J``, ``dJ/dx`` and the unweighted parts at ``x`` ``(1, H, W, 3)``: pass 1, then pass 2."""
        check_x(x, self.shape)
        xp, sc = self.xp, self.scales
        sums, last = self.runner.statistics(self, x)
        j_style, M = self.style_gradients(sums)
        dx = xp.zeros(self.shape, dtype=x.dtype)
        j_content = xp.zeros((), dtype=x.dtype)
        for i, g, j in self.runner.gradients(self, x, M, last):
            add_crop(dx, g, self.tiles[i])
            j_content = j_content + j
            del g
        j_tv = xp.zeros((), dtype=x.dtype)
        for t in self.tiles:
            jt, gt, box = tile_tv(x, t)
            j_tv = j_tv + jt
            if self.tv_weight:
                add_crop(dx, gt * xp.asarray(self.tv_weight / sc.tv, dtype=gt.dtype), box)
        j_content, j_tv = j_content / sc.content, j_tv / sc.tv     # x / 1.0 == x: raw mode is exact
        parts = {"content": j_content, "style": j_style, "tv": j_tv}
        return Evaluation(combine(parts, self.coefficients), dx, parts)
