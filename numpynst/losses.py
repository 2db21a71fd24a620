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

from typing import Any, Sequence

from .backend import get_xp

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
    return A.T @ A  # matmul on a transposed view: BLAS reads it transposed, nothing is copied


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
    return (A @ (dG + dG.T)).reshape(a.shape)


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
