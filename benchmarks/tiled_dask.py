"""Exact tiles on Dask workers: seconds per evaluation in this process vs on 1, 2, ... local workers,
and what one tile costs in compute against the transfer of its data.

One evaluation is what an L-BFGS iteration costs: J and dJ/dx at the full size, pass 1 and pass 2
over every tile (:mod:`numpynst.tiled`, :mod:`numpynst.tiled_dask`). Configurations are timed
interleaved, repeat by repeat, so that load from other processes on a shared machine hits them
alike; medians and [min .. max] are printed. The transfer figure is a round trip through the
cluster (scatter a crop-sized array to a worker, a task returns it, gather) with no compute.

    python benchmarks/tiled_dask.py --size 1024 --tile 512 --workers 1 2 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

import numpy as np


def _identity(a):
    return a


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--blas", type=int, default=None,
                    help="BLAS threads per worker (default: cores // workers); set the driver's with "
                         "OPENBLAS_NUM_THREADS")
    args = ap.parse_args()

    from distributed import Client
    from numpynst.batch.cluster import available_cores, local_cluster
    from numpynst.image import load_image, resize_to, round_to_multiple, sample_path
    from numpynst.tiled import TiledObjective
    from numpynst.tiled_dask import DaskTileRunner
    from numpynst.transfer import DEFAULT_CONTENT_LAYER, DEFAULT_STYLE_LAYERS
    from numpynst.vgg import VGG, preprocess

    model = VGG.from_h5()
    layers = dict(content_layer=DEFAULT_CONTENT_LAYER, style_layers=DEFAULT_STYLE_LAYERS,
                  weights_mode="raw")
    factor = model.pool_factor([DEFAULT_CONTENT_LAYER, *DEFAULT_STYLE_LAYERS])
    content = load_image(sample_path("chelsea"), size=args.size)
    hw = round_to_multiple(content.shape[:2], factor)
    content = resize_to(content, hw)
    style = load_image(sample_path("ihc"), size=args.size)
    x = preprocess(content)
    c, s = preprocess(content), preprocess(style)
    cores = available_cores()
    print(f"{hw[1]}x{hw[0]} px, tile {args.tile}, VGG19 float32, default layers, {cores} cores, "
          f"driver BLAS threads {os.environ.get('OPENBLAS_NUM_THREADS', 'default')}, "
          f"load average at start {os.getloadavg()[0]:.1f}")

    configs = {"in process": TiledObjective(model, c, s, tile=args.tile, **layers)}
    clusters = []
    for n in args.workers:
        blas = args.blas or max(1, cores // n)
        cluster = local_cluster(n, blas, dashboard=False)
        client = Client(cluster)
        clusters.append((client, cluster))
        # the same targets: built once, in process
        configs[f"{n} worker(s) x {blas} BLAS"] = configs["in process"].with_runner(DaskTileRunner(client))
    obj = configs["in process"]
    tiles = obj.tiles
    crop_px = sum(t.crop_pixels for t in tiles)
    gram_floats = sum(model.channels(n) ** 2 for n in DEFAULT_STYLE_LAYERS)
    b = np.dtype(model.dtype).itemsize
    print(f"{len(tiles)} tiles, halo {obj.halo}, crop pixels {crop_px:,} = "
          f"{crop_px / (hw[0] * hw[1]):.2f} x the image; traffic per evaluation: crops out and "
          f"gradients back {2 * 3 * crop_px * b / 2**20:.1f} MiB, Gram pieces back "
          f"{len(tiles) * gram_floats * b / 2**20:.1f} MiB, M out {gram_floats * b / 2**20:.1f} MiB "
          f"per worker")

    for name, o in configs.items():                    # warm-up: models loaded, caches made
        t0 = time.perf_counter()
        o.evaluate(x)
        print(f"  warm-up {name}: {time.perf_counter() - t0:.1f} s")
    times: dict[str, list[float]] = {k: [] for k in configs}
    for r in range(args.repeats):
        for name, o in configs.items():
            t0 = time.perf_counter()
            J = o.evaluate(x).J
            times[name].append(time.perf_counter() - t0)
        print(f"  repeat {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items())
              + f" (J {float(J):.6g})")

    base = statistics.median(times["in process"])
    print("\n| configuration | s / evaluation, median [min .. max] | vs in process |")
    print("|---|---|---|")
    for name, v in times.items():
        med = statistics.median(v)
        print(f"| {name} | {med:.1f} [{min(v):.1f} .. {max(v):.1f}] | {med / base:.2f} |")

    client = clusters[-1][0]
    worker = sorted(client.scheduler_info()["workers"])[0]
    biggest = max(tiles, key=lambda t: t.crop_pixels)
    arr = np.zeros((1, biggest.cy1 - biggest.cy0, biggest.cx1 - biggest.cx0, 3), dtype=model.dtype)
    grams = {n: np.zeros((model.channels(n),) * 2, dtype=model.dtype) for n in DEFAULT_STYLE_LAYERS}
    trips = []
    for _ in range(5):
        t0 = time.perf_counter()
        f = client.scatter(arr, workers=[worker], hash=False)
        g = client.submit(_identity, f, workers=[worker], pure=False).result()
        h = client.submit(_identity, client.scatter([grams], workers=[worker], hash=False)[0],
                          workers=[worker], pure=False).result()
        trips.append(time.perf_counter() - t0)
        del f, g, h
    print(f"\nround trip of the largest crop ({arr.nbytes / 2**20:.1f} MiB out and back) and one "
          f"set of Grams ({sum(v.nbytes for v in grams.values()) / 2**20:.1f} MiB out and back): "
          f"median {1e3 * statistics.median(trips):.0f} ms [{1e3 * min(trips):.0f} .. "
          f"{1e3 * max(trips):.0f}]")
    rss = client.run(lambda: __import__("psutil").Process().memory_info().rss)
    print(f"driver peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB; "
          f"workers' RSS now: " + ", ".join(f"{v / 2**30:.2f} GiB" for v in rss.values()))
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    for client, cluster in clusters:
        client.close()
        cluster.close()


if __name__ == "__main__":
    main()
