"""Images in and out: loading, saving, resizing, colour preservation, bundled samples.

Everything the rest of numpynst sees of an image is a NumPy ``uint8`` array of shape ``(H, W, 3)``
in RGB order, values 0..255. This module is the only place that talks to Pillow; it turns every
file-level problem (missing, unreadable, truncated, too large, unknown format) into an
:class:`~numpynst.errors.ImageError` whose one-line message names the file.

Public API
----------
``load_image(path, size=None, max_pixels=DEFAULT_MAX_PIXELS) -> uint8 (H, W, 3)``
``save_image(path, rgb, quality=95, overwrite=True) -> Path``  (temp file, fsync, decoded back, placed)
``save_image(path, rgb_float, bit_depth=16, info=ImageInfo(...))``  (16-bit PNG/TIFF for print)
``icc_profile(path)``                                    (an image file's RGB ICC profile, or None)
``as_rgb(img, what)``, ``pixels_uint8(arr, what)``       (arrays from the Python API: the one rule)
``resize_image(rgb, size)`` (longest side), ``resize_to(rgb, (H, W))``
``preserve_color(content_rgb, stylized_rgb, match_luminance=False)``  (luminance-only transfer)
``rgb_to_yiq(rgb)``, ``yiq_to_rgb(yiq)``
``SAMPLES``, ``DEMO_CONTENT``, ``DEMO_STYLE``, ``sample_path(name)``, ``sample_names(kind=None)``
``IMAGE_SUFFIXES``                                       (the file extensions read and written)

Atomic writes and file identity live in :mod:`numpynst.files`.
"""

from __future__ import annotations

import functools
import operator
import os
import struct
import warnings
import zlib
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .backend import to_host
from .checks import first_line
from .errors import ImageError, OptionError
from .files import atomic_file, check_writable, describe, open_regular
from .print_output import SRGB_CHUNKS, strip_rows, to_uint16, write_png16, write_tiff16

__all__ = [
    "DEFAULT_MAX_PIXELS", "MAX_SIZE", "SAVE_FORMATS", "SAMPLES", "SAMPLES_DIR", "DEMO_CONTENT",
    "DEMO_STYLE", "IMAGE_SUFFIXES", "load_image", "save_image", "resize_image",
    "resize_to", "scaled_shape", "round_to_multiple", "as_rgb", "pixels_uint8", "checked_pixels",
    "ImageInfo", "icc_profile", "srgb_profile", "DEEP_FORMATS", "preserve_color", "rgb_to_yiq", "yiq_to_rgb", "sample_path", "sample_names",
]

#: Images with more pixels than this are refused unless a target ``size`` is given. 36 MP covers
#: every ordinary camera photo; a bigger picture would be ~430 MB as float32 activations in
#: VGG's first layer alone, so style transfer at full resolution would be a mistake anyway.
DEFAULT_MAX_PIXELS = 36_000_000

#: Largest accepted ``size`` (longest side, pixels).
MAX_SIZE = 16384

#: File extension -> Pillow format name, for :func:`save_image`.
SAVE_FORMATS = {
    ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP",
    ".tif": "TIFF", ".tiff": "TIFF",
}

#: The image file extensions numpynst reads and writes (lower case, with the dot).
IMAGE_SUFFIXES = tuple(SAVE_FORMATS)

# Errors Pillow and its codecs raise for files that are not images, truncated or corrupt.
# (Pillow raises SyntaxError for some malformed headers, struct.error/zlib.error from parsers.)
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError,
                  struct.error, zlib.error)

_WHITE = 255.0
_EXIF_ORIENTATION = 0x0112


# --------------------------------------------------------------------------------------------
# bundled samples
# --------------------------------------------------------------------------------------------

SAMPLES_DIR = Path(__file__).resolve().parent / "data" / "samples"

