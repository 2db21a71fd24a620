"""The memory planner: whole image or tiles (and how big) for a memory budget; what ``--dry-run`` prints.

**The model of the peak.** One iteration holds, for an ``H x W`` image with ``b`` bytes per float
and ``n = 3 H W`` pixels' values, bytes::

    peak = MODEL + max(eval, update)
    eval   = v_eval n b + targets + work(crop)       (inside value_and_grad)
    update = v_update n b + targets                   (inside the optimizer's step, after it)
    work(crop) = TAPE x act(crop) + 2 x n_crop b      (the tape of one crop, its dJ/dx and input)

* ``act(crop)``: the floats of every layer's output up to the deepest layer used, for a crop of
  ``h x w`` pixels (``sum_l (h // s_l) (w // s_l) C_l``, exact from the model); the whole image is
  one crop. ``TAPE`` (measured, below) counts what the forward keeps for the backward pass (the
  outputs, pooling's arg-max) and the backward's transients (the seeded gradients, ``dx`` of a layer).
* ``targets``: the content target (one activation of the content layer at the image's size) and
  the Gram matrices.
* ``v_eval``, ``v_update``: image-sized vectors of :func:`numpynst.optim.minimize` and the
  optimizer (:func:`optimizer_vectors`): L-BFGS with ``m`` pairs keeps ``S`` and ``Y`` (``2m``)
  and builds their shifted copies when it pushes a pair (``4m`` for a moment).
* ``MODEL``: the weights and the libraries' buffers (``MODEL_FACTOR x`` the weights' bytes), the
  cached Winograd transforms of the layers used (exact: :func:`winograd_bytes`, which asks the
  convolution's dispatch table what each layer runs at the crop's size), and the convolutions'
  scratch, ``SCRATCH`` per worker thread (:func:`numpynst.layers.fast.parallel.workers`).

``TAPE = 1.6`` and ``MODEL_FACTOR = 2.0`` are fitted to peak RSS measured on this project's 2-core
machine (building the objective and one ``value_and_grad`` minus the RSS after import);
tests/test_plan.py checks the estimate against measured peaks, whole and tiled (within 25%).
Measured figures: benchmarks/README.md, "Print size", "The planner's constants".

**Time.** ``seconds = FLOPs / THROUGHPUT``: the 3x3 convolutions' ``2 * 9 Cin Cout`` per position,
forward and backward (``dx`` only, as much again); a tiled evaluation runs a second forward over
every crop but the last (:mod:`numpynst.tiled`, "Cost"). ``THROUGHPUT`` is a measured figure per
backend (this project's 2-core CPU; an H200), printed with the estimate: other machines differ.

**A run's time.** One scale costs its targets (a forward over the content and over each style
image) and ``iterations + 1`` evaluations (the start, then one per step: every optimizer here
evaluates ``J`` once per iteration, L-BFGS's trial included): :func:`scale_seconds`. The plan line
(:func:`numpynst.transfer.Prepared.plan_line`) says the sum before the run starts; the run
corrects it from the clock after its first logged iteration.

**Choosing tiles.** When the whole image does not fit the budget, try ``ny x nx`` tilings (interior
sides rounded up to the pooling grid, at least the halo) and keep the fastest one that fits:
fewer, bigger tiles waste less on halos and second forwards.
"""

from __future__ import annotations

import math
import re
from typing import Any, NamedTuple, Sequence

import numpy as np

from .backend import backend_name
from .layers.fast import dispatch, parallel
from .errors import OptionError
from .optim import DEFAULT_LBFGS_HISTORY
from .tiled import halo_for

TAPE = 1.6
MODEL_FACTOR = 2.0
SCRATCH = 25 * 2 ** 20       # bytes of convolution scratch per worker thread (benchmarks/README.md)
DEFAULT_SHARE = 0.5          # of MemAvailable (or the GPU's free memory): others need the rest
# FLOP/s, measured (benchmarks/README.md), printed with the estimate. CuPy: stylize on an H200 at
# 2048 and 4096 px whole and 8192 px in 2 tiles ran 21.6, 21.5 and 20.3 TFLOP/s of this count.
THROUGHPUT = {"numpy": 150e9, "cupy": 21e12}
THROUGHPUT_WHERE = {"numpy": ("150 GFLOP/s", "this project's 2-core CPU"),
                    "cupy": ("21 TFLOP/s fp32", "measured on an NVIDIA H200")}
