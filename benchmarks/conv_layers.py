"""Per-layer-shape timing of numpynst's convolution fast paths (and PyTorch's, when installed).

For every 3x3 convolution shape of VGG19 at the given image sizes (block1_conv1 .. block5_conv1,
N=1, float32) this times, interleaved and repeated (medians reported):

  forward   im2col (chunked, one GEMM per chunk) | wino2 = F(2x2,3x3) with its weight transform
            every call | wino2c = the same with the transform cached (read-only weights) |
            wino4c = F(4x4,3x3), transform cached | torch.conv2d
  dx        col2im (GEMM + scatter) | im2col (conv of dout with the flipped kernel) | wino2 |
            wino2c | wino4c (the transposed F(4x4,3x3), the forward's U) | wino4f (F(4x4,3x3) of
            the flipped kernel, a second cached U) | torch (torch.nn.grad.conv2d_input)

and prints milliseconds and GFLOP/s (2*H*W*9*C*F flops per pass, whatever the algorithm does), so
the dispatch rule in numpynst/layers/fast/dispatch.py can be checked against measurements.

    python benchmarks/conv_layers.py --size 256 512 [--repeat 5] [--threads 2] [--chunk-mib 8]

Timings only; nothing is asserted. The machine may be shared: the order of the methods is rotated
every repetition so a burst of load hits them all alike.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

# Thread counts must be fixed before NumPy/BLAS load.
if __name__ == "__main__":
    _pre = argparse.ArgumentParser(add_help=False)
    _pre.add_argument("--threads", type=int, default=2)
    _t = str(_pre.parse_known_args()[0].threads)
    for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_v, _t)

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from numpynst.layers import conv  # noqa: E402
from numpynst.layers.fast import im2col as fast_im2col, winograd, winograd4  # noqa: E402

# (name, spatial divisor, C, F) for VGG19 up to block5_conv1
LAYERS = [
    ("block1_conv1", 1, 3, 64), ("block1_conv2", 1, 64, 64),
    ("block2_conv1", 2, 64, 128), ("block2_conv2", 2, 128, 128),
    ("block3_conv1", 4, 128, 256), ("block3_conv2", 4, 256, 256),
    ("block4_conv1", 8, 256, 512), ("block4_conv2", 8, 512, 512),
    ("block5_conv1", 16, 512, 512),
]


METHODS = ("col2im", "im2col", "wino2", "wino2c", "wino4c", "wino4f", "torch")


def _median(v):
    return float(np.median(v))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chunk-mib", type=float, default=None, help="override both chunk budgets (MiB)")
    ap.add_argument("--layers", nargs="*", default=None, help="subset of layer names")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--pause", type=float, default=0.2, help="seconds of sleep around torch calls")
    args = ap.parse_args(argv)
    if args.chunk_mib:
        fast_im2col.IM2COL_CHUNK_BYTES = winograd.CHUNK_BYTES = winograd4.CHUNK_BYTES = int(args.chunk_mib * 2 ** 20)
    torch = None
    if not args.no_torch:
        try:
            import torch  # noqa: PLC0415
            torch.set_num_threads(args.threads)
        except ImportError:
            torch = None
    rng = np.random.default_rng(0)
    print(f"threads={args.threads}  chunk budgets: im2col {fast_im2col.IM2COL_CHUNK_BYTES / 2**20:.0f} MiB, "
          f"winograd {winograd.CHUNK_BYTES / 2**20:.0f} MiB  (medians of {args.repeat}; ms and GFLOP/s)")
    for size in args.size:
        print(f"\n== {size} px")
        hdr = f"{'layer':13s} {'HxW':>9s} {'C':>4s} {'F':>4s} | {'pass':3s} " + " ".join(f"{m:>15s}" for m in METHODS)
        print(hdr)
        for name, div, c, f in LAYERS:
            if args.layers and name not in args.layers:
                continue
            h = size // div
            x = rng.standard_normal((1, h, h, c)).astype(np.float32)
            w = (rng.standard_normal((3, 3, c, f)) * np.sqrt(2.0 / (9 * c))).astype(np.float32)
            b = np.zeros(f, np.float32)
            dout = rng.standard_normal((1, h, h, f)).astype(np.float32)
            wr = w.copy()
            wr.flags.writeable = False                  # read-only: conv caches its Winograd transforms
            _, cache_i = conv.conv2d_forward(x, w, b, method="im2col")
            _, cache_r = conv.conv2d_forward(x, wr, b, method="im2col")
            fns = {
                ("fwd", "im2col"): lambda: conv.conv2d_forward(x, w, b, method="im2col"),
                ("fwd", "wino2"): lambda: conv.conv2d_forward(x, w, b, method="winograd"),
                ("fwd", "wino2c"): lambda: conv.conv2d_forward(x, wr, b, method="winograd"),
                ("fwd", "wino4c"): lambda: conv.conv2d_forward(x, wr, b, method="winograd4"),
                ("dx", "col2im"): lambda: conv.conv2d_backward(dout, cache_i, False, method="col2im"),
                ("dx", "im2col"): lambda: conv.conv2d_backward(dout, cache_i, False, method="im2col"),
                ("dx", "wino2"): lambda: conv.conv2d_backward(dout, cache_i, False, method="winograd"),
                ("dx", "wino2c"): lambda: conv.conv2d_backward(dout, cache_r, False, method="winograd"),
                ("dx", "wino4c"): lambda: conv.conv2d_backward(dout, cache_r, False, method="winograd4"),
                ("dx", "wino4f"): lambda: conv.conv2d_backward(dout, cache_r, False, method="winograd4_flip"),
            }
            if torch is not None:
                tx = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
                tw = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1)))
                tb = torch.from_numpy(b)
                td = torch.from_numpy(np.ascontiguousarray(dout.transpose(0, 3, 1, 2)))
                F = torch.nn.functional

                def t_fwd():
                    with torch.no_grad():
                        return F.conv2d(tx, tw, tb, padding=1)

                def t_dx():
                    return torch.nn.grad.conv2d_input(tx.shape, tw, td, padding=1)
                fns[("fwd", "torch")] = t_fwd
                fns[("dx", "torch")] = t_dx
            keys = list(fns)
            for k in keys:           # warm-up (allocations, scratch buffers, torch's first call)
                fns[k]()
            times = {k: [] for k in keys}
            prev = ("", "")
            for r in range(args.repeat):
                order = keys[r % len(keys):] + keys[:r % len(keys)]
                for k in order:
                    if "torch" in k or "torch" in prev:
                        time.sleep(args.pause)  # let the other library's spinning threads go to sleep
                    prev = k
                    t0 = time.perf_counter()
                    fns[k]()
                    times[k].append(time.perf_counter() - t0)
            gf = 2.0 * h * h * 9 * c * f / 1e9
            for pss in ("fwd", "dx"):
                cells = []
                for m in METHODS:
                    if (pss, m) in times:
                        t = _median(times[(pss, m)])
                        cells.append(f"{t * 1e3:6.2f}ms {gf / t:4.0f}GF")
                    else:
                        cells.append("-")
                print(f"{name:13s} {f'{h}x{h}':>9s} {c:4d} {f:4d} | {pss:3s} " + " ".join(f"{s:>15s}" for s in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
