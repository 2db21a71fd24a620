"""Neural style transfer, the product: :func:`stylize` minimises the objective over the pixels.

``stylize = run(prepare(...))``: :func:`prepare` checks the options
(:class:`numpynst.options.StylizeOptions`), loads the model and the pictures and plans every scale
(whole image or exact tiles within the memory budget, :mod:`numpynst.plan`), giving a
:class:`Prepared` run that ``--dry-run`` describes; :func:`run` builds each scale's objective
(:func:`make_objective`: :class:`numpynst.objective.Objective` or
:class:`numpynst.tiled.TiledObjective`, whose names are re-exported here) and minimises it with
:func:`numpynst.optim.minimize`, coarse to fine. Before the first iteration a run says its plan in
one line (:meth:`Prepared.plan_line`: sizes, whole or tiled, the planner's estimated time) and, after
the first logged iteration, the estimate corrected by the clock (:class:`_Clock`, which also gives
the progress bar its time left).

**Device discipline.** Everything inside the loop stays on the model's device: the losses are 0-d
arrays, and :func:`numpynst.optim.minimize` (the loop the tutorials teach, which :func:`stylize`
runs) writes the history into a device buffer and tracks the best image with ``where``. Values
reach the host only every ``log_every`` iterations (for the progress bar, the callback, the
stopping test), or once at the end with ``log_every=0``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from .backend import backend_name, release_cached, tf32_matmul, to_host
from .errors import ImageError, NumpynstError, OptionError
from .image import as_rgb, grid_shapes, image_shape, resize_image, resize_to, scaled_shape
from .objective import (  # noqa: F401 (API: the names a user of stylize meets, re-exported)
    COEFFICIENT_RANGES, DEFAULT_ALPHA, DEFAULT_BETA, DEFAULT_CONTENT_LAYER, DEFAULT_STYLE_LAYERS,
    DEFAULT_TV_WEIGHT, PARTS, Objective, calibration, check_layers)
from .optim import make_optimizer, minimize
from .options import (DEFAULT_ITERATIONS, DEFAULT_SIZE, DEFAULT_TOL, INITS,  # noqa: F401 (API)
                      MAX_ITERATIONS, MIN_SIZE, ORIGINAL, TOL_WINDOW, StylizeOptions, default_scales, resolve,
                      result_size)
from .plan import (SLOW_SECONDS, THROUGHPUT, THROUGHPUT_WHERE, ScalePlan, describe, estimate, format_duration,
                   plan_stylize, scale_seconds)
from .style_stats import make_statistic
from .tiled import TiledObjective
from .vgg import VGG, deprocess, preprocess

Array = Any

# Plain gradient descent has no scale-free step. RAW_GD_LR is stable for the raw default weights on
# 0..255 pixels; with another beta, scale it by RAW_BETA / beta. DEFAULT_GD_LR is the same step for
# the calibrated J at style weight 1, whose gradient is far smaller (measurements: benchmarks/README.md,
# "Gradient descent's step"); the style term's gradient grows with the style weight, so a calibrated
# run takes DEFAULT_GD_LR / max(1, beta) (at the default 10, 1e5 diverged on a 40 x 48 test picture).
RAW_GD_LR = 3e-3
DEFAULT_GD_LR = 1e5
#: What the plan line offers a slow run: coarse to fine, the demo's schedule (commands/demo.py;
#: benchmarks/README.md, "The demo's settings"), and smaller sizes, largest first.
QUICK_SCALES, QUICK_ITERATIONS = (0.5, 1.0), 60
SMALLER_SIZES = (2048, 1024, 768, 512, 384, 256)


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
    ``"interrupted"`` (Ctrl-C) or ``"cluster lost"`` (the Dask scheduler went away; ``note`` says
    how; the image is the best so far). ``seconds``: wall time of the optimisation (of this
    process: a run continued from a checkpoint counts from the restart). ``image_float``: the
    same picture before rounding, float32 ``(H, W, 3)`` on 0..255 (``image`` is its ``rint``), for
    16-bit output (``save_image(path, result.image_float, bit_depth=16)``). ``scale_starts``: the
    index in ``history`` of each scale's first row (its start), coarse to fine.
    """

    image: np.ndarray
    history: dict
    iterations: int
    stopped: str
    seconds: float
    image_float: np.ndarray | None = None
    note: str = ""
    scale_starts: tuple = (0,)

    @property
    def J_start(self) -> float:
        """J at the start of the last scale run: the picture's J before its own optimisation (a coarser
        scale's J is of another picture size and is not comparable)."""
        J = self.history["J"][self.scale_starts[-1]:]
        return J[0] if J else float("nan")

    @property
    def J_final(self) -> float:
        """The lowest J of the last scale run: the returned picture's."""
        J = self.history["J"][self.scale_starts[-1]:]
        return min(J) if J else float("nan")


