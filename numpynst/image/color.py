"""Colour matching: the style image's colours moved to the photo's palette before the run.

Gatys, Bethge, Hertzmann & Shechtman (2016, "Preserving Color in Neural Artistic Style Transfer")
give two ways to keep a photo's colours. The first, luminance-only transfer after the run, is
:func:`numpynst.image.preserve_color` (``--color keep``). The second, here, changes the *style
image* before the run so that its colour statistics are the photo's (``--color match``): the
painting's strokes then arrive in the photo's palette, and the optimisation itself sees no colour
conflict between content and style.

**The map, derived.** Treat the pixels as samples of a random colour vector (RGB, 0..255). The style's
have mean ``mu_s`` and covariance ``C_s``, the photo's ``mu_c`` and ``C_c``. An affine map
``x' = A x + b`` gives the new pixels the mean ``A mu_s + b`` and the covariance ``A C_s A^T``. Asking
for the photo's statistics:

    A mu_s + b = mu_c                   =>  b = mu_c - A mu_s
    A C_s A^T = C_c                     =>  A = C_c^{1/2} Q C_s^{-1/2},  Q any orthogonal matrix

(check: ``C_c^{1/2} Q C_s^{-1/2} C_s C_s^{-1/2} Q^T C_c^{1/2} = C_c^{1/2} Q Q^T C_c^{1/2} = C_c``),
where ``S^{1/2}`` is any square root, ``S^{1/2} (S^{1/2})^T = S``. Taking ``Q = I``:

    x' = mu_c + C_c^{1/2} C_s^{-1/2} (x - mu_s)

**Which square root.** Two standard choices, both available (``method``):

* ``"eig"`` (default): the symmetric root from the eigendecomposition ``S = U diag(l) U^T``,
  ``S^{1/2} = U diag(sqrt(l)) U^T`` (Gatys et al.'s "image analogies" variant, the one they prefer).
  It does not depend on how the colour axes are ordered or rotated: for a permutation (or any
  orthogonal change of basis) ``P``, ``(P S P^T)^{1/2} = P S^{1/2} P^T``, so matching the images with
  their channels permuted gives the matched image with its channels permuted. The map treats R, G
  and B alike.
* ``"chol"``: the lower-triangular Cholesky factor ``L L^T = S``. Cheaper, but it privileges the
  first channel (R is mapped using R alone, G using R and G, ...): permuting the channels changes
  the result. Offered for comparison; the tests show both properties.

**Degenerate colours.** A style image of a single hue (a grey painting) has a singular ``C_s``;
``C_s^{-1/2}`` would divide by zero. The eigenvalues of ``C_s`` are floored at
:data:`EIGEN_FLOOR` (grey levels squared, about one level of standard deviation; the Cholesky
variant adds it to the diagonal): the map then stretches the style's flat directions by a bounded
amount, and the match is exact only where the style has colour variation to map.

**Regions.** With masks (spatial control) the statistics are weighted: ``mu = sum_i w_i x_i / sum_i w_i``
and ``C = sum_i w_i (x_i - mu)(x_i - mu)^T / sum_i w_i``, with the style's region weights on the style
side and the photo's on the photo side; the map is applied to every pixel of the style image.

``color_transform(style, content) -> (A, b)``, ``match_color(style, content) -> uint8``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import to_host
from ..errors import ImageError

__all__ = ["COLOR_METHODS", "EIGEN_FLOOR", "color_statistics", "color_transform", "match_color"]

COLOR_METHODS = ("eig", "chol")
#: Smallest eigenvalue of a colour covariance (grey levels^2) before it is inverted.
EIGEN_FLOOR = 1.0


def _pixels(rgb: Any, what: str) -> np.ndarray:
    arr = np.asarray(to_host(rgb), dtype=np.float64)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageError(f"match_color: the {what} image must have shape (H, W, 3), got {arr.shape}")
    return arr.reshape(-1, 3)


def color_statistics(rgb: Any, weights: Any = None, what: str = "image") -> tuple[np.ndarray, np.ndarray]:
    """``(mean (3,), covariance (3, 3))`` of an RGB image's pixels, float64, optionally weighted by
    ``weights`` ``(H, W)`` (>= 0, positive sum): the population (``1/N``) statistics."""
    x = _pixels(rgb, what)
    if weights is None:
        w = np.full(len(x), 1.0 / len(x))
    else:
        w = np.asarray(to_host(weights), dtype=np.float64).reshape(-1)
        if w.shape[0] != len(x) or not np.all(np.isfinite(w)) or w.min() < 0 or not w.sum() > 0:
            raise ImageError(f"match_color: the {what} weights must be {len(x)} values >= 0 with a "
                             f"positive sum")
        w = w / w.sum()
    mu = w @ x
    d = x - mu
    return mu, (d * w[:, None]).T @ d


def _sqrt_pair(S: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray]:
    """``(S^{1/2}, S^{-1/2})`` of a covariance; the inverse with the eigenvalues floored at
    :data:`EIGEN_FLOOR` (``"chol"``: the diagonal raised until they are, for both)."""
    if method == "eig":
        l, U = np.linalg.eigh((S + S.T) / 2)
        return (U * np.sqrt(np.maximum(l, 0.0))) @ U.T, (U / np.sqrt(np.maximum(l, EIGEN_FLOOR))) @ U.T
    if method == "chol":
        l_min = np.linalg.eigvalsh((S + S.T) / 2).min()
        L = np.linalg.cholesky(S + np.eye(3) * max(0.0, EIGEN_FLOOR - l_min))
        return L, np.linalg.inv(L)
    raise ValueError(f"method must be one of {', '.join(COLOR_METHODS)}, got {method!r}")


def color_transform(style_rgb: Any, content_rgb: Any, method: str = "eig", style_weights: Any = None,
                    content_weights: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """``(A (3, 3), b (3,))`` with ``x' = A x + b`` giving the style's pixels the content's colour
    mean and covariance: ``A = C_c^{1/2} C_s^{-1/2}``, ``b = mu_c - A mu_s`` (module docstring)."""
    mu_s, C_s = color_statistics(style_rgb, style_weights, "style")
    mu_c, C_c = color_statistics(content_rgb, content_weights, "content")
    root_c, _ = _sqrt_pair(C_c, method)
    _, inv_root_s = _sqrt_pair(C_s, method)
    A = root_c @ inv_root_s
    return A, mu_c - A @ mu_s


def match_color(style_rgb: Any, content_rgb: Any, method: str = "eig", style_weights: Any = None,
                content_weights: Any = None) -> np.ndarray:
    """The style image with the content's colour statistics: ``uint8 (H, W, 3)`` (the style's shape).

    Applies :func:`color_transform` to every pixel, then rounds and clips to 0..255 (a colour the
    map sends outside the cube is clipped, so the statistics of the result match the content's up
    to that clipping and the rounding). ``style_weights`` / ``content_weights``: ``(H, W)`` region
    weights of each image's statistics (masks), default uniform.
    """
    A, b = color_transform(style_rgb, content_rgb, method, style_weights, content_weights)
    style = np.asarray(to_host(style_rgb), dtype=np.float64)
    out = style @ A.T + b
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
