"""The style-transfer objective ``J(x)``: targets, calibrated or raw weights, value and gradient.

The generated image ``x`` (preprocessed, ``(1, H, W, 3)``) is the only variable. With ``a^l(x)`` the
VGG activation of layer ``l``::

    J(x) = alpha * J_content(a_C, a^c(x))
         + beta  * sum_l lambda_l * J_style^l(G_S^l, a^l(x))
         + tv_weight * TV(x)

(:func:`combine`). ``J_content``, ``J_style^l`` and ``TV`` (a quadratic smoothness penalty, see
:func:`numpynst.losses.total_variation`) are in :mod:`numpynst.losses`, each returning its value
and its gradient with respect to the activation (or the pixels). The gradient with respect to the
pixels is one backward pass through VGG, seeded at every layer that appears in ``J``::

    dJ/dx = VGG.backward({c: alpha dJ_content/da^c, l: beta lambda_l dJ_style^l/da^l, ...}) + tv_weight dTV/dx

The targets ``a_C`` (content activation) and ``G_S^l`` (style Gram matrices) are computed once, in
:class:`Objective`'s constructor, which :class:`numpynst.tiled.TiledObjective` shares: the options,
the blend of several style images, the rescaling of the style targets and the calibration run the
same code, only the measuring of the targets (whole-image forwards or tiles) differs.

**Style images of another size.** ``G_S = A^T A`` sums over the style image's pixels, while ``G_G``
sums over the generated image's. Left alone, a style image twice as wide would double every target
entry and silently change what ``beta`` means. Each target is rescaled by
``(nH nW of the generated image at l) / (nH nW of the style image at l)``
(:func:`numpynst.losses.style_target`) so that ``beta`` means the same whatever the style image's size.

**Mixed precision** (``--precision fp16``, a model of dtype float16: see :class:`numpynst.vgg.VGG`).
The network runs in float16 with float32 sums; everything else stays float32: the image (the
optimiser's variable and state), the targets, the Gram matrices (a Gram sums ``nH nW`` products of
activations in the thousands: far past float16's 65504), the losses and their gradients. Each
activation the losses read is widened to float32 and divided by the model's ``activation_scale``
``s``. Going back, the gradients dJ/da (at most ~1e-5 on VGG19 for a 128 px picture, mostly far
smaller: below float16's smallest normal number 6.1e-5) are multiplied by a power of two ``c``
(:func:`seed_scale`) that puts the largest at about :data:`FP16_SEED_MAX` = 2^8, cast to float16,
and sent through the network; the result is divided by ``c s``. Through VGG19's backward the largest
gradient grows by ~30x (measured at 64 and 128 px), so 2^8 leaves float16 a margin of ~8x above and
keeps the small gradients among its normal numbers. ``c`` is computed on the device from the
gradients themselves at every evaluation (no host transfer, no retry).
"""

from __future__ import annotations

import math
import numbers         # numbers.Real: Python and NumPy scalars alike (np.float32(0.5), np.int64(1))
from typing import Any, Callable, Mapping, NamedTuple, Sequence

from .backend import get_xp
from .errors import NumpynstError, OptionError
from .guided import DEFAULT_MASK_MODE, Guide
from .losses import content_at_blank, content_cost, style_at_blank, total_variation, total_variation_value
from .style_stats import StyleStatistic, check_style_loss, make_statistic

Array = Any

DEFAULT_CONTENT_LAYER = "block4_conv2"
DEFAULT_STYLE_LAYERS: dict[str, float] = {
    "block1_conv1": 0.2, "block2_conv1": 0.2, "block3_conv1": 0.2, "block4_conv1": 0.2, "block5_conv1": 0.2,
}
# The loss coefficients alpha, beta, tv_weight: in code "coefficients" ("weights" is the VGG file);
# the CLI and the README call them the content, style and smoothness weights.
# Raw coefficients (weights_mode="raw", the Objective's default, the notes' J): chosen on the bundled
# demo pair at 256-512 px with L-BFGS; with the costs' normalisations J_content ~ a^2 and J_style^l ~ a^4
# in the activations a, so they have no natural scale (hence the calibrated ones below).
RAW_ALPHA = 1.0
RAW_BETA = 1e-2
RAW_TV_WEIGHT = 1.0
# Calibrated coefficients (weights_mode="calibrated", stylize's default): each term divided by its
# calibration scale (see calibration()). COEFFICIENT_RANGES is the documented range of each knob
# (docs/options.md, "Choosing the weights"); values outside it are refused. The style weight's default
# is where the picture is a painting and the photo still reads: at 512 px, coarse to fine, 10 closes
# more of the style gap than neural-style's published picture with less content lost (issue 26,
# benchmarks/README.md "Pictures, measured"); the picture moves from the photo (0.1) to the painting's
# texture (100) on either side of it, so 0..100 with 10 in the (logarithmic) middle. The default TV
# weight keeps the result about as smooth as the photo.
# Measured figures: benchmarks/README.md, "The calibrated weights' ranges" and "Pictures, measured".
DEFAULT_ALPHA = 1.0
DEFAULT_BETA = 10.0
DEFAULT_TV_WEIGHT = 0.1
COEFFICIENT_RANGES = {"alpha": (0.0, 10.0), "beta": (0.0, 100.0), "tv_weight": (0.0, 1.0)}
COEFFICIENT_FLAGS = {"alpha": "--content-weight", "beta": "--style-weight", "tv_weight": "--tv-weight"}
WEIGHTS_MODES = ("calibrated", "raw")
PARTS = ("content", "style", "tv")


