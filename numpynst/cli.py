"""Command-line front end: ``numpynst <command> ...``.

Each command lives in its own module under :mod:`numpynst.commands` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable taking the parsed
arguments and returning an exit code. This module only wires them together and turns user errors
(:class:`~numpynst.errors.NumpynstError`) into one line on stderr and a non-zero exit status.

Signals: SIGTERM (what ``kill``, ``timeout`` and job schedulers send) and SIGHUP (a closed
terminal; left alone where it is ignored, as under ``nohup``) are turned into the same
KeyboardInterrupt as Ctrl-C, so a command stops the same way (``stylize`` saves the best image so
far); the exit status is then 128 + the signal's number (143, 129) instead of 130. Further signals
while that is being saved are ignored, so the save completes. ``args.stop_cause()`` tells a
command which it was.

Error messages are printed on one line even when they quote a file name with a newline or other
control character in it (escaped as ``\n``, ``\x1b``).
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading

from . import __version__
from .errors import NumpynstError

# Order = order in ``numpynst --help``.
COMMANDS = ("stylize", "demo", "batch", "video", "evaluate", "weights", "inspect", "selftest")

EXIT_FAILED = 1
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130       # 128 + SIGINT
EXIT_TERMINATED = 143        # 128 + SIGTERM (SIGHUP: 129)
# Commands that handle SIGTERM themselves (numpynst.batch.interrupts installs its handlers only
# where the signal still has its default action, so ours must stay out of its way).
OWN_SIGNALS = ("batch",)


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


class _SigTerm:
    """SIGTERM/SIGHUP -> KeyboardInterrupt, once; installed for the duration of one command."""

    def __init__(self, install: bool = True) -> None:
        self.received: int | None = None       # the first signal's number
        self.install = install
        self.previous: dict[int, object] = {}

    def handler(self, signum, frame) -> None:
        if self.received is not None:   # already stopping: let the save of the best image finish
            return
        self.received = signum
        raise KeyboardInterrupt

    def cause(self) -> str:
        if self.received is None:
            return "interrupted"
        return f"terminated ({signal.Signals(self.received).name})"

    def exit_status(self) -> int:
        return EXIT_INTERRUPTED if self.received is None else 128 + int(self.received)

    def __enter__(self) -> "_SigTerm":
        # signal handlers can only be set from the main thread (main() may run in a test's thread)
        if self.install and threading.current_thread() is threading.main_thread():
            for name in ("SIGTERM", "SIGHUP"):
                signum = getattr(signal, name, None)
                if signum is None:
                    continue
                current = signal.getsignal(signum)
                if name == "SIGHUP" and current is not signal.SIG_DFL:
                    continue                    # nohup (SIG_IGN) or a caller's own handler
                self.previous[signum] = signal.signal(signum, self.handler)
        return self

    def __exit__(self, *exc) -> None:
        for signum, previous in self.previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)


# C0 control characters and DEL, escaped so that a message stays on one line
_ESCAPES = {c: ("\\n" if c == 10 else "\\r" if c == 13 else f"\\x{c:02x}")
            for c in (*range(32), 127) if c != 9}


def one_line(text: str) -> str:
    """``text`` with newlines and other control characters escaped (a file name may hold them)."""
    return text.translate(_ESCAPES)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USER_ERROR
    with _SigTerm(install=args.command not in OWN_SIGNALS) as term:
        args.stop_cause = term.cause
        try:
            code = int(args.func(args) or 0)
        except NumpynstError as exc:
            print(f"numpynst: error: {one_line(str(exc))}", file=sys.stderr)
            return EXIT_USER_ERROR
        except KeyboardInterrupt:
            print(f"numpynst: {term.cause()}", file=sys.stderr)
            code = EXIT_INTERRUPTED
        except MemoryError:     # the run asked for more than the machine has: not a bug, say so
            print("numpynst: error: out of memory; ask for less work (a smaller --size, fewer or "
                  "lower --scales)", file=sys.stderr)
            code = EXIT_FAILED
        if code == EXIT_INTERRUPTED:
            code = term.exit_status()
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
