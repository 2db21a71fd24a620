"""Spatial control: a different style per region, through masks carried down the network.

Gatys, Ecker, Bethge, Hertzmann & Shechtman (CVPR 2017, "Controlling Perceptual Factors in Neural
Style Transfer") give each region ``r`` of the picture its own style: a mask ``m_r`` (white where
style image ``r`` applies) is carried down to every style layer's grid, and the layer's Gram matrix
is replaced by one *guided* Gram matrix per region, computed from the features under that region's
mask. This module holds the two halves of that method, each a plain function:

1. **How a mask travels down the network** (:func:`mask_resized`, :func:`mask_eroded`,
   :func:`layer_masks`): from the picture's pixels to the ``nH x nW`` positions of a layer.
2. **The guided style cost** (:func:`guided_grams`, :func:`guided_target`,
   :func:`guided_from_grams`, :func:`guided_backward`, :func:`guided_layer_cost`): value and
   gradient, derived below, checked against central differences and PyTorch's autograd.

**1. A mask at a layer's resolution.** A position ``p`` (each axis) of a layer with grid spacing ``j``
and reach ``a`` (:class:`numpynst.arch.Layer`) owns the ``j x j`` cell ``[p j, p j + j - 1]`` of
input pixels and *sees* the wider window ``[p j - a, p j + j - 1 + a]`` (its receptive field,
clipped to the image: beyond it is zero padding, which belongs to no region). Two ways to give the
position a mask value:

* **resize** (:func:`mask_resized`): the mean of the mask over the position's own cell. The VGG
  layers change the grid only at the 2x2/2 pools (floor mode: a remainder row is dropped), and a
  ``j x j`` block mean is exactly 2x2 averaging repeated at each pool, so this is the mask "pooled
  along" with the features. It keeps the mask's mass (up to the dropped remainder) and every
  region, however thin, stays present at every layer; but a position just inside the boundary
  sees up to ``a`` pixels of the *other* region, whose texture then counts towards this region's
  statistics: the styles can leak into each other along the boundary.
* **erode** (:func:`mask_eroded`): the *minimum* of the mask over the whole receptive field. A
  position counts for region ``r`` (with weight 1 for a hard mask) only if everything it sees is
  inside ``r``: no position's statistics mix the two sides, so nothing leaks through the
  statistics; the price is a band of width ``a`` along every boundary that belongs to no region
  at that layer (only the content and the shallower layers shape it), and a region narrower
  than ``2 a`` vanishes from the layer altogether (block5_conv1 of VGG19: ``a = 70`` px).
  For a soft mask the minimum is the usual grey-level erosion.

:func:`layer_masks` applies either to every style layer. Which one to use is a measured question
(leakage across the boundary against the width of the band where the styles mix):
``benchmarks/masks.py`` and ``docs/masks.md`` give the figures; :data:`DEFAULT_MASK_MODE` is the
choice.

**2. The guided Gram matrix, derived.** With ``A`` the layer's activations as an ``(P, C)`` matrix
(``P = nH nW`` positions) and ``m_r`` the region's mask at the layer (``P`` values in ``[0, 1]``),

    G_r = sum_i m_{r,i} a_i a_i^T = A^T diag(m_r) A            (C x C)
    M_r = sum_i m_{r,i}                                         (the region's mass)
    Ĝ_r = G_r / M_r                                             (mean outer product over the region)

*Why ``m`` and not ``m^2``.* Gatys et al. multiply the feature maps by the mask,
``F_r = diag(m_r) A``, whose Gram matrix weighs a position by ``m^2``. For a hard (0/1) mask the two
agree. For a soft one, weighing by ``m`` makes a position a weighted *member* of each region: where
two soft masks cross as ``t`` and ``1 - t``, the positions' contributions to the regions' ``G_r``
add up to exactly their contribution to the unguided Gram, and a grey level 0.5 means "half in
each" -- what "soft values blend" promises. With ``m^2`` a position in the blend counts
``t^2 + (1 - t)^2 < 1`` in total, under-represented in both.

*Why normalise per region.* ``G_r`` sums over the region, so a region covering 5% of the picture
would have a Gram matrix twenty times smaller than one covering all of it, and its cost (a square)
four hundred times smaller: drowned. ``Ĝ_r`` is a mean over the region's own positions, whatever its
size. The target is the same statistic of the style image (:func:`guided_target`): the mean
outer product over all its positions, or over its style-side mask when one is given (a style taken
from one region of a painting). This also makes the style image's size irrelevant, which the
unguided cost achieves by rescaling its target (:func:`numpynst.losses.style_target`).

The cost of a layer, with blend weights ``w_r`` (``sum_r w_r = 1``, default ``1 / R``):

    J = sum_r w_r c ||Ĝ_r - T_r||_F^2,      c = 1 / (4 C^2)

*Consistency with the unguided cost.* For one region whose mask is 1 everywhere, ``Ĝ = A^T A / P``
and ``T = G_S / P_S``, and ``c ||Ĝ - T||^2 = ||A^T A - (P / P_S) G_S||^2 / (2 P C)^2``: exactly
:func:`numpynst.losses.style_layer_cost` with its rescaled target (a test checks it). For ``R``
equal regions with ``w_r = 1/R`` the force on each position (below, ``2 w_r m_i / M_r``) is that of
the unguided cost, ``2 / P``; a smaller region's positions are pushed harder, in proportion.

**Gradient.** Let ``E_r = Ĝ_r - T_r`` (symmetric). Then

    dJ/dĜ_r = 2 w_r c E_r,       dJ/dG_r = 2 w_r c E_r / M_r      (M_r does not depend on x)

and through ``G_r = A^T diag(m_r) A`` -- the Gram matrix of the rows ``sqrt(m_i) a_i``, or directly:
``G_r,kl = sum_i m_i A_ik A_il``, so ``d/dA_ik`` collects ``m_i (A dG_r)_ik`` from the row index and
``m_i (A dG_r^T)_ik`` from the column index --

    dJ/dA = sum_r diag(m_r) A (dG_r + dG_r^T)                    (:func:`guided_backward`)
          = sum_r (4 w_r c / M_r) diag(m_r) A E_r.

Each position's gradient needs only its own ``a_i``, its mask values and the global ``dG_r``: the
same structure as the unguided Gram, which is what makes tiles exact with masks (sum the pieces
``G_r`` over the tiles' interiors, form ``dG_r``, seed each interior with the formula above).

A region whose mass at a layer is 0 (possible only with erosion, or a mask that lives in the
pools' dropped remainder) has no statistic there: its term is left out of ``J`` at that layer
(value and gradient 0) rather than divided by zero; :func:`layer_masks` reports such layers so
that a front end can refuse them before a run.

Shapes: activations ``(nH, nW, C)`` or ``(1, nH, nW, C)``; masks at a layer ``(R, nH, nW)``; masks
of the picture ``(R, H, W)`` or one ``(H, W)``. NumPy or CuPy (``xp`` from the arrays), any float
dtype; ``J`` is a 0-d array.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from .backend import get_xp, to_host
from .errors import OptionError
from .losses import mean_cov_at_blank, mean_cov_from_sums, mean_cov_sums_backward, mean_cov_target
from .style_stats import StyleStatistic

Array = Any

MASK_MODES = ("resize", "erode")
#: How masks travel down the network unless asked otherwise (the measured choice, docs/masks.md).
DEFAULT_MASK_MODE = "resize"


# ---------------------------------------------------------------------------- masks down the network
def _grid(m: Array, spacing: int) -> tuple[int, int]:
    """``(nH, nW)`` of a layer of this spacing over a picture the size of ``m`` (floor at every pool)."""
    return m.shape[-2] // spacing, m.shape[-1] // spacing


def mask_resized(m: Array, spacing: int) -> Array:
    """A mask ``(..., H, W)`` at a layer of grid ``spacing`` ``j``: the mean over each position's
    ``j x j`` cell, ``(..., H // j, W // j)``.

    The mean of the cell ``[p j, p j + j)`` in each axis equals 2x2 averaging repeated at every
    pool, in floor mode as the network pools (``floor(floor(H / 2) / 2) = floor(H / 4)``: the same
    remainder rows are dropped). ``spacing`` 1 (block 1) returns the mask itself (a copy).
    """
    nH, nW = _grid(m, spacing)
    j = spacing
    lead = m.shape[:-2]
    cells = m[..., :nH * j, :nW * j].reshape(*lead, nH, j, nW, j)
    return cells.mean(axis=(-3, -1))


def _sliding_min(v: Array, width: int, axis: int) -> Array:
    """``out[i] = min(v[i : i + width])`` along ``axis`` (length ``n - width + 1``), by doubling:
    ``cur[i] = min v[i : i + k]`` for ``k = 1, 2, 4, ...`` up to the largest power of two ``<= width``,
    then the window is the union of the two (overlapping) ``k``-windows at ``i`` and
    ``i + width - k``. ``log2(width) + 1`` passes of ``minimum`` over slices (NumPy and CuPy alike)."""
    xp = get_xp(v)
    n = v.shape[axis]

    def take(a, start, stop):
        index = [slice(None)] * a.ndim
        index[axis] = slice(start, stop)
        return a[tuple(index)]

    cur, k = v, 1
    while 2 * k <= width:
        length = cur.shape[axis]
        cur = xp.minimum(take(cur, 0, length - k), take(cur, k, length))
        k *= 2
    out_len = n - width + 1
    return xp.minimum(take(cur, 0, out_len), take(cur, width - k, width - k + out_len))


def mask_eroded(m: Array, spacing: int, reach: int) -> Array:
    """A mask ``(..., H, W)`` at a layer of grid ``spacing`` ``j`` and reach ``a``: the minimum over each
    position's receptive field ``[p j - a, p j + j - 1 + a]`` (each axis), clipped to the picture,
    ``(..., H // j, W // j)``.

    Outside the picture is zero padding, which belongs to no region, so the window is clipped (the
    picture's edge does not erode a region that touches it). Implemented as a separable sliding
    minimum (rows, then columns): pad each axis by ``a`` with ``+inf`` (ignored by the minimum), take
    the minimum over windows of ``j + 2a``, keep every ``j``-th window.
    """
    xp = get_xp(m)
    nH, nW = _grid(m, spacing)
    width = spacing + 2 * reach
    out = xp.asarray(m)
    for axis, n_out in ((-2, nH), (-1, nW)):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (reach, reach)
        padded = xp.pad(out, pad, mode="constant", constant_values=xp.inf) if reach else out
        windows = _sliding_min(padded, width, axis % out.ndim)
        index = [slice(None)] * out.ndim
        index[axis] = slice(0, n_out * spacing, spacing)
        out = windows[tuple(index)]
    return out


def layer_masks(masks: Array, geometry: Mapping[str, tuple[int, int]], mode: str = DEFAULT_MASK_MODE) -> dict[str, Array]:
    """``{layer: masks at the layer (R, nH, nW)}`` for masks of the picture ``(R, H, W)``.

    ``geometry``: ``{layer: (reach a, spacing j)}`` (:func:`numpynst.tiled.receptive`, or the model's
    layer table); ``mode``: ``"resize"`` (:func:`mask_resized`) or ``"erode"`` (:func:`mask_eroded`).
    """
    if mode not in MASK_MODES:
        raise ValueError(f"mask mode must be one of {', '.join(MASK_MODES)}, got {mode!r}")
    out = {}
    for name, (reach, spacing) in geometry.items():
        out[name] = mask_resized(masks, spacing) if mode == "resize" else mask_eroded(masks, spacing, reach)
    return out


def missing_everywhere(masks: Array, geometry: Mapping[str, tuple[int, int]], mode: str = DEFAULT_MASK_MODE) -> list[int]:
    """The regions (indices) whose mask has no mass at *any* of the layers of ``geometry``: their
    style would apply nowhere (a region narrower than every layer's receptive field, with erosion)."""
    absent = empty_regions(layer_masks(masks, geometry, mode))
    return [r for r in range(masks.shape[0]) if sum(1 for i, _ in absent if i == r) == len(geometry)]


def empty_regions(per_layer: Mapping[str, Array]) -> list[tuple[int, str]]:
    """``[(region index, layer)]`` of every region whose mass is 0 at a layer (host sync: checks only)."""
    out = []
    for name, m in per_layer.items():
        xp = get_xp(m)
        mass = xp.sum(m.reshape(m.shape[0], -1), axis=1)
        out.extend((r, name) for r in range(m.shape[0]) if not float(mass[r]) > 0)
    return out


# ---------------------------------------------------------------------------- the guided style cost
def _matrix(a: Array) -> tuple[Array, int]:
    """``(A (P, C), C)`` from activations ``(nH, nW, C)`` or ``(1, nH, nW, C)``."""
    shape = tuple(a.shape)
    if not (len(shape) == 3 or (len(shape) == 4 and shape[0] == 1)):
        raise ValueError(f"activations must have shape (nH, nW, C) or (1, nH, nW, C), got {shape}")
    return a.reshape(-1, shape[-1]), shape[-1]


def _flat_masks(masks: Array, a: Array) -> Array:
    """The masks ``(R, nH, nW)`` as ``(R, P)`` in ``a``'s dtype, checked against ``a``'s grid."""
    xp = get_xp(a)
    hw = tuple(a.shape[-3:-1])
    if masks.ndim != 3 or tuple(masks.shape[1:]) != hw:
        raise ValueError(f"masks must have shape (R, {hw[0]}, {hw[1]}) for activations of shape "
                         f"{tuple(a.shape)}, got {tuple(masks.shape)}")
    return xp.asarray(masks, dtype=a.dtype).reshape(masks.shape[0], -1)


def guided_grams(a: Array, masks: Array) -> Array:
    """``G_r = A^T diag(m_r) A`` for every region: ``(R, C, C)`` from activations and masks ``(R, nH, nW)``.

    Unnormalised: a sum over positions (tiles add their interiors' pieces). Computed as the Gram
    matrix of the rows ``sqrt(m_i) a_i`` (``m >= 0``): ``B^T B`` with both operands the same array
    is BLAS's symmetric rank-k update, measured ten times faster than the general product
    ``(diag(m) A)^T A`` at block1 of a 256 px picture."""
    xp = get_xp(a)
    A, C = _matrix(a)
    root = xp.sqrt(_flat_masks(masks, a))
    out = xp.empty((root.shape[0], C, C), dtype=a.dtype)
    for r in range(root.shape[0]):
        B = A * root[r][:, None]
        out[r] = B.T @ B
    return out


def region_mass(masks: Array) -> list[float]:
    """``[M_r = sum_i m_{r,i}]`` of masks at a layer ``(R, nH, nW)``, host floats (float64 sums).

    A constant of the objective (the masks do not depend on the image): taken once, at construction."""
    xp = get_xp(masks)
    return [float(xp.sum(xp.asarray(masks[r], dtype=xp.float64))) for r in range(masks.shape[0])]


def guided_target(a: Array, mask: Array | None = None) -> Array:
    """The style statistic of one style image at one layer: its mean outer product ``(C, C)``,
    ``A^T A / P``, or with a style-side ``mask`` ``(nH, nW)`` at the layer's grid,
    ``A^T diag(m) A / sum(m)`` (the style taken from that region of the painting).

    Raises ValueError when the mask's mass is 0 (the region is not present at this layer)."""
    xp = get_xp(a)
    A, _ = _matrix(a)
    if mask is None:
        return (A.T @ A) / xp.asarray(A.shape[0], dtype=a.dtype)
    G = guided_grams(a, mask[None])[0]
    mass = region_mass(mask[None])[0]
    if not mass > 0:
        raise ValueError("the style mask has no mass at this layer")
    return G / xp.asarray(mass, dtype=a.dtype)


def guided_constant(C: int) -> float:
    """``c = 1 / (4 C^2)``: the normaliser of :func:`guided_from_grams` (see the module docstring)."""
    return 1.0 / (4.0 * C * C)


def guided_from_grams(G: Array, T: Array, mass: Sequence[float], weights: Sequence[float],
                      factors: Sequence[float] = (), scale: float = 1.0) -> tuple[Array, Array]:
    """The guided style cost of one layer from the regions' Grams: ``(J, dJ/dG (R, C, C))``.

        J = sum_r w_r c ||G_r / M_r - T_r||^2,      dJ/dG_r = 2 w_r c (G_r / M_r - T_r) / M_r

    (``c`` :func:`guided_constant`). As in :func:`numpynst.losses.style_from_gram` the difference
    is scaled by ``sqrt(c) = 1 / (2C)`` before it is squared (float32-safe), and the gradient comes
    back multiplied by ``factors`` and divided by ``scale`` (an objective's ``beta lambda_l / s_l``),
    folded into one constant per region. A region with ``M_r = 0`` contributes nothing.

    Args:
        G: ``(R, C, C)`` guided Grams of the generated image (summed over the whole image).
        T: ``(R, C, C)`` targets (:func:`guided_target`, cast to G's dtype).
        mass: ``R`` host floats ``M_r``; weights: ``R`` host floats ``w_r``.
    Returns: ``(J, dJ/dG)``: J 0-d (unweighted by ``factors``), the gradient ``(R, C, C)``.
    """
    xp = get_xp(G, T)
    R, C = G.shape[0], G.shape[-1]
    if tuple(T.shape) != tuple(G.shape) or len(mass) != R or len(weights) != R:
        raise ValueError(f"guided_from_grams: G {tuple(G.shape)}, T {tuple(T.shape)}, {len(mass)} masses "
                         f"and {len(weights)} weights do not describe the same regions")
    root = 0.5 / C                                  # sqrt(c)
    J = xp.zeros((), dtype=G.dtype)
    dG = xp.zeros_like(G)
    extra = 1.0
    for f in factors:
        extra = extra * f
    for r in range(R):
        if not mass[r] > 0 or weights[r] == 0:
            continue
        E = G[r] * xp.asarray(1.0 / mass[r], dtype=G.dtype) - xp.asarray(T[r], dtype=G.dtype)
        E *= root                                   # E = sqrt(c) (Ĝ_r - T_r)
        J = J + weights[r] * xp.sum(E * E)
        dG[r] = E * xp.asarray(2.0 * root * weights[r] / mass[r] * extra / scale, dtype=G.dtype)
    return J, dG


def guided_backward(dG: Array, a: Array, masks: Array) -> Array:
    """``dJ/da = sum_r diag(m_r) A (dG_r + dG_r^T)``, shaped like ``a`` (derivation in the module docstring)."""
    A, C = _matrix(a)
    m = _flat_masks(masks, a)
    if tuple(dG.shape) != (m.shape[0], C, C):
        raise ValueError(f"dG must have shape ({m.shape[0]}, {C}, {C}), got {tuple(dG.shape)}")
    out = None
    for r in range(m.shape[0]):
        piece = (A @ (dG[r] + dG[r].T)) * m[r][:, None]
        out = piece if out is None else out + piece
    return out.reshape(a.shape)


def guided_layer_cost(a: Array, masks: Array, T: Array, weights: Sequence[float] | None = None,
                      mass: Sequence[float] | None = None) -> tuple[Array, Array]:
    """The guided style cost of one layer from its activations: ``(J, dJ/da)``.

    ``masks`` ``(R, nH, nW)`` at the layer, ``T`` ``(R, C, C)`` the targets, ``weights`` ``w_r``
    (default ``1/R`` each), ``mass`` the ``M_r`` (default: the masks' own sums; an objective over
    tiles passes the whole image's). :func:`guided_grams`, :func:`guided_from_grams`,
    :func:`guided_backward` in a row.
    """
    R = masks.shape[0]
    weights = [1.0 / R] * R if weights is None else list(weights)
    mass = region_mass(masks) if mass is None else list(mass)
    J, dG = guided_from_grams(guided_grams(a, masks), T, mass, weights)
    return J, guided_backward(dG, a, masks)


def guided_at_blank(T: Array, weights: Sequence[float]) -> float:
    """:func:`guided_from_grams`'s ``J`` for a blank image (``G = 0``), ``sum_r w_r c ||T_r||^2``, a
    host float64: the layer's calibration scale in calibrated mode."""
    xp = get_xp(T)
    t = xp.asarray(T, dtype=xp.float64) * (0.5 / T.shape[-1])
    return float(sum(w * float(xp.sum(t[r] * t[r])) for r, w in enumerate(weights)))


# ---------------------------------------------------------------------------- an objective's regions
class RegionStatistic(StyleStatistic):
    """A style statistic per region (:mod:`numpynst.style_stats`'s interface): the Gram matrix
    (``kind="gram"``, the guided Gram above) or the mean and covariance (``kind="mean-cov"``), each
    measured with the positions weighted by a region's mask, normalised by the region's mass.

    Pieces (all sums over positions, so tiles stay exact):

    * gram: ``(G_r, M_r)``, ``G_r = sum_p m_rp a_p a_p^T`` ``(R, C, C)`` and ``M_r = sum_p m_rp`` ``(R,)``;
    * mean-cov: ``(s1_r, s2_r, M_r)``, ``s1_r = sum_p m_rp a_p`` ``(R, C)`` and ``s2_r = G_r``.

    The cost of the generated image is ``sum_r w_r J_r``, ``J_r`` the unguided statistic's cost of the
    region's normalised statistic (``G_r / M_r`` against the target mean outer product, with
    ``c = 1/(4 C^2)``; for mean-cov the Wasserstein-2 distance between the Gaussians of
    ``(s1_r / M_r, s2_r / M_r)`` and the target's, :func:`numpynst.losses.mean_cov_from_sums` with
    ``count = M_r``). The normaliser ``M_r`` is the whole image's (a constant of the mask, taken at
    construction), so the cost of the summed pieces needs no host sync. Through the weighting,
    position ``p``'s gradient is ``m_rp`` times the unweighted statistic's (``d/da_p`` of
    ``m_rp f(a_p)`` is ``m_rp f'(a_p)``): for the Gram :func:`guided_backward`, for mean-cov
    ``sum_r m_rp (ds1_r + (ds2_r + ds2_r^T) a_p)``.

    Args:
        kind: ``"gram"`` or ``"mean-cov"``.
        masks: ``(R, nH, nW)`` at the layer's grid, on the model's device (the measured image's).
        weights: ``w_r`` of the cost (the generated image's regions); for a style image's side
            (one region) it is not used.
        regional: the generated image's regions are the style images (``R`` styles, ``R`` masks); else
            one region and the styles' statistics are blended into one target (style masks only).
    """

    sums = True

    def __init__(self, kind: str, masks: Array, weights: Sequence[float], regional: bool = True):
        if kind not in ("gram", "mean-cov"):
            raise ValueError(f"kind must be gram or mean-cov, got {kind!r}")
        self.kind, self.name = kind, f"{kind} (masked)"
        self.masks, self.regional = masks, regional
        self.mass = region_mass(masks)
        self.weights = [w if m > 0 else 0.0 for w, m in zip(weights, self.mass)]

    def _m(self, where: Any) -> Array:
        return self.masks if where is None else self.masks[:, where[0], where[1]]

    def measure(self, a, where=None):
        xp = get_xp(a)
        m = self._m(where)
        G = guided_grams(a, m)
        mass = xp.sum(xp.asarray(m, dtype=a.dtype).reshape(m.shape[0], -1), axis=1)
        if self.kind == "gram":
            return G, mass
        A, _ = _matrix(a)
        return _flat_masks(m, a) @ A, G, mass

    def target(self, pieces, positions):
        """From each style image's pieces (one region each: its style mask, or all of it): region
        ``r``'s target is style ``r``'s normalised statistic; without regions, their blend (for
        mean-cov, the mixture of the styles' features, as the unguided statistic blends)."""
        xp = get_xp(pieces[0][0][0])
        means = []
        for piece, _, w in pieces:
            mass = float(piece[-1][0])
            if not mass > 0:
                raise ValueError("a style mask has no mass at this layer")
            means.append(tuple(p[0] / xp.asarray(mass, dtype=p.dtype) for p in piece[:-1]))
        if not self.regional:
            means = [tuple(sum(w * m[k] for (_, _, w), m in zip(pieces, means)) for k in range(len(means[0])))]
        if self.kind == "gram":
            return xp.stack([m[0] for m in means])
        return [mean_cov_target(m[0], m[1], 1.0) for m in means]

    def at_blank(self, target, positions):
        """The cost at a blank image (the calibration scale); 1 for a layer that no region reaches
        (eroded away: its cost is identically 0, and any positive scale leaves it 0)."""
        if not any(self.weights):
            return 1.0
        if self.kind == "gram":
            return guided_at_blank(target, self.weights)
        return float(sum(w * mean_cov_at_blank(t) for w, t in zip(self.weights, target) if w))

    def cost(self, sums, target, positions, weights=(), scale=1.0):
        if self.kind == "gram":
            J, dG = guided_from_grams(sums[0], target, self.mass, self.weights, weights, scale)
            return J, (dG,)
        s1, s2 = sums[0], sums[1]
        xp = get_xp(s1)
        factor = 1.0
        for f in weights:
            factor = factor * f
        J, d1, d2 = xp.zeros((), dtype=s1.dtype), xp.zeros_like(s1), xp.zeros_like(s2)
        for r, w in enumerate(self.weights):
            if not w:
                continue
            j, cache = mean_cov_from_sums(s1[r], s2[r], self.mass[r], target[r])
            g1, g2 = mean_cov_sums_backward(cache)
            J = J + w * j
            d1[r] = g1 * xp.asarray(w * factor / scale, dtype=g1.dtype)
            d2[r] = g2 * xp.asarray(w * factor / scale, dtype=g2.dtype)
        return J, (d1, d2)

    def backward(self, d, a, where=None):
        m = self._m(where)
        if self.kind == "gram":
            return guided_backward(d[0], a, m)
        xp = get_xp(a)
        mf = _flat_masks(m, a)
        A, _ = _matrix(a)
        out = None
        for r in range(mf.shape[0]):
            piece = (A @ (d[1][r] + d[1][r].T) + xp.asarray(d[0][r], dtype=a.dtype)) * mf[r][:, None]
            out = piece if out is None else out + piece
        return out.reshape(a.shape)

    def __repr__(self) -> str:
        return f"RegionStatistic({self.kind!r}, R={self.masks.shape[0]})"


class Guide:
    """The regions of an objective: the masks at every style layer and the statistics that carry
    them. :class:`numpynst.objective.Objective` holds one when masks are given, takes
    :attr:`statistics` as its own and measures style image ``i`` with :meth:`style_side`.

    Args:
        model: the VGG (its layer table gives each layer's reach and spacing, its dtype and device).
        layers: the style layers.
        masks: ``(R, H, W)`` in ``[0, 1]`` at the generated image's size, one region per style image;
            ``None``: one region, the whole picture (with ``style_masks`` only: each style image's
            statistic is taken from its masked part and the targets are blended as usual).
        style_masks: one ``(h, w)`` mask per style image at its size, or ``None`` (entries or all).
        hw: the generated image's ``(H, W)``.
        blend: the normalised blend weights of the style images (``w_r``; with ``masks`` the weight
            of region ``r``'s cost, else the weights of the blended target).
        mode: ``"resize"`` or ``"erode"`` (:func:`layer_masks`).
        style_loss: ``"gram"`` or ``"mean-cov"`` (``"swd"`` sorts all positions and is refused).

    Attributes: ``statistics`` ``{layer: RegionStatistic}``; ``absent`` ``[(region, layer)]``, the
    regions with no mass at a layer (their term is left out there).
    """

    def __init__(self, model, layers: Sequence[str], masks: Array | None, style_masks: Sequence[Any] | None,
                 hw: tuple[int, int], blend: Sequence[float], mode: str = DEFAULT_MASK_MODE,
                 style_loss: str = "gram"):
        import numpy as np
        if style_loss not in ("gram", "mean-cov"):
            raise OptionError(f"style_loss {style_loss} (--style-loss) does not take masks: its quantiles "
                              f"sort all positions, and mask-weighted quantiles are not implemented; use "
                              f"--style-loss gram or mean-cov with --masks/--style-masks")
        self.model, self.mode, self.blend, self.kind = model, mode, list(blend), style_loss
        n = len(self.blend)
        self.style_mask_list = [None] * n if style_masks is None else list(style_masks)
        if len(self.style_mask_list) != n or (masks is not None and len(masks) != n):
            raise OptionError(f"give one mask per style image: {n} style image(s), "
                              f"{len(masks) if masks is not None else n} mask(s), "
                              f"{len(self.style_mask_list)} style mask(s)")
        self.geometry = {name: (model.layer(name).reach, model.layer(name).spacing) for name in layers}
        regional = masks is not None
        host = np.asarray(to_host(masks), dtype=np.float64) if regional else np.ones((1, *hw))
        if tuple(host.shape[1:]) != tuple(hw):
            raise ValueError(f"masks must have shape ({n}, {hw[0]}, {hw[1]}), got {tuple(host.shape)}")
        per_layer = layer_masks(host, self.geometry, mode)
        self.absent = empty_regions(per_layer)
        weights = self.blend if regional else [1.0]
        self.statistics = {name: RegionStatistic(style_loss, self._device(m), weights, regional)
                           for name, m in per_layer.items()}

    def _device(self, m):
        return self.model.xp.asarray(m, dtype=self.model.dtype)

    def style_side(self, index: int) -> dict[str, RegionStatistic]:
        """``{layer: statistic}`` measuring style image ``index``: one region, its style mask at each
        layer (or the whole image). Built when asked (the style image's size is the mask's)."""
        import numpy as np
        mask = self.style_mask_list[index]
        if mask is None:
            return {name: _WholeImage(self.kind) for name in self.geometry}
        per_layer = layer_masks(np.asarray(to_host(mask), dtype=np.float64)[None], self.geometry, self.mode)
        return {name: RegionStatistic(self.kind, self._device(m), [1.0]) for name, m in per_layer.items()}


class _WholeImage(RegionStatistic):
    """A style image's side without a style mask: one region, every position weight 1 (no mask
    array is held: the pieces are the unweighted sums and the position count)."""

    def __init__(self, kind: str):
        self.kind, self.name, self.regional, self.weights = kind, f"{kind} (whole)", True, [1.0]

    def measure(self, a, where=None):
        xp = get_xp(a)
        A, _ = _matrix(a)
        G = (A.T @ A)[None]
        mass = xp.asarray([A.shape[0]], dtype=a.dtype)
        return (G, mass) if self.kind == "gram" else (A.sum(axis=0)[None], G, mass)
