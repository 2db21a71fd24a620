"""``numpynst demo``: stylize the bundled content/style pair offline and say where the result is."""

from __future__ import annotations

from pathlib import Path

from ..errors import OptionError
from .stylize import add_stylize_options, stylize_to_file

DEMO_SIZE = 256
DEMO_ITERATIONS = 100


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="stylize the bundled sample pair (offline, ~2 min on a laptop CPU)",
                              description=__doc__.splitlines()[0])
    p.add_argument("-o", "--outdir", default="numpynst-demo",
                   help="directory for result.png and figure (default: ./numpynst-demo)")
    add_stylize_options(p)
    p.set_defaults(func=run, size=DEMO_SIZE, iterations=DEMO_ITERATIONS, plot=True, overwrite=True)


def run(args) -> int:
    from ..image import DEMO_CONTENT, DEMO_STYLE, SAMPLES, sample_path
    outdir = Path(args.outdir)
    if outdir.exists() and not outdir.is_dir():
        raise OptionError(f"--outdir {outdir} exists and is not a directory")
    outdir.mkdir(parents=True, exist_ok=True)
    content, style = sample_path(DEMO_CONTENT), sample_path(DEMO_STYLE)
    print(f"numpynst demo: {SAMPLES[DEMO_CONTENT]['title']} in the style of {SAMPLES[DEMO_STYLE]['title']}, "
          f"{args.size} px, {args.iterations} {args.optimizer} iterations on {args.backend}")
    output = outdir / "result.png"
    code = stylize_to_file(args, content, [style], output)
    print(f"result: {output.resolve()}")
    return code
