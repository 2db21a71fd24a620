"""``numpynst selftest``: check every hand-written backward pass against central differences.

Runs in a few seconds, needs no weights or images, and prints each relative error next to the bound
it must meet, so a user can see on their own machine (and backend) that the gradients are right.
"""

from __future__ import annotations

import numpy as np

from ..backend import backend_name, resolve
from ..gradcheck import numerical_gradient_array, rel_error
from ..layers import (avgpool_backward, avgpool_forward, conv2d_backward, conv2d_forward,
                      maxpool_backward, maxpool_forward, relu_backward, relu_forward)

TOL = 1e-7


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


def register(subparsers) -> None:
    p = subparsers.add_parser("selftest", help="check every layer's gradient numerically (seconds)",
                              description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="numpy", choices=["numpy", "cupy", "auto"],
                   help="array backend to check (default: numpy)")
    p.set_defaults(func=run)


def run(args) -> int:
    xp = resolve(args.backend)
    print(f"numpynst selftest on {backend_name(xp)}, float64 central differences, bound {TOL:.0e}")
    failed = 0
    for name, err in layer_checks(xp):
        ok = err < TOL
        failed += not ok
        print(f"  {'ok  ' if ok else 'FAIL'} {name:<28} relative error {err:.2e}")
    print("all gradients agree" if not failed else f"{failed} gradient(s) disagree")
    return 0 if not failed else 1