#: Mixed precision: the largest gradient entering a float16 backward pass, after :func:`seed_scale`.
FP16_SEED_MAX = 2.0 ** 8


def seed_scale(grads: Mapping[str, Array], target: float = FP16_SEED_MAX) -> Array:
    """The power of two ``c`` (0-d float32, on the gradients' device) with ``c max|g| <= target < 2 c
    max|g|`` over all ``grads``; between 2^-100 and 2^100 (all-zero gradients get 2^100)."""
    xp = get_xp(*grads.values())
    m = None
    for g in grads.values():
        gm = xp.abs(g).max().astype(xp.float32)
        m = gm if m is None else xp.maximum(m, gm)
    e = xp.clip(xp.floor(xp.log2(xp.float32(target) / xp.maximum(m, xp.float32(1e-30)))), -100, 100)
    return xp.exp2(e).astype(xp.float32)


class Evaluation(NamedTuple):
    """One evaluation of the objective: ``J`` and ``dJ/dx`` (as :meth:`Objective.value_and_grad`),
    and ``parts``, the unweighted terms ``{"content", "style", "tv"}`` (0-d device arrays;
    ``style`` = sum_l lambda_l J_style^l; each divided by its calibration scale in calibrated
    mode), so that ``J = alpha content + beta style + tv_weight tv``."""
    J: Any
    grad: Any
    parts: dict


class Calibration(NamedTuple):
    """Scales that make the three terms of ``J`` comparable (see :func:`calibration`), host floats in
    the units of the costs of :mod:`numpynst.losses`: ``content``, ``style`` (one per style layer)
    and ``tv``. In raw mode every scale is 1."""
    content: float
    style: dict
    tv: float


TV_SCALE_FLOOR = 1.0    # grey levels^2: a flat content image would otherwise give a TV scale of 0


