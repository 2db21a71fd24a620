"""The tutorial notebooks: in sync with their sources, committed with a full run, and executable.

Each ``tutorials/NN_name.ipynb`` is generated from ``tutorials/src/NN_name.py`` by
``tutorials/_build.py`` and committed with the outputs of a full run. Here we check that

* every source has its notebook, with exactly the source's cells (no drift between the two);
* the committed notebooks were run top to bottom in full mode, without errors, figures included,
  and stay small;
* no number in the prose is typed by hand: the markdown's ``{{name:fmt}}`` placeholders are filled
  from the values the run recorded (``numpynst.claims``), a stated range is asserted by ``claim``,
  and the build fails when an output contradicts it (tested on synthetic notebooks below);
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

from numpynst import claims

nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"
FAST_FLAG_LINE = 'FAST = os.environ.get("NUMPYNST_FAST") == "1"'
SIZE_BUDGET_BYTES = 8 * 10**6
EXPECTED_NOTEBOOKS = 17


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


def _rendered(nb, values) -> list[tuple[str, str]]:
    """The cells of ``nb`` with the markdown's placeholders filled from ``values``."""
    return [(c.cell_type, claims.render(c.source, values) if c.cell_type == "markdown" else c.source)
            for c in nb.cells]


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


# ------------------------------------------------------------- numbers in the prose: numpynst.claims
@pytest.fixture
def fresh_record(monkeypatch, tmp_path):
    monkeypatch.setattr(claims, "RECORD", {})
    monkeypatch.setenv(claims.ENV, str(tmp_path / "record.json"))
    monkeypatch.delenv("NUMPYNST_FAST", raising=False)
    return tmp_path / "record.json"


def test_claim_records_and_renders(fresh_record):
    import json

    import numpy as np

    claims.claim("err", np.float32(2.5e-9), 1e-9, 1e-8)
    claims.record("layer", "block4_conv2")
    claims.record("n", np.int64(7))
    text = "error {{err:.1e}} (stated {{err.lo:.0e}}..{{err.hi:.0e}}) at {{ layer }}, {{n}} runs"
    assert claims.render(text, claims.RECORD) == "error 2.5e-09 (stated 1e-09..1e-08) at block4_conv2, 7 runs"
    assert json.loads(fresh_record.read_text()) == claims.RECORD      # what leaves the kernel
    assert claims.placeholders(text) == ["err", "err", "err", "layer", "n"]


def test_claim_outside_its_range_fails(fresh_record):
    with pytest.raises(AssertionError, match=r"claim 'err'.*1e-09 <= err <= 1e-08.*2e-08"):
        claims.claim("err", 2e-8, 1e-9, 1e-8)
    with pytest.raises(AssertionError, match="claim 'low'"):
        claims.claim("low", 0.5, 1.0)
    with pytest.raises(AssertionError, match="not a finite number"):
        claims.claim("nan", float("nan"), 0.0, 1.0)


def test_claim_fast_mode_range(fresh_record, monkeypatch):
    monkeypatch.setenv("NUMPYNST_FAST", "1")
    claims.claim("x", 5.0, 0.0, 1.0, fast=(4.0, 6.0))     # the fast range applies
    claims.claim("y", 5.0, 0.0, 1.0, fast=None)           # recorded, not checked
    with pytest.raises(AssertionError):
        claims.claim("z", 5.0, 4.0, 6.0, fast=(0.0, 1.0))
    with pytest.raises(AssertionError):
        claims.claim("w", 5.0, 0.0, 1.0)                  # no fast range: the same range holds
    assert claims.RECORD["y"] == {"value": 5.0, "lo": 0.0, "hi": 1.0}


def test_render_refuses_what_was_not_recorded():
    values = {"a": {"value": 1.0, "lo": None, "hi": None}}
    with pytest.raises(KeyError, match=r"cell-03: placeholder \{\{b:.2f\}\} names nothing"):
        claims.render("{{a}} and {{b:.2f}}", values, where="cell-03")
    with pytest.raises(KeyError, match="states no lo bound"):
        claims.render("{{a.lo}}", values)
    with pytest.raises(ValueError, match="placeholder"):
        claims.render("{{a:d}}", values)


