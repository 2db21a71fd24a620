"""Time one neural-style-transfer iteration: numpynst vs PyTorch on the same VGG19 weights.

One iteration = VGG19 forward to block1_conv1 .. block5_conv1 and block4_conv2 (the default style
and content layers), then backward from fixed random gradients at those six layers to the pixels
(no weight gradients). That is 2 * sum_l 2 H_l W_l 9 C_l F_l ~ 95 GFLOP at 256 px and 380 GFLOP at
512 px, counted as direct convolution whatever algorithm runs (so Winograd can exceed the GEMM peak).

    python benchmarks/vgg_step.py --backend numpy --size 256 512 1024 [--repeat 7] [--breakdown]
    python benchmarks/vgg_step.py --backend cupy  --size 512 1024 2048     (needs a GPU and CuPy)
    python benchmarks/vgg_step.py --backend cupy  --size 1024 --gpu-conv im2col winograd --json r.json

How it measures (the machine may be shared with other work):

* numpynst and PyTorch each run in their own fresh worker process per size, started with the same
  thread count (``--threads``, default 2: ``OPENBLAS_NUM_THREADS``/``OMP_NUM_THREADS`` and
  ``torch.set_num_threads``). Separate processes because both libraries keep their worker threads
  spinning for a while after each call; in one process each would steal the other's cores.
* The parent alternates single iterations (numpynst, torch, numpynst, torch, ...) with a short
  pause between them, after one warm-up iteration each, and reports medians and the ratio.
* Peak memory: ``ru_maxrss`` of the worker process (CPU; the whole process: Python, weights,
  activations, scratch), or the CuPy/PyTorch memory pool's high-water mark (GPU). Also printed: the
  bytes the forward pass keeps for the backward pass (the activation floor no algorithm can avoid).
* GPU runs time with CUDA events after a device synchronize; PyTorch runs float32 with TF32 off
  (cuDNN on, ``cudnn.benchmark`` picking its fastest algorithm per shape during the warm-up).
* ``--gpu-conv im2col implicit measure ...`` runs one numpynst worker per path for the 3x3
  convolutions on CuPy (``NUMPYNST_GPU_CONV`` in its environment, see
  numpynst/layers/fast/dispatch.py; ``measure``, the default, times im2col against the implicit GEMM
  per layer shape during the warm-up, and the worker reports its choices), all interleaved with
  PyTorch in the same loop, so the paths are compared under the same conditions.
* ``--precision tf32`` / ``fp16`` (CuPy): numpynst with TF32 matrix products / a float16 model, and
  PyTorch likewise (``allow_tf32`` for matmul and cuDNN / ``torch.autocast`` to float16; its weights
  stay float32 as autocast keeps them). Default fp32: TF32 off on both sides.
* ``--json PATH`` also writes every timing (not only the medians) and the memory figures.

``--breakdown`` adds a per-layer table (numpynst only): forward and backward time of each conv and
of the ReLU/pool ops between them. Timings are printed, never asserted.
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
OUTPUTS = ["block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1", "block4_conv2"]


# ---------------------------------------------------------------------------------------------- workers
def _conv_flops(model, size: int) -> tuple[float, list[tuple[str, float]]]:
    """Direct-convolution FLOPs of one iteration, and per conv layer (forward pass only)."""
    per = []
    h = size
    for name in model.layer_names:
        if name.endswith("_pool"):
            h //= 2
            continue
        w = model.params[name][0]
        per.append((name, 2.0 * h * h * 9 * int(w.shape[2]) * int(w.shape[3])))
        if name == "block5_conv1":
            break
    return 2.0 * sum(f for _, f in per), per


def _arrays_in(obj, seen: dict) -> None:
    """Collect the distinct arrays (by their base buffer) reachable from a forward cache."""
    if hasattr(obj, "nbytes") and hasattr(obj, "shape"):
        base = obj
        while getattr(base, "base", None) is not None and hasattr(base.base, "nbytes"):
            base = base.base
        seen[id(base)] = int(base.nbytes)
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            _arrays_in(o, seen)


def _kept_bytes(model) -> tuple[int, int]:
    """(activation bytes, transformed-weight bytes) held by the model's forward cache."""
    weights = {}
    for w, b in model.params.values():
        _arrays_in((w, b), weights)
    seen: dict = {}
    wino: dict = {}
    for _, _, cache in model._tape:
        for part in (cache if isinstance(cache, tuple) and not hasattr(cache, "_fields") else (cache,)):
            if getattr(part, "u", None) is not None:
                _arrays_in(part.u, wino)
            if hasattr(part, "_fields"):
                _arrays_in(tuple(getattr(part, f) for f in part._fields if f != "u"), seen)
            else:
                _arrays_in(part, seen)
    act = sum(v for k, v in seen.items() if k not in weights)
    return act, sum(wino.values())


