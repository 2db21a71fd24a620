"""The options of a stylize run, written once: type, default, range, CLI flag, manifest column, help.

:class:`StylizeOptions` is a frozen dataclass; each field's ``metadata["option"]`` is an
:class:`Option` that says how the value is read from text (a CLI argument, a manifest cell), what
it must be, and how it is shown to the user. Everything that takes these options is generated from
it or calls it:

* ``numpynst stylize`` / ``demo``: :func:`add_arguments` builds the argparse options (flags, help,
  defaults), and :meth:`StylizeOptions.validate` checks them (messages name the flag);
* ``numpynst batch``: :func:`parse_value` reads a manifest cell or a JSON/Python value of a column
  (messages say what was expected; the caller adds the file, row and column), then
  :meth:`StylizeOptions.conflict` checks the options of one job together;
* :func:`numpynst.transfer.stylize`: takes a :class:`StylizeOptions` (or keyword arguments that build
  one) and validates it (messages name the keyword).

Every limit is one constant here (:data:`MAX_ITERATIONS`, the size cap
:data:`numpynst.image.MAX_SIZE`, :data:`STYLE_SCALE_RANGE`, :data:`MAX_LOSS_WEIGHT`, ...), so the
three front ends cannot drift apart. Adding an option is adding one field.

Two checks need more than the options and stay where that is known: a layer's existence in a
particular weights file (the model, :func:`numpynst.objective.check_layers`), and files' existence
and kind (:mod:`numpynst.files`, at the front ends, before anything runs).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import re
from typing import Any, Callable

import numpy as np

from .arch import known_layer_names, parse_layer_weights
from .errors import OptionError
from .image import MAX_SIZE
from .objective import (DEFAULT_CONTENT_LAYER, DEFAULT_STYLE_LAYERS, COEFFICIENT_RANGES, WEIGHTS_MODES,
                        coefficients)
from .guided import DEFAULT_MASK_MODE, MASK_MODES
from .optim import OPTIMIZERS
from .style_stats import STYLE_LOSSES, SWD_MAX_DIRECTIONS

#: Most iterations per scale any caller may ask for (``--iterations``, ``--save-every``, a manifest's
#: ``iterations``): the loss history alone is 32 bytes per iteration, a million L-BFGS iterations is
#: days of work at any size; more is a typo (``1e20``), not a plan.
MAX_ITERATIONS = 1_000_000
DEFAULT_ITERATIONS = 200
DEFAULT_TOL = 1e-4              # relative decrease of J over TOL_WINDOW iterations
TOL_WINDOW = 20
MIN_SIZE = 16                   # a smaller picture has no room for VGG's pools
#: The result's longest side when ``size`` is not given: this, or the content's own when smaller
#: (neural-style's and style-transfer-pytorch's convention). A phone photo at its own size is hours
#: of CPU per run; ``size=ORIGINAL`` (``--size original``) asks for it, a number for any other size.
DEFAULT_SIZE = 512
ORIGINAL = "original"
#: The coarse-to-fine schedule when ``scales`` is not given (:func:`default_scales`): the painting's
#: large strokes are born at the coarse scales, where one VGG position spans more of the picture.
DEFAULT_SCALES = (0.25, 0.5, 1.0)
#: A default scale whose longest side would be under this many pixels is left out: VGG's block5 would
#: see fewer than 8 x 8 positions there, too few for the statistics the style term matches.
COARSEST_SIDE = 128
#: Largest accepted loss weight (alpha, beta, tv_weight) in any weights mode: beyond it the weighted
#: terms overflow float32 for ordinary activations. Calibrated weights have their own, narrower
#: ranges (:data:`numpynst.objective.COEFFICIENT_RANGES`).
MAX_LOSS_WEIGHT = 1e15
#: Largest accepted seed (NumPy's generators take any non-negative integer; 64 bits is plenty).
MAX_SEED = 2 ** 64 - 1
#: The style image's side relative to the content's: below 0.05 it is a few pixels, above 8 it is
#: a larger picture than anything else in the run.
STYLE_SCALE_RANGE = (0.05, 8.0)
INITS = ("content", "noise", "style")
BACKENDS = ("numpy", "cupy", "auto")
PRECISIONS = ("fp32", "tf32", "fp16")       # numpynst.backend.PRECISIONS
POOLINGS = ("max", "avg")
COLORS = ("style", "keep", "match")
_SHOWN = 60                     # characters of a bad value quoted in a message


class BadValue(ValueError):
    """A value that is not what its option takes: ``want`` (``"an integer in 0..10"``) and the value.

    ``str()`` is the manifest's wording, ``"expected <want>, got <value>"``; :meth:`as_option` is
    the CLI's and the Python API's, ``"<label> must be <want>, got <value>"``.
    """

    def __init__(self, want: str, value: Any, shown: str | None = None):
        self.want, self.value, self.shown = want, value, show(value) if shown is None else shown
        super().__init__(f"expected {want}, got {self.shown}")

    def as_option(self, label: str) -> OptionError:
        return OptionError(f"{label} must be {self.want}, got {self.shown}")


def show(v: Any) -> str:
    """``repr(v)``, cut to a readable length (a cell may hold megabytes or a deeply nested list)."""
    try:
        text = repr(v)
    except RecursionError:
        text = f"<{type(v).__name__} nested too deeply>"
    text = " ".join(text.split())               # a NumPy array's repr spans lines
    return text if len(text) <= _SHOWN else text[:_SHOWN - 5] + " ...>"


# ---------------------------------------------------------------------------- reading one value
def _real(v: Any) -> int | float | None:
    """``v`` as a Python int or float if it is a real number (Python or NumPy, not bool); else None."""
    if isinstance(v, (bool, np.bool_)):
        return None
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, numbers.Real):
        return float(v)
    return None


def _number_text(v: str) -> int | float | None:
    """A cell's text as a number: ``"32"`` -> 32, ``"1e-3"`` -> 0.001, ``"1e3"`` -> 1000.0; else None."""
    t = v.strip()
    for convert in (int, float):
        try:
            return convert(t)
        except (ValueError, OverflowError):
            pass
    return None


