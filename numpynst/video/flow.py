"""Optical flow between frames (OpenCV), and where it can be trusted (Ruder et al. 2016).

**Flow.** Optical flow assigns every pixel of frame ``a`` a displacement ``(u, v)`` to where the same
point of the scene is in frame ``b``: ``a(y, x) ~ b(y + v, x + u)`` (brightness constancy). It is
the input of the temporal terms, not this project's lesson, so OpenCV computes it: DIS (Kroeger et
al. 2016, fast, the default) or Farnebaeck's polynomial expansion (2003). :func:`compute_flow`
returns ``(H, W, 2)`` float32 with ``u`` first, the convention of :mod:`numpynst.video.warp`.

For frame ``t`` the video loop needs the **backward** flow ``w = flow(frame_t, frame_{t-1})``: then
``warp(result_{t-1}, w)`` is the previous result moved onto frame ``t``'s pixels.

**Trust** (:func:`consistency_weights`, pure array code, NumPy or CuPy). A pixel gets weight 0 in
the temporal cost when

* *forward and backward flows disagree*: with ``w' = warp(forward flow, w)`` (the forward flow
  ``flow(frame_{t-1}, frame_t)`` read where ``w`` points), a visible point goes there and back,
  ``w + w' ~ 0``; a disoccluded one does not. Ruder et al.'s test::

      |w + w'|^2 > 0.01 (|w|^2 + |w'|^2) + 0.5

* *it lies on a motion boundary*, where flow is least reliable::

      |grad u|^2 + |grad v|^2 > 0.01 |w|^2 + 0.002

* *its source point is outside the previous frame* (:func:`numpynst.video.warp.inside`).

Everything else gets weight 1.
"""

from __future__ import annotations

from typing import Any

from ..backend import get_xp
from ..errors import VideoError
from .warp import inside, warp

Array = Any

FLOW_METHODS = ("dis", "farneback")
INSTALL_HINT = 'pip install "numpynst[video]"'


def require_cv2():
    """The ``cv2`` module, or a one-line :class:`VideoError` saying how to install it."""
    try:
        import cv2
    except ImportError:
        raise VideoError(f"optical flow needs OpenCV, which is not installed: {INSTALL_HINT}") from None
    return cv2


def _grey(rgb, cv2):
    import numpy as np
    return cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.uint8), cv2.COLOR_RGB2GRAY)


def compute_flow(a, b, method: str = "dis"):
    """Flow from RGB uint8 frame ``a`` to frame ``b`` (same size): ``(H, W, 2)`` float32, ``a(p) ~ b(p + flow(p))``."""
    cv2 = require_cv2()
    if method not in FLOW_METHODS:
        raise VideoError(f"flow method must be one of {', '.join(FLOW_METHODS)}, got {method!r}")
    ga, gb = _grey(a, cv2), _grey(b, cv2)
    if method == "dis":
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        return dis.calc(ga, gb, None)
    # pyramid scale 0.5, 3 levels, window 15, 3 iterations, poly_n 5, poly_sigma 1.2: OpenCV's example
    return cv2.calcOpticalFlowFarneback(ga, gb, None, 0.5, 3, 15, 3, 5, 1.2, 0)


def disocclusion(backward: Array, forward: Array) -> Array:
    """Boolean ``(H, W)``: forward and backward flows disagree (Ruder et al.'s test, module docstring)."""
    fw = warp(forward, backward)
    s = backward + fw
    lhs = (s * s).sum(axis=-1)
    rhs = 0.01 * ((backward * backward).sum(axis=-1) + (fw * fw).sum(axis=-1)) + 0.5
    return lhs > rhs


def motion_boundary(backward: Array) -> Array:
    """Boolean ``(H, W)``: the flow's spatial gradient is large (Ruder et al.'s test, module docstring)."""
    xp = get_xp(backward)
    du_y, du_x = xp.gradient(backward[..., 0])
    dv_y, dv_x = xp.gradient(backward[..., 1])
    lhs = du_x ** 2 + du_y ** 2 + dv_x ** 2 + dv_y ** 2
    return lhs > 0.01 * (backward * backward).sum(axis=-1) + 0.002


def consistency_weights(backward: Array, forward: Array) -> Array:
    """``(H, W)`` weights of the temporal cost: 0 at disocclusions, motion boundaries and pixels whose
    source is outside the picture, 1 elsewhere (``backward``'s dtype and device)."""
    bad = disocclusion(backward, forward) | motion_boundary(backward) | ~inside(backward)
    return (~bad).astype(backward.dtype)
