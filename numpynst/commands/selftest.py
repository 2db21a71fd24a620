"""``numpynst selftest``: check every hand-written backward pass against central differences.

Runs in a few seconds, needs no weights or images, and prints each relative error next to the bound
it must meet, so a user can see on their own machine (and backend) that the gradients are right.
It also checks the Winograd paths VGG runs (3x3 kernel, stride 1, pad 1, 64 channels; F(2x2,3x3)
and F(4x4,3x3), forward and ``dx``, the latter with cached transforms of read-only weights, as
:class:`numpynst.vgg.VGG` uses them) against the naive loops, in float64.
"""

from __future__ import annotations

import numpy as np

from ..backend import backend_name, resolve
from ..gradcheck import numerical_gradient_array, rel_error
from ..layers import (avgpool_backward, avgpool_forward, conv2d_backward, conv2d_backward_naive,
                      conv2d_forward, conv2d_forward_naive, maxpool_backward, maxpool_forward,
                      relu_backward, relu_forward)

TOL = 1e-7
WINOGRAD_TOL = 1e-12      # float64 Winograd vs the naive loop: rounding only (~1e-15)


def layer_checks(xp, seed: int = 0) -> list[tuple[str, float]]:
    """``[(name, relative error)]`` for every layer gradient, in float64 on backend ``xp``."""
    rng = np.random.default_rng(seed)
    arr = lambda *shape: xp.asarray(rng.standard_normal(shape))  # noqa: E731
    x, w, b = arr(2, 7, 6, 3), arr(3, 3, 3, 4), arr(4)
    results = []
    for stride, pad in ((1, 1), (2, 0)):
        out, cache = conv2d_forward(x, w, b, stride, pad)
        dout = arr(*out.shape)
        dx, dw, db = conv2d_backward(dout, cache)
        tag = f"conv2d stride={stride} pad={pad}"
        results.append((f"{tag} dx", rel_error(dx, numerical_gradient_array(
            lambda z: conv2d_forward(z, w, b, stride, pad)[0], x, dout))))
        results.append((f"{tag} dw", rel_error(dw, numerical_gradient_array(
            lambda z: conv2d_forward(x, z, b, stride, pad)[0], w, dout))))
        results.append((f"{tag} db", rel_error(db, numerical_gradient_array(
            lambda z: conv2d_forward(x, w, z, stride, pad)[0], b, dout))))
    # Tie-free, zero-free input: max pooling and ReLU are differentiable everywhere near it.
    z = xp.asarray(rng.permutation(2 * 6 * 5 * 3).reshape(2, 6, 5, 3) / 7.0 - 10.05)
    for name, fwd, bwd in (("relu", relu_forward, relu_backward),
                           ("maxpool 2x2", maxpool_forward, maxpool_backward),
                           ("avgpool 2x2", avgpool_forward, avgpool_backward)):
        out, cache = fwd(z)
        dout = arr(*out.shape)
        results.append((f"{name} dx", rel_error(bwd(dout, cache),
                                                numerical_gradient_array(lambda t: fwd(t)[0], z, dout))))
    return results


def winograd_checks(xp, seed: int = 0) -> list[tuple[str, float]]:
    """``[(name, relative error)]`` of the Winograd paths against the naive loops, float64 on ``xp``.

    VGG's shape (3x3, stride 1, pad 1, 64 channels in and out) on an odd-sized map, so that partial
    edge tiles are covered. The weights are read-only, as VGG's are on NumPy: F(4x4,3x3) then runs
    with its cached transforms and F(2x2,3x3)'s ``dx`` reuses the forward pass's transform.
    """
    rng = np.random.default_rng(seed)
    x = xp.asarray(rng.standard_normal((1, 11, 9, 64)))
    w = xp.asarray(rng.standard_normal((3, 3, 64, 64)) * 0.05)
    b = xp.asarray(rng.standard_normal(64))
    if xp is np:
        w.flags.writeable = False
    ref, ref_cache = conv2d_forward_naive(x, w, b)
    dout = xp.asarray(rng.standard_normal(ref.shape))
    dx_ref = conv2d_backward_naive(dout, ref_cache, weight_grads=False)[0]
    results = []
    for method, name in (("winograd", "F(2x2,3x3)"), ("winograd4", "F(4x4,3x3)")):
        out, cache = conv2d_forward(x, w, b, method=method)
        dx = conv2d_backward(dout, cache, weight_grads=False, method=method)[0]
        results.append((f"winograd {name} forward", rel_error(out, ref)))
        results.append((f"winograd {name} dx", rel_error(dx, dx_ref)))
    return results


def register(subparsers) -> None:
    p = subparsers.add_parser("selftest", help="check every layer's gradient numerically (seconds)",
                              description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="numpy", choices=["numpy", "cupy", "auto"],
                   help="array backend to check (default: numpy)")
    p.set_defaults(func=run)


def _table(rows: list[tuple[str, float]], bound: float) -> int:
    """Print one line per check; the number that miss ``bound``."""
    failed = 0
    for name, err in rows:
        ok = err < bound
        failed += not ok
        print(f"  {'ok  ' if ok else 'FAIL'} {name:<28} relative error {err:.2e}")
    return failed


def run(args) -> int:
    xp = resolve(args.backend)
    print(f"numpynst selftest on {backend_name(xp)}, float64 central differences, bound {TOL:.0e}")
    failed = _table(layer_checks(xp), TOL)
    print(f"Winograd paths VGG runs vs the naive loop, float64, bound {WINOGRAD_TOL:.0e}")
    failed_wino = _table(winograd_checks(xp), WINOGRAD_TOL)
    print("all gradients agree" if not failed else f"{failed} gradient(s) disagree")
    print("the Winograd paths agree with the naive loop" if not failed_wino
          else f"{failed_wino} Winograd check(s) disagree")
    return 0 if not failed + failed_wino else 1
