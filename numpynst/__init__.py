"""numpynst: neural style transfer from first principles in NumPy (and CuPy on GPUs).

Start with :func:`numpynst.stylize` for a picture, or the tutorials for the derivations.
"""

__version__ = "0.1.0"

from .errors import (BackendError, ImageError, ManifestError, NumpynstError,  # noqa: F401
                     OptionError, WeightsError)
