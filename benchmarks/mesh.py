"""The dot mesh, measured: how much of a picture's detail sits at the finest scales, beside the painting's.

Some results show a mesh of small dots, a few pixels apart, over the picture. A painting has fine
detail too (brush hairs, canvas), so "has high frequencies" is no defect in itself; too many, more
than the painting has at the same size, is. For an RGB picture ``x`` (its luminance ``Y``, the
mean removed, a Hann window against the edges' jump) the **fine share**

    F(x) = sum_{|f| > f0} |Y^(f)|^2 / sum_{f != 0} |Y^(f)|^2,      f in cycles per pixel,

is the share of the picture's variance at spatial frequencies above ``f0`` (default 0.25: periods
under 4 pixels; the mesh's dots are 2 to 4 pixels apart). The printed **excess** is
``F(x) / F(painting)``, the painting resized to the picture's size as ``stylize`` sizes it: 1 = as
fine-grained as the painting. ``F(photo)`` is printed beside it. The **checkerboard share** is the
share at the four frequencies (+-1/2, +-1/2), (0, 1/2), (1/2, 0) and their neighbours: a period-2
pattern, as max pooling's backward would leave (its gradient reaches one pixel in each 2 x 2
window).

    python benchmarks/mesh.py --pictures DIR --pair golden_gate+starry_night --size 256

takes ``DIR/PAIR_SIZE_SETTING.png`` (``benchmarks/pictures.py --save-images`` names) for every
setting found. Nothing is asserted; the numbers go to benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of an RGB ``(H, W, 3)`` picture, float64."""
    return rgb[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def spectrum(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Power ``|Y^|^2`` of the windowed, mean-free luminance, and each bin's frequencies (fy, fx)."""
    y = luminance(rgb)
    y = y - y.mean()
    win = np.outer(np.hanning(y.shape[0]), np.hanning(y.shape[1]))
    p = np.abs(np.fft.fft2(y * win)) ** 2
    fy = np.fft.fftfreq(y.shape[0])[:, None] * np.ones((1, y.shape[1]))
    fx = np.fft.fftfreq(y.shape[1])[None, :] * np.ones((y.shape[0], 1))
    return p, fy, fx


def fine_share(rgb: np.ndarray, f0: float = 0.25) -> float:
    """Share of the variance at radial frequency above ``f0`` cycles per pixel."""
    p, fy, fx = spectrum(rgb)
    r = np.hypot(fy, fx)
    return float(p[r > f0].sum() / p[r > 0].sum())


def checkerboard_share(rgb: np.ndarray, width: float = 0.03) -> float:
    """Share of the variance within ``width`` cycles/px of the period-2 frequencies (1/2 in y or x)."""
    p, fy, fx = spectrum(rgb)
    near = (np.abs(np.abs(fy) - 0.5) < width) | (np.abs(np.abs(fx) - 0.5) < width)
    return float(p[near].sum() / p[np.hypot(fy, fx) > 0].sum())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pictures", type=Path, required=True, action="append", help="folder(s) of pictures")
    ap.add_argument("--pair", default="golden_gate+starry_night")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--reference", type=Path, default=HERE.parent.parent / "shared" / "reference")
    ap.add_argument("--f0", type=float, default=0.25)
    args = ap.parse_args(argv)
    from numpynst.image import load_image, resize_to, sample_path

    if args.pair == "golden_gate+starry_night":
        photo_path, painting_path = args.reference / "golden_gate.jpg", args.reference / "starry_night.jpg"
    else:
        photo_path, painting_path = (sample_path(n) for n in args.pair.split("+"))
    found = {}
    for folder in args.pictures:
        for p in sorted(folder.glob(f"{args.pair}_{args.size}_*.png")):
            found[p.stem.split(f"_{args.size}_", 1)[1]] = load_image(p)
    if not found:
        print(f"no {args.pair}_{args.size}_*.png in {', '.join(map(str, args.pictures))}", file=sys.stderr)
        return 2
    shape = next(iter(found.values())).shape[:2]
    photo = resize_to(load_image(photo_path, size=args.size), shape)
    painting = resize_to(load_image(painting_path, size=max(shape)), shape)
    ref = fine_share(painting, args.f0)
    print(f"{args.pair} at {args.size} px; fine share F = variance above {args.f0:g} cycles/px")
    print(f"{'picture':22s} {'F':>7s} {'F/F(painting)':>14s} {'checkerboard':>13s}")
    for name, img in [("photo", photo), ("painting", painting), *found.items()]:
        f = fine_share(img, args.f0)
        print(f"{name:22s} {f:7.4f} {f / ref:14.2f} {checkerboard_share(img):13.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
