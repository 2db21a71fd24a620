"""The last hostile inputs: long file names in one-line errors, and the Python API's argument types.

* Every message that names a file shows it through :func:`numpynst.errors.short_path`: a
  300-character name keeps its start and its end, so the line stays short and still says which file.
* ``stylize(...)``'s keywords are checked by the options schema with one-line :class:`OptionError`
  messages naming the keyword, whatever type of value arrives (a string where a list is expected,
  a list where a dict is, a bool for a number, None, a set, bytes, an object).
"""

import dataclasses
import os

import numpy as np
import pytest
from PIL import Image

from numpynst.cli import main
from numpynst.errors import SHOWN_PATH, OptionError, short_path
from numpynst.options import FIELDS, StylizeOptions, resolve
from numpynst.testing import write_tiny_vgg_h5

MAX_LINE = 280          # a message with two abbreviated names (100 characters each) and its text
MAX_ONE = 220           # a message with one


# ---------------------------------------------------------------------------------------------
# short_path
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [0, 1, 99, 100, 101, 300, 5000])
def test_short_path_keeps_short_names_and_cuts_long_ones_in_the_middle(n):
    text = "".join(chr(ord("a") + i % 26) for i in range(n))
    shown = short_path(text)
    if n <= SHOWN_PATH:
        assert shown == text
    else:
        assert len(shown) == SHOWN_PATH and "..." in shown
        head, tail = shown.split("...")
        assert text.startswith(head) and text.endswith(tail) and len(tail) > len(head) > 0


def test_short_path_takes_paths_bytes_and_other_objects():
    from pathlib import Path
    p = Path("/data") / ("d" * 200) / "picture.png"
    assert short_path(p).startswith("/data/d") and short_path(p).endswith("/picture.png")
    assert short_path(os.fsencode(str(p))) == short_path(p)
    assert short_path(12) == "12"


# ---------------------------------------------------------------------------------------------
# long names in the CLI's messages
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def deep(tmp_path):
    """A folder whose path is ~300 characters (three ~95-character names), with pictures and weights."""
    folder = tmp_path / ("a" * 95) / ("b" * 95) / ("c" * 95)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(folder / "photo.png")
    Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(folder / "art.png")
    write_tiny_vgg_h5(folder / "tiny.h5")
    return folder


def _cases(f):
    """(argv, fragment) of refusals that each name one or two ~300-character paths."""
    w = ["--weights", f / "tiny.h5", "--iterations", "1", "--size", "32", "--quiet"]
    (f / "taken.png").write_bytes(b"")
    (f / "afile").write_bytes(b"")
    (f / "m.csv").write_text(f"content,style\n{f}/photo.png,{f}/nope.png\n")
    (f / "out").mkdir(exist_ok=True)
    Image.new("RGB", (8, 8)).save(f / "out" / "contact_sheet.png")
    (f / "sheet.csv").write_text(f"content,style,weights\n{f}/out/contact_sheet.png,{f}/art.png,{f}/tiny.h5\n")
    return {
        "missing content": (["stylize", f / "nope.png", f / "art.png", "-o", f / "o.png", *w], "no such file"),
        "output is the content": (["stylize", f / "photo.png", f / "art.png", "-o", f / "photo.png", *w],
                                  "is the input (content image)"),
        "output exists": (["stylize", f / "photo.png", f / "art.png", "-o", f / "taken.png", *w], "exists"),
        "output's folder missing": (["stylize", f / "photo.png", f / "art.png", "-o", f / "x" / "o.png", *w],
                                    "does not exist"),
        "missing init": (["stylize", f / "photo.png", f / "art.png", "-o", f / "o.png", "--init",
                          f / "nope.png", *w], "no such file"),
        "missing weights": (["stylize", f / "photo.png", f / "art.png", "-o", f / "o.png", "--weights",
                             f / "nope.h5"], "no such file"),
        "missing manifest": (["batch", f / "nope.csv", "-o", f / "out"], "no such file"),
        "outdir is a file": (["batch", "--grid", f, f, "-o", f / "afile"], "not a directory"),
        "missing style in a row": (["batch", f / "m.csv", "-o", f / "o2"], "column 'style'"),
        "input is the batch's contact sheet": (["batch", f / "sheet.csv", "-o", f / "out"],
                                               "input is OUTDIR/contact_sheet.png, which this batch writes"),
        "grid folder is the outdir": (["batch", "--grid", f, f, "-o", f], "is the input folder"),
    }


