"""Measuring a picture: how much of the photo it keeps, how much of the painting it has taken.

A style transfer result ``x`` is judged against the photo ``c`` it was made from and the painting
``s`` that gave its style, through the activations of the shipped VGG (``F_l(.)``, the post-ReLU
output of layer ``l`` as an ``(N_l, C_l)`` matrix, one row per position). Three numbers:

**Content distance** at ``block4_conv2`` (the content layer of Gatys et al. and of ``stylize``)::

    C = ||F(x) - F(c)||^2 / ||F(c)||^2

0 for the photo itself, 1 for a blank image (all activations 0), and about 1 or more for a
picture that no longer has the photo's layout. It needs ``x`` and ``c`` at the same size.

**Style gap closed**, with a distance ``D`` between the statistics of two pictures' features::

    S = 1 - D(x, s) / D(c, s)

0 for the photo (the gap it starts from), 1 for a picture with the painting's statistics;
negative when ``x`` is further from the painting than the photo was. ``D`` is the mean over the
style layers ``blockN_conv1`` (N = 1..5) of a *relative* distance: each layer's distance divided by
its value for a blank image, so that every layer counts alike whatever its size and contrast.
Two distances, hence two figures:

* ``S_gram``: the Gram matrix per position, ``G_l(x) = F_l(x)^T F_l(x) / N_l`` (the mean of
  ``f f^T`` over positions, so pictures of different sizes compare), and::

      D_gram^l(x, s) = ||G_l(x) - G_l(s)||_F^2 / ||G_l(s)||_F^2

  (for a blank image ``G = 0`` and the ratio is 1). This is what ``stylize``'s style loss
  minimises (its calibrated style term is exactly this sum with per-layer weights), so a result
  can score well on it without looking like the painting.

* ``S_swd``: the sliced Wasserstein distance. Each row of ``F_l`` is a sample of the layer's
  feature distribution; ``P`` random unit directions ``theta_p`` (seeded: the same directions
  every time) each give a one-dimensional distribution of the projections ``F_l theta_p``. Between
  two one-dimensional distributions the squared 2-Wasserstein distance is the integral of the
  squared difference of their quantile functions::

      W_2^2(a, b) = int_0^1 (Q_a(t) - Q_b(t))^2 dt

  (in one dimension the monotone coupling is optimal: sort both, match in order). For two
  samples of equal size ``n`` that is the mean squared difference of the sorted samples,
  ``mean_i (a_(i) - b_(i))^2``; for sizes ``n != m`` (the painting has its own aspect ratio)
  ``Q_a`` and ``Q_b`` are step functions with steps at ``i/n`` and ``j/m``, and the integral is an
  exact finite sum over the merged steps (:func:`wasserstein2`). The layer's distance::

      SW_l(x, s) = mean_p W_2^2(F_l(x) theta_p, F_l(s) theta_p),
      D_swd^l(x, s) = SW_l(x, s) / SW_l(blank, s),   SW_l(blank, s) = mean_p mean_j (F_l(s) theta_p)_j^2

  It compares whole distributions, not only their second moments, and is not what ``stylize``
  minimises, so it is the fairer judge of whether a picture has taken the painting's statistics.

Both ``S`` use the photo at the result's size and the painting resized as ``stylize`` resizes it
(longest side ``style_scale`` x the result's, aspect kept: :func:`numpynst.transfer.style_side`).

**Regions.** ``mask`` (``(H, W)`` weights >= 0 over the result's pixels) restricts every statistic
to a region: at layer ``l`` each position weighs the mean of the mask over the ``j x j`` pixels it
stands for (``j`` the layer's spacing), the Gram matrix becomes ``sum_i w_i f_i f_i^T / sum_i w_i``,
the content distance ``sum_i w_i |f_i(x) - f_i(c)|^2 / sum_i w_i |f_i(c)|^2``, and the projections
a weighted sample (steps of the quantile function of height ``w_i / sum w``).
``style_mask`` does the same over the painting's pixels. All-ones masks give the unmasked figures.

Deterministic: the directions come from ``numpy.random.default_rng([seed, layer number])``; the
arithmetic is fixed (sums in float64). :class:`Judge` computes the photo's and painting's side
once, for measuring many results against one pair; :func:`measure` is one result from files or
arrays.

``measure(result, content, style) -> Measures``; ``Judge(model, photo, painting)(result)``;
the pieces: :func:`content_distance`, :func:`gram`, :func:`gram_distance`, :func:`directions`,
:func:`quantiles`, :func:`wasserstein2`, :func:`sliced_wasserstein`, :func:`layer_weights`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from .backend import get_xp, to_host
from .errors import ImageError, OptionError

Array = Any

CONTENT_LAYER = "block4_conv2"
STYLE_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1")
#: Directions per layer of the sliced Wasserstein distance (benchmarks/README.md, "Measuring
#: pictures", has the spread of S_swd over seeds at this count).
DEFAULT_PROJECTIONS = 64
DEFAULT_SEED = 0
_CHUNK = 16             # directions sorted and compared at a time (bounds the memory at 512 px)


class Measures(NamedTuple):
    """What :func:`measure` / :class:`Judge` report for one result (host floats).

    ``content`` = C; ``style_gram``, ``style_swd`` = S_gram, S_swd; the distances behind them:
    ``gram`` = D_gram(x, s), ``gram_photo`` = D_gram(c, s), ``swd`` = D_swd(x, s),
    ``swd_photo`` = D_swd(c, s).
    """

    content: float
    style_gram: float
    style_swd: float
    gram: float
    gram_photo: float
    swd: float
    swd_photo: float

    def as_dict(self) -> dict[str, float]:
        return dict(self._asdict())


# ---------------------------------------------------------------------------- the statistics
def _rows(a: Array) -> Array:
    """An activation ``(1, H, W, C)``, ``(H, W, C)`` or ``(N, C)`` as the ``(N, C)`` matrix."""
    return a.reshape(-1, a.shape[-1])


def _normalised(w: Array | None, n: int) -> Array | None:
    if w is None:
        return None
    xp = get_xp(w)
    w = xp.asarray(w, dtype=np.float64).reshape(-1)
    if w.shape[0] != n:
        raise OptionError(f"weights: {w.shape[0]} positions for {n} feature rows")
    total = float(w.sum())
    if not total > 0:
        raise OptionError("weights: the mask has no weight at this layer (all zero)")
    return w / total


def content_distance(a_x: Array, a_c: Array, w: Array | None = None) -> float:
    """``C = sum_i w_i |f_i(x) - f_i(c)|^2 / sum_i w_i |f_i(c)|^2`` (``w`` = 1 without weights)."""
    X, Cm = _rows(a_x).astype(np.float64), _rows(a_c).astype(np.float64)
    if X.shape != Cm.shape:
        raise OptionError(f"content distance: activations of shapes {tuple(a_x.shape)} and "
                          f"{tuple(a_c.shape)} (the result and the photo must have the same size)")
    d2, c2 = ((X - Cm) ** 2).sum(axis=1), (Cm ** 2).sum(axis=1)
    if w is not None:
        w = _normalised(w, X.shape[0])
        d2, c2 = d2 * w, c2 * w
    den = float(c2.sum())
    if not den > 0:
        raise OptionError("content distance: the photo's activations are all zero there")
    return float(d2.sum()) / den


def gram(a: Array, w: Array | None = None) -> Array:
    """Gram matrix per position ``sum_i w_i f_i f_i^T / sum_i w_i`` (float64, ``(C, C)``);
    without ``w`` it is ``F^T F / N``."""
    A = _rows(a).astype(np.float64)
    if w is None:
        return A.T @ A / A.shape[0]
    w = _normalised(w, A.shape[0])
    return (A * w[:, None]).T @ A


def gram_distance(G: Array, G_s: Array) -> float:
    """``||G - G_s||_F^2 / ||G_s||_F^2``: 0 at the painting's Gram matrix, 1 at a blank image's."""
    den = float((G_s ** 2).sum())
    if not den > 0:
        raise OptionError("Gram distance: the painting's Gram matrix is zero at this layer")
    return float(((G - G_s) ** 2).sum()) / den


def directions(channels: int, count: int = DEFAULT_PROJECTIONS, seed: int = DEFAULT_SEED,
               layer: int = 0) -> np.ndarray:
    """``count`` unit vectors in ``R^channels`` as the columns of a ``(channels, count)`` float64
    matrix: Gaussian draws of ``default_rng([seed, layer])``, normalised (uniform on the sphere)."""
    theta = np.random.default_rng([int(seed), int(layer)]).standard_normal((channels, count))
    return theta / np.linalg.norm(theta, axis=0, keepdims=True)


class Quantiles(NamedTuple):
    """A sample's quantile functions along several directions (:func:`quantiles`).

    ``values``: ``(P, N)`` projections sorted along each row. ``cum``: ``None`` for equal weights
    (steps at ``1/N, 2/N, ..., 1``), else ``(P, N)`` the cumulative normalised weights in the same
    order (the step ends; the last is 1). ``Q(t) = values[p, i]`` for ``t`` in ``(cum[i-1], cum[i]]``.
    """

    values: Array
    cum: Array | None

    def second_moment(self) -> Array:
        """``(P,)`` ``int_0^1 Q(t)^2 dt`` = ``W_2^2(blank, .)`` (the distribution at 0)."""
        v = self.values.astype(np.float64)
        if self.cum is None:
            return (v * v).mean(axis=1)
        xp = get_xp(v)
        width = xp.diff(self.cum, axis=1, prepend=0.0)
        return (width * v * v).sum(axis=1)


def quantiles(a: Array, theta: Array, w: Array | None = None) -> Quantiles:
    """The rows of ``a`` (``(N, C)`` or an activation) projected on the columns of ``theta``
    ``(C, P)``, sorted: the ``P`` quantile functions of the (weighted) sample."""
    xp = get_xp(a)
    A = _rows(a)
    proj = (A @ xp.asarray(theta, dtype=A.dtype)).T            # (P, N)
    if w is None:
        return Quantiles(xp.sort(proj, axis=1), None)
    w = _normalised(w, A.shape[0])
    order = xp.argsort(proj, axis=1, kind="stable")
    cum = xp.cumsum(w[order], axis=1)
    cum[:, -1] = 1.0                                           # the last step ends at 1 exactly
    return Quantiles(xp.take_along_axis(proj, order, axis=1), cum)


def _uniform_steps(n: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For equal weights ``1/n`` and ``1/m``: the merged steps of two quantile functions.

    In units of ``1/(n m)`` the steps of ``Q_a`` end at ``i m`` (i = 1..n) and those of ``Q_b``
    at ``j n``; integers, so the merge is exact. On the interval ``(T_{k-1}, T_k]`` of the merged
    ends, ``Q_a = a_(i)`` with ``i = floor(T_{k-1} / m)`` and ``Q_b = b_(j)`` with
    ``j = floor(T_{k-1} / n)``. Returns ``(i, j, widths)`` (widths as fractions, summing to 1).
    """
    ends = np.union1d(np.arange(1, n + 1, dtype=np.int64) * m, np.arange(1, m + 1, dtype=np.int64) * n)
    starts = np.concatenate([[0], ends[:-1]])
    return starts // m, starts // n, (ends - starts) / float(n * m)