class _Breakdown:
    """Wrap numpynst.layers' functions to time each call (synchronizing on GPUs)."""

    def __init__(self, layers_mod, conv_names, sync):
        self.rows: dict = {}
        self.sync = sync
        self.names = list(conv_names)
        self.mod = layers_mod
        self.reset()
        for fn in ("conv2d_forward", "conv2d_backward", "relu_forward", "relu_backward",
                   "maxpool_forward", "maxpool_backward", "avgpool_forward", "avgpool_backward"):
            setattr(layers_mod, fn, self._wrap(fn, getattr(layers_mod, fn)))

    def reset(self):
        self.fwd_i = 0
        self.bwd_i = None

    def _wrap(self, fn_name, fn):
        def wrapped(*a, **k):
            self.sync()
            t0 = time.perf_counter()
            r = fn(*a, **k)
            self.sync()
            dt = time.perf_counter() - t0
            if fn_name == "conv2d_forward":
                layer, col = self.names[self.fwd_i], "conv_fwd"
                self.fwd_i += 1
            elif fn_name == "conv2d_backward":
                self.bwd_i = (self.fwd_i if self.bwd_i is None else self.bwd_i) - 1
                layer, col = self.names[self.bwd_i], "conv_dx"
            elif fn_name.endswith("_forward"):
                layer, col = self.names[max(self.fwd_i - 1, 0)], "other_fwd:" + fn_name
            else:
                i = self.fwd_i if self.bwd_i is None else self.bwd_i
                # relu_backward runs before its conv's backward; a pool's before the conv below it
                layer = self.names[max(i - 1, 0)] if fn_name.startswith("relu") else self.names[max(i - 1, 0)]
                col = "other_bwd:" + fn_name
            self.rows.setdefault(layer, {}).setdefault(col, []).append(dt)
            return r
        return wrapped


def worker_numpynst(args) -> None:
    import numpy as np

    sys.path.insert(0, ROOT)
    from numpynst import layers
    from numpynst.vgg import VGG

    xp = np
    sync = lambda: None  # noqa: E731
    if args.backend == "cupy":
        import cupy as cp
        xp = cp
        sync = cp.cuda.Device().synchronize
    from numpynst.backend import tf32_matmul
    from numpynst.layers.fast import dispatch
    if args.precision == "tf32":
        tf32_matmul(xp).__enter__()          # for the whole worker process
    model = VGG.from_h5(args.weights, backend=args.backend,
                        dtype=np.float16 if args.precision == "fp16" else np.float32)
    rng = np.random.default_rng(0)
    x = xp.asarray((rng.standard_normal((1, args.size, args.size, 3)) * 60).astype(np.float32))
    shapes = {}
    acts = model.forward(x, OUTPUTS)
    for k, v in acts.items():
        shapes[k] = v.shape
    grads = {k: xp.asarray((rng.standard_normal(s) * 1e-3).astype(np.float32)) for k, s in shapes.items()}
    del acts
    model.clear()
    total_flops, per_layer = _conv_flops(model, args.size)
    bd = _Breakdown(layers, model.conv_names, sync) if args.breakdown else None
    kept = None
    pool_peak = 0

    def step():
        nonlocal kept, pool_peak
        if bd:
            bd.reset()
        model.forward(x, OUTPUTS)
        if kept is None:
            kept = _kept_bytes(model)
        dx = model.backward(dict(grads), release=True)  # as numpynst.objective does (it empties the dict)
        model.clear()
        if args.backend == "cupy":
            pool_peak = max(pool_peak, cp.get_default_memory_pool().total_bytes())
        return dx

    _serve(args, step, sync, xp, total_flops, lambda: {
        "kept_bytes": kept[0] if kept else None, "wino_bytes": kept[1] if kept else None,
        "gpu_peak_bytes": pool_peak if args.backend == "cupy" else None,
        "breakdown": None if not bd else {k: {c: float(np.median(v)) for c, v in d.items()} for k, d in bd.rows.items()},
        "per_layer_flops": per_layer, "precision": args.precision,
        "measured_choices": [{"pass": k[0], "shape": k[1], "w": k[2], "method": v["method"], "seconds": v["seconds"]}
                             for k, v in dispatch.measured_choices().items()]})


