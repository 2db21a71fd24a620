"""The Python steps of benchmarks/gpu_check.sh, and the JSON of figures it ends with.

    python benchmarks/gpu_figures.py env      --json W/env.json
    python benchmarks/gpu_figures.py agree    --json W/agree.json --backend cupy --size 256
    python benchmarks/gpu_figures.py batch    --json W/batch.json --outdir W/batch --gpu --size 256 --iterations 50
    python benchmarks/gpu_figures.py notebook --out OUT/10_gpu_with_cupy.ipynb
    python benchmarks/gpu_figures.py print    --json W/print.json --backend cupy --full W/print.jpg --sheet OUT/print_8192.jpg
    python benchmarks/gpu_figures.py collect  --work W --out OUT/gpu_figures.json

Each step writes its own small JSON into the work folder W; ``collect`` merges them with what the
shell recorded (``steps.tsv``: step, exit code, seconds; the pytest JUnit XML; the stylize log; the
nvidia-smi memory samples) into one file and prints a short table. Every step also runs without a
GPU (``--backend numpy``, no ``--gpu``), which is how gpu_check.sh's CPU mode checks the plumbing.

What ``print`` measures: one print-size picture on the device, coarse to fine (scales 0.25, 0.5, 1:
2048, 4096 and 8192 px), within ``--max-memory`` (the planner tiles the top scale): seconds per scale
and per iteration at the top scale, J at each scale's start and end, per scale the planner's estimated
peak beside the measured one (CuPy's pool sampled every 50 ms, and nvidia-smi's every 100 ms; on
NumPy the process's resident set), whether nvidia-smi's peak stayed within the budget, the memory
pool's size at the end, the time to write the full picture; a preview beside a 1:1 crop is the one
file kept.

What ``agree`` measures: VGG19 (the shipped weights) forward to the six default layers and backward
to the pixels from fixed random gradients, and the style-transfer objective ``J, dJ/dx`` on the
bundled chelsea + ihc pair, each on NumPy float64 (the reference), NumPy float32, and the device
backend in float32 and float64. For each quantity: the norm-wise relative error
``|a - ref| / |ref|`` and the largest element error over the largest reference element.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = ["block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1", "block4_conv2"]


def _write(path: str | Path, data: dict) -> None:
    Path(path).write_text(json.dumps(data, indent=1, default=str) + "\n")


# ---------------------------------------------------------------------------------------------- env
def cmd_env(a) -> int:
    from numpynst.backend import cupy_available, resolve

    info: dict = {"python": platform.python_version(), "numpy": np.__version__, "platform": platform.platform()}
    ok, reason = cupy_available()
    if ok:
        cp = resolve("cupy")
        dev = cp.cuda.Device()
        props = cp.cuda.runtime.getDeviceProperties(dev.id)
        name = props["name"]
        info.update(cupy=cp.__version__, cuda_runtime=cp.cuda.runtime.runtimeGetVersion(),
                    cuda_driver=cp.cuda.runtime.driverGetVersion(),
                    gpu=name.decode() if isinstance(name, bytes) else name,
                    compute_capability=f"{props['major']}.{props['minor']}",
                    multiprocessors=props["multiProcessorCount"], gpu_memory_bytes=props["totalGlobalMem"])
    else:
        info["cupy_unavailable"] = reason
    if importlib.util.find_spec("torch") is not None:
        import torch
        info["torch"] = torch.__version__
        info["torch_cuda"] = torch.version.cuda
        if torch.cuda.is_available():
            info["cudnn"] = torch.backends.cudnn.version()
            info["torch_gpu"] = torch.cuda.get_device_name(0)
    smi = shutil.which("nvidia-smi")
    if smi:
        q = "name,driver_version,memory.total,memory.used,clocks.sm,clocks.max.sm,temperature.gpu,power.draw"
        r = subprocess.run([smi, f"--query-gpu={q}", "--format=csv"], capture_output=True, text=True, timeout=30)
        info["nvidia_smi"] = r.stdout.strip() or r.stderr.strip()
    _write(a.json, info)
    print(json.dumps(info, indent=1, default=str))
    return 0


# ---------------------------------------------------------------------------------------------- agree
def _errors(a: np.ndarray, ref: np.ndarray) -> dict:
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    scale = float(np.abs(ref).max()) or 1.0
    return {"rel_norm": float(np.linalg.norm(a - ref) / (np.linalg.norm(ref) or 1.0)),
            "rel_max": float(np.abs(a - ref).max() / scale)}


def _run_model(backend: str, dtype, x: np.ndarray, grads: dict, content: np.ndarray, style: np.ndarray) -> dict:
    from numpynst.backend import to_device, to_host
    from numpynst.transfer import Objective
    from numpynst.vgg import VGG, preprocess

    model = VGG.from_h5(backend=backend, dtype=dtype)
    acts = model.forward(to_device(x, backend, dtype), OUTPUTS)
    out = {f"forward {k}": to_host(v) for k, v in acts.items()}
    out["backward dx"] = to_host(model.backward({k: to_device(g, backend, dtype) for k, g in grads.items()}))
    model.clear()
    obj = Objective(model, preprocess(content, dtype=dtype, xp=backend), preprocess(style, dtype=dtype, xp=backend))
    J, g = obj.value_and_grad(preprocess(content, dtype=dtype, xp=backend) + 0.0)
    out["objective J"] = to_host(J).reshape(1)
    out["objective dJ/dx"] = to_host(g)
    return out


def cmd_agree(a) -> int:
    from numpynst.image import load_image, sample_path

    rng = np.random.default_rng(0)
    s = a.size
    x = rng.standard_normal((1, s, s, 3)) * 60
    shapes = {"block1_conv1": 1, "block2_conv1": 2, "block3_conv1": 4, "block4_conv1": 8,
              "block5_conv1": 16, "block4_conv2": 8}
    widths = {"block1": 64, "block2": 128, "block3": 256, "block4": 512, "block5": 512}
    grads = {k: rng.standard_normal((1, s // d, s // d, widths[k[:6]])) * 1e-3 for k, d in shapes.items()}
    content = load_image(sample_path("chelsea"), size=s)
    style = load_image(sample_path("ihc"), size=s)
    t0 = time.perf_counter()
    ref = _run_model("numpy", np.float64, x, grads, content, style)
    runs = {(b, np.dtype(d).name): _run_model(b, d, x, grads, content, style)
            for b, d in dict.fromkeys([("numpy", np.float32), (a.backend, np.float32), (a.backend, np.float64)])}
    result: dict = {"size": s, "backend": a.backend, "reference": "numpy float64", "errors": {}}
    for (backend, dtype), got in runs.items():
        result["errors"][f"{backend} {dtype}"] = {k: _errors(got[k], ref[k]) for k in ref}
    if a.backend != "numpy":       # the device against NumPy in the same precision
        dev, f32 = runs[(a.backend, "float32")], runs[("numpy", "float32")]
        result["errors"][f"{a.backend} float32 vs numpy float32"] = {k: _errors(dev[k], f32[k]) for k in ref}
    result["worst_rel_norm"] = {label: max(e["rel_norm"] for e in errs.values())
                                for label, errs in result["errors"].items()}
    result["seconds"] = time.perf_counter() - t0
    _write(a.json, result)
    for label, errs in result["errors"].items():
        worst = max(errs, key=lambda k: errs[k]["rel_norm"])
        print(f"{label:32s} worst rel. error {errs[worst]['rel_norm']:.2e} (norm-wise, {worst}), "
              f"{max(e['rel_max'] for e in errs.values()):.2e} (largest element)")
    return 0


# ---------------------------------------------------------------------------------------------- batch
def cmd_batch(a) -> int:
    """``numpynst batch --grid`` on a one-worker Dask cluster started here, on GPU 0 with ``--gpu``.

    dask-cuda's LocalCUDACluster (what ``--gpu`` starts without ``--scheduler``) is not used: its
    wheels pin their own dask and are not on the device. Instead the documented multi-machine path
    runs on one machine: a scheduler and one worker process pinned with CUDA_VISIBLE_DEVICES=0,
    then ``numpynst batch --gpu --scheduler ADDRESS``, exactly as a user with GPU workers would.
    """
    from distributed import LocalCluster

    from numpynst.image import sample_names, sample_path

    out = Path(a.outdir)
    inputs = out.parent / (out.name + "_inputs")
    for kind in ("content", "style"):
        (inputs / kind).mkdir(parents=True, exist_ok=True)
        for name in sample_names(kind):
            shutil.copy(sample_path(name), inputs / kind / sample_path(name).name)
    env = {"CUDA_VISIBLE_DEVICES": "0"} if a.gpu else {}
    t_start = time.perf_counter()
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, env=env,
                      dashboard_address=":0") as cluster:
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "numpynst", "batch", "--grid", str(inputs / "content"), str(inputs / "style"),
               "-o", str(out), "--size", str(a.size), "--iterations", str(a.iterations), "--quiet",
               "--scheduler", cluster.scheduler_address] + (["--gpu"] if a.gpu else [])
        print(" ".join(cmd), flush=True)
        rc = subprocess.run(cmd, timeout=a.timeout).returncode
        seconds = time.perf_counter() - t0
        return _batch_report(a, out, rc, seconds, t0 - t_start)   # before the cluster's (slow) shutdown


def _batch_report(a, out: Path, rc: int, seconds: float, start_seconds: float) -> int:
    with open(out / "summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    status = {}
    for r in rows:
        status[r["status"]] = status.get(r["status"], 0) + 1
    backends = sorted({str(json.loads(p.read_text()).get("backend")) for p in out.glob("*.json")})
    result = {"exit_code": rc, "jobs": len(rows), "status": status, "gpu": a.gpu, "size": a.size,
              "iterations": a.iterations, "seconds": seconds, "cluster_start_seconds": start_seconds,
              "jobs_per_minute": 60 * len(rows) / seconds if seconds else None,
              "job_seconds": [float(r["seconds"]) for r in rows if r.get("seconds")],
              "sidecar_backends": backends, "contact_sheet": (out / "contact_sheet.png").exists()}
    _write(a.json, result)
    if a.sheet and result["contact_sheet"]:
        shutil.copy(out / "contact_sheet.png", a.sheet)
    print(json.dumps(result, indent=1))
    return 0 if rc == 0 and status.get("done", 0) == len(rows) else 1


# ---------------------------------------------------------------------------------------------- notebook
def cmd_notebook(a) -> int:
    """Build tutorial 10 from its source and execute it with tutorials/_build.py's own functions
    (kernel from this interpreter, temporary working directory); write it to ``--out`` only, never
    into tutorials/. With a GPU this is a full run (unset NUMPYNST_FAST) whose result can be copied
    over tutorials/10_gpu_with_cupy.ipynb as long as its source is unchanged."""
    import nbformat

    spec = importlib.util.spec_from_file_location("numpynst_tutorials_build", ROOT / "tutorials" / "_build.py")
    build = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = build
    spec.loader.exec_module(build)
    (src,) = [s for s in build.sources() if s.stem.startswith(a.name)]
    os.environ.pop("MPLBACKEND", None)
    t0 = time.perf_counter()
    with build.kernel_dir() as kernel:
        nb = build.execute(build.build_notebook(src), kernel, timeout=a.timeout)
    tmp = Path(a.out).with_suffix(".tmp")
    nbformat.write(nb, str(tmp))
    nbformat.validate(nbformat.read(str(tmp), as_version=4))     # complete before it takes the name
    tmp.replace(a.out)
    fast = os.environ.get("NUMPYNST_FAST") == "1"
    print(f"{src.stem}: executed in {time.perf_counter() - t0:.1f} s ({'fast' if fast else 'full'} mode) -> {a.out}")
    return 0


# ---------------------------------------------------------------------------------------------- print
class _MemorySampler:
    """Memory samples every ``period`` seconds in a thread while a run goes on: ``(seconds, bytes)``.

    CuPy: the default memory pool's reserved bytes (``total_bytes``: what the pool holds from the
    driver, freed-but-cached blocks included); NumPy: the process's resident set (``/proc/self/statm``).
    Beside them, where ``nvidia-smi`` exists, its ``memory.used`` lines (MiB, the whole GPU: the pool,
    the CUDA context, cuBLAS's workspaces), each stamped when it arrives.
    """

    def __init__(self, backend: str, t0: float, period: float = 0.05):
        import threading
        self.t0, self.period, self.samples, self.smi = t0, period, [], []
        self.what = "cupy pool (reserved)" if backend == "cupy" else "process RSS"
        if backend == "cupy":
            import cupy
            pool = cupy.get_default_memory_pool()
            self._read = pool.total_bytes
        else:
            page = os.sysconf("SC_PAGE_SIZE")
            self._read = lambda: int(Path("/proc/self/statm").read_text().split()[1]) * page
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._poll, daemon=True)]
        self._proc = None
        if shutil.which("nvidia-smi"):
            self._proc = subprocess.Popen(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits",
                                           "-lms", "100"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            self._threads.append(threading.Thread(target=self._read_smi, daemon=True))
        for t in self._threads:
            t.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter() - self.t0, self._read()))
            self._stop.wait(self.period)

    def _read_smi(self) -> None:
        for line in self._proc.stdout:
            if line.strip().isdigit():
                self.smi.append((time.perf_counter() - self.t0, float(line.strip())))

    def stop(self) -> None:
        self._stop.set()
        if self._proc is not None:
            self._proc.terminate()
        for t in self._threads:
            t.join(timeout=5)

    def peak(self, t_from: float, t_to: float) -> dict:
        """Largest sample in ``[t_from, t_to]``: ``{"bytes", "nvidia_smi_mib"}`` (None where none)."""
        own = [b for t, b in self.samples if t_from <= t <= t_to]
        smi = [m for t, m in self.smi if t_from <= t <= t_to]
        return {"bytes": max(own) if own else None, "nvidia_smi_mib": max(smi) if smi else None}


def cmd_print(a) -> int:
    """A print-size stylize on ``--backend``, timed per scale, memory sampled per scale and set beside
    the planner's estimate; SIGTERM stops it with the best image."""
    import signal

    from PIL import Image

    from numpynst.image import sample_path, save_image
    from numpynst.transfer import prepare, run

    def interrupt(signum, frame):           # the step's timeout: stop like Ctrl-C, keep the best image
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, interrupt)
    marks: list[tuple[float, int, float]] = []          # (scale, iteration, seconds since the call)
    t0 = time.perf_counter()
    prepared = prepare(sample_path(a.content), sample_path(a.style), size=a.size, scales=a.scales,
                       iterations=a.iterations, tol=None, max_memory=a.max_memory, backend=a.backend,
                       precision=a.precision)
    sampler = _MemorySampler(a.backend, t0)
    try:
        res = run(prepared, progress=False, callback=lambda p: marks.append(
            (p.scale, p.iteration, time.perf_counter() - t0)))
    finally:
        sampler.stop()
    seconds = time.perf_counter() - t0
    per_scale, n, history = [], a.iterations + 1, res.history["J"]
    for k, scale in enumerate(a.scales):
        ms = [m for m in marks if m[0] == scale]
        js = history[k * n:(k + 1) * n]
        if not ms or not js:
            break
        before = max((m[2] for m in marks if m[0] in a.scales[:k]), default=0.0)
        # after the scale's first logging point (the start image evaluated, the set-up done) only the
        # optimizer runs: its mean time per iteration (one interval alone swings with line searches)
        step = (ms[-1][2] - ms[0][2]) / (ms[-1][1] - ms[0][1]) if len(ms) > 1 else None
        plan = prepared.plans[scale]
        peak = sampler.peak(before, ms[-1][2])
        per_scale.append({"scale": scale, "iterations": ms[-1][1], "seconds": ms[-1][2] - before,
                          "seconds_per_iteration": step, "J_start": js[0], "J_end": js[-1],
                          "hw": list(plan.hw), "plan": "whole" if plan.tile is None else
                          f"{plan.tiles} tiles of {plan.tile[1]}x{plan.tile[0]} (+{plan.halo} px halo)",
                          "planned_peak_bytes": plan.peak, "measured_peak_bytes": peak["bytes"],
                          "nvidia_smi_peak_mib": peak["nvidia_smi_mib"]})
    pool = None
    if a.backend == "cupy":
        import cupy
        pool = cupy.get_default_memory_pool().total_bytes()
    full = Path(a.full)
    t1 = time.perf_counter()
    save_image(full, res.image, overwrite=True)
    write_seconds = time.perf_counter() - t1
    h, w = res.image.shape[:2]
    side = min(a.crop, h, w)
    preview = Image.fromarray(res.image).resize((side * w // h, side), Image.LANCZOS)
    cy, cx = (h - side) // 2, (w - side) // 2
    sheet = np.concatenate([np.asarray(preview), res.image[cy:cy + side, cx:cx + side]], axis=1)
    save_image(a.sheet, np.ascontiguousarray(sheet), overwrite=True)
    smi_peak = max((m for _, m in sampler.smi), default=None)
    fig = {"size": [w, h], "backend": a.backend, "precision": a.precision, "max_memory": a.max_memory,
           "budget_bytes": prepared.budget, "scales": a.scales, "iterations_per_scale": a.iterations,
           "iterations": res.iterations, "stopped": res.stopped, "seconds": seconds, "per_scale": per_scale,
           "memory_measured_by": sampler.what, "pool_bytes_at_end": pool,
           "nvidia_smi_peak_mib": smi_peak,
           "within_budget": None if smi_peak is None else smi_peak * 2 ** 20 <= prepared.budget,
           "write_seconds": write_seconds, "full_bytes": full.stat().st_size, "sheet": str(a.sheet),
           "crop_box": [cy, cx, side]}
    _write(a.json, fig)
    for r in per_scale:
        spi = "-" if r["seconds_per_iteration"] is None else f"{r['seconds_per_iteration']:.2f}"
        meas = "-" if r["measured_peak_bytes"] is None else f"{r['measured_peak_bytes'] / 2**30:.2f} GiB"
        print(f"scale {r['scale']} ({r['hw'][1]}x{r['hw'][0]}, {r['plan']}): {r['iterations']} iterations in "
              f"{r['seconds']:.1f} s ({spi} s/iteration), J {r['J_start']:.4f} -> {r['J_end']:.4f}; memory "
              f"planned {r['planned_peak_bytes'] / 2**30:.2f} GiB, measured {meas} ({sampler.what}), "
              f"nvidia-smi {r['nvidia_smi_peak_mib'] if r['nvidia_smi_peak_mib'] is not None else '-'} MiB")
    pool_text = "-" if pool is None else f"{pool / 2**30:.2f} GiB"
    print(f"print {w}x{h}: {res.iterations} iterations in {seconds:.1f} s, stopped: {res.stopped}; memory pool "
          f"at the end {pool_text}; budget {prepared.budget / 2**30:.2f} GiB, nvidia-smi peak "
          f"{'-' if smi_peak is None else f'{smi_peak:.0f} MiB'} (within budget: {fig['within_budget']}); "
          f"full picture written in {write_seconds:.1f} s ({full.stat().st_size / 2**20:.1f} MiB)", flush=True)
    return 0


# ---------------------------------------------------------------------------------------------- precision
def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def cmd_precision(a) -> int:
    """``--precision`` against fp32: the objective (J, dJ/dx against NumPy float64, at ``--agree-size``)
    and a whole picture (``--size``, ``--iterations`` L-BFGS: time, J, PSNR of the picture against
    fp32's). On NumPy only fp16 runs (its emulation); tf32 is skipped with the reason."""
    from numpynst.backend import to_device, to_host
    from numpynst.image import load_image, sample_path
    from numpynst.objective import Objective
    from numpynst.transfer import stylize
    from numpynst.vgg import VGG, preprocess

    precisions = ["fp32", "fp16"] + (["tf32"] if a.backend == "cupy" else [])
    result: dict = {"backend": a.backend, "agree_size": a.agree_size, "size": a.size, "iterations": a.iterations,
                    "skipped": {} if a.backend == "cupy" else {"tf32": "TF32 exists on a GPU only"},
                    "objective": {}, "picture": {}}
    s = a.agree_size
    c = load_image(sample_path("chelsea"), size=s)
    st = load_image(sample_path("ihc"), size=s)
    x = preprocess(c, dtype=np.float64)
    x = x + np.random.default_rng(0).normal(0, 20, x.shape)

    def objective(backend, dtype, tf32=False):
        from numpynst.backend import resolve, tf32_matmul
        m = VGG.from_h5(backend=backend, dtype=dtype)
        xp = resolve(backend)
        with tf32_matmul(xp) if tf32 else __import__("contextlib").nullcontext():
            obj = Objective(m, preprocess(c, xp=backend, dtype=m.image_dtype),
                            preprocess(st, xp=backend, dtype=m.image_dtype), weights_mode="calibrated")
            J, g = obj.value_and_grad(to_device(x, backend, m.image_dtype))
        return float(to_host(J)), to_host(g).astype(np.float64).ravel()

    J64, g64 = objective("numpy", np.float64)
    runs = {"fp32": (a.backend, np.float32, False), "fp16": (a.backend, np.float16, False),
            "tf32": (a.backend, np.float32, True)}
    if a.backend == "cupy":
        runs["fp16 numpy emulation"] = ("numpy", np.float16, False)
    for label, (backend, dtype, tf32) in runs.items():
        if label not in precisions and label != "fp16 numpy emulation":
            continue
        J, g = objective(backend, dtype, tf32)
        result["objective"][label] = {"J": J, "J_rel_error": abs(J - J64) / abs(J64),
                                      "grad_rel_error": float(np.linalg.norm(g - g64) / np.linalg.norm(g64)),
                                      "grad_cosine": float(g @ g64 / np.linalg.norm(g) / np.linalg.norm(g64))}
    images = {}
    for prec in precisions:
        t0 = time.perf_counter()
        r = stylize(sample_path("astronaut"), sample_path("ihc"), size=a.size, iterations=a.iterations, tol=None,
                    backend=a.backend, precision=prec)
        images[prec] = r.image
        result["picture"][prec] = {"seconds": time.perf_counter() - t0, "optimisation_seconds": r.seconds,
                                   "J_start": float(r.history["J"][0]), "J_end": float(r.history["J"][-1]),
                                   "stopped": r.stopped}
    for prec in precisions[1:]:
        result["picture"][prec]["psnr_vs_fp32_db"] = _psnr(images[prec], images["fp32"])
        result["picture"][prec]["J_end_rel_vs_fp32"] = (abs(result["picture"][prec]["J_end"] -
                                                            result["picture"]["fp32"]["J_end"])
                                                        / result["picture"]["fp32"]["J_end"])
    _write(a.json, result)
    for label, e in result["objective"].items():
        print(f"objective {label:22s} J rel. error {e['J_rel_error']:.2e}, dJ/dx rel. error "
              f"{e['grad_rel_error']:.2e} (cosine {e['grad_cosine']:.6f}) vs NumPy float64 at {s} px")
    for prec, r in result["picture"].items():
        extra = "" if prec == "fp32" else (f", J_end {r['J_end_rel_vs_fp32']:.2e} rel. to fp32's, PSNR vs fp32 "
                                           f"{r['psnr_vs_fp32_db']:.1f} dB")
        print(f"picture {prec}: {a.size} px, {a.iterations} iterations in {r['optimisation_seconds']:.1f} s, "
              f"J {r['J_start']:.4f} -> {r['J_end']:.4f}{extra}")
    for prec, why in result["skipped"].items():
        print(f"{prec}: skipped ({why})")
    return 0


# ---------------------------------------------------------------------------------------------- features
# This round's features, each checked on the device if this tree has it: the option (or module) that
# brings it is looked up, and when absent the feature is skipped with the reason printed. Present,
# it runs on --backend and on NumPy at the same small size (float32 both): J at the first evaluation
# and along the run compared, the device run's loop under the no-host-transfer trap of
# tests/test_gpu.py (armed at the first optimizer step, disarmed by the history flush after the loop).
def _trap_module():
    spec = importlib.util.spec_from_file_location("numpynst_test_gpu", ROOT / "tests" / "test_gpu.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run_trapped(backend: str, call):
    """``(result, hits)``: ``call()`` with device->host exits trapped during the optimizer's loop."""
    import numpynst.optim as optim
    if backend != "cupy":
        return call(), []
    import cupy
    mod = _trap_module()
    classes = [optim.GradientDescent, optim.Adam, optim.LBFGS]
    saved = [(c, c.step) for c in classes]
    real_to_host = optim.to_host
    with mod.transfer_trap(cupy) as trap:
        def arm(step):
            def armed(self, *args, **kw):
                trap.armed = True
                return step(self, *args, **kw)
            return armed

        def flush(x):
            trap.armed = False
            return real_to_host(x)
        try:
            for c, step in saved:
                c.step = arm(step)
            optim.to_host = flush
            try:
                res = call()
            except mod.HostTransfer:
                res = None
        finally:
            for c, step in saved:
                c.step = step
            optim.to_host = real_to_host
        return res, list(trap.hits)


def _compare_runs(a, kwargs: dict) -> dict:
    """The feature ``name`` on NumPy and on ``a.backend`` with ``kwargs``: J histories, trap hits, time."""
    from numpynst.image import sample_path
    from numpynst.transfer import stylize

    styles = kwargs.get("_styles", sample_path("ihc"))
    extra = {k: v for k, v in kwargs.items() if not k.startswith("_")}
    out: dict = {"options": {k: str(v) for k, v in kwargs.items()}}
    runs = {}
    for backend in dict.fromkeys(["numpy", a.backend]):
        def call(backend=backend):
            return stylize(sample_path("chelsea"), styles, size=a.size, iterations=a.iterations, tol=None,
                           optimizer="adam", log_every=0, backend=backend, **extra)
        t0 = time.perf_counter()
        res, hits = _run_trapped(backend, call)
        runs[backend] = res
        out[backend] = {"seconds": time.perf_counter() - t0, "trap_hits": hits,
                        "J": None if res is None else [float(v) for v in res.history["J"]]}
    if a.backend != "numpy" and runs["numpy"] is not None and runs[a.backend] is not None:
        j_np, j_dev = np.asarray(out["numpy"]["J"]), np.asarray(out[a.backend]["J"])
        out["J0_rel_diff"] = float(abs(j_dev[0] - j_np[0]) / abs(j_np[0]))
        out["J_max_rel_diff"] = float(np.max(np.abs(j_dev - j_np) / np.abs(j_np)))
    return out


def cmd_features(a) -> int:
    from numpynst import options as opt_mod

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    names = set(opt_mod.OPTION_NAMES)
    result: dict = {"backend": a.backend, "size": a.size, "iterations": a.iterations, "features": {}}
    feats = result["features"]

    if "style_loss" in names:
        choices = opt_mod.option("style_loss").choices or ()
        for choice in choices:
            kw = {"style_loss": choice}
            if choice == "swd" and a.size < 192:
                # swd needs >= 16 positions per layer: a small rehearsal keeps the three shallow layers
                kw["style_layers"] = ["block1_conv1", "block2_conv1", "block3_conv1"]
            feats[f"style_loss={choice}"] = _compare_runs(a, kw)
    else:
        feats["style_loss"] = {"skipped": "no style_loss option in numpynst.options (--style-loss not merged)"}

    if "masks" in names:
        from PIL import Image

        from numpynst.image import sample_path
        left = np.zeros((64, 96), np.uint8)         # chelsea's aspect (300 x 451)
        left[:, :48] = 255
        paths = []
        for i, m in enumerate((left, 255 - left)):
            paths.append(work / f"mask{i}.png")
            Image.fromarray(m).save(paths[-1])
        feats["masks"] = _compare_runs(a, {"masks": [str(p) for p in paths],
                                           "_styles": [sample_path("ihc"), sample_path("coffee")]})
    else:
        feats["masks"] = {"skipped": "no masks option in numpynst.options (--masks not merged)"}

    ckpt = sorted(n for n in names if "checkpoint" in n or n in ("resume", "save_every"))
    if ckpt:
        feats["checkpoints"] = {"present": ckpt, "skipped": "option(s) present; their device run is not written "
                                "yet (the API was unknown when this step was): the lead connects it here"}
    else:
        feats["checkpoints"] = {"skipped": "no checkpoint option in numpynst.options (checkpoints not merged)"}

    if importlib.util.find_spec("numpynst.video") is None:
        feats["video"] = {"skipped": "no numpynst.video module (video not merged)"}
    else:
        missing = [m for m in ("av", "cv2") if importlib.util.find_spec(m) is None]
        feats["video"] = ({"skipped": f"numpynst.video present, but {', '.join(missing)} not importable here "
                                      "(PyAV/OpenCV: not among the carried wheels)"} if missing else
                          {"present": True, "skipped": "numpynst.video and its decoders present; its device run "
                           "is not written yet (the API was unknown when this step was): the lead connects it here"})

    _write(a.json, result)
    for name, r in feats.items():
        if "skipped" in r:
            print(f"feature {name}: skipped ({r['skipped']})")
            continue
        dev = r.get(a.backend, {})
        line = (f"feature {name}: {a.backend} {dev.get('seconds', 0):.1f} s, trap hits {dev.get('trap_hits')}")
        if "J0_rel_diff" in r:
            line += f", J vs NumPy: start {r['J0_rel_diff']:.1e}, along the run at most {r['J_max_rel_diff']:.1e}"
        print(line)
    return 0


# ---------------------------------------------------------------------------------------------- collect
_WROTE = re.compile(r"wrote (?P<path>\S+) \((?P<w>\d+)x(?P<h>\d+), (?P<it>\d+) iterations, (?P<s>[\d.]+) s, "
                    r"J (?P<J0>\S+) -> (?P<J1>\S+) = (?P<pct>[\d.]+)% of start, stopped: (?P<stop>[^)]+)\)")


def _junit(path: Path) -> dict | None:
    """Counts, the failed tests with their messages, the skip reasons, and the no-host-transfer tests."""
    if not path.exists():
        return None
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    res = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    res["passed"] = res["tests"] - res["failures"] - res["errors"] - res["skipped"]
    res["failed"], reasons = [], {}
    transfer = {"passed": 0, "failed": 0, "skipped": 0}
    for case in root.iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        outcome, msg = "passed", ""
        for c in case:
            if c.tag in ("failure", "error", "skipped"):
                outcome, msg = ("skipped" if c.tag == "skipped" else "failed"), c.get("message") or ""
        if outcome == "failed":
            res["failed"].append(f"{name}: {msg[:300]}")
        elif outcome == "skipped":
            reasons[msg[:200]] = reasons.get(msg[:200], 0) + 1
        if "no_host_transfer" in name:
            transfer[outcome] += 1
    res["skip_reasons"] = reasons
    res["no_host_transfer_tests"] = transfer
    return res


def _smi_peak(path: Path) -> dict | None:
    """Peak and first sample of ``nvidia-smi --query-gpu=memory.used`` (MiB, one line per sample)."""
    if not path.exists():
        return None
    vals = [float(v) for v in re.findall(r"^\s*(\d+(?:\.\d+)?)\s*$", path.read_text(), re.M)]
    if not vals:
        return None
    return {"samples": len(vals), "first_mib": vals[0], "peak_mib": max(vals),
            "peak_above_first_mib": max(vals) - vals[0]}


def vs_choices(path: Path) -> list | None:
    """The numpynst worker's measured per-shape choices of a vgg_step JSON, per size."""
    if not path.exists():
        return None
    rows = []
    for r in json.loads(path.read_text())["sizes"]:
        for k, info in r["info"].items():
            if k != "torch" and info.get("measured_choices") is not None:
                rows.append({"size": r["size"], "worker": k, "choices": info["measured_choices"]})
    return rows


def cmd_collect(a) -> int:
    work = Path(a.work)
    fig: dict = {"mode": a.mode, "written": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    steps = []
    if (work / "steps.tsv").exists():
        for line in (work / "steps.tsv").read_text().splitlines():
            name, rc, sec = line.split("\t")[:3]
            steps.append({"step": name, "exit_code": int(rc), "seconds": float(sec)})
    fig["steps"] = steps
    for name in ("env", "agree", "batch", "print", "precision", "features"):
        p = work / f"{name}.json"
        fig[name] = json.loads(p.read_text()) if p.exists() else None
    if fig["print"]:
        fig["print"]["gpu_memory_nvidia_smi"] = _smi_peak(work / "smi_print.csv")
    fig["pytest_gpu"] = _junit(work / "pytest_gpu.xml")
    vs = work / "vgg_step.json"
    if vs.exists():
        d = json.loads(vs.read_text())
        fig["vgg_step"] = [{"size": r["size"], "gflop": r["flops"] / 1e9, "median_s": r["median"],
                            "min_s": {k: min(v) for k, v in r["times"].items()},
                            "max_s": {k: max(v) for k, v in r["times"].items()},
                            "ratio_to_torch": r["ratio_to_torch"],
                            "gpu_peak_bytes": {k: i.get("gpu_peak_bytes") for k, i in r["info"].items()},
                            "kept_activation_bytes": next(iter(r["info"].values())).get("kept_bytes")}
                           for r in d["sizes"]]
    else:
        fig["vgg_step"] = None
    for extra in ("vgg_step_variants", "vgg_step_breakdown", "vgg_step_tf32", "vgg_step_fp16"):
        p = work / f"{extra}.json"
        fig[extra] = json.loads(p.read_text())["sizes"] if p.exists() else None
    # which layer shapes the GPU's measured dispatch sent to the implicit GEMM (fp32 run)
    fig["measured_choices"] = vs_choices(work / "vgg_step.json")
    log = work / "stylize.log"
    m = _WROTE.search(log.read_text()) if log.exists() else None
    fig["stylize"] = None if m is None else {
        "size": [int(m["w"]), int(m["h"])], "iterations": int(m["it"]), "optimisation_seconds": float(m["s"]),
        "J_start": float(m["J0"]), "J_best": float(m["J1"]), "percent_of_start": float(m["pct"]),
        "stopped": m["stop"], "gpu_memory_nvidia_smi": _smi_peak(work / "smi_stylize.csv"),
        "wall_seconds": next((s["seconds"] for s in steps if s["step"] == "stylize"), None)}
    _write(a.out, fig)

    print(f"\n== gpu_check summary ({a.mode} mode) -> {a.out}")
    for s in steps:
        print(f"  {s['step']:18s} exit {s['exit_code']:3d}  {s['seconds']:7.1f} s")
    env = fig["env"] or {}
    print(f"  device: {env.get('gpu', env.get('cupy_unavailable', '?'))}; CuPy {env.get('cupy', '-')}, "
          f"CUDA runtime {env.get('cuda_runtime', '-')}, driver {env.get('cuda_driver', '-')}; "
          f"torch {env.get('torch', '-')}, cuDNN {env.get('cudnn', '-')}")
    pt = fig["pytest_gpu"]
    if pt:
        print(f"  pytest -m gpu: {pt['passed']} passed, {pt['failures']} failed, {pt['errors']} errors, "
              f"{pt['skipped']} skipped; no-host-transfer tests {pt['no_host_transfer_tests']}")
        for n in pt["failed"][:10]:
            print(f"    FAILED {n}")
        for reason, n in pt["skip_reasons"].items():
            print(f"    skipped {n}: {reason}")
    if fig["agree"]:
        for label, worst in fig["agree"]["worst_rel_norm"].items():
            print(f"  agree {label:34s} worst rel. error {worst:.2e}")
    for r in fig["vgg_step"] or []:
        meds = ", ".join(f"{k} {v:.4f} s" for k, v in r["median_s"].items())
        ratios = ", ".join(f"{k}/torch {v:.2f}" for k, v in r["ratio_to_torch"].items())
        print(f"  vgg_step {r['size']:5d} px: {meds}; {ratios}")
    for prec in ("tf32", "fp16"):
        for r in fig[f"vgg_step_{prec}"] or []:
            meds = ", ".join(f"{k} {v:.4f} s" for k, v in r["median"].items())
            ratios = ", ".join(f"{k}/torch {v:.2f}" for k, v in r["ratio_to_torch"].items())
            print(f"  vgg_step {prec} {r['size']:5d} px: {meds}; {ratios}")
    for row in fig["measured_choices"] or []:
        implicit = [c for c in row["choices"] if c["method"] == "implicit"]
        print(f"  measured dispatch {row['size']} px: {len(implicit)} of {len(row['choices'])} shapes on the implicit "
              f"GEMM" + (": " + ", ".join(f"{c['pass']} C={c['w'][2]} F={c['w'][3]} at {c['shape'][1]}x{c['shape'][2]}"
                                           for c in implicit) if implicit else ""))
    pc = fig["precision"]
    if pc:
        for label, e in pc["objective"].items():
            print(f"  precision {label:22s} J rel. error {e['J_rel_error']:.1e}, dJ/dx cosine {e['grad_cosine']:.6f}")
        for prec, r in pc["picture"].items():
            if prec != "fp32":
                print(f"  precision {prec} picture {pc['size']} px: {r['optimisation_seconds']:.1f} s vs fp32 "
                      f"{pc['picture']['fp32']['optimisation_seconds']:.1f} s, J_end {r['J_end_rel_vs_fp32']:.1e} "
                      f"rel., PSNR {r['psnr_vs_fp32_db']:.1f} dB")
    for name, r in ((fig["features"] or {}).get("features") or {}).items():
        if "skipped" in r:
            print(f"  feature {name}: skipped ({r['skipped']})")
        else:
            dev = r.get(fig["features"]["backend"], {})
            print(f"  feature {name}: trap hits {dev.get('trap_hits')}, J vs NumPy at most "
                  f"{r.get('J_max_rel_diff', float('nan')):.1e}")
    for r in fig["vgg_step_variants"] or []:
        print(f"  variants {r['size']:5d} px: " + ", ".join(f"{k} {v:.4f} s" for k, v in r["median"].items()))
    for r in fig["vgg_step_breakdown"] or []:
        bd = next(iter(r["info"].values())).get("breakdown") or {}
        cost = {layer: sum(d.values()) for layer, d in bd.items()}
        worst = sorted(cost, key=cost.get, reverse=True)[:3]
        print(f"  breakdown {r['size']} px, slowest layers (fwd + bwd, all ops): "
              + ", ".join(f"{n} {cost[n] * 1e3:.1f} ms" for n in worst))
    st = fig["stylize"]
    if st:
        mem = st["gpu_memory_nvidia_smi"]
        print(f"  stylize {st['size'][0]}x{st['size'][1]}: {st['iterations']} iterations in "
              f"{st['optimisation_seconds']:.1f} s (wall {st['wall_seconds']}), J to {st['percent_of_start']}% "
              f"of start, GPU memory peak {mem['peak_mib'] if mem else '-'} MiB (nvidia-smi)")
    pr = fig["print"]
    if pr:
        top = pr["per_scale"][-1] if pr["per_scale"] else {}
        print(f"  print {pr['size'][0]}x{pr['size'][1]}: {pr['iterations']} iterations in {pr['seconds']:.0f} s "
              f"({pr['stopped']}); top scale {top.get('seconds_per_iteration')} s/iteration, "
              f"J {top.get('J_start')} -> {top.get('J_end')}, GPU memory peak "
              f"{(pr['gpu_memory_nvidia_smi'] or {}).get('peak_mib', '-')} MiB (nvidia-smi), budget "
              f"{pr['budget_bytes'] / 2**30:.2f} GiB, within it: {pr.get('within_budget')}")
        for r in pr["per_scale"]:
            meas = r.get("measured_peak_bytes")
            print(f"    scale {r['scale']} {r['hw'][1]}x{r['hw'][0]} ({r['plan']}): planned "
                  f"{r['planned_peak_bytes'] / 2**30:.2f} GiB, measured "
                  f"{'-' if meas is None else f'{meas / 2**30:.2f} GiB'} ({pr['memory_measured_by']}), "
                  f"nvidia-smi {r.get('nvidia_smi_peak_mib') or '-'} MiB")
    b = fig["batch"]
    if b:
        print(f"  batch: {b['jobs']} jobs {b['status']} in {b['seconds']:.1f} s = {b['jobs_per_minute']:.1f} jobs/min, "
              f"backends {b['sidecar_backends']}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("env")
    p.add_argument("--json", required=True)
    p = sub.add_parser("agree")
    p.add_argument("--json", required=True)
    p.add_argument("--backend", default="cupy", choices=("numpy", "cupy"))
    p.add_argument("--size", type=int, default=256)
    p = sub.add_parser("batch")
    p.add_argument("--json", required=True)
    p.add_argument("--outdir", required=True)
    p.add_argument("--gpu", action="store_true")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--iterations", type=int, default=50)
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--sheet", default=None, help="copy the contact sheet here")
    p = sub.add_parser("notebook")
    p.add_argument("--out", required=True)
    p.add_argument("--name", default="10")
    p.add_argument("--timeout", type=int, default=300, help="seconds per cell")
    p = sub.add_parser("print")
    p.add_argument("--json", required=True)
    p.add_argument("--backend", default="cupy", choices=("numpy", "cupy"))
    p.add_argument("--size", type=int, default=8192)
    p.add_argument("--scales", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    p.add_argument("--iterations", type=int, default=15, help="per scale")
    p.add_argument("--max-memory", default="100GB")
    p.add_argument("--precision", default="fp32", choices=("fp32", "tf32", "fp16"))
    p.add_argument("--content", default="astronaut")
    p.add_argument("--style", default="ihc")
    p.add_argument("--full", required=True, help="the full picture (stays in the work folder)")
    p.add_argument("--sheet", required=True, help="preview | 1:1 crop, one JPEG")
    p.add_argument("--crop", type=int, default=1024)
    p = sub.add_parser("precision")
    p.add_argument("--json", required=True)
    p.add_argument("--backend", default="cupy", choices=("numpy", "cupy"))
    p.add_argument("--agree-size", type=int, default=256)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--iterations", type=int, default=50)
    p = sub.add_parser("features")
    p.add_argument("--json", required=True)
    p.add_argument("--work", required=True, help="a folder for the inputs it makes (masks)")
    p.add_argument("--backend", default="cupy", choices=("numpy", "cupy"))
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--iterations", type=int, default=5)
    p = sub.add_parser("collect")
    p.add_argument("--work", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--mode", default="gpu")
    a = ap.parse_args(argv)
    return {"env": cmd_env, "agree": cmd_agree, "batch": cmd_batch, "notebook": cmd_notebook,
            "print": cmd_print, "precision": cmd_precision, "features": cmd_features,
            "collect": cmd_collect}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
