"""``numpynst weights fetch|info|path``: get, describe and locate VGG weight files."""

from __future__ import annotations

from ..weights import OFFICIAL_FILES, default_weights_path, fetch, weights_info


def register(subparsers) -> None:
    p = subparsers.add_parser("weights", help="download, describe or locate VGG weights",
                              description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="weights_command", metavar="ACTION", required=True)
    f = sub.add_parser("fetch", help="download the official Keras VGG16/VGG19 notop weights",
                       description="Download the official Keras 'notop' weights (about 80 MB), "
                                   "resuming an interrupted download and checking the published md5.")
    f.add_argument("arch", choices=sorted(OFFICIAL_FILES), help="architecture")
    f.add_argument("--dest", default=None, metavar="DIR",
                   help="download folder (default: $NUMPYNST_HOME or ~/.cache/numpynst)")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    f.set_defaults(func=run_fetch)
    i = sub.add_parser("info", help="architecture, layer shapes, dtypes and size of a weights file")
    i.add_argument("path", nargs="?", default=None, help="HDF5 file (default: the shipped VGG19)")
    i.set_defaults(func=run_info)
    w = sub.add_parser("path", help="print the path of the shipped VGG19 weights")
    w.set_defaults(func=run_path)


def run_fetch(args) -> int:
    print(fetch(args.arch, dest=args.dest, progress=not args.quiet))
    return 0


def run_info(args) -> int:
    print(weights_info(args.path))
    return 0


def run_path(args) -> int:
    print(default_weights_path())
    return 0