#: name -> {"file", "kind" ("content" | "style"), "title", "credit"}; details in
#: ``numpynst/data/samples/CREDITS.md``.
SAMPLES: dict[str, dict[str, str]] = {
    "chelsea": {
        "file": "chelsea.jpg", "kind": "content", "title": "Chelsea the cat",
        "credit": "Stefan van der Walt, CC0 (from scikit-image 0.26.0)"},
    "coffee": {
        "file": "coffee.jpg", "kind": "content", "title": "Coffee cup",
        "credit": "Rachel Michetti, courtesy of Pikolo Espresso Bar, CC0 "
                  "(from scikit-image 0.26.0)"},
    "astronaut": {
        "file": "astronaut.jpg", "kind": "content", "title": "Astronaut Eileen Collins",
        "credit": "NASA, public domain (from scikit-image 0.26.0)"},
    "ihc": {
        "file": "ihc.jpg", "kind": "style",
        "title": "Immunohistochemical staining of colonic glands",
        "credit": "Center for Microscopy And Molecular Imaging, no known copyright restrictions "
                  "(from scikit-image 0.26.0)"},
    "hubble": {
        "file": "hubble.jpg", "kind": "style", "title": "Hubble eXtreme Deep Field",
        "credit": "NASA, public domain (from scikit-image 0.26.0)"},
}

#: The pair ``numpynst demo`` stylizes.
DEMO_CONTENT = "chelsea"
DEMO_STYLE = "ihc"

# "content" / "style" name the demo pair, so a caller can ask for "the default style".
_SAMPLE_ALIASES = {"content": DEMO_CONTENT, "style": DEMO_STYLE}


def sample_names(kind: str | None = None) -> list[str]:
    """Names of the bundled samples, optionally only those of ``kind`` ("content" | "style")."""
    if kind not in (None, "content", "style"):
        raise OptionError(f"sample kind must be 'content' or 'style', got {kind!r}")
    return [n for n, meta in SAMPLES.items() if kind is None or meta["kind"] == kind]


def sample_path(name: str) -> Path:
    """Path of the bundled sample image ``name`` (a key of :data:`SAMPLES`).

    ``"content"`` and ``"style"`` are accepted as aliases of :data:`DEMO_CONTENT` and
    :data:`DEMO_STYLE`. An unknown name raises :class:`ImageError` listing the available ones.
    """
    key = _SAMPLE_ALIASES.get(name, name) if isinstance(name, str) else name
    if key not in SAMPLES:
        listing = ", ".join(f"{n} ({m['kind']})" for n, m in SAMPLES.items())
        raise ImageError(f"unknown sample image {name!r}; available: {listing}")
    path = SAMPLES_DIR / SAMPLES[key]["file"]
    if not path.is_file():  # a broken install, not a user mistake, but say so plainly
        raise ImageError(f"sample image {key!r} is missing from the installation: {path}")
    return path


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


def round_to_multiple(shape: tuple[int, int], factor: int) -> tuple[int, int]:
    """Each side rounded to the nearest multiple of ``factor`` (at least ``factor``)."""
    return tuple(max(factor, int(round(v / factor)) * factor) for v in shape)  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------