def worker_torch(args) -> None:
    import numpy as np
    import torch

    sys.path.insert(0, ROOT)
    from numpynst.vgg import VGG

    torch.set_num_threads(args.threads)
    dev = "cuda" if args.backend == "cupy" else "cpu"
    if dev == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = args.precision == "tf32"
        torch.backends.cudnn.allow_tf32 = args.precision == "tf32"
        torch.backends.cudnn.benchmark = True
    autocast = (torch.autocast("cuda", dtype=torch.float16) if dev == "cuda" and args.precision == "fp16"
                else __import__("contextlib").nullcontext())
    model = VGG.from_h5(args.weights, backend="numpy")
    convs = []
    for name in model.layer_names:
        if name.endswith("_pool"):
            convs.append((name, None, None))
        else:
            w, b = model.params[name]
            convs.append((name, torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1))).to(dev),
                          torch.from_numpy(np.array(b)).to(dev)))
        if name == "block5_conv1":
            break
    rng = np.random.default_rng(0)
    x0 = torch.from_numpy((rng.standard_normal((1, 3, args.size, args.size)) * 60).astype(np.float32)).to(dev)
    F = torch.nn.functional

    def forward(x):
        out = {}
        a = x
        for name, w, b in convs:
            a = F.max_pool2d(a, 2, 2) if w is None else F.relu(F.conv2d(a, w, b, padding=1))
            if name in OUTPUTS:
                out[name] = a
        return out

    with torch.no_grad():
        shapes = {k: v.shape for k, v in forward(x0).items()}
    grads = {k: torch.from_numpy((rng.standard_normal(tuple(s)) * 1e-3).astype(np.float32)).to(dev)
             for k, s in shapes.items()}
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)

    def step():
        x = x0.clone().requires_grad_(True)
        with autocast:
            out = forward(x)
        names = list(out)
        torch.autograd.backward([out[n] for n in names], [grads[n].to(out[n].dtype) for n in names])
        return x.grad

    total_flops, _ = _conv_flops(model, args.size)
    _serve(args, step, sync, None, total_flops, lambda: {
        "gpu_peak_bytes": torch.cuda.max_memory_allocated() if dev == "cuda" else None})


def _serve(args, step, sync, xp, total_flops, final) -> None:
    """Worker loop: one timed iteration per 'run' line on stdin, a JSON line back for each."""
    import resource

    timer = None
    if args.backend == "cupy":
        if xp is not None:       # the numpynst worker: CuPy events (elapsed time in ms)
            timer = xp.cuda.Event, xp.cuda.get_elapsed_time
        else:                    # the torch worker
            import torch
            timer = (lambda: torch.cuda.Event(enable_timing=True)), (lambda a, b: a.elapsed_time(b))
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "run":
            sync()
            if timer:
                e0, e1 = timer[0](), timer[0]()
                e0.record()
                step()
                e1.record()
                e1.synchronize()
                t = timer[1](e0, e1) / 1e3
            else:
                t0 = time.perf_counter()
                step()
                sync()
                t = time.perf_counter() - t0
            print(json.dumps({"t": t}), flush=True)
        elif cmd == "quit":
            info = final()
            info["maxrss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            info["flops"] = total_flops
            print(json.dumps(info), flush=True)
            return


# ---------------------------------------------------------------------------------------------- parent
def _machine(threads: int) -> str:
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for ln in fh:
                if ln.startswith("model name"):
                    cpu = ln.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import numpy as np
    blas = "?"
    try:
        cfg = np.show_config(mode="dicts")
        b = cfg["Build Dependencies"]["blas"]
        blas = f"{b.get('name')} {b.get('version')}"
    except Exception:
        pass
    core = _openblas_core()
    return (f"{cpu}, {os.cpu_count()} logical CPUs; Python {platform.python_version()}, NumPy {np.__version__} "
            f"({blas}{', OpenBLAS kernel ' + core if core else ''}; OPENBLAS_CORETYPE="
            f"{os.environ.get('OPENBLAS_CORETYPE', 'unset')}); threads={threads}")


def _openblas_core() -> str | None:
    """The OpenBLAS kernel family NumPy's OpenBLAS picked at load time (best effort)."""
    import ctypes
    import glob

    import numpy as np
    libdir = os.path.join(os.path.dirname(np.__file__), "..", "numpy.libs")
    for path in glob.glob(os.path.join(libdir, "*openblas*")):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for sym in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename", "openblas_get_corename64_",
                    "openblas_get_corename"):
            fn = getattr(lib, sym, None)
            if fn is not None:
                fn.restype = ctypes.c_char_p
                return fn().decode()
    return None