class Prepared(NamedTuple):
    """A run described before it starts (:func:`prepare`): everything :func:`run` needs, checked.

    ``options``: the validated :class:`~numpynst.options.StylizeOptions`; ``model``: the VGG;
    ``content``, ``styles``, ``init``: the RGB pictures (uint8 ``(H, W, 3)``, the content at its
    final size, the styles at ``style_scale`` x its longest side, ``init`` ``None`` unless an image);
    ``layers``: the style layers and weights; ``coefficients``: ``(alpha, beta, tv_weight)`` with the mode's
    defaults; ``scales`` and ``plans`` (``{scale: ScalePlan}``, whole image or exact tiles within
    ``budget`` bytes, from ``budget_source``); ``content_hw``: the content's own ``(H, W)`` before
    any resizing; ``masks``: float32 ``(R, H, W)`` in ``[0, 1]`` at the
    content's size (``None`` without masks); ``style_masks``: one ``(h, w)`` mask per style image at
    its size (``None`` without). With ``options.color == "match"`` the ``styles`` are already
    colour-matched to the content (each to its region, with masks).
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
    content_hw: tuple | None = None
    masks: np.ndarray | None = None
    style_masks: list | None = None

    def describe(self) -> str:
        """What ``numpynst stylize --dry-run`` prints: the plan of every scale (:func:`numpynst.plan.describe`)
        and the :meth:`plan_line`."""
        return describe(list(self.plans.values()), self.budget, self.model, self.options.optimizer,
                        self.budget_source) + "\n" + self.plan_line()

    def names(self) -> list[str]:
        """The layers the objective reads: the content layer and the style layers."""
        return list(dict.fromkeys([self.options.content_layer, *self.layers]))

    def scale_seconds(self) -> list[float]:
        """The planner's seconds for each scale: its targets and ``iterations + 1`` evaluations
        (:func:`numpynst.plan.scale_seconds`)."""
        return [scale_seconds(self.model, self.names(), plan, self.options.iterations,
                              [plan.hw, *(scaled_shape(s.shape, plan.scale) for s in self.styles)])
                for plan in self.plans.values()]

    def seconds_if(self, size: int | None = None, scales: Sequence[float] | None = None,
                   iterations: int | None = None) -> float:
        """The planner's seconds for this run at another ``size`` (longest side), ``scales`` or
        ``iterations``, every scale taken whole (tiles would add their halos: a few percent)."""
        opts, names = self.options, self.names()
        hw = self.content.shape[:2]
        if size is not None:
            k = size / max(hw)
            hw = (max(1, round(hw[0] * k)), max(1, round(hw[1] * k)))
        ratio = max(hw) / max(self.content.shape[:2])
        scales = list(self.scales if scales is None else scales)
        shapes = grid_shapes(hw, scales, self.model.up_to(names)[-1].pool_factor)
        return sum(scale_seconds(self.model, names, estimate(self.model, names, opts.content_layer, shape, None,
                                                              opts.optimizer, s),
                                 opts.iterations if iterations is None else iterations,
                                 [shape, *(scaled_shape(st.shape, s * ratio) for st in self.styles)])
                   for s, shape in zip(scales, shapes))

    def faster(self, factor: float = 1.0) -> str:
        """What would make this run faster, each with its estimate (x ``factor``, the clock's
        correction): a smaller ``--size``, the coarse-to-fine schedule, a GPU; ``""`` if nothing."""
        tips, side = [], max(self.content.shape[:2])
        smaller = [(n, factor * self.seconds_if(size=n)) for n in SMALLER_SIZES if n < side]
        quick = [t for t in smaller if t[1] <= SLOW_SECONDS][:1] or smaller[-1:]
        tips += [f"--size {n} (about {format_duration(t)})" for n, t in quick]
        if list(self.scales) == [1.0] and self.options.iterations > QUICK_ITERATIONS:
            t = factor * self.seconds_if(scales=QUICK_SCALES, iterations=QUICK_ITERATIONS)
            tips.append(f"--scales {' '.join(f'{x:g}' for x in QUICK_SCALES)} --iterations {QUICK_ITERATIONS} "
                        f"(coarse to fine, as the demo: about {format_duration(t)})")
        xp_name = backend_name(self.model.xp)
        if xp_name != "cupy":
            t = self.seconds_if() * THROUGHPUT[xp_name] / THROUGHPUT["cupy"]
            tips.append(f"--backend cupy on an NVIDIA GPU (about {format_duration(t)})")
        return "; faster: " + ", ".join(tips) if tips else ""

    def plan_line(self) -> str:
        """The one line a run prints before its first iteration: the size(s), whole or tiled, why
        this size, the iterations and the planner's estimated time (with what would make it faster
        when that passes :data:`numpynst.plan.SLOW_SECONDS`)."""
        opts, plans = self.options, list(self.plans.values())
        sizes = " -> ".join(f"{p.hw[1]}x{p.hw[0]} px" + ("" if p.tile is None else
                                                        f" in {p.tiles} tiles of {p.tile[1]}x{p.tile[0]}")
                            for p in plans)
        whole = ", whole image" if all(p.tile is None for p in plans) else ""
        own = self.content_hw or self.content.shape[:2]
        if opts.size == ORIGINAL:
            why = "the content's own size, --size original"
        elif opts.size is not None:
            why = f"--size {opts.size}"
        elif max(own) > DEFAULT_SIZE:
            why = (f"the default size: longest side {DEFAULT_SIZE} px; the content is {own[1]}x{own[0]}, "
                   f"--size N or --size original for more")
        else:
            why = f"the content's own size: the default caps the longest side at {DEFAULT_SIZE} px"
        per = " per scale" if len(plans) > 1 else ""
        total = sum(self.scale_seconds())
        rate, where = THROUGHPUT_WHERE[backend_name(self.model.xp)]
        return (f"plan: {sizes}{whole} ({why}); up to {opts.iterations} {opts.optimizer} iterations{per}: "
                f"about {format_duration(total)} at {rate} ({where}; corrected after "
                f"the first iteration)" + (self.faster() if total > SLOW_SECONDS else ""))


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
    model = (VGG.from_h5(opts.weights, backend=opts.backend, pooling=opts.pooling,
                         dtype=np.float16 if opts.precision == "fp16" else np.float32)
             if model is None else model)
    check_precision(opts.precision, model)
    layers = opts.style_layers
    check_layers(model, opts.content_layer, layers)

    content_rgb, content_hw = _content(content, opts.size, max_pixels)
    if opts.scales is None:     # the default schedule depends on the result's size
        opts = dataclasses.replace(opts, scales=default_scales(content_rgb.shape[:2]))
    if not styles:
        raise OptionError("at least one style image is needed")
    side = style_side(content_rgb.shape, opts.style_scale)
    style_rgbs = [as_rgb(s, f"style #{i + 1}", side, max_pixels) for i, s in enumerate(styles)]
    masks, style_masks = spatial_inputs(opts, content_rgb, style_rgbs)
    if opts.color == "match":
        style_rgbs = match_styles(content_rgb, style_rgbs, masks, style_masks)
    init = opts.init
    init_rgb = None if isinstance(init, str) and init in INITS else as_rgb(init, "init", None, max_pixels)
    plans, budget, source = plan_stylize(model, content_rgb.shape[:2], opts.scales, opts.content_layer,
                                         list(layers), opts.optimizer, opts.tile, opts.max_memory)
    tiled = [f"{p.hw[1]}x{p.hw[0]}" for p in plans.values() if p.tile is not None]
    if opts.precision == "fp16" and tiled:
        raise OptionError(f"--precision fp16 runs whole images only, but the plan tiles the {', '.join(tiled)} "
                          f"px scale(s) to fit the memory budget: raise --max-memory, or use fp32/tf32")
    if opts.style_loss == "swd":
        _check_swd(model, opts, plans, style_rgbs)
    if masks is not None:       # a region must reach at least one style layer at full size
        check_regions(model, list(layers), _masks_at(masks, plans[opts.scales[-1]].hw), opts)
    return Prepared(opts, model, content_rgb, style_rgbs, init_rgb, layers, opts.coefficients(), opts.scales, plans,
                    budget, source, content_hw, masks, style_masks)


def _content(content: Any, size: Any, max_pixels: int | None) -> tuple[np.ndarray, tuple[int, int]]:
    """The content picture at the run's size (:func:`numpynst.options.result_size`: by default at
    most :data:`DEFAULT_SIZE`) and its own ``(H, W)``; a file's from its header, before decoding."""
    if isinstance(content, (str, os.PathLike)):
        try:
            own = image_shape(content)
        except ImageError as exc:
            raise ImageError(f"content: {exc}") from None
        return as_rgb(content, "content", result_size(size, own), max_pixels), own
    rgb = as_rgb(content, "content", None, max_pixels)
    side = result_size(size, rgb.shape[:2])
    return (rgb if side is None else resize_image(rgb, side)), rgb.shape[:2]


