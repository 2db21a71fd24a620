"""Regenerate the README's gallery and optimizer comparison (docs/images/), on the bundled samples.

    python docs/make_gallery.py            # ~6 minutes on a 2-core CPU

Everything here goes through the public API with its defaults, so the pictures show what a user
gets from ``numpynst stylize`` at 256 px.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from numpynst.image import load_image, resize_to, sample_path, save_image
from numpynst.plots import save_optimizer_comparison
from numpynst.transfer import stylize
from numpynst.vgg import VGG

OUT = Path(__file__).resolve().parent / "images"
SIZE = 256
ITERATIONS = 100
PAIRS = [("chelsea", "ihc"), ("astronaut", "hubble"), ("coffee", "ihc")]


def main() -> int:
    OUT.mkdir(exist_ok=True)
    model = VGG.from_h5()
    facts = {}
    for content, style in PAIRS:
        res = stylize(sample_path(content), sample_path(style), size=SIZE, iterations=ITERATIONS, model=model,
                      tol=None)
        c = load_image(sample_path(content), size=SIZE)
        s = resize_to(load_image(sample_path(style), size=SIZE), c.shape[:2])   # same height for the strip
        save_image(OUT / f"{content}_{style}.jpg", np.concatenate([c, s, res.image], axis=1), quality=88)
        J = res.history["J"]
        facts[f"{content}+{style}"] = {"J0": J[0], "J_final": res.J_final, "ratio": res.J_final / J[0],
                                       "seconds": round(res.seconds, 1), "iterations": res.iterations}
        print(content, style, facts[f"{content}+{style}"], flush=True)

    histories, seconds = {}, {}
    for name in ("gd", "adam", "lbfgs"):
        res = stylize(sample_path("chelsea"), sample_path("ihc"), size=SIZE, iterations=ITERATIONS,
                      optimizer=name, model=model, tol=None)
        histories[name], seconds[name] = res.history, res.seconds
        facts[f"optimizer {name}"] = {"ratio": res.J_final / res.history["J"][0], "seconds": round(res.seconds, 1)}
        print(name, facts[f"optimizer {name}"], flush=True)
    save_optimizer_comparison(OUT / "optimizers.png", histories, seconds)
    (OUT / "facts.json").write_text(json.dumps(facts, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
