"""Regenerate the pictures of the README and docs/ (docs/images/) on the bundled samples, through the public API.

    python docs/make_gallery.py gallery      # every bundled photo x painting at 512 px, stylize's defaults
    python docs/make_gallery.py reference    # golden_gate + starry_night beside neural-style's picture
    python docs/make_gallery.py sweep        # the style-weight sweep on the reference pair at 512 px
    python docs/make_gallery.py optimizers   # gd / adam / lbfgs on the demo pair at 256 px
    python docs/make_gallery.py              # all four (hours on a 2-core CPU)

Each picture of the first three parts is made once and measured (``numpynst.metrics``: content
distance C, style gap closed S_gram and S_swd), as the picture benchmark makes it: it is taken from
``--images DIR`` (``benchmarks/pictures.py --save-images DIR`` names them PAIR_SIZE_SETTING.png)
with its row of ``--rows`` (default benchmarks/results/pictures.json, for the time and J) when both
are there, else made here with ``stylize`` and saved into DIR. Each part updates its own entries of
``docs/images/facts.json`` (C, S, time, J: the figures the README and docs/ quote) and leaves the
others alone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from numpynst.files import atomic_file
from numpynst.image import PAINTINGS, load_image, resize_to, sample_names, sample_path, save_image
from numpynst.transfer import DEFAULT_BETA, COEFFICIENT_RANGES, stylize
from numpynst.vgg import VGG

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "images"
FACTS = OUT / "facts.json"
ROWS = ROOT / "benchmarks" / "results" / "pictures.json"
REFERENCE = ROOT.parent / "shared" / "reference"
NEURAL_STYLE = "golden_gate_starry_neural-style.png"
REFERENCE_PAIR = "golden_gate+starry_night"
GALLERY_SIZE = 512
#: the sweep: style weights a half decade apart over the documented range's visible part, the
#: default in the (logarithmic) middle; stylize's defaults otherwise (coarse to fine at 512 px)
SWEEP_BETAS = [1.0, 3.0, DEFAULT_BETA, 30.0, 100.0]
OPT_SIZE, OPT_ITERATIONS = 256, 100


def update_facts(entries: dict) -> None:
    """Merge ``entries`` into facts.json, written atomically."""
    facts = json.loads(FACTS.read_text()) if FACTS.exists() else {}
    facts.update(entries)
    with atomic_file(FACTS) as fh:
        fh.write((json.dumps(facts, indent=1) + "\n").encode())


def write_block(page: Path, name: str, text: str) -> None:
    """Replace what stands between ``<!-- NAME -->`` and ``<!-- end of NAME -->`` in ``page`` (a
    docs page) with ``text``: the page's figures come from the run that made the pictures."""
    head, tail = f"<!-- {name} -->", f"<!-- end of {name} -->"
    doc = page.read_text()
    i, j = doc.index(head) + len(head), doc.index(tail)
    with atomic_file(page) as fh:
        fh.write((doc[:i] + "\n" + text.rstrip() + "\n" + doc[j:]).encode())


def _minutes(f: dict) -> str:
    return "" if f.get("cpu_s") is None else f"{f['cpu_s'] / 60:.1f}"


