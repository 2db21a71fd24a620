"""Build the tutorial notebooks from their sources, and execute them.

Each notebook ``tutorials/NN_name.ipynb`` is generated from ``tutorials/src/NN_name.py``, a plain
text file in the "percent" format (the one jupytext and VS Code read)::

    # %% [markdown]
    # # A title
    # Markdown lines, each behind "# ".
    # %%
    print("a code cell")

The sources are what you edit (they diff well); the committed ``.ipynb`` files carry the outputs of
a full run, so they read on a code host without running anything. Usage::

    python tutorials/_build.py                    # rewrite every .ipynb from its source (no outputs)
    python tutorials/_build.py --execute          # ... and run each in full mode, storing outputs
    python tutorials/_build.py --execute 05 06    # only the notebooks whose name starts so
    NUMPYNST_FAST=1 python tutorials/_build.py --execute --dry-run   # run in fast mode, write nothing
    python tutorials/_build.py --keep-outputs 10  # markdown changed only: keep the stored run

**No number typed by hand.** The markdown quotes what the code computed through placeholders,
``{{name:fmt}}`` (or ``{{name.lo:fmt}}``/``{{name.hi:fmt}}`` for the range a ``claim`` states),
filled in after the run from the values the code recorded with ``numpynst.claims.record`` /
``claim``. A claim asserts its range, so a stated range that the output contradicts fails the
run, and a placeholder that nothing recorded fails the build (``KeyError``). The values are kept in
the notebook's metadata (``numpynst.values``), from which the test suite re-renders the sources.

Execution runs one notebook at a time (the full runs take minutes each on a laptop CPU) in a
temporary working directory, so nothing is written next to the notebooks, with a kernel started
from this interpreter (``sys.executable -m ipykernel_launcher``). ``tests/test_tutorials.py`` uses
:func:`build_notebook`, :func:`execute` and :func:`kernel_dir` from here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"
ROOT = HERE.parent           # the checkout whose numpynst the notebooks import
KERNEL_NAME = "numpynst-tutorials"
CLAIMS_ENV = "NUMPYNST_CLAIMS"     # numpynst.claims.ENV (not imported here: the build runs before)

_MARKER = re.compile(r"^# %%(?:\s*\[(markdown|md)\])?\s*$")


def sources() -> list[Path]:
    """The notebook sources, in order: ``tutorials/src/NN_*.py``."""
    return sorted(SRC.glob("[0-9][0-9]_*.py"))


def notebook_path(source: Path) -> Path:
    """``tutorials/src/NN_name.py`` -> ``tutorials/NN_name.ipynb``."""
    return HERE / (source.stem + ".ipynb")


def parse_cells(text: str) -> list[tuple[str, str]]:
    """Split a percent-format source into ``[(kind, source)]`` with kind ``"markdown"`` or ``"code"``.

    Markdown lines lose their leading ``"# "`` (or a bare ``"#"``); blank lines around a cell are
    trimmed; text before the first marker is ignored (a place for a file header).
    """
    cells: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        m = _MARKER.match(line)
        if m:
            cells.append(("markdown" if m.group(1) else "code", []))
        elif cells:
            cells[-1][1].append(line)
    out = []
    for kind, lines in cells:
        if kind == "markdown":
            bad = [ln for ln in lines if ln and not ln.startswith("#")]
            if bad:
                raise ValueError(f"markdown line without a leading '#': {bad[0]!r}")
            lines = [ln[2:] if ln.startswith("# ") else ln[1:] for ln in lines]
        body = "\n".join(lines).strip("\n")
        if body.strip():
            out.append((kind, body))
    return out


def build_notebook(source: Path):
    """An nbformat notebook (no outputs) from one source file; cell ids are stable (``cell-NN``)."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python", "pygments_lexer": "ipython3"},
    }
    for k, (kind, body) in enumerate(parse_cells(source.read_text(encoding="utf-8"))):
        make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        cell = make(body)
        cell.id = f"cell-{k:02d}"
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


@contextlib.contextmanager
def kernel_dir():
    """A temporary ``JUPYTER_PATH`` entry holding a kernelspec that runs *this* interpreter.

    Yields the kernel name to pass to nbclient. Nothing is installed into the user's or the
    environment's Jupyter directories, and the environment variable is restored afterwards.
    """
    with tempfile.TemporaryDirectory(prefix="numpynst-kernel-") as tmp:
        spec = Path(tmp) / "kernels" / KERNEL_NAME
        spec.mkdir(parents=True)
        (spec / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": f"Python ({sys.executable})",
            "language": "python",
        }), encoding="utf-8")
        old = os.environ.get("JUPYTER_PATH")
        os.environ["JUPYTER_PATH"] = tmp if not old else tmp + os.pathsep + old
        try:
            yield KERNEL_NAME
        finally:
            if old is None:
                os.environ.pop("JUPYTER_PATH", None)
            else:
                os.environ["JUPYTER_PATH"] = old


