"""Neural style transfer: the objective ``J(x)`` and the pixel-update loop that minimises it.

The generated image ``x`` (preprocessed, ``(1, H, W, 3)``) is the only variable. With ``a^l(x)`` the
VGG activation of layer ``l``::

    J(x) = alpha * J_content(a_C, a^c(x))
         + beta  * sum_l lambda_l * J_style^l(G_S^l, a^l(x))
         + tv_weight * TV(x)

``J_content`` and ``J_style^l`` are in :mod:`numpynst.losses`, each returning its value and its
gradient with respect to the activation. The gradient with respect to the pixels is one backward pass
through VGG, seeded at every layer that appears in ``J``::

    dJ/dx = VGG.backward({c: alpha dJ_content/da^c, l: beta lambda_l dJ_style^l/da^l, ...}) + tv_weight dTV/dx

The targets ``a_C`` (content activation) and ``G_S^l`` (style Gram matrices) are computed once, in
:class:`Objective`'s constructor.

**Style images of another size.** ``G_S = A^T A`` sums over the style image's pixels, while ``G_G``
sums over the generated image's. Left alone, a style image twice as wide would double every target
entry and silently change what ``beta`` means. We rescale each target by
``(nH nW of the generated image at l) / (nH nW of the style image at l)`` so that ``beta`` means the same
whatever the style image's size.

**Device discipline.** Everything inside the loop stays on the model's device: the losses are 0-d
arrays, the history of ``J`` is written into a device buffer, the best image is tracked with
``where``. Values reach the host only every ``log_every`` iterations (for the progress bar, the
callback, the stopping test), or once at the end with ``log_every=0``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import numpy as np

from .backend import backend_name, to_host
from .errors import NumpynstError, OptionError
from .losses import content_cost, gram_matrix, style_layer_cost, total_variation

Array = Any

DEFAULT_CONTENT_LAYER = "block4_conv2"
DEFAULT_STYLE_LAYERS: dict[str, float] = {
    "block1_conv1": 0.2, "block2_conv1": 0.2, "block3_conv1": 0.2, "block4_conv1": 0.2, "block5_conv1": 0.2,
}
# Chosen on the bundled demo pair at 256-512 px with L-BFGS (see README "Choosing the weights"):
# with the normalisations J_content ~ a^2 and J_style^l ~ a^4, so beta is small.
DEFAULT_ALPHA = 1.0
DEFAULT_BETA = 1e-2
DEFAULT_TV_WEIGHT = 1.0
# Plain gradient descent has no scale-free step: this lr is stable for the default alpha/beta on
# 0..255 pixels (measured on the demo pair: 1e-1 diverges, 1e-2 is at the edge); with another beta,
# scale it by DEFAULT_BETA / beta.
DEFAULT_GD_LR = 3e-3
DEFAULT_ITERATIONS = 200
DEFAULT_TOL = 1e-4          # relative decrease of J over TOL_WINDOW iterations
TOL_WINDOW = 20
OPTIMIZERS = ("gd", "adam", "lbfgs")
INITS = ("content", "noise", "style")


class Objective:
    """``J(x)`` and ``dJ/dx`` for one content image and one or more style images.

    Args:
        model: a :class:`numpynst.vgg.VGG` (its device and dtype are used throughout).
        content: preprocessed content image ``(1, H, W, 3)`` on the model's device.
        style: a preprocessed style image ``(1, Hs, Ws, 3)`` or a list of them.
        content_layer: layer whose activation carries the content.
        style_layers: ``{layer: lambda_l}``; default five ``blockN_conv1`` layers at 0.2.
        alpha, beta, tv_weight: weights of the three terms.
        style_blend: one weight per style image; the Gram targets are blended as
            ``G_S^l = sum_i w_i G_S,i^l / sum_i w_i``. Default: equal weights.
    """

    def __init__(self, model, content: Array, style: Array | Sequence[Array], *,
                 content_layer: str = DEFAULT_CONTENT_LAYER,
                 style_layers: Mapping[str, float] | None = None,
                 alpha: float = DEFAULT_ALPHA, beta: float = DEFAULT_BETA,
                 tv_weight: float = DEFAULT_TV_WEIGHT,
                 style_blend: Sequence[float] | None = None):
        self.model = model
        self.xp = model.xp
        self.content_layer = content_layer
        self.style_layers = dict(DEFAULT_STYLE_LAYERS if style_layers is None else style_layers)
        for name, value in (("alpha", alpha), ("beta", beta), ("tv_weight", tv_weight)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise OptionError(f"{name} must be a finite number >= 0, got {value!r}")
        if not self.style_layers and beta > 0:
            raise OptionError("style_layers is empty: give at least one layer or set beta=0")
        unknown = [n for n in [content_layer, *self.style_layers] if n not in model.layer_names]
        if unknown:
            raise OptionError(f"unknown layer(s) {', '.join(unknown)}; valid names: {', '.join(model.layer_names)}")
        for n, lam in self.style_layers.items():
            if not (isinstance(lam, (int, float)) and math.isfinite(lam) and lam >= 0):
                raise OptionError(f"style layer weight for {n} must be a finite number >= 0, got {lam!r}")
        self.alpha, self.beta, self.tv_weight = float(alpha), float(beta), float(tv_weight)
        self.outputs = list(dict.fromkeys([content_layer, *self.style_layers]))
        self.shape = tuple(content.shape)

        styles = list(style) if isinstance(style, (list, tuple)) else [style]
        weights = [1.0] * len(styles) if style_blend is None else [float(w) for w in style_blend]
        if len(weights) != len(styles):
            raise OptionError(f"style_blend has {len(weights)} weight(s) for {len(styles)} style image(s)")
        if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
            raise OptionError(f"style_blend weights must be >= 0 with a positive sum, got {weights}")
        total = sum(weights)

        acts = model.forward(content, [content_layer, *self.style_layers], keep_cache=False)
        # .copy(): the model reuses nothing, but the target must not alias a cache that later
        # forwards drop; a copy makes the ownership obvious at the cost of one activation.
        self.content_target = acts[content_layer].copy()
        gen_pixels = {n: acts[n].shape[1] * acts[n].shape[2] for n in self.style_layers}
        self.style_targets: dict[str, Array] = {}
        for img, w in zip(styles, weights):
            s_acts = model.forward(img, list(self.style_layers), keep_cache=False)
            for n, a in s_acts.items():
                scale = gen_pixels[n] / (a.shape[1] * a.shape[2])     # see "Style images of another size"
                g = gram_matrix(a) * self.xp.asarray(scale * w / total, dtype=a.dtype)
                self.style_targets[n] = g if n not in self.style_targets else self.style_targets[n] + g
        self.last: dict[str, Array] = {}

    def value_and_grad(self, x: Array) -> tuple[Array, Array]:
        """``(J, dJ/dx)`` at the preprocessed image ``x`` ``(1, H, W, 3)``; ``J`` a 0-d device array.

        The parts of ``J`` (unweighted ``content``, ``style`` = sum_l lambda_l J_style^l, ``tv``) are
        left in ``self.last`` as 0-d device arrays, for logging without a second evaluation.
        """
        if tuple(x.shape) != self.shape:
            raise ValueError(f"value_and_grad: x.shape={tuple(x.shape)} != content shape {self.shape}")
        xp = self.xp
        acts = self.model.forward(x, self.outputs)
        grads: dict[str, Array] = {}
        j_content, g = content_cost(self.content_target, acts[self.content_layer])
        grads[self.content_layer] = g * xp.asarray(self.alpha, dtype=g.dtype)
        j_style = xp.zeros((), dtype=x.dtype)
        for n, lam in self.style_layers.items():
            j, g = style_layer_cost(self.style_targets[n], acts[n])
            j_style = j_style + lam * j
            g = g * xp.asarray(self.beta * lam, dtype=g.dtype)
            grads[n] = grads[n] + g if n in grads else g
        dx = self.model.backward(grads)
        j_tv, g_tv = total_variation(x)
        if self.tv_weight:
            dx += g_tv * xp.asarray(self.tv_weight, dtype=dx.dtype)
        J = self.alpha * j_content + self.beta * j_style + self.tv_weight * j_tv
        self.last = {"content": j_content, "style": j_style, "tv": j_tv}
        return J, dx

    def flat(self) -> Callable[[Array], tuple[Array, Array]]:
        """``fun(x_flat) -> (J, grad_flat)``: the objective as the optimizers see it (1-D arrays)."""
        def fun(x_flat: Array) -> tuple[Array, Array]:
            J, g = self.value_and_grad(x_flat.reshape(self.shape))
            return J, g.reshape(-1)
        return fun


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
    ``stopped``: why the loop ended (``"iterations"``, ``"tolerance"``, ``"interrupted"``,
    ``"non-finite loss"``). ``seconds``: wall time of the optimisation.
    """

    image: np.ndarray
    history: dict
    iterations: int
    stopped: str
    seconds: float

    @property
    def J_final(self) -> float:
        return min(self.history["J"]) if self.history["J"] else float("nan")


