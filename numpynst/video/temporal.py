"""The temporal cost of Ruder et al. (2016) and the objective that adds it to style transfer's ``J``.

**The cost.** Frame ``t``'s image ``x`` (``(1, H, W, C)``, ``D = H W C`` values) should agree with
the previous stylized frame carried along the motion, ``t = warp(x_prev, flow)``
(:mod:`numpynst.video.warp`), wherever that carrying is trustworthy: per-pixel weights ``w`` in
``[0, 1]`` are 0 at occlusions, motion boundaries and pixels that came from outside the picture
(:func:`numpynst.video.flow.consistency_weights`), 1 elsewhere::

    J_temporal(x) = (1/D) sum_{i,j} w_ij sum_c (x_ijc - t_ijc)^2

``t`` and ``w`` do not depend on ``x``, so the cost is a weighted squared distance and its gradient
is one line::

    dJ_temporal/dx_ijc = (2/D) w_ij (x_ijc - t_ijc)

(The preprocessing of :func:`numpynst.vgg.preprocess`, a channel swap and a constant shift, does
not change a difference of two images, so the cost reads the same in RGB or in the network's
input space.)

**The objective.** :class:`TemporalObjective` wraps any objective with ``evaluate(x) ->
Evaluation`` (:class:`numpynst.objective.Objective`, or the tiled one) and returns
``J + gamma J_temporal / s`` with its gradient, so the optimiser sees one function. ``gamma`` is
the user's temporal weight. ``s`` is 1 for raw weights; with calibrated weights (stylize's
default) it is :func:`temporal_scale`, the variance of the content frame's values, so that
``J_temporal / s`` is 1 when the result departs from its warped predecessor by as much as the
photo varies around its mean -- a relative number like the other calibrated terms, whatever the
picture's contrast. The other parts (content, style, smoothness) are passed through unchanged.
"""

from __future__ import annotations

from typing import Any

from ..backend import get_xp, to_float
from ..objective import Evaluation, Objective, check_x

Array = Any

#: Smallest calibration scale (grey levels^2): a flat frame would otherwise divide by 0.
TEMPORAL_SCALE_FLOOR = 1.0


def temporal_cost(x: Array, target: Array, weights: Array) -> tuple[Array, Array]:
    """``(J, dJ/dx)`` of the temporal cost (module docstring): ``x`` and ``target`` of one shape
    ``(..., H, W, C)``, ``weights`` ``(H, W)``. ``J`` is a 0-d array on ``x``'s device."""
    if tuple(target.shape) != tuple(x.shape):
        raise ValueError(f"temporal_cost: target shape {tuple(target.shape)} != x shape {tuple(x.shape)}")
    if tuple(weights.shape) != tuple(x.shape[-3:-1]):
        raise ValueError(f"temporal_cost: weights shape {tuple(weights.shape)} != image size {tuple(x.shape[-3:-1])}")
    xp = get_xp(x)
    D = x.shape[-3] * x.shape[-2] * x.shape[-1]
    diff = x - target
    wd = weights[..., None].astype(x.dtype, copy=False) * diff
    J = xp.sum(wd * diff) / D
    return J, (2.0 / D) * wd


def temporal_scale(content_x: Array) -> float:
    """Calibration scale of the temporal term: the variance of the content frame's values (floored)."""
    xp = get_xp(content_x)
    v = to_float(xp.var(content_x.astype(xp.float64)))
    return max(v, TEMPORAL_SCALE_FLOOR)


class TemporalObjective:
    """``base``'s objective plus ``gamma / scale * J_temporal(x; target, weights)``.

    Args:
        base: an objective with ``evaluate``, ``shape``, ``xp`` (and ``coefficients``, passed on).
        target: the warped previous result, preprocessed, of ``base.shape``.
        weights: ``(H, W)`` per-pixel weights in ``[0, 1]``.
        gamma: the temporal weight (>= 0). scale: divides the term (see the module docstring).

    ``last_temporal`` holds the unweighted ``J_temporal / scale`` of the latest evaluation (0-d).
    """

    def __init__(self, base, target: Array, weights: Array, gamma: float, scale: float = 1.0):
        check_x(target, tuple(base.shape))
        self.base, self.target, self.weights = base, target, weights
        self.gamma, self.scale = float(gamma), float(scale)
        self.shape, self.xp = tuple(base.shape), base.xp
        self.last_temporal = None

    @property
    def coefficients(self) -> dict[str, float]:
        return self.base.coefficients

    def evaluate(self, x: Array) -> Evaluation:
        e = self.base.evaluate(x)
        jt, gt = temporal_cost(x, self.target, self.weights)
        jt = jt / self.scale
        self.last_temporal = jt
        c = self.gamma / self.scale
        grad = e.grad + gt * self.xp.asarray(c, dtype=e.grad.dtype)
        return Evaluation(e.J + self.gamma * jt, grad, e.parts)

    def value_and_grad(self, x: Array) -> tuple[Array, Array]:
        J, g, _ = self.evaluate(x)
        return J, g

    # the flat view minimize() sees: the same as Objective's, over this evaluate
    flat = Objective.flat