def _number(v: Any, text: bool) -> int | float | None:
    return _number_text(v) if text and isinstance(v, str) else _real(v)


def integer(lo: int, hi: int | None = None) -> Callable[[Any, bool], int]:
    """An integer in ``lo..hi`` (``hi`` None: no upper bound). ``text`` reading also takes ``"1e3"``
    and ``"32.0"`` (a spreadsheet's way of writing 1000 and 32); Python values must be integers
    (NumPy's too), never bool or float."""
    want = f"an integer in {lo}..{hi}" if hi is not None else f"an integer >= {lo}"

    def check(v: Any, text: bool) -> int:
        n = _number(v, text)
        if text and isinstance(n, float) and n.is_integer():      # 32.0, "1e3"; never inf or nan
            n = int(n)
        if not isinstance(n, int):
            raise BadValue("an integer", v)
        if n < lo or (hi is not None and n > hi):
            raise BadValue(want, v)
        return n
    return check


def real(lo: float = 0.0, hi: float = math.inf, above: bool = False) -> Callable[[Any, bool], float]:
    """A finite number in ``[lo, hi]`` (``(lo, hi]`` when ``above``)."""
    want = (f"a number {'>' if above else '>='} {lo:g}" if hi == math.inf else
            f"a number in {'(' if above else '['}{lo:g}, {hi:g}]")

    def check(v: Any, text: bool) -> float:
        n = _number(v, text)
        if n is None:
            raise BadValue("a number", v)
        try:
            x = float(n)
        except OverflowError:                           # an integer beyond float range
            x = math.inf
        if not math.isfinite(x) or x < lo or x > hi or (above and x == lo):
            raise BadValue(want, v)
        return x
    return check


def _numbers(lo: float, hi: float, what: str, example: str) -> Callable[[Any, bool], list[float]]:
    """A list of numbers: a cell's text ``"0.5;1"`` (``,`` or spaces also separate), or in Python a
    list, tuple or 1-D NumPy array; never a string (``"0.5 1"``), a set or a dict. The message
    shows the example in the caller's own form: text for a cell, a Python list for the API."""
    one = real(lo, hi)

    def check(v: Any, text: bool) -> list[float]:
        want = f"{what} such as " + ("'" + ";".join(example.split()) + "'" if text else
                                     "[" + ", ".join(example.split()) + "]")
        items = re.split(r"[;,\s]+", v.strip()) if text and isinstance(v, str) else v
        if isinstance(items, np.ndarray) and items.ndim == 1 and not text:
            items = items.tolist()
        if not isinstance(items, (list, tuple)) or not [i for i in items if i != ""]:
            raise BadValue(want, v)
        return [one(i, text) for i in items if i != ""]
    return check


