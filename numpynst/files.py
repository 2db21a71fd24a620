"""Files written all-or-nothing, inputs opened without surprises, facts about files: the one home.

Writing (``atomic_path``, ``atomic_file``, ``atomic_write``)::

    tmp = O_EXCL-created ".nst-<12 hex>.tmp<suffix>" in the destination folder   (fits NAME_MAX)
    writer(tmp) -> flush + fsync -> verify(tmp) -> place tmp at dest -> fsync the folder

*Placing* never replaces what was not checked: without ``overwrite`` the move is Linux
``renameat2(RENAME_NOREPLACE)``, else ``os.link`` + unlink (both fail if ``dest`` appeared in the
meantime), else an exclusive copy; with ``overwrite`` it is ``os.replace`` onto a regular file or
nothing, and never onto a symbolic link (``rename`` would replace the link, not follow it, but a
link at the destination means someone else's file, so it is refused). ``verify`` re-reads the
temporary (an image decoder's ``load()``, a parser, a byte count): encoders that write through a
raw file descriptor (JPEG, BMP, TIFF in Pillow) silently truncate under a file-size limit or on a
full disk, and only reading the file back catches that.

Checking before a long run (``check_writable``) and before opening an input (``regular_file``,
``open_regular``): folder exists and is writable, the name fits the filesystem's limit, the
destination is not a symlink/directory/existing file; an input is a regular file (a FIFO would
block ``open`` forever, a device would stream forever).

``same_file(a, b)``       "the output must not be an input" checks
``file_digest(path)``     hex digest, read in 1 MiB chunks
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from .checks import first_line
from .errors import OptionError, short_path

__all__ = ["atomic_path", "atomic_file", "atomic_write", "move_noreplace", "check_writable",
           "regular_file", "open_regular", "describe", "name_max", "same_file", "file_digest", "TMP_PREFIX"]

#: Temporaries are named ``TMP_PREFIX + 12 hex digits + ".tmp" + suffix``: at most ~40 bytes,
#: whatever the destination's name, so a destination name that fits the filesystem always can
#: be written.
TMP_PREFIX = ".nst-"
_MAX_SUFFIX = 16            # longer "extensions" are dropped from the temporary's name
_MAX_PREFIX = 64

Verify = Callable[[Path], Any]


# --------------------------------------------------------------------------------------------
# messages
# --------------------------------------------------------------------------------------------

def describe(exc: BaseException) -> str:
    """A short reason for an OS error (``strerror``: "No space left on device"), without the
    ``[Errno N]`` and without the temporary's name; other exceptions: their first line.

    :func:`numpynst.checks.first_line` plus one rule: for callers that name the file themselves,
    the OS's reason alone (``str(exc)`` would repeat ``[Errno N]`` and the path).
    """
    if isinstance(exc, OSError) and exc.strerror and exc.args and isinstance(exc.args[0], int):
        return exc.strerror
    return first_line(exc)


def name_max(directory: str | os.PathLike) -> int:
    """Longest file name (bytes) the filesystem of ``directory`` takes; 255 when it won't say."""
    try:
        value = os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255
    return value if value and value > 0 else 255


def _blocking_component(path: Path) -> Path | None:
    """The first existing ancestor of ``path`` that is not a directory (``somefile`` in
    ``somefile/sub/out.png``), or None."""
    for parent in reversed(path.parents):
        try:
            if not stat.S_ISDIR(os.stat(parent).st_mode):
                return parent
        except OSError:
            return None
    return None


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return "not a regular file"


def _name_problem(p: Path, exc: OSError | None = None) -> str | None:
    """Why ``p``'s name cannot exist here (too long), or None."""
    limit = 255
    for anc in [p.parent, *p.parents]:
        if anc.is_dir():
            limit = name_max(anc)
            break
    for part in p.parts:
        n = len(os.fsencode(part))
        if n > limit:
            return f"file name is {n} bytes long, more than this filesystem's limit of {limit}"
    if exc is not None and exc.errno == errno.ENAMETOOLONG:
        return f"path is too long ({len(os.fsencode(str(p)))} bytes)"
    return None


# --------------------------------------------------------------------------------------------
# checks before a run
# --------------------------------------------------------------------------------------------

