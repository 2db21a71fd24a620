"""Figures for a finished run: content | style | result, and the loss curves (matplotlib, Agg).

Kept apart from the numerical code so that nothing else imports matplotlib.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np


def pyplot():
    import matplotlib
    matplotlib.use("Agg", force=False)      # no display needed; respects an already chosen backend
    import matplotlib.pyplot as plt
    return plt


#: Figure formats :func:`save_figure` writes and can check after writing.
FIGURE_FORMATS = ("png", "jpg", "jpeg", "pdf", "svg")


def save_figure(fig, path: str | Path, dpi: int = 100, *, format: str = "png",
                overwrite: bool = True) -> Path:
    """Lay out ``fig``, write it all-or-nothing, and close it (also on failure).

    The temporary is read back before it takes the name (:func:`verify_figure`), and an existing
    file is replaced only with ``overwrite`` and only if it is a regular file
    (:func:`numpynst.files.atomic_file`). Errors are :class:`OSError`.
    """
    from .files import atomic_file
    path = Path(path)
    try:
        fig.tight_layout()
        with atomic_file(path, overwrite=overwrite, verify=lambda tmp: verify_figure(tmp, format)) as fh:
            fig.savefig(fh, dpi=dpi, format=format)
    finally:
        pyplot().close(fig)
    return path


def verify_figure(path: Path, fmt: str) -> None:
    """Raise unless ``path`` holds a complete figure: raster formats are decoded in full, a PDF
    must end with its ``%%EOF`` trailer, an SVG must parse as XML."""
    fmt = fmt.lower()
    if fmt in ("png", "jpg", "jpeg"):
        from PIL import Image
        with Image.open(path) as im:
            im.load()
        if fmt != "png":
            with open(path, "rb") as fh:
                fh.seek(-2, 2)
                if fh.read(2) != b"\xff\xd9":
                    raise ValueError("the JPEG has no end-of-image marker")
    elif fmt == "pdf":
        with open(path, "rb") as fh:
            head = fh.read(5)
            fh.seek(max(0, fh.seek(0, 2) - 1024))
            tail = fh.read()
        if head != b"%PDF-" or b"%%EOF" not in tail:
            raise ValueError("the PDF is incomplete")
    elif fmt == "svg":
        import xml.etree.ElementTree as ET
        ET.parse(path)
    else:
        raise ValueError(f"unknown figure format {fmt!r}")


def plot_losses(ax, history: Mapping[str, Sequence[float]], title: str = "loss") -> None:
    """Draw ``J`` and its parts on a log scale against the iteration number."""
    for key, style in (("J", "-"), ("content", "--"), ("style", ":"), ("tv", "-.")):
        values = np.asarray(history.get(key, []), dtype=float)
        if values.size and np.any(values > 0):
            ax.plot(np.arange(values.size), np.where(values > 0, values, np.nan), style, label=key)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize="small")


def save_run_figure(path: str | Path, content: np.ndarray, styles: Sequence[np.ndarray],
                    result: np.ndarray, history: Mapping[str, Sequence[float]], *,
                    overwrite: bool = True) -> Path:
    """Write one PNG: content, style image(s), result, and the loss curves (:func:`save_figure`)."""
    plt = pyplot()
    panels = [("content", content), *[(f"style {i + 1}" if len(styles) > 1 else "style", s)
                                      for i, s in enumerate(styles)], ("result", result)]
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(3.2 * (len(panels) + 1), 3.4))
    for ax, (title, img) in zip(axes, panels):
        ax.imshow(img)
        ax.set_title(title)
        ax.axis("off")
    plot_losses(axes[-1], history, "losses")
    return save_figure(fig, path, overwrite=overwrite)


def save_optimizer_comparison(path: str | Path, histories: Mapping[str, Mapping[str, Sequence[float]]],
                              seconds: Mapping[str, float] | None = None) -> Path:
    """Write a PNG with one J curve per optimizer (``{"lbfgs": history, ...}``), normalised by J_0."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, hist in histories.items():
        J = np.asarray(hist["J"], dtype=float)
        label = name if not seconds else f"{name} ({seconds[name]:.0f} s)"
        ax.plot(np.arange(J.size), J / J[0], label=label)
    ax.set_yscale("log")
    ax.set_xlabel("iteration (function evaluations)")
    ax.set_ylabel("J / J_0")
    ax.set_title("gradient descent vs Adam vs L-BFGS")
    ax.legend()
    return save_figure(fig, path)