def wasserstein2(qa: Quantiles, qb: Quantiles) -> Array:
    """``(P,)`` squared 2-Wasserstein distances ``int_0^1 (Q_a(t) - Q_b(t))^2 dt``, one per
    direction, exactly (the integral of a product of step functions is a finite sum).

    Equal weights and sizes: ``mean_i (a_(i) - b_(i))^2``. Equal weights, sizes ``n != m``: over
    the merged steps (:func:`_uniform_steps`). Weighted: the step ends of both sides are merged
    per direction (a stable sort of both ``cum`` rows); the number of ``a``'s ends before position
    ``k`` of the merged order is the index of ``Q_a`` on the ``k``-th interval, likewise for ``b``.
    """
    va, vb = qa.values, qb.values
    xp = get_xp(va)
    n, m = va.shape[1], vb.shape[1]
    if qa.cum is None and qb.cum is None:
        if n == m:
            d = va.astype(np.float64) - vb.astype(np.float64)
            return (d * d).mean(axis=1)
        i, j, width = _uniform_steps(n, m)
        i, j, width = xp.asarray(i), xp.asarray(j), xp.asarray(width)
        d = va[:, i].astype(np.float64) - vb[:, j].astype(np.float64)
        return (d * d) @ width
    P = va.shape[0]
    ca = qa.cum if qa.cum is not None else xp.broadcast_to(xp.arange(1, n + 1) / n, (P, n))
    cb = qb.cum if qb.cum is not None else xp.broadcast_to(xp.arange(1, m + 1) / m, (P, m))
    ends = xp.concatenate([ca, cb], axis=1)
    order = xp.argsort(ends, axis=1, kind="stable")
    ends = xp.take_along_axis(ends, order, axis=1)
    from_a = (order < n).astype(np.int64)
    i = xp.minimum(xp.cumsum(from_a, axis=1) - from_a, n - 1)     # a's ends strictly before k
    j = xp.minimum(xp.cumsum(1 - from_a, axis=1) - (1 - from_a), m - 1)
    width = xp.diff(ends, axis=1, prepend=0.0)
    d = (xp.take_along_axis(va, i, axis=1).astype(np.float64)
         - xp.take_along_axis(vb, j, axis=1).astype(np.float64))
    return (width * d * d).sum(axis=1)


