"""Spatial control measured: two regions, two paintings, masks resized vs eroded; and the colour modes.

    nice -n 10 python benchmarks/masks.py [--size 256] [--iterations 50] [--out benchmarks/results/masks_256]

The bundled cat photo (``chelsea``) is cut into two regions at half its height: the top half is to
be painted like *The Starry Night* (van Gogh), the bottom like *The Shipwreck* (Turner), from
``/work/shared/paintings`` (``--paintings``). Five stylize runs at ``--size`` px (L-BFGS, calibrated
weights with style weight ``--style-weight``, the default layers, ``--iterations`` each; a run whose PNG is already in ``--out`` is not
run again):

* ``masked_resize``, ``masked_erode``: both paintings with ``--masks top bottom``, each mask mode;
* ``single_a``, ``single_b``: one painting over the whole photo (the reference for each region);
* ``match_a``: ``single_a`` with ``--color match`` (the colour figure: ``style`` is ``single_a``,
  ``keep`` is ``single_a`` with the photo's chroma, :func:`numpynst.image.preserve_color`).

Then it prints (and writes ``OUT/masks.json``):

1. **The style gap closed per region** (issue 26's ``numpynst.metrics``: ``S = 1 - D(x, s) / D(c, s)``
   with ``D`` a Gram (``S_gram``) or sliced-Wasserstein (``S_swd``) distance to a painting, every
   statistic weighted by the region's mask): in each region, towards its own painting and
   towards the other one, for the masked runs and the single-style runs; then again over each
   region's *core* (``CORE`` rows off the boundary), where the metric's own deep positions see
   less of the other region. If ``numpynst.metrics``
   is not importable, the file named by ``NUMPYNST_METRICS_FILE`` is loaded as it.
2. **The mixing band.** Strips of ``STRIP`` rows across the full width, every 2 rows: each strip's
   mean outer product of features at block1_conv1, block2_conv1 and block3_conv1 (the finest
   style layers, which carry the brush texture) is compared with each painting's,
   ``d_P = ||G_strip - G_P||^2 / ||G_P||^2`` (summed over the three layers), and
   ``t = d_A / (d_A + d_B)``: 0 where the strip looks like painting A only, 1 where like B. The
   band is where ``t`` climbs from 25% to 75% of the way between its medians in the top and
   bottom quarters of the picture; its width in pixels is set beside the receptive-field reach of
   the style layers (:func:`numpynst.arch.layer_table`). **Leakage**: the mean of ``t`` (top) or
   ``1 - t`` (bottom) over the ``NEAR`` rows next to the boundary, less its median far from it.
3. Figures (``--figures``, default ``docs/images``): ``masks_two_regions.jpg`` (photo, masks,
   paintings, the four results), ``masks_band.png`` (the ``t`` profiles) and ``color_modes.jpg``.
   ``--figures-only`` redraws them from the runs' PNGs without measuring the gaps again.

Timing is not the point here (the machine is shared); the figures are.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from numpynst.arch import layer_table  # noqa: E402
from numpynst.files import atomic_write  # noqa: E402
from numpynst.image import load_image, preserve_color, sample_path, save_image  # noqa: E402

STRIP = 16          # rows per strip of the band profile
NEAR = 24           # rows next to the boundary for the leakage figure
CORE = 32           # rows left out on each side of the boundary for the core figures (block4_conv1's reach: 30)
BAND_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1")


def metrics_module():
    """Issue 26's ``numpynst.metrics`` (or the file ``NUMPYNST_METRICS_FILE``, loaded as it)."""
    try:
        from numpynst import metrics
        return metrics
    except ImportError:
        path = os.environ.get("NUMPYNST_METRICS_FILE")
        if not path:
            raise SystemExit("numpynst.metrics is missing: set NUMPYNST_METRICS_FILE to issue 26's metrics.py")
        spec = importlib.util.spec_from_file_location("numpynst.metrics", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["numpynst.metrics"] = module
        spec.loader.exec_module(module)
        return module


def run_all(args, content, masks, paintings, out: Path, model) -> dict:
    from numpynst.transfer import stylize
    common = dict(size=args.size, iterations=args.iterations, model=model, seed=0, beta=args.style_weight)
    runs = {
        "masked_resize": ([paintings["a"], paintings["b"]], dict(masks=list(masks), mask_mode="resize")),
        "masked_erode": ([paintings["a"], paintings["b"]], dict(masks=list(masks), mask_mode="erode")),
        "single_a": (paintings["a"], {}),
        "single_b": (paintings["b"], {}),
        "match_a": (paintings["a"], dict(color="match")),
    }
    images, seconds = {}, {}
    for name, (styles, kw) in runs.items():
        path = out / f"{name}.png"
        if path.exists() and not args.rerun:
            images[name] = load_image(path)
            continue
        t0 = time.perf_counter()
        result = stylize(content, styles, **common, **kw)
        seconds[name] = round(time.perf_counter() - t0, 1)
        print(f"{name}: {result.iterations} iterations, {seconds[name]} s, stopped: {result.stopped}", flush=True)
        save_image(path, result.image, overwrite=True)
        images[name] = result.image
    return images, seconds


def gap_table(metrics, model, content, masks, paintings_rgb, images) -> dict:
    """``{run: {region: {painting: (S_gram, S_swd)}}}`` over each region's mask (``masks``: the
    regions', or their cores')."""
    table = {}
    judges = {(r, p): metrics.Judge(content, paintings_rgb[p], model, mask=masks[i])
              for i, r in enumerate(("top", "bottom")) for p in ("a", "b")}
    for run in ("masked_resize", "masked_erode", "single_a", "single_b"):
        table[run] = {}
        for r in ("top", "bottom"):
            table[run][r] = {}
            for p in ("a", "b"):
                m = judges[(r, p)](images[run])
                table[run][r][p] = (round(m.style_gram, 3), round(m.style_swd, 3))
    return table


def _mean_outer(a):
    A = a.reshape(-1, a.shape[-1]).astype(np.float64)
    return A.T @ A / len(A)


def band_profile(model, image, painting_a, painting_b) -> tuple[np.ndarray, np.ndarray]:
    """``(row centres, t)`` of the strips (module docstring, 2.)."""
    def feats(rgb):
        acts, _ = model.forward_tape(model.preprocess(rgb), list(BAND_LAYERS), keep=False)
        return acts
    ta, tb = ({n: _mean_outer(a) for n, a in feats(p).items()} for p in (painting_a, painting_b))
    acts = feats(image)
    H = image.shape[0]
    centres, ts = [], []
    for y0 in range(0, H - STRIP + 1, 2):
        da = db = 0.0
        for n in BAND_LAYERS:
            j = model.layer(n).spacing
            g = _mean_outer(acts[n][:, y0 // j:(y0 + STRIP) // j])
            da += float(np.sum((g - ta[n]) ** 2) / np.sum(ta[n] ** 2))
            db += float(np.sum((g - tb[n]) ** 2) / np.sum(tb[n] ** 2))
        centres.append(y0 + STRIP / 2)
        ts.append(da / (da + db))
    return np.asarray(centres), np.asarray(ts)


def band_width(y, t, boundary) -> dict:
    """The band where ``t`` goes from 25% to 75% of the way between its far-top and far-bottom
    medians, and the leakage on each side (module docstring)."""
    H = y[-1] + STRIP / 2
    top_far, bottom_far = np.median(t[y < H / 4]), np.median(t[y > 3 * H / 4])
    span = bottom_far - top_far
    u = (t - top_far) / span
    def crossing(level):            # first row (from the top) where u reaches the level, interpolated
        k = int(np.argmax(u >= level))
        if k == 0:
            return float(y[0])
        return float(y[k - 1] + (level - u[k - 1]) / (u[k] - u[k - 1]) * (y[k] - y[k - 1]))
    lo, hi = crossing(0.25), crossing(0.75)
    near_top = (y >= boundary - NEAR) & (y < boundary)
    near_bottom = (y >= boundary) & (y < boundary + NEAR)
    return {"width_px": round(hi - lo, 1), "from_px": round(lo, 1), "to_px": round(hi, 1),
            "contrast": round(float(span), 3),
            "leak_top": round(float(np.mean(u[near_top])), 3),
            "leak_bottom": round(float(np.mean(1 - u[near_bottom])), 3)}


def figures(args, content, masks, paintings_rgb, images, profiles, boundary, layers_reach) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from numpynst.plots import save_figure
    fig_dir = Path(args.figures)
    fig_dir.mkdir(parents=True, exist_ok=True)
    names = [("photo", content), ("mask: top", masks[0]), ("mask: bottom", masks[1]),
             ("painting A (top)", paintings_rgb["a"]), ("painting B (bottom)", paintings_rgb["b"]),
             ("A over all of it", images["single_a"]), ("B over all of it", images["single_b"]),
             ("masks, resized", images["masked_resize"]), ("masks, eroded", images["masked_erode"])]
    fig, axes = plt.subplots(2, 5, figsize=(15, 4.8))
    for ax, (title, im) in zip(axes.flat, names):
        ax.imshow(im, cmap="gray", vmin=0, vmax=1) if im.ndim == 2 else ax.imshow(im)
        ax.set_title(title, fontsize=10)
    axes.flat[-1].axis("off")
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    save_figure(fig, fig_dir / "masks_two_regions.jpg", format="jpeg")

    fig, ax = plt.subplots(figsize=(7, 3.6))
    for name, (y, t) in profiles.items():
        ax.plot(y, t, label=name.replace("_", ", "))
    ax.axvline(boundary, color="k", lw=0.8, ls="--")
    for n in ("block3_conv1", "block4_conv1", "block5_conv1"):
        ax.axvspan(boundary - layers_reach[n], boundary + layers_reach[n], color="grey", alpha=0.08)
    ax.set_xlabel("row (px); dashed: the masks' boundary; shaded: +- reach of block3/4/5_conv1")
    ax.set_ylabel("t = d_A / (d_A + d_B)")
    ax.set_title("Which painting each strip resembles (0: A, top; 1: B, bottom)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, fig_dir / "masks_band.png")

    keep = preserve_color(content, images["single_a"])
    from numpynst.image import match_color
    matched = match_color(paintings_rgb["a"], content)
    row = [("photo", content), ("painting", paintings_rgb["a"]), ("painting, colours matched", matched),
           ("--color style", images["single_a"]), ("--color keep", keep), ("--color match", images["match_a"])]
    fig, axes = plt.subplots(1, 6, figsize=(18, 2.9))
    for ax, (title, im) in zip(axes, row):
        ax.imshow(im)
        ax.set_title(title, fontsize=10)
        ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    save_figure(fig, fig_dir / "color_modes.jpg", format="jpeg")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--iterations", type=int, default=50)
    p.add_argument("--style-weight", type=float, default=5.0,
                   help="calibrated style weight of every run (default 5: the regions' styles visible in 50 iterations)")
    p.add_argument("--paintings", default="/work/shared/paintings")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "masks_256"))
    p.add_argument("--figures", default=str(ROOT / "docs" / "images"))
    p.add_argument("--rerun", action="store_true", help="run every stylize again even if its PNG exists")
    p.add_argument("--figures-only", action="store_true", help="only redraw the figures from the runs' PNGs")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from numpynst.vgg import VGG
    model = VGG.from_h5()
    content = load_image(sample_path("chelsea"), size=args.size)
    H, W = content.shape[:2]
    boundary = H // 2
    top = np.zeros((H, W), np.float32)
    top[:boundary] = 1.0
    masks = np.stack([top, 1.0 - top])
    paintings = {"a": os.path.join(args.paintings, "starry-night.jpg"),
                 "b": os.path.join(args.paintings, "shipwreck.jpg")}
    paintings_rgb = {k: load_image(v, size=args.size) for k, v in paintings.items()}

    images, seconds = run_all(args, content, masks, paintings, out, model)
    reach = {layer.name: layer.reach for layer in layer_table("vgg19")}
    if args.figures_only:
        profiles = {run: band_profile(model, images[run], paintings_rgb["a"], paintings_rgb["b"])
                    for run in ("masked_resize", "masked_erode", "single_a", "single_b")}
        figures(args, content, masks, paintings_rgb, images, profiles, boundary, reach)
        return 0
    metrics = metrics_module()
    gaps = gap_table(metrics, model, content, masks, paintings_rgb, images)
    core = masks.copy()                 # each region less CORE rows along the boundary
    core[0, boundary - CORE:] = 0.0
    core[1, :boundary + CORE] = 0.0
    core_gaps = gap_table(metrics, model, content, core, paintings_rgb, images)
    table = {n: (layer.reach, layer.spacing + 2 * layer.reach) for n in
             ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1")
             for layer in layer_table("vgg19") if layer.name == n}
    profiles = {run: band_profile(model, images[run], paintings_rgb["a"], paintings_rgb["b"])
                for run in ("masked_resize", "masked_erode", "single_a", "single_b")}
    bands = {run: band_width(*profiles[run], boundary) for run in ("masked_resize", "masked_erode")}

    print(f"\n{W}x{H} px, boundary at row {boundary}, {args.iterations} L-BFGS iterations per run, "
          f"style weight {args.style_weight:g}")
    for title, table_ in (("each region", gaps), (f"each region's core (more than {CORE} px from the boundary)",
                                                   core_gaps)):
        print(f"\nstyle gap closed over {title} (S_gram / S_swd), towards painting A (Starry Night) and B (Shipwreck)")
        print(f"{'run':<15} {'top->A':>13} {'top->B':>13} {'bottom->B':>13} {'bottom->A':>13}")
        for run, g in table_.items():
            cell = lambda v: f"{v[0]:.3f}/{v[1]:.3f}"   # noqa: E731
            print(f"{run:<15} {cell(g['top']['a']):>13} {cell(g['top']['b']):>13} "
                  f"{cell(g['bottom']['b']):>13} {cell(g['bottom']['a']):>13}")
    print("\nreceptive-field reach a (px, each side) and field j + 2a of the style layers:")
    print("  " + ", ".join(f"{n} a={a} ({f})" for n, (a, f) in table.items()))
    print("\nmixing band (t from 25% to 75%) and leakage within", NEAR, "rows of the boundary:")
    for run, b in bands.items():
        print(f"  {run:<14} width {b['width_px']:5.1f} px (rows {b['from_px']}..{b['to_px']}), "
              f"contrast {b['contrast']}, leak top {b['leak_top']:+.3f}, leak bottom {b['leak_bottom']:+.3f}")
    record = {"size": [W, H], "boundary": boundary, "iterations": args.iterations,
              "style_weight": args.style_weight, "seconds": seconds,
              "gaps": gaps, "core_gaps": core_gaps, "core_px": CORE, "reach": table, "bands": bands,
              "profiles": {k: [v[0].tolist(), [round(float(t), 4) for t in v[1]]] for k, v in profiles.items()}}
    text = json.dumps(record, indent=1) + "\n"
    atomic_write(out / "masks.json", lambda tmp: tmp.write_text(text))
    figures(args, content, masks, paintings_rgb, images, profiles, boundary, reach)
    print(f"\nwrote {out / 'masks.json'} and the figures in {args.figures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