def _load_rgb(img: Any, size: int | None, what: str, max_pixels: int | None) -> np.ndarray:
    from .image import load_image, resize_image
    if isinstance(img, (str, Path)):
        kw = {} if max_pixels is None else {"max_pixels": max_pixels}
        return load_image(img, size=size, **kw)
    arr = np.asarray(img)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise OptionError(f"{what} must be an image path or an (H, W, 3) RGB array, got shape {arr.shape}")
    if size is not None:
        arr = resize_image(arr, size)
    return arr


def _resize_rgb(rgb: np.ndarray, shape_hw: tuple[int, int]) -> np.ndarray:
    from .image import resize_to
    if tuple(rgb.shape[:2]) == tuple(shape_hw):
        return rgb
    return resize_to(rgb, shape_hw)


def _scaled(shape: tuple[int, ...], scale: float, min_side: int = 16) -> tuple[int, int]:
    """``(H, W) * scale``, rounded, enlarged as a whole (aspect kept) so the short side is >= min_side."""
    h, w = shape[0] * scale, shape[1] * scale
    grow = max(1.0, min_side / min(h, w))
    return int(round(h * grow)), int(round(w * grow))


def _pool_factor(model, names) -> int:
    """2^(number of pooling layers in front of the deepest of ``names``).

    Pooling drops a remainder row/column (floor mode), and the pixels under it then get no gradient
    from deeper layers: a visible stripe along the bottom/right edge. Working at a multiple of this
    factor avoids it; the result is resized back to the requested size at the end.
    """
    known = [model.layer_names.index(n) for n in names if n in model.layer_names]
    if not known:
        return 1
    return 2 ** sum(1 for n in model.layer_names[:max(known)] if n.endswith("_pool"))


