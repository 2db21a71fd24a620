"""Soak test of ``numpynst batch``: many tiny jobs with faults injected, and what survives them.

    python benchmarks/soak.py --jobs 500 --workers 2

The jobs are tiny (24 px pictures, a tiny random VGG, a few L-BFGS iterations), so the batch
machinery is what is measured, not the optimisation. Injected, all at once:

* **worker kills**: about one job in ``--kill-every`` SIGKILLs its own worker process on its first
  attempt, at a random iteration of the optimisation (two in three) or right after its files were
  published, before the result reached the client (one in three: the hardest case for
  "exactly once"); the nanny starts a new worker and the scheduler runs the job again;
* **bad images**: every ``--bad-every``-th row is a decompression bomb (a PNG declaring 9000x9000
  pixels) or a truncated PNG: those jobs must fail, each with its reason in the summary;
* **a full disk**: one job writes under a file-size limit (``RLIMIT_FSIZE``, 256 bytes), so its image
  cannot be written: it must fail with a one-line reason and leave nothing behind.

Checked afterwards (the script exits 1 if any fails): every good job is ``done`` and its image was
published exactly once (a ledger the task wrapper appends to); every bad one is ``failed`` with a
reason; no temporary, no image without its verifying sidecar, nothing else in OUTDIR; a second run
of the same batch runs nothing but the full-disk job (whose disk is no longer full) and changes no
finished file. Printed: jobs/min, kills, tasks run again, seconds lost to killed attempts.
Timings depend on the machine and its load; say which when quoting them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np


# ------------------------------------------------------------------------------ the task wrapper
def soak_task(spec: dict, outdir: str, backend: str, ledger: str, kill_mod: int, fsize_job: str) -> dict:
    """:func:`numpynst.batch.worker.execute_job` with the faults of the module docstring. Runs on
    the workers (pickled by value with this script)."""
    from numpynst import transfer
    from numpynst.batch import worker
    name = spec["name"]
    led = Path(ledger)
    h = zlib.crc32(name.encode())
    kill = h % kill_mod == 0 and _first(led / f"{name}.killed")
    t0 = time.time()

    def die(where: str) -> None:
        _append(led / "kills.log", f"{name} {where} {time.time() - t0:.3f}\n")
        os.kill(os.getpid(), signal.SIGKILL)

    stylize, publish = transfer.stylize, worker.publish

    def counted(*a, **k):                                    # the ledger of publications
        publish(*a, **k)
        _append(led / "published.log", name + "\n")
    worker.publish = counted
    if kill and (h // kill_mod) % 3 == 2:                     # after publishing, before returning
        def publish_then_die(*a, **k):
            counted(*a, **k)
            die("after-publish")
        worker.publish = publish_then_die
    elif kill:                                               # at a random iteration
        at = 1 + (h // kill_mod) % spec["options"].get("iterations", 3)

        def dying(*a, callback=None, **k):
            def cb(p):
                if p.iteration == at:
                    die(f"iteration-{at}")
            return stylize(*a, callback=cb, **k)
        transfer.stylize = dying
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    try:
        if name == fsize_job:
            resource.setrlimit(resource.RLIMIT_FSIZE, (256, limit[1]))
        return worker.execute_job(spec, outdir, backend)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)
        transfer.stylize, worker.publish = stylize, publish


def _first(marker: Path) -> bool:
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def _append(path: Path, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())          # one write of a short line: never interleaved
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------ the inputs
def _png_declaring(path: Path, width: int, height: int) -> Path:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def make_inputs(folder: Path, n_jobs: int, bad_every: int, iterations: int):
    from PIL import Image
    from numpynst.batch import Job
    from numpynst.testing import write_tiny_vgg_h5
    rng = np.random.default_rng(0)
    weights = write_tiny_vgg_h5(folder / "tiny.h5")
    contents = []
    for i in range(20):
        p = folder / f"c{i:02d}.png"
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(p)
        contents.append(p)
    style = folder / "s.png"
    Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(style)
    bomb = _png_declaring(folder / "bomb.png", 9000, 9000)
    broken = _png_declaring(folder / "broken.png", 8, 8)
    jobs, bad = [], set()
    for i in range(n_jobs):
        content = contents[i % len(contents)]
        if bad_every and i % bad_every == bad_every - 1:
            content = bomb if (i // bad_every) % 2 == 0 else broken
        name = f"job{i:04d}"
        if content in (bomb, broken):
            bad.add(name)
        jobs.append(Job(str(content), (str(style),), {"iterations": iterations, "weights": str(weights),
                                                      "seed": i, "tol": 0}, name=name))
    return jobs, bad


# ------------------------------------------------------------------------------ the checks
def check(outdir: Path, results, jobs, bad: set, fsize_job: str, ledger: Path) -> list[str]:
    from numpynst.batch.worker import verify_output
    problems = []
    published: dict[str, int] = {}
    if (ledger / "published.log").exists():
        for line in (ledger / "published.log").read_text().split():
            published[line] = published.get(line, 0) + 1
    by_name = {r.job: r for r in results}
    for job in jobs:
        r = by_name[job.name]
        expect_fail = job.name in bad or job.name == fsize_job
        if expect_fail:
            if r.status != "failed" or not r.error:
                problems.append(f"{job.name}: expected failed with a reason, got {r.status} {r.error!r}")
        else:
            if r.status != "done":
                problems.append(f"{job.name}: expected done, got {r.status} {r.error!r}")
            elif verify_output(outdir, job.spec()) is None:
                problems.append(f"{job.name}: done but its output does not verify")
            if published.get(job.name, 0) != 1:
                problems.append(f"{job.name}: published {published.get(job.name, 0)} times")
    expected = {j.output for j in jobs if j.name not in bad and j.name != fsize_job}
    expected |= {j.sidecar for j in jobs if j.name not in bad and j.name != fsize_job}
    extra = [p.name for p in outdir.iterdir() if p.name not in expected | {"summary.csv", "contact_sheet.png"}]
    if extra:
        problems.append(f"unexpected files in OUTDIR: {sorted(extra)[:5]}")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=500)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--kill-every", type=int, default=20, help="about one job in N kills its worker")
    ap.add_argument("--bad-every", type=int, default=50)
    ap.add_argument("--keep", metavar="DIR", help="work in DIR (kept) instead of a temporary folder")
    args = ap.parse_args()

    import cloudpickle
    from numpynst import batch
    cloudpickle.register_pickle_by_value(sys.modules[__name__])

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        (root / "in").mkdir(parents=True, exist_ok=True)
        ledger = root / "ledger"
        ledger.mkdir(exist_ok=True)
        jobs, bad = make_inputs(root / "in", args.jobs, args.bad_every, args.iterations)
        jobs = batch.jobs.prepare_jobs(jobs)          # names, digests, output names
        good = [j.name for j in jobs if j.name not in bad]
        fsize_job = good[len(good) // 2]
        outdir = root / "out"
        task = lambda spec, out, backend: soak_task(spec, out, backend, str(ledger), args.kill_every,  # noqa: E731
                                                    fsize_job)
        t0 = time.perf_counter()
        lines: list[str] = []
        results = batch.run(jobs, outdir, workers=args.workers, retries=3, progress=False, task=task,
                            log=lines.append)
        revived = sum(int(line.split()[1]) for line in lines if "did not come back" in line)
        wall = time.perf_counter() - t0
        kills = (ledger / "kills.log").read_text().split("\n")[:-1] if (ledger / "kills.log").exists() else []
        lost = sum(float(line.split()[-1]) for line in kills)
        problems = check(outdir, results, jobs, bad, fsize_job, ledger)
        done = sum(r.status == "done" for r in results)
        failed = sum(r.status == "failed" for r in results)
        snapshot = {p.name: p.stat().st_mtime_ns for p in outdir.iterdir()
                    if p.name not in ("summary.csv", "contact_sheet.png")}
        published_before = (ledger / "published.log").read_text().split()
        t1 = time.perf_counter()
        # the second run: the disk has room again, no worker dies
        calm = lambda spec, out, backend: soak_task(spec, out, backend, str(ledger), 1 << 30, "")  # noqa: E731
        again = batch.run(jobs, outdir, workers=args.workers, retries=3, progress=False, task=calm,
                          log=lambda *_: None)
        wall2 = time.perf_counter() - t1
        rerun = [r.job for r in again if r.status == "done"]
        published_after = (ledger / "published.log").read_text().split()
        changed = [n for n, t in snapshot.items() if not (outdir / n).exists() or (outdir / n).stat().st_mtime_ns != t]
        if sorted(set(published_after) - set(published_before)) != sorted(rerun) or rerun != [fsize_job]:
            problems.append(f"the re-run ran {rerun} (expected only {fsize_job})")
        if changed:
            problems.append(f"the re-run changed finished files: {changed[:5]}")
        after_kill = sum("after-publish" in k for k in kills)
        print(json.dumps({
            "jobs": len(jobs), "workers": args.workers, "done": done, "failed": failed,
            "bad images": len(bad), "full-disk job": fsize_job,
            "wall seconds": round(wall, 1), "jobs per minute (done / wall)": round(60 * done / wall, 1),
            "worker kills": len(kills), "of them after publishing": after_kill,
            "workers that did not come back (replaced by the batch)": revived,
            "seconds of killed attempts": round(lost, 2),
            "re-run seconds": round(wall2, 1), "re-run ran": rerun,
            "reasons of the failed (first of each kind)": sorted({r.error[:150] for r in results
                                                                  if r.status == "failed"}),
            "problems": problems,
        }, indent=1))
        return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
