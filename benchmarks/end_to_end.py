"""The whole stylize run, numpynst vs PyTorch: set-up, evaluations, optimiser, everything else.

What a user waits for: numpynst's ``stylize`` (loading, targets, the L-BFGS loop, the picture)
against a PyTorch user's loop on the same raw objective (benchmarks/torch_objective.py: the same
VGG19 weights, the same pixels, its targets from its own forwards, the gradient by autograd,
``torch.optim.LBFGS``), the same number of objective evaluations on both sides.

    nice -n 10 python benchmarks/end_to_end.py --sizes 256 512 1024 --evaluations 100 100 20 \\
        --repeat 3 --threads 2 --json benchmarks/results/end_to_end_after.json
    python benchmarks/end_to_end.py --memory 2048 --evaluations 5 [--before DIR]   # RSS per step, 2048 px

How it measures:

* Both sides: the demo pair (numpynst's bundled content and style samples), longest side
  ``--sizes``, start from the content, raw weights (alpha 1, beta 1e-2, TV 1), style layers
  block1..5_conv1 at 0.2, content block4_conv2, one scale, no tolerance stop. numpynst:
  ``stylize(..., optimizer="lbfgs", iterations=E-1)`` (history 10; the start is one evaluation,
  each iteration one more). PyTorch: ``torch.optim.LBFGS(lr=1, history_size=10,
  line_search_fn=None, max_iter=E)``: one evaluation at the start and after each iteration but
  the last (whose step is taken unevaluated); the worker checks that each
  side made exactly ``E`` evaluations. The images (decoded, resized to the size numpynst's planner
  picks) come from numpynst's ``prepare`` on both sides, so the pixels are the same.
* Each run is a fresh worker process (first-call work counts, as for a user), started with the same
  thread count on both sides (``--threads``: ``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS``,
  ``MKL_NUM_THREADS`` and ``torch.set_num_threads``). Runs alternate numpynst, PyTorch, numpynst, ...
  (``--repeat`` each per size); medians are reported, with wall and CPU time (CPU: all threads).
* The breakdown (numpynst, by wrapping its functions in the worker): **set-up** = ``prepare``
  (weights, pictures, plan) + the objective's constructor (targets, calibration); **VGG** = the
  network's forward and backward inside ``Objective.evaluate``; **losses** = the rest of
  ``evaluate`` (Gram matrices, costs, their gradients, TV); **optimiser** = ``LBFGS.step`` less the
  evaluation inside it; **other** = the rest of the wall time (the loop's bookkeeping, the picture).
  PyTorch: set-up (``prepare``, weights to tensors, targets), the closure's network forward, loss
  forward and backward, ``LBFGS.step`` less the closures, and the rest.
* Allocations per iteration (numpynst, one extra untimed run per size on one thread,
  ``--count-evaluations`` evaluations): every NumPy array buffer allocated, counted by an allocation hook
  (benchmarks/alloc_count.py), split into inside VGG's forward/backward and outside it; the
  steady state is the median over the iterations after the first two.
* ``--memory SIZE``: one numpynst run, whole image (no tiles), ``--evaluations`` evaluations,
  resident memory (``/proc/self/statm``) after every iteration and the process's peak
  (``ru_maxrss``): per-step growth shows up as a rising RSS.

Timings are printed and stored (``--json``), never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CONTENT_LAYER = "block4_conv2"
STYLE_LAYERS = {f"block{i}_conv1": 0.2 for i in range(1, 6)}
RAW = dict(alpha=1.0, beta=1e-2, tv_weight=1.0)
PARTS = ("setup", "vgg", "losses", "optimiser", "other")


def _options(size: int, evaluations: int) -> dict:
    return dict(size=size, iterations=evaluations - 1, optimizer="lbfgs", weights_mode="raw", init="content",
                scales=[1.0], tol=None, content_layer=CONTENT_LAYER, style_layers=STYLE_LAYERS, seed=0,
                max_memory="64GB", **RAW)


def _pictures():
    from numpynst.image import sample_path
    return str(sample_path("content")), str(sample_path("style"))


class _Clock:
    """Wall and CPU seconds accumulated per key."""

    def __init__(self):
        self.wall: dict = {}
        self.cpu: dict = {}

    def add(self, key: str, wall: float, cpu: float) -> None:
        self.wall[key] = self.wall.get(key, 0.0) + wall
        self.cpu[key] = self.cpu.get(key, 0.0) + cpu

    def wrap(self, owner, attr: str, key: str, only_if=None, before=None, after=None):
        real = getattr(owner, attr)

        def timed(*a, **k):
            if only_if is not None and not only_if():
                return real(*a, **k)
            if before:
                before()
            w0, c0 = time.perf_counter(), time.process_time()
            try:
                return real(*a, **k)
            finally:
                self.add(key, time.perf_counter() - w0, time.process_time() - c0)
                if after:
                    after()
        setattr(owner, attr, timed)


# ------------------------------------------------------------------------------------------- workers
def worker_numpynst(args) -> dict:

    import numpynst.transfer as transfer
    from numpynst.objective import Objective
    from numpynst.optim import LBFGS
    from numpynst.vgg import VGG

    content, style = _pictures()
    clock, state = _Clock(), {"in_eval": False, "evals": 0}

    def enter():
        state["in_eval"] = True
        state["evals"] += 1

    def leave():
        state["in_eval"] = False

    clock.wrap(transfer, "prepare", "prepare")
    clock.wrap(Objective, "__init__", "targets")
    clock.wrap(Objective, "evaluate", "evaluate", before=enter, after=leave)
    clock.wrap(LBFGS, "step", "step")
    for attr in ("forward_tape", "backward_tape"):
        clock.wrap(VGG, attr, "vgg", only_if=lambda: state["in_eval"])
    steps_eval = _Clock()          # evaluations inside LBFGS.step (all but the first)
    real_step = LBFGS.step

    def step(self, fun, *a):
        def counted(x):
            w0, c0 = time.perf_counter(), time.process_time()
            out = fun(x)
            steps_eval.add("eval", time.perf_counter() - w0, time.process_time() - c0)
            return out
        return real_step(self, counted, *a)
    LBFGS.step = step

    w0, c0 = time.perf_counter(), time.process_time()
    result = transfer.stylize(content, style, **_options(args.size, args.evaluations))
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    if state["evals"] != args.evaluations:
        raise RuntimeError(f"numpynst made {state['evals']} evaluations, expected {args.evaluations}")
    out = {"wall": wall, "cpu": cpu, "evaluations": state["evals"], "J_last": float(result.history["J"][-1]),
           "J_best": float(min(result.history["J"]))}
    for kind, table in (("wall", clock.wall), ("cpu", clock.cpu)):
        inner = steps_eval.wall if kind == "wall" else steps_eval.cpu
        parts = {"setup": table["prepare"] + table["targets"], "vgg": table["vgg"],
                 "losses": table["evaluate"] - table["vgg"], "optimiser": table["step"] - inner.get("eval", 0.0)}
        parts["other"] = out[kind] - sum(parts.values())
        out[f"parts_{kind}"] = parts
    out["maxrss_bytes"] = _maxrss()
    return out


def worker_torch(args) -> dict:
    import torch

    from numpynst.image import resize_to, scaled_shape
    from numpynst.transfer import prepare
    from numpynst.vgg import preprocess
    from torch_objective import TorchStyleObjective

    torch.set_num_threads(args.threads)
    content, style = _pictures()
    clock = _Clock()
    w0, c0 = time.perf_counter(), time.process_time()
    p = prepare(content, style, **_options(args.size, args.evaluations))
    hw = p.plans[1.0].hw
    c = preprocess(resize_to(p.content, hw))
    s = preprocess(resize_to(p.styles[0], scaled_shape(p.styles[0].shape, 1.0)))
    obj = TorchStyleObjective(p.model, c, s, CONTENT_LAYER, STYLE_LAYERS, **RAW)
    x = TorchStyleObjective.nchw(c).clone().requires_grad_(True)
    opt = torch.optim.LBFGS([x], lr=1, max_iter=args.evaluations, max_eval=10 * args.evaluations,
                            history_size=10, line_search_fn=None, tolerance_grad=0.0, tolerance_change=0.0)
    clock.add("setup", time.perf_counter() - w0, time.process_time() - c0)
    values = []

    def closure():
        opt.zero_grad()
        t = (time.perf_counter(), time.process_time())
        acts = obj.features(x)
        t1 = (time.perf_counter(), time.process_time())
        J = obj.losses(acts, x)
        t2 = (time.perf_counter(), time.process_time())
        J.backward()
        t3 = (time.perf_counter(), time.process_time())
        clock.add("forward", t1[0] - t[0], t1[1] - t[1])
        clock.add("loss_forward", t2[0] - t1[0], t2[1] - t1[1])
        clock.add("backward", t3[0] - t2[0], t3[1] - t2[1])
        values.append(float(J.detach()))
        return J

    s0 = (time.perf_counter(), time.process_time())
    opt.step(closure)
    clock.add("step", time.perf_counter() - s0[0], time.process_time() - s0[1])
    picture = x.detach().numpy().transpose(0, 2, 3, 1).copy()      # the result, as a user would take it
    del picture
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    if len(values) != args.evaluations:
        raise RuntimeError(f"torch made {len(values)} evaluations, expected {args.evaluations}")
    out = {"wall": wall, "cpu": cpu, "evaluations": len(values), "J_last": values[-1], "J_best": min(values)}
    for kind, table in (("wall", clock.wall), ("cpu", clock.cpu)):
        ev = table["forward"] + table["loss_forward"] + table["backward"]
        parts = {"setup": table["setup"], "vgg_forward": table["forward"], "loss_forward": table["loss_forward"],
                 "backward": table["backward"], "optimiser": table["step"] - ev}
        parts["other"] = out[kind] - sum(parts.values())
        out[f"parts_{kind}"] = parts
    out["maxrss_bytes"] = _maxrss()
    return out


def worker_allocations(args) -> dict:
    """Allocations per iteration (numpynst), inside and outside VGG's forward/backward."""
    from alloc_count import AllocationCounter, self_check

    import numpynst.transfer as transfer
    from numpynst.optim import LBFGS
    from numpynst.vgg import VGG

    self_check()
    content, style = _pictures()
    counter = AllocationCounter()
    marks: list = []          # (calls, bytes, sizes index) at each step start
    inside = {"calls": 0, "bytes": 0, "depth": 0}

    for attr in ("forward_tape", "backward_tape"):
        real = getattr(VGG, attr)

        def counted(*a, _real=real, **k):
            c0, b0 = counter.calls, counter.bytes
            try:
                return _real(*a, **k)
            finally:
                inside["calls"] += counter.calls - c0
                inside["bytes"] += counter.bytes - b0
        setattr(VGG, attr, counted)
    real_step = LBFGS.step

    def step(self, *a):
        marks.append((counter.calls, counter.bytes, len(counter.sizes), inside["calls"], inside["bytes"]))
        return real_step(self, *a)
    LBFGS.step = step
    opts = _options(args.size, args.count_evaluations)
    with counter:
        transfer.stylize(content, style, **opts)
    marks.append((counter.calls, counter.bytes, len(counter.sizes), inside["calls"], inside["bytes"]))
    image_bytes = 4 * 3 * _hw_pixels(args.size)
    rows = []
    for (c0, b0, i0, ic0, ib0), (c1, b1, i1, ic1, ib1) in zip(marks, marks[1:]):
        outside_sizes = counter.sizes[i0:i1]
        rows.append({"calls": c1 - c0, "bytes": b1 - b0, "vgg_calls": ic1 - ic0, "vgg_bytes": ib1 - ib0,
                     "outside_calls": (c1 - c0) - (ic1 - ic0), "outside_bytes": (b1 - b0) - (ib1 - ib0),
                     "image_sized_anywhere": sum(1 for s in outside_sizes if s >= image_bytes)})
    steady = rows[2:] or rows
    med = {k: statistics.median(r[k] for r in steady) for k in rows[0]}
    return {"per_step": rows, "steady_median": med, "image_bytes": image_bytes}