def _round_to(hw: tuple[int, int], factor: int) -> tuple[int, int]:
    """Each side rounded to the nearest multiple of ``factor`` (at least ``factor``)."""
    return tuple(max(factor, int(round(v / factor)) * factor) for v in hw)  # type: ignore[return-value]


def _check_scales(scales: Sequence[float] | None) -> list[float]:
    if scales is None:
        return [1.0]
    out = [float(s) for s in scales]
    if not out or any(not (0 < s <= 1) for s in out) or out != sorted(out):
        raise OptionError(f"scales must be increasing numbers in (0, 1], got {list(scales)}")
    if out[-1] != 1.0:
        out.append(1.0)
    return out


def stylize(content: Any, style: Any, *, size: int | None = None,
            iterations: int = DEFAULT_ITERATIONS, optimizer: str = "lbfgs", lr: float | None = None,
            alpha: float = DEFAULT_ALPHA, beta: float = DEFAULT_BETA, tv_weight: float = DEFAULT_TV_WEIGHT,
            content_layer: str = DEFAULT_CONTENT_LAYER, style_layers: Mapping[str, float] | None = None,
            style_blend: Sequence[float] | None = None, style_scale: float = 1.0,
            init: Any = "content", seed: int | None = 0, preserve_color: bool = False,
            backend: str = "numpy", model=None, weights: str | Path | None = None, pooling: str = "max",
            tol: float | None = DEFAULT_TOL, callback: Callable[[Progress], Any] | None = None,
            scales: Sequence[float] | None = None, progress: bool = False,
            log_every: int | None = None, max_pixels: int | None = None) -> Result:
    """Stylize ``content`` with ``style``: minimise ``J(x)`` over the pixels ``x``.

    Args:
        content: path or uint8 ``(H, W, 3)`` RGB array. style: the same, or a list of them.
        size: longest side of the result in pixels (default: the content's own size).
        iterations: iteration cap per scale (an L-BFGS iteration is one function evaluation).
        optimizer: ``"lbfgs"`` (default), ``"adam"`` or ``"gd"`` (the textbook ``x := x - lr dJ/dx``).
        lr: step size for ``adam`` (default in :mod:`numpynst.optim`) or ``gd`` (default
            ``DEFAULT_GD_LR``, stable for the default weights).
        alpha, beta, tv_weight, content_layer, style_layers, style_blend: see :class:`Objective`.
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
            ``iterations`` iterations and its upsampled result initialises the next.
        progress: show a tqdm bar with the losses.
        log_every: host sync interval (default 1 on NumPy, 10 on CuPy; 0 = only at the end).
        max_pixels: refuse a content image with more pixels than this unless ``size`` is given
            (``None``: :data:`numpynst.image.DEFAULT_MAX_PIXELS`).
    Returns:
        :class:`Result`. Ctrl-C ends the loop early and still returns the best image so far
        (``stopped == "interrupted"``).
    """
    from .vgg import VGG, deprocess, preprocess
    from .optim import make_optimizer

    if not isinstance(iterations, int) or isinstance(iterations, bool) or iterations < 0:
        raise OptionError(f"iterations must be an integer >= 0, got {iterations!r}")
    if optimizer not in OPTIMIZERS:
        raise OptionError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or not 16 <= size <= 16384):
        raise OptionError(f"size must be an integer number of pixels in 16..16384, got {size!r}")
    if not (isinstance(style_scale, (int, float)) and 0.05 <= style_scale <= 8):
        raise OptionError(f"style_scale must be a number in 0.05..8, got {style_scale!r}")
    if tol is not None and not (isinstance(tol, (int, float)) and tol >= 0):
        raise OptionError(f"tol must be a number >= 0, got {tol!r}")
    scale_list = _check_scales(scales)

    if model is None:
        model = VGG.from_h5(weights, backend=backend, pooling=pooling)
    xp, dtype = model.xp, model.dtype
    if log_every is None:
        log_every = 1 if backend_name(xp) == "numpy" else 10

    content_rgb = _load_rgb(content, size, "content", max_pixels)
    styles = list(style) if isinstance(style, (list, tuple)) else [style]
    if not styles:
        raise OptionError("at least one style image is needed")
    style_side = max(16, int(round(max(content_rgb.shape[:2]) * style_scale)))
    style_rgbs = [_load_rgb(s, style_side, f"style #{i + 1}", max_pixels) for i, s in enumerate(styles)]
    if isinstance(init, str) and init not in INITS:
        init_rgb = _load_rgb(init, None, "init", max_pixels)      # a path
    elif not isinstance(init, str):
        init_rgb = _load_rgb(init, None, "init", max_pixels)      # an array
    else:
        init_rgb = None

    history: dict[str, list[float]] = {"J": [], "content": [], "style": [], "tv": []}
    rng = np.random.default_rng(seed)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=iterations * len(scale_list), unit="it", dynamic_ncols=True, leave=True)

    t0 = time.perf_counter()
    x_prev_rgb: np.ndarray | None = None
    best_x = None
    total_iters = 0
    stopped = "iterations"
    H, W = content_rgb.shape[:2]
    factor = _pool_factor(model, [content_layer, *(DEFAULT_STYLE_LAYERS if style_layers is None else style_layers)])
    try:
        for scale in scale_list:
            h, w = _round_to(_scaled(content_rgb.shape, scale), factor)
            c_rgb = _resize_rgb(content_rgb, (h, w))
            s_rgbs = [_resize_rgb(s, _scaled(s.shape, scale)) for s in style_rgbs]
            to_dev = lambda rgb: preprocess(rgb, dtype=dtype, xp=xp)  # noqa: E731
            obj = Objective(model, to_dev(c_rgb), [to_dev(s) for s in s_rgbs],
                            content_layer=content_layer, style_layers=style_layers,
                            alpha=alpha, beta=beta, tv_weight=tv_weight, style_blend=style_blend)
            if x_prev_rgb is not None:                      # coarse-to-fine: upsample the last result
                x = to_dev(_resize_rgb(x_prev_rgb, (h, w)))
            elif init_rgb is not None:
                x = to_dev(_resize_rgb(init_rgb, (h, w)))
            elif init == "content":
                x = to_dev(c_rgb)
            elif init == "style":
                x = to_dev(_resize_rgb(s_rgbs[0], (h, w)))
            else:                                            # noise around the mean image
                x = xp.asarray(rng.normal(0.0, 64.0, size=(1, h, w, 3)), dtype=dtype)
            x_flat = x.reshape(-1).copy()
            if lr is None and optimizer == "gd":
                lr = DEFAULT_GD_LR
            result = _optimize(obj, x_flat, make_optimizer(optimizer, **({} if lr is None else {"lr": lr})),
                               iterations, tol, log_every, history, callback, bar, scale)
            best_x, n_done, stopped = result
            total_iters += n_done
            x_prev_rgb = deprocess(best_x.reshape(obj.shape))
            if stopped in ("interrupted", "non-finite loss", "callback"):
                break
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    image = _resize_rgb(x_prev_rgb, (H, W))
    if preserve_color:
        from .image import preserve_color as _keep_colour
        image = _keep_colour(_resize_rgb(content_rgb, image.shape[:2]), image)
    return Result(image=image, history=history, iterations=total_iters, stopped=stopped, seconds=seconds)