def load_image(path: str | os.PathLike, size: int | None = None,
               max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as RGB ``uint8`` of shape ``(H, W, 3)``.

    Parameters
    ----------
    path : file to read (any format Pillow reads: PNG, JPEG, WebP, TIFF, BMP, GIF, PPM, ...).
    size : if given, the longest side of the result in pixels (1..16384): the image is resized
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
                return _decode(im, path, size, max_pixels)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(f"refusing to read image {path}: {first_line(exc)}") from None
    except UnidentifiedImageError:
        raise ImageError(f"cannot read image {path}: not an image file, or a format Pillow "
                         "does not recognise") from None
    except MemoryError:
        raise ImageError(f"cannot read image {path}: not enough memory to decode it; "
                         "pass --size to load it downscaled") from None
    except _DECODE_ERRORS as exc:
        raise ImageError(f"cannot read image {path}: corrupt or truncated data "
                         f"({first_line(exc)})") from None


def _decode(im: Image.Image, path: Path, size: int | None, max_pixels: int | None) -> np.ndarray:
    """Decode an opened Pillow image to upright RGB uint8, resized if ``size`` is given."""
    width, height = im.size  # from the header: nothing decoded yet
    if width < 1 or height < 1:
        raise ImageError(f"cannot read image {path}: it has no pixels ({width}x{height})")
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
        raise ImageError(f"image {path} has {width}x{height} = {width * height:,} pixels, more "
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
        raise ImageError(f"cannot read image {path}: unsupported pixel mode {mode!r} "
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
# resizing
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
# saving, atomically
# --------------------------------------------------------------------------------------------

def save_image(path: str | os.PathLike, rgb: np.ndarray, quality: int = 95, *,
               overwrite: bool = True, bit_depth: int = 8, info: ImageInfo | None = None) -> Path:
    """Write an image all-or-nothing; the format follows the extension of ``path``.

    Parameters
    ----------
    path : ``.png``, ``.jpg``/``.jpeg``, ``.webp``, ``.bmp`` or ``.tif``/``.tiff`` (any case).
    rgb : ``(H, W, 3)`` RGB or ``(H, W)`` grey, NumPy or CuPy, by :func:`pixels_uint8`'s rules:
        ``uint8``; integers in 0..255; floats on the 0..255 scale (rounded, clipped to 0..255;
        a float array with maximum <= 1 is refused as a probable 0..1 image); no NaN, bool, complex.
    quality : 1..100, used by JPEG and WebP (JPEG at >= 90 also keeps full-resolution chroma,
        4:4:4, since stylized images have fine colour detail that 4:2:0 would smear).
    overwrite : replace an existing regular file at ``path`` (default). ``False`` refuses an
        existing file, even one that appears while this call runs. A symbolic link, directory or
        other non-regular file at ``path`` is never replaced.
    bit_depth : 8, or 16 for ``.png``/``.tif``/``.tiff``: written from the float values (not their
        8-bit rounding) as ``rint(257 v)``, by :mod:`numpynst.print_output`, in bounded memory.
    info : an :class:`ImageInfo` (colour profile, description, software) written where the format
        holds it; ``None`` writes no tags in 8 bits (16-bit files are always tagged, sRGB by default).

    The encoder writes a temporary beside ``path``, which is fsynced and decoded again in full
    (lossless formats must give back exactly these pixels; a JPEG must end with its end-of-image
    marker) before it takes the name: a full disk or a file-size limit, which Pillow's JPEG, BMP and
    TIFF encoders do not report, gives an error instead of a truncated picture
    (:mod:`numpynst.files`).

    Returns the path written. Raises :class:`ImageError` (unknown extension, bad array, existing
    file, write failure; no partial file is ever left at ``path``) or :class:`OptionError`
    (bad quality).
    """
    target = Path(os.fspath(path)).expanduser()
    fmt = SAVE_FORMATS.get(target.suffix.lower())
    if fmt is None:
        known = ", ".join(SAVE_FORMATS)
        shown = target.suffix or "(none)"
        raise ImageError(f"cannot save image {target}: unknown file extension {shown}; "
                         f"use one of {known}")
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) \
            or not 1 <= quality <= 100:
        raise OptionError(f"quality must be an integer between 1 and 100, got {quality!r}")
    if bit_depth != 8:
        return _save_16bit(target, rgb, fmt, bit_depth, info, overwrite)
    pixels = _to_uint8(rgb, target)
    check_writable(target, "cannot save image", overwrite=overwrite, error=ImageError,
                   hint="not replaced (overwrite=False)")

    options: dict[str, Any] = {}
    if fmt == "JPEG":
        options = {"quality": int(quality), "subsampling": 0 if quality >= 90 else 2,
                   "optimize": True}
    elif fmt == "WEBP":
        options = {"quality": int(quality), "method": 4}
    if info is not None:
        options.update(_pillow_tags(fmt, info))
    image = Image.fromarray(pixels)
    try:
        with atomic_file(target, overwrite=overwrite,
                         verify=lambda tmp: _verify_saved(tmp, fmt, pixels)) as fh:
            image.save(fh, format=fmt, **options)
    except (OSError, ValueError, KeyError) as exc:
        raise ImageError(f"cannot save image {target}: {describe(exc)}") from None
    return target


_LOSSLESS = ("PNG", "BMP", "TIFF")


def _verify_saved(tmp: Path, fmt: str, pixels: np.ndarray) -> None:
    """Decode the written file in full; raise unless it is the complete picture.

    Lossless formats must give back exactly ``pixels``. Lossy ones must decode to the right size,
    and their container must be whole (JPEG: ends with the EOI marker, so even a Pillow configured
    with ``LOAD_TRUNCATED_IMAGES`` cannot pass a cut file; WebP: the RIFF length matches the file).
    """
    with open(tmp, "rb") as fh:
        if fmt == "JPEG":
            fh.seek(-2, os.SEEK_END)
            if fh.read(2) != b"\xff\xd9":
                raise ValueError("the JPEG has no end-of-image marker")
        elif fmt == "WEBP":
            head = fh.read(12)
            if len(head) < 12 or struct.unpack("<I", head[4:8])[0] + 8 != os.fstat(fh.fileno()).st_size:
                raise ValueError("the WebP container length does not match the file")
        fh.seek(0)
        with Image.open(fh) as im:
            im.load()
            if im.size != (pixels.shape[1], pixels.shape[0]):
                raise ValueError(f"decoded size {im.size} differs from the image's")
            if fmt in _LOSSLESS and not np.array_equal(np.asarray(im), pixels):
                raise ValueError("the decoded pixels differ from the image's")


def _to_uint8(rgb: Any, target: Path) -> np.ndarray:
    """Validate an image array for saving and convert it to contiguous uint8."""
    return pixels_uint8(_host_image(rgb, target), f"cannot save image {target}", error=ImageError)


def _host_image(rgb: Any, target: Path) -> np.ndarray:
    """``rgb`` on the host as ``(H, W, 3)`` or ``(H, W)``, else ImageError naming ``target``."""
    arr = to_host(rgb)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)) or arr.size == 0:
        raise ImageError(f"cannot save image {target}: expected an array of shape (H, W, 3) or "
                         f"(H, W), got {arr.shape}")
    return arr


