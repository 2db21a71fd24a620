"""Style statistics: what a style loss measures at one layer, and how the objectives use it.

A **style statistic** is the per-layer object behind ``J_style^l`` (:mod:`numpynst.objective`,
:mod:`numpynst.tiled`). Three ship, one per ``--style-loss``:

* :class:`GramStatistic` (``gram``): ``G = sum_p a_p a_p^T``, the notes' cost (unchanged);
* :class:`MeanCovStatistic` (``mean-cov``): ``(sum_p a_p, sum_p a_p a_p^T)``, the mean and the
  covariance of the features, compared by the Wasserstein-2 distance between Gaussians;
* :class:`SwdStatistic` (``swd``): the features projected on ``K`` fixed random directions,
  compared by the sliced Wasserstein distance (sorting).

**The interface.** A statistic is made for one layer (:func:`make_statistic`) and has

``measure(a, where=None) -> tuple of arrays``
    the statistic's *pieces* of the activation ``a`` ``(1, h, w, C)`` (a whole map or a tile's
    interior). For a statistic with ``sums = True`` every piece is a **sum over positions** of a
    per-position term, so the pieces of tiles whose interiors partition the map add up (entry by
    entry, :func:`add_pieces`) to the whole map's. ``where`` = ``(rows, cols)``, the slices of the
    measured image's layer grid that ``a``'s positions occupy (``None``: the whole map), for
    statistics that weight positions (below).
``target(pieces, positions) -> target``
    the style side, built once: ``pieces`` is a list of ``(piece of style image i, its positions
    P_i, its blend weight w_i)``; ``positions`` is the generated image's ``P`` at the layer.
``at_blank(target, positions) -> float``
    the cost for a blank generated image (every activation 0): the layer's calibration scale.
``cost(sums, target, positions, weights=(), scale=1.0) -> (J, d)``
    from the whole image's pieces (summed over tiles): ``J`` (0-d, unweighted) and
    ``d = dJ/d(pieces)`` (a tuple like the pieces) multiplied by each of ``weights`` and divided by
    ``scale`` (an objective's ``beta lambda_l / s_l``).
``backward(d, a, where=None) -> dJ/da``
    ``d`` mapped back to the positions of ``a`` (a whole map or a tile's interior): for a sum over
    positions, ``dJ/da_p`` needs only ``a_p`` and the global ``d``, which is why tiles are exact.
``layer_cost(target, a) -> (J, dJ/da)``
    the whole-map cost, unweighted: ``measure``, ``cost``, ``backward`` in a row unless a
    statistic has a shorter way. ``weighted_layer_cost(target, a, weight, out=None)`` is the same
    with the gradient times ``weight``, which :class:`~numpynst.objective.Objective` uses (the Gram
    statistic folds the weight into its ``C x C`` matrix and writes into ``out``:
    :func:`numpynst.losses.style_layer_cost_weighted`).

A new statistic subclasses :class:`StyleStatistic`, sets ``name`` and ``sums``, implements the
methods above, and is added to :data:`STATISTICS`; the objectives, the tiles (pass 1 sums the
pieces, the cost and ``d`` are computed once on the sums, pass 2 calls ``backward`` on each
tile's interior) and the calibration need no change. A statistic with ``sums = False`` (``swd``:
sorting needs every position at once) runs on the whole image only; the tiled objective refuses it.

**Per-position weights** (region masks) enter through ``where``: a statistic that holds, for the
image it measures, a weight per position and region ``m_rp`` at this layer's resolution reads
``m[where]`` in ``measure`` and ``backward``. Sums stay sums: ``G_r = sum_p m_rp a_p a_p^T``
(pieces ``(R, C, C)``) has ``dJ/da_p = sum_r m_rp (D_r + D_r^T) a_p``, still one position at a
time. The generated image's weights and each style image's differ: the objective measures style
image ``i`` with :meth:`numpynst.objective.Objective.style_side` ``(i)``, which a masked objective
overrides to give statistics carrying that image's masks.

Everything here works on NumPy and CuPy arrays (``xp`` from the arrays), float32 and float64.
"""

from __future__ import annotations

import abc
import zlib
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .backend import get_xp
from .errors import OptionError
from .layers.fast.parallel import rows_product
from .losses import (gram_backward, gram_matrix, mean_cov_at_blank, mean_cov_from_sums,
                     mean_cov_sums_backward, mean_cov_target, moments, moments_backward, quantiles,
                     style_at_blank, style_from_gram, style_layer_cost, style_layer_cost_weighted,
                     style_target, swd_at_blank, swd_backward, swd_cost)

Array = Any

