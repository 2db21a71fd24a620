"""Neural style transfer, the product: :func:`stylize` minimises the objective over the pixels.

The objective ``J(x)`` (targets, weights, value and gradient) is in :mod:`numpynst.objective`, whose
names are re-exported here; the memory plan (whole image or exact tiles per scale) in
:mod:`numpynst.plan`; the loop is :func:`numpynst.optim.minimize`.

**Device discipline.** Everything inside the loop stays on the model's device: the losses are 0-d
arrays, and :func:`numpynst.optim.minimize` (the loop the tutorials teach, which :func:`stylize`
runs) writes the history into a device buffer and tracks the best image with ``where``. Values
reach the host only every ``log_every`` iterations (for the progress bar, the callback, the
stopping test), or once at the end with ``log_every=0``.
"""

from __future__ import annotations

import math
import numbers         # numbers.Real: Python and NumPy scalars alike (np.float32(0.5), np.int64(1))
import time
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import numpy as np

from .backend import backend_name, release_cached, to_host
from .checks import integer
from .errors import NumpynstError, OptionError
from .image import as_rgb, resize_to, round_to_multiple, scaled_shape
from .objective import (  # noqa: F401 (API: the objective's names, re-exported)
    DEFAULT_CONTENT_LAYER, DEFAULT_STYLE_LAYERS, RAW_ALPHA, RAW_BETA, RAW_TV_WEIGHT, DEFAULT_ALPHA,
    DEFAULT_BETA, DEFAULT_TV_WEIGHT, WEIGHT_RANGES, WEIGHT_OPTIONS, WEIGHTS_MODES, Evaluation,
    Calibration, TV_SCALE_FLOOR, calibration, check_weight, check_weights_mode, default_weights,
    check_layers, Objective, PARTS)
from .optim import OPTIMIZERS, make_optimizer, minimize
from .plan import check_scales, make_objective, plan_stylize
from .vgg import VGG, deprocess, preprocess

Array = Any

# Plain gradient descent has no scale-free step. RAW_GD_LR is stable for the raw default weights on
# 0..255 pixels (measured on the demo pair: 1e-1 diverges, 1e-2 is at the edge); with another beta,
# scale it by RAW_BETA / beta. The calibrated J's gradient is ~3.3e7 times smaller at the default
# weights (measured at 96 px: |g| 1.4e5 raw, 4.2e-3 calibrated), so DEFAULT_GD_LR is the same step;
# monotone decrease checked at 96 px for 3e4, 1e5 and 3e5.
RAW_GD_LR = 3e-3
DEFAULT_GD_LR = 1e5
DEFAULT_ITERATIONS = 200
# Iteration cap per scale that any caller may ask for: the loss history alone is 32 bytes per
# iteration, and a million L-BFGS iterations is days of work at any size.
MAX_ITERATIONS = 1_000_000
DEFAULT_TOL = 1e-4          # relative decrease of J over TOL_WINDOW iterations
TOL_WINDOW = 20
INITS = ("content", "noise", "style")


def balance(row: Sequence[float], weights: tuple[float, float, float]) -> str:
    """``"J 1.23e+04 | content 40% style 58% tv 2%"`` from a history row ``[J, content, style, tv]``:
    each weighted term (weight x part) as a percentage of J."""
    J = float(row[0])
    terms = [w * float(v) for w, v in zip(weights, row[1:4])]
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


def _check_options(iterations, optimizer, size, style_scale, tol) -> None:
    if integer("iterations", iterations, minimum=0) > MAX_ITERATIONS:
        raise OptionError(f"iterations must be at most {MAX_ITERATIONS:,} per scale, got {iterations}")
    if optimizer not in OPTIMIZERS:
        raise OptionError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    if size is not None:
        integer("size", size, minimum=16, maximum=16384)
    if not (isinstance(style_scale, numbers.Real) and 0.05 <= style_scale <= 8):
        raise OptionError(f"style_scale must be a number in 0.05..8, got {style_scale!r}")
    if tol is not None and not (isinstance(tol, numbers.Real) and tol >= 0):
        raise OptionError(f"tol must be a number >= 0, got {tol!r}")


def _start(init: Any, rgb: dict, hw: tuple[int, int], rng, to_dev, xp, dtype) -> Array:
    """The first image at one scale: an init image, the content, the style, or noise.

    ``rgb["init"]`` holds the init image when ``init`` is one (a path or an array); only otherwise
    is ``init`` one of the names in :data:`INITS` (an array must not be compared with a name).
    """
    if rgb["init"] is not None:                          # an image, resized to the content
        return to_dev(resize_to(rgb["init"], hw))
    if init == "noise":                                  # noise around the mean image
        return xp.asarray(rng.normal(0.0, 64.0, size=(1, *hw, 3)), dtype=dtype)
    return to_dev(resize_to(rgb[init], hw))              # "content" or "style"


