"""Masks for spatial control: greyscale pictures saying where each style applies, as ``[0, 1]`` floats.

A mask is given per style image: a file (any format :func:`~numpynst.image.load_image` reads) or,
in Python, an array. White (1) is "this style here", black (0) "not here", grey a blend (a soft
edge). Files and arrays become float32 ``(H, W)`` in ``[0, 1]``:

* a file is read like any image (EXIF orientation applied, transparency composited over white) and
  must be grey: a picture whose R, G and B differ by more than :data:`GREY_TOLERANCE` levels
  somewhere is refused (it is more likely the photo or a painting given by mistake than a mask;
  a grey picture saved as an RGB JPEG comes back within a level or two, the tests check). Its
  level ``v`` becomes ``v / 255``;
* an array may be ``(H, W)``, ``(H, W, 1)`` or a grey ``(H, W, 3)``: ``bool`` (False/True), integers
  on 0..255 (``v / 255``), or floats already in ``[0, 1]`` (a mask is a weight, not a picture);
* it is resized to the content's ``(H, W)`` (bilinear, antialiased when shrinking, so values stay in
  ``[0, 1]`` and a thin region keeps its mass); its aspect ratio must be the content's within
  :data:`ASPECT_TOLERANCE` (a mask drawn for another picture would be silently stretched).

:func:`load_masks` checks a set of masks together: an all-zero mask is refused (its style would apply
nowhere). Where *no* mask is above zero the picture has no style term: the result keeps the photo's
content there (the content and smoothness terms still apply); :func:`uncovered` measures that part
so that the front ends can say so.

Errors are one line naming the mask (``mask #2 (sky.png): ...``): :class:`~numpynst.errors.ImageError`
for a file, :class:`~numpynst.errors.OptionError` for an array.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ..backend import to_host
from ..errors import ImageError, OptionError
from .decode import load_image

__all__ = ["GREY_TOLERANCE", "ASPECT_TOLERANCE", "mask_label", "read_mask", "fit_mask", "load_masks",
           "uncovered"]

#: Largest difference between a file's R, G and B at any pixel for it to count as grey (levels).
GREY_TOLERANCE = 32
#: Largest relative difference between a mask's aspect ratio and the content's.
ASPECT_TOLERANCE = 0.05


def mask_label(what: str, index: int, mask: Any) -> str:
    """``"mask #2 (sky.png)"`` for a file, ``"mask #2"`` for an array (1-based ``index``)."""
    name = f" ({Path(os.fspath(mask)).name})" if isinstance(mask, (str, os.PathLike)) else ""
    return f"{what} #{index + 1}{name}"


def _grey(rgb: np.ndarray, label: str, error: type[Exception]) -> np.ndarray:
    """The one channel of a grey ``(H, W, 3)`` array (their mean), or ``error`` if it has colour."""
    x = rgb.astype(np.float64)
    spread = float((x.max(axis=2) - x.min(axis=2)).max())
    if spread > GREY_TOLERANCE:
        raise error(f"{label}: a colour picture (R, G and B differ by up to {spread:.0f} levels), "
                    f"not a greyscale mask; give a grey picture, white where the style applies")
    return x.mean(axis=2)


def read_mask(mask: Any, label: str) -> np.ndarray:
    """One mask (a file or an array, module docstring) as float32 ``(h, w)`` in ``[0, 1]``, its own size."""
    if isinstance(mask, (str, os.PathLike)):
        try:
            rgb = load_image(mask)
        except ImageError as exc:
            raise ImageError(f"{label}: {exc}") from None
        return (_grey(rgb, label, ImageError) / 255.0).astype(np.float32)
    try:
        a = np.asarray(to_host(mask))
    except Exception:       # noqa: BLE001 -- whatever it is, it is not a mask
        raise OptionError(f"{label} must be a file or an (H, W) array, got {type(mask).__name__}") from None
    if a.ndim == 3 and a.shape[2] in (1, 3):
        a = a[..., 0] if a.shape[2] == 1 else a
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)) or a.size == 0:
        raise OptionError(f"{label} must be an (H, W) array (or a grey (H, W, 3) one), got shape {a.shape}")
    kind = a.dtype.kind
    if kind == "b":
        v = a.astype(np.float64)
    elif kind in "ui":
        if int(a.min()) < 0 or int(a.max()) > 255:
            raise OptionError(f"{label}: integer values must lie in 0..255, got {int(a.min())}..{int(a.max())}")
        v = a.astype(np.float64) / 255.0
    elif kind == "f":
        if not np.all(np.isfinite(a)) or float(a.min()) < 0 or float(a.max()) > 1:
            raise OptionError(f"{label}: float values must be finite and in [0, 1] (1 = this style here), "
                              f"got {float(np.nanmin(a)):g}..{float(np.nanmax(a)):g}")
        v = a.astype(np.float64)
    else:
        raise OptionError(f"{label}: unsupported dtype {a.dtype}; give bool, uint8 or floats in [0, 1]")
    if v.ndim == 3:
        v = _grey(v * 255.0, label, OptionError) / 255.0         # the tolerance is in levels
    return v.astype(np.float32)


def fit_mask(m: np.ndarray, hw: tuple[int, int], label: str, error: type[Exception] = OptionError,
             check_aspect: bool = True) -> np.ndarray:
    """``m`` ``(h, w)`` resized to ``hw`` (bilinear, antialiased), values kept in ``[0, 1]``; ``error``
    when the aspect ratios differ by more than :data:`ASPECT_TOLERANCE` (``check_aspect``: a run's
    scales round the picture to the pooling grid, and its masks follow it there unchecked)."""
    h, w = m.shape
    H, W = hw
    if check_aspect and abs(math.log((w / h) / (W / H))) > math.log1p(ASPECT_TOLERANCE):
        raise error(f"{label} is {w}x{h} but the picture is {W}x{H}: the aspect ratios differ "
                    f"({w / h:.3g} vs {W / H:.3g}); draw the mask on the picture itself")
    if (h, w) == (H, W):
        return np.ascontiguousarray(m, dtype=np.float32)
    out = np.asarray(Image.fromarray(np.ascontiguousarray(m, dtype=np.float32), mode="F")
                     .resize((W, H), Image.Resampling.BILINEAR))
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def load_masks(masks: Sequence[Any], hw: tuple[int, int] | Sequence[tuple[int, int]],
               what: str = "mask") -> np.ndarray | list[np.ndarray]:
    """Masks (files or arrays) as float32 ``(R, H, W)`` at the picture's ``hw``, each checked (module
    docstring); an all-zero mask is refused naming it. ``what``: ``"mask"`` or ``"style mask"``.

    ``hw`` may also be a list, one ``(H, W)`` per mask (style masks, each at its painting's size):
    then the result is a list of ``(H, W)`` arrays."""
    sizes = [tuple(h) for h in hw] if hw and isinstance(hw[0], (tuple, list)) else None
    out = []
    for i, mask in enumerate(masks):
        if sizes is not None:
            hw = sizes[i]
        label = mask_label(what, i, mask)
        error = ImageError if isinstance(mask, (str, os.PathLike)) else OptionError
        m = read_mask(mask, label)
        if not m.max() > 0:
            where = "be taken from" if what == "style mask" else "apply"
            raise error(f"{label} is all black (zero): style #{i + 1} would {where} nowhere; white marks "
                        f"where it does")
        m = fit_mask(m, hw, label, error)
        if not m.max() > 0:
            raise error(f"{label}: its white part vanishes at {hw[1]}x{hw[0]} px; make it larger")
        out.append(m)
    return out if sizes is not None else np.stack(out)


def uncovered(masks: np.ndarray) -> float:
    """The fraction of the picture where every mask is 0 (there the result keeps the photo's content)."""
    return float(np.mean(np.all(masks <= 0, axis=0)))
