"""The three style losses side by side (``--style-loss gram | mean-cov | swd``), on photos x paintings.

Three measurements, each its own sub-command:

``cost``
    one evaluation of ``J`` and ``dJ/dx`` per loss (the shipped VGG19, float32, default layers)
    at each ``--sizes``: seconds (wall and process CPU), median of ``--repeats``. What a style loss
    adds to VGG's forward and backward.
``float32``
    float32 against float64 (J, the style part, dJ/dx) for each loss at ``--size``.
``directions``
    ``swd``'s directions fixed (numpynst's choice: seeded once per layer) against re-drawn at every
    evaluation (a fresh seeded draw, the style's quantiles recomputed from its stored activations),
    on one pair, at equal evaluations, judged by a sliced Wasserstein gap measured on directions
    neither run used (issue 26's ``S_swd``: 64 other seeded directions per layer) and by the
    content distance ``C``.
``compare``
    every ``--pairs`` photo x painting, each loss at equal evaluations (L-BFGS, calibrated
    weights at their defaults, start from the photo): the content distance ``C`` and the style gap
    closed under Gram (``S_gram``) and under sliced Wasserstein (``S_swd``), the seconds per
    evaluation, and the results (PNG) for ``figure``.
``figure``
    one row per pair: photo, painting, the three results (from ``compare``'s files), to
    ``docs/images/style_losses.jpg``.

The picture metrics are issue 26's ``numpynst/metrics.py`` (``Judge``: ``C = ||F(x) - F(c)||^2 /
||F(c)||^2`` at block4_conv2; ``S = 1 - D(x, s) / D(c, s)`` with ``D`` the Gram distance per position
or the sliced Wasserstein distance on 64 seeded directions, block1..5_conv1), loaded from that
worktree's file for this script only (``--metrics PATH``) until it is merged. Each loss is judged
partly by its own yardstick: ``gram`` minimises a Gram distance, ``swd`` a sliced Wasserstein one
(on other directions than ``S_swd``'s), ``mean-cov`` neither (its statistics are the Gram's
``sum a a^T`` and the mean): read ``S_gram`` for gram and ``S_swd`` for swd with that in mind.

    python benchmarks/style_losses.py cost --sizes 256 512
    python benchmarks/style_losses.py float32 --size 96
    python benchmarks/style_losses.py directions --size 128 --evaluations 60 [--optimizer adam]
    python benchmarks/style_losses.py compare --size 256 --evaluations 100 [--beta 10 --losses mean-cov swd]
    python benchmarks/style_losses.py figure

Timings are disturbed by whatever else runs on the machine; nothing is asserted.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from numpynst.image import load_image, sample_path  # noqa: E402
from numpynst.losses import quantiles  # noqa: E402
from numpynst.objective import Objective  # noqa: E402
from numpynst.optim import make_optimizer, minimize  # noqa: E402
from numpynst.style_stats import STYLE_LOSSES, SwdStatistic  # noqa: E402
from numpynst.vgg import VGG, deprocess, preprocess  # noqa: E402

PAINTINGS = "/work/shared/paintings"
OUT = os.path.join(HERE, "results", "style_losses")
DEFAULT_PAIRS = ["chelsea:starry-night", "astronaut:wave_crop", "coffee:shipwreck"]


def photo(name: str) -> str:
    return str(sample_path(name))


def painting(name: str) -> str:
    for ext in (".jpg", ".png"):
        p = os.path.join(PAINTINGS, name + ext)
        if os.path.isfile(p):
            return p
    return str(sample_path(name))          # a bundled style sample


def load_metrics(path: str):
    """Issue 26's metrics module, loaded as ``numpynst.metrics`` from its file (its relative imports
    resolve against this checkout's package)."""
    spec = importlib.util.spec_from_file_location("numpynst.metrics", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["numpynst.metrics"] = module
    spec.loader.exec_module(module)
    return module


def pictures(pair: str, size: int):
    """``(photo RGB at size, painting RGB at the photo's longest side, names)`` as stylize sizes them."""
    p, s = pair.split(":")
    c = load_image(photo(p), size=size)
    return c, load_image(painting(s), size=max(c.shape[:2])), (p, s)


def run(model, c_rgb, s_rgb, loss: str, evaluations: int, redraw: bool = False, optimizer: str = "lbfgs",
        beta: float | None = None) -> dict:
    """``optimizer`` (L-BFGS; Adam at its default step) from the photo on the calibrated ``J`` of
    ``loss`` for ``evaluations`` evaluations:
    the result (RGB uint8), seconds (wall, process CPU) per evaluation, J at start and end."""
    c, s = (preprocess(a, dtype=model.dtype) for a in (c_rgb, s_rgb))
    obj = Objective(model, c, s, weights_mode="calibrated", style_loss=loss, beta=beta)
    if redraw:
        redrawn(obj, model, s)
    count = [0]
    fun = obj.flat(parts=True)

    def counted(x):
        count[0] += 1
        return fun(x)
    t0, p0 = time.perf_counter(), time.process_time()
    res = minimize(counted, c.reshape(-1), make_optimizer(optimizer), evaluations,
                   callback=lambda k, x, f, g: count[0] >= evaluations, log_every=0)
    wall, cpu = time.perf_counter() - t0, time.process_time() - p0
    image = np.rint(deprocess(res.best_x.reshape(c.shape))).astype(np.uint8)
    return {"image": image, "evaluations": count[0], "iterations": res.iterations,
            "wall_per_eval": wall / count[0], "cpu_per_eval": cpu / count[0],
            "J0": float(res.history[0, 0]), "J": float(np.min(res.history[:, 0]))}


class RedrawnSwd(SwdStatistic):
    """``swd`` with new directions at every evaluation: the style's quantiles are recomputed from
    its activations ``A_s`` (kept) on each draw (for the ``directions`` study only)."""

    def __init__(self, base: SwdStatistic, style_act: np.ndarray, seed: int):
        self.layer, self.K, self.V = base.layer, base.K, base.V
        self.A_s = style_act.reshape(-1, style_act.shape[-1])
        self.rng = np.random.default_rng(seed)

    def layer_cost(self, target, a):
        V = self.rng.standard_normal(self.V.shape)
        V /= np.linalg.norm(V, axis=0, keepdims=True)
        self.V = V.astype(self.V.dtype)
        Q = quantiles([self.A_s @ self.V], [1.0], a.shape[1] * a.shape[2]).astype(a.dtype)
        return super().layer_cost(Q, a)


def redrawn(obj, model, style) -> None:
    acts = model.forward(style, list(obj.style_layers), keep_cache=False)
    obj.statistics = {n: RedrawnSwd(st, acts[n], 1000 + i) for i, (n, st) in enumerate(obj.statistics.items())}


def judge_of(metrics_path: str, c_rgb, s_rgb):
    m = load_metrics(metrics_path)
    return m.Judge(c_rgb, s_rgb)


def cmd_cost(args) -> None:
    model = VGG.from_h5()
    rng = np.random.default_rng(0)
    rows = []
    for size in args.sizes:
        c_rgb, s_rgb, _ = pictures(args.pairs[0], size)
        c, s = (preprocess(a, dtype=model.dtype) for a in (c_rgb, s_rgb))
        x = c + np.asarray(rng.normal(0, 10, c.shape), dtype=c.dtype)
        for loss in STYLE_LOSSES:
            obj = Objective(model, c, s, weights_mode="calibrated", style_loss=loss)
            obj.value_and_grad(x)                                  # warm
            wall, cpu = [], []
            for _ in range(args.repeats):
                t0, p0 = time.perf_counter(), time.process_time()
                obj.value_and_grad(x)
                wall.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - p0)
            rows.append({"size": list(c.shape[1:3]), "loss": loss, "wall": statistics.median(wall),
                         "cpu": statistics.median(cpu)})
            print(f"{c.shape[1]}x{c.shape[2]:<5} {loss:9s} wall {rows[-1]['wall']:.3f} s  cpu {rows[-1]['cpu']:.3f} s")
    save_json(f"cost_{'_'.join(map(str, args.sizes))}.json", {"rows": rows, "repeats": args.repeats,
                                                             "load": os.getloadavg()})