@pytest.mark.parametrize("case", ["missing content", "output is the content", "output exists",
                                  "output's folder missing", "missing init", "missing weights",
                                  "missing manifest", "outdir is a file", "missing style in a row",
                                  "input is the batch's contact sheet", "grid folder is the outdir"])
def test_a_300_character_name_gives_a_short_line_with_its_start_and_end(deep, case, capsys, monkeypatch):
    assert len(str(deep / "photo.png")) > 300
    argv, fragment = _cases(deep)[case]
    before = sorted(os.listdir(deep))
    monkeypatch.chdir(deep)
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    line = lines[0]
    assert line.startswith("numpynst: error: ") and fragment in line, line
    assert len(line) <= (MAX_LINE if line.count("...") > 1 else MAX_ONE), (len(line), line)
    # the start of the path and the file's own name are both in the line
    assert str(deep)[:20] in line and "..." in line, line
    assert sorted(os.listdir(deep)) == before           # nothing written


# ---------------------------------------------------------------------------------------------
# the Python API's argument types
# ---------------------------------------------------------------------------------------------

def test_the_issue_cases_are_one_line_option_errors_naming_the_keyword():
    with pytest.raises(OptionError, match=r"^scales must be a list of scales such as \[0.25, 0.5, 1\], "
                                          r"got '0.5 1'$"):
        resolve(scales="0.5 1")
    # a list of layer names is a documented form (equal weights), as is "a;b" and {name: weight}
    assert resolve(style_layers=["block1_conv1", "block2_conv1"]).style_layers == \
        resolve(style_layers="block1_conv1;block2_conv1").style_layers == {"block1_conv1": 1.0, "block2_conv1": 1.0}
    with pytest.raises(OptionError, match="^style_layers must be layers such as"):
        resolve(style_layers=["block1_conv1", 3])


class _Odd:
    def __repr__(self):
        return "<odd>"

    def __float__(self):
        raise RuntimeError("no")


HOSTILE = [None, True, False, np.bool_(True), -1, 0, 2 ** 70, 1.5, float("nan"), float("inf"), "", " ", "x",
           "0.5 1", "1e3", b"block1_conv1", [], [[]], ["x"], [1, "a"], (0.5,), {1, 2}, {"a": 1},
           {"block1_conv1": "heavy"}, {1: 2}, np.zeros((2, 2)), np.array([0.5, 1.0]), _Odd(), object(),
           [float("nan")], "\0", 3 + 2j]


@pytest.mark.parametrize("name", list(FIELDS))
def test_every_keyword_takes_hostile_values_with_one_line_errors_or_accepts_them(name):
    """Each option, each value of another type: validate() returns the options or raises a one-line
    OptionError that names the keyword, and nothing else (no TypeError, no bare ValueError)."""
    for value in HOSTILE:
        try:
            out = StylizeOptions.from_keywords(**{name: value}).validate(1)
        except OptionError as exc:
            text = str(exc)
            assert "\n" not in text and len(text) < 300, (name, value, text)
            assert text.startswith(name) or f" {name}" in text or f"{name} (" in text, (name, value, text)
            continue
        except Exception as exc:         # noqa: BLE001 -- anything else is the bug this test looks for
            pytest.fail(f"{name}={value!r}: {type(exc).__name__}: {exc}")
        # accepted: the value the run takes is of a type the run knows
        taken = getattr(out, name)
        assert taken is None or isinstance(taken, (bool, int, float, str, list, dict, os.PathLike, np.ndarray)), \
            (name, value, taken)
        assert dataclasses.replace(out) == out


def test_none_only_where_it_means_something():
    assert resolve(seed=None).seed is None and resolve(tol=None).tol is None and resolve(size=None).size is None
    for name in ("iterations", "optimizer", "backend", "style_scale", "content_layer", "init", "pooling",
                 "preserve_color", "weights_mode"):
        with pytest.raises(OptionError, match=f"^{name} must be"):
            resolve(**{name: None})


def test_numpy_arrays_where_lists_are_expected():
    assert resolve(scales=np.array([0.5, 1.0])).scales == [0.5, 1.0]
    assert resolve(style_blend=np.array([0.7, 0.3]), n_styles=2).style_blend == [0.7, 0.3]
    with pytest.raises(OptionError, match="^scales must be"):
        resolve(scales=np.array([[0.5, 1.0]]))