def calibration(content_target: Array, style_targets: Mapping[str, Array],
                style_shapes: Mapping[str, Sequence[int]], content_image: Array,
                statistics: Mapping[str, StyleStatistic] | None = None) -> Calibration:
    """The calibration scales of the weights, measured once from the targets.

    Each scale is the value of its term for a **blank** generated image (all activations 0):

        content:  ||a_C||^2 / (4 nH nW nC)                      = J_content(a_C, 0)
        style l:  ||G_S^l||^2 / (2 nH nW nC)^2                  = J_style^l(G_S^l, 0)
        tv:       max(TV(content image), TV_SCALE_FLOOR)        (the photo's own roughness)

    (:func:`numpynst.losses.content_at_blank`, :func:`~numpynst.losses.style_at_blank`,
    :func:`~numpynst.losses.total_variation_value`, each in float64), so that, divided by its
    scale, each term is a *relative* squared error: the content term is
    ``||a - a_C||^2 / ||a_C||^2`` and each style layer's ``||G - G_S||^2 / ||G_S||^2`` — 1 for a
    blank image, 0 at the target, whatever the image size, the layer, or the pictures' contrast —
    and the TV term is ``TV(x) / TV(photo)``, 1 when the result is as rough as the photo. Dividing
    by a constant keeps every cost's formula (and its gradient) exactly as :mod:`numpynst.losses`
    defines it: the calibrated ``J`` is the raw ``J`` with the weights
    ``alpha / s_content``, ``beta lambda_l / s_style^l``, ``tv_weight / s_tv``.

    Args:
        content_target: ``a_C``, the content layer's activation ``(1, nH, nW, nC)`` (or
            ``(nH, nW, nC)``) of the content image, at the generated image's size; or a list of
            pieces that together hold each of its entries once (tiles' interiors).
        style_targets: ``{layer: G_S^l}``, the ``(nC, nC)`` target Grams, already rescaled to the
            generated image's pixel count (as :class:`Objective` does).
        style_shapes: ``{layer: shape}`` of the generated image's activation at each style layer
            (``(1, nH, nW, nC)`` or ``(nH, nW, nC)``): gives the ``nH nW nC`` of the cost.
        content_image: the preprocessed content image ``(1, H, W, 3)``.
        statistics: ``{layer: style statistic}`` (:mod:`numpynst.style_stats`) when the style loss
            is not the Gram matrix's: each layer's scale is then its statistic's ``at_blank`` (the
            cost of that loss at a blank image) and ``style_targets`` are its targets.

    A caller that builds the targets in pieces (tiles) passes the assembled Grams and the content
    pieces; only sums of squares are taken. The sums are copied to the host once (a sync), at
    construction, never inside the loop.

    Raises:
        NumpynstError: a target that is all zero (a term with no scale), naming it.
    """
    c_scale = content_at_blank(content_target)
    styles = {name: (style_at_blank(G, math.prod(tuple(style_shapes[name])[-3:])) if statistics is None else
                     statistics[name].at_blank(G, math.prod(tuple(style_shapes[name])[-3:-1])))
              for name, G in style_targets.items()}
    for name, value in [("content target", c_scale), *((f"style target at {n}", v) for n, v in styles.items())]:
        if not (math.isfinite(value) and value > 0):
            raise NumpynstError(f"cannot calibrate the weights: the {name} is all zero or not finite "
                                f"({value!r}); use weights_mode='raw' (--weights-mode raw)")
    # in float64 bands (no gradient, no float64 copy): at print size the image alone is 200 MB
    tv = max(total_variation_value(content_image), TV_SCALE_FLOOR)
    return Calibration(c_scale, styles, tv)


def check_coefficient(name: str, value: Any, mode: str) -> float:
    """One of alpha/beta/tv_weight as a float, or :class:`OptionError` naming it and its range.

    Raw weights must be finite and >= 0; calibrated ones must lie in ``COEFFICIENT_RANGES[name]``."""
    lo, hi = COEFFICIENT_RANGES[name] if mode == "calibrated" else (0.0, math.inf)
    label = f"{name} ({COEFFICIENT_FLAGS[name]})"
    span = f"in [{lo:g}, {hi:g}] ({mode} weights)" if mode == "calibrated" else "a finite number >= 0"
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not (lo <= value <= hi):
        raise OptionError(f"{label} must be {span}, got {value!r}")
    return float(value)


def check_weights_mode(mode: Any) -> str:
    """``mode`` if it is one of :data:`WEIGHTS_MODES`, else :class:`OptionError` naming the option."""
    if mode not in WEIGHTS_MODES:
        raise OptionError(f"weights_mode (--weights-mode) must be one of {', '.join(WEIGHTS_MODES)}, "
                          f"got {mode!r}")
    return mode


def coefficients(mode: Any, alpha: float | None, beta: float | None,
                 tv_weight: float | None) -> tuple[float, float, float]:
    """``(alpha, beta, tv_weight)`` checked for the weights ``mode`` (itself checked), each ``None``
    replaced by the mode's default; :class:`OptionError` naming the first bad one."""
    check_weights_mode(mode)
    defaults = ((DEFAULT_ALPHA, DEFAULT_BETA, DEFAULT_TV_WEIGHT) if mode == "calibrated"
                else (RAW_ALPHA, RAW_BETA, RAW_TV_WEIGHT))
    return tuple(check_coefficient(name, d if v is None else v, mode)
                 for name, v, d in zip(("alpha", "beta", "tv_weight"), (alpha, beta, tv_weight), defaults))


def check_layers(model, content_layer: str, style_layers: Mapping[str, float]) -> None:
    """:class:`OptionError` unless every layer is one of ``model``'s and every weight finite >= 0."""
    unknown = [n for n in [content_layer, *style_layers] if n not in model.layer_names]
    if unknown:
        raise OptionError(f"unknown layer(s) {', '.join(unknown)}; valid names: {', '.join(model.layer_names)}")
    for n, lam in style_layers.items():
        if not (isinstance(lam, numbers.Real) and math.isfinite(lam) and lam >= 0):
            raise OptionError(f"style layer weight for {n} must be a finite number >= 0, got {lam!r}")


