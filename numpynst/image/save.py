"""Saving images: 8-bit files all-or-nothing, 16-bit PNG/TIFF for print, colour profile and tags.

The idea: a picture is written once, completely, or not at all. :func:`save_image` takes an
``(H, W, 3)`` RGB or ``(H, W)`` grey array (NumPy or CuPy; values by
:func:`~numpynst.image.decode.pixels_uint8`'s rule, 0..255 scale), picks the format from the
extension (:data:`SAVE_FORMATS`), writes a temporary beside the target, fsyncs it, decodes it
back in full (lossless formats must give back exactly the pixels) and only then gives it the name
(:mod:`numpynst.files`). With ``bit_depth=16`` (``.png``/``.tif`` only, :data:`DEEP_FORMATS`)
the float values are written as ``rint(257 v)`` by :mod:`numpynst.print_output`. An
:class:`ImageInfo` says what the file records about itself: ICC profile (sRGB by default,
:func:`srgb_profile`), description, software; :func:`icc_profile` reads a photo's own profile.

``save_image(path, rgb, quality=95, overwrite=True) -> Path``
``save_image(path, rgb_float, bit_depth=16, info=ImageInfo(...))``
``icc_profile(path)`` (an image file's RGB ICC profile, or None), ``srgb_profile()``
``IMAGE_SUFFIXES`` (the file extensions read and written)
"""

from __future__ import annotations

import functools
import os
import struct
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..backend import to_host
from ..errors import ImageError, OptionError, short_path
from ..files import atomic_file, check_writable, describe, open_regular
from ..print_output import SRGB_CHUNKS, strip_rows, to_uint16, write_png16, write_tiff16
from .decode import _DECODE_ERRORS, checked_pixels, pixels_uint8

__all__ = ["SAVE_FORMATS", "IMAGE_SUFFIXES", "DEEP_FORMATS", "ImageInfo", "save_image",
           "icc_profile", "srgb_profile"]

#: File extension -> Pillow format name, for :func:`save_image`.
SAVE_FORMATS = {
    ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP",
    ".tif": "TIFF", ".tiff": "TIFF",
}

#: The image file extensions numpynst reads and writes (lower case, with the dot).
IMAGE_SUFFIXES = tuple(SAVE_FORMATS)


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
        raise ImageError(f"cannot save image {short_path(target)}: unknown file extension {shown}; "
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
        raise ImageError(f"cannot save image {short_path(target)}: {describe(exc)}") from None
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
    return pixels_uint8(_host_image(rgb, target), f"cannot save image {short_path(target)}", error=ImageError)


def _host_image(rgb: Any, target: Path) -> np.ndarray:
    """``rgb`` on the host as ``(H, W, 3)`` or ``(H, W)``, else ImageError naming ``target``."""
    arr = to_host(rgb)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)) or arr.size == 0:
        raise ImageError(f"cannot save image {short_path(target)}: expected an array of shape (H, W, 3) or "
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
        raise ImageError(f"cannot save image {short_path(target)} with 16 bits per channel: "
                         f"{target.suffix} holds 8 bits; use .png or .tif")
    where = f"cannot save image {short_path(target)}"
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