def stylize(content: Any, style: Any, *, size: int | None = None,
            iterations: int = DEFAULT_ITERATIONS, optimizer: str = "lbfgs", lr: float | None = None,
            alpha: float | None = None, beta: float | None = None, tv_weight: float | None = None,
            content_layer: str = DEFAULT_CONTENT_LAYER, style_layers: Mapping[str, float] | None = None,
            style_blend: Sequence[float] | None = None, style_scale: float = 1.0,
            init: Any = "content", seed: int | None = 0, preserve_color: bool = False,
            backend: str = "numpy", model=None, weights: str | Path | None = None, pooling: str = "max",
            tol: float | None = DEFAULT_TOL, callback: Callable[[Progress], Any] | None = None,
            scales: Sequence[float] | None = None, progress: bool = False,
            log_every: int | None = None, max_pixels: int | None = None,
            weights_mode: str = "calibrated", tile: int | None = None, max_memory: Any = None,
            client: Any = None) -> Result:
    """Stylize ``content`` with ``style``: minimise ``J(x)`` over the pixels ``x``.

    Args:
        content: path or uint8 ``(H, W, 3)`` RGB array. style: the same, or a list of them.
        size: longest side of the result in pixels (default: the content's own size).
        iterations: iteration cap per scale (an L-BFGS iteration is one function evaluation).
        optimizer: ``"lbfgs"`` (default), ``"adam"`` or ``"gd"`` (the textbook ``x := x - lr dJ/dx``).
        lr: step size for ``adam`` (default in :mod:`numpynst.optim`) or ``gd`` (default
            ``DEFAULT_GD_LR``, or ``RAW_GD_LR`` in raw mode: stable for the default weights).
        alpha, beta, tv_weight: content, style and TV weights (``None``: the mode's default;
            calibrated: 1, 1, 0.1, each within :data:`WEIGHT_RANGES`; raw: 1, 1e-2, 1).
        weights_mode: ``"calibrated"`` (default; README "Choosing the weights") or ``"raw"``
            (the notes' ``J`` with the weights as given).
        content_layer, style_layers, style_blend: see :class:`Objective`.
        style_scale: the style image is resized to ``style_scale`` x the content's longest side;
            smaller values give larger brush strokes relative to the picture.
        init: ``"content"``, ``"noise"``, ``"style"``, or an image (path or array) resized to the content.
        seed: seeds the noise init (and nothing else is random), so a run is reproducible.
        preserve_color: keep the content's colours, take only the luminance from the result.
        backend: ``"numpy"``, ``"cupy"`` or ``"auto"`` (ignored when ``model`` is given).
        model: a ready :class:`~numpynst.vgg.VGG`; otherwise loaded from ``weights`` (default: shipped VGG19).
        tol: stop early when J decreased by less than ``tol`` (relative) over the last 20
            iterations; ``None`` or 0 runs all iterations.
        callback: called with a :class:`Progress` at every logging point; returning ``False`` stops.
        scales: coarse-to-fine schedule, e.g. ``(0.25, 0.5, 1.0)``: each scale runs up to
            ``iterations`` iterations and its upsampled result (in float, never rounded to 8 bits)
            initialises the next.
        progress: show a tqdm bar with the losses.
        log_every: host sync interval (default 1 on NumPy, 10 on CuPy; 0 = only at the end).
        tile: run every scale over exact tiles of at most this side (a multiple of the pooling
            grid, at least the halo; :mod:`numpynst.tiled`); default: as :mod:`numpynst.plan` decides.
        max_memory: memory budget (bytes, or text such as ``"4GB"``) from which the planner picks
            whole image or tiles per scale; default: half of the free memory.
        client: a ``distributed.Client``: the scales that run tiled send their tiles to its
            workers (:mod:`numpynst.tiled_dask`; ``model`` must then come from a weights file).
        max_pixels: refuse a content image with more pixels than this unless ``size`` is given
            (``None``: :data:`numpynst.image.DEFAULT_MAX_PIXELS`).
    Returns:
        :class:`Result`. Ctrl-C ends the loop early and still returns the best image so far
        (``stopped == "interrupted"``).
    """
    _check_options(iterations, optimizer, size, style_scale, tol)
    weights_mode = check_weights_mode(weights_mode)
    alpha, beta, tv_weight = default_weights(weights_mode, alpha, beta, tv_weight)
    scale_list = check_scales(scales)
    model = VGG.from_h5(weights, backend=backend, pooling=pooling) if model is None else model
    xp, dtype = model.xp, model.dtype
    log_every = (1 if backend_name(xp) == "numpy" else 10) if log_every is None else log_every
    layers = dict(DEFAULT_STYLE_LAYERS if style_layers is None else style_layers)
    check_layers(model, content_layer, layers)

    rgb = {"content": as_rgb(content, "content", size, max_pixels)}
    styles = list(style) if isinstance(style, (list, tuple)) else [style]
    if not styles:
        raise OptionError("at least one style image is needed")
    style_side = max(16, int(round(max(rgb["content"].shape[:2]) * style_scale)))
    style_rgbs = [as_rgb(s, f"style #{i + 1}", style_side, max_pixels) for i, s in enumerate(styles)]
    rgb["style"] = style_rgbs[0]
    rgb["init"] = None if isinstance(init, str) and init in INITS else as_rgb(init, "init", None, max_pixels)
    factor = model.pool_factor([content_layer, *layers])      # no remainder rows at any pool
    # whole image or exact tiles, per scale, within the memory budget (numpynst.plan); plan builds
    # on this module's Objective, hence the import here
    plans = plan_stylize(model, rgb["content"].shape[:2], scale_list, content_layer, list(layers), optimizer,
                         tile, max_memory)[0]
    to_dev = lambda a: preprocess(a, dtype=dtype, xp=xp)      # noqa: E731
    rng = np.random.default_rng(None if seed is None else integer("seed", seed, minimum=0))
    gd_lr = DEFAULT_GD_LR if weights_mode == "calibrated" else RAW_GD_LR
    opt_kw = {"lr": gd_lr if lr is None and optimizer == "gd" else lr}
    log = _Log(iterations * len(scale_list), progress, callback, (alpha, beta, tv_weight))

    build = make_objective                  # whole or tiled, as planned
    if client is not None:                 # the tiled scales on Dask workers
        from .tiled_dask import objective_on
        build = objective_on(client)
    t0, x, total, stopped = time.perf_counter(), None, 0, "iterations"
    try:
        for scale in scale_list:
            hw = round_to_multiple(scaled_shape(rgb["content"].shape, scale), factor)
            obj = res = None                # the last scale's targets go before this one's are built
            release_cached(xp)              # and, on CuPy, the pool's blocks they leave cached
            obj = build(plans[scale], model, to_dev(resize_to(rgb["content"], hw)),
                                 [to_dev(resize_to(s, scaled_shape(s.shape, scale))) for s in style_rgbs],
                                 content_layer=content_layer, style_layers=layers, alpha=alpha, beta=beta,
                                 tv_weight=tv_weight, style_blend=style_blend, weights_mode=weights_mode)
            # coarse-to-fine: the last scale's float image, upsampled, starts this one
            x0 = (_start(init, rgb, hw, rng, to_dev, xp, dtype) if x is None else
                  xp.asarray(resize_to(to_host(x)[0], hw)[None], dtype=dtype)).reshape(-1)
            log.start_scale(scale, obj.shape)
            x0 = [x0]           # minimize gets the only reference and drops it after its copy
            res = minimize(obj.flat(parts=True), x0.pop(),
                           make_optimizer(optimizer, **({} if opt_kw["lr"] is None else opt_kw)),
                           iterations, log_every=log_every, on_log=log.on_log, tol=tol, tol_window=TOL_WINDOW)
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
    if image.shape[:2] != rgb["content"].shape[:2]:
        image = np.clip(resize_to(image, rgb["content"].shape[:2]), 0, 255)  # Lanczos overshoots
    if preserve_color:
        from .image import preserve_color as keep_colour
        image = keep_colour(rgb["content"], image)
    return Result(np.rint(image).astype(np.uint8), log.history, total, stopped,
                  time.perf_counter() - t0, image)


class _Log:
    """The progress bar, the user's callback and the history of :func:`stylize`, across scales.

    The bar counts iterations (the start of each scale is an evaluation but no iteration) against
    ``iterations x scales``; a scale that stops early on the tolerance takes its unused iterations
    off the total, so a finished run's bar ends exactly at its total. Its postfix shows J and the
    **loss balance**: each weighted term as a fraction of J (``content 40% style 58% tv 2%``), the
    quickest way to see whether a weight is doing anything.
    """

    def __init__(self, total: int, progress: bool, callback: Callable[[Progress], Any] | None,
                 weights: tuple[float, float, float] = (1.0, 1.0, 1.0)):
        self.history: dict[str, list[float]] = {"J": [], **{k: [] for k in PARTS}}
        self.callback, self.bar, self.weights = callback, None, weights
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
            self.bar.set_postfix_str(balance(rows[-1], self.weights), refresh=False)
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
