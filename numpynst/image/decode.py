"""Reading image files and checking pixels: whatever comes in becomes RGB ``uint8 (H, W, 3)``.

The idea: every image the rest of numpynst sees is a NumPy ``uint8`` array of shape
``(H, W, 3)``, RGB order, values 0..255, upright (EXIF orientation applied). Files are decoded
here, with Pillow, under a pixel limit checked from the header before any decoding
(:data:`DEFAULT_MAX_PIXELS`); every file-level problem (missing, unreadable, truncated, too
large, unknown format) becomes an :class:`~numpynst.errors.ImageError` whose one-line message
names the file. Arrays handed to the Python API go through one rule (:func:`checked_pixels`,
:func:`pixels_uint8`): ``uint8``; integers in 0..255; floats on the 0..255 scale, never 0..1;
no bool, complex, NaN or empty images.

``load_image(path, size=None, max_pixels=DEFAULT_MAX_PIXELS) -> uint8 (H, W, 3)``
``as_rgb(img, what)``, ``pixels_uint8(arr, what)``, ``checked_pixels(arr, what)``
"""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..backend import to_host
from ..checks import first_line
from ..errors import ImageError, OptionError, short_path
from ..files import open_regular
from .resize import _check_size, _fit_longest, resize_image, resize_to

__all__ = ["DEFAULT_MAX_PIXELS", "load_image", "image_shape", "as_rgb", "pixels_uint8", "checked_pixels",
           "image_mode"]

#: Images with more pixels than this are refused unless a target ``size`` is given. 36 MP covers
#: every ordinary camera photo; a bigger picture would be ~430 MB as float32 activations in
#: VGG's first layer alone, so style transfer at full resolution would be a mistake anyway.
DEFAULT_MAX_PIXELS = 36_000_000

# Errors Pillow and its codecs raise for files that are not images, truncated or corrupt.
# (Pillow raises SyntaxError for some malformed headers, struct.error/zlib.error from parsers.)
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError,
                  struct.error, zlib.error)

_WHITE = 255.0
_EXIF_ORIENTATION = 0x0112


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------

def load_image(path: str | os.PathLike, size: int | None = None,
               max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as RGB ``uint8`` of shape ``(H, W, 3)``.

    Parameters
    ----------
    path : file to read (any format Pillow reads: PNG, JPEG, WebP, TIFF, BMP, GIF, PPM, ...).
    size : if given, the longest side of the result in pixels (1..MAX_SIZE): the image is resized
        with a Lanczos filter, keeping its aspect ratio; a smaller image is upscaled.
    max_pixels : the most pixels ever decoded, checked against the header before decoding,
        whatever ``size`` asks for (a small file may declare a huge picture). With ``size`` a JPEG
        is decoded at a reduced DCT scale (1/2..1/8) where the output is small, and the limit
        applies to that scale; other formats are refused above it. ``None``: no limit beyond
        Pillow's own decompression-bomb guard.

    Conversions (after applying the EXIF orientation tag, so the array is upright):

    - grey ``L``/``1`` -> R = G = B;
    - 16-bit grey ``I;16*`` (0..65535) -> ``round(v / 257)`` (0 -> 0, 65535 -> 255, monotone);
    - 32-bit integer ``I``: values in 0..65535 are taken as 16-bit data (what Pillow yields for
      16-bit PNG/PGM/TIFF), anything else is stretched linearly from its min..max to 0..255;
    - float ``F``: values within 0..1 are scaled by 255, values within 0..255 kept, anything else
      stretched from min..max; NaN -> 0;
    - anything with transparency (``RGBA``, ``LA``, ``PA``, ``P``/``L``/``RGB`` with a
      transparent colour) is composited over white: ``out = a*c + (1 - a)*255``, ``a = alpha/255``;
    - ``CMYK``, ``YCbCr``, palette ``P`` -> RGB by Pillow's conversion (no ICC colour management).

    Raises :class:`ImageError` (missing file, directory, FIFO/device or other non-regular file,
    name too long, not an image, truncated/corrupt data, too many pixels, unsupported mode) and
    :class:`OptionError` (bad ``size`` / ``max_pixels``).
    """
    if size is not None:
        size = _check_size(size)
    if max_pixels is not None:
        if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) \
                or max_pixels < 1:
            raise OptionError(f"max_pixels must be a positive integer or None, got {max_pixels!r}")
    return _opened(path, lambda im, p: _decode(im, p, size, max_pixels))


def image_shape(path: str | os.PathLike) -> tuple[int, int]:
    """``(H, W)`` of the picture :func:`load_image` would return at its own size (EXIF rotation
    applied), read from the header alone: nothing is decoded. Errors as :func:`load_image`'s."""
    def shape(im: Image.Image, p: Path) -> tuple[int, int]:
        width, height = im.size
        try:
            swapped = im.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8)
        except _DECODE_ERRORS:
            swapped = False
        return (width, height) if swapped else (height, width)
    return _opened(path, shape)


