"""SIGTERM and SIGHUP end a batch the way Ctrl-C does: cancel, close the cluster, write the summary.

Ctrl-C raises ``KeyboardInterrupt`` in the main thread, and :func:`numpynst.batch.run` answers it by
cancelling the unfinished jobs, closing the cluster, writing the summary and removing its temporaries.
``kill``, ``timeout``, a job scheduler or a closing terminal send SIGTERM or SIGHUP instead, whose
default action ends the process on the spot: no summary, temporaries left behind, perhaps a half
published result. :class:`InterruptGuard` routes SIGINT, SIGTERM and SIGHUP to the same path: its
handler raises :class:`Interrupted` (a ``KeyboardInterrupt``) naming the signal, and the exit status
is ``128 + signal number`` (130, 143, 129), as a shell reports a process killed by that signal.

A signal raises only inside :meth:`InterruptGuard.raising` (the jobs' phase), and only the first
one. Outside it (closing the cluster after the last job, writing the summary) and after the first,
signals are recorded and otherwise ignored, so that the cleanup is not itself cut short; one that
arrived before the block is raised on entering it. SIGKILL still ends the process at once, and the
next run's start-up removes what it left (:func:`numpynst.batch.outdir.remove_stale`).

A handler is installed only from the main thread, and only where the signal still has its default
action: a caller's own handler, or ``SIG_IGN`` (``nohup``), is left as it is.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


class Interrupted(KeyboardInterrupt):
    """The batch was asked to stop by signal ``signum``."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal_name(signum))


def signal_name(signum: int) -> str:
    """``"SIGTERM"``; Ctrl-C is named ``"Ctrl-C"``, as the user knows it."""
    if signum == signal.SIGINT:
        return "Ctrl-C"
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class InterruptGuard:
    """Context manager: while active, SIGINT/SIGTERM/SIGHUP are caught; inside :meth:`raising` the
    first one raises :class:`Interrupted`.

    ``signum`` is the first signal received (``None`` if none); ``exit_status`` is ``128 + signum``.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.armed = False                  # whether the first signal raises now
        self._saved: dict[int, object] = {}

    def _handler(self, signum: int, frame) -> None:
        first = self.signum is None
        if first:
            self.signum = signum
        if first and self.armed:
            self.armed = False
            raise Interrupted(signum)

    def note(self, exc: BaseException) -> int:
        """Record an interrupt that arrived as a plain ``KeyboardInterrupt`` (no handler installed);
        returns the signal number it stands for."""
        if self.signum is None:
            self.signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        return self.signum

    @property
    def exit_status(self) -> int | None:
        return None if self.signum is None else 128 + int(self.signum)

    @contextlib.contextmanager
    def raising(self) -> Iterator[None]:
        """Within this block the first signal raises :class:`Interrupted` (at once if it came earlier)."""
        self.armed = True
        try:
            if self.signum is not None:
                raise Interrupted(self.signum)
            yield
        finally:
            self.armed = False

    def __enter__(self) -> "InterruptGuard":
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                current = signal.getsignal(s)
                if current in (signal.SIG_DFL, signal.default_int_handler):
                    self._saved[s] = current
                    signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for s, previous in self._saved.items():
            signal.signal(s, previous)
        self._saved.clear()
