"""Independent check: numpynst's hand-written layers against PyTorch's autograd (float64).

PyTorch is an optional dependency (``pip install torch``); without it these tests are skipped with
that reason. Layout differences are bridged explicitly: torch is NCHW with weights (F, C, KH, KW).
"""

import numpy as np
import pytest

from numpynst.gradcheck import rel_error
from numpynst.layers import (avgpool_backward, avgpool_forward, conv2d_backward, conv2d_forward,
                             maxpool_backward, maxpool_forward, relu_backward, relu_forward)

torch = pytest.importorskip("torch", reason="PyTorch not installed: independent autograd cross-check skipped")
F = torch.nn.functional

ROUNDOFF = 1e-13


def _t(a):
    return torch.tensor(np.ascontiguousarray(a), dtype=torch.float64, requires_grad=True)


def _nchw(a):
    return a.permute(0, 3, 1, 2)


def _nhwc(t):
    return t.permute(0, 2, 3, 1).detach().numpy()


@pytest.mark.parametrize("stride, pad", [(1, 1), (2, 0), (2, 1)])
def test_conv_matches_torch_autograd(stride, pad):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 9, 7, 3))
    w = rng.standard_normal((3, 3, 3, 5))
    b = rng.standard_normal(5)
    out, cache = conv2d_forward(x, w, b, stride, pad)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = conv2d_backward(dout, cache)

    tx, tw, tb = _t(x), _t(w), _t(b)
    tout = F.conv2d(_nchw(tx), tw.permute(3, 2, 0, 1), tb, stride=stride, padding=pad)
    tout.backward(_nchw(torch.tensor(dout)))
    assert rel_error(out, _nhwc(tout)) < ROUNDOFF
    assert rel_error(dx, tx.grad.numpy()) < ROUNDOFF
    assert rel_error(dw, tw.grad.numpy()) < ROUNDOFF
    assert rel_error(db, tb.grad.numpy()) < ROUNDOFF


@pytest.mark.parametrize("kind", ["relu", "max", "avg"])
def test_activation_and_pooling_match_torch_autograd(kind):
    rng = np.random.default_rng(1)
    x = rng.permutation(2 * 7 * 9 * 3).reshape(2, 7, 9, 3) / 10.0 - 10.0   # tie-free, no zeros
    fwd, bwd, tfn = {
        "relu": (relu_forward, relu_backward, F.relu),
        "max": (maxpool_forward, maxpool_backward, lambda t: F.max_pool2d(t, 2, 2)),
        "avg": (avgpool_forward, avgpool_backward, lambda t: F.avg_pool2d(t, 2, 2)),
    }[kind]
    out, cache = fwd(x)
    dout = rng.standard_normal(out.shape)
    dx = bwd(dout, cache)
    tx = _t(x)
    tout = tfn(_nchw(tx))
    tout.backward(_nchw(torch.tensor(dout)))
    assert rel_error(out, _nhwc(tout)) < ROUNDOFF
    assert rel_error(dx, tx.grad.numpy()) < ROUNDOFF
