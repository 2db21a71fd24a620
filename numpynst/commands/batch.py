"""``numpynst batch MANIFEST -o OUTDIR`` or ``numpynst batch --grid CONTENTS STYLES -o OUTDIR``: many
stylizations on a Dask cluster, resumable, with a summary table and a contact sheet.

Option flags (``--iterations 100``, ``--beta 0.3 3``, ...) set a default for every manifest row
that leaves the option empty; with ``--grid`` each flag may take several values and the grid is the
cross product of contents x styles x all values (a sweep).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import NumpynstError, OptionError, short_path
from ..batch.options import OPTIONS
from ..options import option_help


def register(subparsers) -> None:
    p = subparsers.add_parser("batch", help="many stylizations from a manifest or a grid, on Dask",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifest", nargs="?", help="CSV or JSON-lines file: content, style, [name], options")
    p.add_argument("--grid", nargs=2, metavar=("CONTENTS_DIR", "STYLES_DIR"),
                   help="every image of CONTENTS_DIR x every image of STYLES_DIR x every option value")
    p.add_argument("-o", "--outdir", required=True, help="output folder (results, summary.csv, contact sheet)")
    c = p.add_argument_group("cluster")
    c.add_argument("--workers", type=int, default=None,
                   help="local worker processes (default: sized to the cores and memory)")
    c.add_argument("--scheduler", metavar="ADDRESS", help="use a running Dask cluster, e.g. tcp://host:8786")
    c.add_argument("--gpu", action="store_true",
                   help="CuPy backend; without --scheduler, one local worker per GPU (needs dask-cuda)")
    c.add_argument("--retries", type=int, default=2,
                   help="extra attempts for a job whose worker died (default 2)")
    c.add_argument("--no-contact-sheet", action="store_true", help="skip contact_sheet.png")
    c.add_argument("--quiet", action="store_true", help="no progress bar (the summary lines are still printed)")
    o = p.add_argument_group("options (one value each; several values with --grid make a sweep)")
    for name in OPTIONS:                # one flag per job option, parsed and checked like a manifest cell
        o.add_argument("--" + name.replace("_", "-"), dest="opt_" + name, nargs="+", metavar="V",
                       help=option_help(name))
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        return _run(args)
    except NumpynstError as exc:
        text = str(exc)
        if text.isprintable():
            raise
        # A file name may hold a newline or a terminal escape: the error must stay one plain line.
        raise type(exc)("".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)) from None


def _run(args) -> int:
    from .. import batch
    from ..batch.options import parse_option
    from ..files import same_file
    options = {n: getattr(args, "opt_" + n) for n in OPTIONS if getattr(args, "opt_" + n, None) is not None}
    if (args.manifest is None) == (args.grid is None):
        raise OptionError("give either a MANIFEST or --grid CONTENTS_DIR STYLES_DIR (exactly one)")
    if args.workers is not None and args.scheduler:
        raise OptionError("--workers cannot be combined with --scheduler (the cluster has its own workers)")
    for name, values in options.items():        # check here, to name the flag as the user typed it
        for v in values:
            try:
                parse_option(name, v, Path.cwd())
            except ValueError as exc:
                raise OptionError(f"--{name.replace('_', '-')}: {exc}") from None
    if args.grid:
        for folder in args.grid:
            if same_file(folder, args.outdir):
                shown = "" if str(folder) == str(args.outdir) else f" {short_path(folder)}"
                raise OptionError(f"--outdir {short_path(args.outdir)} is the input folder{shown}: its results "
                                  f"would become inputs of the next run; use another folder")
        jobs = batch.grid_jobs(*args.grid, **options)
    else:
        several = [n for n, v in options.items() if len(v) > 1]
        if several:
            raise OptionError(f"--{several[0].replace('_', '-')}: several values make a sweep, which needs "
                              f"--grid; a manifest takes one value per option")
        jobs = batch.read_manifest(args.manifest, defaults={n: v[0] for n, v in options.items()})
    results = batch.run(jobs, args.outdir, workers=args.workers, scheduler=args.scheduler, gpu=args.gpu,
                        retries=args.retries, progress=not args.quiet,
                        contact_sheet=not args.no_contact_sheet, log=print,
                        protect=[args.manifest] if args.manifest else [])
    if results.written:
        print("; ".join(f"{p.stem.replace('_', ' ')}: {p}" for p in results.written))
    line = failure_line(results)
    if line:
        print(line, file=sys.stderr)
    return exit_status(results)


def failure_line(results) -> str | None:
    """The one stderr line of a batch with failed jobs: how many failed, and where the reasons are
    (the summary's ``error`` column; or, when the summary could not be written, the first reason)."""
    from ..batch.report import SUMMARY
    failed = [r for r in results if r.status == "failed"]
    if not failed:
        return None
    summary = [p for p in results.written if p.name == SUMMARY]
    where = (f"the reasons are in the 'error' column of {short_path(summary[0])}" if summary else
             f"the summary could not be written; the first: {failed[0].job}: {failed[0].error[:160]}")
    return f"numpynst batch: {len(failed)} of {len(results)} jobs failed; {where}"


def exit_status(results) -> int:
    """The exit status of ``numpynst batch`` (also in docs/batch.md).

    * ``128 + N`` after signal N: 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP (the summary is
      written all the same, marking the unfinished jobs ``cancelled``);
    * 1 if a job failed, or the summary or contact sheet could not be written (full disk, file-size
      limit: one line says which; the jobs' images and sidecars are complete either way);
    * 130 if a job was cancelled otherwise (its worker was interrupted); 0 when every job is done or
      skipped and the report is written.
    """
    if results.signum is not None:
        return 128 + int(results.signum)
    statuses = {r.status for r in results}
    if "failed" in statuses or results.report_errors:
        return 1
    return 130 if "cancelled" in statuses else 0
