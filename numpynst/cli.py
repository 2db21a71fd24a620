"""Command-line front end: ``numpynst <command> ...``.

Each command lives in its own module under :mod:`numpynst.commands` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable taking the parsed
arguments and returning an exit code. This module only wires them together and turns user errors
(:class:`~numpynst.errors.NumpynstError`) into one line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import NumpynstError

# Order = order in ``numpynst --help``.
COMMANDS = ("stylize", "demo", "batch", "weights", "inspect", "selftest")

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (the default prints the whole usage block first)."""

    def error(self, message: str):
        self.exit(EXIT_USER_ERROR, f"numpynst: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="numpynst",
        description="Neural style transfer from first principles in NumPy/CuPy.")
    parser.add_argument("--version", action="version", version=f"numpynst {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f".commands.{name}", __package__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.commands.{name}":
                raise
            continue  # command not part of this build
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        return int(args.func(args) or 0)
    except NumpynstError as exc:
        print(f"numpynst: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("numpynst: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