def sliced_wasserstein(a: Array, b: Array, theta: Array, wa: Array | None = None,
                       wb: Array | None = None) -> float:
    """``mean_p W_2^2(a theta_p, b theta_p)`` for feature rows ``a`` ``(N, C)``, ``b`` ``(M, C)``
    (optionally weighted), directions ``theta`` ``(C, P)`` (:func:`directions`)."""
    total = 0.0
    for p0 in range(0, theta.shape[1], _CHUNK):
        t = theta[:, p0:p0 + _CHUNK]
        total += float(wasserstein2(quantiles(a, t, wa), quantiles(b, t, wb)).sum())
    return total / theta.shape[1]


def layer_weights(mask: Array | None, spacing: int, shape: Sequence[int]) -> np.ndarray | None:
    """A pixel mask ``(H, W)`` as weights of the positions of a layer with grid ``spacing`` ``j``
    and activation ``shape`` ``(1, H_l, W_l, C)``: the mean of the mask over each ``j x j`` cell
    (a VGG layer after ``k`` pools has ``H_l = H // j``, ``j = 2^k``). ``None`` stays ``None``."""
    if mask is None:
        return None
    h, w = int(shape[-3]), int(shape[-2])
    m = np.asarray(mask, dtype=np.float64)[:h * spacing, :w * spacing]
    return m.reshape(h, spacing, w, spacing).mean(axis=(1, 3)).reshape(-1)