def check_precision(precision: str, model) -> None:
    """:class:`OptionError` unless ``model`` can run ``precision``: tf32 on a CuPy model (``--backend
    auto`` may have found no GPU), fp16 on a float16 model, fp32 on a float32/float64 one."""
    on_gpu = backend_name(model.xp) == "cupy"
    if precision == "tf32" and not on_gpu:
        raise OptionError("--precision tf32 needs a GPU (CuPy): the model runs on numpy (with --backend "
                          "auto: no usable GPU was found); use fp32 or fp16")
    half = np.dtype(model.dtype) == np.float16
    if half != (precision == "fp16"):
        raise OptionError(f"--precision {precision} does not fit the given model of dtype "
                          f"{np.dtype(model.dtype).name} (fp16 needs a float16 model, the others float32 "
                          f"or float64)")


def check_regions(model, layers: list, masks: np.ndarray, opts: StylizeOptions) -> None:
    """:class:`OptionError` naming the first mask whose region reaches none of the style layers
    (:func:`numpynst.guided.missing_everywhere`): its style would apply nowhere."""
    from .guided import missing_everywhere
    from .image.mask import mask_label
    geometry = {n: (model.layer(n).reach, model.layer(n).spacing) for n in layers}
    for r in missing_everywhere(masks, geometry, opts.mask_mode):
        raise OptionError(f"{mask_label('mask', r, opts.masks[r])}: its white part is narrower than the "
                          f"receptive field of every style layer with mask_mode {opts.mask_mode} (--mask-mode), "
                          f"so style #{r + 1} would apply nowhere; widen it, or use --mask-mode resize")