def check_writable(path: str | os.PathLike, what: str, *, overwrite: bool = False,
                   error: type[Exception] = OptionError,
                   hint: str = "pass --overwrite to replace it") -> Path:
    """``path`` as a Path after checking that a new file can be placed there; else ``error``.

    One-line messages start with ``what`` (the option, e.g. ``"--output"``) and the path. Checked:
    the name fits the filesystem (NAME_MAX), the folder exists, is a folder and is writable; the
    destination is not a symbolic link (never written through, even with ``overwrite``), not a
    directory or other non-regular file, and does not exist unless ``overwrite`` (``hint`` says
    how to allow it). Nothing is created. :func:`atomic_path` checks again when it places the
    file, so something that appears meanwhile is still never replaced.
    """
    raw = os.fsdecode(os.fspath(path))
    p = Path(raw).expanduser()
    if not p.name or p.name in (".", "..") or raw.endswith(("/", os.sep)):
        raise error(f"{what} {short_path(raw)}: not a file name (a folder's name, or ends with a slash)")
    too_long = _name_problem(p)
    if too_long:
        raise error(f"{what} {short_path(p)}: {too_long}")
    folder = p.parent
    try:
        fst = os.stat(folder)
    except FileNotFoundError:
        blocker = _blocking_component(p)
        if blocker is not None:
            raise error(f"{what} {short_path(p)}: {short_path(blocker)} is not a directory") from None
        raise error(f"{what} {short_path(p)}: its directory does not exist") from None
    except NotADirectoryError:
        blocker = _blocking_component(p) or folder
        raise error(f"{what} {short_path(p)}: {short_path(blocker)} is not a directory") from None
    except OSError as exc:
        raise error(f"{what} {short_path(p)}: cannot use directory {short_path(folder)} ({describe(exc)})") from None
    if not stat.S_ISDIR(fst.st_mode):
        raise error(f"{what} {short_path(p)}: {short_path(folder)} is not a directory")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise error(f"{what} {short_path(p)}: cannot write in {short_path(folder)} (permission denied)")
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return p
    except OSError as exc:
        raise error(f"{what} {short_path(p)}: {_name_problem(p, exc) or describe(exc)}") from None
    if stat.S_ISLNK(st.st_mode):
        raise error(f"{what} {short_path(p)} is a symbolic link; refusing to write through it or replace it "
                    f"(remove it or choose another name)")
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{what} {short_path(p)} is a directory; give a file name")
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{what} {short_path(p)} exists and is {_kind(st.st_mode)}; choose another name")
    if not overwrite:
        raise error(f"{what} {short_path(p)} exists; {hint}")
    return p


def regular_file(path: Any, what: str, *, error: type[Exception] = OptionError) -> Path:
    """``path`` as a Path after checking, without opening it, that it is a readable regular file.

    ``os.stat`` + ``S_ISREG`` (symlinks to regular files are fine): a FIFO, a device or a socket
    is refused before ``open`` could block on it. Messages: ``"{what} {path}: {reason}"``.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise error(f"{what}: expected a file name, got {type(path).__name__}")
    p = Path(os.fspath(path)).expanduser()
    try:
        st = os.stat(p)
    except FileNotFoundError:
        blocker = _blocking_component(p)
        raise error(f"{what} {short_path(p)}: " + (f"{short_path(blocker)} is not a directory" if blocker else "no such file")) \
            from None
    except NotADirectoryError:
        raise error(f"{what} {short_path(p)}: {short_path(_blocking_component(p) or p.parent)} is not a directory") from None
    except OSError as exc:
        raise error(f"{what} {short_path(p)}: {_name_problem(p, exc) or describe(exc)}") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{what} {short_path(p)}: it is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{what} {short_path(p)}: it is {_kind(st.st_mode)}, not a regular file")
    if not os.access(p, os.R_OK):
        raise error(f"{what} {short_path(p)}: permission denied")
    return p


def open_regular(path: Any, what: str, *, error: type[Exception] = OptionError) -> IO[bytes]:
    """Open ``path`` for binary reading, refusing anything but a regular file (no blocking).

    :func:`regular_file` first, then ``open(O_NONBLOCK)`` and ``fstat`` on the open descriptor:
    the file swapped for a FIFO between the two is refused too (``O_NONBLOCK`` makes opening a
    FIFO return at once; on a regular file it changes nothing).
    """
    p = regular_file(path, what, error=error)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(p, flags)
    except OSError as exc:
        raise error(f"{what} {short_path(p)}: {describe(exc)}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{what} {short_path(p)}: it is {_kind(st.st_mode)}, not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------

def _tmp_name(target: Path, prefix: str) -> str:
    suffix = target.suffix if len(target.suffix) <= _MAX_SUFFIX else ""
    return f"{prefix}{secrets.token_hex(6)}.tmp{suffix}"


def _create_tmp(target: Path, prefix: str) -> tuple[int, Path]:
    """A new empty file beside ``target`` (O_EXCL, O_NOFOLLOW), mode 0o666 & ~umask."""
    if not isinstance(prefix, str) or len(prefix) > _MAX_PREFIX or "/" in prefix or os.sep in prefix:
        raise ValueError(f"prefix must be a short file-name prefix, got {prefix!r}")
    flags = (os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
             | getattr(os, "O_CLOEXEC", 0))
    for _ in range(100):
        tmp = target.parent / _tmp_name(target, prefix)
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:      # 48 random bits collided: astronomically rare, try again
            continue
    raise FileExistsError(f"cannot create a temporary file in {target.parent}")


_RENAME_NOREPLACE = 1
_AT_FDCWD = -100
_renameat2: Any = None


def _libc_renameat2():
    """libc's ``renameat2`` (glibc >= 2.28), or False where there is none."""
    global _renameat2
    if _renameat2 is None:
        _renameat2 = False
        if hasattr(os, "link") and os.name == "posix":
            with contextlib.suppress(OSError, AttributeError, TypeError):
                fn = ctypes.CDLL(None, use_errno=True).renameat2
                fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                               ctypes.c_uint]
                fn.restype = ctypes.c_int
                _renameat2 = fn
    return _renameat2


