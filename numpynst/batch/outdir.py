"""The output folder: the names the runner owns in it, the inputs that must not be among them, and
this run's private folder for temporaries.

**What the runner writes.** In ``OUTDIR`` the runner writes ``summary.csv``, ``contact_sheet.png``
and, per job, ``<name>-<hash>.png`` with its sidecar ``<name>-<hash>.json``; nothing else. Before
anything runs, :func:`check_outdir` refuses (one line naming the input and the name it collides
with) an input -- content, style, init image, weights file or the manifest -- that *is* one of those
files (same inode, so a symlink or hard link to it counts too), any of those names held by something
that is not a regular file, and an existing ``summary.csv`` or ``contact_sheet.png`` that the runner
did not write (:func:`report_is_ours`).

**Temporaries.** Every file is first written complete into this run's private folder
``OUTDIR/.numpynst-batch-<run id>/`` (a fresh ``mkdtemp``: no other process's file can be in it),
then renamed into ``OUTDIR`` with :func:`move_into`; the rename is atomic because both are on the same
filesystem, and it replaces only a regular file (an earlier result of the same job), never a symbolic
link or anything else that appeared at that name. So a killed run leaves temporaries only inside its private folder. :meth:`Scratch.close` removes this
run's folder; :func:`remove_stale` removes the folders of *earlier* runs only when provably the
runner's own: the folder holds the runner's ``owner.json`` marker naming this host and a process
that no longer exists. A user's file is never deleted, whatever its name.

The renames are not followed by a directory fsync: after a power cut a result may still sit in the
private folder, or an image may be back without its sidecar; both read as "not done", and the job
runs again. Nothing is lost but time.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import ManifestError, OptionError, short_path
from ..files import describe, open_regular
from .report import CONTACT_SHEET, OWNER_TOOL, SUMMARY, report_is_ours

SCRATCH_PREFIX = ".numpynst-batch-"
OWNER_FILE = "owner.json"


def outdir_path(outdir: str | os.PathLike) -> Path:
    """``outdir`` as an absolute path (nothing touched); :class:`OptionError` if it names no folder."""
    text = os.fspath(outdir)
    if not text.strip():
        raise OptionError("--outdir is empty: give the folder for the results")
    if "\0" in text:
        raise OptionError(f"--outdir {text!r}: the name contains a NUL character")
    return Path(text).expanduser().absolute()


def prepare_outdir(outdir: str | os.PathLike) -> Path:
    """``outdir`` as an absolute path, created if needed; :class:`OptionError` (one line) if it cannot be.

    Covers a regular file on the way (``somefile/sub``), a name too long for the filesystem, and a
    folder without write permission (checked here, not after hours of work).
    """
    path = outdir_path(outdir)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise OptionError(f"--outdir {short_path(path)}: {describe(exc)}") from None
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise OptionError(f"--outdir {short_path(path)}: exists and is not a directory")
    if st is None:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            reason = ("a part of the path is a file, not a directory" if exc.errno == errno.EEXIST
                      else describe(exc))
            raise OptionError(f"--outdir {short_path(path)}: cannot create it ({reason})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise OptionError(f"--outdir {short_path(path)}: no permission to write in it")
    return path.resolve()


def runner_names(jobs: Sequence) -> set[str]:
    """Every file name the runner may write in OUTDIR for ``jobs`` (checked :class:`~.jobs.Job` s)."""
    names = {SUMMARY, CONTACT_SHEET}
    for job in jobs:
        names.update((job.output, job.sidecar))
    return names


def _inputs(job) -> list[tuple[str, str]]:
    """``(column, path)`` for every input file of a job."""
    out = [("content", job.content), *(("style", s) for s in job.styles)]
    for name in ("init", "weights"):
        v = job.options.get(name)
        if isinstance(v, str) and os.path.isabs(v):      # "content"/"noise"/"style" are not files
            out.append((name, v))
    return out


def _inode(path: str | os.PathLike) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def check_outdir(outdir: str | os.PathLike, jobs: Sequence, protect: Iterable[str | os.PathLike] = (),
                 contact_sheet: bool = True) -> None:
    """Refuse, before anything runs, a batch that would write over an input or a file not its own.

    ``outdir`` need not exist (then nothing in it can collide). ``protect``: further files the batch
    reads (the manifest). Raises :class:`ManifestError` naming the job's row and column (or
    :class:`OptionError` for a ``protect`` file or a foreign report file).
    """
    outdir = Path(outdir)
    try:
        if not stat.S_ISDIR(os.stat(outdir).st_mode):
            return                          # prepare_outdir says what is wrong with it
    except (OSError, ValueError):
        return
    names = runner_names(jobs)
    if not contact_sheet:
        names.discard(CONTACT_SHEET)
    taken: dict[tuple[int, int], str] = {}
    for name in names:
        p = outdir / name
        try:
            st = os.lstat(p)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):       # a link there is someone else's: never replaced
            raise OptionError(f"--outdir {short_path(outdir)}: {name} is {_kind(st.st_mode)}, and the batch writes "
                              f"a file of that name; move it away or choose another OUTDIR")
        taken[(st.st_dev, st.st_ino)] = name
    for what in protect:
        name = taken.get(_inode(what))
        if name is not None:
            raise OptionError(f"{short_path(what)} is this batch's own {name}, which this batch writes; "
                              f"move it out of OUTDIR")
    for i, job in enumerate(jobs):
        for column, path in _inputs(job):
            name = taken.get(_inode(path))
            if name is not None:
                shown = "" if Path(path).name == name else f" {short_path(path)}"   # say the name once
                raise ManifestError(f"{job.source or f'job #{i + 1}'}, column {column!r}: input{shown} is "
                                    f"OUTDIR/{name}, which this batch writes")
    for name in (SUMMARY, CONTACT_SHEET):
        if name in names and (outdir / name).exists() and not report_is_ours(outdir / name):
            raise OptionError(f"--outdir {short_path(outdir)}: {name} exists and was not written by numpynst batch; "
                              f"move it away or choose another OUTDIR")


def _kind(mode: int) -> str:
    return ("a symbolic link" if stat.S_ISLNK(mode) else "a directory" if stat.S_ISDIR(mode)
            else "not a regular file")


def move_into(src: str | os.PathLike, outdir: str | os.PathLike) -> Path:
    """Rename the complete file ``src`` (in this run's private folder) to the same name in ``outdir``.

    Replaces a regular file of that name (an earlier, unverified result of the same job), never a
    symbolic link, directory or anything else (``FileExistsError``; :func:`check_outdir` refused
    those before the run, so only something created meanwhile gets here).
    """
    dest = Path(outdir) / Path(src).name
    try:
        st = os.lstat(dest)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise FileExistsError(errno.EEXIST, f"{short_path(dest)} is {_kind(st.st_mode)}; not replaced")
    os.replace(src, dest)                   # rename(2): atomic on one filesystem
    return dest


# ----------------------------------------------------------------------------- this run's temporaries
class Scratch:
    """This run's private folder ``OUTDIR/.numpynst-batch-<run id>/``, marked with ``owner.json``.

    Use as a context manager: the folder and everything in it are removed on exit, however the run
    ends (a signal turned into an exception included; after SIGKILL the next run's :func:`remove_stale`
    does it).
    """

    def __init__(self, outdir: str | os.PathLike) -> None:
        self.outdir = Path(outdir)
        try:
            self.path = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=self.outdir))
        except OSError as exc:
            raise OptionError(f"--outdir {self.outdir}: cannot write in it ({describe(exc)})") from None
        marker = {"tool": OWNER_TOOL, "host": socket.gethostname(), "pid": os.getpid()}
        try:
            (self.path / OWNER_FILE).write_text(json.dumps(marker) + "\n")
        except OSError as exc:
            self.close()
            raise OptionError(f"--outdir {self.outdir}: cannot write in it ({describe(exc)})") from None

    def __enter__(self) -> "Scratch":
        return self

    def probe(self, longest: int) -> None:
        """:class:`OptionError` now, not after the run, unless a file with a name of ``longest``
        characters can be made in the private folder (a path near the system's length limit)."""
        p = self.path / ("p" * max(1, longest))
        try:
            p.touch(exist_ok=False)
            p.unlink()
        except OSError as exc:
            raise OptionError(f"--outdir {self.outdir}: cannot write the results there ({describe(exc)})") from None

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        _remove_folder(self.path)


def _remove_folder(folder: Path) -> None:
    # Only files (and links, unlinked, not followed) directly inside: the runner makes no subfolders.
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            try:
                os.unlink(entry.path)
            except OSError:
                pass
    try:
        os.rmdir(folder)
    except OSError:
        pass                                # something else is in it: leave it


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True                         # exists (another user's) or unknowable: assume alive
    return True


def remove_stale(outdir: str | os.PathLike) -> int:
    """Remove the private folders of earlier runs that are provably the runner's own and abandoned.

    A folder qualifies only if its name has the runner's prefix, it holds an ``owner.json`` written
    by the runner on *this* host, and the process it names is gone (a concurrent run into the same
    OUTDIR keeps its folder). Returns how many folders were removed.
    """
    n = 0
    host = socket.gethostname()
    try:
        entries = [e for e in os.scandir(outdir) if e.name.startswith(SCRATCH_PREFIX)
                   and e.is_dir(follow_symlinks=False)]
    except OSError:
        return 0
    for entry in entries:
        try:
            with open_regular(Path(entry.path) / OWNER_FILE, "marker", error=ValueError) as fh:
                marker = json.loads(fh.read(4096))
        except (OSError, ValueError, RecursionError):     # missing, not a regular file, not JSON
            continue
        pid = marker.get("pid") if isinstance(marker, dict) else None
        if not isinstance(marker, dict) or marker.get("tool") != OWNER_TOOL or marker.get("host") != host \
                or type(pid) is not int or pid <= 0 or _pid_alive(pid):
            continue
        _remove_folder(Path(entry.path))
        n += not os.path.exists(entry.path)
    return n
