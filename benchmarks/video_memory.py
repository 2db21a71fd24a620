"""Memory of ``numpynst video`` against the clip's length: the frames are streamed, not held.

A clip of 640x480 frames (900 KiB each as RGB) is made with PyAV, and ``numpynst video`` runs on
its first N frames, for several N, in a fresh process each, with a tiny random VGG at ``--size 32``
and 1 iteration per frame (the stylization itself is then negligible; what is measured is what the
loop keeps). Printed: the peak resident memory of each process (``ru_maxrss``) and what holding
the N decoded frames would add. Flat peaks mean memory does not grow with the clip.

    python benchmarks/video_memory.py                    # N = 8, 32, 128
    python benchmarks/video_memory.py --frames 8 256
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

CHILD = """
import resource, sys
from numpynst.cli import main
code = main(sys.argv[1:])
print("peak_kib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "code", code)
"""


def make_clip(path: Path, n: int, w: int = 640, h: int = 480) -> None:
    import av
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, size=(h, w + 4 * n, 3), dtype=np.uint8)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=Fraction(25))
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        for i in range(n):
            for p in vs.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(base[:, 4 * i:4 * i + w]), format="rgb24")):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, nargs="+", default=[8, 32, 128])
    args = ap.parse_args()
    from numpynst.image import sample_path
    from numpynst.testing import write_tiny_vgg_h5
    work = Path(tempfile.mkdtemp(prefix="video_memory_"))
    n_max = max(args.frames)
    make_clip(work / "clip.mp4", n_max)
    weights = write_tiny_vgg_h5(work / "tiny.h5")
    print(f"{'frames':>7} {'peak RSS MiB':>13} {'the frames, if held, MiB':>25}")
    for n in args.frames:
        cmd = [sys.executable, "-c", CHILD, "video", str(work / "clip.mp4"), str(sample_path("ihc")), "-o",
               str(work / f"out{n}"), "--frames", f"0:{n}", "--size", "32", "--iterations", "1", "--weights",
               str(weights), "--quiet"]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()
        peak = int(out[out.index("peak_kib") + 1]) / 1024
        print(f"{n:7d} {peak:13.0f} {n * 640 * 480 * 3 / 2**20:25.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