def _blend(v: Any, text: bool) -> list[float]:
    w = _numbers(0.0, math.inf, "a list of weights", "0.7 0.3")(v, text)
    if sum(w) <= 0:
        raise BadValue("weights >= 0 with a positive sum", v)
    return w


def _scales(v: Any, text: bool) -> list[float]:
    s = _numbers(0.0, 1.0, "a list of scales", "0.25 0.5 1")(v, text)
    if any(x <= 0 for x in s) or s != sorted(s):
        raise BadValue("increasing scales in (0, 1] such as " + ("'0.25;0.5;1'" if text else "[0.25, 0.5, 1]"), v)
    return s


def choice(*choices: str) -> Callable[[Any, bool], str]:
    def check(v: Any, text: bool) -> str:
        if not isinstance(v, str) or v.strip() not in choices:
            raise BadValue(f"one of {', '.join(choices)}", v)
        return v.strip()
    return check


def _bool(v: Any, text: bool) -> bool:
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if _real(v) in (0, 1) and not isinstance(v, str):
        return bool(_real(v))
    if text and isinstance(v, str) and v.strip().lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return v.strip().lower() in ("1", "true", "yes", "on")
    raise BadValue("true or false", v)


def _layer(v: Any, text: bool) -> str:
    if not isinstance(v, str) or v.strip() not in known_layer_names():
        raise BadValue("a VGG layer name such as block4_conv2", v)
    return v.strip()


def _style_layers(v: Any, text: bool) -> dict[str, float]:
    """``"block1_conv1:0.5;block3_conv1"`` (or ``,``), a list of names, or ``{name: weight}``."""
    try:
        layers = parse_layer_weights(v)
    except (TypeError, OverflowError, ValueError):       # unhashable names, weights beyond float range
        raise BadValue("layers such as 'block1_conv1:0.5;block2_conv1:0.5'", v) from None
    return {name: real()(w, text) for name, w in layers.items()}


def _path_or_array(v: Any, text: bool) -> Any:
    """A file name (checked to exist by the front end that reads it) or, in Python, an image array."""
    if isinstance(v, (str, os.PathLike)) and str(v).strip() and "\0" not in str(v):
        return v
    if not text and len(getattr(v, "shape", ())) in (2, 3):      # an image, grey or colour
        return v
    raise BadValue("a file path", v)


def _masks(v: Any, text: bool) -> list:
    """Mask files (``"sky.png;ground.png"`` in a cell) or, in Python, a list of files and arrays."""
    items = [i for i in v.split(";") if i.strip()] if text and isinstance(v, str) else v
    if not isinstance(items, (list, tuple)) or not items:
        raise BadValue("a list of mask files such as 'sky.png;ground.png'", v)
    try:
        return [_path_or_array(i.strip() if isinstance(i, str) else i, text) for i in items]
    except BadValue:
        raise BadValue("a list of mask files such as 'sky.png;ground.png'", v) from None


def _init(v: Any, text: bool) -> Any:
    if isinstance(v, str) and v.strip() in INITS:
        return v.strip()
    try:
        return _path_or_array(v, text)
    except BadValue:
        raise BadValue(f"one of {', '.join(INITS)} or an image file", v) from None


def _file(v: Any, text: bool) -> Any:
    if not isinstance(v, (str, os.PathLike)) or not str(v).strip() or "\0" in str(v):
        raise BadValue("a file path", v)
    return v


def _memory(v: Any, text: bool) -> Any:
    from .plan import parse_memory                     # "4GB" -> bytes
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (str, numbers.Real)):
        raise BadValue("a size such as 4GB, 3.5GiB or 800MB", v)
    try:
        parse_memory(v)
    except OptionError:
        raise BadValue("a positive size such as 4GB, 3.5GiB or 800MB", v) from None
    return v


def _size(v: Any, text: bool) -> int | str:
    """A longest side in pixels, or ``"original"`` (the content's own size)."""
    if isinstance(v, str) and v.strip().lower() == ORIGINAL:
        return ORIGINAL
    try:
        return integer(MIN_SIZE, MAX_SIZE)(v, text)
    except BadValue as exc:
        raise BadValue(f"{exc.want} or '{ORIGINAL}'", v) from None


def _size_arg(text: str) -> int | str:
    """``--size``'s text: a number of pixels (its range is checked with the others) or ``original``."""
    import argparse
    if text.strip().lower() == ORIGINAL:
        return ORIGINAL
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of pixels or '{ORIGINAL}', got {text!r}") from None


