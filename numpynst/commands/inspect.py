"""``numpynst inspect IMAGE --layer block3_conv1 -o maps.png``: what a VGG layer sees in an image.

Runs the image through VGG to one layer and draws a grid of that layer's strongest feature maps
(the channels with the largest mean activation), next to the input.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..backend import to_host
from ..errors import OptionError

DEFAULT_LAYER = "block3_conv1"


def register(subparsers) -> None:
    p = subparsers.add_parser("inspect", help="draw the strongest feature maps of a VGG layer",
                              description=__doc__.splitlines()[0])
    p.add_argument("image", help="input image")
    p.add_argument("--layer", default=DEFAULT_LAYER, help=f"VGG layer name (default: {DEFAULT_LAYER})")
    p.add_argument("-o", "--output", required=True, help="figure to write (.png, .pdf, .svg, .jpg)")
    p.add_argument("--channels", type=int, default=16, help="number of feature maps to draw (default 16)")
    p.add_argument("--size", type=int, default=256, help="resize the image's longest side to this (default 256)")
    p.add_argument("--weights", default=None, help="VGG16/19 HDF5 weights (default: the shipped VGG19)")
    p.add_argument("--backend", choices=["numpy", "cupy", "auto"], default="numpy", help="default: numpy")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=run)


def strongest_channels(act: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` channels of ``act (H, W, C)`` with the largest mean, strongest first."""
    means = act.reshape(-1, act.shape[-1]).mean(axis=0)
    return np.argsort(-means, kind="stable")[:k]


def feature_grid(rgb: np.ndarray, act: np.ndarray, channels: np.ndarray, title: str):
    """A matplotlib figure: the input image, then ``act[:, :, c]`` for each ``c`` in ``channels``."""
    from ..plots import pyplot
    plt = pyplot()

    n = len(channels) + 1
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    aspect = act.shape[0] / act.shape[1]
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, (2.2 * aspect + 0.35) * rows + 0.4),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    axes.flat[0].imshow(rgb)
    axes.flat[0].set_title("input", fontsize=8)
    for ax, c in zip(axes.flat[1:], channels):
        ax.imshow(act[:, :, c], cmap="viridis")
        ax.set_title(f"channel {c} (mean {act[:, :, c].mean():.3g})", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def run(args) -> int:
    from ..checks import integer
    from ..files import check_writable, describe, regular_file, same_file
    from ..image import load_image
    from ..plots import FIGURE_FORMATS, save_figure
    from ..vgg import VGG

    # every check before the model is loaded: the input is a regular file (a FIFO would block),
    # the output is not it, can be written, and exists only with --overwrite
    image = regular_file(args.image, "image")
    if args.weights is not None:
        regular_file(args.weights, "--weights")
    output = Path(args.output).expanduser()
    fmt = output.suffix.lower().lstrip(".")
    if fmt not in FIGURE_FORMATS:
        raise OptionError(f"--output {output}: unsupported figure format {output.suffix or '(none)'!r}; "
                          f"use .png, .pdf, .svg or .jpg")
    for label, src in (("image", image), ("--weights", args.weights)):
        if src is not None and same_file(output, src):
            raise OptionError(f"--output {output} is the input {label}; choose another file name")
    check_writable(args.output, "--output", overwrite=args.overwrite)   # raw: a trailing / is refused
    integer("--channels", args.channels, minimum=1)
    rgb = load_image(image, size=args.size)
    model = VGG.from_h5(args.weights, backend=args.backend)
    act = to_host(model.forward(model.preprocess(rgb), [args.layer], keep_cache=False)[args.layer])[0]
    chosen = strongest_channels(act, min(args.channels, act.shape[-1]))
    title = (f"{args.layer} of {image.name}: {act.shape[0]}x{act.shape[1]}x{act.shape[2]}, "
             f"{len(chosen)} strongest channels by mean activation")
    fig = feature_grid(rgb, act, chosen, title)
    try:
        save_figure(fig, output, dpi=110, format="jpeg" if fmt == "jpg" else fmt,
                    overwrite=args.overwrite)
    except OSError as exc:
        raise OptionError(f"--output {output}: cannot write ({describe(exc)})") from None
    print(output)
    return 0
