"""The options schema (:mod:`numpynst.options`): one definition, three front ends that agree.

The command line (argparse generated from the schema), the batch manifest (a cell's text) and the
Python API (``stylize(**keywords)``) must accept and refuse exactly the same values, with messages
that name the option the way each front end spells it. These tests check that at every range's
edges, for every option that has a range, instead of trusting three copies of each limit.
"""

from __future__ import annotations

import argparse
import dataclasses
import math

import pytest

from numpynst import options as o
from numpynst.batch.options import OPTIONS as MANIFEST_COLUMNS, check_together, parse_option
from numpynst.commands.stylize import add_stylize_options
from numpynst.errors import OptionError
from numpynst.image import MAX_SIZE
from numpynst.options import MAX_ITERATIONS, StylizeOptions


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(exit_on_error=False)
    add_stylize_options(p)
    return p


def _cli(*argv: str) -> StylizeOptions:
    return o.from_args(_parser().parse_args(list(argv)))


# (option, CLI text at the edge inside, just outside; both also given as numbers to Python)
EDGES = [
    ("size", 16, 15), ("size", MAX_SIZE, MAX_SIZE + 1),
    ("iterations", 0, -1), ("iterations", MAX_ITERATIONS, MAX_ITERATIONS + 1),
    ("seed", 0, -1), ("seed", o.MAX_SEED, o.MAX_SEED + 1),
    ("style_scale", o.STYLE_SCALE_RANGE[0], o.STYLE_SCALE_RANGE[0] / 2),
    ("style_scale", o.STYLE_SCALE_RANGE[1], o.STYLE_SCALE_RANGE[1] * 2),
    ("tol", 0.0, -1e-9),
    ("lr", 1e-9, 0.0),
]


def _valid(name: str, value) -> dict:
    """Options in which ``name = value`` is the only thing that could be wrong."""
    extra = {"optimizer": "adam"} if name == "lr" else {}
    if name == "style_scale":
        extra["size"] = 64                  # so that size x style_scale stays within MAX_SIZE
    return {name: value, **extra}


@pytest.mark.parametrize("name, inside, outside", EDGES)
def test_the_three_front_ends_agree_at_every_edge(name, inside, outside):
    flag = o.label(name, cli=True)
    kw = _valid(name, inside)
    # Python
    StylizeOptions(**kw).validate(1)
    with pytest.raises(OptionError, match=f"^{name} must be "):
        StylizeOptions(**_valid(name, outside)).validate(1)
    # CLI (the same text a user types)
    argv = [f"{o.option(k).flags[0]}={v}" for k, v in kw.items()]     # "=": "-1" is not a flag
    _cli(*argv).validate(1, cli=True)
    bad = [f"{o.option(k).flags[0]}={v}" for k, v in _valid(name, outside).items()]
    with pytest.raises(OptionError, match=f"^{flag} must be "):
        _cli(*bad).validate(1, cli=True)
    # manifest cell
    if name in MANIFEST_COLUMNS:
        assert parse_option(name, str(inside)) == inside
        with pytest.raises(ValueError, match="^expected "):
            parse_option(name, str(outside))


def test_the_messages_say_the_same_thing_in_each_front_ends_words():
    want = f"an integer in 0..{MAX_ITERATIONS}"
    with pytest.raises(OptionError, match=f"^iterations must be {want}, got {MAX_ITERATIONS + 1}$"):
        StylizeOptions(iterations=MAX_ITERATIONS + 1).validate()
    with pytest.raises(OptionError, match=f"^--iterations must be {want}, got {MAX_ITERATIONS + 1}$"):
        StylizeOptions(iterations=MAX_ITERATIONS + 1).validate(cli=True)
    with pytest.raises(ValueError, match=f"^expected {want}, got '{MAX_ITERATIONS + 1}'$"):
        parse_option("iterations", str(MAX_ITERATIONS + 1))


def test_every_field_has_a_flag_and_help_and_the_cli_defaults_are_the_schemas():
    p = _parser()
    defaults = vars(p.parse_args([]))
    for f in dataclasses.fields(StylizeOptions):
        opt = f.metadata["option"]
        assert opt.flags and opt.help, f.name
        assert defaults[f.name] == o.default_of(f.name), f.name
    assert _cli() == StylizeOptions(tol=o.DEFAULT_TOL)


def test_cli_arguments_become_the_options_they_name():
    got = _cli("--size", "64", "--style-weight", "3", "--content-weight", "0.5", "--tv-weight", "0",
               "--scales", "0.5", "1", "--style-layers", "block1_conv1:0.5,block2_conv1", "--tol", "0",
               "--optimizer", "adam", "--lr", "2", "--preserve-color", "--init", "noise", "--seed", "3")
    assert got == StylizeOptions(size=64, beta=3.0, alpha=0.5, tv_weight=0.0, scales=[0.5, 1.0],
                                 style_layers={"block1_conv1": 0.5, "block2_conv1": 1.0}, tol=None,
                                 optimizer="adam", lr=2.0, preserve_color=True, init="noise", seed=3)


def test_manifest_columns_are_the_fields_marked_for_manifests():
    assert set(MANIFEST_COLUMNS) == {n for n in o.OPTION_NAMES if o.option(n).column}
    assert {"backend", "tile", "max_memory"}.isdisjoint(MANIFEST_COLUMNS)    # the run's, not the job's


@pytest.mark.parametrize("kw, n_styles, fragment", [
    ({"optimizer": "lbfgs", "lr": 0.1}, 1, "lr does not apply to optimizer lbfgs"),
    ({"style_blend": [1.0, 2.0]}, 1, "style_blend has 2 weight(s) for 1 style image(s)"),
    ({"alpha": 0.0, "beta": 0.0, "tv_weight": 0.0}, 1, "are all 0: there is nothing to minimise"),
    ({"size": MAX_SIZE, "style_scale": 2.0}, 1, f"more than {MAX_SIZE}"),
    ({"beta": 101.0, "weights_mode": "calibrated"}, 1, "beta must be a number in [0, 100] with calibrated"),
])
def test_options_that_cannot_run_together_are_refused_by_every_front_end(kw, n_styles, fragment):
    problem = StylizeOptions(**kw).conflict(n_styles)
    assert problem is not None and fragment in problem[1]
    with pytest.raises(OptionError):
        StylizeOptions(**kw).validate(n_styles, cli=True)
    column, reason = check_together(dict(kw), n_styles)     # the manifest's wording of the same
    assert column == problem[0] and "\n" not in reason


def test_raw_weights_take_any_finite_value_up_to_the_cap():
    StylizeOptions(beta=1e6, weights_mode="raw").validate()
    with pytest.raises(OptionError, match=r"^beta \(--style-weight\) must be a finite number >= 0"):
        StylizeOptions(beta=math.inf, weights_mode="raw").validate()
    with pytest.raises(OptionError, match=r"^--style-weight/--beta must be a number in \[0, 1e\+15\]"):
        StylizeOptions(beta=1e16, weights_mode="raw").validate(cli=True)


def test_keywords_that_are_no_option_are_named():
    with pytest.raises(OptionError, match="unknown option 'betta'"):
        StylizeOptions.from_keywords(betta=3)
    base = StylizeOptions(size=64)
    assert StylizeOptions.from_keywords(base, beta=2.0) == StylizeOptions(size=64, beta=2.0)
    with pytest.raises(OptionError, match="options must be a numpynst.options.StylizeOptions"):
        StylizeOptions.from_keywords({"size": 64})
