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
and per iteration at the top scale, J at each scale's start and end, the memory pool's size at the
end, the time to write the full picture; a preview beside a 1:1 crop is the one file kept.

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
def cmd_print(a) -> int:
    """A print-size stylize on ``--backend``, timed per scale; SIGTERM stops it with the best image."""
    import signal

    from PIL import Image

    import numpynst
    from numpynst.image import sample_path, save_image

    def interrupt(signum, frame):           # the step's timeout: stop like Ctrl-C, keep the best image
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, interrupt)
    marks: list[tuple[float, int, float]] = []          # (scale, iteration, seconds since the call)
    t0 = time.perf_counter()
    res = numpynst.stylize(sample_path(a.content), sample_path(a.style), size=a.size, scales=a.scales,
                           iterations=a.iterations, tol=None, max_memory=a.max_memory, backend=a.backend,
                           progress=False, callback=lambda p: marks.append(
                               (p.scale, p.iteration, time.perf_counter() - t0)))
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
        per_scale.append({"scale": scale, "iterations": ms[-1][1], "seconds": ms[-1][2] - before,
                          "seconds_per_iteration": step, "J_start": js[0], "J_end": js[-1]})
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
    fig = {"size": [w, h], "backend": a.backend, "max_memory": a.max_memory, "scales": a.scales,
           "iterations_per_scale": a.iterations, "iterations": res.iterations, "stopped": res.stopped,
           "seconds": seconds, "per_scale": per_scale, "pool_bytes_at_end": pool,
           "write_seconds": write_seconds, "full_bytes": full.stat().st_size, "sheet": str(a.sheet),
           "crop_box": [cy, cx, side]}
    _write(a.json, fig)
    for r in per_scale:
        spi = "-" if r["seconds_per_iteration"] is None else f"{r['seconds_per_iteration']:.2f}"
        print(f"scale {r['scale']}: {r['iterations']} iterations in {r['seconds']:.1f} s ({spi} s/iteration), "
              f"J {r['J_start']:.4f} -> {r['J_end']:.4f}")
    pool_text = "-" if pool is None else f"{pool / 2**30:.2f} GiB"
    print(f"print {w}x{h}: {res.iterations} iterations in {seconds:.1f} s, stopped: {res.stopped}; memory pool "
          f"at the end {pool_text}; full picture written in {write_seconds:.1f} s "
          f"({full.stat().st_size / 2**20:.1f} MiB)", flush=True)
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


def cmd_collect(a) -> int:
    work = Path(a.work)
    fig: dict = {"mode": a.mode, "written": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    steps = []
    if (work / "steps.tsv").exists():
        for line in (work / "steps.tsv").read_text().splitlines():
            name, rc, sec = line.split("\t")[:3]
            steps.append({"step": name, "exit_code": int(rc), "seconds": float(sec)})
    fig["steps"] = steps
    for name in ("env", "agree", "batch", "print"):
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
    for extra in ("vgg_step_variants", "vgg_step_breakdown"):
        p = work / f"{extra}.json"
        fig[extra] = json.loads(p.read_text())["sizes"] if p.exists() else None
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
              f"{(pr['gpu_memory_nvidia_smi'] or {}).get('peak_mib', '-')} MiB (nvidia-smi)")
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
    p.add_argument("--content", default="astronaut")
    p.add_argument("--style", default="ihc")
    p.add_argument("--full", required=True, help="the full picture (stays in the work folder)")
    p.add_argument("--sheet", required=True, help="preview | 1:1 crop, one JPEG")
    p.add_argument("--crop", type=int, default=1024)
    p = sub.add_parser("collect")
    p.add_argument("--work", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--mode", default="gpu")
    a = ap.parse_args(argv)
    return {"env": cmd_env, "agree": cmd_agree, "batch": cmd_batch, "notebook": cmd_notebook,
            "print": cmd_print, "collect": cmd_collect}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