def _exists_error(target: Path) -> FileExistsError:
    return FileExistsError(f"{short_path(target)} appeared while it was being written; it was not replaced")


def _rename_noreplace(tmp: Path, target: Path) -> None:
    """Move ``tmp`` to ``target`` unless ``target`` exists (whatever it is, a dangling link too)."""
    fn = _libc_renameat2()
    if fn:
        if fn(_AT_FDCWD, os.fsencode(tmp), _AT_FDCWD, os.fsencode(target), _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            raise _exists_error(target)
        if err not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EPERM):
            raise OSError(err, os.strerror(err))
    # no renameat2, or a filesystem without RENAME_NOREPLACE: a hard link fails on an existing name
    try:
        os.link(tmp, target, follow_symlinks=False)
    except FileExistsError:
        raise _exists_error(target) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.ENOSYS):
            raise
        _copy_exclusive(tmp, target)        # no hard links either (FAT, some FUSE): copy
    os.unlink(tmp)


def move_noreplace(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Move ``src`` to ``dest`` (same filesystem) unless ``dest`` exists, atomically where the
    system allows (see the module docstring); :class:`FileExistsError` otherwise."""
    _rename_noreplace(Path(os.fspath(src)), Path(os.fspath(dest)))
    _fsync_dir(Path(os.fspath(dest)).parent)
    return Path(os.fspath(dest))


def _copy_exclusive(tmp: Path, target: Path) -> None:
    """Copy ``tmp`` into a newly created ``target`` (O_EXCL): never replaces, but not atomic; a
    failure removes the partial copy (it is ours: we created it)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(target, flags, 0o666)
    except FileExistsError:
        raise _exists_error(target) from None
    try:
        with os.fdopen(fd, "wb") as dst, open(tmp, "rb") as src:
            shutil.copyfileobj(src, dst, 1 << 20)
            dst.flush()
            os.fsync(dst.fileno())
        if os.path.getsize(target) != os.path.getsize(tmp):
            raise OSError(errno.EIO, "the copy is incomplete")
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(target)
        raise


def _replace_regular(tmp: Path, target: Path) -> None:
    """``os.replace`` onto ``target`` if it is absent or a regular file; refuses links and others."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        st = None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise FileExistsError(f"{short_path(target)} is a symbolic link; it was not replaced")
        if not stat.S_ISREG(st.st_mode):
            raise FileExistsError(f"{short_path(target)} is {_kind(st.st_mode)}; it was not replaced")
        os.chmod(tmp, stat.S_IMODE(st.st_mode))      # the replacement keeps the file's permissions
    # rename() replaces a name, never follows a link there: a symlink swapped in after the lstat
    # is replaced itself, and the file it pointed to is untouched.
    os.replace(tmp, target)


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


class _Temporary:
    """One temporary beside ``target``; ``finish`` verifies and places it, ``discard`` removes it."""

    def __init__(self, target: Path, prefix: str):
        self.target = target
        self.fd, self.path = _create_tmp(target, prefix)
        st = os.fstat(self.fd)
        self.identity = (st.st_dev, st.st_ino)

    def finish(self, overwrite: bool, verify: Verify | None) -> None:
        os.fsync(self.fd)          # the data reaches the disk before the name does
        # The writer may have written by name: make sure the name still is our file (not a
        # link or another file swapped in), and that nothing holds a second name for it.
        st = os.lstat(self.path)
        if (st.st_dev, st.st_ino) != self.identity or not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EIO, f"the temporary file {self.path.name} was replaced while "
                                     f"being written")
        if verify is not None:
            try:
                verify(self.path)
            except Exception as exc:   # noqa: BLE001 -- any failure to read it back is the same news
                raise OSError(errno.EIO, f"the written file did not read back complete "
                                         f"({describe(exc)}); is the disk full or a file-size "
                                         f"limit set?") from None
        os.close(self.fd)
        self.fd = -1
        if overwrite:
            _replace_regular(self.path, self.target)
        else:
            _rename_noreplace(self.path, self.target)
        _fsync_dir(self.target.parent)

    def discard(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1
        with contextlib.suppress(OSError):
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == self.identity:     # only ever remove our own file
                os.unlink(self.path)


def _target(path: str | os.PathLike) -> Path:
    return Path(os.fspath(path)).expanduser()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = True, verify: Verify | None = None,
                prefix: str = TMP_PREFIX) -> Iterator[Path]:
    """Context manager for writing ``path`` all-or-nothing; yields the temporary's name.

    Write the whole result to the yielded path (same extension as ``path``, so writers that
    infer a format from the name work). On normal exit: fsync, ``verify(tmp)`` if given (raise to
    reject the file), then the temporary is placed at ``path`` as the module docstring describes.
    ``overwrite=False`` never replaces an existing ``path``; ``True`` (the default, for callers
    that own their outputs) replaces a regular file, keeping its permissions, but never a
    symbolic link, directory or other file. A new file gets ``0o666 & ~umask``.

    Errors are :class:`OSError`: :class:`FileExistsError` when ``path`` exists (or appeared
    meanwhile) and may not be replaced, ``EIO`` when verification failed, and whatever the system
    says (``ENOSPC``, ``EFBIG``, ``EACCES``); :func:`describe` gives a one-line reason. On any
    error or interrupt the temporary is removed and ``path`` is untouched. ``prefix`` starts the
    temporary's name (a caller that cleans up after crashes can give a per-run one).

    >>> with atomic_path("out/result.csv") as tmp:           # doctest: +SKIP
    ...     tmp.write_text("a,b\\n1,2\\n")
    """
    temp = _Temporary(_target(path), prefix)
    try:
        yield temp.path
        temp.finish(overwrite, verify)
    finally:
        temp.discard()


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, *, overwrite: bool = True, verify: Verify | None = None,
                prefix: str = TMP_PREFIX) -> Iterator[IO[bytes]]:
    """As :func:`atomic_path`, but yields the temporary opened for binary writing.

    Writers that take a file object (Pillow's ``save``, matplotlib's ``savefig``) then never open
    a name at all. The object is flushed by this function; do not close it.
    """
    temp = _Temporary(_target(path), prefix)
    fh = os.fdopen(os.dup(temp.fd), "w+b")
    try:
        try:
            yield fh
            fh.flush()
        finally:
            fh.close()
        temp.finish(overwrite, verify)
    finally:
        temp.discard()


def atomic_write(path: str | os.PathLike, writer: Callable[[Path], Any], *, overwrite: bool = True,
                 verify: Verify | None = None) -> Path:
    """Call ``writer(tmp_path)``, then verify and place the result at ``path`` (:func:`atomic_path`).

    Returns ``path`` as a :class:`~pathlib.Path`.
    """
    with atomic_path(path, overwrite=overwrite, verify=verify) as tmp:
        writer(tmp)
    return _target(path)


# --------------------------------------------------------------------------------------------
# facts about files
# --------------------------------------------------------------------------------------------

def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True if ``a`` and ``b`` name the same file, for "the output must not be an input" checks.

    Uses :func:`os.path.samefile` when both exist (catches hard links and symlinks); when one does
    not exist yet, compares the fully resolved absolute paths (symlinked directories resolved,
    case folded where the OS folds case).
    """
    pa = os.path.expanduser(os.fspath(a))
    pb = os.path.expanduser(os.fspath(b))
    with contextlib.suppress(OSError, ValueError):
        return os.path.samefile(pa, pb)
    try:
        return os.path.normcase(os.path.realpath(pa)) == os.path.normcase(os.path.realpath(pb))
    except (OSError, ValueError):
        return os.path.abspath(pa) == os.path.abspath(pb)


def file_digest(path: str | os.PathLike, algo: str = "sha256") -> str:
    """Hex digest (``algo``: any hashlib name, e.g. "sha256", "md5") of a file, read in 1 MiB chunks."""
    # usedforsecurity=False: md5 is only an integrity check here, and FIPS builds refuse it otherwise
    h = hashlib.new(algo, usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
