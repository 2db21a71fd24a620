"""The costs of neural style transfer, each returned with its gradient.

Every cost takes activations (or an image) and returns ``(J, dJ/dinput)``:

* :func:`content_cost` — how far the generated image's activations are from the content image's;
* :func:`style_layer_cost` — how far the generated image's Gram matrix (feature correlations) is
  from the style image's, at one layer;
* :func:`total_variation` — a smoothness prior on the image itself.

Shapes. Activations are channels-last, ``(nH, nW, nC)`` or ``(1, nH, nW, nC)`` (the batch axis of
VGG's output); gradients come back in the shape of the argument they differentiate. ``J`` is a
0-d array of the inputs' array module and dtype, never a Python float: on CuPy ``float(J)`` waits
for the GPU, so the caller converts only when it logs.

Normalizations (those of Gatys et al. as popularized by the deeplearning.ai course): with
``n = nH * nW * nC``,

    J_content = 1/(4 n) * sum (a_C - a_G)^2
    J_style   = 1/(2 n)^2 * sum_kk' (G_S - G_G)^2,     G = A^T A,  A = a reshaped to (nH*nW, nC)

so each layer's cost is roughly independent of the layer's size, and the weights alpha, beta
that combine them (in transfer.py) keep their meaning across layers.

Everything works on NumPy and CuPy arrays, float32 and float64, and differentiates exactly (the
tests compare every gradient with central differences in float64).
"""

from __future__ import annotations

from typing import Any

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
    weight silently depends on the style image's size. That rescaling is the caller's job
    (transfer.py); :func:`style_layer_cost` takes G_S as given.

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


def style_layer_cost(G_S: Array, a_G: Array) -> tuple[Array, Array]:
    """Style cost of one layer: squared distance between the generated and the target Gram matrix.

        J = 1/(2 nH nW nC)^2 * sum_{k,k'} (G_S,kk' - G_G,kk')^2,    G_G = gram_matrix(a_G)

    with nH, nW, nC the sizes of ``a_G``. G_S must match the generated image's pixel count (see
    :func:`gram_matrix` on rescaling it).

    Derivation. Write c = 1/(2 nH nW nC)^2 and D = G_G - G_S. Each term of the sum depends on one
    entry of G_G, so

        dJ/dG_G = 2 c D,

    and through the Gram matrix (:func:`gram_backward`, dJ/dA = A (dG + dG^T))

        dJ/dA = 2 c A (D + D^T) = 4 c A (G_G - G_S)    (D is symmetric when G_S is).

    Numerically, D is scaled by k = 1/(2 nH nW nC) before it is squared: J = sum (k D)^2 and
    dJ/dG_G = 2 k (k D). The unscaled squares of Gram entries of large early-layer activations
    can approach float32's range; the scaled ones are O(J).

    Args:
        G_S: (nC, nC) target Gram matrix (from the style image).
        a_G: activations of the generated image, (nH, nW, nC) or (1, nH, nW, nC).

    Returns:
        ``(J, dJ/da_G)``: J a 0-d array, the gradient shaped like ``a_G``; dtype of ``a_G``.
    """
    xp = get_xp(G_S, a_G)
    nH, nW, nC = _hwc(a_G, "a_G")
    if tuple(G_S.shape) != (nC, nC):
        raise ValueError(f"style_layer_cost: G_S has shape {tuple(G_S.shape)} but a_G has shape "
                         f"{tuple(a_G.shape)}; G_S must be ({nC}, {nC})")
    k = 1.0 / (2.0 * nH * nW * nC)
    E = gram_matrix(a_G)
    E -= xp.asarray(G_S, dtype=a_G.dtype)  # E = D = G_G - G_S, in G_G's buffer
    E *= k                                 # E = k D
    J = xp.sum(E * E)
    E *= 2.0 * k                           # E = 2 k^2 D = dJ/dG_G
    return _scalar(xp, J, a_G.dtype), gram_backward(E, a_G)


