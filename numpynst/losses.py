"""The costs of neural style transfer, each returned with its gradient: the one home of each term.

Every cost takes activations (or an image) and returns ``(J, dJ/dinput)``:

* :func:`content_cost` — how far the generated image's activations are from the content image's;
* :func:`style_layer_cost` — how far the generated image's Gram matrix (feature correlations) is
  from the style image's, at one layer; :func:`style_from_gram` is the same cost from the Gram
  matrix alone (what exact tiles have), with :func:`style_constant` its normaliser and
  :func:`style_target` the rescaling of a style image's Gram matrix to the generated image's size;
* :func:`total_variation` (alias :func:`smoothness`) — a smoothness prior on the image itself: the
  mean *squared* difference of neighbouring pixels, a quadratic penalty, which the notes call
  "total variation" (TV) although total variation proper sums *absolute* differences (see there).
  :func:`smoothness_box` is its part owned by a box of pixels (a tile, a band, the whole image).

The objectives (:mod:`numpynst.objective`, :mod:`numpynst.tiled`) combine these terms with their
weights; the calibration scales are the costs at a blank image (:func:`content_at_blank`,
:func:`style_at_blank`, :func:`total_variation_value`).

Shapes. Activations are channels-last, ``(nH, nW, nC)`` or ``(1, nH, nW, nC)`` (the batch axis of
VGG's output); gradients come back in the shape of the argument they differentiate. ``J`` is a
0-d array of the inputs' array module and dtype, never a Python float: on CuPy ``float(J)`` waits
for the GPU, so the caller converts only when it logs.

Normalizations (those of Gatys et al. as popularized by the deeplearning.ai course): with
``n = nH * nW * nC``,

    J_content = 1/(4 n) * sum (a_C - a_G)^2
    J_style   = 1/(2 n)^2 * sum_kk' (G_S - G_G)^2,     G = A^T A,  A = a reshaped to (nH*nW, nC)

so each layer's cost is roughly independent of the layer's size, and the weights alpha, beta
that combine them (in :mod:`numpynst.objective`) keep their meaning across layers.

Everything works on NumPy and CuPy arrays, float32 and float64, and differentiates exactly (the
tests compare every gradient with central differences in float64).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

from .backend import get_xp
from .layers.fast.parallel import gram_rows, rows_product

Array = Any


def _hwc(a: Array, name: str) -> tuple[int, int, int]:
    """``(nH, nW, nC)`` of an activation shaped (nH, nW, nC) or (1, nH, nW, nC)."""
    shape = tuple(a.shape)
    if len(shape) == 4 and shape[0] == 1:
        return shape[1], shape[2], shape[3]
    if len(shape) == 3:
        return shape
    raise ValueError(f"{name} must have shape (nH, nW, nC) or (1, nH, nW, nC), got {shape}")


def _as_matrix(a: Array, nC: int) -> Array:
    """``a`` as the (nH*nW, nC) matrix A: a view (no copy) for contiguous activations."""
    return a.reshape(-1, nC)


def _scalar(xp, value: Array, dtype) -> Array:
    """A 0-d array of ``xp`` (NumPy reductions return NumPy scalars; wrap them, no sync on CuPy)."""
    return xp.asarray(value, dtype=dtype)


def gram_matrix(a: Array) -> Array:
    """Gram matrix of one layer's activations: the (nC, nC) matrix of channel correlations.

    With A the activations reshaped to (nH*nW, nC) (one row per pixel, one column per channel),

        G = A^T A,    G_kk' = sum_{i,j} a_ijk a_ijk'.

    G is symmetric positive semi-definite, and it forgets *where* features occur (it is invariant
    to any permutation of the pixels): that is why it captures texture/style but not layout.

    G is unnormalized: it **sums over pixels**, so its magnitude grows with the image's area. A
    style target G_S computed from a style image of a different size than the generated image must
    be rescaled by the ratio of pixel counts, ``G_S * (nH_G nW_G) / (nH_S nW_S)``, or the style
    weight silently depends on the style image's size. That rescaling is :func:`style_target`'s
    (the objectives apply it); :func:`style_layer_cost` takes G_S as given.

    Args:
        a: activations (nH, nW, nC) or (1, nH, nW, nC).

    Returns:
        G: (nC, nC), same array module and dtype as ``a``.
    """
    nC = _hwc(a, "a")[2]
    A = _as_matrix(a, nC)
    # A^T A on a transposed view (BLAS reads it transposed, nothing is copied; NumPy runs a product of
    # a matrix with its own transpose as syrk), in bands of rows on the convolutions' threads
    return gram_rows(A)


def gram_backward(dG: Array, a: Array) -> Array:
    """Backpropagate through :func:`gram_matrix`: ``dJ/da`` given ``dG = dJ/dG``.

    Derivation. G_kl = sum_p A_pk A_pl (p runs over pixels). An entry A_pm appears in row m of G
    (as A_pk with k = m) and in column m (as A_pl with l = m), so by the chain rule

        dJ/dA_pm = sum_l dG_ml A_pl + sum_k dG_km A_pk
                 = (A dG^T)_pm + (A dG)_pm,

    i.e. ``dJ/dA = A (dG + dG^T)`` — an (nH*nW, nC) x (nC, nC) product, reshaped back like ``a``.
    (When dG is symmetric, as for every cost of a Gram matrix against a symmetric target, this
    is 2 A dG; the general form costs one (nC, nC) addition more and is exact for any dG.)

    Args:
        dG: (nC, nC) gradient of the cost w.r.t. G.
        a: the activations G was computed from, (nH, nW, nC) or (1, nH, nW, nC).

    Returns:
        da: shaped like ``a``.
    """
    nC = _hwc(a, "a")[2]
    if tuple(dG.shape) != (nC, nC):
        raise ValueError(f"dG must have shape ({nC}, {nC}) for activations of shape "
                         f"{tuple(a.shape)}, got {tuple(dG.shape)}")
    A = _as_matrix(a, nC)
    xp = get_xp(A, dG)
    out = xp.empty(A.shape, dtype=xp.result_type(A, dG))
    return rows_product(A, dG + dG.T, out).reshape(a.shape)       # A (dG + dG^T), bands of rows


def content_cost(a_C: Array, a_G: Array) -> tuple[Array, Array]:
    """Content cost between the content image's and the generated image's activations.

        J = 1/(4 nH nW nC) * sum_{i,j,k} (a_C,ijk - a_G,ijk)^2

    Derivation. Each term depends on one entry of a_G:
    d/d(a_G,ijk) (a_C,ijk - a_G,ijk)^2 = -2 (a_C,ijk - a_G,ijk), hence

        dJ/da_G = (a_G - a_C) / (2 nH nW nC).

    Args:
        a_C: target activations, (nH, nW, nC) or (1, nH, nW, nC).
        a_G: activations of the generated image, same (nH, nW, nC); a leading batch axis of 1 may
            be present on either.

    Returns:
        ``(J, dJ/da_G)``: J a 0-d array, the gradient shaped like ``a_G``; dtype of ``a_G``.
    """
    xp = get_xp(a_C, a_G)
    hwc_C, hwc_G = _hwc(a_C, "a_C"), _hwc(a_G, "a_G")
    if hwc_C != hwc_G:
        raise ValueError(f"content_cost: a_C has shape {tuple(a_C.shape)} but a_G has shape "
                         f"{tuple(a_G.shape)}; they must match")
    nH, nW, nC = hwc_G
    n = nH * nW * nC
    # Cast the (constant) target, not the variable; a no-op when dtypes agree. reshape: the two may
    # differ only by the batch axis of 1.
    a_C = xp.asarray(a_C, dtype=a_G.dtype).reshape(a_G.shape)
    diff = a_G - a_C
    J = xp.sum(diff * diff) * (1.0 / (4.0 * n))
    diff *= 1.0 / (2.0 * n)  # reuse the buffer: diff becomes the gradient
    return _scalar(xp, J, a_G.dtype), diff


def content_at_blank(a_C: Array | Sequence[Array]) -> float:
    """:func:`content_cost` of the target ``a_C`` against a blank image (all activations 0),
    ``||a_C||^2 / (4 n)``, in float64 on the host: the content term's calibration scale.

    ``a_C`` may be given in pieces that together hold each of its entries once (tiles' interiors);
    only sums of squares are taken, copied to the host once per piece (construction time only).
    """
    pieces = list(a_C) if isinstance(a_C, (list, tuple)) else [a_C]
    xp = get_xp(*pieces)
    squares = sum(float(xp.sum(xp.asarray(p, dtype=xp.float64) ** 2)) for p in pieces)
    return squares / (4.0 * sum(int(p.size) for p in pieces))


def style_constant(n: int) -> float:
    """The style cost's normaliser ``k = 1 / (2 n)``, ``n = nH nW nC`` the size of the generated
    image's activation at the layer (the whole image's, for tiles): ``J_style = sum (k (G - G_S))^2``."""
    return 1.0 / (2.0 * n)


def style_from_gram(G: Array, G_S: Array, n: int, weights: Sequence[float] = (),
                    scale: float = 1.0) -> tuple[Array, Array]:
    """Style cost of one layer from the generated image's Gram matrix: ``(J, dJ/dG)``.

        J = sum_{k,k'} (k (G - G_S))_kk'^2,     k = style_constant(n) = 1/(2 n),  n = nH nW nC

    Derivation. Write D = G - G_S. Each term of the sum depends on one entry of G, and
    d/dG_kk' (k D_kk')^2 = 2 k (k D_kk'), so

        dJ/dG = 2 k (k D) = 2 k^2 (G - G_S).

    D is scaled by k before it is squared: the unscaled squares of Gram entries of large
    early-layer activations can approach float32's range; the scaled ones are O(J).

    The gradient comes back weighted: multiplied by each of ``weights`` and divided by ``scale``,
    i.e. ``dJ/dG`` of ``(w_1 w_2 ... / scale) J`` (an objective's ``beta lambda_l / s_l``). The
    factors are folded into the constant in that order, ``((2k w_1) w_2 ...) / scale``, before it
    touches the matrix: one (C, C) multiplication, and the same rounding whoever calls.

    Args:
        G: (C, C) Gram matrix of the generated image (of the whole image: tiles sum theirs first).
        G_S: (C, C) target (cast to G's dtype), already at the generated image's pixel count
            (:func:`style_target`).
        n: ``nH nW nC`` of the generated image's activation at this layer.
    Returns:
        ``(J, dJ/dG)``: J a 0-d array (unweighted), the gradient (C, C); dtype of ``G``. ``G`` is
        not modified.
    """
    xp = get_xp(G, G_S)
    if tuple(G.shape) != tuple(G_S.shape) or G.ndim != 2 or G.shape[0] != G.shape[1]:
        raise ValueError(f"style_from_gram: G has shape {tuple(G.shape)} and G_S {tuple(G_S.shape)}; "
                         f"both must be the same (C, C)")
    k = style_constant(n)
    E = G - xp.asarray(G_S, dtype=G.dtype)   # E = D = G - G_S
    E *= k                                   # E = k D
    J = xp.sum(E * E)
    factor = 2.0 * k
    for w in weights:
        factor = factor * w
    E *= factor / scale                      # E = 2 k^2 D (weighted) = dJ/dG
    return _scalar(xp, J, G.dtype), E


def style_at_blank(G_S: Array, n: int) -> float:
    """:func:`style_from_gram`'s ``J`` against a blank image (``G = 0``), ``||G_S||^2 / (2 n)^2``,
    in float64 on the host: a style layer's calibration scale (one device->host copy)."""
    xp = get_xp(G_S)
    g = xp.asarray(G_S, dtype=xp.float64) / (2.0 * n)
    return float(xp.sum(g * g))


def style_target(G: Array, generated_pixels: int, style_pixels: int, weight: float = 1.0) -> Array:
    """A style image's Gram matrix as a target for the generated image: ``G * (p_G / p_S) * weight``.

    ``G = A^T A`` sums over the style image's ``p_S = nH nW`` positions at the layer, the generated
    image's Gram over its own ``p_G``. Left alone, a style image twice as wide would double every
    target entry and silently change what the style weight means; rescaled by the ratio of the
    pixel counts, the target is what the style image would give at the generated image's size
    (andersbll/neural_artistic_style does the same). ``weight`` is the image's share in a blend of
    several style images (the targets of a blend are summed).

    Returns: (C, C), a new array in ``G``'s dtype.
    """
    xp = get_xp(G)
    return G * xp.asarray(generated_pixels / style_pixels * weight, dtype=G.dtype)


def style_layer_cost(G_S: Array, a_G: Array) -> tuple[Array, Array]:
    """Style cost of one layer: squared distance between the generated and the target Gram matrix.

        J = 1/(2 nH nW nC)^2 * sum_{k,k'} (G_S,kk' - G_G,kk')^2,    G_G = gram_matrix(a_G)

    with nH, nW, nC the sizes of ``a_G``. G_S must match the generated image's pixel count (see
    :func:`gram_matrix` on rescaling it).

    Derivation. With k = 1/(2 nH nW nC) (:func:`style_constant`), :func:`style_from_gram` gives
    ``dJ/dG_G = 2 k^2 (G_G - G_S)``, and through the Gram matrix (:func:`gram_backward`,
    dJ/dA = A (dG + dG^T))

        dJ/dA = 2 k^2 A (D + D^T) = 4 k^2 A (G_G - G_S)    (D = G_G - G_S is symmetric when G_S is).

    Args:
        G_S: (nC, nC) target Gram matrix (from the style image).
        a_G: activations of the generated image, (nH, nW, nC) or (1, nH, nW, nC).

    Returns:
        ``(J, dJ/da_G)``: J a 0-d array, the gradient shaped like ``a_G``; dtype of ``a_G``.
    """
    nH, nW, nC = _hwc(a_G, "a_G")
    if tuple(G_S.shape) != (nC, nC):
        raise ValueError(f"style_layer_cost: G_S has shape {tuple(G_S.shape)} but a_G has shape "
                         f"{tuple(a_G.shape)}; G_S must be ({nC}, {nC})")
    J, dG = style_from_gram(gram_matrix(a_G), G_S, nH * nW * nC)
    return J, gram_backward(dG, a_G)


def style_layer_cost_weighted(G_S: Array, a_G: Array, weight: float = 1.0,
                              out: Array | None = None) -> tuple[Array, Array]:
    """:func:`style_layer_cost` with its gradient multiplied by ``weight``, the lean way the
    objective runs it: ``(J, weight dJ/da_G)``, ``J`` unweighted.

    The same algebra in fewer passes over the activation (``P = nH nW`` positions, ``C`` channels):

    * ``G = A^T A``: NumPy computes a product of a matrix with its own transpose as a symmetric
      rank-k update (BLAS ``syrk``, half the products of a general ``A^T B``);
    * ``E = k (G - G_S)`` in ``G``'s own buffer, ``J = sum E^2`` (:func:`style_from_gram`: the
      ``(C, C)`` work);
    * the weight goes into the small matrix, not the big gradient: ``dJ/dA = A (dG + dG^T)`` with
      ``dG = 2 k E`` (:func:`gram_backward`), so ``weight dJ/dA = A M``,
      ``M = weight (dG + dG^T)`` (``C x C``), one product written straight into ``out``.

    So the activation is read twice (the two products) and the gradient written once, where the
    textbook path also reads and writes a ``P x C`` array to scale the gradient. Both products run
    in bands of rows on the threads of the convolutions' pool with BLAS at one thread
    (:func:`numpynst.layers.fast.parallel.gram_rows`, :func:`~numpynst.layers.fast.parallel.rows_product`):
    a multi-threaded BLAS call here would leave BLAS's own threads spinning into the next layer's
    pool. Rounding differs from ``weight * style_layer_cost(...)[1]`` only in the order of the
    sums (tests compare them in float64).

    Args:
        G_S, a_G: as :func:`style_layer_cost`.
        weight: the factor of the gradient (an objective's ``beta lambda_l / s_l``).
        out: a C-contiguous buffer shaped like ``a_G`` for the gradient (``None``: a new one in
            ``a_G``'s dtype). It must not be ``a_G``.
    """
    xp = get_xp(G_S, a_G)
    nH, nW, nC = _hwc(a_G, "a_G")
    if tuple(G_S.shape) != (nC, nC):
        raise ValueError(f"style_layer_cost: G_S has shape {tuple(G_S.shape)} but a_G has shape "
                         f"{tuple(a_G.shape)}; G_S must be ({nC}, {nC})")
    A = _as_matrix(a_G, nC)
    k = style_constant(nH * nW * nC)
    E = gram_rows(A)                             # G, symmetric rank-k (syrk), a new (C, C) array
    E -= xp.asarray(G_S, dtype=E.dtype)
    E *= k                                       # E = k (G - G_S)
    J = xp.sum(E * E)
    M = E + E.T                                  # dG + dG^T = 2 k (E + E^T)
    M *= 2.0 * k * weight
    if out is None:
        out = xp.empty(a_G.shape, dtype=a_G.dtype)
    elif tuple(out.shape) != tuple(a_G.shape) or not out.flags.c_contiguous:
        raise ValueError(f"style_layer_cost_weighted: out must be a C-contiguous array of shape "
                         f"{tuple(a_G.shape)}, got {tuple(out.shape)}")
    rows_product(A, M, _as_matrix(out, nC))
    return _scalar(xp, J, a_G.dtype), out


def total_variation(x: Array) -> tuple[Array, Array]:
    """Smoothness cost of an image, the notes' "total variation": the mean squared difference of
    neighbouring pixels, with its gradient.

        J = 1/(N H W C) * [ sum_{n,i,j,c} (x[n,i+1,j,c] - x[n,i,j,c])^2
                          + sum_{n,i,j,c} (x[n,i,j+1,c] - x[n,i,j,c])^2 ]

    **A name to read with care.** Total variation proper (Rudin, Osher & Fatemi 1992) sums the
    *absolute* differences (the L1 norm of the image gradient); it tolerates sharp edges and
    penalises only how much the image changes. This cost sums their *squares*: a quadratic
    smoothness penalty (the discrete Dirichlet energy), which penalises one big jump more than
    many small steps of the same total, so it blurs edges rather than keeping them. It is what
    the deeplearning.ai notes and most NST code call "TV", and the option is ``tv_weight``; the
    honest alias is :func:`smoothness`. The squares make J smooth everywhere, so gradient checks
    and L-BFGS see no kinks. Dividing by the number of entries N*H*W*C makes the cost a mean: its
    weight means the same at every image size (a sum would grow with the area while the content
    and style costs, normalized per layer, do not).

    Derivation. Let v = x[i+1] - x[i] along H (for every i with i+1 < H; likewise along W).
    v depends on x[i+1] with coefficient +1 and on x[i] with -1, so each squared difference
    contributes +2 v to dJ/dx[i+1] and -2 v to dJ/dx[i]. Summed over all differences:

        dJ/dx[i] = 2/(NHWC) * ( v[i-1] - v[i] )    (each term present only where it exists),

    the same along W. A constant image has J = 0 and gradient 0. The whole image is one box of
    :func:`smoothness_box`.

    Args:
        x: image (N, H, W, C) or (H, W, C).

    Returns:
        ``(J, dJ/dx)``: J a 0-d array, the gradient shaped like ``x``; dtype of ``x``.
    """
    if x.ndim not in (3, 4):
        raise ValueError(f"total_variation: x must have shape (N, H, W, C) or (H, W, C), "
                         f"got {tuple(x.shape)}")
    J, grad = smoothness_box(x, x.shape[-3], x.shape[-2], 1.0 / x.size)
    return _scalar(get_xp(x), J, x.dtype), grad


smoothness = total_variation   # the honest name: a quadratic smoothness penalty, not total variation


def box_slices(shape: Sequence[int], y0: int, y1: int, x0: int, x1: int) -> tuple[slice, slice]:
    """Rows and columns of the box of the interior ``[y0, y1) x [x0, x1)`` of an image of ``shape``
    (``(..., H, W, C)``): the interior plus one row below and one column right where the image has them.

    A box owns the differences ``x[i+1] - x[i]`` (each axis) whose first pixel ``i`` is in its
    interior; boxes whose interiors partition the image (tiles, bands of rows) own every
    difference exactly once, so their :func:`smoothness_box` parts add up to the whole image's.
    """
    H, W = shape[-3], shape[-2]
    return slice(y0, min(y1 + 1, H)), slice(x0, min(x1 + 1, W))


def box_differences(v: Array, h: int, w: int) -> tuple[Array, Array]:
    """``(dh, dw)``, the differences owned by the box ``v`` ``(..., h or h+1, w or w+1, C)``
    (:func:`box_slices`) whose interior is its first ``h`` rows and ``w`` columns: down from each
    interior pixel with a pixel below (``dh``) and right from each with a pixel to its right (``dw``)."""
    dh = v[..., 1:, :w, :] - v[..., :-1, :w, :]   # axis -3 is H, -2 is W in both layouts
    dw = v[..., :h, 1:, :] - v[..., :h, :-1, :]
    return dh, dw


def smoothness_box(v: Array, h: int, w: int, scale: float) -> tuple[Array, Array]:
    """The part of :func:`total_variation` owned by one box, with its gradient: ``(J_box, dJ/dv)``.

        J_box = scale * [ sum dh^2 + sum dw^2 ]          (dh, dw: :func:`box_differences`)

    with ``scale = 1/x.size`` of the *whole* image (so the boxes' parts add up to its mean), and
    ``dJ/dv`` the derivation of :func:`total_variation` restricted to the box's differences: each
    adds ``+2 scale d`` at its second pixel and ``-2 scale d`` at its first, which may be in the
    box's halo row/column (add the box's gradient into its place, :func:`box_slices`).

    Args:
        v: the box's pixels ``(N, h', w', C)`` or ``(h', w', C)``, ``h' = h`` or ``h + 1``
            (likewise ``w'``); ``h, w`` its interior; ``scale`` the normaliser.
    Returns:
        ``(J_box, dJ/dv)``: J_box an array scalar of ``v``'s module, the gradient shaped like ``v``.
    """
    xp = get_xp(v)
    dh, dw = box_differences(v, h, w)
    J = (xp.sum(dh * dh) + xp.sum(dw * dw)) * scale
    # Slice-wise += / -= (no fancy indexing): no duplicate-index scatter, identical on CuPy.
    grad = xp.zeros_like(v)
    grad[..., 1:, :w, :] += dh
    grad[..., :-1, :w, :] -= dh
    grad[..., :h, 1:, :] += dw
    grad[..., :h, :-1, :] -= dw
    grad *= 2.0 * scale
    return J, grad


def total_variation_value(x: Array, rows: int = 256) -> float:
    """:func:`total_variation`'s ``J`` alone, summed in float64 over bands of ``rows`` rows.

    The same sum as ``total_variation(x.astype(float64))[0]`` (up to the order of the float64
    additions) without its gradient or a float64 copy of ``x``: each band is a box
    (:func:`box_slices`: its rows plus the next one, for the differences that cross into the
    following band), converted and squared on its own, so the extra memory is a band, not four
    image-sized arrays. Used for the TV calibration scale, measured once on the content image,
    which at print size is 200 MB in float32.

    Args:
        x: image ``(N, H, W, C)`` or ``(H, W, C)``; ``rows`` the band height (>= 1).
    Returns: ``J`` as a host float (one device->host copy per band: construction time only).
    """
    if x.ndim not in (3, 4):
        raise ValueError(f"total_variation_value: x must have shape (N, H, W, C) or (H, W, C), "
                         f"got {tuple(x.shape)}")
    xp = get_xp(x)
    v = x if x.ndim == 4 else x[None]
    H, W, total = v.shape[1], v.shape[2], 0.0
    for r0 in range(0, H, rows):
        own = min(rows, H - r0)                   # rows whose differences this band owns
        band_rows, _ = box_slices(v.shape, r0, r0 + own, 0, W)
        dh, dw = box_differences(xp.asarray(v[:, band_rows], dtype=xp.float64), own, W)
        total += float(xp.sum(dh * dh)) + float(xp.sum(dw * dw))
    return total / x.size


# =============================================================================================
# Style statistics beyond the Gram matrix: mean and covariance (Wasserstein-2), sliced Wasserstein
# =============================================================================================
#
# The layer contract of these costs: ``J, cache = ..._cost(...)`` then ``grad = ..._backward(cache)``.
# Each is written twice over: from the activation ``a`` of the whole image (``mean_cov_cost``,
# ``swd_cost``), and, for mean and covariance, from its sums over positions (``mean_cov_from_sums``,
# what exact tiles have) with the per-position map back (``moments_backward``).

class SqrtmCache(NamedTuple):
    """What :func:`sqrtm_sym_backward` needs: the eigenvectors ``U`` and the square roots ``s`` of
    the (clamped) eigenvalues of the symmetric matrix, float64."""
    U: Any
    s: Any


#: Eigenvalues of a symmetric PSD matrix below 0 are rounding (``eigh`` of a PSD matrix may return
#: ``-1e-17 l_max``): they are clamped to 0. Denominators ``s_i + s_j`` of the square root's
#: backward are kept above ``SQRT_FLOOR * s_max``: active only where both eigenvalues are below
#: ``1e-16 l_max / 4``, i.e. at the level of float64 rounding, where the true slope is infinite.
#: It bounds the gradient's entries by ``1e8 / s_max``, so that rounding of order 1e-16 in the
#: eigenvectors cannot leak more than 1e-8 of that into the other directions.
SQRT_FLOOR = 1e-8


def sqrtm_sym(M: Array) -> tuple[Array, SqrtmCache]:
    """The square root ``Y = M^(1/2)`` of a symmetric positive semi-definite ``(C, C)`` matrix.

    With the symmetric eigendecomposition ``M = U diag(l) U^T`` (``U`` orthogonal),
    ``Y = U diag(sqrt(l)) U^T``: symmetric PSD with ``Y Y = M``. ``M`` is symmetrised first
    (``(M + M^T) / 2``, so that rounding in its construction cannot give complex eigenvalues) and
    the decomposition is taken in float64 whatever the dtype (a ``C x C`` matrix: cheap), on
    ``M``'s device. Eigenvalues below 0 (rounding) are clamped to 0.

    Returns ``(Y, cache)``: ``Y`` float64, the cache for :func:`sqrtm_sym_backward`.
    """
    xp = get_xp(M)
    M = xp.asarray(M, dtype=xp.float64)
    lam, U = xp.linalg.eigh((M + M.T) * 0.5)
    s = xp.sqrt(xp.maximum(lam, 0.0))
    return (U * s) @ U.T, SqrtmCache(U, s)


def sqrtm_sym_backward(dY: Array, cache: SqrtmCache) -> Array:
    """``dJ/dM`` from ``dY = dJ/dY`` through :func:`sqrtm_sym` (``Y = M^(1/2)``).

    Derivation. Differentiate ``Y Y = M``: ``dY Y + Y dY = dM``, a Sylvester equation for ``dY``.
    In the eigenbasis (``Y = U diag(s) U^T``, ``s = sqrt(l)``), with ``B = U^T dY U`` and
    ``E = U^T dM U``, it reads ``B_ij s_j + s_i B_ij = E_ij``, elementwise:

        B_ij = E_ij / (s_i + s_j).

    So the differential is the linear map ``dM -> U ((U^T dM U) o K) U^T``, ``K_ij = 1/(s_i + s_j)``
    (``o`` elementwise). Its adjoint gives the gradient: for ``J(Y)``,
    ``dJ = <dY_J, U ((U^T dM U) o K) U^T> = <U ((U^T dY_J U) o K) U^T, dM>`` (K is symmetric), and
    since the forward reads ``(M + M^T)/2``, the gradient with respect to the entries of ``M`` is

        dJ/dM = U ((U^T sym(dY) U) o K) U^T,     sym(dY) = (dY + dY^T) / 2.

    **Near-equal eigenvalues** cause no trouble here: only sums ``s_i + s_j`` appear, never
    differences ``l_i - l_j`` (the eigenvectors' own derivative has those, but the square root as
    a whole is a smooth function of ``M`` wherever ``M`` is positive definite, whatever basis
    ``eigh`` picks inside a repeated eigenspace: the formula gives the same matrix for any such
    basis). **Zero eigenvalues** are where the square root is not differentiable (``sqrt`` has an
    infinite slope at 0): ``s_i + s_j`` is kept above ``SQRT_FLOOR * max(s)`` so the result stays
    finite; callers that need a true gradient there regularise ``M`` (the Wasserstein cost adds a
    ridge to both covariances, :func:`mean_cov_target`).

    Returns: ``(C, C)`` float64.
    """
    xp = get_xp(dY)
    U, s = cache
    dY = xp.asarray(dY, dtype=xp.float64)
    # the floor stays on the device (no float(): no sync inside the loop); 0 only for M = 0
    denom = xp.maximum(s[:, None] + s[None, :], SQRT_FLOOR * xp.max(s))
    B = U.T @ ((dY + dY.T) * 0.5) @ U
    return U @ (B / denom) @ U.T


#: The ridge added to both covariances of the Wasserstein-2 cost, relative to the style's mean
#: variance ``tr(S_s) / C``: ``S + eps I``. It keeps ``(S_s^1/2 S_x S_s^1/2)^1/2`` differentiable
#: when the generated image has dead channels (a ReLU layer's covariance is often singular), at a
#: change of the loss of order ``COV_RIDGE`` relative.
COV_RIDGE = 1e-4


class MeanCovTarget(NamedTuple):
    """The style side of the Wasserstein-2 cost, computed once (:func:`mean_cov_target`), float64:
    the mean ``mu`` ``(C,)``, the covariance ``S`` ``(C, C)`` with its ridge, its square root ``R``,
    ``tr(S)``, and the ridge ``eps`` (added to the generated image's covariance too)."""
    mu: Any
    S: Any
    R: Any
    trace: Any
    eps: float


def moments(a: Array) -> tuple[Array, Array]:
    """``(s1, s2) = (sum_p a_p, sum_p a_p a_p^T)`` over the positions of ``a`` ``(..., nH, nW, C)``:
    the sums that the mean and the covariance are made of (``s2`` is the Gram matrix)."""
    nC = a.shape[-1]
    A = a.reshape(-1, nC)
    return A.sum(axis=0), gram_rows(A)


def mean_cov_target(s1: Array, s2: Array, count: float) -> MeanCovTarget:
    """The target of :func:`mean_cov_cost` from a style image's sums (:func:`moments`) over
    ``count`` positions: ``mu_s = s1 / count``, ``S_s = s2 / count - mu_s mu_s^T + eps I``
    (``eps = COV_RIDGE tr(S_s) / C``), ``R = S_s^(1/2)`` (:func:`sqrtm_sym`) and ``tr(S_s)``.

    A blend of several style images is the mixture of their features: pass the blended moments
    ``sum_i w_i s1_i / p_i``, ``sum_i w_i s2_i / p_i`` with ``count = 1``."""
    xp = get_xp(s1, s2)
    mu = xp.asarray(s1, dtype=xp.float64) / count
    S = xp.asarray(s2, dtype=xp.float64) / count - xp.outer(mu, mu)
    S = (S + S.T) * 0.5
    C = S.shape[0]
    eps = COV_RIDGE * max(float(xp.trace(S)) / C, 0.0)
    if eps == 0.0:
        eps = COV_RIDGE                        # an all-constant style layer: any positive ridge
    S = S + eps * xp.eye(C)
    R, _ = sqrtm_sym(S)
    return MeanCovTarget(mu, S, R, xp.trace(S), eps)


class MeanCovCache(NamedTuple):
    """What :func:`mean_cov_sums_backward` needs (float64 except ``dtype``)."""
    mu: Any
    d_mu: Any
    R: Any
    sq: SqrtmCache
    count: float
    dtype: Any


def mean_cov_from_sums(s1: Array, s2: Array, count: float, target: MeanCovTarget) -> tuple[Array, MeanCovCache]:
    """Squared Wasserstein-2 distance between Gaussians fitted to the generated features (from
    their sums over ``count`` positions) and the style's: ``(J, cache)``.

        mu = s1 / N,   S = s2 / N - mu mu^T + eps I                       (N = count)
        J = |mu - mu_s|^2 + tr(S) + tr(S_s) - 2 tr((R S R)^(1/2)),       R = S_s^(1/2)

    the closed form of ``W2^2(N(mu, S), N(mu_s, S_s))`` (Dowson & Landau 1982; Givens & Shortt
    1984). ``R S R`` is symmetric PSD and similar to ``S_s S``, so the trace term is
    ``tr((S_s S)^(1/2))``, symmetric in the two covariances. The style side (``mu_s, S_s, R``) is
    :func:`mean_cov_target`'s, computed once. Everything is computed in float64 (``C x C``
    matrices: the cost is negligible beside VGG); ``J`` comes back in ``s1``'s dtype.
    """
    xp = get_xp(s1, s2)
    mu = xp.asarray(s1, dtype=xp.float64) / count
    S = xp.asarray(s2, dtype=xp.float64) / count - xp.outer(mu, mu) + target.eps * xp.eye(mu.shape[0])
    Y, sq = sqrtm_sym(target.R @ S @ target.R)
    d_mu = mu - target.mu
    J = d_mu @ d_mu + xp.trace(S) + target.trace - 2.0 * xp.sum(sq.s)
    return _scalar(xp, J, s1.dtype), MeanCovCache(mu, d_mu, target.R, sq, count, s1.dtype)


def mean_cov_sums_backward(cache: MeanCovCache) -> tuple[Array, Array]:
    """``(dJ/ds1, dJ/ds2)`` of :func:`mean_cov_from_sums`, in the sums' dtype.

    Derivation. With ``M = R S R`` and ``Y = M^(1/2)``, the trace term ``-2 tr(Y)`` has
    ``dJ/dY = -2 I``; through the square root (:func:`sqrtm_sym_backward`) ``dJ/dM = -U diag(1/s) U^T``
    (``= -M^(-1/2)``: with ``dY`` a multiple of ``I`` only the diagonal ``1/(2 s_i)`` survives), and
    through ``M = R S R`` (``R`` symmetric, constant) ``dJ/dS = I + R (dJ/dM) R`` (the ``I`` from
    ``tr(S)``). ``D = dJ/dS`` is symmetric. Then through ``S = s2/N - mu mu^T`` and
    ``mu = s1/N``: ``dJ/ds2 = D / N`` and, collecting both paths into ``mu``,

        dJ/dmu = 2 (mu - mu_s) - (D + D^T) mu = 2 (mu - mu_s) - 2 D mu,     dJ/ds1 = dJ/dmu / N.
    """
    xp = get_xp(cache.mu)
    C = cache.mu.shape[0]
    dM = sqrtm_sym_backward(-2.0 * xp.eye(C), cache.sq)
    D = xp.eye(C) + cache.R @ dM @ cache.R
    d_mu = 2.0 * cache.d_mu - 2.0 * (D @ cache.mu)
    return (xp.asarray(d_mu / cache.count, dtype=cache.dtype),
            xp.asarray(D / cache.count, dtype=cache.dtype))


def moments_backward(ds1: Array, ds2: Array, a: Array) -> Array:
    """``dJ/da`` from ``(dJ/ds1, dJ/ds2)`` through :func:`moments` (per position).

    Position ``p`` enters ``s1`` as ``a_p`` and ``s2`` as ``a_p a_p^T``, so (as :func:`gram_backward`)

        dJ/da_p = ds1 + (ds2 + ds2^T) a_p.

    Only ``a_p`` and the global ``(ds1, ds2)`` are needed: a tile maps its own positions.
    """
    nC = a.shape[-1]
    A = a.reshape(-1, nC)
    xp = get_xp(a)
    out = rows_product(A, ds2 + ds2.T, xp.empty(A.shape, dtype=xp.result_type(A, ds2)))
    out += xp.asarray(ds1, dtype=a.dtype)
    return out.reshape(a.shape)


def mean_cov_cost(a: Array, target: MeanCovTarget) -> tuple[Array, tuple]:
    """:func:`mean_cov_from_sums` of one whole activation ``a`` ``(nH, nW, C)`` or ``(1, nH, nW, C)``:
    ``(J, cache)``; :func:`mean_cov_backward` gives ``dJ/da``."""
    nH, nW, nC = _hwc(a, "a")
    s1, s2 = moments(a)
    J, cache = mean_cov_from_sums(s1, s2, nH * nW, target)
    return J, (cache, a)


def mean_cov_backward(cache: tuple) -> Array:
    """``dJ/da`` of :func:`mean_cov_cost` (:func:`mean_cov_sums_backward`, then :func:`moments_backward`)."""
    c, a = cache
    return moments_backward(*mean_cov_sums_backward(c), a)


def mean_cov_at_blank(target: MeanCovTarget) -> float:
    """:func:`mean_cov_from_sums`'s ``J`` for a blank image (all activations 0: ``mu = 0``,
    ``S = eps I``): ``|mu_s|^2 + tr(S) + tr(S_s) - 2 tr((eps S_s)^(1/2))``, which is
    ``|mu_s|^2 + tr(S_s)`` (the style features' mean squared norm, ``E_s |a|^2``) up to the ridge:
    the last term is at most ``2 sqrt(eps C tr(S_s)) = 2 sqrt(COV_RIDGE) tr(S_s)``, 2% of it.
    Float64 on the host: the layer's calibration scale."""
    xp = get_xp(target.mu)
    C = target.mu.shape[0]
    lam = xp.maximum(xp.linalg.eigvalsh(target.S), 0.0)
    value = target.mu @ target.mu + C * target.eps + target.trace - 2.0 * xp.sum(xp.sqrt(target.eps * lam))
    return float(value)


# ---------------------------------------------------------------------------- sliced Wasserstein
def quantiles(values: Sequence[Array], weights: Sequence[float], n: int) -> Array:
    """The quantile function of a weighted mixture of samples, read at ``n`` evenly spaced levels.

    ``values[i]`` ``(P_i, K)``: ``P_i`` samples of ``K`` one-dimensional distributions (one per
    column: the projections of style image ``i`` on ``K`` directions); sample ``j`` of image ``i``
    has mass ``weights[i] / P_i``. Returns ``(n, K)``: column ``k`` holds the quantiles at the
    levels ``t_r = (r + 1/2) / n``, ``r = 0 .. n-1``.

    Derivation (quantile matching). A set of ``n`` generated values ``x`` sorted as ``x_(r)`` is
    the quantile function ``F_x^-1(t) = x_(r)`` on ``[r/n, (r+1)/n)``. The squared 1-D
    Wasserstein-2 distance is ``int_0^1 (F_x^-1(t) - F_s^-1(t))^2 dt``; on each of those intervals
    ``F_s^-1`` is replaced by its value at the midpoint ``t_r``, giving
    ``(1/n) sum_r (x_(r) - q_r)^2`` with ``q_r = F_s^-1(t_r)``. The style's samples, sorted, sit
    at the midpoints of their own masses (cumulative mass minus half their own); ``F_s^-1(t_r)``
    is the linear interpolation between them (clamped at the ends). When the two sets have the
    same size and one image, ``q_r`` is exactly the ``r``-th sorted style value and the formula is
    the plain "sort both and compare" of Heitz et al. (2021).
    """
    xp = get_xp(*values)
    if len(values) == 1 and values[0].shape[0] == n:       # same size: exactly the sorted values
        return xp.sort(xp.asarray(values[0], dtype=xp.float64), axis=0)
    V = xp.concatenate([xp.asarray(v, dtype=xp.float64) for v in values], axis=0)
    mass = xp.concatenate([xp.full((v.shape[0],), w / v.shape[0], dtype=xp.float64)
                           for v, w in zip(values, weights)])
    mass = mass / xp.sum(mass)
    levels = (xp.arange(n, dtype=xp.float64) + 0.5) / n
    out = xp.empty((n, V.shape[1]), dtype=xp.float64)
    for k in range(V.shape[1]):                    # construction time only (once per run)
        order = xp.argsort(V[:, k])
        m = mass[order]
        mid = xp.cumsum(m) - 0.5 * m
        out[:, k] = xp.interp(levels, mid, V[order, k])
    return out


class SwdCache(NamedTuple):
    """What :func:`swd_backward` needs."""
    order: Any
    diff: Any
    V: Any
    shape: tuple


def swd_cost(a: Array, V: Array, Q: Array) -> tuple[Array, SwdCache]:
    """Sliced Wasserstein cost of one activation ``a`` ``(nH, nW, C)`` or ``(1, nH, nW, C)``:
    ``(J, cache)``.

        X = A V              (P x K: each position projected on K unit directions, the columns of V)
        J = 1/(P K) sum_k sum_r (X_(r)k - Q_rk)^2

    ``X_(r)k`` is column ``k`` sorted ascending, ``Q`` ``(P, K)`` the style's quantiles at the
    ``P`` levels of :func:`quantiles` (computed once). Each column's term is the squared 1-D
    Wasserstein-2 distance between the generated and the style's projections on that direction;
    averaged over random directions it estimates the sliced Wasserstein distance of the two feature
    distributions (Rabin et al. 2011; Heitz et al. 2021).
    """
    nH, nW, nC = _hwc(a, "a")
    P, K = nH * nW, V.shape[1]
    if tuple(Q.shape) != (P, K) or V.shape[0] != nC:
        raise ValueError(f"swd_cost: a has {P} positions x {nC} channels, V {tuple(V.shape)} and "
                         f"Q {tuple(Q.shape)}; V must be ({nC}, K) and Q ({P}, K)")
    xp = get_xp(a)
    X = rows_product(a.reshape(P, nC), V, xp.empty((P, K), dtype=xp.result_type(a, V)))
    order = xp.argsort(X, axis=0)
    diff = xp.take_along_axis(X, order, axis=0) - Q
    J = xp.sum(diff * diff) * (1.0 / (P * K))
    return _scalar(xp, J, a.dtype), SwdCache(order, diff, V, tuple(a.shape))


def swd_backward(cache: SwdCache) -> Array:
    """``dJ/da`` of :func:`swd_cost`.

    Derivation. Sorting permutes: ``X_(r)k = X_(order_rk) k``, a selection of entries, so (away
    from ties, a set of measure zero) ``dJ/dX_(order_rk) k = dJ/dX_(r)k = 2 (X_(r)k - Q_rk) / (P K)``:
    the gradient of the sorted column is scattered back through the same permutation (each entry
    written once: no duplicate indices). Then ``X = A V`` gives ``dJ/dA = (dJ/dX) V^T``.
    """
    xp = get_xp(cache.diff)
    P, K = cache.diff.shape
    dX = xp.empty_like(cache.diff)
    dX[cache.order, xp.arange(K)[None, :]] = cache.diff * (2.0 / (P * K))
    V = cache.V
    return rows_product(dX, V.T, xp.empty((P, V.shape[0]), dtype=xp.result_type(dX, V))).reshape(cache.shape)


def swd_at_blank(Q: Array) -> float:
    """:func:`swd_cost`'s ``J`` for a blank image (every projection 0): ``mean(Q^2)``, the style's
    mean squared projection ``(1/K) sum_k v_k^T E_s[a a^T] v_k``. Float64 on the host."""
    xp = get_xp(Q)
    q = xp.asarray(Q, dtype=xp.float64)
    return float(xp.mean(q * q))