def cmd_float32(args) -> None:
    """float32 against float64: J, the style part and dJ/dx of the calibrated objective of each
    loss at the photo plus noise (the shipped VGG19 in each dtype)."""
    from numpynst.gradcheck import rel_error
    c_rgb, s_rgb, _ = pictures(args.pairs[0], args.size)
    noise = np.random.default_rng(0).normal(0, 20, (1, *c_rgb.shape))
    out = {}
    for dt in (np.float64, np.float32):
        model = VGG.from_h5(dtype=dt)
        c, s = preprocess(c_rgb, dtype=dt), preprocess(s_rgb, dtype=dt)
        for loss in STYLE_LOSSES:
            obj = Objective(model, c, s, weights_mode="calibrated", style_loss=loss)
            J, g, p = obj.evaluate((c + noise).astype(dt))
            out[dt, loss] = (float(J), float(p["style"]), g)
    for loss in STYLE_LOSSES:
        (J, st, g), (J32, st32, g32) = out[np.float64, loss], out[np.float32, loss]
        print(f"{loss:9s} relative error of float32: J {abs(J32 - J) / abs(J):.1e}, style part "
              f"{abs(st32 - st) / abs(st):.1e}, dJ/dx {rel_error(g32, g):.1e}")


def cmd_directions(args) -> None:
    model = VGG.from_h5()
    c_rgb, s_rgb, names = pictures(args.pairs[0], args.size)
    judge = judge_of(args.metrics, c_rgb, s_rgb)
    out = {}
    for label, redraw in (("fixed", False), ("redrawn", True)):
        r = run(model, c_rgb, s_rgb, "swd", args.evaluations, redraw=redraw, optimizer=args.optimizer)
        m = judge(r.pop("image"))
        out[label] = {**r, "C": m.content, "S_gram": m.style_gram, "S_swd": m.style_swd}
        print(f"{args.optimizer} {label:8s} C {m.content:.3f}  S_gram {m.style_gram:.3f}  S_swd {m.style_swd:.3f}  "
              f"J {r['J0']:.4g} -> {r['J']:.4g}  ({r['evaluations']} evaluations, {r['iterations']} iterations)")
    save_json(f"directions_{args.optimizer}_{args.size}.json", {"pair": names, "size": args.size,
                                                                "optimizer": args.optimizer,
                                                                "evaluations": args.evaluations,
                                               "runs": out, "load": os.getloadavg()})