def check_mask(mask: Any, shape: Sequence[int], what: str = "mask") -> np.ndarray | None:
    """``mask`` as float64 ``(H, W)`` weights for a picture of ``shape`` ``(H, W, ...)``:
    finite, >= 0, not all zero; ``None`` passes through."""
    if mask is None:
        return None
    m = np.asarray(to_host(mask), dtype=np.float64)
    if m.ndim == 3 and m.shape[2] == 1:
        m = m[:, :, 0]
    if m.shape != tuple(shape[:2]):
        raise OptionError(f"{what} must have the picture's shape {tuple(shape[:2])}, got {m.shape}")
    if not np.isfinite(m).all() or (m < 0).any() or not m.sum() > 0:
        raise OptionError(f"{what} must hold finite weights >= 0, not all zero")
    return m


# ---------------------------------------------------------------------------- the judge
class _Side(NamedTuple):
    """The photo's or painting's statistics at one style layer."""

    gram: np.ndarray
    quantiles: list          # one Quantiles per chunk of directions
    weights: Any


class Judge:
    """Measures results against one photo and one painting (their statistics computed once).

    ``photo``: RGB ``(H, W, 3)`` at the results' size; ``painting``: RGB, sized as ``stylize``
    sizes it (:func:`sized_inputs` does both). ``mask`` / ``style_mask``: optional region weights
    over the photo's / painting's pixels (see the module's docstring). ``model``: a
    :class:`numpynst.vgg.VGG` (default: the shipped VGG19, float32, NumPy).
    """

    def __init__(self, photo: Any, painting: Any, model=None, *, mask: Any = None,
                 style_mask: Any = None, projections: int = DEFAULT_PROJECTIONS,
                 seed: int = DEFAULT_SEED, content_layer: str = CONTENT_LAYER,
                 style_layers: Sequence[str] = STYLE_LAYERS):
        from .checks import integer
        from .image import as_rgb
        if model is None:
            from .vgg import VGG
            model = VGG.from_h5()
        self.model = model
        self.projections = integer("projections", projections, minimum=1)
        self.seed = integer("seed", seed, minimum=0)
        self.content_layer, self.style_layers = content_layer, tuple(style_layers)
        self.photo = as_rgb(photo, "content")
        painting = as_rgb(painting, "style")
        self.mask = check_mask(mask, self.photo.shape, "mask")
        smask = check_mask(style_mask, painting.shape, "style_mask")
        self.theta = {name: directions(model.channels(name), self.projections, self.seed, k)
                      for k, name in enumerate(self.style_layers)}
        feats = self._features(self.photo)
        self._photo_content = feats[self.content_layer]
        self._photo_w = {n: layer_weights(self.mask, model.layer(n).spacing, feats[n].shape)
                         for n in self.style_layers}
        self._painting = {}
        for name, a in self._features(painting, self.style_layers).items():
            w = layer_weights(smask, model.layer(name).spacing, a.shape)
            qs = [quantiles(a, t, w) for t in self._chunks(name)]
            self._painting[name] = _Side(gram(a, w), qs, w)
        self._blank = {n: float(sum(float(q.second_moment().sum()) for q in side.quantiles))
                       / self.projections for n, side in self._painting.items()}
        self.photo_gram, self.photo_swd = self._style(feats)

    def _chunks(self, name: str):
        theta = self.theta[name]
        return [theta[:, p:p + _CHUNK] for p in range(0, theta.shape[1], _CHUNK)]

    def _features(self, rgb: np.ndarray, names: Sequence[str] | None = None) -> dict:
        names = [self.content_layer, *self.style_layers] if names is None else list(names)
        out, _ = self.model.forward_tape(self.model.preprocess(rgb), names, keep=False)
        return out

    def _style(self, feats: dict) -> tuple[float, float]:
        """``(D_gram, D_swd)`` of an image's features against the painting."""
        d_gram = d_swd = 0.0
        for name in self.style_layers:
            a, side, w = feats[name], self._painting[name], self._photo_w[name]
            d_gram += gram_distance(gram(a, w), side.gram)
            sw = sum(float(wasserstein2(quantiles(a, t, w), q).sum())
                     for t, q in zip(self._chunks(name), side.quantiles)) / self.projections
            d_swd += sw / self._blank[name]
        k = len(self.style_layers)
        return d_gram / k, d_swd / k

    def distances(self, image: Any) -> tuple[float, float, float]:
        """``(C, D_gram, D_swd)`` of an RGB picture of the photo's size."""
        rgb = as_result(image, self.photo.shape)
        feats = self._features(rgb)
        w = layer_weights(self.mask, self.model.layer(self.content_layer).spacing,
                          feats[self.content_layer].shape)
        c = content_distance(feats[self.content_layer], self._photo_content, w)
        return (c, *self._style(feats))

    def __call__(self, result: Any) -> Measures:
        c, d_gram, d_swd = self.distances(result)
        return Measures(c, _closed(d_gram, self.photo_gram), _closed(d_swd, self.photo_swd),
                        d_gram, self.photo_gram, d_swd, self.photo_swd)


