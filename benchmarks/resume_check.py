"""The headline measure of checkpoints: a run killed with SIGKILL at a random moment and continued
ends with the same picture as an uninterrupted one.

    python benchmarks/resume_check.py --size 160 --iterations 300 --checkpoint-every 15

1. the uninterrupted run: ``numpynst stylize`` on the bundled pair, ``--no-checkpoint``, timed;
2. the same command with ``--checkpoint-every S``, SIGKILLed at a moment drawn uniformly between
   20% and 90% of the first run's wall time (``--seed`` draws it);
3. the same command again: it continues from the checkpoint and writes the picture.

Both pictures are written with ``--bit-depth 16`` (from the float result: 65536 levels, so a
difference in the optimiser's last bits would show) and compared pixel for pixel. Every process
gets the same thread count (``OMP_NUM_THREADS`` etc. = ``--threads``). Prints one JSON record:
the times, the moment of the kill, the iteration continued from, and whether the pictures are
equal (with the largest difference if not). Timings depend on the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def read_png16(path: Path) -> np.ndarray:
    """The ``(H, W, 3)`` uint16 pixels of a 16-bit RGB PNG (Pillow reads such files as 8-bit RGB,
    which would hide a difference in the low byte). Handles the five PNG row filters, no interlace."""
    import struct
    import zlib
    data = path.read_bytes()
    pos, idat, header = 8, [], None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + n
    w, h, depth, colour, _, _, interlace = header
    if (depth, colour, interlace) != (16, 2, 0):
        raise SystemExit(f"{path}: not a 16-bit RGB PNG without interlace")
    bpp, stride = 6, w * 6
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(h, 1 + stride)
    out = np.zeros((h, stride), np.int32)
    prior = np.zeros(stride, np.int32)
    for y in range(h):
        f, row = raw[y, 0], raw[y, 1:].astype(np.int32)
        if f in (0, 2):
            cur = row + (prior if f == 2 else 0)
        else:
            cur = row.copy()
            for x in range(bpp, stride + bpp, bpp):         # left neighbours: one pixel at a time
                s = slice(x - bpp, x)
                a = cur[x - 2 * bpp:x - bpp] if x > bpp else np.zeros(bpp, np.int32)
                b, c = prior[s], prior[x - 2 * bpp:x - bpp] if x > bpp else np.zeros(bpp, np.int32)
                if f == 1:
                    pred = a
                elif f == 3:
                    pred = (a + b) // 2
                else:                                        # 4: Paeth
                    pa, pb, pc = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)
                    pred = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
                cur[s] = (row[s] + pred) & 255
        cur &= 255
        out[y], prior = cur, cur
    return (out.reshape(h, w, 3, 2)[..., 0].astype(np.uint16) << 8) | out.reshape(h, w, 3, 2)[..., 1].astype(np.uint16)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--checkpoint-every", type=float, default=15.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=None, help="draws the moment of the kill (default: random)")
    ap.add_argument("--concurrent", type=float, default=None, metavar="SECONDS",
                    help="run the uninterrupted and the killed run side by side (one core each, same thread "
                         "count): the kill is drawn in 20-90%% of SECONDS, the expected length of a run")
    ap.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more stylize options")
    args = ap.parse_args()
    from numpynst.checkpoint import checkpoint_path
    from numpynst.image import sample_path

    env = {**os.environ, **{k: str(args.threads) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                           "MKL_NUM_THREADS")}}
    base = [sys.executable, "-m", "numpynst", "stylize", str(sample_path("chelsea")), str(sample_path("hubble")),
            "--size", str(args.size), "--iterations", str(args.iterations), "--tol", "0", "--quiet",
            "--bit-depth", "16", *args.extra]
    with tempfile.TemporaryDirectory() as tmp:
        ref, out = Path(tmp) / "ref.png", Path(tmp) / "out.png"
        t_start = time.perf_counter()
        t0 = time.perf_counter()
        first = subprocess.Popen(base + ["-o", str(ref), "--no-checkpoint"], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if args.concurrent is None:         # one after the other: the kill drawn from the measured length
            if first.wait() != 0:
                raise SystemExit("the uninterrupted run failed")
            t_ref = time.perf_counter() - t0
        kill_at = random.Random(args.seed).uniform(0.2, 0.9) * (t_ref if args.concurrent is None else args.concurrent)
        cmd = base + ["-o", str(out), "--checkpoint-every", str(args.checkpoint_every)]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None and time.perf_counter() - t0 < kill_at:
            time.sleep(0.05)
        killed = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        t_killed = time.perf_counter() - t0
        ck = checkpoint_path(out)
        had_checkpoint = ck.exists()
        t0 = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        t_resume = time.perf_counter() - t0
        if args.concurrent is not None:
            if first.wait() != 0:
                raise SystemExit("the uninterrupted run failed")
            t_ref = time.perf_counter() - t_start
        m = re.search(r"continuing from checkpoint .*: scale (\d+) of (\d+), iteration (\d+)", done.stderr)
        a = read_png16(ref).astype(np.int64)                 # all 16 bits (Pillow would give 8)
        b = read_png16(out).astype(np.int64) if out.exists() else None
        record = {
            "size": args.size, "iterations": args.iterations, "threads": args.threads,
            "checkpoint every s": args.checkpoint_every,
            "side by side": args.concurrent is not None, "uninterrupted s": round(t_ref, 1), "killed after s": round(t_killed, 1),
            "killed while running": killed, "checkpoint left": had_checkpoint,
            "continued from iteration": int(m.group(3)) if m else None,
            "continued run s": round(t_resume, 1), "exit status": done.returncode,
            "checkpoint removed": not ck.exists(),
            "pictures equal (16-bit)": b is not None and a.shape == b.shape and bool(np.array_equal(a, b)),
            "largest difference (of 65535)": None if b is None or a.shape != b.shape else int(np.abs(a - b).max()),
            "levels in the picture": int(len(np.unique(a))),
        }
    print(json.dumps(record, indent=1))
    return 0 if record["pictures equal (16-bit)"] else 1


if __name__ == "__main__":
    sys.exit(main())
