"""Neural style transfer, the product: :func:`stylize` minimises the objective over the pixels.

``stylize = run(prepare(...))``: :func:`prepare` checks the options
(:class:`numpynst.options.StylizeOptions`), loads the model and the pictures and plans every scale
(whole image or exact tiles within the memory budget, :mod:`numpynst.plan`), giving a
:class:`Prepared` run that ``--dry-run`` describes; :func:`run` builds each scale's objective
(:func:`make_objective`: :class:`numpynst.objective.Objective` or
:class:`numpynst.tiled.TiledObjective`, whose names are re-exported here) and minimises it with
:func:`numpynst.optim.minimize`, coarse to fine.

**Device discipline.** Everything inside the loop stays on the model's device: the losses are 0-d
arrays, and :func:`numpynst.optim.minimize` (the loop the tutorials teach, which :func:`stylize`
runs) writes the history into a device buffer and tracks the best image with ``where``. Values
reach the host only every ``log_every`` iterations (for the progress bar, the callback, the
stopping test), or once at the end with ``log_every=0``.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from .backend import backend_name, release_cached, to_host
from .errors import NumpynstError, OptionError
from .image import as_rgb, resize_to, scaled_shape
from .objective import (  # noqa: F401 (API: the names a user of stylize meets, re-exported)
    COEFFICIENT_RANGES, DEFAULT_ALPHA, DEFAULT_BETA, DEFAULT_CONTENT_LAYER, DEFAULT_STYLE_LAYERS,
    DEFAULT_TV_WEIGHT, PARTS, Objective, calibration, check_layers)
from .optim import make_optimizer, minimize
from .options import (DEFAULT_ITERATIONS, DEFAULT_TOL, INITS, MAX_ITERATIONS,  # noqa: F401 (API)
                      MIN_SIZE, TOL_WINDOW, StylizeOptions, resolve)
from .plan import ScalePlan, describe, plan_stylize
from .tiled import TiledObjective
from .vgg import VGG, deprocess, preprocess

Array = Any

# Plain gradient descent has no scale-free step. RAW_GD_LR is stable for the raw default weights on
# 0..255 pixels; with another beta, scale it by RAW_BETA / beta. DEFAULT_GD_LR is the same step for
# the calibrated J, whose gradient is far smaller (measurements: benchmarks/README.md, "Gradient
# descent's step").
RAW_GD_LR = 3e-3
DEFAULT_GD_LR = 1e5


def balance(row: Sequence[float], coefficients: tuple[float, float, float]) -> str:
    """``"J 1.23e+04 | content 40% style 58% tv 2%"`` from a history row ``[J, content, style, tv]``:
    each weighted term (weight x part) as a percentage of J."""
    J = float(row[0])
    terms = [w * float(v) for w, v in zip(coefficients, row[1:4])]
    if not (math.isfinite(J) and J > 0):
        return f"J {J:.4g}"
    return f"J {J:.4g} | " + " ".join(f"{k} {100.0 * t / J:.0f}%" for k, t in zip(PARTS, terms))


class Progress(NamedTuple):
    """What the per-iteration callback receives (at every logging point)."""

    iteration: int          # iterations done at this scale
    J: float
    content: float
    style: float
    tv: float
    x: Array                # current preprocessed image (device array): vgg.deprocess(x) gives RGB
    scale: float            # current scale (1.0 = full size)


class Result(NamedTuple):
    """Outcome of :func:`stylize`.

    ``image``: uint8 ``(H, W, 3)`` RGB (NumPy), the best (lowest-J, finite) image seen.
    ``history``: ``{"J", "content", "style", "tv"}`` -> list of floats, one per iteration (the value at
    the start included), over all scales in order. ``iterations``: iterations run in total.
    ``stopped``: why the loop ended: ``"iterations"`` (the budget ran out), ``"tolerance"`` (J
    decreased by less than ``tol`` over 20 iterations), ``"callback"`` (the callback returned
    ``False``), ``"non-finite loss"`` (J became NaN/inf; the image is the best finite one) or
    ``"interrupted"`` (Ctrl-C). ``seconds``: wall time of the optimisation. ``image_float``: the
    same picture before rounding, float32 ``(H, W, 3)`` on 0..255 (``image`` is its ``rint``), for
    16-bit output (``save_image(path, result.image_float, bit_depth=16)``).
    """

    image: np.ndarray
    history: dict
    iterations: int
    stopped: str
    seconds: float
    image_float: np.ndarray | None = None

    @property
    def J_final(self) -> float:
        return min(self.history["J"]) if self.history["J"] else float("nan")


class Prepared(NamedTuple):
    """A run described before it starts (:func:`prepare`): everything :func:`run` needs, checked.

    ``options``: the validated :class:`~numpynst.options.StylizeOptions`; ``model``: the VGG;
    ``content``, ``styles``, ``init``: the RGB pictures (uint8 ``(H, W, 3)``, the content at its
    final size, the styles at ``style_scale`` x its longest side, ``init`` ``None`` unless an image);
    ``layers``: the style layers and weights; ``coefficients``: ``(alpha, beta, tv_weight)`` with the mode's
    defaults; ``scales`` and ``plans`` (``{scale: ScalePlan}``, whole image or exact tiles within
    ``budget`` bytes, from ``budget_source``).
    """

    options: StylizeOptions
    model: Any
    content: np.ndarray
    styles: list
    init: np.ndarray | None
    layers: dict
    coefficients: tuple[float, float, float]
    scales: list
    plans: dict
    budget: int
    budget_source: str

    def describe(self) -> str:
        """What ``numpynst stylize --dry-run`` prints: the plan of every scale (:func:`numpynst.plan.describe`)."""
        return describe(list(self.plans.values()), self.budget, self.model, self.options.optimizer,
                        self.budget_source)


def style_side(content_shape: Sequence[int], style_scale: float = 1.0) -> int:
    """The longest side a style image is resized to (aspect kept) for a content picture of
    ``content_shape`` ``(H, W, ...)``: ``style_scale`` x the content's longest side, at least
    ``MIN_SIZE``. :func:`prepare` sizes the styles with it, :mod:`numpynst.metrics` the painting."""
    return max(MIN_SIZE, round(max(content_shape[:2]) * style_scale))


def prepare(content: Any, style: Any, options: StylizeOptions | None = None, *, model=None,
            max_pixels: int | None = None, **keywords: Any) -> Prepared:
    """Check the options, load the model and the pictures, and plan every scale: a :class:`Prepared`
    run, before anything is optimised. Arguments as :func:`stylize`'s. ``numpynst stylize --dry-run``
    is this and :meth:`Prepared.describe`."""
    styles = list(style) if isinstance(style, (list, tuple)) else [style]
    opts = resolve(options, len(styles) or None, **keywords)
    model = VGG.from_h5(opts.weights, backend=opts.backend, pooling=opts.pooling) if model is None else model
    layers = opts.style_layers
    check_layers(model, opts.content_layer, layers)

    content_rgb = as_rgb(content, "content", opts.size, max_pixels)
    if not styles:
        raise OptionError("at least one style image is needed")
    side = style_side(content_rgb.shape, opts.style_scale)
    style_rgbs = [as_rgb(s, f"style #{i + 1}", side, max_pixels) for i, s in enumerate(styles)]
    init = opts.init
    init_rgb = None if isinstance(init, str) and init in INITS else as_rgb(init, "init", None, max_pixels)
    plans, budget, source = plan_stylize(model, content_rgb.shape[:2], opts.scales, opts.content_layer,
                                         list(layers), opts.optimizer, opts.tile, opts.max_memory)
    return Prepared(opts, model, content_rgb, style_rgbs, init_rgb, layers, opts.coefficients(), opts.scales, plans,
                    budget, source)


def make_objective(plan: ScalePlan, model, content, style, client=None, **options):
    """The objective :func:`run` minimises at one scale: whole, or over exact tiles as planned (on
    ``client``'s Dask workers when given)."""
    if plan.tile is None:
        return Objective(model, content, style, **options)
    if client is None:
        return TiledObjective(model, content, style, tile=plan.tile, **options)
    from .tiled_dask import DaskTileRunner
    return TiledObjective(model, content, style, tile=plan.tile, runner=DaskTileRunner(client), **options)


def _start(prepared: Prepared, hw: tuple[int, int], rng, to_dev, xp, dtype) -> Array:
    """The first image at one scale: the init image, the content, the style, or noise."""
    if prepared.init is not None:                        # an image, resized to the content
        return to_dev(resize_to(prepared.init, hw))
    init = prepared.options.init
    if init == "noise":                                  # noise around the mean image
        return xp.asarray(rng.normal(0.0, 64.0, size=(1, *hw, 3)), dtype=dtype)
    return to_dev(resize_to(prepared.content if init == "content" else prepared.styles[0], hw))


def run(prepared: Prepared, *, callback: Callable[[Progress], Any] | None = None, progress: bool = False,
        log_every: int | None = None, client: Any = None) -> Result:
    """Minimise ``J`` over the pixels for a :func:`prepare`'d run, scale by scale; see :func:`stylize`."""
    p, opts, model = prepared, prepared.options, prepared.model
    xp, dtype = model.xp, model.dtype
    log_every = (1 if backend_name(xp) == "numpy" else 10) if log_every is None else log_every
    alpha, beta, tv_weight = p.coefficients
    to_dev = lambda a: preprocess(a, dtype=dtype, xp=xp)      # noqa: E731
    rng = np.random.default_rng(opts.seed)         # validated: an int in 0..MAX_SEED, or None
    gd_lr = DEFAULT_GD_LR if opts.weights_mode == "calibrated" else RAW_GD_LR
    lr = gd_lr if opts.lr is None and opts.optimizer == "gd" else opts.lr
    iterations = opts.iterations
    log = _Log(iterations * len(p.scales), progress, callback, p.coefficients)

    t0, x, total, stopped = time.perf_counter(), None, 0, "iterations"
    try:
        for scale in p.scales:
            hw = p.plans[scale].hw          # a multiple of the pooling grid: no remainder rows at any pool
            obj = res = None                # the last scale's targets go before this one's are built
            release_cached(xp)              # and, on CuPy, the pool's blocks they leave cached
            obj = make_objective(p.plans[scale], model, to_dev(resize_to(p.content, hw)),
                                 [to_dev(resize_to(s, scaled_shape(s.shape, scale))) for s in p.styles],
                                 client=client, content_layer=opts.content_layer, style_layers=p.layers,
                                 alpha=alpha, beta=beta, tv_weight=tv_weight, style_blend=opts.style_blend,
                                 weights_mode=opts.weights_mode)
            # coarse-to-fine: the last scale's float image, upsampled, starts this one
            x0 = (_start(p, hw, rng, to_dev, xp, dtype) if x is None else
                  xp.asarray(resize_to(to_host(x)[0], hw)[None], dtype=dtype)).reshape(-1)
            log.start_scale(scale, obj.shape)
            x0 = [x0]           # minimize gets the only reference and drops it after its copy
            res = minimize(obj.flat(parts=True), x0.pop(),
                           make_optimizer(opts.optimizer, **({} if lr is None else {"lr": lr})),
                           iterations, log_every=log_every, on_log=log.on_log, tol=opts.tol,
                           tol_window=TOL_WINDOW)
            log.record(res.history, iterations, res.stopped)
            x, total, stopped = res.best_x.reshape(obj.shape), total + res.iterations, res.stopped
            if stopped != "iterations" and stopped != "tolerance":
                break
    finally:
        log.close()
    if stopped == "non-finite loss" and not any(math.isfinite(v) for v in log.history["J"]):
        raise NumpynstError("the loss was not finite at the start (NaN/inf): check the weights and "
                            "the alpha/beta/tv_weight values")
    image = deprocess(x, dtype=np.float32)           # float, so a 16-bit file keeps every level
    if image.shape[:2] != p.content.shape[:2]:
        image = np.clip(resize_to(image, p.content.shape[:2]), 0, 255)  # Lanczos overshoots
    if opts.preserve_color:
        from .image import preserve_color as keep_colour
        image = keep_colour(p.content, image)
    return Result(np.rint(image).astype(np.uint8), log.history, total, stopped,
                  time.perf_counter() - t0, image)


def stylize(content: Any, style: Any, options: StylizeOptions | None = None, *, model=None,
            callback: Callable[[Progress], Any] | None = None, progress: bool = False,
            log_every: int | None = None, max_pixels: int | None = None, client: Any = None,
            **keywords: Any) -> Result:
    """Stylize ``content`` with ``style``: minimise ``J(x)`` over the pixels ``x``.

    ``stylize(content, style, options)`` with a :class:`~numpynst.options.StylizeOptions`, or
    ``stylize(content, style, size=512, beta=3)``: keyword arguments build one (on top of
    ``options`` when both are given). It is :func:`prepare` then :func:`run`.

    Args:
        content: path or uint8 ``(H, W, 3)`` RGB array. style: the same, or a list of them.
        options / keywords: the knobs of the picture (:class:`~numpynst.options.StylizeOptions`
            documents each: ``size``, ``iterations``, ``optimizer``, ``lr``, ``alpha``, ``beta``,
            ``tv_weight``, ``weights_mode``, ``content_layer``, ``style_layers``, ``style_blend``,
            ``style_scale``, ``init``, ``seed``, ``preserve_color``, ``scales``, ``tol``, ``backend``,
            ``weights``, ``pooling``, ``tile``, ``max_memory``). ``init`` may also be an RGB array
            here; ``gd``'s default step is ``DEFAULT_GD_LR`` (``RAW_GD_LR`` in raw mode).
        model: a ready :class:`~numpynst.vgg.VGG` (then ``backend``, ``weights`` and ``pooling`` are
            not used); otherwise loaded from ``weights`` (default: the shipped VGG19).
        callback: called with a :class:`Progress` at every logging point; returning ``False`` stops.
        progress: show a tqdm bar with the losses.
        log_every: host sync interval (default 1 on NumPy, 10 on CuPy; 0 = only at the end).
        max_pixels: refuse a content image with more pixels than this unless ``size`` is given
            (``None``: :data:`numpynst.image.DEFAULT_MAX_PIXELS`).
        client: a ``distributed.Client``: the scales that run tiled send their tiles to its
            workers (:mod:`numpynst.tiled_dask`; ``model`` must then come from a weights file).
    Returns:
        :class:`Result`. Ctrl-C ends the loop early and still returns the best image so far
        (``stopped == "interrupted"``).
    """
    return run(prepare(content, style, options, model=model, max_pixels=max_pixels, **keywords),
               callback=callback, progress=progress, log_every=log_every, client=client)


class _Log:
    """The progress bar, the user's callback and the history of :func:`stylize`, across scales.

    The bar counts iterations (the start of each scale is an evaluation but no iteration) against
    ``iterations x scales``; a scale that stops early on the tolerance takes its unused iterations
    off the total, so a finished run's bar ends exactly at its total. Its postfix shows J and the
    **loss balance**: each weighted term as a fraction of J (``content 40% style 58% tv 2%``), the
    quickest way to see whether a weight is doing anything.
    """

    def __init__(self, total: int, progress: bool, callback: Callable[[Progress], Any] | None,
                 coefficients: tuple[float, float, float] = (1.0, 1.0, 1.0)):
        self.history: dict[str, list[float]] = {"J": [], **{k: [] for k in PARTS}}
        self.callback, self.bar, self.coefficients = callback, None, coefficients
        self.start_scale(1.0, None)
        if progress:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, unit="it", dynamic_ncols=True, leave=True)

    def start_scale(self, scale: float, shape: tuple[int, ...] | None) -> None:
        self.scale, self.shape, self.step = scale, shape, 0

    def on_log(self, step: int, rows: np.ndarray, x: Array):
        """``minimize``'s logging hook: rows ``[J, content, style, tv]`` since the last point."""
        if self.bar is not None:
            self.bar.update(step - self.step)       # iterations, not rows: the start is no iteration
            self.step = step
            self.bar.set_postfix_str(balance(rows[-1], self.coefficients), refresh=False)
        if self.callback is None:
            return None
        r = rows[-1]
        return self.callback(Progress(step, float(r[0]), float(r[1]), float(r[2]), float(r[3]),
                                      x.reshape(self.shape), self.scale))

    def record(self, rows: np.ndarray, cap: int, stopped: str) -> None:
        """Append one scale's history; after a tolerance stop, drop its unused iterations from the bar."""
        for key, column in zip(("J", *PARTS), rows.T):
            self.history[key].extend(float(v) for v in column)
        if self.bar is not None:
            done = len(rows) - 1
            self.bar.update(done - self.step)       # a stop decided at a logging point skips on_log
            self.step = done
            if stopped == "tolerance":
                self.bar.total -= cap - done
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
