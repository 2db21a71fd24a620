"""``numpynst stylize CONTENT STYLE [STYLE ...] -o OUT``: one picture, every knob of :func:`stylize`.

Safety rules: the output may never be one of the inputs; an existing output is left alone unless
``--overwrite``; every file is written atomically; Ctrl-C saves the best image so far.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..arch import parse_layer_weights
from ..errors import ImageError, OptionError
from ..image import IMAGE_SUFFIXES
from ..transfer import (DEFAULT_ALPHA, DEFAULT_BETA, DEFAULT_CONTENT_LAYER, DEFAULT_ITERATIONS,
                        DEFAULT_STYLE_LAYERS, DEFAULT_TOL, DEFAULT_TV_WEIGHT, INITS)
from ..optim import OPTIMIZERS

def _style_layers_arg(text: str) -> dict[str, float]:
    try:
        return parse_layer_weights(text)
    except ValueError as exc:        # argparse reports ArgumentTypeError's text as is
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_stylize_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``stylize`` and ``demo``."""
    g = p.add_argument_group("picture")
    g.add_argument("--size", type=int, default=None,
                   help="longest side of the result in pixels (default: the content's size)")
    g.add_argument("--style-scale", type=float, default=1.0,
                   help="style image size relative to the content; < 1 gives bigger strokes (default 1)")
    g.add_argument("--style-blend", type=float, nargs="+", metavar="W",
                   help="one weight per style image, to blend several styles (default: equal)")
    g.add_argument("--preserve-color", action="store_true",
                   help="keep the content's colours, transfer luminance only")
    g.add_argument("--init", default="content",
                   help=f"starting image: {', '.join(INITS)}, or an image path (default: content)")
    g.add_argument("--seed", type=int, default=0, help="seed of the noise init (default 0)")
    o = p.add_argument_group("optimisation")
    o.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS,
                   help=f"iteration cap per scale (default {DEFAULT_ITERATIONS})")
    o.add_argument("--optimizer", choices=OPTIMIZERS, default="lbfgs", help="default: lbfgs")
    o.add_argument("--lr", type=float, default=None, help="step size for adam/gd")
    o.add_argument("--alpha", "--content-weight", dest="alpha", type=float, default=DEFAULT_ALPHA,
                   help=f"content weight (default {DEFAULT_ALPHA:g})")
    o.add_argument("--beta", "--style-weight", dest="beta", type=float, default=DEFAULT_BETA,
                   help=f"style weight (default {DEFAULT_BETA:g})")
    o.add_argument("--tv-weight", type=float, default=DEFAULT_TV_WEIGHT,
                   help=f"total-variation weight (default {DEFAULT_TV_WEIGHT:g})")
    o.add_argument("--content-layer", default=DEFAULT_CONTENT_LAYER,
                   help=f"default {DEFAULT_CONTENT_LAYER}")
    o.add_argument("--style-layers", type=_style_layers_arg, default=None,
                   help="comma list NAME[:WEIGHT] (default: "
                        + ",".join(f"{k}:{v:g}" for k, v in DEFAULT_STYLE_LAYERS.items()) + ")")
    o.add_argument("--scales", type=float, nargs="+", metavar="S",
                   help="coarse-to-fine schedule, e.g. 0.25 0.5 1 (default: full size only)")
    o.add_argument("--tol", type=float, default=DEFAULT_TOL,
                   help=f"stop when J falls by less than this fraction over 20 iterations; 0 = never "
                        f"(default {DEFAULT_TOL:g})")
    m = p.add_argument_group("model and device")
    m.add_argument("--backend", choices=["numpy", "cupy", "auto"], default="numpy", help="default: numpy")
    m.add_argument("--weights", default=None, help="VGG16/19 HDF5 weights (default: the shipped VGG19)")
    m.add_argument("--pooling", choices=["max", "avg"], default="max", help="default: max")
    r = p.add_argument_group("output")
    r.add_argument("--save-every", type=int, default=0, metavar="N",
                   help="also save every N-th iterate into OUT_frames/ (default: off)")
    r.add_argument("--plot", action="store_true",
                   help="also write OUT_plot.png: content | style | result and the loss curves")
    r.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    r.add_argument("--quiet", action="store_true", help="no progress bar")


