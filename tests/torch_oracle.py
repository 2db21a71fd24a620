"""The style-transfer objective of :class:`numpynst.objective.Objective`, written again in PyTorch.

A test utility (the oracle): used by ``tests/test_objective_vs_torch.py`` (autograd checks every
hand-derived gradient at once; pytest puts ``tests/`` on ``sys.path``, so ``from torch_oracle import
TorchObjective``) and by ``benchmarks/quality.py`` (numpynst's L-BFGS against ``torch.optim.LBFGS``
on the same ``J``; it puts ``tests/`` on its path). Needs PyTorch (``pip install torch``).
Everything is taken from a numpynst ``Objective`` — the VGG weights, the targets ``a_C`` and
``G_S^l``, the weights and the calibration scales — and the formulas are written from the notes,
independently of :mod:`numpynst.losses`:

    J = alpha/s_c * 1/(4 n) sum (a_C - a)^2
      + beta * sum_l lambda_l/s_l * 1/(2 n_l)^2 sum (G_S^l - A^T A)^2
      + tv/s_tv * (sum dh^2 + sum dw^2) / numel(x)

(``s_* = 1`` in raw mode.) Images are NHWC as in numpynst; the convolutions run in NCHW.

With another ``style_loss`` the style term of each layer is that loss, written from its formula:
``mean-cov``, ``|mu - mu_s|^2 + tr(S) + tr(S_s) - 2 tr((R S R)^1/2)`` with ``mu, S`` (ridge
``eps I`` added) from the activation, ``mu_s, S_s`` from the numpynst target and ``R = S_s^1/2``
and the trace term from torch's ``eigh``/``eigvalsh``; ``swd``, ``mean((sort(A V) - Q)^2)`` with
numpynst's directions ``V`` and target quantiles ``Q``, sorted by ``torch.sort``.
"""

from __future__ import annotations

import numpy as np
import torch

F = torch.nn.functional


class TorchObjective:
    """``J(x)`` of a numpynst ``Objective`` as a torch function (call it; differentiate with autograd).

    The conv weights are converted once (not per call), in the model's dtype.
    """

    def __init__(self, model, obj):
        self.model, self.obj = model, obj
        self.params = {n: tuple(torch.tensor(np.asarray(p)) for p in ps) for n, ps in model.params.items()}
        self.content_target = torch.tensor(np.asarray(obj.content_target))
        self.loss = getattr(obj, "style_loss", "gram")
        if self.loss == "gram":
            self.style_targets = {n: torch.tensor(np.asarray(g)) for n, g in obj.style_targets.items()}
        elif self.loss == "mean-cov":
            self.style_targets = {n: (torch.tensor(np.asarray(t.mu)), torch.tensor(np.asarray(t.S)), t.eps)
                                  for n, t in obj.style_targets.items()}
        else:
            self.style_targets = {n: (torch.tensor(np.asarray(obj.statistics[n].V)), torch.tensor(np.asarray(q)))
                                  for n, q in obj.style_targets.items()}

    def features(self, x: torch.Tensor) -> dict:
        names = self.obj.outputs
        out, h = {}, x.permute(0, 3, 1, 2)
        deepest = max(self.model.layer_names.index(n) for n in names)
        for name in self.model.layer_names[:deepest + 1]:
            if name.endswith("_pool"):
                h = F.max_pool2d(h, 2, 2) if self.model.pooling == "max" else F.avg_pool2d(h, 2, 2)
            else:
                w, b = self.params[name]
                h = F.relu(F.conv2d(h, w.permute(3, 2, 0, 1), b, padding=1))
            if name in names:
                out[name] = h.permute(0, 2, 3, 1)
        return out

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        obj, sc = self.obj, self.obj.scales
        acts = self.features(x)
        a_c = acts[obj.content_layer]
        _, nh, nw, nc = a_c.shape
        j_content = ((self.content_target - a_c) ** 2).sum() / (4 * nh * nw * nc) / sc.content
        j_style = 0
        for name, lam in obj.style_layers.items():
            a = acts[name]
            _, nh, nw, nc = a.shape
            A = a.reshape(nh * nw, nc)
            j_style = j_style + lam / sc.style[name] * self.style_cost(name, A)
        dh = x[:, 1:, :, :] - x[:, :-1, :, :]
        dw = x[:, :, 1:, :] - x[:, :, :-1, :]
        j_tv = ((dh ** 2).sum() + (dw ** 2).sum()) / x.numel() / sc.tv
        return obj.alpha * j_content + obj.beta * j_style + obj.tv_weight * j_tv

    def style_cost(self, name: str, A: torch.Tensor) -> torch.Tensor:
        """``J_style`` of one layer from its activation matrix ``A`` (positions x channels)."""
        P, C = A.shape
        if self.loss == "gram":
            G = A.T @ A
            return ((self.style_targets[name] - G) ** 2).sum() / (2 * P * C) ** 2
        if self.loss == "mean-cov":
            mu_s, S_s, eps = self.style_targets[name]
            mu = A.mean(0)
            S = A.T @ A / P - torch.outer(mu, mu) + eps * torch.eye(C, dtype=A.dtype)
            w, U = torch.linalg.eigh(S_s)
            R = U @ torch.diag(w.clamp_min(0).sqrt()) @ U.T
            lam = torch.linalg.eigvalsh(R @ S @ R)
            return ((mu - mu_s) ** 2).sum() + torch.trace(S) + torch.trace(S_s) - 2 * lam.clamp_min(0).sqrt().sum()
        V, Q = self.style_targets[name]
        return ((torch.sort(A @ V, dim=0).values - Q) ** 2).mean()
