"""Argument checks shared by every layer of the package, each giving a one-line message.

The library's ops raise :class:`ValueError` for a programming mistake (a stride of 0 passed to
``conv2d_forward``); the user-facing functions raise :class:`~numpynst.errors.OptionError`, which
the CLI prints as one line. Both go through the same checks; ``error=`` picks the type.
"""

from __future__ import annotations

import math
import operator
from typing import Any

from .errors import OptionError


def integer(name: str, value: Any, minimum: int | None = 1, maximum: int | None = None,
            error: type[Exception] = OptionError) -> int:
    """``value`` as a Python int in ``[minimum, maximum]`` (either bound may be None), else ``error``.

    Accepts ``int`` and NumPy integers (anything with ``__index__``), refuses ``bool`` (``True`` is
    an int in Python, never a meant count), floats and strings.
    """
    if maximum is None:
        want = ("an integer" if minimum is None else
                "a positive integer" if minimum == 1 else f"an integer >= {minimum}")
    else:
        want = f"an integer <= {maximum}" if minimum is None else f"an integer in {minimum}..{maximum}"
    if isinstance(value, bool):
        raise error(f"{name} must be {want}, got {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise error(f"{name} must be {want}, got {value!r}") from None
    if (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
        raise error(f"{name} must be {want}, got {value!r}")
    return int(v)


def positive_number(name: str, value: Any, error: type[Exception] = OptionError) -> float:
    """``value`` as a positive finite float, else ``error`` naming ``name``."""
    if isinstance(value, bool):
        raise error(f"{name} must be a positive number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise error(f"{name} must be a positive number, got {value!r}") from None
    if not (math.isfinite(v) and v > 0.0):
        raise error(f"{name} must be a positive finite number, got {value!r}")
    return v


def first_line(exc: BaseException, with_type: bool = False) -> str:
    """The first line of ``str(exc)`` (the type's name when empty), for one-line error reports.

    ``with_type=True`` prefixes the exception's type (``"OSError: ..."``): for errors that are not
    the user's own (a bug, a crash), where the type is part of the message.
    """
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    if not text:
        return type(exc).__name__
    return f"{type(exc).__name__}: {text}" if with_type else text