def cmd_compare(args) -> None:
    from PIL import Image
    model = VGG.from_h5()
    os.makedirs(OUT, exist_ok=True)
    tag = "" if args.beta is None else f"_beta{args.beta:g}"
    table = []
    for pair in args.pairs:
        c_rgb, s_rgb, names = pictures(pair, args.size)
        judge = judge_of(args.metrics, c_rgb, s_rgb)
        for loss in args.losses:
            r = run(model, c_rgb, s_rgb, loss, args.evaluations, beta=args.beta)
            image = r.pop("image")
            Image.fromarray(image).save(os.path.join(OUT, f"{names[0]}_{names[1]}_{loss}_{args.size}{tag}.png"))
            m = judge(image)
            table.append({"photo": names[0], "painting": names[1], "loss": loss, "beta": args.beta, **r,
                          "C": m.content, "S_gram": m.style_gram, "S_swd": m.style_swd})
            print(f"{names[0]:10s} {names[1]:13s} {loss:9s} C {m.content:.3f}  S_gram {m.style_gram:.3f}  "
                  f"S_swd {m.style_swd:.3f}  {r['wall_per_eval']:.2f} s/eval wall, {r['cpu_per_eval']:.2f} cpu "
                  f"({r['evaluations']} evaluations)", flush=True)
    save_json(f"compare_{args.size}{tag}.json", {"size": args.size, "evaluations": args.evaluations,
                                            "rows": table, "load": os.getloadavg()})


def cmd_figure(args) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image
    with open(os.path.join(HERE, "results", f"style_losses_compare_{args.size}.json")) as f:
        rows = json.load(f)["rows"]
    pairs = list(dict.fromkeys((r["photo"], r["painting"]) for r in rows))
    fig, axes = plt.subplots(len(pairs), 5, figsize=(15, 3.1 * len(pairs)), squeeze=False)
    for i, (p, s) in enumerate(pairs):
        c_rgb = load_image(photo(p), size=args.size)
        panels = [(c_rgb, f"photo: {p}"), (load_image(painting(s), size=max(c_rgb.shape[:2])), f"painting: {s}")]
        for loss in STYLE_LOSSES:
            r = next(r for r in rows if r["photo"] == p and r["painting"] == s and r["loss"] == loss)
            img = np.asarray(Image.open(os.path.join(OUT, f"{p}_{s}_{loss}_{args.size}.png")))
            panels.append((img, f"{loss}: C {r['C']:.2f}, S_gram {r['S_gram']:.2f}, S_swd {r['S_swd']:.2f}"))
        for ax, (img, title) in zip(axes[i], panels):
            ax.imshow(img)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    path = os.path.join(ROOT, "docs", "images", "style_losses.jpg")
    fig.savefig(path + ".tmp.jpg", dpi=72, pil_kwargs={"quality": 90})
    os.replace(path + ".tmp.jpg", path)
    print("wrote", path)


def save_json(name: str, data: dict) -> None:
    path = os.path.join(HERE, "results", f"style_losses_{name}")
    with open(path + ".tmp", "w") as f:
        json.dump(data, f, indent=1)
    os.replace(path + ".tmp", path)
    print("wrote", path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("cost", "float32", "directions", "compare", "figure"):
        p = sub.add_parser(name)
        p.add_argument("--pairs", nargs="+", default=DEFAULT_PAIRS, metavar="PHOTO:PAINTING")
        p.add_argument("--size", type=int, default=256)
        p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
        p.add_argument("--evaluations", type=int, default=100)
        p.add_argument("--repeats", type=int, default=3)
        p.add_argument("--optimizer", default="lbfgs", choices=("lbfgs", "adam"))
        p.add_argument("--beta", type=float, default=None, help="calibrated style weight (default 1)")
        p.add_argument("--losses", nargs="+", default=list(STYLE_LOSSES), choices=STYLE_LOSSES)
        p.add_argument("--metrics", default="/work/wt-26/numpynst/metrics.py",
                       help="issue 26's numpynst/metrics.py (until it is merged)")
    args = ap.parse_args()
    {"cost": cmd_cost, "float32": cmd_float32, "directions": cmd_directions, "compare": cmd_compare,
     "figure": cmd_figure}[args.cmd](args)


if __name__ == "__main__":
    main()
