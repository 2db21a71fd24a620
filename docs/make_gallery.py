"""Regenerate the pictures of the README and docs/ (docs/images/) on the bundled samples, through the public API.

    python docs/make_gallery.py gallery      # three strips at 512 px, stylize's defaults
    python docs/make_gallery.py sweep        # the style-weight sweep: five settings at 128 px
    python docs/make_gallery.py optimizers   # gd / adam / lbfgs on the demo pair at 256 px
    python docs/make_gallery.py              # all three (tens of minutes on a 2-core CPU)

Each part updates its own entries of ``docs/images/facts.json`` (time, J and the figures quoted
in the README and the docs/ pages) and leaves the others alone.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from numpynst.files import atomic_file
from numpynst.image import load_image, resize_to, sample_path, save_image
from numpynst.transfer import DEFAULT_BETA, COEFFICIENT_RANGES, stylize
from numpynst.vgg import VGG

OUT = Path(__file__).resolve().parent / "images"
FACTS = OUT / "facts.json"
GALLERY_SIZE = 512
PAIRS = [("chelsea", "ihc"), ("astronaut", "hubble"), ("coffee", "ihc")]
# 128 px (not 256): seven tiles make a README-wide strip, and the five runs fit a shared 2-core CPU
SWEEP_SIZE, SWEEP_ITERATIONS, SWEEP_PAIR = 128, 100, ("chelsea", "ihc")
# five style weights, evenly spaced in log scale across the documented range's visible part
# (0.1..10), the default (1) in the middle
SWEEP_BETAS = [0.1, 0.3, DEFAULT_BETA, 3.0, 10.0]
OPT_SIZE, OPT_ITERATIONS = 256, 100


def update_facts(entries: dict) -> None:
    """Merge ``entries`` into facts.json, written atomically."""
    facts = json.loads(FACTS.read_text()) if FACTS.exists() else {}
    facts.update(entries)
    with atomic_file(FACTS) as fh:
        fh.write((json.dumps(facts, indent=1) + "\n").encode())


def strip(content: str, style: str, result: np.ndarray) -> np.ndarray:
    """content | style | result at the result's height."""
    c = resize_to(load_image(sample_path(content), size=max(result.shape[:2])), result.shape[:2])
    s = resize_to(load_image(sample_path(style), size=max(result.shape[:2])), result.shape[:2])
    return np.concatenate([c, s, result], axis=1)


def gallery(model) -> None:
    facts = {}
    for content, style in PAIRS:
        cpu, load = time.process_time(), os.getloadavg()[0]
        res = stylize(sample_path(content), sample_path(style), size=GALLERY_SIZE, model=model)
        cpu = time.process_time() - cpu      # all threads; unlike wall time, not inflated by other jobs
        save_image(OUT / f"{content}_{style}.jpg", strip(content, style, res.image), quality=90)
        J = res.history["J"]
        facts[f"{content}+{style}"] = {"size": GALLERY_SIZE, "J0": J[0], "J_final": res.J_final,
                                       "ratio": res.J_final / J[0], "seconds": round(res.seconds, 1),
                                       "cpu_seconds": round(cpu, 1),
                                       "load_average": [round(load, 1), round(os.getloadavg()[0], 1)],
                                       "iterations": res.iterations, "stopped": res.stopped}
        print(content, style, facts[f"{content}+{style}"], flush=True)
    update_facts(facts)


def label(img: np.ndarray, text: str) -> np.ndarray:
    """``img`` with ``text`` on a white band above it."""
    from PIL import Image, ImageDraw
    band = Image.new("RGB", (img.shape[1], 22), "white")
    ImageDraw.Draw(band).text((6, 5), text, fill="black")
    return np.concatenate([np.asarray(band), img], axis=0)


def sweep(model) -> None:
    content, style = SWEEP_PAIR
    photo = load_image(sample_path(content), size=SWEEP_SIZE)
    tiles, rows = [], []
    for beta in SWEEP_BETAS:
        res = stylize(sample_path(content), sample_path(style), size=SWEEP_SIZE, iterations=SWEEP_ITERATIONS,
                      model=model, beta=beta, tol=None)
        i = int(np.argmin(res.history["J"]))
        row = {"beta": beta, "mean_abs_diff": float(np.abs(res.image.astype(float) - photo).mean()),
               "content": res.history["content"][i], "style": res.history["style"][i],
               "tv": res.history["tv"][i], "seconds": round(res.seconds, 1)}
        row["style_over_content"] = row["style"] / row["content"]
        rows.append(row)
        print(row, flush=True)
        tiles.append(label(res.image, f"style weight {beta:g}" + (" (default)" if beta == DEFAULT_BETA else "")))
    head = [label(photo, "photo"), label(resize_to(load_image(sample_path(style), size=SWEEP_SIZE),
                                                   photo.shape[:2]), "style")]
    save_image(OUT / "style_sweep.jpg", np.concatenate(head + tiles, axis=1), quality=90)
    update_facts({"style sweep": {"pair": f"{content}+{style}", "size": SWEEP_SIZE,
                                  "iterations": SWEEP_ITERATIONS, "range": COEFFICIENT_RANGES["beta"], "runs": rows}})


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


PARTS = {"gallery": gallery, "sweep": sweep, "optimizers": optimizers}


def main(argv: list[str]) -> int:
    unknown = [a for a in argv if a not in PARTS]
    if unknown:
        print(f"make_gallery.py: unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}",
              file=sys.stderr)
        return 2
    OUT.mkdir(exist_ok=True)
    model = VGG.from_h5()
    for part in argv or list(PARTS):
        PARTS[part](model)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
