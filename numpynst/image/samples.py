"""The bundled sample images: a few small photographs and textures shipped with numpynst.

The idea: a name (``"chelsea"``, ``"ihc"``, ...) stands for a picture that is always there, so
the demo, the tutorials, the benchmarks and the tests need no download. :data:`SAMPLES` maps each
name to its file, kind (``"content"`` photo or ``"style"`` texture), title and credit; the files
live in ``numpynst/data/samples/`` (:data:`SAMPLES_DIR`) beside their ``CREDITS.md``.
:data:`DEMO_CONTENT` + :data:`DEMO_STYLE` are the pair ``numpynst demo`` stylizes, and
``"content"`` / ``"style"`` are accepted as aliases of them.

This module hands out paths only; reading one gives the usual ``uint8 (H, W, 3)`` RGB array
through :func:`numpynst.image.load_image`.

``sample_path(name) -> Path``, ``sample_names(kind=None) -> list[str]``
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ImageError, OptionError

__all__ = ["SAMPLES", "SAMPLES_DIR", "PAINTINGS", "DEMO_CONTENT", "DEMO_STYLE", "sample_path", "sample_names"]

#: ``numpynst/data/samples`` (this file is ``numpynst/image/samples.py``).
SAMPLES_DIR = Path(__file__).resolve().parent.parent / "data" / "samples"

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
    "starry_night": {
        "file": "starry_night.jpg", "kind": "style", "title": "The Starry Night (Vincent van Gogh, 1889), crop",
        "credit": "public domain (the artist died in 1890)"},
    "wave": {
        "file": "wave.jpg", "kind": "style",
        "title": "The Great Wave off Kanagawa (Katsushika Hokusai, c. 1831), crop",
        "credit": "public domain (the artist died in 1849)"},
    "shipwreck": {
        "file": "shipwreck.jpg", "kind": "style", "title": "The Shipwreck (J. M. W. Turner, 1805)",
        "credit": "public domain (the artist died in 1851)"},
}

#: The styles that are paintings (public domain), for the gallery and the picture benchmark.
PAINTINGS = ("starry_night", "wave", "shipwreck")

#: The pair ``numpynst demo`` stylizes.
DEMO_CONTENT = "chelsea"
DEMO_STYLE = "starry_night"

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