def test_keep_outputs_refuses_a_changed_code_cell(tmp_path):
    src = tmp_path / "98_keep.py"
    src.write_text("# %% [markdown]\n# x is {{x}}\n# %%\nprint(1)\n", encoding="utf-8")
    committed = build.build_notebook(src)
    committed.cells[1].outputs = [nbformat.v4.new_output("stream", text="1\n")]
    committed.cells[1].execution_count = 1
    committed.metadata["numpynst"] = {"values": {"x": {"value": 3, "lo": None, "hi": None}}}
    fresh = build.build_notebook(src)
    build.keep_outputs(fresh, committed)
    assert fresh.cells[0].source == "x is 3" and fresh.cells[1].outputs[0].text == "1\n"
    src.write_text("# %% [markdown]\n# x is {{x}}\n# %%\nprint(2)\n", encoding="utf-8")
    with pytest.raises(ValueError, match="code cell differs"):
        build.keep_outputs(build.build_notebook(src), committed)
    # a change declared not to change the computation is accepted, and only that one
    build.keep_outputs(build.build_notebook(src), committed, [("print(1)", "print(2)")])
    src.write_text("# %% [markdown]\n# x is {{x}}\n# %%\nprint(2)  # two\n", encoding="utf-8")
    with pytest.raises(ValueError, match="code cell differs"):
        build.keep_outputs(build.build_notebook(src), committed, [("print(1)", "print(2)")])


# ------------------------------------------------------------------------ the committed notebooks
def test_one_notebook_per_source():
    assert len(SOURCES) == EXPECTED_NOTEBOOKS, [s.name for s in SOURCES]
    notebooks = sorted(p.stem for p in TUTORIALS.glob("*.ipynb"))
    assert notebooks == [s.stem for s in SOURCES]


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_matches_its_source(source):
    committed = _read(source)
    values = committed.metadata.get("numpynst", {}).get("values", {})
    assert _cells(committed) == _rendered(build.build_notebook(source), values), (
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


def _synthetic(tmp_path, text):
    src = tmp_path / "99_synthetic.py"
    src.write_text(text, encoding="utf-8")
    return build.build_notebook(src)


_SYNTHETIC = """# %% [markdown]
# The error is {{{{err:.1e}}}}, between {{{{err.lo:.0e}}}} and {{{{err.hi:.0e}}}}.
# %%
from numpynst.claims import claim
claim("err", {value}, 1e-9, 1e-8)
"""


@pytest.mark.slow
def test_build_fills_the_prose_from_the_run(kernel_name, tmp_path, monkeypatch):
    monkeypatch.delenv("NUMPYNST_FAST", raising=False)
    nb = build.execute(_synthetic(tmp_path, _SYNTHETIC.format(value=2.5e-9)), kernel_name,
                       timeout=120, workdir=tmp_path)
    assert nb.cells[0].source == "The error is 2.5e-09, between 1e-09 and 1e-08."
    assert nb.metadata["numpynst"]["values"]["err"] == {"value": 2.5e-9, "lo": 1e-9, "hi": 1e-8}


@pytest.mark.slow
def test_build_fails_on_a_contradicted_range(kernel_name, tmp_path, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.delenv("NUMPYNST_FAST", raising=False)
    nb = _synthetic(tmp_path, _SYNTHETIC.format(value=3e-8))         # the text says 1e-9..1e-8
    with pytest.raises(nbclient.exceptions.CellExecutionError, match="claim 'err'"):
        build.execute(nb, kernel_name, timeout=120, workdir=tmp_path)
    # and through the command line: the exit status is not 0 and nothing is written
    monkeypatch.setattr(build, "SRC", tmp_path)
    monkeypatch.setattr(build, "HERE", tmp_path)
    (tmp_path / "99_synthetic.py").write_text(_SYNTHETIC.format(value=3e-8), encoding="utf-8")
    with pytest.raises(nbclient.exceptions.CellExecutionError):
        build.main(["--execute", "99"])
    assert not (tmp_path / "99_synthetic.ipynb").exists()


@pytest.mark.slow
def test_build_fails_on_a_placeholder_nothing_recorded(kernel_name, tmp_path, monkeypatch):
    monkeypatch.delenv("NUMPYNST_FAST", raising=False)
    nb = _synthetic(tmp_path, _SYNTHETIC.format(value=2e-9) + "# %% [markdown]\n# {{missing:.2f}}\n")
    with pytest.raises(KeyError, match="missing"):
        build.execute(nb, kernel_name, timeout=120, workdir=tmp_path)


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
