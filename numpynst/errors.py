"""Error types that carry a one-line, user-facing message.

Every error a user can cause with bad input (a wrong file, a bad option, a missing GPU) derives from
:class:`NumpynstError`. The CLI catches exactly this family, prints ``numpynst: error: <message>``
and exits non-zero, so a user never sees a traceback for their own mistake; anything else is a bug
and keeps its traceback.
"""


class NumpynstError(Exception):
    """Base class of user-facing errors; ``str(err)`` is a complete one-line message."""


class BackendError(NumpynstError, RuntimeError):
    """The requested array backend cannot be used (e.g. ``cupy`` without CuPy or without a GPU)."""


class WeightsError(NumpynstError, ValueError):
    """A weights file is missing, unreadable, or does not hold a valid VGG (names file and layer)."""


class ImageError(NumpynstError, ValueError):
    """An image file cannot be read or written, or its size is unacceptable (names the file)."""


class OptionError(NumpynstError, ValueError):
    """An option or argument has an invalid value (names the option)."""


class ManifestError(NumpynstError, ValueError):
    """A batch manifest is malformed (names the file, the row and the column)."""


class VideoError(NumpynstError, ValueError):
    """A video or frames folder cannot be read or written, or is not something the video command takes."""
