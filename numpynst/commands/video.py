"""``numpynst video IN STYLE [STYLE ...] -o OUT``: a clip stylized frame by frame, without flicker.

IN is a video file or a folder of numbered frames; OUT a video (.mp4, .mov, .mkv, .m4v, .webm,
.avi: the same frame rate, the audio copied) or a folder for numbered PNG frames. Each frame starts
from the previous result warped by the optical flow and pays a temporal cost for departing from it
outside occlusions (Ruder et al. 2016); --independent stylizes every frame on its own, for
comparison. The frames are written as they finish (for a video, into OUT_frames/): a re-run with
the same settings keeps every finished frame and continues. Ctrl-C or SIGTERM keeps the finished
frames and writes a playable OUT.partial.<ext> of them (exit 130 / 143).
"""

from __future__ import annotations

import sys

from ..errors import OptionError


def register(subparsers) -> None:
    from ..options import add_arguments
    from ..video.run import DEFAULT_TEMPORAL_WEIGHT
    p = subparsers.add_parser("video", help="stylize a clip (video file or frames folder) without flicker",
                              description=__doc__.splitlines()[0])
    p.add_argument("input", help="video file, or a folder of numbered frames (00001.png, ...)")
    p.add_argument("style", nargs="+", help="style image(s) (paintings); several are blended")
    p.add_argument("-o", "--output", required=True,
                   help="video file (.mp4, .mov, .mkv, .m4v, .webm, .avi) or a folder for PNG frames")
    add_arguments(p)
    v = p.add_argument_group("video")
    v.add_argument("--frames", default=None, metavar="A:B",
                   help="only frames A..B-1 (0-based; either side may be empty)")
    v.add_argument("--independent", action="store_true",
                   help="no temporal terms: every frame on its own (flickers; for comparison)")
    v.add_argument("--temporal-weight", type=float, default=None, metavar="G",
                   help="weight of the temporal cost (default %g x the style weight with calibrated "
                        "weights, %g raw)" % (DEFAULT_TEMPORAL_WEIGHT["calibrated"], DEFAULT_TEMPORAL_WEIGHT["raw"]))
    v.add_argument("--flow", choices=("dis", "farneback"), default="dis",
                   help="OpenCV optical flow method (default: dis)")
    v.add_argument("--fps", type=float, default=None,
                   help="frame rate of a frames-folder input (default 25; a video keeps its own)")
    v.add_argument("--overwrite", action="store_true",
                   help="replace an existing OUT video and frames another run left in the frames folder")
    v.add_argument("--quiet", action="store_true", help="no progress bars or per-frame lines")
    d = p.add_argument_group("long clips on Dask (chunks of frames side by side, resumable)")
    d.add_argument("--workers", type=int, default=None, metavar="N",
                   help="run chunks of frames on a local Dask cluster of N processes")
    d.add_argument("--scheduler", default=None, metavar="URL",
                   help="run them on the workers of a Dask scheduler, e.g. tcp://head:8786")
    d.add_argument("--chunk", type=int, default=None, metavar="FRAMES",
                   help="frames per chunk (default: the range shared among the workers, at most 24)")
    d.add_argument("--overlap", type=int, default=None, metavar="FRAMES",
                   help="warm-up frames stylized before each seam and not kept in the video (default 2)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..files import regular_file
    from ..options import from_args
    from ..video import stylize_video
    from ..video.run import check_temporal_weight
    options = from_args(args).validate(len(args.style), cli=True)
    check_temporal_weight(args.temporal_weight, options.weights_mode)
    if args.fps is not None and not (0 < args.fps <= 1000):
        raise OptionError(f"--fps must be a number in (0, 1000], got {args.fps:g}")
    styles = [str(regular_file(s, f"style image #{i + 1}" if len(args.style) > 1 else "style image"))
              for i, s in enumerate(args.style)]
    if options.weights is not None:
        regular_file(options.weights, "--weights")
    r = stylize_video(args.input, styles, args.output, options, frames=args.frames,
                      independent=args.independent, temporal_weight=args.temporal_weight, flow=args.flow,
                      fps=args.fps, overwrite=args.overwrite, progress=not args.quiet,
                      log=None if args.quiet else print, workers=args.workers, scheduler=args.scheduler,
                      chunk=args.chunk, overlap=args.overlap)
    where = r.video if r.video is not None else f"{r.frames_dir}/"
    errs = [e for e in r.temporal_error.values() if e == e]
    summary = (f"{len(r.done)} frame(s) ({r.stylized} stylized, {r.kept} kept from an earlier run) in "
               f"{r.seconds:.1f} s" + (f", mean temporal error {sum(errs) / len(errs):.2f}" if errs else ""))
    if r.stopped == "done":
        print(f"wrote {where}: {summary}")
        return 0
    kept = f"the frames are in {r.frames_dir}/" + (f", a partial video in {r.partial}" if r.partial else "")
    if r.stopped == "interrupted":
        print(f"{args.stop_cause() if hasattr(args, 'stop_cause') else 'interrupted'}: {summary}; {kept}; "
              f"re-run the same command to continue", file=sys.stderr)
        return 130
    print(f"numpynst: error: {r.error}", file=sys.stderr)
    print(f"{summary}; {kept}", file=sys.stderr)
    return 1 if r.stopped == "write failed" else 2