def _opened(path: str | os.PathLike, read):
    """``read(image, path)`` on the Pillow image of ``path``, with every file-level problem as one
    :class:`ImageError`."""
    if not isinstance(path, (str, os.PathLike)):
        raise ImageError(f"image path must be a file name, got {type(path).__name__}")
    path = Path(os.fspath(path)).expanduser()
    try:
        # open_regular refuses a FIFO or device before it could block or stream forever
        with open_regular(path, "cannot read image", error=ImageError) as fh, \
                warnings.catch_warnings():
            # Pillow warns between its limit and twice it; we apply our own, clearer limit below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(fh) as im:
                return read(im, path)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(f"refusing to read image {short_path(path)}: {first_line(exc)}") from None
    except UnidentifiedImageError:
        raise ImageError(f"cannot read image {short_path(path)}: not an image file, or a format Pillow "
                         "does not recognise") from None
    except MemoryError:
        raise ImageError(f"cannot read image {short_path(path)}: not enough memory to decode it; "
                         "pass --size to load it downscaled") from None
    except _DECODE_ERRORS as exc:
        raise ImageError(f"cannot read image {short_path(path)}: corrupt or truncated data "
                         f"({first_line(exc)})") from None


def _decode(im: Image.Image, path: Path, size: int | None, max_pixels: int | None) -> np.ndarray:
    """Decode an opened Pillow image to upright RGB uint8, resized if ``size`` is given."""
    width, height = im.size  # from the header: nothing decoded yet
    if width < 1 or height < 1:
        raise ImageError(f"cannot read image {short_path(path)}: it has no pixels ({width}x{height})")
    if size is not None and im.format == "JPEG":
        # JPEG can decode at 1/2, 1/4 or 1/8 scale in the DCT domain: far cheaper in time and
        # memory than decoding 50 MP and throwing most of it away. That scaling is a box filter,
        # so we ask for twice the target size and let the Lanczos resize below do the last
        # factor >= 2 (which also sets the exact final size; draft never goes below the request).
        # Requested in stored orientation; the EXIF rotation comes later.
        th, tw = _fit_longest(height, width, size)
        if 4 * tw <= width and 4 * th <= height:
            im.draft(None, (2 * tw, 2 * th))
    # The pixels that will really be decoded (after draft; still only the header was read) must
    # fit the limit whatever ``size`` asks for: a small file may declare 9000 x 9000 pixels.
    dw, dh = im.size
    if max_pixels is not None and dw * dh > max_pixels:
        how = ("pass --size (size=) to load it downscaled" if size is None else
               "only JPEGs can be decoded at a reduced scale; downscale it first")
        raise ImageError(f"image {short_path(path)} has {width}x{height} = {width * height:,} pixels, more "
                         f"than the limit of {max_pixels:,}; {how}")
    # EXIF orientations 5..8 swap width and height (transpose/rotate by 90 degrees).
    try:
        orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
    except _DECODE_ERRORS:  # malformed EXIF must not make a decodable picture unreadable
        orientation = 1
    swapped = orientation in (5, 6, 7, 8)
    im.load()
    if orientation != 1:
        try:
            transposed = ImageOps.exif_transpose(im)
        except _DECODE_ERRORS:
            transposed, swapped = None, False
        if transposed is not None:
            im = transposed
    rgb = _to_rgb_array(im, path)
    if size is not None:
        # Aspect from the full-resolution header (draft may have rounded the decoded size up).
        target = _fit_longest(width, height, size) if swapped else _fit_longest(height, width, size)
        if target != rgb.shape[:2]:
            rgb = resize_to(rgb, target)
    return rgb


def _to_rgb_array(im: Image.Image, path: Path) -> np.ndarray:
    """Any Pillow mode -> RGB uint8 (H, W, 3); see :func:`load_image` for the rules."""
    mode = im.mode
    if mode.startswith("I;16"):
        v = np.asarray(im).astype(np.float64)
        return _grey_to_rgb(np.rint(v / 257.0))
    if mode == "I":
        v = np.asarray(im).astype(np.float64)
        if v.min() >= 0 and v.max() <= 65535:
            return _grey_to_rgb(np.rint(v / 257.0))
        return _grey_to_rgb(_stretch(v))
    if mode == "F":
        v = np.nan_to_num(np.asarray(im).astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = v.min(), v.max()
        if lo >= 0 and hi <= 1:
            return _grey_to_rgb(np.rint(v * 255.0))
        if lo >= 0 and hi <= 255:
            return _grey_to_rgb(np.rint(v))
        return _grey_to_rgb(_stretch(v))

    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    try:
        if has_alpha:
            rgba = np.asarray(im.convert("RGBA"), dtype=np.float64)
            alpha = rgba[..., 3:4] / 255.0
            out = rgba[..., :3] * alpha + _WHITE * (1.0 - alpha)
            return np.ascontiguousarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))
        if mode != "RGB":
            im = im.convert("RGB")
    except ValueError as exc:  # Pillow has no conversion for this mode
        raise ImageError(f"cannot read image {short_path(path)}: unsupported pixel mode {mode!r} "
                         f"({first_line(exc)})") from None
    return np.array(im, dtype=np.uint8)  # np.array: a writable copy


