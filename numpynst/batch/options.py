"""The options a batch job may set, and how a manifest cell (or a JSON/Python value) becomes one.

Each parser takes the raw value (a CSV string, or a JSON/Python value) and the folder relative paths
are resolved against, and returns the value :func:`numpynst.transfer.stylize` expects, or raises
``ValueError`` with a short reason; the callers add the file, row and column to make the one-line
:class:`~numpynst.errors.ManifestError`. The checks are the cheap ones (types, ranges, choices, files
exist) so that a typo in row 500 is reported before row 1 runs, not after.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Callable

from ..arch import known_layer_names, parse_layer_weights
from ..checks import integer


class _Reason(ValueError):
    """:func:`~numpynst.checks.integer`'s "value must be X, got Y" as a reason: "expected X, got Y"."""

    def __init__(self, message: str) -> None:
        super().__init__(message.replace("value must be ", "expected ", 1))


def _from_text(v: Any, convert: Callable[[str], Any], what: str) -> Any:
    """A CSV cell converted with ``convert`` (``int``, ``float``); any other value as it is."""
    if not isinstance(v, str):
        return v
    try:
        return convert(v.strip())
    except ValueError:
        raise ValueError(f"expected {what}, got {v!r}") from None


def _int(lo: int, hi: int | None = None) -> Callable[[Any, Path], int]:
    def parse(v: Any, base: Path) -> int:
        v = _from_text(v, int, "an integer")
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        return integer("value", v, lo, hi, error=_Reason)
    return parse


def _float(lo: float = 0.0, hi: float = math.inf) -> Callable[[Any, Path], float]:
    def parse(v: Any, base: Path) -> float:
        v = _from_text(v, float, "a number")
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"expected a number, got {v!r}")
        if not math.isfinite(v) or not lo <= v <= hi:
            raise ValueError(f"expected a number in [{lo:g}, {hi:g}], got {v!r}")
        return float(v)
    return parse


def _float_list(lo: float, hi: float) -> Callable[[Any, Path], list[float]]:
    one = _float(lo, hi)

    def parse(v: Any, base: Path) -> list[float]:
        items = re.split(r"[;,\s]+", v.strip()) if isinstance(v, str) else v
        if not isinstance(items, (list, tuple)) or not [i for i in items if i != ""]:
            raise ValueError(f"expected a list of numbers such as '0.7;0.3', got {v!r}")
        return [one(i, base) for i in items if i != ""]
    return parse


def _choice(*choices: str) -> Callable[[Any, Path], str]:
    def parse(v: Any, base: Path) -> str:
        if not isinstance(v, str) or v.strip() not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {v!r}")
        return v.strip()
    return parse


def _bool(v: Any, base: Path) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return v.strip().lower() in ("1", "true", "yes", "on")
    raise ValueError(f"expected true or false, got {v!r}")


def _layer(v: Any, base: Path) -> str:
    if not isinstance(v, str) or v.strip() not in known_layer_names():
        raise ValueError(f"expected a VGG layer name such as block4_conv2, got {v!r}")
    return v.strip()


def _style_layers(v: Any, base: Path) -> dict[str, float]:
    """``"block1_conv1:0.5;block3_conv1"`` (or ``,``), a JSON list of names, or ``{name: weight}``."""
    return {name: _float()(w, base) for name, w in parse_layer_weights(v).items()}


def parse_file(v: Any, base: Path) -> str:
    if not isinstance(v, (str, os.PathLike)) or not str(v).strip():
        raise ValueError(f"expected a file path, got {v!r}")
    path = (base / Path(str(v).strip()).expanduser()).resolve()
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    return str(path)


def _init(v: Any, base: Path) -> str:
    from ..transfer import INITS
    if isinstance(v, str) and v.strip() in INITS:
        return v.strip()
    try:
        return parse_file(v, base)
    except ValueError:
        raise ValueError(f"expected one of {', '.join(INITS)} or an existing image file, got {v!r}") from None


def _optimizers() -> Callable[[Any, Path], str]:
    from ..optim import OPTIMIZERS
    return _choice(*OPTIMIZERS)


#: Options a job may set: name -> parser. They are :func:`numpynst.transfer.stylize` keywords, except
#: that ``weights`` and ``pooling`` pick the (per-worker cached) model.
OPTIONS: dict[str, Callable[[Any, Path], Any]] = {
    "size": _int(16, 16384),
    "iterations": _int(0),
    "optimizer": lambda v, b: _optimizers()(v, b),
    "lr": _float(0.0),
    "alpha": _float(),
    "beta": _float(),
    "tv_weight": _float(),
    "content_layer": _layer,
    "style_layers": _style_layers,
    "style_blend": _float_list(0.0, math.inf),
    "style_scale": _float(0.05, 8.0),
    "init": _init,
    "seed": _int(0),
    "preserve_color": _bool,
    "pooling": _choice("max", "avg"),
    "weights": parse_file,
    "tol": _float(),
    "scales": _float_list(0.0, 1.0),
}

def parse_option(name: str, value: Any, base: Path = Path(".")) -> Any:
    """Parse one option value; ``ValueError`` (unknown name, wrong type) with a short reason."""
    if name not in OPTIONS:
        raise ValueError(f"unknown option {name!r}; known: {', '.join(OPTIONS)}")
    return OPTIONS[name](value, base)

