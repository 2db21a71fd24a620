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


def save_figure(fig, path: str | Path, dpi: int = 100) -> Path:
    """Lay out ``fig``, write it as PNG atomically (temp file + rename), and close it."""
    from .files import atomic_path
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    pyplot().close(fig)
    return path


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
                    result: np.ndarray, history: Mapping[str, Sequence[float]]) -> Path:
    """Write one PNG: content, style image(s), result, and the loss curves; atomically."""
    plt = pyplot()
    panels = [("content", content), *[(f"style {i + 1}" if len(styles) > 1 else "style", s)
                                      for i, s in enumerate(styles)], ("result", result)]
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(3.2 * (len(panels) + 1), 3.4))
    for ax, (title, img) in zip(axes, panels):
        ax.imshow(img)
        ax.set_title(title)
        ax.axis("off")
    plot_losses(axes[-1], history, "losses")
    return save_figure(fig, path)


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
