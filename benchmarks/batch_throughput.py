"""Throughput of ``numpynst batch`` (jobs per minute) on a local cluster with 1, 2, ... workers.

The grid is the bundled sample contents x styles (3 x 2), stylized at ``--size`` px for
``--iterations`` L-BFGS iterations with the shipped VGG19. Each worker count writes into a fresh
temporary folder, so nothing is skipped. The time includes starting the cluster and loading VGG19
once per worker: it is what a user waits for.

    python benchmarks/batch_throughput.py --workers 1 2 --size 64 --iterations 20
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    from numpynst import batch
    from numpynst.batch.cluster import available_cores, plan_local
    from numpynst.image import sample_names, sample_path

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--gpu", action="store_true", help="dask-cuda, one worker per GPU (--workers = GPUs)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for kind in ("content", "style"):
            (tmp / kind).mkdir()
            for name in sample_names(kind):
                shutil.copy(sample_path(name), tmp / kind / sample_path(name).name)
        jobs = batch.grid_jobs(tmp / "content", tmp / "style", size=args.size, iterations=args.iterations,
                               tol=0)
        print(f"{len(jobs)} jobs ({len(sample_names('content'))} contents x {len(sample_names('style'))} "
              f"styles), {args.size} px, {args.iterations} iterations, {available_cores()} cores")
        for n in args.workers:
            blas = plan_local(n)[1]
            t0 = time.perf_counter()
            res = batch.run(jobs, tmp / f"out{n}", workers=n, gpu=args.gpu, progress=False,
                            contact_sheet=False)
            dt = time.perf_counter() - t0
            work = sum(r.seconds for r in res)
            assert all(r.status == "done" for r in res), [r.error for r in res if r.error]
            print(f"workers={n} blas_threads={blas}: {dt:6.1f} s wall, {60 * len(res) / dt:5.1f} jobs/min "
                  f"(mean {work / len(res):.1f} s per job on its worker)")


if __name__ == "__main__":
    main()
