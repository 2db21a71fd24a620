"""Time to reach a given style-transfer loss with and without the coarse-to-fine schedule (``scales``).

Runs :func:`numpynst.stylize` twice on the same pair, each in a fresh process (so each reports its
own peak RSS): once at full size only, once with ``scales`` (default 0.25, 0.5, 1.0; each scale runs
up to ``--iterations`` L-BFGS iterations, ``tol`` off). The target is the lowest full-size ``J`` the
single-scale run reaches; for each run it prints the wall time until ``J`` at full size first gets
there (coarse scales included), and the full-size ``J`` both runs have at equal wall time.

    python benchmarks/stylize_scales.py --size 512 --iterations 40
    python benchmarks/stylize_scales.py --size 1024 --iterations 2 --runs single --content astronaut
        (the second form is the 1024 px peak-memory check: a square image, two iterations)

``J`` is only comparable at one resolution: the losses sum over pixels, so the coarse scales' values
are reported but never compared with the target. Wall times suffer when the machine is shared, so
the work to the target is also given in full-size-iteration equivalents (an iteration at scale s
counts s^2). Timings only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def worker(args) -> None:
    import resource

    import numpy as np

    sys.path.insert(0, ROOT)
    from numpynst import stylize
    from numpynst.image import load_image, sample_path
    from numpynst.vgg import VGG

    model = VGG.from_h5()
    content = load_image(sample_path(args.content))
    style = load_image(sample_path(args.style))
    trace = []
    t0 = time.perf_counter()

    def cb(p):
        trace.append((time.perf_counter() - t0, float(p.scale), int(p.iteration), float(p.J)))

    scales = args.scales if args.worker == "multi" else None
    res = stylize(content, style, size=args.size, iterations=args.iterations, model=model, tol=None,
                  scales=scales, callback=cb, log_every=1)
    print(json.dumps({"trace": trace, "seconds": res.seconds, "iterations": res.iterations,
                      "shape": list(res.image.shape),
                      "maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "numpy": np.__version__}))


def _time_to(trace, target):
    for t, s, _, j in trace:
        if s == 1.0 and j <= target:
            return t
    return None


def _work_to(trace, target):
    """Full-size-iteration equivalents spent until J at full size reaches ``target``: an iteration at
    scale s costs ~s^2 of a full-size one (VGG work is proportional to the pixel count). Unlike wall
    time this does not depend on what else the machine is running."""
    work = 0.0
    for _, s, it, j in trace:
        if it > 0:
            work += s * s
        if s == 1.0 and j <= target:
            return work
    return None


def _j_at(trace, t_lim):
    best = None
    for t, s, _, j in trace:
        if t <= t_lim and s == 1.0:
            best = j if best is None else min(best, j)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="stylize() with vs without scales: time to a target J.")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--iterations", type=int, default=40, help="L-BFGS iterations per scale")
    ap.add_argument("--scales", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    ap.add_argument("--content", default="chelsea")
    ap.add_argument("--style", default="ihc")
    ap.add_argument("--runs", nargs="+", choices=("single", "multi"), default=["single", "multi"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--worker", choices=("single", "multi"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args)
        return 0

    env = dict(os.environ)
    for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[v] = str(args.threads)
    print(f"{args.content} + {args.style} at {args.size} px, L-BFGS, {args.iterations} iterations per scale, "
          f"threads={args.threads}")
    out = {}
    for run in args.runs:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", run, "--size", str(args.size),
               "--iterations", str(args.iterations), "--content", args.content, "--style", args.style,
               "--scales", *map(str, args.scales)]
        p = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if p.returncode != 0:
            print(p.stderr[-3000:])
            return 1
        out[run] = json.loads(p.stdout.strip().splitlines()[-1])
        r = out[run]
        full = [x for x in r["trace"] if x[1] == 1.0]
        coarse = r["trace"][-1][0] - (full[-1][0] - full[0][0]) if full else 0.0
        per_it = (full[-1][0] - full[0][0]) / max(len(full) - 1, 1) if full else float("nan")
        print(f"  {run:6s} {r['seconds']:7.1f} s total, {r['iterations']:3d} iterations, full size "
              f"{r['shape'][1]}x{r['shape'][0]}: {per_it:.2f} s/iter, final J {full[-1][3]:.4g}; "
              f"peak RSS {r['maxrss_bytes'] / 2**30:.2f} GiB"
              + (f" (coarse scales until ~{coarse:.1f} s)" if run == "multi" else ""))
    if "single" in out and "multi" in out:
        s, m = out["single"]["trace"], out["multi"]["trace"]
        target = min(j for _, sc, _, j in s if sc == 1.0)
        ts, tm = _time_to(s, target), _time_to(m, target)
        print(f"  target J = {target:.4g} (the single-scale run's best)")
        print(f"  time to target: single {ts:.1f} s, multi "
              + (f"{tm:.1f} s  ->  speed-up {ts / tm:.2f}x" if tm else f"not reached (best {min(j for _, sc, _, j in m if sc == 1.0):.4g})"))
        ws, wm = _work_to(s, target), _work_to(m, target)
        print(f"  work to target (full-size iteration equivalents, load-independent): single {ws:.1f}, multi "
              + (f"{wm:.1f}  ->  {ws / wm:.2f}x less" if wm else "not reached"))
        for frac in (0.25, 0.5, 0.75):
            t_lim = frac * s[-1][0]
            js, jm = _j_at(s, t_lim), _j_at(m, t_lim)
            print(f"  at {t_lim:6.1f} s: single J {js if js is not None else float('nan'):.4g}, multi J "
                  + (f"{jm:.4g}" if jm is not None else "(still at coarse scales)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
