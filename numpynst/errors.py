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


class ClusterLost(NumpynstError, RuntimeError):
    """The machines that evaluate the objective are gone (a Dask scheduler lost): the optimisation
    cannot go on, but what it reached is good. :func:`numpynst.optim.minimize` ends with
    ``stopped="cluster lost"`` and keeps its best point; the message says what was lost."""


#: Longest file name a message shows in full; a longer one keeps its start and its end
#: (:func:`short_path`), so that a 300-character path still leaves a one-line message readable.
SHOWN_PATH = 100


def short_path(path, limit: int = SHOWN_PATH) -> str:
    """``path`` as text for a message, abbreviated in the middle when longer than ``limit``.

    The start (where the path is rooted) and the end (the file's own name, the part a user
    recognises) are kept, the middle becomes ``...``: ``/home/ann/very/.../deep/out.png``. The end
    gets two thirds of the room. Every message that names a file goes through this one function.
    """
    import os
    try:
        text = os.fsdecode(os.fspath(path))
    except TypeError:
        text = str(path)
    if len(text) <= limit:
        return text
    room = max(limit - 3, 2)
    head = room // 3
    return text[:head] + "..." + text[len(text) - (room - head):]

class VideoError(NumpynstError, ValueError):
    """A video or frames folder cannot be read or written, or is not something the video command takes."""