#: The choices of ``--style-loss``, the first the default.
STYLE_LOSSES = ("gram", "mean-cov", "swd")
#: ``swd`` needs at least this many positions at every style layer, in the generated image and in
#: each style image: a distribution of fewer samples has too few quantiles to compare (4 x 4 is
#: block5 of a 64-px picture).
SWD_MIN_POSITIONS = 16
#: ``swd``'s most directions per layer: its projections and quantiles hold ``P x K`` numbers each,
#: twice eight times the widest layer's activation (512 channels) at the limit.
SWD_MAX_DIRECTIONS = 4096
#: The seed of ``swd``'s directions (with the layer's name and sizes): the same directions every run.
SWD_SEED = 27


def _weighted(d: Array, weights: Sequence[float], scale: float) -> Array:
    factor = 1.0
    for w in weights:
        factor = factor * w
    xp = get_xp(d)
    return d * xp.asarray(factor / scale, dtype=d.dtype)


class StyleStatistic(abc.ABC):
    """Base class of the style statistics (the module docstring describes the interface)."""

    name = ""
    sums = True

    @abc.abstractmethod
    def measure(self, a: Array, where: Any = None) -> tuple:
        """The pieces of ``a`` (sums over its positions when ``sums``)."""

    @abc.abstractmethod
    def target(self, pieces: Sequence[tuple[tuple, int, float]], positions: int) -> Any:
        """The style side from ``[(pieces, positions, blend weight)]`` of the style images."""

    @abc.abstractmethod
    def at_blank(self, target: Any, positions: int) -> float:
        """The cost of a blank image (the calibration scale), a host float."""

    @abc.abstractmethod
    def cost(self, sums: tuple, target: Any, positions: int, weights: Sequence[float] = (),
             scale: float = 1.0) -> tuple[Array, tuple]:
        """``(J, dJ/d(pieces) x weights / scale)`` from the whole image's pieces."""

    @abc.abstractmethod
    def backward(self, d: tuple, a: Array, where: Any = None) -> Array:
        """``dJ/da`` at the positions of ``a`` from the global ``d``."""

    def check(self, layer: str, positions: int, what: str) -> None:
        """:class:`OptionError` if ``positions`` at ``layer`` of ``what`` (an image) are too few."""

    def layer_cost(self, target: Any, a: Array) -> tuple[Array, Array]:
        J, d = self.cost(self.measure(a), target, a.shape[-3] * a.shape[-2])
        return J, self.backward(d, a)

    def weighted_layer_cost(self, target: Any, a: Array, weight: float,
                            out: Array | None = None) -> tuple[Array, Array]:
        """``(J, weight dJ/da)``, ``J`` unweighted: :meth:`layer_cost` with the gradient multiplied by
        ``weight`` (what the objective sends backwards). ``out``: a buffer like ``a`` that a statistic
        may write the gradient into (this default does not use it; the Gram statistic does)."""
        J, g = self.layer_cost(target, a)
        return J, g * get_xp(g).asarray(weight, dtype=g.dtype)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class GramStatistic(StyleStatistic):
    """``gram``: pieces ``(G,)``, ``G = sum_p a_p a_p^T``; the cost of :func:`numpynst.losses.style_from_gram`,
    ``J = ||G - G_S||^2 / (2 n)^2`` (``n = P C``), the target the blend of the style images' Grams
    rescaled to the generated image's positions (:func:`numpynst.losses.style_target`)."""

    name = "gram"

    def measure(self, a, where=None):
        return (gram_matrix(a),)

    def target(self, pieces, positions):
        out = None
        for (G,), style_positions, w in pieces:
            g = style_target(G, positions, style_positions, w)
            out = g if out is None else out + g
        return out

    def at_blank(self, target, positions):
        return style_at_blank(target, positions * target.shape[0])

    def cost(self, sums, target, positions, weights=(), scale=1.0):
        (G,) = sums
        J, M = style_from_gram(G, target, positions * G.shape[0], weights, scale)
        return J, (M,)

    def backward(self, d, a, where=None):
        return gram_backward(d[0], a)

    def layer_cost(self, target, a):
        return style_layer_cost(target, a)

    def weighted_layer_cost(self, target, a, weight, out=None):
        return style_layer_cost_weighted(target, a, weight, out)


class MeanCovStatistic(StyleStatistic):
    """``mean-cov``: pieces ``(s1, s2) = (sum_p a_p, sum_p a_p a_p^T)``; the cost is the squared
    Wasserstein-2 distance between the Gaussians of the generated and the style features
    (:func:`numpynst.losses.mean_cov_from_sums`); the target the mixture of the style images'
    features (blended moments), with its square root computed once (:func:`~numpynst.losses.mean_cov_target`)."""

    name = "mean-cov"

    def measure(self, a, where=None):
        return moments(a)

    def target(self, pieces, positions):
        m1 = m2 = None
        for (s1, s2), style_positions, w in pieces:
            f = w / style_positions
            m1 = s1 * f if m1 is None else m1 + s1 * f
            m2 = s2 * f if m2 is None else m2 + s2 * f
        return mean_cov_target(m1, m2, 1.0)

    def at_blank(self, target, positions):
        return mean_cov_at_blank(target)

    def cost(self, sums, target, positions, weights=(), scale=1.0):
        s1, s2 = sums
        J, cache = mean_cov_from_sums(s1, s2, positions, target)
        d1, d2 = mean_cov_sums_backward(cache)
        return J, (_weighted(d1, weights, scale), _weighted(d2, weights, scale))

    def backward(self, d, a, where=None):
        return moments_backward(d[0], d[1], a)