def _optimize(obj: Objective, x: Array, opt, iterations: int, tol: float | None, log_every: int,
              history: dict, callback, bar, scale: float) -> tuple[Array, int, str]:
    """Run ``opt`` on ``obj`` from the flat ``x``; returns ``(best_x_flat, iterations_done, reason)``.

    The per-iteration losses go into a device buffer ``hist`` and reach the host only at logging
    points; the best image is kept on the device with ``where``, so a NaN (never ``<`` anything) can
    never replace it.
    """
    xp = obj.xp
    fun = obj.flat()
    hist = xp.empty((iterations + 1, 4), dtype=xp.float64)
    f, g = fun(x)

    def record(i: int, f_: Array) -> None:
        last = obj.last
        hist[i] = xp.stack([f_.astype(xp.float64), last["content"].astype(xp.float64),
                            last["style"].astype(xp.float64), last["tv"].astype(xp.float64)])

    record(0, f)
    best_x, best_f = x.copy(), f.copy()
    logged = 0          # rows of hist already copied to `history`
    reason = "iterations"
    done = 0

    def flush(upto: int) -> np.ndarray:
        nonlocal logged
        rows = to_host(hist[logged:upto + 1])      # the one device->host copy per logging point
        for row in rows:
            for key, v in zip(("J", "content", "style", "tv"), row):
                history[key].append(float(v))
        logged = upto + 1
        return rows

    try:
        for it in range(1, iterations + 1):
            x, f, g = opt.step(fun, x, f, g)
            record(it, f)
            improved = f < best_f                  # False for NaN: a non-finite J is never "best"
            best_f = xp.where(improved, f, best_f)
            best_x = xp.where(improved, x, best_x)
            done = it
            if log_every and (it % log_every == 0 or it == iterations):
                rows = flush(it)
                if not np.all(np.isfinite(rows[:, 0])):
                    reason = "non-finite loss"
                    break
                if bar is not None:
                    bar.update(len(rows))
                    bar.set_postfix(J=f"{rows[-1, 0]:.4g}", content=f"{rows[-1, 1]:.3g}",
                                    style=f"{rows[-1, 2]:.3g}", refresh=False)
                if callback is not None:
                    r = rows[-1]
                    if callback(Progress(it, float(r[0]), float(r[1]), float(r[2]), float(r[3]),
                                         x.reshape(obj.shape), scale)) is False:
                        reason = "callback"
                        break
                if tol and it >= TOL_WINDOW:
                    J = history["J"]
                    old, new = J[-TOL_WINDOW - 1], J[-1]
                    if old - new <= tol * abs(old):
                        reason = "tolerance"
                        break
    except KeyboardInterrupt:
        reason = "interrupted"
    if logged <= done:
        rows = flush(done)
        if reason == "iterations" and not np.all(np.isfinite(rows[:, 0])):
            reason = "non-finite loss"
    if reason == "non-finite loss" and not any(math.isfinite(v) for v in history["J"]):
        raise NumpynstError("the loss was not finite at the start (NaN/inf): check the weights and "
                            "the alpha/beta/tv_weight values")
    return best_x, done, reason
