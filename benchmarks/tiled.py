"""Print size: exact tiles (numpynst.tiled) and the memory planner (numpynst.plan), in printed figures.

    python benchmarks/tiled.py exact                 # tiled vs whole value_and_grad, float64 and float32
    python benchmarks/tiled.py memory --size 2048    # peak RSS of one value_and_grad, planner's choice
    python benchmarks/tiled.py overhead --size 1024  # s/evaluation tiled vs whole, interleaved
    python benchmarks/tiled.py picture --size 4096   # a print-size picture, coarse to fine
    python benchmarks/tiled.py recipe --size 4096 --scales 0.125 0.25 0.5 1   # the planner's figures

Each measurement of peak memory runs in a fresh subprocess and reports ``ru_maxrss`` (the peak
resident set of the process) beside the RSS after the imports, so one run's peak does not hide the
next. Figures go to stdout and, with ``--json``, to a file; benchmarks/README.md ("Print size")
quotes them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def rss() -> int:
    """Peak resident set of this process so far, bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (all its threads), seconds."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class LoadSampler:
    """The machine's 1-minute load average, sampled every ``every`` s in a daemon thread while a
    measurement runs: times measured on a shared machine are reported beside how busy it was."""

    def __init__(self, every: float = 15.0):
        self.samples = [os.getloadavg()[0]]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)
        self._thread.start()

    def _run(self, every: float) -> None:
        while not self._stop.wait(every):
            self.samples.append(os.getloadavg()[0])

    def stop(self) -> dict:
        self._stop.set()
        self.samples.append(os.getloadavg()[0])
        a = np.asarray(self.samples)
        return dict(load_min=float(a.min()), load_median=float(np.median(a)), load_max=float(a.max()),
                    load_samples=len(a))

    @staticmethod
    def text(d: dict) -> str:
        return f"load average (1 min) {d['load_min']:.1f} .. {d['load_max']:.1f}, median {d['load_median']:.1f}"


# ---------------------------------------------------------------------------- exact
def exact(args) -> dict:
    """Relative error of tiled vs whole ``(J, dJ/dx)``: tiny VGG (several cases) and VGG19."""
    from numpynst.gradcheck import rel_error
    from numpynst.testing import tiny_vgg
    from numpynst.tiled import TiledObjective
    from numpynst.transfer import Objective
    from numpynst.vgg import VGG
    rng = np.random.default_rng(0)
    rows = []
    cases = [("tiny", "max", "block3_conv2", ("block1_conv1", "block2_conv2", "block4_conv1"), (53, 70), 16),
             ("tiny", "avg", "block4_conv2", ("block1_conv1", "block5_conv1"), (67, 45), 32),
             ("vgg19", "max", "block4_conv2", ("block1_conv1", "block3_conv1", "block5_conv1"), (150, 113), 80)]
    for net, pooling, c_layer, s_layers, hw, tile in cases:
        for dtype in (np.float64, np.float32):
            model = (tiny_vgg(pooling=pooling, dtype=dtype) if net == "tiny"
                     else VGG.from_h5(pooling=pooling, dtype=dtype))
            c, s, x = (rng.normal(0, 50, (1, *hw, 3)).astype(dtype) for _ in range(3))
            kw = dict(content_layer=c_layer, style_layers={n: 1.0 / len(s_layers) for n in s_layers},
                      weights_mode="calibrated")
            J0, g0 = Objective(model, c, s, **kw).value_and_grad(x)
            t = TiledObjective(model, c, s, tile=tile, **kw)
            J1, g1 = t.value_and_grad(x)
            rows.append(dict(net=net, pooling=pooling, dtype=np.dtype(dtype).name, size=f"{hw[1]}x{hw[0]}",
                             tile=tile, halo=t.halo, tiles=len(t.tiles), deepest=s_layers[-1],
                             err_J=float(rel_error(J0, J1)), err_grad=float(rel_error(g0, g1))))
            print(rows[-1], flush=True)
    return {"exact": rows}