def style_images(style: Array | Sequence[Array], style_blend: Sequence[float] | None) -> tuple[list, list[float]]:
    """``(style images, their blend weights divided by their sum)``; :class:`OptionError` for a
    blend that does not fit the images or has no positive sum."""
    styles = list(style) if isinstance(style, (list, tuple)) else [style]
    weights = [1.0] * len(styles) if style_blend is None else [float(w) for w in style_blend]
    if len(weights) != len(styles):
        raise OptionError(f"style_blend has {len(weights)} weight(s) for {len(styles)} style image(s)")
    if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise OptionError(f"style_blend weights must be >= 0 with a positive sum, got {weights}")
    return styles, [w / sum(weights) for w in weights]


def check_x(x: Array, shape: tuple[int, ...]) -> None:
    """ValueError unless the image ``x`` has the objective's ``shape`` (the content's)."""
    if tuple(x.shape) != shape:
        raise ValueError(f"value_and_grad: x.shape={tuple(x.shape)} != content shape {shape}")


def combine(parts: Mapping[str, Array], coefficients: Mapping[str, float]) -> Array:
    """``J = alpha content + beta style + tv_weight tv``: the weighted sum of the parts (:data:`PARTS`),
    in this order, each 0-d (``coefficients``: ``{"content": alpha, "style": beta, "tv": tv_weight}``)."""
    c = coefficients
    return c["content"] * parts["content"] + c["style"] * parts["style"] + c["tv"] * parts["tv"]


