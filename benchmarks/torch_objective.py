"""The raw style-transfer objective in PyTorch, with its own set-up: what a PyTorch user would write.

For benchmarks/end_to_end.py: the same ``J`` as numpynst's raw objective (numpynst.objective,
``weights_mode="raw"``) on the same VGG19 weights and the same pixels, but everything measured by
PyTorch itself: the content target and the style Gram matrices come from PyTorch forwards (built
once, in the constructor), the gradient from autograd. Written from the formulas, not from
numpynst's code (tests/torch_oracle.py is the oracle that takes numpynst's targets instead):

    J = alpha/(4 n_c) sum (a_C - a)^2
      + beta sum_l lambda_l/(2 n_l)^2 sum (G_S^l p_G/p_S - A^T A)^2
      + tv (sum dh^2 + sum dw^2) / numel(x)

with ``n = H_l W_l C_l`` of the generated image at the layer and the style target rescaled by the
ratio of positions ``p_G / p_S`` (as numpynst does for a style image of another size). Images are
NCHW here (PyTorch's layout); the pixels are numpynst's preprocessed ones (BGR, mean subtracted).
"""

from __future__ import annotations

import numpy as np
import torch

F = torch.nn.functional


class TorchStyleObjective:
    """``J(x)`` for an NCHW float32 tensor ``x``; call it, differentiate with autograd.

    Args:
        model: a numpynst VGG (its layer names and weights: converted once to PyTorch's layout).
        content, style: preprocessed images ``(1, H, W, 3)`` (NumPy, numpynst's layout).
        content_layer, style_layers: as numpynst's Objective.
        alpha, beta, tv_weight: the raw coefficients.
    """

    def __init__(self, model, content: np.ndarray, style: np.ndarray, content_layer: str,
                 style_layers: dict, alpha: float, beta: float, tv_weight: float):
        self.names = list(dict.fromkeys([content_layer, *style_layers]))
        self.content_layer, self.style_layers = content_layer, dict(style_layers)
        self.alpha, self.beta, self.tv_weight = alpha, beta, tv_weight
        deepest = max(model.layer_names.index(n) for n in self.names)
        self.pooling = model.pooling
        self.layers = []
        for name in model.layer_names[:deepest + 1]:
            if name.endswith("_pool"):
                self.layers.append((name, None, None))
            else:
                w, b = model.params[name]
                self.layers.append((name, torch.from_numpy(np.ascontiguousarray(np.transpose(w, (3, 2, 0, 1)))),
                                    torch.from_numpy(np.array(b))))
        with torch.no_grad():
            acts = self.features(self.nchw(content))
            self.content_target = acts[content_layer].clone()
            gen_positions = {n: acts[n].shape[2] * acts[n].shape[3] for n in self.style_layers}
            sacts = self.features(self.nchw(style), list(self.style_layers))
            self.style_targets = {}
            for n in self.style_layers:
                a = sacts[n]
                A = a.reshape(a.shape[1], -1)
                self.style_targets[n] = (A @ A.T) * (gen_positions[n] / A.shape[1])

    @staticmethod
    def nchw(image: np.ndarray) -> torch.Tensor:
        """A numpynst image ``(1, H, W, 3)`` as a contiguous NCHW tensor."""
        return torch.from_numpy(np.ascontiguousarray(np.transpose(image, (0, 3, 1, 2))))

    def features(self, x: torch.Tensor, names: list | None = None) -> dict:
        names = self.names if names is None else names
        deepest = max(i for i, (n, _, _) in enumerate(self.layers) if n in names)
        out, h = {}, x
        for name, w, b in self.layers[:deepest + 1]:
            if w is None:
                h = F.max_pool2d(h, 2, 2) if self.pooling == "max" else F.avg_pool2d(h, 2, 2)
            else:
                h = F.relu(F.conv2d(h, w, b, padding=1))
            if name in names:
                out[name] = h
        return out

    def losses(self, acts: dict, x: torch.Tensor) -> torch.Tensor:
        a = acts[self.content_layer]
        j = self.alpha * ((a - self.content_target) ** 2).sum() / (4 * a.numel())
        for n, lam in self.style_layers.items():
            a = acts[n]
            A = a.reshape(a.shape[1], -1)
            G = A @ A.T
            j = j + self.beta * lam * ((G - self.style_targets[n]) ** 2).sum() / (2 * a.numel()) ** 2
        dh = x[:, :, 1:, :] - x[:, :, :-1, :]
        dw = x[:, :, :, 1:] - x[:, :, :, :-1]
        return j + self.tv_weight * ((dh ** 2).sum() + (dw ** 2).sum()) / x.numel()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.losses(self.features(x), x)
