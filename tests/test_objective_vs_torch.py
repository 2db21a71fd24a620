"""Independent check of the whole objective: ``Objective.value_and_grad`` on the shipped VGG19 against
the same formulas written in PyTorch (``tests/torch_oracle.py``) and differentiated by its
autograd (float64), in raw and calibrated weights.

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
from torch_oracle import TorchObjective  # noqa: E402  (after the skip: it imports torch)


@pytest.mark.slow
@pytest.mark.parametrize("pooling, mode", [("max", "raw"), ("avg", "raw"), ("max", "calibrated")])
def test_objective_matches_torch_autograd_on_shipped_vgg19(pooling, mode):
    model = VGG.from_h5(dtype=np.float64, pooling=pooling)
    content = preprocess(load_image(sample_path("chelsea"), size=48), dtype=np.float64)
    style = preprocess(load_image(sample_path("ihc"), size=40), dtype=np.float64)     # another size
    weights = dict(alpha=1.0, beta=1e-2, tv_weight=1.0) if mode == "raw" else dict(alpha=0.5, beta=3.0, tv_weight=0.1)
    obj = Objective(model, content, style, weights_mode=mode, **weights)
    if mode == "calibrated":
        assert obj.scales.content != 1.0 and obj.scales.tv != 1.0
    J, g, tJ, tg = _both(model, obj, content)
    assert abs(J - tJ) <= 1e-12 * abs(tJ)
    assert rel_error(g, tg) < 1e-11


def _both(model, obj, content):
    """``(J, dJ/dx)`` of ``obj`` and of its PyTorch twin (autograd) at the content plus noise."""
    x = content + np.random.default_rng(0).normal(0, 20, size=content.shape)
    J, g = obj.value_and_grad(x)
    tx = torch.tensor(x, requires_grad=True)
    tJ = TorchObjective(model, obj)(tx)
    tJ.backward()
    return float(J), g, tJ.item(), tx.grad.numpy()


@pytest.mark.slow
@pytest.mark.parametrize("style_loss, mode", [("mean-cov", "raw"), ("swd", "calibrated")])
def test_style_losses_match_torch_autograd_on_shipped_vgg19(style_loss, mode):
    """The mean-cov and swd objectives (numpynst.style_stats) against the same formulas in PyTorch:
    every layer's statistic, its hand-derived backward and VGG's, on the real weights (float64).
    swd: layers up to block4_conv1 (5 x 8 positions at 64 px; block5_conv1 would have 2 x 4, fewer
    than swd accepts). J agrees to ~1e-11: W2's tr(S) + tr(S_s) - 2 tr(.) cancels a few digits."""
    model = VGG.from_h5(dtype=np.float64)
    content = preprocess(load_image(sample_path("chelsea"), size=64), dtype=np.float64)
    style = preprocess(load_image(sample_path("ihc"), size=72), dtype=np.float64)     # another size
    layers = None if style_loss == "mean-cov" else {f"block{i}_conv1": 0.25 for i in range(1, 5)}
    obj = Objective(model, content, style, weights_mode=mode, style_loss=style_loss, style_layers=layers,
                    **(dict(alpha=1.0, beta=1e-2, tv_weight=1.0) if mode == "raw" else {}))
    J, g, tJ, tg = _both(model, obj, content)
    assert abs(J - tJ) <= 1e-10 * abs(tJ)
    assert rel_error(g, tg) < 1e-9
