"""The end of a batch: ``summary.csv`` and a contact sheet of the results, both written atomically.

Both carry the runner's mark, so that a later run knows them for its own and replaces them, and
refuses to replace a file of that name it did not write (:func:`report_is_ours`): the summary's
first line is exactly :data:`SUMMARY_COLUMNS`, the contact sheet's PNG ``Software`` text is
:data:`OWNER_TOOL`.

The contact sheet puts one content image per row and one (style, options) combination per column,
with the content images down the left and the style images along the top, so a sweep reads at a
glance: along a row the style or an option changes, down a column the photo does. A manifest that is
not a grid (most cells of that table would be empty) is laid out as a plain gallery instead.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

from ..files import atomic_path, open_regular

SUMMARY = "summary.csv"
CONTACT_SHEET = "contact_sheet.png"
OWNER_TOOL = "numpynst batch"   # the contact sheet's PNG "Software" text; the private folders' marker
SUMMARY_COLUMNS = ("job", "status", "J_final", "seconds", "worker", "output", "error",
                   "stopped", "iterations", "content", "style", "options")
THUMB_INCHES = 1.6          # one cell of the contact sheet
MAX_CELLS = 400             # beyond this the sheet would be unreadable; show the first ones


def write_summary(path: str | Path, rows: Sequence[dict]) -> Path:
    """Write the summary rows as CSV (columns :data:`SUMMARY_COLUMNS`)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=SUMMARY_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _cell(r.get(k)) for k in SUMMARY_COLUMNS})
    return path


def report_is_ours(path: str | os.PathLike) -> bool:
    """True if ``path`` (an existing ``summary.csv`` or ``contact_sheet.png``) was written by the runner.

    A summary is ours when its first line is exactly the runner's header; a contact sheet when its
    PNG ``Software`` text chunk is :data:`OWNER_TOOL`. A symlink is never ours (we write files).
    """
    p = Path(path)
    if os.path.islink(p):
        return False
    try:
        with open_regular(p, "report", error=ValueError) as fh:
            head = fh.read(1 << 16)
    except (OSError, ValueError):
        return False
    if p.name == SUMMARY:
        return head.split(b"\n", 1)[0].rstrip(b"\r") == ",".join(SUMMARY_COLUMNS).encode()
    return _png_software(head) == OWNER_TOOL


def _png_software(head: bytes) -> str | None:
    """The ``Software`` tEXt chunk of a PNG, from its first bytes (matplotlib writes it before the pixels)."""
    if not head.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    pos = 8
    while pos + 8 <= len(head):
        length = int.from_bytes(head[pos:pos + 4], "big")
        kind = head[pos + 4:pos + 8]
        data = head[pos + 8:pos + 8 + length]
        if kind == b"tEXt" and data.startswith(b"Software\0"):
            return data[len(b"Software\0"):].decode("latin-1")
        if kind == b"IDAT":
            return None
        pos += 12 + length
    return None


def _cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, sort_keys=True, default=str)
    return v


def grid_layout(jobs: Sequence) -> tuple[list[str], list[tuple], dict[int, tuple[int, int]]]:
    """``(row keys = contents, column keys = (styles, options), {job index: (row, col)})``.

    Falls back to a near-square gallery (row and column keys empty) when fewer than half the cells of
    the contents x columns table would be filled.
    """
    rows: list[str] = []
    cols: list[tuple] = []
    cells: dict[int, tuple[int, int]] = {}
    for i, job in enumerate(jobs):
        ck = (tuple(job.styles), json.dumps(dict(job.options), sort_keys=True, default=str))
        if job.content not in rows:
            rows.append(job.content)
        if ck not in cols:
            cols.append(ck)
        cells[i] = (rows.index(job.content), cols.index(ck))
    if len(set(cells.values())) < len(cells) or len(cells) < 0.5 * len(rows) * len(cols):
        n = len(jobs)
        ncols = max(1, math.ceil(math.sqrt(n)))
        return [], [], {i: (i // ncols, i % ncols) for i in range(n)}
    return rows, cols, cells


def _varying_options(jobs: Sequence) -> list[str]:
    names = sorted({k for j in jobs for k in j.options})
    return [k for k in names if len({json.dumps(j.options.get(k), sort_keys=True, default=str)
                                     for j in jobs}) > 1]


def _thumb(path: str, px: int):
    from ..image import load_image
    try:
        return load_image(path, size=px)
    except Exception:                                   # noqa: BLE001 -- a bad input is shown as text
        return None


def save_contact_sheet(path: str | Path, jobs: Sequence, rows: Sequence[dict], outdir: str | Path,
                       thumb_px: int = 160) -> Path | None:
    """Write the contact sheet PNG of ``jobs`` (results in ``outdir``); ``None`` if there are no jobs."""
    if not jobs:
        return None
    from ..plots import pyplot
    plt = pyplot()
    jobs, rows = list(jobs)[:MAX_CELLS], list(rows)[:MAX_CELLS]
    row_keys, col_keys, cells = grid_layout(jobs)
    is_grid = bool(row_keys)
    n_rows = (len(row_keys) if is_grid else max(r for r, _ in cells.values()) + 1) + is_grid
    n_cols = (len(col_keys) if is_grid else max(c for _, c in cells.values()) + 1) + is_grid
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(THUMB_INCHES * n_cols, THUMB_INCHES * n_rows + 0.3),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    varying = _varying_options(jobs)
    small = {"fontsize": 7}
    if is_grid:
        axes[0, 0].text(0.5, 0.5, "content \\ style", ha="center", va="center", **small)
        for r, content in enumerate(row_keys, 1):
            _show(axes[r, 0], _thumb(content, thumb_px), Path(content).name, small)
        for c, (styles, opts) in enumerate(col_keys, 1):
            opts = json.loads(opts)
            label = " + ".join(Path(s).name for s in styles)
            extra = ", ".join(f"{k}={_fmt(opts.get(k))}" for k in varying if k in opts)
            _show(axes[0, c], _thumb(styles[0], thumb_px), label + ("\n" + extra if extra else ""), small)
    for i, job in enumerate(jobs):
        r, c = cells[i]
        ax = axes[r + is_grid, c + is_grid]
        row = rows[i]
        if row.get("output") and row.get("status") in ("done", "skipped"):
            j = row.get("J_final")
            _show(ax, _thumb(str(Path(outdir) / row["output"]), thumb_px),
                  (job.name if not is_grid else "") + (f"\nJ={j:.3g}" if isinstance(j, float) else ""), small)
        else:
            ax.text(0.5, 0.5, f"{row.get('status', '?')}\n{str(row.get('error', ''))[:60]}", ha="center",
                    va="center", wrap=True, color="firebrick", **small)
    from ..image import load_image
    try:
        fig.tight_layout()
        # Decoded in full before it takes the name (a full disk must not leave a cut picture). The
        # PNG's Software text marks the sheet as the runner's own: a later run replaces it, but never
        # a contact_sheet.png it did not write (report_is_ours).
        with atomic_path(path, verify=load_image) as tmp:
            fig.savefig(tmp, dpi=100, format="png", metadata={"Software": OWNER_TOOL})
    finally:
        plt.close(fig)
    return Path(path)


def _show(ax, img, title: str, font: dict) -> None:
    if img is None:
        ax.text(0.5, 0.5, "unreadable", ha="center", va="center", color="firebrick", **font)
    else:
        ax.imshow(img)
    ax.set_title(title, **font)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, dict):
        return ",".join(f"{k}:{w:g}" for k, w in v.items())
    if isinstance(v, str) and "/" in v:
        return Path(v).name
    return str(v)
