"""Input-gradient regularization (Ross & Doshi-Velez 2018): exact double backprop, and its finite-difference
approximation (Finlay & Oberman 2019, "Scaleable input gradient regularization for adversarial robustness").
"""

from __future__ import annotations

from ..plugin_types import LossDefense, Param, positive
from .common import (cross_entropy, frozen_bn_stats, gradreg_loss, lambda_param, penalty_from_sq_norms, plain_loss,
                     resolve_lambda, same_random_state, scaling_param)


class GradReg(LossDefense):
    name = "gradreg"
    summary = "Double backprop: CE + lambda * penalty on the input gradient of CE (exact, second-order autograd)"
    params = (lambda_param(), scaling_param())

    def loss(self, model, x, y, params, trainer):
        return gradreg_loss(model, x, y, resolve_lambda(params), params["scaling"])


def fd_terms(model, x, y, h: float, scaling: str = "paper"):
    """``(mean CE, penalty, logits)`` with the penalty approximated by finite differences.

    One forward pass and a first-order backward give ``g_i = dCE_i/dx_i`` (no graph is built on it);
    ``d_i = g_i / ||g_i||`` is a constant. A second forward pass at ``x_i + h d_i`` (same dropout masks,
    BatchNorm running statistics untouched) gives the directional difference

        ``D_i = (CE_i(x_i + h d_i) - CE_i(x_i)) / h = ||g_i|| + (h / 2) d_i^T H_i d_i + O(h^2)``

    and ``||g_i||^2`` is replaced by ``D_i^2`` in the penalty (``scaling`` as for ``gradreg``). The error is
    first order in ``h``, from the curvature ``H_i`` of the loss along ``d_i`` (relative error about
    ``h d^T H d / ||g||``); zero-gradient examples contribute 0. Because ``d`` is treated as a constant,
    the penalty's gradient with respect to the weights is ordinary backprop through the two forward
    passes: no backward through a backward. It differs from the exact penalty's gradient by the terms
    that come from ``d`` moving with the weights (zero to first order, as ``d`` is the maximizing
    direction) and by the O(h) curvature terms. With train-mode BatchNorm the batch is coupled; both
    passes use their own batch's statistics, so ``D_i`` also carries the O(1/B) cross-example terms.
    """
    import torch

    x = x.detach().requires_grad_(True)
    with same_random_state(x.device):
        logits = model(x)
    per = cross_entropy(logits, y, reduction="none")
    (g,) = torch.autograd.grad(per.sum(), x, retain_graph=True)
    norm = g.flatten(1).norm(dim=1)
    d = g / norm.clamp_min(torch.finfo(g.dtype).tiny).view(-1, *([1] * (g.dim() - 1)))
    with frozen_bn_stats(model):
        per_h = cross_entropy(model(x.detach() + h * d), y, reduction="none")
    diff = (per_h - per) / h
    return per.mean(), penalty_from_sq_norms(diff.pow(2), scaling), logits


class GradRegFD(LossDefense):
    name = "gradreg-fd"
    summary = "Input-gradient penalty by finite differences (Finlay & Oberman 2019): two forward passes, no double backprop"
    params = (
        lambda_param(),
        Param("h", 0.01, "finite-difference step along the normalized input gradient (input units)",
              type=float, check=positive),
        scaling_param(),
    )

    def loss(self, model, x, y, params, trainer):
        lam = resolve_lambda(params)
        if lam == 0:
            return plain_loss(model, x, y)
        ce, penalty, logits = fd_terms(model, x, y, params["h"], params["scaling"])
        return ce + lam * penalty, logits
