"""What a saved picture says about itself: its bit depth, colour profile and how it was made.

``numpynst stylize`` writes, into every output that can hold them (:class:`numpynst.image.ImageInfo`):

* the colour profile: the content photo's own ICC profile when it has an RGB one (the result's
  pixels are the photo's colours, moved around), else sRGB;
* ``Software``: ``numpynst <version>``;
* ``Description``: a JSON record of the run (ASCII, keys sorted), readable with any EXIF/PNG tool
  or ``PIL.Image.open(path).info["Description"]`` (PNG) / ``.tag_v2[270]`` (TIFF): the input file
  names, every option that shapes the picture (weights, layers, iterations, optimizer, seed,
  scales, ...), and what happened (size, iterations run, J at the start and the end, why it
  stopped, seconds).

The input files are named by their base names only: a picture sent to a print shop should not
carry the paths of someone's home folder. Options about where and how the run was carried out
(output, overwrite, progress bar, frames, workers, scheduler) do not change the picture and are
left out.

**Bit depth.** ``--bit-depth`` defaults to 16 for ``.tif``/``.tiff`` (a TIFF is asked for to
print) and to 8 for everything else; ``--bit-depth 16`` also works for ``.png``. Other formats hold
8 bits, and asking them for 16 is an error naming the option.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Sequence

from . import __version__
from .errors import OptionError, short_path
from .image import DEEP_FORMATS, SAVE_FORMATS, ImageInfo, icc_profile

__all__ = ["bit_depth_for", "run_info", "run_record"]

#: Options that hold file names (recorded by base name).
FILE_PARAMETERS = ("init", "weights", "masks", "style_masks")


def bit_depth_for(output: str | os.PathLike, requested: int | None) -> int:
    """The bit depth to write ``output`` with: ``requested``, or 16 for TIFF and 8 otherwise.

    Raises :class:`OptionError` naming ``--bit-depth`` when the format holds only 8 bits.
    """
    path = Path(output)
    fmt = SAVE_FORMATS.get(path.suffix.lower())
    if requested is None:
        return 16 if fmt == "TIFF" else 8
    if requested not in (8, 16):
        raise OptionError(f"--bit-depth must be 8 or 16, got {requested!r}")
    if requested == 16 and fmt not in DEEP_FORMATS:
        raise OptionError(f"--bit-depth 16: --output {short_path(path)} is {path.suffix or 'without a suffix'}, "
                          f"which holds 8 bits per channel; use .png or .tif")
    return requested


def _name(value: Any) -> Any:
    if isinstance(value, (list, tuple)):                 # masks: a list of files (or arrays)
        return [_name(v) for v in value]
    if hasattr(value, "shape") and hasattr(value, "dtype"):      # an array given in Python
        return f"array {tuple(value.shape)}"
    return os.path.basename(os.fspath(value)) if isinstance(value, (str, os.PathLike)) else value


def run_record(options: Any, content: Any, styles: Sequence[Any], result: Any) -> dict[str, Any]:
    """The JSON-ready record of one run: inputs, the options that shaped the picture (a
    :class:`numpynst.options.StylizeOptions`: every field, file names by base name), and the
    outcome from ``result`` (a :class:`numpynst.transfer.Result`)."""
    options = dict(sorted(dataclasses.asdict(options).items()))
    for key in FILE_PARAMETERS:
        options[key] = _name(options[key])
    starts = getattr(result, "scale_starts", (0,))       # J of the last (full-size) scale only
    J = [float(v) for v in result.history.get("J", [])[starts[-1]:] if math.isfinite(v)]
    height, width = result.image.shape[:2]
    return {
        "numpynst": __version__,
        "content": _name(content),
        "styles": [_name(s) for s in styles],
        "options": options,
        "size": f"{width}x{height}",
        "iterations_run": int(result.iterations),
        "J_start": J[0] if J else None,
        "J_final": min(J) if J else None,
        "stopped": result.stopped,
        "seconds": round(float(result.seconds), 1),
        "made": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def run_info(options: Any, content: Any, styles: Sequence[Any], result: Any) -> ImageInfo:
    """:class:`ImageInfo` for a run's picture: the content's RGB ICC profile (else sRGB), the
    software and the :func:`run_record` as JSON."""
    profile = icc_profile(content) if isinstance(content, (str, os.PathLike)) else None
    record = json.dumps(run_record(options, content, styles, result), sort_keys=True,
                        ensure_ascii=True, default=str)
    return ImageInfo(profile, record, f"numpynst {__version__}")
