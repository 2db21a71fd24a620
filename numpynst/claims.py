"""Numbers that the tutorials' prose quotes, recorded where they are computed.

The tutorials never type a measured number by hand. A code cell computes it and *records* it::

    from numpynst.claims import claim, record
    record("seconds", seconds)                       # a value the text quotes, no range
    claim("dir_err", err, 1e-9, 1e-7)                # a value the text states a range for

and the markdown quotes it as a placeholder, ``{{seconds:.1f}}``, ``{{dir_err:.1e}}``, or the stated
range itself, ``{{dir_err.lo:.0e}}``..``{{dir_err.hi:.0e}}``. ``tutorials/_build.py`` executes the
notebook, collects the record and fills the placeholders in (:func:`render`); a placeholder with
no recorded value stops the build. :func:`claim` *asserts* that its value lies in ``[lo, hi]``, so
a stated range that the output contradicts fails the cell, and with it the build and the test
suite's run of the notebook. Because the words and the assert read the same ``lo`` and ``hi``,
they cannot drift apart.

Fast mode (``NUMPYNST_FAST=1``: small images, few iterations) computes other values. The range
holds in both modes unless ``fast=`` gives the fast mode its own, ``fast=(lo, hi)``, or none,
``fast=None`` (recorded, not checked: the value only means something at full size). The
committed notebooks carry a full run, so the prose always quotes full-mode values and ranges.

Where the build runs the kernel it sets ``NUMPYNST_CLAIMS`` to a file; each record rewrites that
file (JSON), which is how the values leave the kernel. Without the variable (a reader running the
notebook in Jupyter) the values are only kept in :data:`RECORD`.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
from pathlib import Path
from typing import Any

__all__ = ["claim", "record", "render", "placeholders", "RECORD", "ClaimError", "ENV"]

#: The environment variable naming the file the record is written to.
ENV = "NUMPYNST_CLAIMS"
#: ``name -> {"value": ..., "lo": ..., "hi": ...}`` for everything recorded in this process.
RECORD: dict[str, dict[str, Any]] = {}

_SAME = object()
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# {{name}}, {{name:fmt}}, {{name.lo:fmt}}, {{name.hi}}
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)(?:\.(lo|hi|value))?\s*(?::([^{}]*))?\}\}")


class ClaimError(AssertionError):
    """A stated range that the computed value contradicts (an ``AssertionError``, like an assert)."""


def _fast() -> bool:
    return os.environ.get("NUMPYNST_FAST") == "1"


def _plain(value: Any) -> Any:
    """A JSON-able Python scalar from a Python or NumPy/CuPy scalar or 0-d array; strings pass."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return value
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:   # NumPy/CuPy scalar, 0-d array
        value = value.item()
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"a recorded value must be a number or a string, not {type(value).__name__}")


def _save() -> None:
    path = os.environ.get(ENV)
    if not path:
        return
    target = Path(path)
    tmp = target.with_name(target.name + ".part")
    tmp.write_text(json.dumps(RECORD, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, target)


def record(name: str, value: Any) -> Any:
    """Record ``value`` under ``name`` for the prose to quote; returns ``value`` unchanged."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"name must be an identifier, got {name!r}")
    RECORD[name] = {"value": _plain(value), "lo": None, "hi": None}
    _save()
    return value


def claim(name: str, value: Any, lo: float | None = None, hi: float | None = None, *,
          fast: Any = _SAME) -> Any:
    """Record ``value`` under ``name`` and assert ``lo <= value <= hi`` (either bound may be None).

    ``fast``: in fast mode, ``(lo, hi)`` replaces the range and ``None`` skips the check (the value
    is still recorded). Raises :class:`ClaimError` (an ``AssertionError``) naming the claim, the
    value and the range when the value is outside it, or not a finite number. Returns ``value``.
    """
    record(name, value)
    v = RECORD[name]["value"]
    RECORD[name].update(lo=None if lo is None else float(lo), hi=None if hi is None else float(hi))
    _save()
    if _fast() and fast is not _SAME:
        if fast is None:
            return value
        lo, hi = fast
    if isinstance(v, str) or not math.isfinite(v):
        raise ClaimError(f"claim {name!r}: {v!r} is not a finite number")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ClaimError(f"claim {name!r}: the text states {lo if lo is not None else '-inf'} <= "
                         f"{name} <= {hi if hi is not None else 'inf'}, the computation gives {v!r}")
    return value


def placeholders(text: str) -> list[str]:
    """The names the placeholders in ``text`` refer to, in order (repeats kept)."""
    return [m.group(1) for m in _PLACEHOLDER.finditer(text)]


def render(text: str, values: dict[str, dict[str, Any]], where: str = "markdown") -> str:
    """``text`` with every ``{{name[.lo|.hi][:fmt]}}`` replaced from ``values`` (a record).

    Raises ``KeyError`` naming the placeholder and ``where`` when a name was never recorded, or
    its range bound was not stated; a format that does not fit the value raises ``ValueError``.
    """
    def one(m: re.Match) -> str:
        name, part, fmt = m.group(1), m.group(2) or "value", m.group(3) or ""
        if name not in values:
            raise KeyError(f"{where}: placeholder {m.group(0)} names nothing the code recorded")
        v = values[name][part]
        if v is None:
            raise KeyError(f"{where}: placeholder {m.group(0)}: claim {name!r} states no {part} bound")
        try:
            return format(v, fmt)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{where}: placeholder {m.group(0)}: {exc}") from None

    return _PLACEHOLDER.sub(one, text)