def execute(nb, kernel_name: str, timeout: int = 900, workdir: str | os.PathLike | None = None):
    """Run every cell of ``nb`` in place (outputs stored) in ``workdir`` (default: a temporary dir),
    then fill the markdown's placeholders from the values the code recorded (:func:`fill`).

    The kernel inherits this process's environment, so ``NUMPYNST_FAST`` set here reaches the
    notebook; ``NUMPYNST_CLAIMS`` is set for the run to a temporary file into which
    ``numpynst.claims`` writes every recorded value. Raises
    ``nbclient.exceptions.CellExecutionError`` on the first failing cell (a failed ``assert`` or
    ``claim`` in a numerical check included), and ``KeyError`` for a placeholder nothing recorded.
    """
    import nbclient

    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="numpynst-nb-"))
        record_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="numpynst-claims-"))
        record_file = Path(record_dir) / "record.json"
        saved = {k: os.environ.get(k) for k in (CLAIMS_ENV, "PYTHONPATH")}
        os.environ[CLAIMS_ENV] = str(record_file)
        # the kernel imports numpynst from this checkout, whatever else is installed
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), saved["PYTHONPATH"]) if p)
        try:
            client = nbclient.NotebookClient(nb, kernel_name=kernel_name, timeout=timeout,
                                             record_timing=False, startup_timeout=120,
                                             resources={"metadata": {"path": str(workdir)}})
            client.execute()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        values = json.loads(record_file.read_text(encoding="utf-8")) if record_file.exists() else {}
    # the kernelspec name used for the run is a temporary one; keep the portable one
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python",
                                 "name": "python3"}
    fill(nb, values)
    return nb


def fill(nb, values: dict) -> None:
    """Replace the placeholders of ``nb``'s markdown cells with ``values`` (``numpynst.claims``
    records), and keep the values in ``nb.metadata["numpynst"]["values"]``, so that a test can
    re-render the sources and compare. Raises ``KeyError`` for a placeholder with no value.
    """
    if str(ROOT) not in sys.path:        # numpynst from this checkout
        sys.path.insert(0, str(ROOT))
    from numpynst.claims import render

    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = render(cell.source, values, where=cell.get("id", "a markdown cell"))
    if values:
        nb.metadata["numpynst"] = {"values": values}


def keep_outputs(nb, committed, same_as: list[tuple[str, str]] = ()) -> None:
    """Give ``nb`` (freshly built) the outputs, execution counts and recorded values of
    ``committed`` (the notebook as last executed), and fill its placeholders from those values.

    Only for a change to the markdown, or to code that computes the same thing: ``same_as`` lists
    ``(old, new)`` text replacements declared not to change what the code computes (a default
    written out as the value it had, a sample named by the name its alias had); the committed
    cells with these replacements must equal the new ones. Raises ``ValueError`` otherwise (the
    code cells differ in number or source), since the stored outputs would then not be what the
    code prints.
    """
    old = [c for c in committed.cells if c.cell_type == "code"]
    new = [c for c in nb.cells if c.cell_type == "code"]

    def replaced(source: str) -> str:
        for a, b in same_as:
            source = source.replace(a, b)
        return source
    if [replaced(c.source) for c in old] != [c.source for c in new]:
        raise ValueError("--keep-outputs: a code cell differs from the committed notebook's; execute it")
    for a, b in zip(new, old):
        a.outputs, a.execution_count = b.outputs, b.execution_count
    fill(nb, committed.metadata.get("numpynst", {}).get("values", {}))


def main(argv: list[str] | None = None) -> int:
    import nbformat

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("only", nargs="*", help="name prefixes to build (default: all)")
    ap.add_argument("--execute", action="store_true", help="run each notebook and store its outputs")
    ap.add_argument("--dry-run", action="store_true", help="with --execute: run, but write nothing")
    ap.add_argument("--timeout", type=int, default=3600,
                    help="seconds one cell may run before the build gives up (default 3600: full runs on "
                         "a loaded machine)")
    ap.add_argument("--keep-outputs", action="store_true",
                    help="rebuild the markdown only: keep the committed notebook's outputs and values "
                         "(refused if a code cell changed; for a notebook whose run needs a GPU)")
    ap.add_argument("--same-as", nargs=2, action="append", default=[], metavar=("OLD", "NEW"),
                    help="with --keep-outputs: a code change declared not to change the computation "
                         "(OLD text replaced by NEW); any other change is still refused")
    args = ap.parse_args(argv)
    chosen = [s for s in sources() if not args.only or any(s.stem.startswith(p) for p in args.only)]
    if not chosen:
        print("no notebook source matches", args.only, file=sys.stderr)
        return 2
    fast = os.environ.get("NUMPYNST_FAST") == "1"
    if args.execute and fast and not args.dry_run:
        print("the committed notebooks carry the outputs of a full run: unset NUMPYNST_FAST, or add "
              "--dry-run to only run them in fast mode", file=sys.stderr)
        return 2
    # inline figures: an MPLBACKEND=Agg from the shell would otherwise keep them out of the notebook
    os.environ.pop("MPLBACKEND", None)
    with kernel_dir() as kernel:
        for src in chosen:
            nb = build_notebook(src)
            if args.keep_outputs:
                keep_outputs(nb, nbformat.read(str(notebook_path(src)), as_version=4),
                             [tuple(p) for p in args.same_as])
            elif args.execute:
                t0 = time.perf_counter()
                try:
                    execute(nb, kernel, timeout=args.timeout)
                except Exception:
                    # keep what ran, to read the outputs before the failure (nothing in tutorials/)
                    partial = Path(tempfile.gettempdir()) / f"{src.stem}.failed.ipynb"
                    nbformat.write(nb, str(partial))
                    print(f"{src.stem}: failed; the cells run so far are in {partial}", file=sys.stderr)
                    raise
                print(f"{src.stem}: executed in {time.perf_counter() - t0:.1f} s "
                      f"({'fast' if fast else 'full'} mode)", flush=True)
            if not args.dry_run:
                out = notebook_path(src)
                nbformat.write(nb, str(out))
                print(f"{out}: {out.stat().st_size / 1e3:.0f} kB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
