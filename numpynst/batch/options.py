"""The options a batch job may set, and how a manifest cell (or a JSON/Python value) becomes one.

Each parser takes the raw value (a CSV string, or a JSON/Python value) and the folder relative paths
are resolved against, and returns the value :func:`numpynst.transfer.stylize` expects, or raises
``ValueError`` with a short reason; the callers add the file, row and column to make the one-line
:class:`~numpynst.errors.ManifestError`. The checks are the cheap ones (types, ranges, choices, files
exist) so that a typo in row 500 is reported before row 1 runs, not after.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..arch import known_layer_names, parse_layer_weights
from ..files import describe, regular_file
from ..image import MAX_SIZE


#: Most iterations a job may ask for (per scale): about a week of CPU time at 512 px, and the size
#: of the loss history ``stylize`` keeps on the device (8 MB). More is a typo (``1e20``), not a plan.
MAX_ITERATIONS = 1_000_000
_SHOWN = 60                     # characters of a bad value quoted in a message
MAX_SIDE = MAX_SIZE             # longest side of any image a job makes (content or style)


def show(v: Any) -> str:
    """``repr(v)``, cut to a readable length (a cell may hold megabytes or a deeply nested list)."""
    try:
        text = repr(v)
    except RecursionError:
        text = f"<{type(v).__name__} nested too deeply>"
    return text if len(text) <= _SHOWN else text[:_SHOWN - 5] + " ...>"


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


def _int(lo: int, hi: int | None = None) -> Callable[[Any, Path], int]:
    want = f"an integer in {lo}..{hi}" if hi is not None else f"an integer >= {lo}"

    def parse(v: Any, base: Path) -> int:
        n = _number_text(v) if isinstance(v, str) else _real(v)
        if isinstance(n, float) and n.is_integer():      # 32.0, "1e3"; never inf or nan
            n = int(n)
        if not isinstance(n, int):
            raise ValueError(f"expected an integer, got {show(v)}")
        if n < lo or (hi is not None and n > hi):
            raise ValueError(f"expected {want}, got {show(v)}")
        return n
    return parse


def _float(lo: float = 0.0, hi: float = math.inf, above: bool = False) -> Callable[[Any, Path], float]:
    """A finite number in ``[lo, hi]`` (``(lo, hi]`` when ``above``)."""
    want = f"a number {'>' if above else '>='} {lo:g}" if hi == math.inf else \
        f"a number in {'(' if above else '['}{lo:g}, {hi:g}]"

    def parse(v: Any, base: Path) -> float:
        n = _number_text(v) if isinstance(v, str) else _real(v)
        if n is None:
            raise ValueError(f"expected a number, got {show(v)}")
        try:
            x = float(n)
        except OverflowError:                           # an integer beyond float range
            x = math.inf
        if not math.isfinite(x) or x < lo or x > hi or (above and x == lo):
            raise ValueError(f"expected {want}, got {show(v)}")
        return x
    return parse


def _float_list(lo: float, hi: float, what: str) -> Callable[[Any, Path], list[float]]:
    one = _float(lo, hi)

    def parse(v: Any, base: Path) -> list[float]:
        items = re.split(r"[;,\s]+", v.strip()) if isinstance(v, str) else v
        if not isinstance(items, (list, tuple)) or not [i for i in items if i != ""]:
            raise ValueError(f"expected {what}, got {show(v)}")
        return [one(i, base) for i in items if i != ""]
    return parse


def _blend(v: Any, base: Path) -> list[float]:
    w = _float_list(0.0, math.inf, "a list of weights such as '0.7;0.3'")(v, base)
    if sum(w) <= 0:
        raise ValueError(f"expected weights >= 0 with a positive sum, got {show(v)}")
    return w


def _scales(v: Any, base: Path) -> list[float]:
    s = _float_list(0.0, 1.0, "a list of scales such as '0.25;0.5;1'")(v, base)
    if any(x <= 0 for x in s) or s != sorted(s):
        raise ValueError(f"expected increasing scales in (0, 1] such as '0.25;0.5;1', got {show(v)}")
    return s


def _choice(*choices: str) -> Callable[[Any, Path], str]:
    def parse(v: Any, base: Path) -> str:
        if not isinstance(v, str) or v.strip() not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {show(v)}")
        return v.strip()
    return parse


def _bool(v: Any, base: Path) -> bool:
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if _real(v) in (0, 1) and not isinstance(v, str):
        return bool(_real(v))
    if isinstance(v, str) and v.strip().lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return v.strip().lower() in ("1", "true", "yes", "on")
    raise ValueError(f"expected true or false, got {show(v)}")


def _layer(v: Any, base: Path) -> str:
    if not isinstance(v, str) or v.strip() not in known_layer_names():
        raise ValueError(f"expected a VGG layer name such as block4_conv2, got {show(v)}")
    return v.strip()


def _style_layers(v: Any, base: Path) -> dict[str, float]:
    """``"block1_conv1:0.5;block3_conv1"`` (or ``,``), a JSON list of names, or ``{name: weight}``."""
    try:
        layers = parse_layer_weights(v)
    except (TypeError, OverflowError):                  # unhashable names, weights beyond float range
        raise ValueError(f"expected layers such as 'block1_conv1:0.5;block2_conv1:0.5', got {show(v)}") from None
    return {name: _float()(w, base) for name, w in layers.items()}


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
        raise ValueError(f"cannot read {path}: {describe(exc)}") from None


def _init(v: Any, base: Path) -> str:
    from ..transfer import INITS
    if isinstance(v, str) and v.strip() in INITS:
        return v.strip()
    try:
        return parse_file(v, base)
    except ValueError as exc:
        raise ValueError(f"expected one of {', '.join(INITS)} or an image file; {exc}") from None


def _optimizers() -> Callable[[Any, Path], str]:
    from ..optim import OPTIMIZERS
    return _choice(*OPTIMIZERS)


def _weights_modes() -> Callable[[Any, Path], str]:
    from ..objective import WEIGHTS_MODES
    return _choice(*WEIGHTS_MODES)


#: Options a job may set: name -> parser. They are :func:`numpynst.transfer.stylize` keywords, except
#: that ``weights`` and ``pooling`` pick the (per-worker cached) model.
OPTIONS: dict[str, Callable[[Any, Path], Any]] = {
    "size": _int(16, MAX_SIDE),
    "iterations": _int(0, MAX_ITERATIONS),
    "optimizer": lambda v, b: _optimizers()(v, b),
    "lr": _float(0.0, above=True),
    "alpha": _float(),
    "beta": _float(),
    "tv_weight": _float(),
    "weights_mode": lambda v, b: _weights_modes()(v, b),
    "content_layer": _layer,
    "style_layers": _style_layers,
    "style_blend": _blend,
    "style_scale": _float(0.05, 8.0),
    "init": _init,
    "seed": _int(0),
    "preserve_color": _bool,
    "pooling": _choice("max", "avg"),
    "weights": parse_file,
    "tol": _float(),
    "scales": _scales,
}




def check_together(options: dict[str, Any], n_styles: int) -> tuple[str, str] | None:
    """``(column, reason)`` for the first options of one job that are each valid but cannot run
    together, else ``None``: checked on the parsed options (defaults merged) before anything runs,
    as the CLI checks its flags, instead of failing that job at run time."""
    if "lr" in options and options.get("optimizer", "lbfgs") == "lbfgs":
        return "lr", ("lr does not apply to optimizer lbfgs (it needs no learning rate); leave it empty "
                      "or set optimizer to adam or gd")
    blend = options.get("style_blend")
    if blend is not None and len(blend) != n_styles:
        return "style_blend", f"{len(blend)} weight(s) for {n_styles} style image(s); give one per style"
    size, scale = options.get("size"), options.get("style_scale")
    if size is not None and scale is not None and round(size * scale) > MAX_SIDE:
        return "style_scale", (f"size {size} x style_scale {scale:g} makes the style image "
                                f"{round(size * scale)} px, more than {MAX_SIDE}")
    if all(options.get(k) == 0 for k in ("alpha", "beta", "tv_weight")):
        return "alpha", "alpha, beta and tv_weight are all 0: there is nothing to minimise"
    if options.get("weights_mode", "calibrated") == "calibrated":      # stylize's default mode
        from ..objective import WEIGHT_RANGES
        for name, (lo, hi) in WEIGHT_RANGES.items():
            value = options.get(name)
            if value is not None and not lo <= value <= hi:
                return name, (f"expected a number in [{lo:g}, {hi:g}] with calibrated weights (the "
                              f"default weights_mode), got {value:g}; set weights_mode to raw for the "
                              f"tutorials' unscaled J")
    return None


def parse_option(name: str, value: Any, base: Path = Path(".")) -> Any:
    """Parse one option value; ``ValueError`` (unknown name, wrong type) with a short reason."""
    if name not in OPTIONS:
        raise ValueError(f"unknown option {show(name)}; known: {', '.join(OPTIONS)}")
    return OPTIONS[name](value, base)

