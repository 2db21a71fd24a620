"""Independent check of the whole objective: ``Objective.value_and_grad`` on the shipped VGG19 against
the same formulas written in PyTorch and differentiated by its autograd (float64).

PyTorch only evaluates ``J``; the gradient comes from its reverse-mode autograd, so this tests every
hand-derived gradient (costs, Gram, VGG backward, TV) at once, on the real weights.
"""

import numpy as np
import pytest

from numpynst.gradcheck import rel_error
from numpynst.image import load_image, sample_path
from numpynst.transfer import Objective
from numpynst.vgg import VGG, preprocess

torch = pytest.importorskip("torch", reason="PyTorch not installed: independent autograd cross-check skipped")
F = torch.nn.functional


def _torch_features(model, x, names):
    """VGG trunk in torch (NCHW) on the model's weights; returns {name: NHWC activation}."""
    out, h = {}, x.permute(0, 3, 1, 2)
    deepest = max(model.layer_names.index(n) for n in names)
    for name in model.layer_names[:deepest + 1]:
        if name.endswith("_pool"):
            h = F.max_pool2d(h, 2, 2) if model.pooling == "max" else F.avg_pool2d(h, 2, 2)
        else:
            w, b = (torch.tensor(np.asarray(p)) for p in model.params[name])
            h = F.relu(F.conv2d(h, w.permute(3, 2, 0, 1), b, padding=1))
        if name in names:
            out[name] = h.permute(0, 2, 3, 1)
    return out


def _torch_objective(model, obj, x):
    """J written from the formulas in the issue, independently of numpynst.losses."""
    acts = _torch_features(model, x, obj.outputs)
    a_c = acts[obj.content_layer]
    _, nh, nw, nc = a_c.shape
    j_content = ((torch.tensor(obj.content_target) - a_c) ** 2).sum() / (4 * nh * nw * nc)
    j_style = 0
    for name, lam in obj.style_layers.items():
        a = acts[name]
        _, nh, nw, nc = a.shape
        A = a.reshape(nh * nw, nc)
        G = A.T @ A
        j_style = j_style + lam * ((torch.tensor(obj.style_targets[name]) - G) ** 2).sum() / (2 * nh * nw * nc) ** 2
    dh = x[:, 1:, :, :] - x[:, :-1, :, :]
    dw = x[:, :, 1:, :] - x[:, :, :-1, :]
    j_tv = ((dh ** 2).sum() + (dw ** 2).sum()) / x.numel()
    return obj.alpha * j_content + obj.beta * j_style + obj.tv_weight * j_tv


@pytest.mark.slow
@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_objective_matches_torch_autograd_on_shipped_vgg19(pooling):
    model = VGG.from_h5(dtype=np.float64, pooling=pooling)
    content = preprocess(load_image(sample_path("chelsea"), size=48), dtype=np.float64)
    style = preprocess(load_image(sample_path("ihc"), size=40), dtype=np.float64)     # another size
    obj = Objective(model, content, style, alpha=1.0, beta=1e-2, tv_weight=1.0)
    rng = np.random.default_rng(0)
    x = content + rng.normal(0, 20, size=content.shape)
    J, g = obj.value_and_grad(x)

    tx = torch.tensor(x, requires_grad=True)
    tJ = _torch_objective(model, obj, tx)
    tJ.backward()
    tJ = float(tJ.detach())
    assert abs(float(J) - tJ) <= 1e-12 * abs(tJ)
    assert rel_error(g, tx.grad.numpy()) < 1e-11
