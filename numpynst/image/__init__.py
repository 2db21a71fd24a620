"""Images in and out: everything the rest of numpynst sees of a picture is RGB ``uint8 (H, W, 3)``.

This package is the only place that talks to Pillow. One idea per module:

* :mod:`~numpynst.image.samples` -- the bundled sample images (``SAMPLES``, ``sample_path``,
  the demo pair ``DEMO_CONTENT`` + ``DEMO_STYLE``);
* :mod:`~numpynst.image.decode` -- reading files and checking pixels (``load_image``, the one
  rule for arrays: ``as_rgb``, ``pixels_uint8``, ``checked_pixels``; ``DEFAULT_MAX_PIXELS``);
* :mod:`~numpynst.image.resize` -- sizes, resizing and colour (``MAX_SIZE``, ``resize_image``,
  ``resize_to``, ``scaled_shape``, ``round_to_multiple``, ``grid_shapes``, YIQ and ``preserve_color``);
* :mod:`~numpynst.image.color` -- colour matching of the style image to the photo
  (``match_color``, ``color_transform``, ``color_statistics``: mean and covariance of RGB);
* :mod:`~numpynst.image.mask` -- masks for spatial control (``load_masks``: files or arrays as
  ``[0, 1]`` floats at the picture's size, checked; ``uncovered``);
* :mod:`~numpynst.image.save` -- saving (``save_image``: 8-bit all-or-nothing, 16-bit PNG/TIFF,
  ``ImageInfo``, ICC profiles; ``SAVE_FORMATS``, ``IMAGE_SUFFIXES``).

Every name is re-exported here: ``from numpynst.image import load_image`` is the way to use it.
Atomic writes and file identity live in :mod:`numpynst.files`.
"""

from __future__ import annotations

from .color import COLOR_METHODS, color_statistics, color_transform, match_color
from .decode import DEFAULT_MAX_PIXELS, as_rgb, checked_pixels, image_mode, image_shape, load_image, pixels_uint8
from .mask import load_masks, uncovered
from .resize import (MAX_SIZE, RGB_TO_YIQ, YIQ_TO_RGB, preserve_color, resize_image, resize_to,
                     rgb_to_yiq, round_to_multiple, scaled_shape, yiq_to_rgb, grid_shapes)
from .samples import DEMO_CONTENT, DEMO_STYLE, PAINTINGS, SAMPLES, SAMPLES_DIR, sample_names, sample_path
from .save import (DEEP_FORMATS, IMAGE_SUFFIXES, SAVE_FORMATS, ImageInfo, icc_profile, save_image,
                   srgb_profile)

__all__ = [
    "DEFAULT_MAX_PIXELS", "MAX_SIZE", "SAVE_FORMATS", "SAMPLES", "SAMPLES_DIR", "PAINTINGS", "DEMO_CONTENT",
    "DEMO_STYLE", "IMAGE_SUFFIXES", "load_image", "image_shape", "save_image", "resize_image",
    "resize_to", "scaled_shape", "round_to_multiple", "grid_shapes", "as_rgb", "pixels_uint8", "checked_pixels",
    "ImageInfo", "icc_profile", "srgb_profile", "DEEP_FORMATS", "preserve_color", "rgb_to_yiq",
    "yiq_to_rgb", "sample_path", "sample_names", "RGB_TO_YIQ", "YIQ_TO_RGB", "image_mode",
    "COLOR_METHODS", "color_statistics", "color_transform", "match_color", "load_masks", "uncovered",
]