class Objective:
    """``J(x)`` and ``dJ/dx`` for one content image and one or more style images.

    Args:
        model: a :class:`numpynst.vgg.VGG` (its device and dtype are used throughout).
        content: preprocessed content image ``(1, H, W, 3)`` on the model's device.
        style: a preprocessed style image ``(1, Hs, Ws, 3)`` or a list of them.
        content_layer: layer whose activation carries the content.
        style_layers: ``{layer: lambda_l}``; default five ``blockN_conv1`` layers at 0.2.
        alpha, beta, tv_weight: weights of the three terms (``None``: the mode's default).
        style_blend: one weight per style image; the Gram targets are blended as
            ``G_S^l = sum_i w_i G_S,i^l / sum_i w_i``. Default: equal weights.
        weights_mode: ``"raw"`` (the default here: the notes' ``J`` exactly, as the tutorials
            teach it) or ``"calibrated"`` (each term divided by its :func:`calibration` scale, so
            the weights are relative and have a documented range; :func:`stylize`'s default).
        style_loss: what ``J_style^l`` compares: ``"gram"`` (the default, the notes' Gram matrices),
            ``"mean-cov"`` (Wasserstein-2 between the features' Gaussians) or ``"swd"`` (sliced
            Wasserstein); one :mod:`numpynst.style_stats` statistic per layer, ``self.statistics``.
        swd_directions: ``swd``'s directions per layer (default: the layer's channel count).
        masks: spatial control (:mod:`numpynst.guided`): ``(R, H, W)`` in ``[0, 1]`` at the content's
            size, one per style image; each style layer's cost becomes the guided cost of the regions
            (``style_blend`` weighs the regions). ``style_masks``: one ``(h, w)`` mask per style image
            at its size (or ``None`` entries), the part of the painting its statistic is taken from.
            ``mask_mode``: how masks reach each layer, ``"resize"`` or ``"erode"``.

    Attributes: ``scales``, a :class:`Calibration` (all 1 in raw mode); ``alpha``, ``beta``,
    ``tv_weight`` as given; ``content_target`` (``a_C``) and ``style_targets`` (``{layer: G_S^l}``,
    or the statistic's own target for another ``style_loss``); ``statistics`` (``{layer: statistic}``);
    :meth:`evaluate`'s parts are the terms divided by their scales.

    The constructor is the one path of every objective: :class:`numpynst.tiled.TiledObjective`
    runs it too and differs only in how it measures the targets (:meth:`_content_statistics`,
    :meth:`_style_statistics`) and in :meth:`evaluate`.
    """

    def __init__(self, model, content: Array, style: Array | Sequence[Array], *,
                 content_layer: str = DEFAULT_CONTENT_LAYER,
                 style_layers: Mapping[str, float] | None = None,
                 alpha: float | None = None, beta: float | None = None,
                 tv_weight: float | None = None,
                 style_blend: Sequence[float] | None = None, weights_mode: str = "raw",
                 style_loss: str = "gram", swd_directions: int | None = None,
                 masks: Array | None = None, style_masks: Sequence[Array | None] | None = None,
                 mask_mode: str = DEFAULT_MASK_MODE):
        self.model = model
        self.xp = model.xp
        # the losses' dtype (float32 under a float16 model) and the scale of the model's activations
        self.loss_dtype = getattr(model, "image_dtype", model.dtype)
        self.activation_scale = getattr(model, "activation_scale", 1.0)
        self.content_layer = content_layer
        self.style_layers = dict(DEFAULT_STYLE_LAYERS if style_layers is None else style_layers)
        alpha, beta, tv_weight = coefficients(weights_mode, alpha, beta, tv_weight)
        self.weights_mode = weights_mode
        if not self.style_layers and beta > 0:
            raise OptionError("style_layers is empty: give at least one layer or set beta=0")
        check_layers(model, content_layer, self.style_layers)
        self.alpha, self.beta, self.tv_weight = alpha, beta, tv_weight
        self.outputs = list(dict.fromkeys([content_layer, *self.style_layers]))
        self.shape = tuple(content.shape)
        styles, blend = style_images(style, style_blend)
        self.style_loss = check_style_loss(style_loss)
        self.statistics = {n: make_statistic(style_loss, n, model.channels(n), directions=swd_directions,
                                             xp=self.xp, dtype=model.dtype) for n in self.style_layers}
        self.guide = None           # spatial control: the regions' masks and statistics (numpynst.guided)
        if masks is not None or style_masks is not None:
            self.guide = Guide(model, list(self.style_layers), masks, style_masks, self.shape[1:3], blend,
                               mask_mode, style_loss)
            self.statistics = self.guide.statistics
        self._check_statistics()

        # The targets. The generated image has the content's size: its activations' shapes come
        # with the content target. Each style image's pieces (its Grams, or the statistic's) are
        # measured, then each statistic builds its target from them (the Grams: rescaled to the
        # generated image's positions and blended).
        self.content_target, shapes = self._content_statistics(content)
        pixels = {n: shapes[n][-3] * shapes[n][-2] for n in self.style_layers}
        for n in self.style_layers:
            self.statistics[n].check(n, pixels[n], "the generated image")
        pieces: dict[str, list] = {n: [] for n in self.style_layers}
        for i, (image, w) in enumerate(zip(styles, blend)):
            for n, (piece, style_pixels) in self._style_statistics(image, self.style_side(i)).items():
                self.statistics[n].check(n, style_pixels, f"style image #{i + 1}")
                pieces[n].append((piece, style_pixels, w))
        self.style_targets: dict[str, Array] = {n: self.statistics[n].target(pieces[n], pixels[n])
                                                for n in self.style_layers}
        del pieces
        self.scales = (calibration(self.content_target, self.style_targets, shapes, content,
                                   None if style_loss == "gram" and self.guide is None else self.statistics)
                       if self.weights_mode == "calibrated" else
                       Calibration(1.0, {n: 1.0 for n in self.style_layers}, 1.0))

    def _check_statistics(self) -> None:
        """Refuse statistics this objective cannot compute (the tiled one: those not sums over positions)."""

    def style_side(self, index: int) -> Mapping[str, StyleStatistic]:
        """``{layer: statistic}`` that measures style image ``index`` (``self.statistics``: a statistic
        that weights positions per image, such as a region mask, would give each image its own: with
        masks, :meth:`numpynst.guided.Guide.style_side`)."""
        return self.statistics if self.guide is None else self.guide.style_side(index)

    def _content_statistics(self, content: Array) -> tuple[Array, dict[str, tuple[int, ...]]]:
        """``(a_C, {style layer: shape of the generated image's activation})`` from one forward."""
        acts, _ = self.model.forward_tape(content, [self.content_layer, *self.style_layers], keep=False)
        # a copy: the target must not alias an activation of the forward; a copy makes the
        # ownership obvious at the cost of one activation.
        a = acts[self.content_layer]
        target = self.widen(a)
        return (a.copy() if target is a else target), {n: acts[n].shape for n in self.style_layers}

    def _style_statistics(self, image: Array, statistics: Mapping[str, StyleStatistic]) -> dict[str, tuple[tuple, int]]:
        """``{style layer: (this style image's pieces (statistic.measure), its positions nH nW at the layer)}``."""
        acts, _ = self.model.forward_tape(image, list(self.style_layers), keep=False)
        return {n: (statistics[n].measure(self.widen(a)), a.shape[1] * a.shape[2]) for n, a in acts.items()}

    def widen(self, a: Array) -> Array:
        """An activation of the model in the losses' dtype and units: as it is, except under a float16
        model (widened to float32, divided by the model's activation scale: a new array)."""
        if a.dtype == self.loss_dtype and self.activation_scale == 1.0:
            return a
        return a.astype(self.loss_dtype) * self.xp.asarray(1.0 / self.activation_scale, dtype=self.loss_dtype)

    @property
    def coefficients(self) -> dict[str, float]:
        """``{"content": alpha, "style": beta, "tv": tv_weight}``, the coefficients of :func:`combine`."""
        return {"content": self.alpha, "style": self.beta, "tv": self.tv_weight}

    def evaluate(self, x: Array) -> Evaluation:
        """``J``, ``dJ/dx`` and the unweighted parts at the preprocessed image ``x`` ``(1, H, W, 3)``."""
        check_x(x, self.shape)
        xp = self.xp
        acts, tape = self.model.forward_tape(x, self.outputs)
        acts = {n: self.widen(a) for n, a in acts.items()}
        grads: dict[str, Array] = {}
        sc = self.scales            # raw mode: all 1, and the divisions are skipped (exact J)
        j_content, g = content_cost(self.content_target, acts[self.content_layer])
        j_content = j_content if sc.content == 1.0 else j_content / sc.content
        g *= xp.asarray(self.alpha / sc.content, dtype=g.dtype)         # content_cost's own new array
        grads[self.content_layer] = g
        j_style = xp.zeros((), dtype=x.dtype)
        for n, lam in self.style_layers.items():
            # the weighted gradient, written into a buffer kept across evaluations (the backward
            # pass only reads it) unless the layer also carries the content's gradient
            j, g = self.statistics[n].weighted_layer_cost(self.style_targets[n], acts[n], self.beta * lam / sc.style[n],
                                                          None if n in grads else self._gradient_buffer(n, acts[n]))
            j_style = j_style + (lam if sc.style[n] == 1.0 else lam / sc.style[n]) * j
            grads[n] = grads[n] + g if n in grads else g
        del acts, g                 # the backward pass frees each layer's activations behind it
        if self.loss_dtype == self.model.dtype:
            dx = self.model.backward_tape(grads, tape, release=True)
        else:                       # float16 model: scaled seeds, see "Mixed precision" above
            c = seed_scale(grads)
            grads = {n: g * c for n, g in grads.items()}
            dx = self.model.backward_tape(grads, tape, release=True)
            dx /= c * xp.asarray(self.activation_scale, dtype=c.dtype)
        del grads, tape
        j_tv, g_tv = total_variation(x)
        j_tv = j_tv if sc.tv == 1.0 else j_tv / sc.tv
        if self.tv_weight:
            g_tv *= xp.asarray(self.tv_weight / sc.tv, dtype=dx.dtype)     # its own new array
            dx += g_tv
        parts = {"content": j_content, "style": j_style, "tv": j_tv}
        return Evaluation(combine(parts, self.coefficients), dx, parts)

    def _gradient_buffer(self, name: str, like: Array) -> Array:
        """The buffer for the gradient at layer ``name``, shaped and typed like ``like``, allocated at
        the first evaluation and reused by the next ones (the backward pass reads it, never writes)."""
        buffers = self.__dict__.setdefault("_gradient_buffers", {})
        buf = buffers.get(name)
        if buf is None or buf.shape != like.shape or buf.dtype != like.dtype:
            buf = buffers[name] = self.xp.empty_like(like)
        return buf

    def value_and_grad(self, x: Array) -> tuple[Array, Array]:
        """``(J, dJ/dx)`` at the preprocessed image ``x`` ``(1, H, W, 3)``; ``J`` a 0-d device array."""
        J, dx, _ = self.evaluate(x)
        return J, dx

    def flat(self, parts: bool = False) -> Callable[[Array], tuple]:
        """``fun(x_flat) -> (J, grad_flat)``: the objective as the optimizers see it (1-D arrays).

        ``parts=True`` adds a third value, the device vector ``[content, style, tv]``, which
        :func:`numpynst.optim.minimize` records beside ``J``.
        """
        xp = self.xp

        def fun(x_flat: Array) -> tuple:
            J, g, p = self.evaluate(x_flat.reshape(self.shape))
            if not parts:
                return J, g.reshape(-1)
            return J, g.reshape(-1), xp.stack([xp.asarray(p[k], dtype=xp.float64) for k in PARTS])
        return fun