def result_size(size: int | str | None, content_hw: tuple[int, int]) -> int | None:
    """The longest side to resize a ``content_hw`` picture to for option ``size``; ``None``: keep it.

    ``None`` (the default): :data:`DEFAULT_SIZE`, or the content's own size when that is smaller (a
    small picture is never enlarged by default); ``"original"``: the content's own; a number: that."""
    if size == ORIGINAL:
        return None
    if size is None:
        return DEFAULT_SIZE if max(content_hw) > DEFAULT_SIZE else None
    return size


def default_scales(hw: tuple[int, int]) -> list[float]:
    """The scales a run of an ``hw`` result makes when ``scales`` is not given: :data:`DEFAULT_SCALES`
    less those whose longest side would be under :data:`COARSEST_SIDE` px (512 px: 0.25, 0.5, 1;
    256 px: 0.5, 1; under 256 px: full size only)."""
    side = max(hw)
    return [s for s in DEFAULT_SCALES if s == 1.0 or round(s * side) >= COARSEST_SIDE]


def _tile(v: Any, text: bool) -> int:
    # the planner checks the pooling grid and the halo, which depend on the model and the layers
    return integer(1)(v, text)


# ---------------------------------------------------------------------------- the schema
@dataclasses.dataclass(frozen=True)
class Option:
    """How one field of :class:`StylizeOptions` meets the user.

    ``check(value, text)`` returns the value as the run takes it or raises :class:`BadValue`;
    ``text=True`` reads a manifest cell (``"1e3"``, ``"0.5;1"``, ``"yes"``). ``none``: ``None`` is
    a value of this option although its default is not (``seed``: a fresh seed; ``tol``: never);
    an option whose default is ``None`` always takes it. ``picture``: whether the option shapes the
    picture (a checkpoint belongs to the run with the same such options, :mod:`numpynst.checkpoint`;
    how often it is written does not). ``flags``: the CLI's
    names (the first is the one messages use), none for a Python-only option; ``column``: whether
    a batch manifest may set it; ``nargs``/``arg_type``/``choices``/``metavar``: argparse's reading
    of the text; ``group``: the ``--help`` section.
    """

    check: Callable[[Any, bool], Any]
    help: str
    group: str
    flags: tuple[str, ...] = ()
    column: bool = True
    arg_type: Callable[[str], Any] | None = None
    nargs: str | None = None
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    none: bool = False
    picture: bool = True


def _style_layers_arg(text: str) -> dict[str, float]:
    import argparse
    try:
        return parse_layer_weights(text)
    except ValueError as exc:        # argparse reports ArgumentTypeError's text as is
        raise argparse.ArgumentTypeError(str(exc)) from None


def _field(default: Any, option: Option) -> Any:
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={"option": option})
    return dataclasses.field(default=default, metadata={"option": option})


_RANGE = "%g..%g"
_PIC, _OPT, _MODEL, _PRINT = "picture", "optimisation", "model and device", "print size (memory)"
_CHECKPOINT = "checkpoints (continue after a crash)"
#: Longest interval between two checkpoints (``--checkpoint-every``): a week.
MAX_CHECKPOINT_SECONDS = 7 * 24 * 3600.0
#: Seconds between checkpoints when ``checkpoint_every`` is left to the plan (:mod:`numpynst.checkpoint`).
DEFAULT_CHECKPOINT_SECONDS = 300.0