# ---------------------------------------------------------------------------- memory
MEMORY_SCRIPT = r"""
import json, resource, sys, time
import numpy as np
def rss(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
import numpynst
from numpynst.plan import estimate, choose, resolve_budget
from numpynst.tiled import TiledObjective
from numpynst.transfer import Objective, DEFAULT_CONTENT_LAYER, DEFAULT_STYLE_LAYERS
from numpynst.vgg import VGG
base = rss()
size, tile, budget, dtype = json.loads(sys.argv[1])
model = VGG.from_h5(dtype=dtype)
names = [DEFAULT_CONTENT_LAYER, *DEFAULT_STYLE_LAYERS]
hw = (size, size)
plan = (choose(model, names, DEFAULT_CONTENT_LAYER, hw, budget, None) if tile is None and budget
        else estimate(model, names, DEFAULT_CONTENT_LAYER, hw, None if not tile else (tile, tile), None))
rng = np.random.default_rng(0)
c, s = (rng.normal(0, 50, (1, size, size, 3)).astype(dtype) for _ in range(2))
obj = (Objective(model, c, s) if plan.tile is None else TiledObjective(model, c, s, tile=plan.tile))
built = rss()
t = time.perf_counter()
J, g = obj.value_and_grad(c)
seconds = time.perf_counter() - t
print(json.dumps(dict(size=size, tile=plan.tile, tiles=plan.tiles, halo=plan.halo, estimate=plan.peak,
                      base=base, construction=built - base, peak=rss() - base, seconds=seconds,
                      J=float(J))))
"""


def measure(size: int, tile: int | None = None, budget: int | None = None, dtype: str = "float32") -> dict:
    """Peak RSS (minus the RSS after import) of building the objective and one value_and_grad of a
    ``size``-px square, in a fresh process: whole (``tile=0``), forced tiles, or the planner's
    choice for ``budget`` bytes. Also the planner's estimate for the same run (no optimizer)."""
    out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, json.dumps([size, tile, budget, dtype])],
                         capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def memory(args) -> dict:
    from numpynst.plan import parse_memory
    rows = []
    for size in args.size:
        r = measure(size, args.tile, parse_memory(args.max_memory) if args.max_memory else None)
        print(f"{size} px: tile {r['tile']} ({r['tiles']} tiles, halo {r['halo']}): peak {gib(r['peak'])} "
              f"(estimate {gib(r['estimate'])}, construction {gib(r['construction'])}), "
              f"{r['seconds']:.1f} s per value_and_grad", flush=True)
        rows.append(r)
    return {"memory": rows}


# ---------------------------------------------------------------------------- overhead
def overhead(args) -> dict:
    """s per value_and_grad, whole vs tiled with the planner's tile for ``--max-memory``, interleaved
    after one warm-up evaluation of each."""
    from numpynst.plan import choose, estimate, parse_memory
    from numpynst.tiled import TiledObjective
    from numpynst.transfer import DEFAULT_CONTENT_LAYER, DEFAULT_STYLE_LAYERS, Objective
    from numpynst.vgg import VGG
    model = VGG.from_h5()
    names = [DEFAULT_CONTENT_LAYER, *DEFAULT_STYLE_LAYERS]
    size = args.size[0]
    plan = choose(model, names, DEFAULT_CONTENT_LAYER, (size, size), parse_memory(args.max_memory), "lbfgs")
    whole_plan = estimate(model, names, DEFAULT_CONTENT_LAYER, (size, size), None, "lbfgs")
    rng = np.random.default_rng(0)
    c, s = (rng.normal(0, 50, (1, size, size, 3)).astype(np.float32) for _ in range(2))
    whole = Objective(model, c, s)
    tiled = TiledObjective(model, c, s, tile=plan.tile)
    x = c + rng.normal(0, 5, c.shape).astype(np.float32)
    for obj in (whole, tiled):               # warm-up: the first evaluation's weight transforms
        obj.value_and_grad(x)
    load = LoadSampler()
    times, cpu = {"whole": [], "tiled": []}, {"whole": [], "tiled": []}
    # interleaved, alternating which goes first (whole, tiled, tiled, whole, ...), so both see the
    # same conditions on a shared machine and a slow drift of its load cancels in the pairs
    pairs = (("whole", whole), ("tiled", tiled))
    for i in range(args.repeat):
        for name, obj in (pairs if i % 2 == 0 else pairs[::-1]):
            t, c0 = time.perf_counter(), cpu_seconds()
            obj.value_and_grad(x)
            times[name].append(time.perf_counter() - t)
            cpu[name].append(cpu_seconds() - c0)
    load = load.stop()
    med = {k: float(np.median(v)) for k, v in times.items()}
    med_cpu = {k: float(np.median(v)) for k, v in cpu.items()}
    row = dict(size=size, max_memory=args.max_memory, tile=plan.tile, tiles=plan.tiles, halo=plan.halo,
               pixels_run=plan.overhead, whole_s=med["whole"], tiled_s=med["tiled"],
               ratio=med["tiled"] / med["whole"], times=times, cpu_seconds=cpu,
               whole_cpu_s=med_cpu["whole"], tiled_cpu_s=med_cpu["tiled"],
               cpu_ratio=med_cpu["tiled"] / med_cpu["whole"],
               ratios=[b / a for a, b in zip(times["whole"], times["tiled"])],
               planned_ratio=plan.seconds / whole_plan.seconds, **load)
    print(f"{size} px, --max-memory {args.max_memory}: tiles {plan.tile} x{plan.tiles}, halo {plan.halo}, "
          f"pixels run {plan.overhead:.2f}x; whole {med['whole']:.2f} s, tiled {med['tiled']:.2f} s per "
          f"value_and_grad (medians of {args.repeat}, interleaved): ratio {row['ratio']:.2f} "
          f"(pairwise {', '.join(f'{r:.2f}' for r in row['ratios'])}; planner's model "
          f"{row['planned_ratio']:.2f}); CPU s (all threads) whole {med_cpu['whole']:.1f}, tiled "
          f"{med_cpu['tiled']:.1f}: ratio {row['cpu_ratio']:.2f}; {LoadSampler.text(load)}", flush=True)
    return {"overhead": row}