def label(img: np.ndarray, text: str, lines: int = 1) -> np.ndarray:
    """``img`` with ``text`` (``lines`` lines) on a white band above it, in a font sized to be read
    when the figure is shown at README width."""
    from PIL import Image, ImageDraw, ImageFont
    size = max(12, img.shape[1] // 18)
    band = Image.new("RGB", (img.shape[1], lines * (size + 4) + 8), "white")
    ImageDraw.Draw(band).multiline_text((6, 4), text, fill="black", spacing=4,
                                        font=ImageFont.load_default(size=size))
    return np.concatenate([np.asarray(band), img], axis=0)


def pair_paths(pair: str) -> tuple[Path, Path]:
    photo, painting = pair.split("+")
    if pair == REFERENCE_PAIR:
        return REFERENCE / "golden_gate.jpg", REFERENCE / "starry_night.jpg"
    return sample_path(photo), sample_path(painting)


class Pictures:
    """The pictures of (pair, setting) at one size: stored ones (``images`` + ``rows``) or made here."""

    def __init__(self, model, images: Path, rows: Path = ROWS):
        self.model, self.images = model, Path(images)
        self.rows = {(r["pair"], r["size"], r["preset"]): r for r in
                     (json.loads(rows.read_text()) if rows.is_file() else [])}

    def get(self, pair: str, size: int, preset: str, options: dict) -> tuple[np.ndarray, dict]:
        from numpynst.metrics import measure
        path = self.images / f"{pair}_{size}_{preset}.png"
        row = self.rows.get((pair, size, preset))
        content, style = pair_paths(pair)
        if path.is_file() and row is not None:
            img = load_image(path)
            facts = {k: row.get(k) for k in ("J", "iterations", "cpu_s", "wall_s", "stopped")}
        else:
            cpu = time.process_time()
            res = stylize(content, style, size=size, model=self.model, **options)
            img = res.image
            self.images.mkdir(parents=True, exist_ok=True)
            save_image(path, img, overwrite=True)
            facts = {"J": res.J_final, "iterations": res.iterations, "cpu_s": round(time.process_time() - cpu, 1),
                     "wall_s": round(res.seconds, 1), "stopped": res.stopped}
        m = measure(img, content, style, model=self.model)
        facts.update(size=size, setting=preset, options=options, C=m.content, S_gram=m.style_gram,
                     S_swd=m.style_swd, load_average=[round(v, 1) for v in os.getloadavg()])
        print(pair, preset, {k: facts[k] for k in ("C", "S_gram", "S_swd", "cpu_s", "wall_s")}, flush=True)
        return img, facts


def _cell(img: np.ndarray, side: int) -> np.ndarray:
    """``img`` letterboxed into a white ``side`` x ``side`` square."""
    from PIL import Image
    h, w = img.shape[:2]
    k = side / max(h, w)
    small = np.asarray(Image.fromarray(img).resize((max(1, round(w * k)), max(1, round(h * k))), Image.LANCZOS))
    out = np.full((side, side, 3), 255, np.uint8)
    y, x = (side - small.shape[0]) // 2, (side - small.shape[1]) // 2
    out[y:y + small.shape[0], x:x + small.shape[1]] = small
    return out


def gallery(model, pictures: Pictures) -> None:
    """One grid: the paintings across the top, a photo at the start of each row, every result at
    512 px with stylize's defaults (shown at ``cell`` px), each titled with its C and S_swd."""
    cell, photos = 256, sample_names("content")
    head = [label(np.full((cell, cell, 3), 255, np.uint8), "photo \\ painting")]
    head += [label(_cell(load_image(sample_path(p)), cell), p.replace("_", " ")) for p in PAINTINGS]
    rows, facts = [np.concatenate(head, axis=1)], {}
    for photo in photos:
        row = [label(_cell(load_image(sample_path(photo)), cell), photo)]
        for painting in PAINTINGS:
            pair = f"{photo}+{painting}"
            img, f = pictures.get(pair, GALLERY_SIZE, "default", {})
            facts[f"gallery {pair}"] = f
            row.append(label(_cell(img, cell), f"C {f['C']:.2f}  S_swd {f['S_swd']:.2f}"))
        rows.append(np.concatenate(row, axis=1))
    save_image(OUT / "gallery_512.jpg", np.concatenate(rows, axis=0), quality=88, overwrite=True)
    update_facts(facts)
    lines = ["| photo | painting | C | S_gram | S_swd | iterations | CPU min | wall min |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for key, f in facts.items():
        photo, painting = key.split(" ", 1)[1].split("+")
        wall = "" if f.get("wall_s") is None else f"{f['wall_s'] / 60:.1f}"
        lines.append(f"| {photo} | {painting} | {f['C']:.3f} | {f['S_gram']:.3f} | {f['S_swd']:.3f} | "
                     f"{f['iterations']} | {_minutes(f)} | {wall} |")
    write_block(ROOT / "docs" / "gallery.md", "gallery table", "\n".join(lines))


def reference(model, pictures: Pictures) -> None:
    """The reference pair at 512 px: the photo, neural-style's published picture, ours with the
    defaults before issue 26 and now, each titled with its C and S_swd."""
    from numpynst.metrics import measure
    photo, painting = pair_paths(REFERENCE_PAIR)
    ns = load_image(REFERENCE / NEURAL_STYLE)
    m = measure(ns, photo, painting, model=model)
    facts = {"reference neural-style": {"size": max(ns.shape[:2]), "C": m.content, "S_gram": m.style_gram,
                                        "S_swd": m.style_swd, "iterations": 1000}}
    panels = [(load_image(photo, size=GALLERY_SIZE), "the photo"),
              (ns, f"neural-style, published\nC {m.content:.2f}  S_swd {m.style_swd:.2f}")]
    for preset, options, title in (("before", {"beta": 1.0, "scales": [1.0]}, "numpynst, defaults until now"),
                                   ("default", {}, "numpynst, defaults")):
        img, f = pictures.get(REFERENCE_PAIR, GALLERY_SIZE, preset, options)
        facts[f"reference {preset}"] = f
        panels.append((img, f"{title}\nC {f['C']:.2f}  S_swd {f['S_swd']:.2f}"))
    h = min(p[0].shape[0] for p in panels)
    tiles = [label(resize_to(img, (h, round(img.shape[1] * h / img.shape[0]))), text, 2) for img, text in panels]
    save_image(OUT / "pictures_reference_512.jpg", np.concatenate(tiles, axis=1), quality=88, overwrite=True)
    update_facts(facts)
    lines = ["| picture | C | S_gram | S_swd | CPU min |", "|---|---:|---:|---:|---:|"]
    names = {"reference neural-style": "neural-style's published picture (1000 iterations)",
             "reference before": "numpynst, the defaults until issue 26", "reference default": "numpynst, the defaults"}
    lines += [f"| {names[k]} | {f['C']:.3f} | {f['S_gram']:.3f} | {f['S_swd']:.3f} | {_minutes(f)} |"
              for k, f in facts.items()]
    write_block(ROOT / "docs" / "gallery.md", "reference table", "\n".join(lines))


def sweep(model, pictures: Pictures) -> None:
    """The reference pair at 512 px across the style weights of :data:`SWEEP_BETAS`."""
    photo, _ = pair_paths(REFERENCE_PAIR)
    photo_rgb = load_image(photo, size=GALLERY_SIZE)
    tiles, runs = [label(_cell(photo_rgb, 256), "photo", 2)], []
    for beta in SWEEP_BETAS:
        preset = "default" if beta == DEFAULT_BETA else f"style{beta:g}"
        img, f = pictures.get(REFERENCE_PAIR, GALLERY_SIZE, preset, {"beta": beta})
        f = {"beta": beta, **f, "mean_abs_diff": float(np.abs(img.astype(float) - resize_to(photo_rgb, img.shape[:2])).mean())}
        runs.append(f)
        text = f"style weight {beta:g}" + (" (default)" if beta == DEFAULT_BETA else "")
        tiles.append(label(_cell(img, 256), f"{text}\nC {f['C']:.2f}  S_swd {f['S_swd']:.2f}", 2))
    save_image(OUT / "style_sweep.jpg", np.concatenate(tiles, axis=1), quality=88, overwrite=True)
    update_facts({"style sweep": {"pair": REFERENCE_PAIR, "size": GALLERY_SIZE, "range": COEFFICIENT_RANGES["beta"],
                                  "runs": runs}})
    lines = ["| style weight | C | S_gram | S_swd | mean \\|result - photo\\| (grey levels) |", "|---:|---:|---:|---:|---:|"]
    lines += [f"| {f['beta']:g}{' (default)' if f['beta'] == DEFAULT_BETA else ''} | {f['C']:.3f} | {f['S_gram']:.3f} | "
              f"{f['S_swd']:.3f} | {f['mean_abs_diff']:.1f} |" for f in runs]
    write_block(ROOT / "docs" / "options.md", "sweep table", "\n".join(lines))


def optimizers(model) -> None:
    from numpynst.plots import save_optimizer_comparison
    histories, seconds, facts = {}, {}, {}
    for name in ("gd", "adam", "lbfgs"):
        res = stylize(sample_path("chelsea"), sample_path("ihc"), size=OPT_SIZE, iterations=OPT_ITERATIONS,
                      optimizer=name, model=model, tol=None)
        histories[name], seconds[name] = res.history, res.seconds
        facts[f"optimizer {name}"] = {"ratio": res.J_final / res.history["J"][0], "seconds": round(res.seconds, 1)}
        print(name, facts[f"optimizer {name}"], flush=True)
    save_optimizer_comparison(OUT / "optimizers.png", histories, seconds)
    update_facts(facts)


PARTS = {"gallery": gallery, "reference": reference, "sweep": sweep, "optimizers": optimizers}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("parts", nargs="*", metavar="PART", help="any of " + ", ".join(PARTS) + " (default: all)")
    ap.add_argument("--images", type=Path, default=Path("gallery-pictures"),
                    help="where the pictures are taken from or saved (default ./gallery-pictures)")
    ap.add_argument("--rows", type=Path, default=ROWS, help="the picture benchmark's rows (time, J)")
    args = ap.parse_args(argv)
    unknown = [a for a in args.parts if a not in PARTS]
    if unknown:
        ap.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    OUT.mkdir(exist_ok=True)
    model = VGG.from_h5()
    pictures = Pictures(model, args.images, args.rows)
    for part in args.parts or list(PARTS):
        PARTS[part](model) if part == "optimizers" else PARTS[part](model, pictures)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