def _spawn(kind: str, size: int, args, gpu_conv: str | None = None) -> subprocess.Popen:
    env = dict(os.environ)
    for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[v] = str(args.threads)
    if gpu_conv:
        env["NUMPYNST_GPU_CONV"] = gpu_conv
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--size", str(size), "--backend", args.backend,
           "--threads", str(args.threads), "--precision", args.precision]
    if args.weights:
        cmd += ["--weights", args.weights]
    if args.breakdown and kind == "numpynst":
        cmd.append("--breakdown")
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)


def _ask(p: subprocess.Popen, cmd: str) -> dict:
    p.stdin.write(cmd + "\n")
    p.stdin.flush()
    line = p.stdout.readline()
    if not line:
        raise RuntimeError(f"worker {p.args[3]} died (exit code {p.wait()})")
    return json.loads(line)


def _fmt_bytes(n) -> str:
    return "-" if n is None else f"{n / 2**30:.2f} GiB"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Time one NST iteration (numpynst vs PyTorch).")
    ap.add_argument("--backend", choices=("numpy", "cupy"), default="numpy")
    ap.add_argument("--size", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--repeat", type=int, default=7, help="timed iterations per library and size")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--weights", default=None, help="Keras-layout VGG19 .h5 (default: the shipped file)")
    ap.add_argument("--breakdown", action="store_true", help="per-layer table for numpynst")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--gpu-conv", nargs="+", default=None,
                    choices=("im2col", "implicit", "measure", "winograd", "winograd4"),
                    help="CuPy: one numpynst worker per 3x3-conv path (default: the automatic choice)")
    ap.add_argument("--precision", choices=("fp32", "tf32", "fp16"), default="fp32",
                    help="both sides' arithmetic (tf32 and fp16 on a GPU only)")
    ap.add_argument("--json", default=None, help="also write all timings and figures to this JSON file")
    ap.add_argument("--pause", type=float, default=0.3, help="seconds between iterations (lets spinning "
                                                             "BLAS/OpenMP threads of the other worker sleep)")
    ap.add_argument("--worker", choices=("numpynst", "torch"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        args.size = args.size[0]
        (worker_numpynst if args.worker == "numpynst" else worker_torch)(args)
        return 0

    have_torch = False
    if not args.no_torch:
        import importlib.util
        have_torch = importlib.util.find_spec("torch") is not None
    print(f"machine: {_machine(args.threads)}")
    if args.backend == "cupy":
        try:
            import cupy
            props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
            print(f"GPU: {props['name'].decode() if isinstance(props['name'], bytes) else props['name']}, "
                  f"CuPy {cupy.__version__}, CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}")
        except Exception as exc:  # report and go on: the workers will fail with the real error
            print(f"GPU: unavailable ({type(exc).__name__}: {exc})")
    print(f"backend: {args.backend}; iterations per library and size: {args.repeat} (+1 warm-up), medians" + "\n")
    if args.gpu_conv and args.backend != "cupy":
        ap.error("--gpu-conv needs --backend cupy")
    if args.precision == "tf32" and args.backend != "cupy":
        ap.error("--precision tf32 needs --backend cupy")
    variants = [None] if not args.gpu_conv else list(dict.fromkeys(args.gpu_conv))
    rows = []
    for size in args.size:
        workers = {("numpynst" if v is None or len(variants) == 1 else f"numpynst[{v}]"):
                   _spawn("numpynst", size, args, v) for v in variants}
        if have_torch:
            workers["torch"] = _spawn("torch", size, args)
        times: dict = {k: [] for k in workers}
        for r in range(args.repeat + 1):
            for k, p in workers.items():
                time.sleep(args.pause)
                t = _ask(p, "run")["t"]
                if r > 0:
                    times[k].append(t)
        info = {k: _ask(p, "quit") for k, p in workers.items()}
        for p in workers.values():
            p.wait()
        med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
        ours = [k for k in workers if k != "torch"]
        ni = info[ours[0]]
        flops = ni["flops"]
        print(f"== {size} px: {flops / 1e9:.0f} GFLOP per iteration (direct-convolution count)")
        for k in workers:
            mem = info[k]["gpu_peak_bytes"] if args.backend == "cupy" else info[k]["maxrss_bytes"]
            spread = f"[{min(times[k]):.3f} .. {max(times[k]):.3f}]"
            print(f"  {k:9s} {med[k]:8.3f} s/iter {spread:>18s}  {flops / med[k] / 1e9:6.0f} GFLOP/s  "
                  f"peak {'GPU pool' if args.backend == 'cupy' else 'RSS'} {_fmt_bytes(mem)}")
        for k in ours:
            if "torch" in med:
                print(f"  ratio {k}/torch = {med[k] / med['torch']:.2f}")
        print(f"  numpynst forward cache kept for backward: activations {_fmt_bytes(ni['kept_bytes'])}, "
              f"Winograd-transformed weights {_fmt_bytes(ni['wino_bytes'])}")
        if ni.get("breakdown"):
            _print_breakdown(ni["breakdown"], dict(ni["per_layer_flops"]))
        for k in ours:
            chosen = [c for c in info[k].get("measured_choices") or [] if c["method"] != "im2col"]
            if info[k].get("measured_choices"):
                print(f"  {k}: measured choices: {len(info[k]['measured_choices'])} shapes, not im2col: "
                      + (", ".join(f"{c['pass']} {tuple(c['shape'])}x{tuple(c['w'])[2:]} {c['method']}"
                                   for c in chosen) or "none"))
        rows.append({"size": size, "flops": flops, "times": times, "median": med,
                     "ratio_to_torch": {k: med[k] / med["torch"] for k in ours} if "torch" in med else {},
                     "info": info})
        print(flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"backend": args.backend, "repeat": args.repeat, "threads": args.threads,
                       "precision": args.precision,
                       "machine": _machine(args.threads), "sizes": rows}, fh, indent=1)
    return 0


def _print_breakdown(bd: dict, flops: dict) -> None:
    print(f"  {'layer':13s} {'conv fwd':>16s} {'conv dx':>16s} {'relu/pool fwd':>14s} {'relu/pool bwd':>14s}")
    tot = {"conv_fwd": 0.0, "conv_dx": 0.0, "other_fwd": 0.0, "other_bwd": 0.0}
    for layer, d in bd.items():
        cells = []
        for col in ("conv_fwd", "conv_dx"):
            t = d.get(col)
            if t is None:
                cells.append(f"{'-':>16s}")
            else:
                tot[col] += t
                cells.append(f"{t * 1e3:7.1f}ms {flops[layer] / t / 1e9:4.0f}GF")
        for col in ("other_fwd", "other_bwd"):
            t = sum(v for c, v in d.items() if c.startswith(col + ":"))
            tot[col] += t
            cells.append(f"{t * 1e3:12.1f}ms")
        print(f"  {layer:13s} " + " ".join(cells))
    print(f"  {'total':13s} {tot['conv_fwd'] * 1e3:14.1f}ms {tot['conv_dx'] * 1e3:14.1f}ms "
          f"{tot['other_fwd'] * 1e3:12.1f}ms {tot['other_bwd'] * 1e3:12.1f}ms")


if __name__ == "__main__":
    sys.exit(main())
