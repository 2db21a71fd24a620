"""The options a batch job may set, read from a manifest cell (or a JSON/Python value).

The options, their ranges and their messages are :class:`numpynst.options.StylizeOptions`'s (the
columns are its fields marked for manifests, :data:`OPTIONS`); this module adds what only a batch
needs: file names resolved against the manifest's folder and checked to be regular files, and the
options of one job checked together (:func:`check_together`). Every parser raises ``ValueError``
with a short reason; the callers add the file, row and column to make the one-line
:class:`~numpynst.errors.ManifestError`. The checks are the cheap ones (types, ranges, choices, files
exist) so that a typo in row 500 is reported before row 1 runs, not after.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import short_path
from ..files import describe, regular_file
from ..options import (COLUMNS, INITS, MAX_ITERATIONS, StylizeOptions, parse_value,  # noqa: F401 (API)
                       show)

#: Options a job may set: the :func:`numpynst.transfer.stylize` options that a manifest may hold
#: (``weights`` and ``pooling`` pick the per-worker cached model).
OPTIONS: tuple[str, ...] = COLUMNS


def parse_file(v: Any, base: Path) -> str:
    """An existing regular file (``base``-relative), resolved; ``ValueError`` saying why not.

    ``stat`` only, never ``open``: a FIFO or a device is refused here instead of blocking later.
    """
    if not isinstance(v, (str, os.PathLike)) or not str(v).strip():
        raise ValueError(f"expected a file path, got {show(v)}")
    text = str(v).strip()
    if "\0" in text:
        raise ValueError(f"expected a file path, got {show(v)} (it contains a NUL character)")
    path = base / Path(text).expanduser()
    try:
        return str(regular_file(path, "cannot read", error=ValueError).resolve())
    except (OSError, RuntimeError) as exc:              # RuntimeError: a symlink loop
        raise ValueError(f"cannot read {short_path(path)}: {describe(exc)}") from None


def parse_option(name: str, value: Any, base: Path = Path(".")) -> Any:
    """Parse one option value; ``ValueError`` (unknown name, wrong type) with a short reason."""
    if name == "weights":
        return parse_file(value, base)
    if name in ("masks", "style_masks"):          # a list of files, each base-relative and checked
        return [parse_file(v, base) for v in parse_value(name, value)]
    if name == "init" and not (isinstance(value, str) and value.strip() in INITS):
        try:
            return parse_file(value, base)
        except ValueError as exc:
            raise ValueError(f"expected one of {', '.join(INITS)} or an image file; {exc}") from None
    return parse_value(name, value)


def check_together(options: dict[str, Any], n_styles: int) -> tuple[str, str] | None:
    """``(column, reason)`` for the first options of one job that are each valid but cannot run
    together, else ``None``: checked on the parsed options (defaults merged) before anything runs,
    as the CLI checks its flags, instead of failing that job at run time."""
    problem = StylizeOptions(**options).conflict(n_styles)
    if problem is None:
        return None
    column, reason = problem          # the manifest's wording: "column 'beta': expected ..."
    return column, reason.replace(f"{column} must be ", "expected ", 1)
