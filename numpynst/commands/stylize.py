"""``numpynst stylize CONTENT STYLE [STYLE ...] -o OUT``: one picture, every knob of :func:`stylize`.

Safety rules, all checked before the (long) run starts:

* no output (the picture, ``OUT_plot.png``, ``OUT_frames/NNNNN.png``) may be an input (content,
  styles, ``--init``, ``--weights``), with or without ``--overwrite``;
* an existing output is left alone unless ``--overwrite``, and even then only a regular file the
  tool would write is replaced, never a symbolic link, directory or other file;
* the folders exist and are writable and every name fits the filesystem, so a run never fails at
  the end for a reason that was knowable at the start;
* inputs must be regular files (a FIFO would block forever), numbers must be finite and in range.

At the end each file is written to a verified temporary and moved into place without replacing
anything that appeared during the run (:mod:`numpynst.files`); if the output path was taken
meanwhile, the picture is saved beside it under a new name rather than lost. Ctrl-C and SIGTERM
save the best image so far (exit 130 / 143).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path
from typing import NamedTuple

from ..arch import parse_layer_weights
from ..errors import ImageError, OptionError
from ..image import IMAGE_SUFFIXES, MAX_SIZE
from ..transfer import MAX_ITERATIONS  # the cap per scale, --iterations and --save-every alike
from ..transfer import (DEFAULT_ALPHA, DEFAULT_BETA, DEFAULT_CONTENT_LAYER, DEFAULT_ITERATIONS,
                        DEFAULT_STYLE_LAYERS, DEFAULT_TOL, DEFAULT_TV_WEIGHT, INITS, RAW_ALPHA, RAW_BETA,
                        RAW_TV_WEIGHT, WEIGHT_RANGES, WEIGHTS_MODES)
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
    rng = lambda k: "%g..%g" % WEIGHT_RANGES[k]      # noqa: E731
    o.add_argument("--alpha", "--content-weight", dest="alpha", type=float, default=None,
                   help=f"content weight, {rng('alpha')} (default {DEFAULT_ALPHA:g}; raw: {RAW_ALPHA:g})")
    o.add_argument("--beta", "--style-weight", dest="beta", type=float, default=None,
                   help=f"style weight, {rng('beta')}: more is more painting (default {DEFAULT_BETA:g}; "
                        f"raw: {RAW_BETA:g})")
    o.add_argument("--tv-weight", type=float, default=None,
                   help=f"total-variation (smoothness) weight, {rng('tv_weight')} (default "
                        f"{DEFAULT_TV_WEIGHT:g}; raw: {RAW_TV_WEIGHT:g})")
    o.add_argument("--weights-mode", choices=WEIGHTS_MODES, default="calibrated",
                   help="calibrated (default): each term divided by its value at a blank image, the "
                        "ranges above apply; raw: the tutorials' J with the weights as given")
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
    r.add_argument("--bit-depth", type=int, choices=(8, 16), default=None,
                   help="bits per channel: 16 (from the float result, for print) needs .png or .tif "
                        "(default: 16 for .tif, 8 otherwise)")
    r.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    t = p.add_argument_group("print size (memory)")
    t.add_argument("--max-memory", default=None, metavar="SIZE",
                   help="memory budget, e.g. 4GB: the planner runs each scale whole or over exact tiles "
                        "to fit it (default: half of the free memory)")
    t.add_argument("--tile", type=int, default=None, metavar="PX",
                   help="force exact tiles of at most PX x PX pixels (a multiple of the pooling grid, "
                        "at least the halo)")
    t.add_argument("--dry-run", action="store_true",
                   help="print the plan (sizes, tiles, halo, estimated peak memory and time per "
                        "iteration) and exit without running or writing anything")
    t.add_argument("--workers", type=int, default=None, metavar="N",
                   help="run the tiles of every tiled scale on a local Dask cluster of N processes")
    t.add_argument("--scheduler", default=None, metavar="URL",
                   help="run them on the workers of a Dask scheduler, e.g. tcp://head:8786 (workers need "
                        "numpynst and the weights file at the same path)")


def register(subparsers) -> None:
    p = subparsers.add_parser("stylize", help="paint CONTENT in the style of STYLE",
                              description=__doc__.splitlines()[0])
    p.add_argument("content", help="content image (a photo)")
    p.add_argument("style", nargs="+", help="style image(s) (paintings); several are blended")
    p.add_argument("-o", "--output", required=True, help="result image (.png, .jpg, ...)")
    add_stylize_options(p)
    p.set_defaults(func=run)


#: Largest accepted loss weight (alpha, beta, tv_weight), whatever the weights mode: beyond it the
#: weighted terms overflow float32 for ordinary activations.
MAX_LOSS_WEIGHT = 1e15
#: Largest accepted ``--seed`` (NumPy's generators take any non-negative integer; 64 bits is plenty).
MAX_SEED = 2 ** 64 - 1
#: The names ``--save-every`` writes in ``OUT_frames/``: ``00025.png``, or ``s0.5_00025.png`` with --scales.
FRAME_NAME = re.compile(r"(s[0-9][0-9.e+-]*_)?[0-9]{5,}\.png")


class Outputs(NamedTuple):
    """Every path a run writes, checked before it starts."""

    image: Path
    plot: Path | None          # OUT_plot.png with --plot
    frames: Path | None        # OUT_frames/ with --save-every


def check_numbers(args) -> None:
    """Counts and weights: integers in range, finite non-negative weights, not all zero."""
    from ..checks import integer
    integer("--iterations", args.iterations, minimum=0, maximum=MAX_ITERATIONS)
    integer("--save-every", args.save_every, minimum=0, maximum=MAX_ITERATIONS)
    integer("--seed", args.seed, minimum=0, maximum=MAX_SEED)
    if args.size is not None:
        integer("--size", args.size, minimum=16, maximum=MAX_SIZE)
    weights = {"--content-weight/--alpha": args.alpha, "--style-weight/--beta": args.beta,
               "--tv-weight": args.tv_weight}
    for name, value in weights.items():
        if value is not None and not (math.isfinite(value) and 0 <= value <= MAX_LOSS_WEIGHT):
            raise OptionError(f"{name} must be a finite number in 0..{MAX_LOSS_WEIGHT:g}, got {value!r}")
    if all(v == 0 for v in weights.values()):
        raise OptionError("--alpha, --beta and --tv-weight are all 0: there is nothing to minimise")
    from ..transfer import default_weights       # the mode's range (calibrated: the documented one)
    default_weights(args.weights_mode, args.alpha, args.beta, args.tv_weight)
    for name in ("lr", "tol", "style_scale"):
        value = getattr(args, name, None)
        if value is not None and not math.isfinite(value):
            raise OptionError(f"--{name.replace('_', '-')} must be a finite number, got {value!r}")
    for name in ("scales", "style_blend"):
        values = getattr(args, name, None) or []
        if not all(math.isfinite(v) for v in values):
            raise OptionError(f"--{name.replace('_', '-')} must be finite numbers, got {values}")


def check_inputs(args, content, styles: list) -> list[tuple[str, Path]]:
    """``[(argument, path)]`` of every input file, each checked to be a readable regular file."""
    from ..files import regular_file
    inputs = [("content image", content), *[(f"style image #{i + 1}" if len(styles) > 1 else "style image", s)
                                            for i, s in enumerate(styles)]]
    if args.init not in INITS:
        try:
            regular_file(args.init, "--init")
        except OptionError as exc:
            raise OptionError(f"{exc} (--init is one of {', '.join(INITS)} or an image file)") from None
        inputs.append(("--init", args.init))
    if args.weights is not None:
        inputs.append(("--weights", args.weights))
    return [(what, regular_file(path, what)) for what, path in inputs]


def _not_an_input(what: str, path: Path, inputs: list[tuple[str, Path]]) -> None:
    from ..files import same_file
    for label, src in inputs:
        if same_file(src, path):
            raise OptionError(f"{what} {path} is the input {src} ({label}): refusing to overwrite an input")


def check_output(output: str | Path, inputs: list[tuple[str, Path]], overwrite: bool) -> Path:
    """The result path, refused if it is an input, has no image suffix, can't be written, or exists
    (without ``overwrite``). ``inputs`` from :func:`check_inputs`."""
    from ..files import check_writable
    out = Path(output).expanduser()
    if out.suffix.lower() not in IMAGE_SUFFIXES:
        raise OptionError(f"--output {out}: unknown image type {out.suffix or '(none)'!r}; "
                          f"use one of {', '.join(IMAGE_SUFFIXES)}")
    _not_an_input("--output", out, inputs)
    return check_writable(output, "--output", overwrite=overwrite)   # raw: a trailing / is refused


def check_derived(args, output: Path, inputs: list[tuple[str, Path]]) -> Outputs:
    """``OUT_plot.png`` and ``OUT_frames/`` checked like the output; frames already in the folder
    count as existing files (refused without ``--overwrite``), and no input may have a frame's name
    there."""
    from ..files import check_writable
    plot = frames = None
    if args.plot:
        plot = output.with_name(output.stem + "_plot.png")
        _not_an_input("--plot", plot, inputs)
        check_writable(plot, "--plot", overwrite=args.overwrite)
    if args.save_every:
        frames = output.with_name(output.stem + "_frames")
        _check_frames_dir(frames, inputs, args.overwrite)
    return Outputs(output, plot, frames)


def _check_frames_dir(frames: Path, inputs: list[tuple[str, Path]], overwrite: bool) -> None:
    import os
    import stat
    from ..files import check_writable, same_file
    what = "--save-every: frames folder"
    try:
        st = os.lstat(frames)
    except OSError:            # absent (fine), or a name too long: check_writable says which
        check_writable(frames, what)
        return
    if not stat.S_ISDIR(st.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "a file"
        raise OptionError(f"{what} {frames} exists and is not a folder ({kind}); move it or choose "
                          f"another --output")
    if not os.access(frames, os.W_OK | os.X_OK):
        raise OptionError(f"{what} {frames}: permission denied")
    for label, src in inputs:
        if same_file(src.parent, frames) and FRAME_NAME.fullmatch(src.name):
            raise OptionError(f"{what} {frames} holds the input {src} ({label}) under a frame's "
                              f"name: refusing to overwrite an input")
    old = sorted(p.name for p in frames.iterdir() if FRAME_NAME.fullmatch(p.name))
    if old and not overwrite:
        raise OptionError(f"{what} {frames} already holds {len(old)} frame(s) ({old[0]}, ...); "
                          f"pass --overwrite to replace them")


def prepare(args, content, styles: list, output: str | Path) -> tuple[Outputs, list[tuple[str, Path]]]:
    """Every check that does not need the model, before anything is loaded or written."""
    check_numbers(args)
    inputs = check_inputs(args, content, styles)
    out = check_output(output, inputs, args.overwrite)
    from ..provenance import bit_depth_for
    args.bit_depth = bit_depth_for(out, getattr(args, "bit_depth", None))
    from ..tiled_dask import check_cluster_options
    check_cluster_options(getattr(args, "workers", None), getattr(args, "scheduler", None))
    return check_derived(args, out, inputs), inputs


def _save_result(out: Outputs, image, overwrite: bool, **save) -> tuple[Path, str | None]:
    """Save the picture; if its path was taken during the run by something that may not be
    replaced (a file without --overwrite, a symlink, a folder), save it under the first free
    ``OUT-N.ext`` beside it instead of losing it. Returns (path written, problem or None)."""
    from ..image import save_image
    import os
    try:
        return save_image(out.image, image, overwrite=overwrite, **save), None
    except ImageError:
        if not os.path.lexists(out.image):      # not taken, just unwritable (disk full ...): say so
            raise
        kind = ("a symbolic link" if os.path.islink(out.image) else
                "a folder" if os.path.isdir(out.image) else "a file")
        problem = (f"--output {out.image}: {kind} appeared there during the run and was not "
                   f"replaced" + ("" if overwrite or kind != "a file" else " (no --overwrite)"))
    for n in range(1, 100):
        alt = out.image.with_name(f"{out.image.stem}-{n}{out.image.suffix}")
        if alt.exists() or alt.is_symlink():
            continue
        try:
            return save_image(alt, image, overwrite=False, **save), problem
        except ImageError:
            continue
    raise OptionError(f"{problem}; the result could not be saved anywhere")


def stylize_to_file(args, content, styles: list, output: Path, log=print,
                    checked: tuple[Outputs, list] | None = None) -> int:
    """Run :func:`stylize` with the parsed options and write the result (and frames/plot).

    ``checked``: what :func:`prepare` returned, if the caller already ran it (it is run here
    otherwise), so that every check comes before the model is loaded.
    """
    import numpy as np
    from ..image import load_image, save_image
    from ..transfer import stylize
    from ..vgg import deprocess

    out, _ = checked if checked is not None else prepare(args, content, styles, output)
    if getattr(args, "dry_run", False):
        from ..plan import plan_report
        log(plan_report(content, size=args.size, scales=args.scales, content_layer=args.content_layer,
                        style_layers=args.style_layers, optimizer=args.optimizer, tile=args.tile,
                        max_memory=args.max_memory, backend=args.backend, weights=args.weights,
                        pooling=args.pooling))
        return 0
    callback = None
    if out.frames is not None:
        try:
            out.frames.mkdir(exist_ok=True)
        except OSError as exc:
            from ..files import describe
            raise OptionError(f"--save-every: cannot create {out.frames} ({describe(exc)})") from None
        frames_ok = [True]

        def callback(p):
            if frames_ok[0] and p.iteration % args.save_every == 0:
                name = f"s{p.scale:g}_{p.iteration:05d}.png" if args.scales else f"{p.iteration:05d}.png"
                try:
                    save_image(out.frames / name, deprocess(p.x), overwrite=args.overwrite)
                except ImageError as exc:      # a frame is a by-product: report, keep the run
                    frames_ok[0] = False
                    print(f"numpynst: warning: {exc}; no further frames are saved", file=sys.stderr)

    # Overflow and NaN are detected by the loop (stopped == "non-finite loss") and reported in
    # one line below; NumPy's RuntimeWarnings on the way would only repeat it, as tracebacks.
    from ..tiled_dask import cluster_client
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"), \
            cluster_client(getattr(args, "workers", None), getattr(args, "scheduler", None)) as client:
        result = stylize(content, styles, size=args.size, iterations=args.iterations, optimizer=args.optimizer,
                         lr=args.lr, alpha=args.alpha, beta=args.beta, tv_weight=args.tv_weight,
                         content_layer=args.content_layer, style_layers=args.style_layers,
                         style_blend=args.style_blend, style_scale=args.style_scale, init=args.init,
                         seed=args.seed, preserve_color=args.preserve_color, backend=args.backend,
                         weights=args.weights, pooling=args.pooling, tol=args.tol or None,
                         callback=callback, scales=args.scales, progress=not args.quiet,
                         weights_mode=args.weights_mode, tile=getattr(args, "tile", None),
                         max_memory=getattr(args, "max_memory", None), client=client)
    from ..provenance import run_info
    deep = args.bit_depth == 16       # from the float result: every level the optimiser computed
    written, problem = _save_result(out, result.image_float if deep else result.image, args.overwrite,
                                    bit_depth=args.bit_depth, info=run_info(args, content, styles, result))
    J = result.history["J"]
    change = "" if not J else f"J {J[0]:.4g} -> {result.J_final:.4g}" + (
        f" = {result.J_final / J[0]:.1%} of start" if J[0] > 0 else "")      # J_0 = 0: nothing to divide
    log(f"wrote {written} ({result.image.shape[1]}x{result.image.shape[0]}, {result.iterations} iterations, "
        f"{result.seconds:.1f} s, {change}, stopped: {result.stopped})")
    if out.frames is not None:
        log(f"frames in {out.frames}/")
    code = 0
    if out.plot is not None:
        from ..plots import save_run_figure
        try:
            content_rgb = load_image(content, size=max(result.image.shape[:2]))
            style_rgbs = [load_image(s, size=max(result.image.shape[:2])) for s in styles]
            plot = save_run_figure(out.plot, content_rgb, style_rgbs, result.image, result.history,
                                   overwrite=args.overwrite)
            log(f"figure in {plot}")
        except (ImageError, OSError) as exc:
            from ..files import describe
            print(f"numpynst: error: --plot {out.plot} not written: {describe(exc)}", file=sys.stderr)
            code = 1
    if problem is not None:
        print(f"numpynst: error: {problem}; the result was saved as {written} instead", file=sys.stderr)
        code = 1
    if result.stopped == "interrupted":
        cause = getattr(args, "stop_cause", lambda: "interrupted")()
        log(f"{cause}: saved the best image so far")
        return 130
    if result.stopped == "non-finite loss":
        print("numpynst: the loss became NaN/inf; saved the last finite image. Lower --lr or the weights.",
              file=sys.stderr)
        return 1
    return code


def run(args) -> int:
    checked = prepare(args, args.content, list(args.style), args.output)
    return stylize_to_file(args, args.content, list(args.style), checked[0].image, checked=checked)
