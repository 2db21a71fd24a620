"""Files written all-or-nothing, and facts about files: the package's one home for them.

``atomic_path(path)`` / ``atomic_write(path, writer)``   write to a temporary, fsync, rename into place
``same_file(a, b)``                                     "the output must not be an input" checks
``file_digest(path, algo)``                             hex digest, read in 1 MiB chunks
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "atomic_write", "same_file", "file_digest"]

_UMASK: int | None = None


def _umask() -> int:
    """The process umask (read once; os.umask can only be read by setting it)."""
    global _UMASK
    if _UMASK is None:
        mask = os.umask(0o022)
        os.umask(mask)
        _UMASK = mask
    return _UMASK


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Context manager for writing ``path`` all-or-nothing.

    Yields the name of a new empty temporary file in the same directory as ``path`` (same file
    extension, so writers that infer a format from the name still work). Write the whole result
    to it. On normal exit the temporary is flushed to disk (fsync) and renamed over ``path`` with
    :func:`os.replace`, which is atomic on POSIX and Windows: a reader sees either the old file or
    the complete new one, never a partial one. On an exception (including KeyboardInterrupt) the
    temporary is removed and ``path`` is left untouched.

    ``path`` may be a symlink; the file it points to is replaced. The new file gets the
    permissions of the file it replaces, or the usual ``0o666 & ~umask`` for a new one. Errors
    creating the temporary (missing directory, no permission) propagate as :class:`OSError`.

    >>> with atomic_path("out/result.csv") as tmp:           # doctest: +SKIP
    ...     tmp.write_text("a,b\\n1,2\\n")
    """
    target = Path(os.fspath(path)).expanduser()
    if target.is_symlink():
        target = Path(os.path.realpath(target))
    directory = target.parent
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}",
                                    dir=directory)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        try:
            mode = target.stat().st_mode & 0o7777
        except OSError:
            mode = 0o666 & ~_umask()
        os.chmod(tmp, mode)
        _fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(directory)


def atomic_write(path: str | os.PathLike, writer: Callable[[Path], Any]) -> Path:
    """Call ``writer(tmp_path)``, then atomically move the result to ``path`` (:func:`atomic_path`).

    Returns ``path`` as a :class:`~pathlib.Path`.
    """
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(os.fspath(path)).expanduser()


def _fsync_file(path: Path) -> None:
    # The data must be on disk before the rename is, or a crash could leave an empty file
    # under the final name (the rename is journalled, the data not yet written).
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not possible (nor needed) on every platform.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True if ``a`` and ``b`` name the same file, for "the output must not be an input" checks.

    Uses :func:`os.path.samefile` when both exist (catches hard links and symlinks); when one does
    not exist yet, compares the fully resolved absolute paths (symlinked directories resolved,
    case folded where the OS folds case).
    """
    pa = os.path.expanduser(os.fspath(a))
    pb = os.path.expanduser(os.fspath(b))
    with contextlib.suppress(OSError):
        return os.path.samefile(pa, pb)
    return os.path.normcase(os.path.realpath(pa)) == os.path.normcase(os.path.realpath(pb))


def file_digest(path: str | os.PathLike, algo: str = "sha256") -> str:
    """Hex digest (``algo``: any hashlib name, e.g. "sha256", "md5") of a file, read in 1 MiB chunks."""
    # usedforsecurity=False: md5 is only an integrity check here, and FIPS builds refuse it otherwise
    h = hashlib.new(algo, usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