def _hw_pixels(size: int) -> int:
    from numpynst.image import load_image
    content, _ = _pictures()
    h, w = load_image(content, size=size).shape[:2]
    return h * w


def worker_memory(args) -> dict:
    """RSS after every iteration of one whole-image numpynst run."""
    import numpynst.transfer as transfer
    content, style = _pictures()
    page = os.sysconf("SC_PAGE_SIZE")
    rss: list = []

    def rss_now() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * page

    def callback(progress):
        rss.append(rss_now())
        print(json.dumps({"iteration": progress.iteration, "rss_bytes": rss[-1],
                          "seconds": time.perf_counter() - t0}), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    opts = _options(args.size, args.evaluations)
    p = transfer.prepare(content, style, **opts)
    tiled = [s for s, plan in p.plans.items() if plan.tile is not None]
    if tiled:
        raise RuntimeError(f"the plan tiles scale(s) {tiled}: not a whole-image run")
    result = transfer.run(p, callback=callback, log_every=1)
    return {"size": args.size, "hw": list(p.plans[1.0].hw), "evaluations": args.evaluations,
            "rss_per_iteration_bytes": rss, "maxrss_bytes": _maxrss(), "seconds": time.perf_counter() - t0,
            "iterations": result.iterations}


def _maxrss() -> int:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# -------------------------------------------------------------------------------------------- parent
def _spawn(kind: str, size: int, evaluations: int, args, root: str | None = None) -> dict:
    env = dict(os.environ)
    # the allocation hook is per thread (a context variable): counted on one thread, so that every
    # buffer is made where it is seen
    threads = 1 if kind == "allocations" else args.threads
    for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[v] = str(threads)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--sizes", str(size),
           "--evaluations", str(evaluations), "--threads", str(args.threads),
           "--count-evaluations", str(args.count_evaluations)] + (["--numpynst", root] if root else [])
    done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} worker at {size} px failed (exit code {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _median(runs: list, path: tuple) -> float:
    values = []
    for r in runs:
        v = r
        for key in path:
            v = v[key]
        values.append(v)
    return statistics.median(values)


def _machine(threads: int) -> str:
    sys.path.insert(0, HERE)
    from vgg_step import _machine as machine
    return machine(threads)


def _numpynst_medians(runs: list, evaluations: int) -> dict:
    med = {}
    for kind in ("wall", "cpu"):
        med[kind] = _median(runs, (kind,))
        med[f"parts_{kind}"] = {k: _median(runs, (f"parts_{kind}", k)) for k in PARTS}
    pw = med["parts_wall"]
    med["per_eval_vgg"] = pw["vgg"] / evaluations
    med["per_eval_losses"] = pw["losses"] / evaluations
    med["beyond_vgg_share"] = (pw["losses"] + pw["optimiser"] + pw["other"]) / pw["vgg"]
    med["per_eval_beyond_vgg_share"] = (pw["losses"] + pw["optimiser"]) / pw["vgg"]
    return med


def _summary(size: int, evaluations: int, ours: list, theirs: list, alloc: dict | None,
             before: list = (), alloc_before: dict | None = None) -> dict:
    out = {"size": size, "evaluations": evaluations, "numpynst": ours, "torch": theirs, "allocations": alloc}
    med = {"numpynst": _numpynst_medians(ours, evaluations), "torch": {}}
    if before:
        out["numpynst_before"], out["allocations_before"] = list(before), alloc_before
        med["numpynst_before"] = _numpynst_medians(before, evaluations)
        med["ratio_before_wall"] = med["numpynst_before"]["wall"] / _median(theirs, ("wall",))
    for kind in ("wall", "cpu"):
        med["torch"][kind] = _median(theirs, (kind,))
        med["torch"][f"parts_{kind}"] = {k: _median(theirs, (f"parts_{kind}", k)) for k in theirs[0][f"parts_{kind}"]}
    med["ratio_wall"] = med["numpynst"]["wall"] / med["torch"]["wall"]
    med["ratio_cpu"] = med["numpynst"]["cpu"] / med["torch"]["cpu"]
    tw = med["torch"]["parts_wall"]
    med["torch"]["per_eval"] = (tw["vgg_forward"] + tw["loss_forward"] + tw["backward"]) / evaluations
    out["median"] = med
    return out


def _print(row: dict) -> None:
    e = row["evaluations"]
    m = row.get("median")
    if m:
        t = m["torch"]
        print(f"== {row['size']} px, {e} evaluations each; medians of {len(row['numpynst'])} runs per side")
        for key, label in (("numpynst_before", "before"), ("numpynst", "numpynst")):
            if key not in m:
                continue
            n = m[key]
            ratio = n["wall"] / t["wall"]
            print(f"  {label:11s} {n['wall']:7.2f} s wall {n['cpu']:7.2f} s CPU   = {ratio:.2f} x torch's wall, "
                  f"{n['cpu'] / t['cpu']:.2f} x its CPU")
            pw = n["parts_wall"]
            print("              " + "  ".join(f"{k} {pw[k]:.2f} s" for k in PARTS))
            print(f"              per evaluation: VGG {n['per_eval_vgg'] * 1e3:.1f} ms, "
                  f"losses {n['per_eval_losses'] * 1e3:.1f} ms "
                  f"(losses + optimiser {100 * n['per_eval_beyond_vgg_share']:.1f}% of VGG; with everything else "
                  f"{100 * n['beyond_vgg_share']:.1f}%)")
        tw = t["parts_wall"]
        print(f"  torch       {t['wall']:7.2f} s wall {t['cpu']:7.2f} s CPU")
        print("              " + "  ".join(f"{k} {v:.2f} s" for k, v in tw.items()))
        print(f"              per evaluation (closure: forward, losses, backward): {t['per_eval'] * 1e3:.1f} ms")
    for key, label in (("allocations_before", "before"), ("allocations", "numpynst")):
        a = row.get(key)
        if a:
            s = a["steady_median"]
            print(f"  allocations per iteration ({label}, {row['size']} px, steady state, one thread): outside VGG "
                  f"{s['outside_calls']:.0f} buffers, {s['outside_bytes'] / 2**20:.1f} MiB; inside VGG "
                  f"{s['vgg_calls']:.0f} buffers, {s['vgg_bytes'] / 2**20:.1f} MiB; image-sized or larger, "
                  f"anywhere: {s['image_sized_anywhere']:.0f} (an image is {a['image_bytes'] / 2**20:.2f} MiB)")
    print(flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256])
    ap.add_argument("--evaluations", type=int, nargs="+", default=[100],
                    help="objective evaluations per run: one for all sizes, or one per size")
    ap.add_argument("--repeat", type=int, default=3, help="runs per side and size (interleaved)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--count-evaluations", type=int, default=8,
                    help="evaluations of the untimed run that counts allocations (0: none)")
    ap.add_argument("--label", default="", help="a name for this run, stored in the JSON (e.g. before/after)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--before", default=None, metavar="DIR",
                    help="also time the numpynst in DIR (another checkout), interleaved as a third side")
    ap.add_argument("--numpynst", default=None, help=argparse.SUPPRESS)      # a worker's checkout
    ap.add_argument("--memory", type=int, default=None, metavar="SIZE",
                    help="instead: RSS per iteration of one whole-image numpynst run at SIZE px")
    ap.add_argument("--table", nargs="+", default=None, metavar="JSON",
                    help="instead: print the markdown tables of stored results (benchmarks/README.md)")
    ap.add_argument("--worker", choices=("numpynst", "torch", "allocations", "memory"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.table:
        print(markdown_tables(args.table))
        return 0
    if args.worker:
        sys.path[:0] = [args.numpynst or ROOT, HERE]     # the numpynst to measure; torch_objective, alloc_count
        args.size, args.evaluations = args.sizes[0], args.evaluations[0]
        fn = {"numpynst": worker_numpynst, "torch": worker_torch, "allocations": worker_allocations,
              "memory": worker_memory}[args.worker]
        print(json.dumps(fn(args)), flush=True)
        if args.worker == "allocations":
            os._exit(0)     # buffers freed at shutdown would call the counter's callbacks mid-teardown
        return 0
    if args.memory is not None:
        print(f"machine: {_machine(args.threads)}")
        r = _spawn("memory", args.memory, args.evaluations[0], args, args.before)    # --before: that checkout's
        rss = [v / 2**30 for v in r["rss_per_iteration_bytes"]]
        print(f"== {args.memory} px whole image ({r['hw'][1]}x{r['hw'][0]}), {r['evaluations']} evaluations, "
              f"{r['seconds']:.0f} s, numpynst of {args.before or ROOT}")
        print("  RSS after each iteration (GiB): " + " ".join(f"{v:.2f}" for v in rss))
        print(f"  growth from iteration 2 to the last: {(rss[-1] - rss[1]) if len(rss) > 1 else 0.0:+.3f} GiB; "
              f"peak RSS {r['maxrss_bytes'] / 2**30:.2f} GiB")
        if args.json:
            _write(args.json, {"label": args.label, "machine": _machine(args.threads), "memory": r})
        return 0
    evals = args.evaluations * len(args.sizes) if len(args.evaluations) == 1 else args.evaluations
    if len(evals) != len(args.sizes):
        ap.error("--evaluations: give one number, or one per size")
    print(f"machine: {_machine(args.threads)}")
    print(f"threads {args.threads} on both sides; {args.repeat} interleaved runs per side and size, fresh processes")
    rows = []
    for size, e in zip(args.sizes, evals):
        ours, theirs, before = [], [], []
        for _ in range(args.repeat):
            ours.append(_spawn("numpynst", size, e, args))
            theirs.append(_spawn("torch", size, e, args))
            if args.before:
                before.append(_spawn("numpynst", size, e, args, args.before))
            if args.json:           # what is done so far, in case the rest is cut short
                _write(args.json, {"label": args.label, "machine": _machine(args.threads), "threads": args.threads,
                                   "repeat": args.repeat, "partial": True,
                                   "sizes": rows + [_summary(size, e, ours, theirs, None, before)]})
        alloc = _spawn("allocations", size, e, args) if args.count_evaluations else None
        alloc_before = (_spawn("allocations", size, e, args, args.before)
                        if args.count_evaluations and args.before else None)
        row = _summary(size, e, ours, theirs, alloc, before, alloc_before) if args.repeat else \
            {"size": size, "evaluations": e, "allocations": alloc, "allocations_before": alloc_before}
        rows.append(row)
        _print(row)
    if args.json:
        _write(args.json, {"label": args.label, "machine": _machine(args.threads), "threads": args.threads,
                           "repeat": args.repeat, "sizes": rows})
    return 0


def markdown_tables(paths: list) -> str:
    """The README's tables from stored results: the whole run (before, after, PyTorch), its
    breakdown, and the allocations per iteration."""
    runs, allocs, memory = [], [], []
    for path in paths:
        with open(path) as fh:
            data = json.load(fh)
        if "memory" in data:
            memory.append((data.get("label", ""), data["memory"]))
        for row in data.get("sizes", []):
            (runs if "median" in row else allocs).append(row)
            if "median" in row and row.get("allocations"):
                allocs.append(row)
    out = [] if not runs else [
        "| size | evaluations | runs | before: wall s (x PyTorch) | after: wall s (x PyTorch) | PyTorch wall s "
        "| after: CPU s (x PyTorch) |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for row in runs:
        m = row["median"]
        b, n, t = m.get("numpynst_before"), m["numpynst"], m["torch"]
        before = f"{b['wall']:.1f} ({b['wall'] / t['wall']:.2f}x)" if b else "-"
        out.append(f"| {row['size']} px | {row['evaluations']} | {len(row['numpynst'])} | {before} | "
                   f"**{n['wall']:.1f} ({m['ratio_wall']:.2f}x)** | {t['wall']:.1f} | "
                   f"{n['cpu']:.1f} ({m['ratio_cpu']:.2f}x) |")
    out += [] if not runs else [
        "", "| size | side | set-up s | VGG ms/eval | losses ms/eval | optimiser s | other s "
            "| (losses + optimiser) / VGG | PyTorch: set-up s, ms/eval |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in runs:
        m, e = row["median"], row["evaluations"]
        t = m["torch"]
        for key, label in (("numpynst_before", "before"), ("numpynst", "after")):
            if key not in m:
                continue
            n, pw = m[key], m[key]["parts_wall"]
            torch_cell = f"{t['parts_wall']['setup']:.2f}, {1e3 * t['per_eval']:.0f}" if key == "numpynst" else ""
            out.append(f"| {row['size']} px | {label} | {pw['setup']:.2f} | {1e3 * pw['vgg'] / e:.0f} | "
                       f"{1e3 * pw['losses'] / e:.1f} | {pw['optimiser']:.2f} | {pw['other']:.2f} | "
                       f"{100 * n['per_eval_beyond_vgg_share']:.1f}% | {torch_cell} |")
    if allocs:
        out += ["" if out else None,
                "| size | side | buffers outside VGG | MiB outside VGG | buffers inside VGG | MiB inside VGG |",
                "|---:|---|---:|---:|---:|---:|"]
        for row in allocs:
            for key, label in (("allocations_before", "before"), ("allocations", "after")):
                a = row.get(key)
                if a:
                    s = a["steady_median"]
                    out.append(f"| {row['size']} px | {label} | {s['outside_calls']:.0f} | "
                               f"{s['outside_bytes'] / 2**20:.1f} | {s['vgg_calls']:.0f} | "
                               f"{s['vgg_bytes'] / 2**20:.1f} |")
    if memory:
        out += ["" if out else None, "| run | size | evaluations | RSS after each iteration, GiB | peak RSS, GiB |",
                "|---|---|---:|---|---:|"]
        for label, r in memory:
            rss = " ".join(f"{v / 2**30:.2f}" for v in r["rss_per_iteration_bytes"])
            out.append(f"| {label} | {r['hw'][1]}x{r['hw'][0]} | {r['evaluations']} | {rss} | "
                       f"{r['maxrss_bytes'] / 2**30:.2f} |")
    return "\n".join(line for line in out if line is not None)


def _write(path: str, data: dict) -> None:
    sys.path.insert(0, ROOT)
    from numpynst.files import atomic_file
    with atomic_file(path) as fh:
        fh.write(json.dumps(data, indent=1).encode("utf-8"))


if __name__ == "__main__":
    sys.exit(main())
