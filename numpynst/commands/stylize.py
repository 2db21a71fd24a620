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
save the best image so far (exit 130 / 143); before the first iteration has ended there is no
stylized image yet, and the command says that nothing was saved.

Before the first iteration the command prints the plan line (sizes, whole or tiled, the estimated
time; :meth:`numpynst.transfer.Prepared.plan_line`), and after it the estimate corrected by the clock.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import NamedTuple

from ..errors import ImageError, OptionError, short_path
from ..image import IMAGE_SUFFIXES
from ..options import INITS, MAX_ITERATIONS, StylizeOptions, add_arguments, from_args


def add_stylize_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``stylize`` and ``demo``: those of the picture
    (:class:`numpynst.options.StylizeOptions`, generated from it) and those of the command (where and
    how the picture is written, progress, the cluster)."""
    t = add_arguments(p)["print size (memory)"]
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


#: The names ``--save-every`` writes in ``OUT_frames/``: ``00025.png``, or ``s0.5_00025.png`` with --scales.
FRAME_NAME = re.compile(r"(s[0-9][0-9.e+-]*_)?[0-9]{5,}\.png")


class Outputs(NamedTuple):
    """Every path a run writes, checked before it starts."""

    image: Path
    plot: Path | None          # OUT_plot.png with --plot
    frames: Path | None        # OUT_frames/ with --save-every
    checkpoint: Path | None = None    # OUT.checkpoint.npz unless --no-checkpoint


def check_numbers(args, n_styles: int | None = None) -> StylizeOptions:
    """The picture's options from ``args``, checked (:meth:`StylizeOptions.validate`, messages naming
    the flags), and ``--save-every``; returns them."""
    from ..checks import integer
    options = from_args(args).validate(n_styles, cli=True)
    integer("--save-every", args.save_every, minimum=0, maximum=MAX_ITERATIONS)
    return options


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
    for flag in ("masks", "style_masks"):                 # spatial control: one mask per style
        inputs.extend((f"--{flag.replace('_', '-')} #{i + 1}", m) for i, m in enumerate(getattr(args, flag, None) or []))
    return [(what, regular_file(path, what)) for what, path in inputs]


def _not_an_input(what: str, path: Path, inputs: list[tuple[str, Path]]) -> None:
    from ..files import same_file
    for label, src in inputs:
        if same_file(src, path):
            shown = "" if str(src) == str(path) else f" {short_path(src)}"     # the same name once
            raise OptionError(f"{what} {short_path(path)} is the input{shown} ({label}): refusing to "
                              f"overwrite an input")


def check_output(output: str | Path, inputs: list[tuple[str, Path]], overwrite: bool) -> Path:
    """The result path, refused if it is an input, has no image suffix, can't be written, or exists
    (without ``overwrite``). ``inputs`` from :func:`check_inputs`."""
    from ..files import check_writable
    out = Path(output).expanduser()
    if out.suffix.lower() not in IMAGE_SUFFIXES:
        raise OptionError(f"--output {short_path(out)}: unknown image type {out.suffix or '(none)'!r}; "
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
    checkpoint = None
    if not getattr(args, "no_checkpoint", False):
        from ..checkpoint import checkpoint_path
        checkpoint = checkpoint_path(output)
        _not_an_input("checkpoint", checkpoint, inputs)
        # an existing one is read (and continued, or refused) when the run starts; never a link
        check_writable(checkpoint, "checkpoint", overwrite=True)
    return Outputs(output, plot, frames, checkpoint)


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
        raise OptionError(f"{what} {short_path(frames)} exists and is not a folder ({kind}); move it or choose "
                          f"another --output")
    if not os.access(frames, os.W_OK | os.X_OK):
        raise OptionError(f"{what} {short_path(frames)}: permission denied")
    for label, src in inputs:
        if same_file(src.parent, frames) and FRAME_NAME.fullmatch(src.name):
            raise OptionError(f"{what} {short_path(frames)} holds the input {short_path(src)} ({label}) under a frame's "
                              f"name: refusing to overwrite an input")
    old = sorted(p.name for p in frames.iterdir() if FRAME_NAME.fullmatch(p.name))
    if old and not overwrite:
        raise OptionError(f"{what} {short_path(frames)} already holds {len(old)} frame(s) ({old[0]}, ...); "
                          f"pass --overwrite to replace them")


class Checked(NamedTuple):
    """What :func:`check_all` found good: the paths to write, the input files, the picture's options."""

    outputs: Outputs
    inputs: list[tuple[str, Path]]
    options: StylizeOptions
    uncovered: float = 0.0          # with --masks: the fraction of the picture no mask covers


def check_all(args, content, styles: list, output: str | Path) -> Checked:
    """Every check that does not need the model, before anything is loaded or written."""
    options = check_numbers(args, len(styles))
    inputs = check_inputs(args, content, styles)
    out = check_output(output, inputs, args.overwrite)
    from ..provenance import bit_depth_for
    args.bit_depth = bit_depth_for(out, getattr(args, "bit_depth", None))
    from ..tiled_dask import check_cluster_options
    check_cluster_options(getattr(args, "workers", None), getattr(args, "scheduler", None))
    return Checked(check_derived(args, out, inputs), inputs, options, check_masks(options, content))


