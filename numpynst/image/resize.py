"""Sizes, resizing and colour: every change of an image's shape, and the YIQ colour space.

The idea: one place decides how big a picture may be and how it is resampled. Sizes are pixels;
``size`` is the *longest side* (1..:data:`MAX_SIZE`), a ``shape`` is ``(H, W)``, and a resize
keeps the aspect ratio (rounded) unless an exact ``(H', W')`` is asked for. Resampling is
Lanczos (Pillow): ``uint8`` images stay ``uint8``; float images are resampled per channel in
float32 and come back in their own dtype, unclipped.

Colour: :func:`preserve_color` is the luminance-only transfer of Gatys et al. (2016), done in
YIQ (:data:`RGB_TO_YIQ`, rows Y, I, Q; a pixel is a column vector, arrays are ``(..., 3)`` and
are multiplied by the transposed matrix). Inputs may be NumPy or CuPy; results are NumPy.

``resize_image(rgb, size)`` (longest side), ``resize_to(rgb, (H, W))``,
``scaled_shape(shape, scale)``, ``round_to_multiple(shape, factor)``,
``preserve_color(content_rgb, stylized_rgb, match_luminance=False)``,
``rgb_to_yiq(rgb)``, ``yiq_to_rgb(yiq)``
"""

from __future__ import annotations

import operator
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ..backend import to_host
from ..errors import ImageError, OptionError

__all__ = [
    "MAX_SIZE", "resize_image", "resize_to", "scaled_shape", "round_to_multiple",
    "RGB_TO_YIQ", "YIQ_TO_RGB", "preserve_color", "rgb_to_yiq", "yiq_to_rgb",
]

#: Largest accepted ``size`` (longest side, pixels).
MAX_SIZE = 16384


# --------------------------------------------------------------------------------------------
# sizes
# --------------------------------------------------------------------------------------------

def _check_size(size: Any, name: str = "size") -> int:
    """``size`` as an int in 1..MAX_SIZE, else :class:`OptionError` naming ``name``."""
    if isinstance(size, bool):
        raise OptionError(f"{name} must be an integer number of pixels, got {size!r}")
    try:
        value = operator.index(size)
    except TypeError:
        if isinstance(size, float) and size.is_integer():
            value = int(size)
        else:
            raise OptionError(f"{name} must be an integer number of pixels, got {size!r}") from None
    if not 1 <= value <= MAX_SIZE:
        raise OptionError(f"{name} must be between 1 and {MAX_SIZE} pixels (longest side), "
                          f"got {value}")
    return value


def _fit_longest(height: int, width: int, size: int) -> tuple[int, int]:
    """(H, W) with the longest side equal to ``size`` and the aspect ratio kept (rounded)."""
    scale = size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def scaled_shape(shape: tuple[int, ...], scale: float, min_side: int = 16) -> tuple[int, int]:
    """``(H, W) * scale``, rounded, enlarged as a whole (aspect kept) so the short side is >= min_side."""
    h, w = shape[0] * scale, shape[1] * scale
    grow = max(1.0, min_side / min(h, w))
    return int(round(h * grow)), int(round(w * grow))


def grid_shapes(shape: tuple[int, ...], scales: Sequence[float], factor: int) -> list[tuple[int, int]]:
    """The ``(H, W)`` of each scale of a coarse-to-fine run: ``shape`` scaled (:func:`scaled_shape`),
    then rounded to a multiple of ``factor`` (:func:`round_to_multiple`, the pooling grid)."""
    return [round_to_multiple(scaled_shape(shape, s), factor) for s in scales]


def round_to_multiple(shape: tuple[int, int], factor: int) -> tuple[int, int]:
    """Each side rounded to the nearest multiple of ``factor`` (at least ``factor``)."""
    return tuple(max(factor, int(round(v / factor)) * factor) for v in shape)  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# resizing
# --------------------------------------------------------------------------------------------

def resize_image(rgb: np.ndarray, size: int) -> np.ndarray:
    """Resize ``rgb`` ``(H, W[, C])`` so its longest side is ``size`` px (aspect kept, Lanczos)."""
    size = _check_size(size)
    arr = to_host(rgb)
    return resize_to(arr, _fit_longest(arr.shape[0], arr.shape[1], size))


