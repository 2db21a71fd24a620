"""Manifests (CSV, JSON lines) and grids (sweeps): the two ways to list many batch jobs.

Manifest formats (paths relative to the manifest's folder):

* CSV with a header: ``content``, ``style`` (several styles separated by ``;``), optional ``name``,
  and any option of :data:`numpynst.batch.options.OPTIONS` as further columns; an empty cell means
  "stylize's default". Lines starting with ``#`` are ignored.
* JSON lines: one object per line with the same keys; ``style`` may be a list; ``#`` lines and blank
  lines are ignored.

A grid (:func:`grid_jobs`) is the cross product of a folder of contents, a folder of styles and
lists of option values: a parameter sweep.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..checks import first_line
from ..errors import ManifestError, OptionError, short_path
from ..files import describe, open_regular
from ..image import IMAGE_SUFFIXES
from .jobs import Job, default_name, prepare_jobs, slug
from .options import OPTIONS, parse_file, parse_option, show

COLUMNS = ("content", "style", "name")      # the non-option columns of a manifest
#: Largest manifest read (about half a million rows): a bigger file is a mistake (a video given as
#: the manifest, say), and the whole manifest is held in memory.
MAX_MANIFEST_BYTES = 64 << 20


# ----------------------------------------------------------------------------- manifests
def read_manifest(path: str | os.PathLike, defaults: Mapping[str, Any] | None = None) -> list[Job]:
    """Read a CSV or JSON-lines manifest into checked jobs (see the module docstring for the format).

    ``defaults``: options applied to every row that leaves them empty. Relative paths in the manifest
    are relative to the manifest's folder. Raises :class:`ManifestError` (file, row, column).
    """
    path = Path(os.fspath(path)).expanduser()
    text = _read_text(path)
    is_json = path.suffix.lower() in (".jsonl", ".ndjson", ".json") or text.lstrip().startswith("{")
    try:
        rows = _json_rows(path, text) if is_json else _csv_rows(path, text)
    except RecursionError:          # a cell nested beyond what Python's own parsers recurse through
        raise ManifestError(f"manifest {short_path(path)}: a value is nested too deeply to read") from None
    if not rows:
        raise ManifestError(f"manifest {short_path(path)}: no jobs in it")
    base = path.resolve().parent
    parsed = {}
    for name, value in (defaults or {}).items():
        try:
            parsed[name] = parse_option(name, value)
        except ValueError as exc:
            raise OptionError(f"default option {name}: {exc}") from None
    jobs = [_row_to_job(path, base, where, row, parsed) for where, row in rows]
    return prepare_jobs(jobs)


def _read_text(path: Path) -> str:
    """The manifest's text: a regular file (a FIFO would block), at most MAX_MANIFEST_BYTES, UTF-8."""
    with open_regular(path, "manifest", error=ManifestError) as fh:
        try:
            data = fh.read(MAX_MANIFEST_BYTES + 1)
        except OSError as exc:
            raise ManifestError(f"manifest {short_path(path)}: cannot read it ({describe(exc)})") from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"manifest {short_path(path)}: larger than {MAX_MANIFEST_BYTES >> 20} MiB; is it a manifest? "
                            f"(split it into several batches)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ManifestError(f"manifest {short_path(path)}: line {line} is not UTF-8 text (byte {exc.start}); save it "
                            f"as UTF-8") from None