def check_masks(options: StylizeOptions, content) -> float:
    """With ``--masks``: every mask read and checked against the content at the run's size before the
    model is loaded (one-line errors naming the mask); returns the fraction of the picture no mask
    covers. (``--style-masks`` are checked the same way when the run loads the paintings.)"""
    if options.masks is None:
        return 0.0
    from ..image import as_rgb, load_masks, uncovered
    return uncovered(load_masks(options.masks, as_rgb(content, "content", options.size).shape[:2]))


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
        problem = (f"--output {short_path(out.image)}: {kind} appeared there during the run and was not "
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
                    checked: Checked | None = None) -> int:
    """Run :func:`numpynst.transfer.stylize` with the checked options and write the result (and
    frames/plot); with ``--dry-run``, describe the prepared run instead.

    ``checked``: what :func:`check_all` returned, if the caller already ran it (it is run here
    otherwise), so that every check comes before the model is loaded.
    """
    import numpy as np
    from .. import transfer               # looked up by name: tests may substitute stylize
    from ..image import load_image, save_image
    from ..vgg import deprocess

    out, _, options, bare = checked if checked is not None else check_all(args, content, styles, output)
    if bare > 0:
        log(f"note: the masks leave {bare:.1%} of the picture black: there it keeps the photo's content "
            f"(no style term)")
    if getattr(args, "dry_run", False):
        log(transfer.prepare(content, styles, options).describe())
        return 0
    callback = None
    if out.frames is not None:
        frames_ok, coarse = [True], [bool(args.scales)]

        def callback(p):
            coarse[0] = coarse[0] or p.scale != 1.0    # several scales (given or default): name the scale
            if frames_ok[0] and p.iteration % args.save_every == 0:
                name = f"s{p.scale:g}_{p.iteration:05d}.png" if coarse[0] else f"{p.iteration:05d}.png"
                try:
                    # made with the first frame, not before the run: a run refused while it is
                    # prepared (the model, the plan, the style loss's sizes) writes nothing
                    out.frames.mkdir(exist_ok=True)
                    save_image(out.frames / name, deprocess(p.x), overwrite=args.overwrite)
                except OSError as exc:
                    from ..files import describe
                    frames_ok[0] = False
                    print(f"numpynst: warning: --save-every: cannot create {short_path(out.frames)} ({describe(exc)}); "
                          f"no frames are saved", file=sys.stderr)
                except ImageError as exc:      # a frame is a by-product: report, keep the run
                    frames_ok[0] = False
                    print(f"numpynst: warning: {exc}; no further frames are saved", file=sys.stderr)

    # Overflow and NaN are detected by the loop (stopped == "non-finite loss") and reported in
    # one line below; NumPy's RuntimeWarnings on the way would only repeat it, as tracebacks.
    from ..tiled_dask import cluster_client
    ck = None
    if out.checkpoint is not None:
        from ..checkpoint import Checkpoint
        ck = Checkpoint(out.checkpoint, options.checkpoint_every, log=lambda line: print(line, file=sys.stderr))
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"), \
                cluster_client(getattr(args, "workers", None), getattr(args, "scheduler", None)) as client:
            result = transfer.stylize(content, styles, options, callback=callback, progress=not args.quiet,
                                      client=client, on_plan=log, checkpoint=ck)
    except KeyboardInterrupt:
        return _nothing_saved(args)
    if result.stopped == "interrupted" and result.iterations == 0:
        return _nothing_saved(args)
    from ..provenance import run_info
    deep = args.bit_depth == 16       # from the float result: every level the optimiser computed
    written, problem = _save_result(out, result.image_float if deep else result.image, args.overwrite,
                                    bit_depth=args.bit_depth, info=run_info(options, content, styles, result))
    J = result.history["J"]
    J0 = result.J_start                # at the full size: a coarser scale's J is of another picture
    change = "" if not J else f"J {J0:.4g} -> {result.J_final:.4g}" + (
        f" = {result.J_final / J0:.1%} of start" if J0 > 0 else "") + (      # J_0 = 0: nothing to divide
        " at full size" if len(result.scale_starts) > 1 else "")
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
            print(f"numpynst: error: --plot {short_path(out.plot)} not written: {describe(exc)}", file=sys.stderr)
            code = 1
    if problem is not None:
        print(f"numpynst: error: {problem}; the result was saved as {short_path(written)} instead", file=sys.stderr)
        code = 1
    unfinished = result.stopped in ("interrupted", "cluster lost")
    if ck is not None and not unfinished:
        ck.remove()                   # the picture is written: nothing left to continue
    kept = "" if ck is None or not ck.path.exists() else (
        f"; checkpoint {short_path(ck.path)} kept: run the same command with --overwrite to continue")
    if result.stopped == "cluster lost":
        print(f"numpynst: error: {result.note}; saved the best image so far{kept}", file=sys.stderr)
        return 1
    if result.stopped == "interrupted":
        cause = getattr(args, "stop_cause", lambda: "interrupted")()
        log(f"{cause}: saved the best image so far{kept}")
        return 130
    if result.stopped == "non-finite loss":
        print("numpynst: the loss became NaN/inf; saved the last finite image. Lower --lr or the weights.",
              file=sys.stderr)
        return 1
    return code


def _nothing_saved(args) -> int:
    """Ctrl-C (or SIGTERM) before the first iteration ended: say so, write nothing, exit 130 (143)."""
    cause = getattr(args, "stop_cause", lambda: "interrupted")()
    args.nothing_saved = True
    print(f"numpynst: {cause} before the first iteration ended: nothing was saved (there was no stylized "
          f"picture yet, only the starting image)", file=sys.stderr)
    return 130


def run(args) -> int:
    checked = check_all(args, args.content, list(args.style), args.output)
    return stylize_to_file(args, args.content, list(args.style), checked.outputs.image, checked=checked)