# --------------------------------------------------------------------------------------------
# saving for print: 16 bits per channel, the colour profile, how the picture was made
# --------------------------------------------------------------------------------------------

#: Formats that hold 16 bits per channel (written by :mod:`numpynst.print_output`).
DEEP_FORMATS = ("PNG", "TIFF")


class ImageInfo(NamedTuple):
    """What a saved picture says about itself (:func:`save_image`'s ``info``).

    ``icc_profile``: ICC profile to embed; ``None`` means sRGB (PNG: the ``sRGB`` chunk; TIFF, JPEG,
    WebP: an sRGB profile, :func:`srgb_profile`). ``description``: PNG ``Description`` text, TIFF
    ``ImageDescription``, JPEG comment. ``software``: PNG ``Software`` text, TIFF ``Software``.
    BMP holds none of these; WebP only the profile.
    """

    icc_profile: bytes | None = None
    description: str | None = None
    software: str | None = None


def icc_profile(path: str | os.PathLike) -> bytes | None:
    """The ICC profile embedded in image file ``path`` if it describes RGB data, else ``None``.

    Reads the header only. A profile for another colour space (grey, CMYK: bytes 16..19 of an ICC
    header name it) is dropped, since :func:`load_image` has turned the pixels into RGB and such
    a profile would not describe them.
    """
    p = Path(os.fspath(path)).expanduser()
    try:
        with open_regular(p, "cannot read image", error=ImageError) as fh, Image.open(fh) as im:
            profile = im.info.get("icc_profile")
    except (UnidentifiedImageError, *_DECODE_ERRORS):
        return None                 # load_image reports a bad file; here it just has no profile
    if not isinstance(profile, bytes) or len(profile) < 128 or profile[16:20] != b"RGB ":
        return None
    return profile