def spatial_inputs(opts: StylizeOptions, content_rgb: np.ndarray, style_rgbs: list) -> tuple[Any, Any]:
    """``(masks (R, H, W) at the content's size or None, [style mask (h, w) per style] or None)``,
    loaded and checked (:func:`numpynst.image.load_masks`: one-line errors naming the mask)."""
    from .image import load_masks
    masks = None if opts.masks is None else load_masks(opts.masks, content_rgb.shape[:2])
    style_masks = None if opts.style_masks is None else load_masks(
        opts.style_masks, [s.shape[:2] for s in style_rgbs], "style mask")
    return masks, style_masks


def match_styles(content_rgb: np.ndarray, style_rgbs: list, masks: Any = None, style_masks: Any = None) -> list:
    """``--color match``: each style image with the content's colour mean and covariance
    (:func:`numpynst.image.match_color`), each over its region when masks are given."""
    from .image import match_color
    return [match_color(s, content_rgb, style_weights=None if style_masks is None else style_masks[i],
                        content_weights=None if masks is None else masks[i])
            for i, s in enumerate(style_rgbs)]


def _masks_at(masks: Any, hw: tuple[int, int]) -> Any:
    """Masks ``(R, h, w)`` (or a list of ``(h, w)``) resized to ``hw``, values kept in ``[0, 1]``."""
    from .image.mask import fit_mask
    return None if masks is None else np.stack([fit_mask(m, hw, "mask", check_aspect=False) for m in masks])


