"""Pictures, measured: content distance and style gap closed for photos x paintings x settings.

For every photo x painting pair (the bundled photos x the bundled paintings, numpynst/data/samples,
or the paintings in ``--paintings``, plus the reference pair golden_gate + starry_night of ``--reference``), every
size and every named setting (:data:`PRESETS`, a few options of ``stylize`` each), one picture is
made with ``stylize`` and measured with :mod:`numpynst.metrics`:

* ``C`` content distance at block4_conv2 (0 = the photo's layout),
* ``S_gram``, ``S_swd`` style gap closed (0 = the photo's statistics, 1 = the painting's),
* ``J`` the final (calibrated) objective, ``iterations``, ``cpu_s`` (process CPU time, all threads)
  and ``wall_s``.

neural-style's published 512 px result for the reference pair (``--reference``) is measured too,
at each size (resized, with the photo): the point to reach. The table is printed and stored as JSON (``--json``, default
``benchmarks/results/pictures.json``); the frontier figure (C across, S_swd up; one colour per
setting, the reference pair's points larger) is drawn with ``--figure``.
``--batch`` makes the pictures with ``numpynst batch`` instead (a manifest, one job per picture,
on a local Dask cluster of ``--workers`` processes); it records the batch's wall seconds per job,
no CPU time.

    nice -n 10 python benchmarks/pictures.py --sizes 256 --pairs golden_gate+starry_night \\
        --presets default before --figure docs/images/frontier.png
    python benchmarks/pictures.py --from benchmarks/results/pictures.json --figure f.png   # redraw only
    python benchmarks/pictures.py --list                                                   # pairs, presets

Timings on a shared machine are noisy; C and S are not (deterministic). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared"
REFERENCE_PAIR = "golden_gate+starry_night"
NEURAL_STYLE = "golden_gate_starry_neural-style.png"     # 512 px, neural-style's defaults

#: Named settings: the options of stylize each changes from its defaults. Every preset but
#: "default" spells out the style weight and the scales it is about, so that its rows keep their
#: meaning when the defaults move (issue 26 moved them: style weight 1 -> 10, full size only ->
#: coarse to fine); "before" is the defaults until then.
C2F, FULL = [0.25, 0.5, 1.0], [1.0]
PRESETS: dict[str, dict] = {
    "default": {},
    "before": {"beta": 1.0, "scales": FULL},
    "before_tv0": {"beta": 1.0, "scales": FULL, "tv_weight": 0.0},
    "before_noise": {"beta": 1.0, "scales": FULL, "init": "noise"},
    "single_style3": {"beta": 3.0, "scales": FULL},
    "single_style10": {"beta": 10.0, "scales": FULL},
    "style0.1": {"beta": 0.1, "scales": C2F},
    "style0.3": {"beta": 0.3, "scales": C2F},
    "style1": {"beta": 1.0, "scales": C2F},
    "style1_noise": {"beta": 1.0, "scales": C2F, "init": "noise"},
    "style3": {"beta": 3.0, "scales": C2F},
    "style10": {"beta": 10.0, "scales": C2F},
    "style30": {"beta": 30.0, "scales": C2F},
    "style100": {"beta": 100.0, "scales": C2F},
    "style10_tv0": {"beta": 10.0, "scales": C2F, "tv_weight": 0.0},
    "style10_avgpool": {"beta": 10.0, "scales": C2F, "pooling": "avg"},
    "style10_noise": {"beta": 10.0, "scales": C2F, "init": "noise"},
}


def photos() -> dict[str, Path]:
    from numpynst.image import sample_names, sample_path
    return {n: sample_path(n) for n in sample_names("content")}


def paintings(folder: Path | None) -> dict[str, Path]:
    """The paintings: the bundled ones (``numpynst.image.samples.PAINTINGS``), or every image in ``folder``."""
    from numpynst.image import IMAGE_SUFFIXES
    if folder is None:
        from numpynst.image.samples import PAINTINGS
        from numpynst.image import sample_path
        return {n: sample_path(n) for n in PAINTINGS}
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}


def all_pairs(args) -> dict[str, tuple[Path, Path]]:
    """``{"photo+painting": (photo path, painting path)}``: bundled photos x paintings, the reference."""
    pairs = {f"{c}+{s}": (cp, sp) for c, cp in photos().items() for s, sp in paintings(args.paintings).items()}
    ref = args.reference
    if (ref / "golden_gate.jpg").is_file() and (ref / "starry_night.jpg").is_file():
        pairs[REFERENCE_PAIR] = (ref / "golden_gate.jpg", ref / "starry_night.jpg")
    return pairs


def neural_style_point(args, model, size: int) -> dict | None:
    """neural-style's published result for the reference pair (512 px), measured at ``size``
    (resized to that longest side, the photo with it): the point to reach at each size."""
    from numpynst.image import load_image
    from numpynst.metrics import measure
    path = args.reference / NEURAL_STYLE
    if not path.is_file():
        return None
    m = measure(load_image(path, size=size), args.reference / "golden_gate.jpg",
                args.reference / "starry_night.jpg", model=model)
    return {"pair": REFERENCE_PAIR, "preset": "neural-style", "size": size, **m.as_dict(),
            "J": None, "iterations": 1000, "cpu_s": None, "wall_s": None}


def run_one(model, judge_for, pair, paths, size, preset, save_dir):
    """One picture in this process: stylize, measure; the row of the table."""
    from numpynst.transfer import stylize
    opts = dict(PRESETS[preset])
    t0, p0 = time.perf_counter(), time.process_time()
    own = model if "pooling" not in opts else None      # another pooling: another network
    res = stylize(str(paths[0]), str(paths[1]), model=own, size=size, **opts)
    cpu, wall = time.process_time() - p0, time.perf_counter() - t0
    m = judge_for(pair, size, res.image.shape)(res.image)
    if save_dir is not None:
        from numpynst.image import save_image
        save_image(Path(save_dir) / f"{pair}_{size}_{preset}.png", res.image, overwrite=True)
    return {"pair": pair, "preset": preset, "size": size, **m.as_dict(), "J": res.J_final,
            "iterations": res.iterations, "cpu_s": round(cpu, 2), "wall_s": round(wall, 2),
            "stopped": res.stopped, "load": [round(v, 1) for v in os.getloadavg()]}


def run_batch(args, pairs, jobs):
    """The pictures made by ``numpynst batch`` (a manifest written to ``--batch-dir``)."""
    import subprocess
    outdir = Path(args.batch_dir)
    outdir.mkdir(parents=True, exist_ok=True)
    manifest = outdir / "manifest.jsonl"
    with open(manifest, "w") as fh:
        for pair, size, preset in jobs:
            c, s = pairs[pair]
            fh.write(json.dumps({"content": str(c), "style": str(s), "name": f"{pair}_{size}_{preset}",
                                 "size": size, **PRESETS[preset]}) + "\n")
    cmd = [sys.executable, "-m", "numpynst", "batch", str(manifest), "-o", str(outdir / "out"), "--quiet",
           "--no-contact-sheet"] + (["--workers", str(args.workers)] if args.workers else [])
    print("running:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    with open(outdir / "out" / "summary.csv", newline="") as fh:
        return {r["job"]: r for r in csv.DictReader(fh)}


def _cells(r) -> tuple:
    """One row's printed values: pair, size, setting, C, S_gram, S_swd, J, iterations, CPU s."""
    J = "" if r.get("J") is None else f"{r['J']:.4g}"
    cpu = "" if r.get("cpu_s") is None else f"{r['cpu_s']:.0f}"
    return (r["pair"], r["size"], r["preset"], f"{r['content']:.3f}", f"{r['style_gram']:.3f}",
            f"{r['style_swd']:.3f}", J, r.get("iterations") or "", cpu)