# ---------------------------------------------------------------------------- picture
def picture(args) -> dict:
    """A print-size picture, coarse to fine, in two stylize calls: the whole composition at
    ``--coarse`` px (its own scales), then the print size from it with few iterations per scale."""
    import numpynst
    from numpynst.image import load_image, sample_path, save_image
    load = LoadSampler(30.0)
    base = rss()                                             # after the imports
    t0, c0 = time.perf_counter(), cpu_seconds()
    content, style = sample_path(args.content), sample_path(args.style)
    coarse = numpynst.stylize(content, style, size=args.coarse, scales=[0.25, 0.5, 1.0],
                              iterations=args.coarse_iterations, tol=None, progress=not args.quiet)
    t1, c1, peak_coarse = time.perf_counter(), cpu_seconds(), rss()
    print(f"coarse {args.coarse} px: {coarse.iterations} iterations, {t1 - t0:.0f} s, {c1 - c0:.0f} CPU s, "
          f"peak RSS so far {gib(peak_coarse)}", flush=True)
    out = Path(args.output)
    start = out.with_name(out.stem + "_coarse.png")
    save_image(start, coarse.image, overwrite=True)          # the init image of the print-size run
    fine = numpynst.stylize(content, style, size=args.size, init=str(start), scales=args.scales,
                            iterations=args.iterations, tol=None, max_memory=args.max_memory,
                            optimizer=args.optimizer, lr=args.lr, progress=not args.quiet)
    t2, c2 = time.perf_counter(), cpu_seconds()
    save_image(out, fine.image, overwrite=True)
    small = out.with_name(out.stem + "_small.jpg")
    h, w = fine.image.shape[:2]
    save_image(small, load_image(out, size=args.preview), overwrite=True)
    cy, cx = h // 2 - args.crop // 2, w // 2 - args.crop // 2
    crop_path = out.with_name(out.stem + "_crop.jpg")
    save_image(crop_path, np.ascontiguousarray(fine.image[cy:cy + args.crop, cx:cx + args.crop]), overwrite=True)
    row = dict(size=f"{w}x{h}", coarse=args.coarse, coarse_iterations=coarse.iterations,
               optimizer=args.optimizer, lr=args.lr, scales=args.scales, iterations=args.iterations,
               J_per_scale=[fine.history["J"][k * (args.iterations + 1):(k + 1) * (args.iterations + 1)]
                            for k in range(len(args.scales))],
               max_memory=args.max_memory,
               coarse_seconds=t1 - t0, fine_seconds=t2 - t1, seconds=t2 - t0,
               coarse_cpu_seconds=c1 - c0, fine_cpu_seconds=c2 - c1, cpu_seconds=c2 - c0,
               base_rss=base, peak_rss_coarse=peak_coarse, peak_rss=rss(),
               fine_evaluations=len(fine.history["J"]), **load.stop(),
               fine_iterations=fine.iterations, stopped=fine.stopped,
               J_start=fine.history["J"][0], J_final=fine.J_final, output=str(out), preview=str(small),
               crop=str(crop_path), crop_box=[cy, cx, args.crop])
    print(json.dumps(row), flush=True)
    return {"picture": row}


