"""numpynst: neural style transfer from first principles in NumPy (and CuPy on GPUs).

Start with :func:`numpynst.stylize` for a picture, or the tutorials for the derivations::

    import numpynst
    result = numpynst.stylize("photo.jpg", "painting.jpg", size=512)
    numpynst.save_image("out.png", result.image)
"""

__version__ = "0.1.0"

from .errors import (BackendError, ImageError, ManifestError, NumpynstError,  # noqa: F401
                     OptionError, WeightsError)
from .image import load_image, save_image  # noqa: F401,E402
from .options import StylizeOptions  # noqa: F401,E402
from .transfer import Objective, Result, stylize  # noqa: F401,E402
from .vgg import VGG, deprocess, preprocess  # noqa: F401,E402
from .video import stylize_video  # noqa: F401,E402

__all__ = [
    "stylize", "stylize_video", "StylizeOptions", "Objective", "Result", "VGG", "preprocess", "deprocess", "load_image", "save_image",
    "NumpynstError", "BackendError", "WeightsError", "ImageError", "OptionError", "ManifestError",
]