def table(rows) -> str:
    head = f"{'pair':34s} {'size':>4s} {'setting':18s} {'C':>6s} {'S_gram':>7s} {'S_swd':>6s} {'J':>9s} {'iter':>5s} {'cpu_s':>7s}"
    lines = [head, "-" * len(head)]
    for r in rows:
        pair, size, preset, c, sg, ss, J, it, cpu = _cells(r)
        lines.append(f"{pair:34s} {size:4d} {preset:18s} {c:>6s} {sg:>7s} {ss:>6s} {J:>9s} {it:>5} {cpu:>7s}")
    return "\n".join(lines)


def markdown(rows) -> str:
    """The table as markdown (benchmarks/README.md)."""
    lines = ["| pair | px | setting | C | S_gram | S_swd | J | iterations | CPU s |", "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    lines += ["| " + " | ".join(str(v) for v in _cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def frontier(rows, path) -> None:
    """C across, S_swd up: one colour per setting, one marker per size; neural-style a star."""
    from numpynst.plots import pyplot, save_figure
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    presets = sorted({r["preset"] for r in rows if r["preset"] != "neural-style"})
    colours = {p: plt.get_cmap("tab10" if len(presets) <= 10 else "tab20")(i) for i, p in enumerate(presets)}
    markers = {256: "o", 512: "s"}
    for r in rows:
        if r["preset"] == "neural-style":
            continue
        ref = r["pair"] == REFERENCE_PAIR
        ax.scatter(r["content"], r["style_swd"], color=colours[r["preset"]], marker=markers.get(r["size"], "^"),
                   s=70 if ref else 28, edgecolors="black" if ref else "none", linewidths=0.8, zorder=3)
    for p in presets:
        ax.scatter([], [], color=colours[p], label=p)
    for size, mk in markers.items():
        if any(r["size"] == size and r["preset"] != "neural-style" for r in rows):
            ax.scatter([], [], color="grey", marker=mk, label=f"{size} px")
    for r in rows:
        if r["preset"] == "neural-style":
            ax.scatter(r["content"], r["style_swd"], marker="*", s=300 if r["size"] == 512 else 180,
                       color="gold", edgecolors="black", zorder=4,
                       label=f"neural-style's published picture at {r['size']} px")
    ax.set_xlabel("content distance C (block4_conv2; 0 = the photo)")
    ax.set_ylabel("style gap closed S_swd (0 = the photo, 1 = the painting)")
    ax.set_title("The frontier: black-edged points are the reference pair (golden_gate x starry_night)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right", ncol=2)
    save_figure(fig, path, dpi=110, overwrite=True)


def strip(rows, images: Path, args, size: int, presets, path: Path) -> None:
    """The reference pair at ``size``: the photo, neural-style's picture, then each setting's picture
    (from ``images``, as ``--save-images`` wrote them), each titled with its C and S_swd."""
    from numpynst.image import load_image
    from numpynst.plots import pyplot, save_figure
    plt = pyplot()
    by = {r["preset"]: r for r in rows if r["pair"] == REFERENCE_PAIR and r["size"] == size}
    panels = [("photo", load_image(args.reference / "golden_gate.jpg", size=size), None),
              ("neural-style (published)", load_image(args.reference / NEURAL_STYLE, size=size), by.get("neural-style"))]
    panels += [(p, load_image(images / f"{REFERENCE_PAIR}_{size}_{p}.png"), by[p]) for p in presets]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.5))
    for ax, (title, img, r) in zip(axes, panels):
        ax.imshow(img)
        ax.axis("off")
        ax.set_title(title if r is None else f"{title}\nC {r['content']:.2f}  S_swd {r['style_swd']:.2f}", fontsize=8)
    save_figure(fig, path, dpi=100, format="jpeg" if path.suffix.lower() in (".jpg", ".jpeg") else "png",
                overwrite=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--pairs", nargs="+", default=None, help="photo+painting names (default: all; see --list)")
    ap.add_argument("--presets", nargs="+", default=["default", "before"], choices=sorted(PRESETS))
    ap.add_argument("--paintings", type=Path, default=None,
                    help="a folder of paintings (default: the bundled ones, numpynst/data/samples)")
    ap.add_argument("--reference", type=Path, default=SHARED / "reference")
    ap.add_argument("--json", type=Path, default=HERE / "results" / "pictures.json",
                    help="rows are added to this file (a row of the same pair, size and setting is replaced)")
    ap.add_argument("--figure", type=Path, default=None, help="draw the frontier here (PNG)")
    ap.add_argument("--save-images", type=Path, default=None, help="also save each picture in this folder")
    ap.add_argument("--from", dest="from_json", type=Path, default=None, help="print/draw stored rows only")
    ap.add_argument("--batch", action="store_true", help="make the pictures with `numpynst batch`")
    ap.add_argument("--batch-dir", default="/tmp/numpynst_pictures_batch")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--iterations", type=int, default=None,
                    help="iterations per scale for every setting (a smoke test); default: each setting's")
    ap.add_argument("--markdown", action="store_true", help="with --from: print the table as markdown")
    ap.add_argument("--strip", type=Path, default=None,
                    help="with --from and --images: the reference pair's pictures side by side (--presets, --sizes)")
    ap.add_argument("--images", type=Path, default=None, help="the --save-images folder of earlier runs")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args(argv)

    pairs = all_pairs(args)
    if args.iterations is not None:
        for opts in PRESETS.values():
            opts["iterations"] = args.iterations
    if args.list:
        print("pairs:", ", ".join(pairs))
        print("presets:", "; ".join(f"{k} {v}" for k, v in PRESETS.items()))
        return 0
    if args.from_json is not None:
        rows = json.loads(args.from_json.read_text())
        print(markdown(rows) if args.markdown else table(rows))
        if args.figure:
            frontier(rows, args.figure)
        if args.strip:
            strip(rows, args.images, args, args.sizes[0], args.presets, args.strip)
        return 0
    chosen = args.pairs or list(pairs)
    unknown = [p for p in chosen if p not in pairs]
    if unknown:
        ap.error(f"unknown pair(s) {', '.join(unknown)}; known: {', '.join(pairs)}")

    from numpynst.metrics import Judge, sized_inputs
    from numpynst.vgg import VGG
    model = VGG.from_h5()
    judges: dict = {}

    def judge_for(pair, size, shape):
        key = (pair, size, shape[:2])
        if key not in judges:
            _, c, s = sized_inputs(_blank(shape), *pairs[pair])
            judges.clear()              # one pair at a time: keep the memory of one
            judges[key] = Judge(c, s, model)
        return judges[key]

    jobs = [(pair, size, preset) for size in args.sizes for pair in chosen for preset in args.presets]
    print(f"{len(jobs)} pictures; {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}", flush=True)
    rows = []
    for size in args.sizes:
        ns = neural_style_point(args, model, size)
        if ns is not None:
            rows.append(ns)
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    if args.batch:
        done = run_batch(args, pairs, jobs)
        from numpynst.image import load_image
        for pair, size, preset in jobs:
            r = done.get(f"{pair}_{size}_{preset}")
            if r is None or r["status"] != "done":
                print(f"{pair} {size} {preset}: {None if r is None else r['error']}")
                continue
            img = load_image(Path(args.batch_dir) / "out" / r["output"])
            m = judge_for(pair, size, img.shape)(img)
            rows.append({"pair": pair, "preset": preset, "size": size, **m.as_dict(),
                         "J": float(r["J_final"]), "iterations": int(r["iterations"]), "cpu_s": None,
                         "wall_s": float(r["seconds"]), "via": "batch"})
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    else:
        if args.save_images:
            args.save_images.mkdir(parents=True, exist_ok=True)
        for pair, size, preset in jobs:
            rows.append(run_one(model, judge_for, pair, pairs[pair], size, preset, args.save_images))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
            store(args.json, rows)          # after every picture: a stopped run keeps what it made
    store(args.json, rows)
    print(f"rows in {args.json}")
    if args.figure:
        frontier(json.loads(args.json.read_text()), args.figure)
        print(f"frontier in {args.figure}")
    return 0


def _blank(shape):
    import numpy as np
    return np.zeros((*shape[:2], 3), np.uint8)


def store(path: Path, rows) -> None:
    """Merge ``rows`` into the JSON list at ``path`` (same pair, size and setting: replaced), atomically."""
    from numpynst.files import atomic_path
    old = json.loads(path.read_text()) if path.is_file() else []
    def key(r):
        return r["pair"], r["size"], r["preset"]
    new = {key(r): r for r in rows}
    merged = [r for r in old if key(r) not in new] + rows
    merged.sort(key=lambda r: (r["pair"] != REFERENCE_PAIR, r["pair"], r["size"], r["preset"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(merged, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