def _csv_rows(path: Path, text: str) -> list[tuple[str, dict]]:
    reader = csv.reader(io.StringIO(text, newline=""))     # not splitlines(): a quoted cell may hold a newline
    header: list[str] | None = None
    rows = []
    for cells in _csv_records(path, reader):
        if not cells or not any(c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
            continue
        if header is None:
            header = [c.strip().lower() for c in cells]
            for col in header:
                if col not in COLUMNS and col not in OPTIONS:
                    raise ManifestError(f"{short_path(path)}: header (line {reader.line_num}), column {show(col)}: unknown "
                                        f"column; use content, style, name or an option: {', '.join(OPTIONS)}")
            dup = sorted({c for c in header if header.count(c) > 1})
            if dup:
                raise ManifestError(f"{short_path(path)}: header (line {reader.line_num}), column {dup[0]!r}: given twice")
            continue
        where = f"{short_path(path)}: row {len(rows) + 1} (line {reader.line_num})"
        if len(cells) > len(header):
            raise ManifestError(f"{where}: {len(cells)} cells but the header has {len(header)} columns")
        row = {col: cell.strip() for col, cell in zip(header, cells) if cell.strip() != ""}
        if "style" in row:
            row["style"] = [s.strip() for s in row["style"].split(";") if s.strip()]
        rows.append((where, row))
    if header is not None:
        for col in ("content", "style"):
            if col not in header:
                raise ManifestError(f"{short_path(path)}: header (line 1), column {col!r}: missing required column "
                                    f"(the header must name content and style)")
    return rows


def _csv_records(path: Path, reader) -> Iterator[list[str]]:
    """The records of ``reader``, with the csv module's errors (a field over its size limit, a stray
    quote in strict mode) as one line naming the manifest line."""
    while True:
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            reason = str(exc)
            if "field larger than field limit" in reason:
                reason = (f"a cell longer than {csv.field_size_limit():,} characters; no path or "
                          f"option is that long")
            raise ManifestError(f"{short_path(path)}: line {reader.line_num}: not valid CSV ({reason})") from None


def _json_rows(path: Path, text: str) -> list[tuple[str, dict]]:
    rows = []
    # split("\n"), not splitlines(): a JSON string may hold U+2028 or a form feed, which are not row breaks
    for line_no, line in enumerate(text.split("\n"), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{short_path(path)}: row {len(rows) + 1} (line {line_no})"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        except RecursionError:
            raise ManifestError(f"{where}: not a manifest row (JSON nested too deeply)") from None
        except ValueError as exc:           # e.g. an integer with more digits than Python converts
            raise ManifestError(f"{where}: not valid JSON ({first_line(exc)})") from None
        if not isinstance(obj, dict):
            raise ManifestError(f"{where}: expected a JSON object per line, got {type(obj).__name__}")
        row = {str(k).strip().lower(): v for k, v in obj.items() if v is not None and v != ""}
        for col in row:
            if col not in COLUMNS and col not in OPTIONS:
                raise ManifestError(f"{where}, column {show(col)}: unknown column; use content, style, name or "
                                    f"an option: {', '.join(OPTIONS)}")
        if isinstance(row.get("style"), str):
            row["style"] = [s.strip() for s in row["style"].split(";") if s.strip()]
        rows.append((where, row))
    return rows


def _row_to_job(path: Path, base: Path, where: str, row: dict, defaults: Mapping[str, Any]) -> Job:
    for col in ("content", "style"):
        if not row.get(col):
            raise ManifestError(f"{where}, column {col!r}: missing value")
    styles = row["style"]
    if not isinstance(styles, list) or not all(isinstance(s, str) for s in styles):
        raise ManifestError(f"{where}, column 'style': expected a path or a list of paths, got {show(styles)}")
    if not isinstance(row["content"], str):
        raise ManifestError(f"{where}, column 'content': expected a path, got {show(row['content'])}")
    try:
        content = parse_file(row["content"], base)
    except ValueError as exc:
        raise ManifestError(f"{where}, column 'content': {exc}") from None
    style_paths = []
    for s in styles:
        try:
            style_paths.append(parse_file(s, base))
        except ValueError as exc:
            raise ManifestError(f"{where}, column 'style': {exc}") from None
    options = dict(defaults)
    for col, value in row.items():
        if col in COLUMNS:
            continue
        try:
            options[col] = parse_option(col, value, base)
        except ValueError as exc:
            raise ManifestError(f"{where}, column {col!r}: {exc}") from None
    name = row.get("name", "")
    if not isinstance(name, str):
        raise ManifestError(f"{where}, column 'name': expected text, got {show(name)}")
    return Job(content=content, styles=tuple(style_paths), options=options, name=name, source=where)


# ----------------------------------------------------------------------------- grids
def list_images(folder: str | os.PathLike, what: str) -> list[str]:
    """Image files directly inside ``folder`` (by extension), sorted by name; OptionError if none."""
    d = Path(os.fspath(folder)).expanduser()
    try:
        files = sorted(str(p.resolve()) for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    except FileNotFoundError:
        raise OptionError(f"{what} folder {short_path(d)}: no such directory") from None
    except (OSError, ValueError, RuntimeError) as exc:   # not a directory, name too long, NUL, link loop
        raise OptionError(f"{what} folder {short_path(d)}: cannot list it ({describe(exc)})") from None
    if not files:
        raise OptionError(f"{what} folder {short_path(d)}: no images in it ({', '.join(IMAGE_SUFFIXES)})")
    return files


def grid_jobs(contents_dir: str | os.PathLike, styles_dir: str | os.PathLike,
              **option_lists: Any) -> list[Job]:
    """The cross product contents x styles x option values (a sweep), as checked jobs.

    Each keyword is an option of :data:`OPTIONS` with a list of values (a single value is a list of
    one), e.g. ``grid_jobs("photos", "paintings", beta=[0.3, 3], iterations=[100])``. Jobs come
    out content-major: all the columns of the first content, then the next content. Raises
    :class:`OptionError` naming the option for an unknown name or a bad value.
    """
    contents = list_images(contents_dir, "contents")
    styles = list_images(styles_dir, "styles")
    names, values = [], []
    for name, vals in option_lists.items():
        vals = list(vals) if isinstance(vals, (list, tuple)) else [vals]
        if not vals:
            raise OptionError(f"grid option {name}: give at least one value")
        try:
            values.append([parse_option(name, v) for v in vals])
        except ValueError as exc:
            raise OptionError(f"grid option {name}: {exc}") from None
        names.append(name)
    varying = [n for n, v in zip(names, values) if len(v) > 1]
    jobs = []
    for content in contents:
        for style in styles:
            for combo in itertools.product(*values):
                options = dict(zip(names, combo))
                label = default_name(content, [style])
                if varying:
                    label += "__" + "_".join(f"{n}{_short(options[n])}" for n in varying)
                jobs.append(Job(content=content, styles=(style,), options=options, name=slug(label),
                                source=f"grid job {len(jobs) + 1} ({Path(content).name} x {Path(style).name})"))
    return prepare_jobs(jobs)


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, dict):
        return "+".join(v)
    if isinstance(v, list):
        return "+".join(_short(x) for x in v)
    return Path(v).stem if isinstance(v, str) and os.sep in v else str(v)