class SwdStatistic(StyleStatistic):
    """``swd``: pieces ``(X,)``, the positions projected on ``K`` fixed unit directions ``V``
    ``(C, K)`` (seeded by :data:`SWD_SEED` and the layer: the same every run and every iteration);
    the cost is :func:`numpynst.losses.swd_cost` against the style's quantiles at the generated
    image's ``P`` levels (:func:`numpynst.losses.quantiles`, computed once). Not a sum over
    positions (``sums = False``): whole image only."""

    name = "swd"
    sums = False

    def __init__(self, layer: str, channels: int, directions: int | None = None, xp: Any = np,
                 dtype: Any = np.float32):
        K = channels if directions is None else directions
        if not 1 <= K <= SWD_MAX_DIRECTIONS:
            raise OptionError(f"swd_directions (--swd-directions) must be in 1..{SWD_MAX_DIRECTIONS}, got {K}")
        rng = np.random.default_rng([SWD_SEED, zlib.crc32(layer.encode()), channels, K])
        V = rng.standard_normal((channels, K))
        V /= np.linalg.norm(V, axis=0, keepdims=True)
        self.layer, self.K = layer, K
        self.V = xp.asarray(V, dtype=dtype)         # once, at construction

    def check(self, layer, positions, what):
        if positions < SWD_MIN_POSITIONS:
            raise OptionError(f"style_loss swd needs at least {SWD_MIN_POSITIONS} positions at each style "
                              f"layer; {what} has {positions} at {layer}: use a larger size, shallower "
                              f"style layers, or --style-loss mean-cov/gram")

    def measure(self, a, where=None):
        A = a.reshape(-1, a.shape[-1])
        xp = get_xp(A)
        return (rows_product(A, self.V, xp.empty((A.shape[0], self.K), dtype=xp.result_type(A, self.V))),)

    def target(self, pieces, positions):
        Q = quantiles([X for (X,), _, _ in pieces], [w for _, _, w in pieces], positions)
        return get_xp(Q).asarray(Q, dtype=self.V.dtype)

    def at_blank(self, target, positions):
        return swd_at_blank(target)

    def layer_cost(self, target, a):
        J, cache = swd_cost(a, self.V, target)
        return J, swd_backward(cache)

    def cost(self, sums, target, positions, weights=(), scale=1.0):
        raise OptionError("style_loss swd sorts all positions at once: it has no per-tile sums (whole image only)")

    backward = cost

    def __repr__(self) -> str:
        return f"SwdStatistic({self.layer!r}, K={self.K})"


STATISTICS = {"gram": GramStatistic, "mean-cov": MeanCovStatistic, "swd": SwdStatistic}


def check_style_loss(style_loss: Any) -> str:
    """``style_loss`` if it is one of :data:`STYLE_LOSSES`, else a one-line :class:`OptionError` listing them."""
    if style_loss not in STYLE_LOSSES:
        raise OptionError(f"style_loss (--style-loss) must be one of {', '.join(STYLE_LOSSES)}, got {style_loss!r}")
    return style_loss


def make_statistic(style_loss: str, layer: str, channels: int, *, directions: int | None = None,
                   xp: Any = np, dtype: Any = np.float32) -> StyleStatistic:
    """The statistic of ``--style-loss`` for one layer of ``channels`` channels (``directions``,
    ``xp`` and ``dtype``: ``swd``'s ``K`` and where its directions live)."""
    check_style_loss(style_loss)
    if style_loss == "swd":
        return SwdStatistic(layer, channels, directions, xp, dtype)
    return STATISTICS[style_loss]()


def as_statistics(layers: Mapping[str, StyleStatistic] | Iterable[str]) -> dict[str, StyleStatistic]:
    """``{layer: statistic}``: a mapping of statistics as given, bare layer names with the Gram statistic."""
    if isinstance(layers, Mapping) and all(isinstance(v, StyleStatistic) for v in layers.values()):
        return dict(layers)
    return {n: GramStatistic() for n in layers}


def add_pieces(total: tuple | None, piece: tuple) -> tuple:
    """``total + piece`` entry by entry (a copy of ``piece`` when ``total`` is ``None``): summing
    the pieces of tiles."""
    if total is None:
        return tuple(p.copy() for p in piece)
    return tuple(t + p for t, p in zip(total, piece))