def _check_swd(model, opts: StylizeOptions, plans: dict, style_rgbs: list) -> None:
    """Before anything runs: ``swd`` needs whole images (no tiles) and enough positions at every
    style layer, in the generated image and each style image, at every scale (one-line errors)."""
    tiled = [s for s, plan in plans.items() if plan.tile is not None]
    if tiled:
        raise OptionError(f"style_loss swd (--style-loss) cannot run over exact tiles, and scale {tiled[0]:g} "
                          f"needs tiles to fit the memory budget: choose --style-loss mean-cov or gram, or "
                          f"a smaller --size or a larger --max-memory")
    for n in opts.style_layers:
        stat = make_statistic("swd", n, model.channels(n), directions=opts.swd_directions)
        step = model.layer(n).spacing
        for scale, plan in plans.items():
            sizes = [("the generated image", plan.hw)] + [
                (f"style image #{i + 1}", scaled_shape(s.shape, scale)) for i, s in enumerate(style_rgbs)]
            for what, (h, w) in sizes:
                stat.check(n, (h // step) * (w // step), what + (f" at scale {scale:g}" if scale != 1 else ""))


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


def _checkpointer(checkpoint: Any, opts: StylizeOptions):
    """``(Checkpoint or None, whether run removes it at the end)`` for :func:`run`'s argument."""
    if checkpoint is None:
        return None, False
    from .checkpoint import Checkpoint
    if isinstance(checkpoint, Checkpoint):
        return checkpoint, False
    return Checkpoint(checkpoint, opts.checkpoint_every, not opts.no_checkpoint), True


def run(prepared: Prepared, *, callback: Callable[[Progress], Any] | None = None, progress: bool = False,
        log_every: int | None = None, client: Any = None, on_plan: Callable[[str], Any] | None = None,
        checkpoint: Any = None, start: np.ndarray | None = None,
        wrap: Callable[[Any, tuple[int, int]], Any] | None = None) -> Result:
    """Minimise ``J`` over the pixels for a :func:`prepare`'d run, scale by scale; see :func:`stylize`.

    ``start``: a float RGB ``(H, W, 3)`` image on 0..255 that replaces the init at the first scale
    (resized to it). ``wrap(objective, hw)``: returns the objective to minimise at each scale in its
    place (an added term, as :mod:`numpynst.video`'s temporal cost). Both for callers that build on
    a run."""
    p, opts, model = prepared, prepared.options, prepared.model
    ck, owned = _checkpointer(checkpoint, opts)
    resume = None
    if ck is not None:
        ck.bind(p)
        resume = ck.load()              # a checkpoint of another run: one line, before any work
        if resume is not None:
            ck.log(f"continuing from checkpoint {ck.path.name}: scale {resume.scale_index + 1} of "
                   f"{len(p.scales)}, iteration {resume.loop.step}")
    xp, dtype = model.xp, getattr(model, "image_dtype", model.dtype)     # the image's: float32 under fp16
    log_every = (1 if backend_name(xp) == "numpy" else 10) if log_every is None else log_every
    alpha, beta, tv_weight = p.coefficients
    to_dev = lambda a: preprocess(a, dtype=dtype, xp=xp)      # noqa: E731
    rng = np.random.default_rng(opts.seed)         # validated: an int in 0..MAX_SEED, or None
    gd_lr = DEFAULT_GD_LR / max(1.0, beta) if opts.weights_mode == "calibrated" else RAW_GD_LR
    lr = gd_lr if opts.lr is None and opts.optimizer == "gd" else opts.lr
    iterations = opts.iterations
    if on_plan is not None:
        on_plan(p.plan_line())
    clock = _Clock(p, on_plan)
    log = _Log(iterations * len(p.scales), progress, callback, p.coefficients, clock)

    t0, x, total, stopped, note = time.perf_counter(), None, 0, "iterations", ""
    if resume is not None:              # the finished scales' history, as the interrupted run had it
        log.resume(resume.done_history, resume.total + resume.loop.step)
        total = resume.total
    precision = tf32_matmul(xp) if opts.precision == "tf32" else contextlib.nullcontext()
    precision.__enter__()           # CuPy's float32 products on TF32 for this run only
    try:
        for index, scale in enumerate(p.scales):
            if resume is not None and index < resume.scale_index:
                continue                    # finished before the interruption
            hw = p.plans[scale].hw          # a multiple of the pooling grid: no remainder rows at any pool
            obj = res = None                # the last scale's targets go before this one's are built
            release_cached(xp)              # and, on CuPy, the pool's blocks they leave cached
            obj = make_objective(p.plans[scale], model, to_dev(resize_to(p.content, hw)),
                                 [to_dev(resize_to(s, scaled_shape(s.shape, scale))) for s in p.styles],
                                 client=client, content_layer=opts.content_layer, style_layers=p.layers,
                                 alpha=alpha, beta=beta, tv_weight=tv_weight, style_blend=opts.style_blend,
                                 weights_mode=opts.weights_mode, style_loss=opts.style_loss,
                                 swd_directions=opts.swd_directions,
                                 **({} if p.masks is None and p.style_masks is None else {
                                     "masks": _masks_at(p.masks, hw), "mask_mode": opts.mask_mode,
                                     "style_masks": None if p.style_masks is None else [
                                         _masks_at([m], scaled_shape(s.shape, scale))[0]
                                         for m, s in zip(p.style_masks, p.styles)]}))
            obj = obj if wrap is None else wrap(obj, hw)
            loop = None
            if resume is not None and index == resume.scale_index:
                loop, resume, x0 = resume.loop, None, None     # the state replaces the start
            else:
                # coarse-to-fine: the last scale's float image, upsampled, starts this one
                x0 = (to_dev(resize_to(start, hw)) if x is None and start is not None else
                      _start(p, hw, rng, to_dev, xp, dtype) if x is None else
                      xp.asarray(resize_to(to_host(x)[0], hw)[None], dtype=dtype)).reshape(-1)
            log.start_scale(scale, obj.shape, 0 if loop is None else loop.step)
            clock.start_scale()
            x0 = [x0]           # minimize gets the only reference and drops it after its copy
            res = minimize(obj.flat(parts=True), x0.pop(),
                           make_optimizer(opts.optimizer, **({} if lr is None else {"lr": lr})),
                           iterations, log_every=log_every, on_log=log.on_log, tol=opts.tol,
                           tol_window=TOL_WINDOW, resume=loop,
                           checkpoint=_saver(ck, index, total, log) if ck is not None and ck.active else None,
                           checkpoint_every=ck.every if ck is not None and ck.active else 0.0)
            log.record(res.history, iterations, res.stopped)
            clock.end_scale(res.iterations)
            x, total, stopped, note = res.best_x.reshape(obj.shape), total + res.iterations, res.stopped, res.note
            if stopped != "iterations" and stopped != "tolerance":
                break
    finally:
        log.close()
        precision.__exit__(None, None, None)
    if owned and stopped not in ("interrupted", "cluster lost"):
        ck.remove()                     # the Python API's run is complete: its result is the picture
    if stopped == "non-finite loss" and not any(math.isfinite(v) for v in log.history["J"]):
        raise NumpynstError("the loss was not finite at the start (NaN/inf): check the weights and "
                            "the alpha/beta/tv_weight values")
    image = deprocess(x, dtype=np.float32)           # float, so a 16-bit file keeps every level
    if image.shape[:2] != p.content.shape[:2]:
        image = np.clip(resize_to(image, p.content.shape[:2]), 0, 255)  # Lanczos overshoots
    if opts.color == "keep":
        from .image import preserve_color as keep_colour
        image = keep_colour(p.content, image)
    return Result(np.rint(image).astype(np.uint8), log.history, total, stopped,
                  time.perf_counter() - t0, image, note, tuple(log.starts) or (0,))


def _saver(ck, index: int, total: int, log: "_Log") -> Callable:
    """``minimize``'s checkpoint hook at scale ``index``: the loop's state with the run's."""
    from .checkpoint import RunState
    done = np.array([log.history[k] for k in ("J", *PARTS)], dtype=np.float64).T.reshape(-1, 1 + len(PARTS))

    def save(loop) -> None:
        ck.save(RunState(index, total, done, loop))
    return save


def stylize(content: Any, style: Any, options: StylizeOptions | None = None, *, model=None,
            callback: Callable[[Progress], Any] | None = None, progress: bool = False,
            log_every: int | None = None, max_pixels: int | None = None, client: Any = None,
            on_plan: Callable[[str], Any] | None = None, checkpoint: Any = None, **keywords: Any) -> Result:
    """Stylize ``content`` with ``style``: minimise ``J(x)`` over the pixels ``x``.

    ``stylize(content, style, options)`` with a :class:`~numpynst.options.StylizeOptions`, or
    ``stylize(content, style, size=512, beta=3)``: keyword arguments build one (on top of
    ``options`` when both are given). It is :func:`prepare` then :func:`run`.

    Args:
        content: path or uint8 ``(H, W, 3)`` RGB array. style: the same, or a list of them.
        options / keywords: the knobs of the picture (:class:`~numpynst.options.StylizeOptions`
            documents each: ``size``, ``iterations``, ``optimizer``, ``lr``, ``alpha``, ``beta``,
            ``tv_weight``, ``weights_mode``, ``content_layer``, ``style_layers``, ``style_blend``,
            ``style_scale``, ``init``, ``seed``, ``color``, ``masks``, ``style_masks``, ``mask_mode``,
            ``scales``, ``tol``, ``backend``,
            ``weights``, ``pooling``, ``tile``, ``max_memory``). ``init`` may also be an RGB array
            here; ``gd``'s default step is ``DEFAULT_GD_LR / max(1, beta)`` (``RAW_GD_LR`` in raw mode).
        model: a ready :class:`~numpynst.vgg.VGG` (then ``backend``, ``weights`` and ``pooling`` are
            not used); otherwise loaded from ``weights`` (default: the shipped VGG19).
        callback: called with a :class:`Progress` at every logging point; returning ``False`` stops.
        progress: show a tqdm bar with the losses.
        log_every: host sync interval (default 1 on NumPy, 10 on CuPy; 0 = only at the end).
        max_pixels: refuse a content image with more pixels than this unless ``size`` is given
            (``None``: :data:`numpynst.image.DEFAULT_MAX_PIXELS`).
        client: a ``distributed.Client``: the scales that run tiled send their tiles to its
            workers (:mod:`numpynst.tiled_dask`; ``model`` must then come from a weights file).
        on_plan: called with the plan line (:meth:`Prepared.plan_line`: sizes, whole or tiled,
            estimated time) before the first iteration, and once more with the estimate corrected
            from the clock after the first logged iteration (``numpynst stylize`` prints both).
        checkpoint: a file name (``"out.png.checkpoint.npz"``) or a
            :class:`numpynst.checkpoint.Checkpoint`: write the run's state there every
            ``checkpoint_every`` seconds (:mod:`numpynst.checkpoint`), and continue from it if it
            holds a checkpoint of this same run (another run's is refused, one line). A file name
            is removed when the run completes (not when interrupted); a ``Checkpoint`` is the
            caller's to remove once the picture is safe (``numpynst stylize`` does, after writing it).
    Returns:
        :class:`Result`. Ctrl-C ends the loop early and still returns the best image so far
        (``stopped == "interrupted"``); ``iterations == 0`` then means it came before the first
        iteration ended, and ``image`` is only the starting image.

    ``size`` defaults to :data:`DEFAULT_SIZE` (512 px on the longest side), or the content's own size
    when that is smaller, as on the command line; ``size="original"`` keeps the content's size.
    """
    return run(prepare(content, style, options, model=model, max_pixels=max_pixels, **keywords),
               callback=callback, progress=progress, log_every=log_every, client=client, on_plan=on_plan,
               checkpoint=checkpoint)


class _Log:
    """The progress bar, the user's callback and the history of :func:`stylize`, across scales.

    The bar counts iterations (the start of each scale is an evaluation but no iteration) against
    ``iterations x scales``; a scale that stops early on the tolerance takes its unused iterations
    off the total, so a finished run's bar ends exactly at its total. Its postfix shows J and the
    **loss balance**: each weighted term as a fraction of J (``content 40% style 58% tv 2%``), the
    quickest way to see whether a weight is doing anything.
    """

    def __init__(self, total: int, progress: bool, callback: Callable[[Progress], Any] | None,
                 coefficients: tuple[float, float, float] = (1.0, 1.0, 1.0), clock: "_Clock | None" = None):
        self.history: dict[str, list[float]] = {"J": [], **{k: [] for k in PARTS}}
        self.starts: list[int] = []          # each scale's first row in the history
        self.callback, self.bar, self.coefficients, self.clock = callback, None, coefficients, clock
        self.start_scale(1.0, None)
        if progress:
            self.bar = _bar(total, clock)

    def start_scale(self, scale: float, shape: tuple[int, ...] | None, step: int = 0) -> None:
        self.scale, self.shape, self.step = scale, shape, step

    def resume(self, done: np.ndarray, iterations: int) -> None:
        """Continue a checkpointed run: the finished scales' rows, and the bar at ``iterations``."""
        if np.asarray(done).size:       # the checkpoint keeps the finished scales' rows as one block
            self.starts.append(len(self.history["J"]))
        for key, column in zip(("J", *PARTS), np.asarray(done).reshape(-1, 1 + len(PARTS)).T):
            self.history[key].extend(float(v) for v in column)
        if self.bar is not None:
            self.bar.update(iterations)

    def on_log(self, step: int, rows: np.ndarray, x: Array):
        """``minimize``'s logging hook: rows ``[J, content, style, tv]`` since the last point."""
        if self.clock is not None:
            self.clock.logged(step, self.bar)
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
        self.starts.append(len(self.history["J"]))
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


class _Clock:
    """The plan's time against the clock: the ETA of the progress bar and the plan line's correction.

    The planner gives each scale's seconds (:meth:`Prepared.scale_seconds`: targets ``t_i``, then
    ``n + 1`` evaluations of ``e_i``). At every logging point the work done so far, in the plan's
    seconds, is compared with the wall time since the run began: their ratio ``factor`` corrects the
    rest, ``ETA = factor x planned seconds left``, counting down between logging points. Until the
    first logging point the ETA is the plan's own (``factor = 1``); at the first one the corrected
    estimate is said once (``on_plan``), with what would make the run faster when it passes
    :data:`numpynst.plan.SLOW_SECONDS`.
    """

    def __init__(self, prepared: Prepared, on_plan: Callable[[str], Any] | None = None):
        self.p, self.on_plan = prepared, on_plan
        self.scale_s = prepared.scale_seconds()
        self.eval_s = [plan.seconds for plan in prepared.plans.values()]
        self.cap = prepared.options.iterations
        self.t0 = self.t_log = time.perf_counter()
        self.index, self.done_before, self.step, self.factor = -1, 0.0, -1, None

    def start_scale(self) -> None:
        self.index, self.step = self.index + 1, -1      # targets built, the first evaluation to come

    def end_scale(self, iterations: int) -> None:
        i = self.index
        self.done_before += self.scale_s[i] - (self.cap - iterations) * self.eval_s[i]

    def _done(self) -> float:
        """Planned seconds of the work done: earlier scales, this one's targets and evaluations."""
        i = self.index
        return self.done_before + self.scale_s[i] - (self.cap - self.step) * self.eval_s[i]

    def _left(self) -> float:
        """Planned seconds of the work left: this scale's iterations, then the later scales."""
        i = self.index
        return (self.cap - self.step) * self.eval_s[i] + sum(self.scale_s[i + 1:])

    def logged(self, step: int, bar: Any = None) -> None:
        """A logging point after ``step`` iterations of the current scale (``step + 1`` evaluations)."""
        now = time.perf_counter()
        self.step, self.t_log = step, now
        first = self.factor is None
        self.factor = (now - self.t0) / max(self._done(), 1e-9)
        if first and self.on_plan is not None:
            e_plan = self.eval_s[self.index]
            left = self.factor * self._left()
            text = (f"plan corrected: an iteration takes {self.factor * e_plan:.3g} s here (estimated "
                    f"{e_plan:.3g} s): about {format_duration(now - self.t0 + left)} in all, "
                    f"{format_duration(left)} to go")
            if now - self.t0 + left > SLOW_SECONDS:
                text += self.p.faster(self.factor)
            if bar is not None:
                with bar.external_write_mode():
                    self.on_plan(text)
            else:
                self.on_plan(text)

    def eta(self) -> float:
        """Seconds to go: the plan's, corrected by the clock once it has a logging point."""
        now = time.perf_counter()
        if self.factor is None:
            return max(0.0, sum(self.scale_s) - (now - self.t0))
        return max(0.0, self.factor * self._left() - (now - self.t_log))


_BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{plan_eta}, {rate_fmt}{postfix}]"


def _bar(total: int, clock: _Clock | None):
    """A tqdm bar whose ETA is the clock's (:class:`_Clock`): the plan's before the first iteration
    (marked ``~``), then corrected by the measured ones, across scales of different sizes."""
    from tqdm.auto import tqdm

    class Bar(tqdm):
        @property
        def format_dict(self):
            d = super().format_dict
            if clock is None:
                d["plan_eta"] = "?"
            else:
                d["plan_eta"] = ("~" if clock.factor is None else "") + tqdm.format_interval(clock.eta())
            return d

    return Bar(total=total, unit="it", dynamic_ncols=True, leave=True, bar_format=_BAR_FORMAT)