def resize_to(rgb: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize ``rgb`` ``(H, W[, C])`` to exactly ``shape = (H', W')`` with a Lanczos filter.

    ``uint8`` images stay ``uint8`` (Pillow's 8-bit resampler); float images are resampled per
    channel in float32 and returned in their own float dtype, unclipped (Lanczos overshoots a
    little at edges; clip when converting to uint8).
    """
    arr = to_host(rgb)
    if arr.ndim not in (2, 3) or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageError(f"expected an image array of shape (H, W) or (H, W, C), got {arr.shape}")
    th = _check_size(shape[0], "height")
    tw = _check_size(shape[1], "width")
    if (th, tw) == arr.shape[:2]:
        return arr.copy()
    if arr.dtype == np.uint8 and (arr.ndim == 2 or arr.shape[2] in (1, 3)):
        squeeze = arr.ndim == 3 and arr.shape[2] == 1
        src = arr[..., 0] if squeeze else arr
        out = np.array(Image.fromarray(np.ascontiguousarray(src)).resize(
            (tw, th), Image.Resampling.LANCZOS))
        return out[..., None] if squeeze else out
    if arr.dtype == np.uint8 or np.issubdtype(arr.dtype, np.integer):
        out_dtype, work = arr.dtype, arr.astype(np.float32)
    elif np.issubdtype(arr.dtype, np.floating):
        out_dtype, work = arr.dtype, arr.astype(np.float32, copy=False)
    else:
        raise ImageError(f"cannot resize an image array of dtype {arr.dtype}")
    planes = work[..., None] if work.ndim == 2 else work
    out = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(planes[..., c]), mode="F")
                               .resize((tw, th), Image.Resampling.LANCZOS))
                    for c in range(planes.shape[2])], axis=-1)
    if work.ndim == 2:
        out = out[..., 0]
    if np.issubdtype(out_dtype, np.integer):
        info = np.iinfo(out_dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(out_dtype)
    return out.astype(out_dtype, copy=False)


# --------------------------------------------------------------------------------------------
# colour preservation (Gatys et al. 2016, "Preserving color in neural artistic style transfer")
# --------------------------------------------------------------------------------------------

#: RGB -> YIQ (NTSC 1953). Row 0 is the luma Y (ITU-R BT.601 weights), rows 1-2 the chroma I, Q.
#: Applied to a pixel as a column vector: ``[Y, I, Q] = RGB_TO_YIQ @ [R, G, B]``.
RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114],
                       [0.595716, -0.274453, -0.321263],
                       [0.211456, -0.522591, 0.311135]])
#: Exact inverse of :data:`RGB_TO_YIQ` (computed, not the rounded textbook table, so
#: RGB -> YIQ -> RGB is the identity to machine precision).
YIQ_TO_RGB = np.linalg.inv(RGB_TO_YIQ)


def rgb_to_yiq(rgb: np.ndarray) -> np.ndarray:
    """``(..., 3)`` RGB (any scale) -> ``(..., 3)`` float64 YIQ on the same scale."""
    return np.asarray(to_host(rgb), dtype=np.float64) @ RGB_TO_YIQ.T


def yiq_to_rgb(yiq: np.ndarray) -> np.ndarray:
    """``(..., 3)`` YIQ -> ``(..., 3)`` float64 RGB (unclipped)."""
    return np.asarray(yiq, dtype=np.float64) @ YIQ_TO_RGB.T


def preserve_color(content_rgb: np.ndarray, stylized_rgb: np.ndarray,
                   match_luminance: bool = False) -> np.ndarray:
    """Keep the content's colours: luminance from ``stylized_rgb``, chroma from ``content_rgb``.

    This is the *luminance-only transfer* of Gatys, Bethge, Hertzmann & Shechtman (2016),
    applied after stylization: with ``[Y, I, Q] = M @ [R, G, B]`` (:data:`RGB_TO_YIQ`,
    ``Y = 0.299 R + 0.587 G + 0.114 B``),

        Y_out = Y_stylized,   (I, Q)_out = (I, Q)_content,   RGB_out = M^-1 @ [Y_out, I_out, Q_out]

    so the strokes and textures (carried by luminance) come from the stylization and the hues
    and saturation from the photograph.

    With ``match_luminance=True`` the stylized luminance is first affinely matched to the content
    luminance's mean and standard deviation, ``Y' = (Y_s - mu_s) * sigma_c / sigma_s + mu_c``
    (the paper does this to the style image before transfer; doing it here keeps the content's
    overall brightness and contrast). A constant Y_s (sigma_s = 0) is just shifted to mu_c.

    Shapes: ``(H, W, 3)`` each; if the content's (H, W) differs it is resized (Lanczos) to the
    stylized image's. Returns the dtype of ``stylized_rgb``: ``uint8`` is rounded and clipped to
    0..255; a float input gives a float result clipped to 0..255. Colours outside the RGB gamut
    are clipped, so where clipping happens the luminance is only approximately Y_out.
    """
    content = to_host(content_rgb)
    stylized = to_host(stylized_rgb)
    for name, arr in (("content", content), ("stylized", stylized)):
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise ImageError(f"preserve_color: {name} image must have shape (H, W, 3), "
                             f"got {arr.shape}")
    if content.shape[:2] != stylized.shape[:2]:
        content = resize_to(content, stylized.shape[:2])
    yiq_c = rgb_to_yiq(content)
    y_s = rgb_to_yiq(stylized)[..., 0]
    if match_luminance:
        mu_s, sd_s = y_s.mean(), y_s.std()
        mu_c, sd_c = yiq_c[..., 0].mean(), yiq_c[..., 0].std()
        y_s = (y_s - mu_s) * (sd_c / sd_s) + mu_c if sd_s > 0 else y_s - mu_s + mu_c
    out = yiq_to_rgb(np.concatenate([y_s[..., None], yiq_c[..., 1:]], axis=-1))
    out = np.clip(out, 0.0, 255.0)
    if stylized.dtype == np.uint8:
        return np.rint(out).astype(np.uint8)
    if np.issubdtype(stylized.dtype, np.floating):
        return out.astype(stylized.dtype, copy=False)
    return np.rint(out).astype(stylized.dtype)