THROUGHPUT_NOTE = {k: f"{rate}, {where} (benchmarks/README.md)" for k, (rate, where) in THROUGHPUT_WHERE.items()}
MAX_TILES_PER_SIDE = 64
#: Estimated seconds above which the plan line says what would make the run faster.
SLOW_SECONDS = 600.0

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_memory(text: Any, option: str = "--max-memory") -> int:
    """``"4GB"``, ``"3.5 GiB"``, ``"800MB"``, ``4e9`` -> bytes; :class:`OptionError` naming ``option``."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value, unit = float(text), ""
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
        if m is None or m.group(2).lower() not in _UNITS:
            raise OptionError(f"{option} {text!r}: give a size such as 4GB, 3.5GiB or 800MB")
        value, unit = float(m.group(1)), m.group(2).lower()
    nbytes = value * _UNITS[unit]
    if not (math.isfinite(nbytes) and nbytes >= 1):
        raise OptionError(f"{option} {text!r}: must be a positive size such as 4GB")
    return int(nbytes)


def format_bytes(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def available_memory(xp) -> int:
    """Bytes free for this run: MemAvailable of /proc/meminfo, or the GPU's free memory on CuPy."""
    if backend_name(xp) == "cupy":
        return int(xp.cuda.runtime.memGetInfo()[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import os
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def default_budget(xp) -> int:
    """The default ``max_memory``: :data:`DEFAULT_SHARE` of :func:`available_memory`."""
    return int(available_memory(xp) * DEFAULT_SHARE)


# ---------------------------------------------------------------------------- sizes of the work
def activation_floats(model, names: Sequence[str], hw: tuple[int, int]) -> int:
    """Floats of all layer outputs up to the deepest of ``names`` for an ``hw`` input (floor mode)."""
    return sum((hw[0] // layer.spacing) * (hw[1] // layer.spacing) * layer.channels
               for layer in model.up_to(names))


def forward_flops(model, names: Sequence[str], hw: tuple[int, int]) -> float:
    """FLOPs of the 3x3 convolutions of one forward over an ``hw`` input: ``2 * 9 Cin Cout`` per position."""
    return _sum_over_crops(model, names, [hw[0]], [hw[1]])


def optimizer_vectors(optimizer: str | None, history: int = DEFAULT_LBFGS_HISTORY) -> tuple[int, int]:
    """Image-sized vectors alive ``(during an evaluation, at the optimizer's update)``.

    minimize keeps ``x``, its gradient, the best point and the objective's fresh ``dJ/dx`` (4);
    gd adds its trial point; Adam its two moments and the trial; L-BFGS ``S``, ``Y``, the direction
    and the trial, and at the update the shifted copies of ``S`` and ``Y`` and ``s``, ``y``.
    ``None``: one evaluation and nothing else (the content and style images, ``x`` and ``dJ/dx``).
    """
    if optimizer is None:
        return 4, 0
    if optimizer == "lbfgs":
        return 2 * history + 7, 4 * history + 8
    return {"adam": (7, 8), "gd": (5, 6)}[optimizer]


class ScalePlan(NamedTuple):
    """How one scale runs: ``tile`` is ``None`` (whole image) or the interior ``(h, w)``."""

    scale: float
    hw: tuple[int, int]
    tile: tuple[int, int] | None
    tiles: int
    halo: int
    overhead: float            # pixels run through VGG per evaluation / image pixels
    peak: int                  # estimated bytes
    seconds: float             # estimated seconds per iteration


def _extents(side: int, tile: int, halo: int) -> list[int]:
    """Crop lengths along one axis of a ``side``-pixel image cut every ``tile`` pixels, with ``halo``."""
    return [min(side, y0 + tile + halo) - max(0, y0 - halo) for y0 in range(0, side, tile)]


def estimate(model, names: Sequence[str], content_layer: str, hw: tuple[int, int],
             tile: tuple[int, int] | None, optimizer: str | None = "lbfgs", scale: float = 1.0) -> ScalePlan:
    """:class:`ScalePlan` for one scale: the peak and time models of the module docstring.

    The crops of a tiling are the products of the crop lengths along each axis, so sums over all
    crops factor into per-axis sums (``sum_y sum_x (h_y // s)(w_x // s) = (sum_y h_y // s)(sum_x w_x // s)``):
    planning a 4096 px image over thousands of candidate tilings stays instant.
    """
    b = np.dtype(model.dtype).itemsize
    bi = np.dtype(getattr(model, "image_dtype", model.dtype)).itemsize    # image, losses, optimiser
    n = 3 * hw[0] * hw[1]
    halo = 0 if tile is None else halo_for(model, names)
    ys = [hw[0]] if tile is None else _extents(hw[0], tile[0], halo)
    xs = [hw[1]] if tile is None else _extents(hw[1], tile[1], halo)
    biggest, last = (max(ys), max(xs)), (ys[-1], xs[-1])
    rows = {layer.name: layer for layer in model.up_to(names)}
    content = rows[content_layer]
    targets = (hw[0] // content.spacing) * (hw[1] // content.spacing) * content.channels * bi
    targets += sum(rows[m].channels ** 2 * bi for m in names if m != content_layer)
    work = TAPE * activation_floats(model, names, biggest) * b + 2 * 3 * biggest[0] * biggest[1] * bi
    if bi != b:         # a float16 network: the losses read float32 copies of the layers they use
        work += sum((biggest[0] // rows[m].spacing) * (biggest[1] // rows[m].spacing) * rows[m].channels * bi
                    for m in dict.fromkeys([content_layer, *names]))
    v_eval, v_update = optimizer_vectors(optimizer)
    weights = sum(w.nbytes + bias.nbytes for w, bias in model.params.values())
    threads = parallel.workers() if backend_name(model.xp) == "numpy" else 1
    fixed = MODEL_FACTOR * weights + winograd_bytes(model, names, biggest) + SCRATCH * threads
    peak = fixed + max(v_eval * n * bi + targets + work, v_update * n * bi + targets)
    flops = _sum_over_crops(model, names, ys, xs)
    total = 2 * flops + (flops - forward_flops(model, names, last) if tile is not None else 0.0)
    return ScalePlan(scale, tuple(hw), None if tile is None else tuple(tile), len(ys) * len(xs), halo,
                     sum(ys) * sum(xs) / (hw[0] * hw[1]), int(peak),
                     total / THROUGHPUT[backend_name(model.xp)])


def winograd_bytes(model, names: Sequence[str], crop: tuple[int, int]) -> int:
    """Bytes of the Winograd weight transforms the convolutions cache for a forward/backward over
    an ``h x w`` crop up to the deepest of ``names``: 36/9 of a layer's weights where the dispatch
    table picks F(4x4,3x3), 16/9 where it picks F(2x2,3x3), none for im2col (on a GPU: as its
    configured method)."""
    total = 0
    for layer in model.up_to(names):
        wt = model.params[layer.name][0] if layer.kind == "conv" else None
        if wt is None or tuple(wt.shape[:2]) != (3, 3):
            continue
        positions = (crop[0] // layer.spacing) * (crop[1] // layer.spacing)
        method = dispatch.forward_method(wt, 1, 1, "auto", positions)
        total += {"winograd4": 4.0, "winograd": 16 / 9}.get(method, 0.0) * wt.nbytes
    return int(total)


def _sum_over_crops(model, names: Sequence[str], ys: Sequence[int], xs: Sequence[int]) -> float:
    """:func:`forward_flops` summed over every crop ``(y, x)`` of ``ys x xs`` (per-axis sums)."""
    total, cin = 0.0, 3
    for layer in model.up_to(names):
        if layer.kind == "conv":
            s, c = layer.spacing, layer.channels
            total += 2 * 9 * cin * c * sum(y // s for y in ys) * sum(x // s for x in xs)
            cin = c
    return total


def scale_seconds(model, names: Sequence[str], plan: ScalePlan, iterations: int,
                  target_hws: Sequence[tuple[int, int]]) -> float:
    """Estimated seconds of one scale run as ``plan`` says: a forward over each picture of
    ``target_hws`` (the content and the styles at this scale: their targets), then ``iterations + 1``
    evaluations of ``plan.seconds`` each (module docstring, "A run's time")."""
    forward = sum(forward_flops(model, names, hw) for hw in target_hws)
    return forward / THROUGHPUT[backend_name(model.xp)] + (iterations + 1) * plan.seconds


def format_duration(seconds: float) -> str:
    """``"40 s"``, ``"9 min"``, ``"2.5 h"``: an estimate's precision, no more."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def smallest_tile(model, names: Sequence[str]) -> int:
    """The smallest valid tile side: the halo (at least one pooling cell)."""
    return max(halo_for(model, names), model.pool_factor(names))


def check_tile(model, names: Sequence[str], tile: int) -> int:
    """``tile`` if it is a multiple of the pooling grid and at least the halo, else :class:`OptionError`."""
    factor, low = model.pool_factor(names), smallest_tile(model, names)
    deepest = model.deepest(names).name
    if isinstance(tile, bool) or not isinstance(tile, (int, np.integer)) or tile % factor or tile < low:
        near = max(low, factor * math.ceil(tile / factor)) if isinstance(tile, (int, np.integer)) else low
        raise OptionError(f"--tile {tile}: must be a multiple of {factor} (the pooling grid of {deepest}) "
                          f"and at least the halo {low}; the smallest valid value is {low}"
                          + (f", the nearest {near}" if near != low else ""))
    return int(tile)


def choose(model, names: Sequence[str], content_layer: str, hw: tuple[int, int], budget: int,
           optimizer: str | None = "lbfgs", tile: int | None = None, scale: float = 1.0,
           label: str | None = None) -> ScalePlan:
    """The plan for one scale: ``tile`` forces tiles of at most that side; otherwise the whole
    image if it fits ``budget``, else the fastest tiling that fits.

    Raises :class:`OptionError` naming ``--max-memory`` (as ``label`` gives it) and the smallest
    budget that works when even the smallest tiles do not fit.
    """
    if tile is not None:
        side = check_tile(model, names, tile)
        return estimate(model, names, content_layer, hw, (min(side, _up(hw[0], model, names)),
                                                          min(side, _up(hw[1], model, names))), optimizer, scale)
    whole = estimate(model, names, content_layer, hw, None, optimizer, scale)
    if whole.peak <= budget:
        return whole
    factor, low = model.pool_factor(names), smallest_tile(model, names)
    best = None
    for ny in range(1, min(MAX_TILES_PER_SIDE, math.ceil(hw[0] / low)) + 1):
        for nx in range(1, min(MAX_TILES_PER_SIDE, math.ceil(hw[1] / low)) + 1):
            th = max(low, factor * math.ceil(hw[0] / ny / factor))
            tw = max(low, factor * math.ceil(hw[1] / nx / factor))
            p = estimate(model, names, content_layer, hw, (th, tw), optimizer, scale)
            if p.peak <= budget and (best is None or p.seconds < best.seconds):
                best = p
    if best is None:
        need = estimate(model, names, content_layer, hw, (low, low), optimizer, scale).peak
        raise OptionError(f"--max-memory {label or format_bytes(budget)} is too small for {hw[1]}x{hw[0]} px even "
                          f"with the smallest tiles ({low} px): the smallest value that works is about "
                          f"{math.ceil(need / 1e8) / 10:g}GB")
    return best


def _up(side: int, model, names) -> int:
    """``side`` rounded up to the pooling grid: a tile side that covers it."""
    f = model.pool_factor(names)
    return f * math.ceil(side / f)


def resolve_budget(max_memory: Any, xp) -> tuple[int, str]:
    """``(bytes, where it came from)`` for a ``max_memory`` option (``None``: :func:`default_budget`)."""
    if max_memory is None:
        where = "the GPU's free memory" if backend_name(xp) == "cupy" else "MemAvailable"
        return default_budget(xp), f"default: {DEFAULT_SHARE:.0%} of {where}"
    return parse_memory(max_memory), "--max-memory"


def plan_stylize(model, content_hw: tuple[int, int], scales: Sequence[float], content_layer: str,
                 style_layers: Sequence[str], optimizer: str = "lbfgs", tile: int | None = None,
                 max_memory: Any = None) -> tuple[dict[float, ScalePlan], int, str]:
    """``({scale: ScalePlan}, budget bytes, budget source)`` for :func:`numpynst.transfer.stylize`.

    Every scale is planned before anything runs, so a budget too small for the last scale stops
    the run at once (:class:`OptionError`) rather than after the coarse scales.
    """
    from .image import grid_shapes
    names = list(dict.fromkeys([content_layer, *style_layers]))
    budget, source = resolve_budget(max_memory, model.xp)
    label = f"{max_memory}" if max_memory is not None else f"{format_bytes(budget)} ({source})"
    shapes = grid_shapes(content_hw, scales, model.up_to(names)[-1].pool_factor)   # the pooling grid
    plans = {s: choose(model, names, content_layer, hw, budget, optimizer, tile, s, label)
             for s, hw in zip(scales, shapes)}
    return plans, budget, source


def describe(plans: Sequence[ScalePlan], budget: int, model, optimizer: str, budget_source: str) -> str:
    """The ``--dry-run`` report: one line per scale."""
    xp_name = backend_name(model.xp)
    lines = [f"plan: {model.arch.upper()} {np.dtype(model.dtype).name} on {xp_name}, optimizer {optimizer}, "
             f"memory budget {format_bytes(budget)} ({budget_source})",
             f"{'scale':>6} {'size':>11} {'mode':>18} {'tiles':>5} {'halo':>5} {'pixels run':>10} "
             f"{'peak (est.)':>12} {'s/iter (est.)':>13}"]
    for p in plans:
        mode = "whole image" if p.tile is None else f"tiles {p.tile[1]}x{p.tile[0]}"
        lines.append(f"{p.scale:>6g} {f'{p.hw[1]}x{p.hw[0]}':>11} {mode:>18} {p.tiles:>5} {p.halo:>5} "
                     f"{p.overhead:>9.2f}x {format_bytes(p.peak):>12} {p.seconds:>13.3g}")
    lines.append(f"time assumes {THROUGHPUT_NOTE[xp_name]}; 'pixels run' counts halos and is 1.00x for "
                 f"the whole image; nothing was run or written (--dry-run)")
    return "\n".join(lines)