@dataclasses.dataclass(frozen=True)
class StylizeOptions:
    """Every knob of one stylize run (the picture it makes, not where it is written).

    ``None`` means "the default that depends on something else": :data:`DEFAULT_SIZE` or the
    content's size when smaller (:func:`result_size`), the
    weights mode's default loss weight, the optimizer's default step, equal style blending, the
    planner's choice of whole image or tiles, half of the free memory. Build it with keyword
    arguments (``StylizeOptions(size=512, beta=3)``), change it with :func:`dataclasses.replace`,
    and check it with :meth:`validate` (``stylize`` does).
    """

    # picture
    size: int | str | None = _field(None, Option(
        _size, f"longest side of the result in pixels, or '{ORIGINAL}' for the content's own size "
        f"(default: {DEFAULT_SIZE}, or the content's size when smaller)", _PIC, ("--size",),
        arg_type=_size_arg, metavar="PX"))
    style_scale: float = _field(1.0, Option(
        real(*STYLE_SCALE_RANGE), "style image size relative to the content; < 1 gives bigger strokes "
        "(default 1)", _PIC, ("--style-scale",), arg_type=float))
    style_blend: list[float] | None = _field(None, Option(
        _blend, "one weight per style image, to blend several styles (default: equal)", _PIC,
        ("--style-blend",), arg_type=float, nargs="+", metavar="W"))
    preserve_color: bool = _field(False, Option(
        _bool, "the older name of --color keep", _PIC, ("--preserve-color",)))
    color: str = _field("style", Option(
        choice(*COLORS), "style (default): the painting's colours; keep: the photo's colours, luminance "
        "transferred after the run; match: the painting's colours moved to the photo's palette (mean "
        "and covariance of RGB) before the run", _PIC, ("--color",), choices=COLORS))
    masks: list | None = _field(None, Option(
        _masks, "one greyscale mask per style image (any size, resized to the content): white where "
        "that style applies, grey blends; where every mask is black the photo keeps its content", _PIC,
        ("--masks",), nargs="+", metavar="MASK"))
    style_masks: list | None = _field(None, Option(
        _masks, "one greyscale mask per style image on the style side: take each style from the white "
        "part of its painting", _PIC, ("--style-masks",), nargs="+", metavar="MASK"))
    mask_mode: str = _field(DEFAULT_MASK_MODE, Option(
        choice(*MASK_MODES), f"how a mask reaches each style layer: resize (its mean over each "
        f"position's cell) or erode (its minimum over the position's receptive field) (default "
        f"{DEFAULT_MASK_MODE})", _PIC, ("--mask-mode",), choices=MASK_MODES))
    init: Any = _field("content", Option(
        _init, f"starting image: {', '.join(INITS)}, or an image path (default: content)", _PIC, ("--init",)))
    seed: int | None = _field(0, Option(
        integer(0, MAX_SEED), "seed of the noise init (default 0)", _PIC, ("--seed",), arg_type=int,
        none=True))
    # optimisation
    iterations: int = _field(DEFAULT_ITERATIONS, Option(
        integer(0, MAX_ITERATIONS), f"iteration cap per scale (default {DEFAULT_ITERATIONS})", _OPT,
        ("--iterations",), arg_type=int))
    optimizer: str = _field("lbfgs", Option(
        choice(*OPTIMIZERS), "default: lbfgs", _OPT, ("--optimizer",), choices=OPTIMIZERS))
    lr: float | None = _field(None, Option(
        real(0.0, above=True), "step size for adam/gd", _OPT, ("--lr",), arg_type=float))
    alpha: float | None = _field(None, Option(
        real(0.0, MAX_LOSS_WEIGHT), "content weight, " + _RANGE % COEFFICIENT_RANGES["alpha"] +
        " (default {calibrated:g}; raw: {raw:g})", _OPT, ("--content-weight", "--alpha"), arg_type=float))
    beta: float | None = _field(None, Option(
        real(0.0, MAX_LOSS_WEIGHT), "style weight, " + _RANGE % COEFFICIENT_RANGES["beta"] +
        ": more is more painting (default {calibrated:g}; raw: {raw:g})", _OPT,
        ("--style-weight", "--beta"), arg_type=float))
    tv_weight: float | None = _field(None, Option(
        real(0.0, MAX_LOSS_WEIGHT), "smoothness weight, " + _RANGE % COEFFICIENT_RANGES["tv_weight"] +
        " (default {calibrated:g}; raw: {raw:g}): the notes' 'total variation' term, a sum of SQUARED "
        "neighbour differences (a quadratic smoothness penalty, not true total variation)", _OPT,
        ("--tv-weight",), arg_type=float))
    weights_mode: str = _field("calibrated", Option(
        choice(*WEIGHTS_MODES), "calibrated (default): each term divided by its value at a blank image, "
        "the ranges above apply; raw: the tutorials' J with the weights as given", _OPT,
        ("--weights-mode",), choices=WEIGHTS_MODES))
    style_loss: str = _field("gram", Option(
        choice(*STYLE_LOSSES), "what the style term compares at each layer: gram (default: the Gram "
        "matrix), mean-cov (mean and covariance, Wasserstein-2) or swd (sliced Wasserstein; whole "
        "images only, no tiles)", _OPT, ("--style-loss",), choices=STYLE_LOSSES))
    swd_directions: int | None = _field(None, Option(
        integer(1, SWD_MAX_DIRECTIONS), "random directions per layer of --style-loss swd (default: the "
        "layer's channel count)", _OPT, ("--swd-directions",), arg_type=int, metavar="K"))
    content_layer: str = _field(DEFAULT_CONTENT_LAYER, Option(
        _layer, f"default {DEFAULT_CONTENT_LAYER}", _OPT, ("--content-layer",)))
    style_layers: dict[str, float] | None = _field(None, Option(
        _style_layers, "comma list NAME[:WEIGHT] (default: "
        + ",".join(f"{k}:{v:g}" for k, v in DEFAULT_STYLE_LAYERS.items()) + ")", _OPT,
        ("--style-layers",), arg_type=_style_layers_arg))
    scales: list[float] | None = _field(None, Option(
        _scales, "coarse-to-fine schedule, e.g. 0.25 0.5 1 (default: 0.25 0.5 1, leaving out the scales under "
        f"{COARSEST_SIDE} px; 1 = full size only)", _OPT,
        ("--scales",), arg_type=float, nargs="+", metavar="S"))
    tol: float | None = _field(DEFAULT_TOL, Option(
        real(), f"stop when J falls by less than this fraction over {TOL_WINDOW} iterations; 0 = never "
        f"(default {DEFAULT_TOL:g})", _OPT, ("--tol",), arg_type=float, none=True))
    # model and device
    backend: str = _field("numpy", Option(
        choice(*BACKENDS), "default: numpy", _MODEL, ("--backend",), column=False, choices=BACKENDS))
    precision: str = _field("fp32", Option(
        choice(*PRECISIONS), "arithmetic: fp32 (default); tf32: float32 matrix products on a GPU's TF32 "
        "tensor cores (--backend cupy); fp16: the network in float16 with float32 sums, the losses and "
        "the optimiser in float32 (on numpy an emulation, slower than fp32)", _MODEL, ("--precision",),
        column=False, choices=PRECISIONS))
    weights: Any = _field(None, Option(
        _file, "VGG16/19 HDF5 weights (default: the shipped VGG19)", _MODEL, ("--weights",)))
    pooling: str = _field("max", Option(
        choice(*POOLINGS), "default: max", _MODEL, ("--pooling",), choices=POOLINGS))
    # print size
    max_memory: Any = _field(None, Option(
        _memory, "memory budget, e.g. 4GB: the planner runs each scale whole or over exact tiles to fit "
        "it (default: half of the free memory)", _PRINT, ("--max-memory",), column=False, metavar="SIZE"))
    tile: int | None = _field(None, Option(
        _tile, "force exact tiles of at most PX x PX pixels (a multiple of the pooling grid, at least "
        "the halo)", _PRINT, ("--tile",), column=False, arg_type=int, metavar="PX"))
    # checkpoints
    checkpoint_every: float | None = _field(None, Option(
        real(0.0, MAX_CHECKPOINT_SECONDS), "write OUT.checkpoint.npz every SECONDS; running the same command "
        f"again continues from it (default: every {DEFAULT_CHECKPOINT_SECONDS:g} s for runs planned to take "
        "longer; 0: at every logging point)", _CHECKPOINT, ("--checkpoint-every",), column=False, arg_type=float,
        metavar="SECONDS", picture=False))
    no_checkpoint: bool = _field(False, Option(
        _bool, "write no checkpoint and continue from none", _CHECKPOINT, ("--no-checkpoint",),
        column=False, picture=False))

    # ------------------------------------------------------------------ checks
    def validate(self, n_styles: int | None = None, cli: bool = False) -> "StylizeOptions":
        """The options as the run takes them, or the first problem as a one-line
        :class:`OptionError` naming the option: its flag (``cli=True``) or keyword. ``n_styles``: the
        number of style images, for ``style_blend``.

        As the run takes them: numbers as Python ints and floats, lists of floats, ``init`` stripped,
        the default style layers written out, and the scales ending at 1 (full size), added when
        missing (``None`` stays: the run picks :func:`default_scales` for its size)."""
        numeric = all(v is None or _real(v) is not None for v in (self.alpha, self.beta, self.tv_weight))
        if not cli and numeric and isinstance(self.weights_mode, str) and self.weights_mode in WEIGHTS_MODES:
            self.coefficients()     # the objective's own wording, which names the keyword and the flag
        values = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is None and (f.metadata["option"].none or default_of(f.name) is None):
                values[f.name] = v
                continue
            try:
                values[f.name] = f.metadata["option"].check(v, False)
            except BadValue as exc:
                raise exc.as_option(label(f.name, cli)) from None
            except (TypeError, ValueError, OverflowError, RecursionError):   # a value no check foresaw
                raise BadValue(_want(f.name), v).as_option(label(f.name, cli)) from None
        if values["style_layers"] is None:                # the run's layers, written out
            values["style_layers"] = dict(DEFAULT_STYLE_LAYERS)
        scales = values["scales"]                         # coarse to fine, ending at full size
        if scales is not None:
            values["scales"] = scales if scales[-1:] == [1.0] else [*scales, 1.0]
        if values["preserve_color"] and values["color"] == "style":     # the older flag, folded in
            values["color"], values["preserve_color"] = "keep", False
        out = dataclasses.replace(self, **values)
        problem = out.conflict(n_styles, cli)
        if problem is not None:
            raise OptionError(problem[1])
        return out

    def conflict(self, n_styles: int | None = None, cli: bool = False) -> tuple[str, str] | None:
        """``(option, reason)`` for the first options that are each valid but cannot run together
        (checked on the parsed options, before anything runs), else ``None``."""
        name = lambda n: label(n, cli)      # noqa: E731
        if self.lr is not None and self.optimizer == "lbfgs":
            return "lr", (f"{name('lr')} does not apply to optimizer lbfgs (it needs no learning rate); "
                          f"leave it out or choose adam or gd")
        if self.style_blend is not None and n_styles is not None and len(self.style_blend) != n_styles:
            return "style_blend", (f"{name('style_blend')} has {len(self.style_blend)} weight(s) for "
                                   f"{n_styles} style image(s); give one per style")
        if isinstance(self.size, int) and round(self.size * self.style_scale) > MAX_SIZE:
            return "style_scale", (f"{name('size')} {self.size} x {name('style_scale')} {self.style_scale:g} "
                                   f"makes the style image {round(self.size * self.style_scale)} px, more "
                                   f"than {MAX_SIZE}")
        if self.precision == "tf32" and self.backend == "numpy":
            return "precision", (f"{name('precision')} tf32 needs {name('backend')} cupy (TF32 is a mode of "
                                 f"a GPU's tensor cores); on numpy use fp32 or fp16")
        for n in ("masks", "style_masks"):
            given = getattr(self, n)
            if given is not None and n_styles is not None and len(given) != n_styles:
                return n, (f"{name(n)} has {len(given)} mask(s) for {n_styles} style image(s); give one "
                           f"per style, in the same order")
        if self.style_loss == "swd" and (self.masks is not None or self.style_masks is not None):
            n = "masks" if self.masks is not None else "style_masks"
            return n, (f"{name(n)} cannot be used with {name('style_loss')} swd: it sorts all positions at "
                       f"once and has no mask-weighted form here; use {name('style_loss')} gram or mean-cov")
        if self.preserve_color and self.color == "match":
            return "preserve_color", (f"{name('preserve_color')} (the older {name('color')} keep) and "
                                      f"{name('color')} match contradict each other; give one of them")
        if self.swd_directions is not None and self.style_loss != "swd":
            return "swd_directions", (f"{name('swd_directions')} applies to {name('style_loss')} swd only "
                                      f"(got {self.style_loss}); leave it out or choose swd")
        if self.tile is not None and self.style_loss == "swd":
            return "tile", (f"{name('style_loss')} swd cannot run over exact tiles ({name('tile')} "
                            f"{self.tile}): choose {name('style_loss')} mean-cov or gram, or leave "
                            f"{name('tile')} out")
        if self.no_checkpoint and self.checkpoint_every is not None:
            return "checkpoint_every", (f"{name('checkpoint_every')} cannot be combined with "
                                        f"{name('no_checkpoint')}; give one of them")
        if all(v == 0 for v in (self.alpha, self.beta, self.tv_weight)):
            return "alpha", (f"{name('alpha')}, {name('beta')} and {name('tv_weight')} are all 0: there is "
                             f"nothing to minimise")
        if self.weights_mode == "calibrated":
            for n, (lo, hi) in COEFFICIENT_RANGES.items():
                v = getattr(self, n)
                if v is not None and not lo <= v <= hi:
                    return n, (f"{name(n)} must be a number in [{lo:g}, {hi:g}] with calibrated weights "
                               f"(the default weights mode), got {v:g}; choose raw weights for the "
                               f"tutorials' unscaled J")
        return None

    def coefficients(self) -> tuple[float, float, float]:
        """``(alpha, beta, tv_weight)`` with the weights mode's defaults filled in."""
        return coefficients(self.weights_mode, self.alpha, self.beta, self.tv_weight)

    @classmethod
    def from_keywords(cls, options: "StylizeOptions | None" = None, **keywords: Any) -> "StylizeOptions":
        """``options`` (default: all defaults) with ``keywords`` replaced; a keyword that is no option
        is a one-line :class:`OptionError` listing the options."""
        unknown = [k for k in keywords if k not in OPTION_NAMES]
        if unknown:
            raise OptionError(f"unknown option {unknown[0]!r}; the options are {', '.join(OPTION_NAMES)}")
        base = cls() if options is None else options
        if not isinstance(base, cls):
            raise OptionError(f"options must be a numpynst.options.StylizeOptions, got {type(base).__name__}")
        return dataclasses.replace(base, **keywords)