# ---------------------------------------------------------------------------- recipe
def recipe(args) -> dict:
    """The planner's figures for a print-size run: per scale, on this CPU within ``--max-memory``,
    and on a GPU with ``--gpu-memory`` (time scaled by the assumed GPU throughput: an estimate)."""
    from numpynst.plan import THROUGHPUT, THROUGHPUT_NOTE, choose, parse_memory
    from numpynst.transfer import DEFAULT_CONTENT_LAYER, DEFAULT_STYLE_LAYERS
    from numpynst.vgg import VGG
    model = VGG.from_h5()
    names = [DEFAULT_CONTENT_LAYER, *DEFAULT_STYLE_LAYERS]
    rows = []
    for device, budget in (("cpu", args.max_memory or "4GB"), ("gpu", args.gpu_memory)):
        speed = 1.0 if device == "cpu" else THROUGHPUT["numpy"] / THROUGHPUT["cupy"]
        total = 0.0
        for scale in args.scales:
            side = int(round(args.size[0] * scale))
            p = choose(model, names, DEFAULT_CONTENT_LAYER, (side, side), parse_memory(budget), args.optimizer)
            sec = p.seconds * speed
            total += sec * args.iterations
            rows.append(dict(device=device, budget=budget, scale=scale, side=side, tile=p.tile, tiles=p.tiles,
                             pixels_run=p.overhead, peak=p.peak, seconds_per_iteration=sec))
            print(f"{device} ({budget}): {side} px: {'whole' if p.tile is None else f'tiles {p.tile}'} "
                  f"x{p.tiles}, peak {gib(p.peak)}, {sec:.3g} s/iteration", flush=True)
        print(f"{device}: {args.iterations} iterations per scale: about {total / 60:.0f} min "
              f"({THROUGHPUT_NOTE['numpy' if device == 'cpu' else 'cupy']})", flush=True)
    return {"recipe": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["exact", "memory", "overhead", "picture", "recipe"])
    p.add_argument("--size", type=int, nargs="+", default=[1024])
    p.add_argument("--tile", type=int, default=None, help="memory: force this tile (0: whole image)")
    p.add_argument("--max-memory", default=None, help="memory/overhead/picture: the planner's budget")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--content", default="astronaut")
    p.add_argument("--style", default="ihc")
    p.add_argument("--coarse", type=int, default=512)
    p.add_argument("--coarse-iterations", type=int, default=40)
    p.add_argument("--scales", type=float, nargs="+", default=[1.0])
    p.add_argument("--iterations", type=int, default=2)
    p.add_argument("--optimizer", default="adam",
                   help="picture: optimizer of the print-size scales (Adam keeps 2 image-sized vectors, "
                        "L-BFGS 2 x its history)")
    p.add_argument("--lr", type=float, default=None,
                   help="picture: Adam's step at the print-size scales (pixel units; 2 lowers J from an "
                        "upsampled start where the default 5 adds noise: benchmarks/README.md)")
    p.add_argument("--output", default="/tmp/print_4096.png")
    p.add_argument("--preview", type=int, default=1024)
    p.add_argument("--crop", type=int, default=512)
    p.add_argument("--gpu-memory", default="40GB", help="recipe: the GPU's budget")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.what == "picture":
        args.size = args.size[0]
    result = {"exact": exact, "memory": memory, "overhead": overhead, "picture": picture,
              "recipe": recipe}[args.what](args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