def total_variation(x: Array) -> tuple[Array, Array]:
    """Total-variation smoothness cost of an image (squared differences), with its gradient.

        J = 1/(N H W C) * [ sum_{n,i,j,c} (x[n,i+1,j,c] - x[n,i,j,c])^2
                          + sum_{n,i,j,c} (x[n,i,j+1,c] - x[n,i,j,c])^2 ]

    The squared (not absolute) differences make J smooth everywhere, so gradient checks and
    L-BFGS see no kinks. Dividing by the number of entries N*H*W*C makes the cost a mean: its
    weight means the same at every image size (a sum would grow with the area while the content
    and style costs, normalized per layer, do not).

    Derivation. Let v = x[i+1] - x[i] along H (for every i with i+1 < H; likewise along W).
    v depends on x[i+1] with coefficient +1 and on x[i] with -1, so each squared difference
    contributes +2 v to dJ/dx[i+1] and -2 v to dJ/dx[i]. Summed over all differences:

        dJ/dx[i] = 2/(NHWC) * ( v[i-1] - v[i] )    (each term present only where it exists),

    the same along W. A constant image has J = 0 and gradient 0.

    Args:
        x: image (N, H, W, C) or (H, W, C).

    Returns:
        ``(J, dJ/dx)``: J a 0-d array, the gradient shaped like ``x``; dtype of ``x``.
    """
    if x.ndim not in (3, 4):
        raise ValueError(f"total_variation: x must have shape (N, H, W, C) or (H, W, C), "
                         f"got {tuple(x.shape)}")
    xp = get_xp(x)
    scale = 1.0 / x.size
    dh = x[..., 1:, :, :] - x[..., :-1, :, :]   # axis -3 is H, -2 is W in both layouts
    dw = x[..., :, 1:, :] - x[..., :, :-1, :]
    J = (xp.sum(dh * dh) + xp.sum(dw * dw)) * scale
    # Slice-wise += / -= (no fancy indexing): no duplicate-index scatter, identical on CuPy.
    grad = xp.zeros_like(x)
    grad[..., 1:, :, :] += dh
    grad[..., :-1, :, :] -= dh
    grad[..., :, 1:, :] += dw
    grad[..., :, :-1, :] -= dw
    grad *= 2.0 * scale
    return _scalar(xp, J, x.dtype), grad


def total_variation_value(x: Array, rows: int = 256) -> float:
    """:func:`total_variation`'s ``J`` alone, summed in float64 over bands of ``rows`` rows.

    The same sum as ``total_variation(x.astype(float64))[0]`` (up to the order of the float64
    additions) without its gradient or a float64 copy of ``x``: each band of rows (plus the next
    row, for the differences that cross into the following band) is converted and squared on its
    own, so the extra memory is a band, not four image-sized arrays. Used for the TV calibration
    scale, measured once on the content image, which at print size is 200 MB in float32.

    Args:
        x: image ``(N, H, W, C)`` or ``(H, W, C)``; ``rows`` the band height (>= 1).
    Returns: ``J`` as a host float (one device->host copy per band: construction time only).
    """
    if x.ndim not in (3, 4):
        raise ValueError(f"total_variation_value: x must have shape (N, H, W, C) or (H, W, C), "
                         f"got {tuple(x.shape)}")
    xp = get_xp(x)
    v = x if x.ndim == 4 else x[None]
    H, total = v.shape[1], 0.0
    for r0 in range(0, H, rows):
        band = xp.asarray(v[:, r0:min(H, r0 + rows + 1)], dtype=xp.float64)   # one row of overlap
        own = min(rows, H - r0)                   # rows whose differences this band owns
        dh = band[:, 1:] - band[:, :-1]           # own differences down (own - 1 in the last band)
        dw = band[:, :own, 1:] - band[:, :own, :-1]
        total += float(xp.sum(dh * dh)) + float(xp.sum(dw * dw))
    return total / x.size