def _closed(d: float, d_photo: float) -> float:
    """``1 - d / d_photo``; NaN when the photo already has the painting's statistics (no gap)."""
    return 1.0 - d / d_photo if d_photo > 0 else float("nan")


def as_result(image: Any, shape: Sequence[int], what: str = "result") -> np.ndarray:
    """An RGB result of the photo's ``shape``, or :class:`OptionError` naming ``what``."""
    from .image import as_rgb
    rgb = as_rgb(image, what)
    if rgb.shape[:2] != tuple(shape[:2]):
        raise OptionError(f"{what} is {rgb.shape[1]}x{rgb.shape[0]} px but the photo is "
                          f"{shape[1]}x{shape[0]} px at its size")
    return rgb


def sized_inputs(result: Any, content: Any, style: Any, style_scale: float = 1.0,
                 names: Sequence[str] = ("result", "content", "style"),
                 max_pixels: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(result, photo, painting)`` as RGB arrays, sized for measuring: the result as it is; the
    photo at the result's longest side (as ``stylize --size`` loads it), which must then be the
    result's ``(H, W)`` within a pixel per side (other tools round sizes their own way; it is then
    resized to the result's exactly); the painting at :func:`numpynst.transfer.style_side`'s size.
    ``names`` name the three arguments in errors (the CLI passes its own)."""
    from .image import as_rgb, resize_to
    from .transfer import style_side
    x = as_rgb(result, names[0], None, max_pixels)
    c = as_rgb(content, names[1], max(x.shape[:2]), max_pixels)
    if c.shape[:2] != x.shape[:2] and all(abs(a - b) <= 1 for a, b in zip(c.shape[:2], x.shape[:2])):
        c = resize_to(c, x.shape[:2])       # another tool's rounding of the same aspect (neural-style floors)
    if c.shape[:2] != x.shape[:2]:
        raise ImageError(f"{names[1]}: at the result's longest side ({max(x.shape[:2])} px) the photo "
                         f"is {c.shape[1]}x{c.shape[0]} px but the result is {x.shape[1]}x{x.shape[0]}"
                         f" px: not this result's photo, or it was cropped")
    s = as_rgb(style, names[2], style_side(x.shape, style_scale), max_pixels)
    return x, c, s


def measure(result: Any, content: Any, style: Any, *, model=None, style_scale: float = 1.0,
            mask: Any = None, style_mask: Any = None, projections: int = DEFAULT_PROJECTIONS,
            seed: int = DEFAULT_SEED) -> Measures:
    """C, S_gram and S_swd of ``result`` made from ``content`` in the style of ``style`` (paths
    or RGB arrays), sized as :func:`sized_inputs` says. See the module's docstring."""
    x, c, s = sized_inputs(result, content, style, style_scale)
    return Judge(c, s, model, mask=mask, style_mask=style_mask, projections=projections,
                 seed=seed)(x)