def resolve(options: StylizeOptions | None = None, n_styles: int | None = None, **keywords: Any) -> StylizeOptions:
    """``options`` with ``keywords`` replaced (:meth:`StylizeOptions.from_keywords`), validated for
    the Python API (:meth:`StylizeOptions.validate`): what :func:`numpynst.transfer.prepare` runs with."""
    return StylizeOptions.from_keywords(options, **keywords).validate(n_styles)


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(StylizeOptions)}
OPTION_NAMES = tuple(FIELDS)
#: The options a batch manifest (or a grid, or ``numpynst batch``'s flags) may set.
COLUMNS = tuple(n for n, f in FIELDS.items() if f.metadata["option"].column)


def _want(name: str) -> str:
    """What option ``name`` takes, in a word, from its default's type (for an unforeseen value)."""
    d = default_of(name)
    return ("true or false" if isinstance(d, bool) else "a number" if isinstance(d, (int, float)) else
            "text" if isinstance(d, str) else f"a valid {name}")


def option(name: str) -> Option:
    return FIELDS[name].metadata["option"]


def label(name: str, cli: bool) -> str:
    """How messages name an option: its flags on the command line (``--style-weight/--beta``), its
    keyword in Python."""
    flags = option(name).flags
    return "/".join(flags) if cli and flags else name


