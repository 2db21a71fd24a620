"""The tutorial notebooks: in sync with their sources, committed with a full run, and executable.

Each ``tutorials/NN_name.ipynb`` is generated from ``tutorials/src/NN_name.py`` by
``tutorials/_build.py`` and committed with the outputs of a full run. Here we check that

* every source has its notebook, with exactly the source's cells (no drift between the two);
* the committed notebooks were run top to bottom in full mode, without errors, figures included,
  and stay small;
* every notebook runs headless in fast mode (``NUMPYNST_FAST=1``: small images, few iterations)
  with a kernel started from this interpreter, in a temporary working directory, writing nothing
  into the repository. The notebooks' own ``assert``s — the numerical gradient checks — are part
  of the test: a failing check fails the run.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"
FAST_FLAG_LINE = 'FAST = os.environ.get("NUMPYNST_FAST") == "1"'
SIZE_BUDGET_BYTES = 8 * 10**6
EXPECTED_NOTEBOOKS = 12


def _load_build():
    spec = importlib.util.spec_from_file_location("numpynst_tutorials_build", TUTORIALS / "_build.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


build = _load_build()
SOURCES = build.sources()


def _read(source: Path):
    return nbformat.read(str(build.notebook_path(source)), as_version=4)


def _cells(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in nb.cells]


def _snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in directory.rglob("*") if p.is_file()}


# ------------------------------------------------------------------------------ the build script
def test_parse_cells_splits_markdown_and_code():
    text = ("header, ignored\n# %% [markdown]\n# # Title\n#\n# Some $x^2$.\n\n# %%\nx = 1\n\n"
            "# a comment stays\nprint(x)\n# %%\n\n")
    assert build.parse_cells(text) == [("markdown", "# Title\n\nSome $x^2$."),
                                       ("code", "x = 1\n\n# a comment stays\nprint(x)")]


def test_parse_cells_rejects_uncommented_markdown():
    with pytest.raises(ValueError, match="without a leading '#'"):
        build.parse_cells("# %% [markdown]\n# fine\nnot fine\n")


# ------------------------------------------------------------------------ the committed notebooks
def test_one_notebook_per_source():
    assert len(SOURCES) == EXPECTED_NOTEBOOKS, [s.name for s in SOURCES]
    notebooks = sorted(p.stem for p in TUTORIALS.glob("*.ipynb"))
    assert notebooks == [s.stem for s in SOURCES]


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_matches_its_source(source):
    committed = _read(source)
    assert _cells(committed) == _cells(build.build_notebook(source)), (
        f"{build.notebook_path(source).name} differs from {source.name}: rebuild and re-run it with "
        f"`python tutorials/_build.py --execute {source.stem[:2]}`")


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_committed_notebook_carries_a_full_run(source):
    nb = _read(source)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert FAST_FLAG_LINE in code[0].source, "the first code cell must read NUMPYNST_FAST"
    # run once, top to bottom, in one kernel
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    first_text = "".join(o.get("text", "") for o in code[0].outputs if o.output_type == "stream")
    assert "full mode" in first_text, "committed outputs must come from a full run, not fast mode"
    assert any("image/jpeg" in o.get("data", {}) or "image/png" in o.get("data", {}) for o in outputs)


def test_notebooks_stay_small():
    sizes = {p.name: p.stat().st_size for p in TUTORIALS.glob("*.ipynb")}
    assert sum(sizes.values()) < SIZE_BUDGET_BYTES, sizes


# ------------------------------------------------------------------------- running them (fast mode)
@pytest.fixture(scope="module")
def kernel_name():
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    with build.kernel_dir() as name:     # a temporary kernelspec for sys.executable; nothing installed
        yield name


@pytest.mark.slow
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_runs_in_fast_mode(source, kernel_name, monkeypatch, tmp_path):
    monkeypatch.setenv("NUMPYNST_FAST", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)        # inline figures, as in the committed run
    before = _snapshot(TUTORIALS)
    nb = build.execute(build.build_notebook(source), kernel_name, timeout=600, workdir=tmp_path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code)
    first_text = "".join(o.get("text", "") for o in code[0].outputs if o.output_type == "stream")
    assert "fast mode" in first_text
    assert _snapshot(TUTORIALS) == before, "executing the notebook changed files under tutorials/"
