"""``numpynst demo``: stylize the bundled content/style pair offline and say where the result is."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import OptionError, short_path
from .stylize import add_stylize_options, stylize_to_file

DEMO_SIZE = 256
#: The demo's own settings, for a first picture in a minute or two: 256 px, coarse to fine with
#: DEMO_ITERATIONS at half size then as many at full size (about 75 full-size evaluations); the
#: weights are stylize's defaults. Measurements: benchmarks/README.md, section "The demo's settings".
DEMO_SCALES = (0.5, 1.0)
DEMO_ITERATIONS = 60


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="stylize the bundled sample pair (offline, a minute or two on "
                                           "a 2-core CPU)",
                              description=__doc__.splitlines()[0] + f" Its own defaults: --size {DEMO_SIZE} "
                              f"--scales {' '.join(f'{x:g}' for x in DEMO_SCALES)} --iterations "
                              f"{DEMO_ITERATIONS} (the defaults below are stylize's).")
    p.add_argument("-o", "--outdir", default="numpynst-demo",
                   help="directory for result.png and figure (default: ./numpynst-demo)")
    add_stylize_options(p)
    p.set_defaults(func=run, size=DEMO_SIZE, iterations=DEMO_ITERATIONS, scales=list(DEMO_SCALES),
                   plot=True, overwrite=True)


def run(args) -> int:
    """The demo writes ``result.png`` (and its plot, frames) in its own folder and replaces them on
    every run (``--overwrite`` is its default); like ``stylize`` it never replaces a symlink or
    anything but a regular file there, and checks everything before the run."""
    from ..files import describe
    from ..image import DEMO_CONTENT, DEMO_STYLE, SAMPLES, sample_path
    from .stylize import check_all, check_numbers
    outdir = Path(args.outdir).expanduser()
    check_numbers(args)                # bad numbers are refused before any folder is made
    try:
        st = os.stat(outdir)
    except OSError:                      # absent, or a name too long ...: mkdir says which
        st = None
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise OptionError(f"--outdir {short_path(outdir)} exists and is not a directory")
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocker = next((p for p in reversed(outdir.parents) if p.exists() and not p.is_dir()), None)
        reason = f"{short_path(blocker)} is not a directory" if blocker is not None else describe(exc)
        raise OptionError(f"--outdir {short_path(outdir)}: cannot create it ({reason})") from None
    content, style = sample_path(DEMO_CONTENT), sample_path(DEMO_STYLE)
    output = outdir / "result.png"
    checked = check_all(args, content, [style], output)
    print(f"numpynst demo: {SAMPLES[DEMO_CONTENT]['title']} in the style of {SAMPLES[DEMO_STYLE]['title']}, "
          f"{args.size} px, {args.iterations} {args.optimizer} iterations"
          + (f" per scale at {', '.join(f'{x:g}' for x in args.scales)} x the size" if args.scales else "")
          + (f", style weight {args.beta:g}" if args.beta is not None else "") + f" on {args.backend}")
    code = stylize_to_file(args, content, [style], output, checked=checked)
    if not (args.dry_run or getattr(args, "nothing_saved", False)):     # else there is no result to point at
        print(f"result: {output.resolve()}")
    return code