@functools.lru_cache(maxsize=1)
def srgb_profile() -> bytes | None:
    """An sRGB ICC profile, made by LittleCMS through Pillow's ImageCms (``None`` without it)."""
    try:
        from PIL import ImageCms
        return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    except (ImportError, OSError, ValueError):
        return None


def _pillow_tags(fmt: str, info: ImageInfo) -> dict[str, Any]:
    """Pillow ``save`` options that write ``info`` in an 8-bit file of format ``fmt``."""
    if fmt == "BMP":
        return {}
    if fmt == "PNG":
        from PIL.PngImagePlugin import PngInfo
        text = PngInfo()
        if info.icc_profile is None:
            for kind, data in SRGB_CHUNKS:
                text.add(kind, data)
        for key, value in (("Software", info.software), ("Description", info.description)):
            if value is not None:
                text.add_itxt(key, value)
        return {"pnginfo": text, **({} if info.icc_profile is None else {"icc_profile": info.icc_profile})}
    options: dict[str, Any] = {}
    profile = info.icc_profile if info.icc_profile is not None else srgb_profile()
    if profile is not None:
        options["icc_profile"] = profile
    if fmt == "TIFF":
        options.update({k: v for k, v in (("description", info.description),
                                          ("software", info.software)) if v is not None})
    elif fmt == "JPEG" and info.description is not None:
        options["comment"] = info.description
    return options


def _save_16bit(target: Path, rgb: Any, fmt: str, bit_depth: Any, info: ImageInfo | None,
                overwrite: bool) -> Path:
    """:func:`save_image` with ``bit_depth`` other than 8: 16-bit PNG or TIFF from the float values.

    Verified before it takes its name like every save: Pillow decodes the file in full (checking
    zlib's checksums) and must give back each sample's high byte, ``rint(257 v) >> 8``.
    """
    if isinstance(bit_depth, bool) or bit_depth != 16:
        raise OptionError(f"bit_depth must be 8 or 16, got {bit_depth!r}")
    if fmt not in DEEP_FORMATS:
        raise ImageError(f"cannot save image {target} with 16 bits per channel: "
                         f"{target.suffix} holds 8 bits; use .png or .tif")
    where = f"cannot save image {target}"
    arr = checked_pixels(_host_image(rgb, target), where, error=ImageError)
    if arr.ndim == 2:
        arr = np.broadcast_to(arr[..., None], (*arr.shape, 3))      # grey: R = G = B, no copy
    check_writable(target, "cannot save image", overwrite=overwrite, error=ImageError,
                   hint="not replaced (overwrite=False)")
    info = ImageInfo() if info is None else info
    try:
        with atomic_file(target, overwrite=overwrite,
                         verify=lambda tmp: _verify_16bit(tmp, arr)) as fh:
            if fmt == "PNG":
                text = {k: v for k, v in (("Software", info.software),
                                          ("Description", info.description)) if v is not None}
                write_png16(fh, arr, info.icc_profile, text)
            else:
                profile = info.icc_profile if info.icc_profile is not None else srgb_profile()
                write_tiff16(fh, arr, profile, info.description, info.software)
    except (OSError, ValueError, KeyError) as exc:
        raise ImageError(f"{where}: {describe(exc)}") from None
    return target


def _verify_16bit(tmp: Path, rgb: np.ndarray) -> None:
    """Decode the 16-bit file in full with Pillow (8 bits) and compare with the high bytes."""
    with open(tmp, "rb") as fh, Image.open(fh) as im:
        im.load()
        if im.size != (rgb.shape[1], rgb.shape[0]):
            raise ValueError(f"decoded size {im.size} differs from the image's")
        decoded = np.asarray(im)
        rows = strip_rows(rgb.shape[1])
        for top in range(0, rgb.shape[0], rows):
            if not np.array_equal(decoded[top:top + rows], to_uint16(rgb[top:top + rows]) >> 8):
                raise ValueError("the decoded pixels differ from the image's")


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