def parse_value(name: str, value: Any) -> Any:
    """One manifest cell (text) or JSON/Python value of option ``name``, checked; ``ValueError``
    (:class:`BadValue`, or an unknown name) with a short reason, to which the caller adds where.
    File names come back as given: the batch resolves them against the manifest's folder."""
    if name not in COLUMNS:
        raise ValueError(f"unknown option {show(name)}; known: {', '.join(COLUMNS)}")
    return option(name).check(value, True)


def option_help(name: str) -> str:
    """The ``--help`` text of option ``name`` (the loss weights' defaults filled in)."""
    from .objective import DEFAULT_ALPHA, DEFAULT_BETA, DEFAULT_TV_WEIGHT, RAW_ALPHA, RAW_BETA, RAW_TV_WEIGHT
    defaults = {"alpha": (DEFAULT_ALPHA, RAW_ALPHA), "beta": (DEFAULT_BETA, RAW_BETA),
                "tv_weight": (DEFAULT_TV_WEIGHT, RAW_TV_WEIGHT)}
    text = option(name).help
    return text.format(calibrated=defaults[name][0], raw=defaults[name][1]) if name in defaults else text


def add_arguments(parser) -> dict[str, Any]:
    """The options of :class:`StylizeOptions` as argparse arguments in their ``--help`` groups, each
    stored under the field's name (``args.beta``); a later ``parser.set_defaults`` may change a
    default (``numpynst demo`` does). Returns ``{group title: argument group}`` for the caller's
    own arguments."""
    groups: dict[str, Any] = {}
    for name, f in FIELDS.items():
        opt = f.metadata["option"]
        if not opt.flags:
            continue
        if opt.group not in groups:
            groups[opt.group] = parser.add_argument_group(opt.group)
        kw: dict[str, Any] = {"dest": name, "default": default_of(name), "help": option_help(name)}
        if isinstance(kw["default"], bool):
            kw["action"] = "store_true"
        else:
            kw.update({k: v for k, v in (("type", opt.arg_type), ("nargs", opt.nargs),
                                         ("choices", opt.choices), ("metavar", opt.metavar)) if v is not None})
        groups[opt.group].add_argument(*opt.flags, **kw)
    return groups


def default_of(name: str) -> Any:
    f = FIELDS[name]
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def from_args(args: Any) -> StylizeOptions:
    """The :class:`StylizeOptions` of parsed CLI arguments (``--tol 0`` means never: ``None``)."""
    values = {n: getattr(args, n) for n in OPTION_NAMES if hasattr(args, n)}
    values["tol"] = values.get("tol") or None
    return StylizeOptions(**values)