def register(subparsers) -> None:
    p = subparsers.add_parser("stylize", help="paint CONTENT in the style of STYLE",
                              description=__doc__.splitlines()[0])
    p.add_argument("content", help="content image (a photo)")
    p.add_argument("style", nargs="+", help="style image(s) (paintings); several are blended")
    p.add_argument("-o", "--output", required=True, help="result image (.png, .jpg, ...)")
    add_stylize_options(p)
    p.set_defaults(func=run)


def check_output(output: str | Path, inputs: list[str | Path], overwrite: bool) -> Path:
    """Refuse an output that is an input, has no image suffix, or exists (without ``overwrite``)."""
    from ..files import same_file
    out = Path(output)
    if out.suffix.lower() not in IMAGE_SUFFIXES:
        raise OptionError(f"--output {out}: unknown image type {out.suffix or '(none)'!r}; "
                          f"use one of {', '.join(IMAGE_SUFFIXES)}")
    for src in inputs:
        if same_file(src, out):
            raise OptionError(f"--output {out} is the input {src}: refusing to overwrite an input")
    if out.is_dir():
        raise OptionError(f"--output {out} is a directory; give a file name such as {out / 'result.png'}")
    if out.exists() and not overwrite:
        raise OptionError(f"--output {out} exists; pass --overwrite to replace it")
    if not out.parent.exists():
        raise OptionError(f"--output {out}: directory {out.parent} does not exist")
    return out


def stylize_to_file(args, content, styles: list, output: Path, log=print) -> int:
    """Run :func:`stylize` with the parsed options and write the result (and frames/plot)."""
    from ..image import load_image, save_image
    from ..transfer import stylize
    from ..vgg import deprocess

    for opt in ("iterations", "save_every"):
        if getattr(args, opt) < 0:
            raise OptionError(f"--{opt.replace('_', '-')} must be >= 0, got {getattr(args, opt)}")
    init = args.init
    if init not in INITS and not Path(init).exists():
        raise ImageError(f"--init {init}: not one of {', '.join(INITS)} and no such file")

    frames_dir = output.with_name(output.stem + "_frames")
    callback = None
    if args.save_every:
        frames_dir.mkdir(exist_ok=True)

        def callback(p):
            if p.iteration % args.save_every == 0:
                name = f"s{p.scale:g}_{p.iteration:05d}.png" if args.scales else f"{p.iteration:05d}.png"
                save_image(frames_dir / name, deprocess(p.x))

    result = stylize(content, styles, size=args.size, iterations=args.iterations, optimizer=args.optimizer,
                     lr=args.lr, alpha=args.alpha, beta=args.beta, tv_weight=args.tv_weight,
                     content_layer=args.content_layer, style_layers=args.style_layers,
                     style_blend=args.style_blend, style_scale=args.style_scale, init=init, seed=args.seed,
                     preserve_color=args.preserve_color, backend=args.backend, weights=args.weights,
                     pooling=args.pooling, tol=args.tol or None, callback=callback, scales=args.scales,
                     progress=not args.quiet)
    save_image(output, result.image)
    J = result.history["J"]
    log(f"wrote {output} ({result.image.shape[1]}x{result.image.shape[0]}, {result.iterations} iterations, "
        f"{result.seconds:.1f} s, J {J[0]:.4g} -> {result.J_final:.4g} = {result.J_final / J[0]:.1%} of start, "
        f"stopped: {result.stopped})")
    if args.save_every:
        log(f"frames in {frames_dir}/")
    if args.plot:
        from ..plots import save_run_figure
        content_rgb = load_image(content, size=max(result.image.shape[:2]))
        style_rgbs = [load_image(s, size=max(result.image.shape[:2])) for s in styles]
        plot = save_run_figure(output.with_name(output.stem + "_plot.png"), content_rgb, style_rgbs,
                               result.image, result.history)
        log(f"figure in {plot}")
    if result.stopped == "interrupted":
        log("interrupted: saved the best image so far")
        return 130
    if result.stopped == "non-finite loss":
        print("numpynst: the loss became NaN/inf; saved the last finite image. Lower --lr or the weights.",
              file=sys.stderr)
        return 1
    return 0


def run(args) -> int:
    output = check_output(args.output, [args.content, *args.style], args.overwrite)
    return stylize_to_file(args, args.content, list(args.style), output)