def _grey_to_rgb(v: np.ndarray) -> np.ndarray:
    grey = np.clip(v, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=-1))


def _stretch(v: np.ndarray) -> np.ndarray:
    """Linear map of v's min..max onto 0..255 (constant images -> 0)."""
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        return np.zeros_like(v)
    return np.rint((v - lo) * (255.0 / (hi - lo)))


# --------------------------------------------------------------------------------------------
# pixels given as arrays
# --------------------------------------------------------------------------------------------

def as_rgb(img: Any, what: str, size: int | None = None, max_pixels: int | None = None) -> np.ndarray:
    """An image given as a path (loaded with :func:`load_image`) or an array, as RGB uint8 ``(H, W, 3)``.

    Arrays follow :func:`pixels_uint8`'s rules (uint8; other integers within 0..255; floats on
    the 0..255 scale, never 0..1; no bool, complex, NaN or empty images). ``size`` resizes either
    to that longest side; ``what`` names the argument in errors (``"content"``, ``"style #2"``).
    """
    if isinstance(img, (str, os.PathLike)):
        kw = {} if max_pixels is None else {"max_pixels": max_pixels}
        try:
            return load_image(img, size=size, **kw)
        except ImageError as exc:
            raise ImageError(f"{what}: {exc}") from None
    try:
        arr = to_host(img)
    except Exception:       # noqa: BLE001 -- whatever it is, it is not an image
        raise OptionError(f"{what} must be an image path or an (H, W, 3) RGB array, "
                          f"got {type(img).__name__}") from None
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise OptionError(f"{what} must be an image path or an (H, W, 3) RGB array, got shape {arr.shape}")
    arr = pixels_uint8(arr, what)
    return arr if size is None else resize_image(arr, size)


def pixels_uint8(arr: Any, what: str, error: type[Exception] = OptionError) -> np.ndarray:
    """An image array's values as contiguous ``uint8``, by one rule for every entry point."""
    a = checked_pixels(arr, what, error)
    if a.dtype.kind == "f":
        return np.ascontiguousarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))
    return np.ascontiguousarray(a.astype(np.uint8, copy=False))


def checked_pixels(arr: Any, what: str, error: type[Exception] = OptionError) -> np.ndarray:
    """``arr`` as a NumPy array after checking its values by the one rule (not converted):

    * ``uint8``: taken as is. Other integer dtypes: values must lie in 0..255.
    * floating point: the 0..255 scale (what :func:`numpynst.vgg.deprocess` and Pillow use;
      :func:`pixels_uint8` rounds to the nearest integer and clips to 0..255). A float array whose largest value is
      at most 1 (and not all zero) is refused: it is almost surely a 0..1 image, which would
      silently come out black; multiply it by 255. NaN and infinity are refused.
    * ``bool``, complex, object and other dtypes, and arrays without pixels, are refused.

    Errors are ``error`` (default :class:`OptionError`) with ``what`` first in the message.
    """
    a = np.asarray(arr)
    if a.size == 0 or any(n == 0 for n in a.shape[:2]):
        raise error(f"{what}: the image has no pixels (shape {a.shape})")
    kind = a.dtype.kind
    if a.dtype == np.uint8:
        return a
    if kind in "ui":
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi > 255:
            raise error(f"{what}: integer pixel values must lie in 0..255, got {lo}..{hi} "
                        f"(dtype {a.dtype}); scale them to 0..255 or pass uint8")
        return a
    if kind == "f":
        finite = np.isfinite(a)
        if not finite.all():
            raise error(f"{what}: the image has {int(a.size - finite.sum()):,} NaN or infinite "
                        f"pixel value(s)")
        hi = float(a.max())
        if 0.0 < hi <= 1.0:
            raise error(f"{what}: float pixel values must be on the 0..255 scale, but the largest is "
                        f"{hi:g}, which looks like a 0..1 image; multiply it by 255")
        return a
    raise error(f"{what}: unsupported pixel dtype {a.dtype}; give uint8, integers in 0..255 or "
                f"floats on the 0..255 scale")


def image_mode(path: str | os.PathLike) -> str:
    """Pillow's pixel mode of an image file, read from its header only (``"RGB"``, ``"L"`` for
    grey, ``"RGBA"``, ``"P"`` for a palette, ``"I;16"``, ...): :func:`load_image` turns every mode
    into RGB, so a caller that must know whether the file itself holds colour asks here.
    :class:`ImageError` naming the file as :func:`load_image` does."""
    return _opened(path, lambda im, _: str(im.mode))
