"""Input-gradient regularization (Ross & Doshi-Velez 2018): exact double backprop, and its finite-difference
approximation (Finlay & Oberman 2019, "Scaleable input gradient regularization for adversarial robustness").
"""

from __future__ import annotations

from ..plugin_types import LossDefense, Param, non_negative, positive
from .common import (PenaltyParams, cross_entropy, frozen_bn_stats, gradreg_loss, lambda_param,
                     penalty_from_sq_norms, plain_loss, resolve_lambda, same_random_state, scaling_param)


class GradReg(PenaltyParams, LossDefense):
    """Input-gradient regularization by double backprop (Drucker & LeCun 1992): the study's defense.

    Loss: ``CE + lambda * penalty``, the penalty being the squared L2 norm of the cross-entropy's
    gradient with respect to the input, differentiated exactly (second-order autograd: about 2.4 times
    a plain training step on this project's CPU, README "Performance"). ``scaling`` says which
    convention ``lambda`` is in: ``paper`` (the default) is TensorFlow's ``l2_loss`` of the gradient of
    the batch-mean CE, as in the study's code; ``per-example`` is the mean of the examples' squared
    gradient norms, 2 * batch size times as large. The study used lambda 56,234 on MNIST (the default),
    562 on notMNIST and 10,000 on SVHN, in paper scaling, chosen from a sweep over 100..100,000.
    """

    name = "gradreg"
    summary = "Double backprop: CE + lambda * penalty on the input gradient of CE (exact, second-order autograd)"
    params = (lambda_param(), scaling_param())

    def loss(self, model, x, y, params, trainer):
        return gradreg_loss(model, x, y, resolve_lambda(params), params["scaling"])


#: The study's certainty-insensitivity lambda for MNIST (paper scaling; notMNIST 178, SVHN 1,000).
CERTAINTY_LAMBDA = 1000.0


class CertaintyInsensitivity(PenaltyParams, LossDefense):
    """The study's second input-gradient penalty ("certainty insensitivity"): double backprop on the
    cross-entropy against the *uniform* label, ``-mean_k log p_k``, instead of the true label's.

    It flattens how the model's confidence in any class changes with the input, without reference to
    the label; its input gradient is ``1/K`` times the gradient of the summed log-probabilities that the
    paper's gradient figures draw. Loss: ``CE + lambda * penalty``, the penalty in ``gradreg``'s
    conventions (``scaling``). The study swept lambda over 1..1,000 and picked 1,000 on MNIST (99.44%
    clean), 178 on notMNIST and 1,000 on SVHN; the default is MNIST's.
    """

    name = "certainty-insensitivity"
    summary = ("Double backprop on the cross-entropy against the uniform label (the study's 'certainty "
               "insensitivity'): CE + lambda * penalty")
    paper_lambda = CERTAINTY_LAMBDA
    params = (
        Param("lambda", None, "penalty weight (default: the study's MNIST 1000 with scaling=paper, "
              "1000/(2*256)=1.95 with scaling=per-example; notMNIST 178)", type=float, check=non_negative),
        scaling_param(),
    )

    def loss(self, model, x, y, params, trainer):
        return gradreg_loss(model, x, y, resolve_lambda(params, self.paper_lambda), params["scaling"], of="uniform")


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
    passes: no backward through a backward. For a smooth network it equals the exact penalty's gradient
    up to O(h): ``d D_i^2/dw = 2 D_i (dg_i/dw) . d_i`` and ``d_i`` is the direction of ``g_i``, so
    the terms from ``d`` moving with the weights vanish to first order.

    Non-smooth layers: the value still converges as h -> 0 (it is continuous), but with ReLU or
    max-pool its weight gradient also picks up the units that switch (active/inactive, pooled index)
    between ``x`` and ``x + h d``; each contributes O(1)/h, so the weight gradient is a noisy estimate
    whose noise grows as h shrinks (it is the gradient of a penalty smoothed over h). On raw MNIST the
    blank background gives max-pool ties exactly at the data: there the finite difference measures a
    one-sided derivative, not ``||g||``. Hence the default h = 0.1 (an L2 step: 0.0036 per pixel on
    average over 784 pixels) rather than a smaller one. Measured on the 80-step, batch-256 paper CNN
    (6,000 MNIST images, lambda 1000): mean input-gradient norm 0.385 without penalty, 0.321 with the
    exact penalty, 0.393 with h = 0.01 and 0.344 with h = 0.1 at equal accuracy (0.93); the 8-epoch
    ReLU MLP of the tests: 0.379 at h = 0.01, 0.344 at h = 0.1. The price is bias on smooth networks
    (freshly initialised, 64 MNIST test images): 0.06% on the softplus MLP, 15% on the softplus paper
    CNN with dithered inputs (1.7% at h = 0.01); the approximation underestimates there.

    With train-mode BatchNorm the batch is coupled; both passes use their own batch's statistics, so
    ``D_i`` also carries the O(1/B) cross-example terms.
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


def fd_batch_loss(model, x, y, lam: float, h: float, scaling: str = "paper"):
    """``(loss, logits, penalty)``: ``CE + lam * penalty`` with the penalty approximated by one finite
    difference along the gradient of the whole batch, at the cost of two plain training steps.

    The exact penalty is a function of one vector, ``G = d(mean CE)/dX`` over the whole input batch (with
    train-mode BatchNorm it includes the terms through the batch statistics): ``paper`` scaling is
    ``||G||^2 / 2``, ``per-example`` is ``B ||G||^2`` (``= 2 B`` times ``paper``). One backward pass from a
    forward pass at ``X`` gives ``G`` *and* the weight gradient of the clean CE together. With
    ``u = G / ||G||`` (a constant) and ``s = h sqrt(B)`` (so that the examples' moves have a root-mean-square
    L2 length of ``h``, the length every example moves in :func:`fd_terms`), a second forward pass at ``X + s u`` (same dropout masks, BatchNorm
    running statistics untouched) gives

        ``D = (CE(X + s u) - CE(X)) / s = ||G|| + (s / 2) u^T H u + O(s^2)``

    and ``||G||^2`` is replaced by ``D^2``. Because ``D`` is one number, the weight gradient of the loss is
    ``(1 - c) dCE(X)/dw + c dCE(X + s u)/dw`` with the scalar ``c = lam * dpenalty/dD / s``: the clean
    weight gradient from the first backward pass is reused, scaled, and only ``CE(X + s u)`` is
    backpropagated again (to the weights only). The returned loss has the value ``CE + lam * penalty`` and
    exactly that gradient. The approximation's error, and its noise on ReLU and max-pool networks, are
    those of :func:`fd_terms`, along the batch's direction instead of each example's. In training it acts
    as the per-example estimator does: after 80 steps of the paper CNN at lambda 1000
    (``benchmarks/fd_effect.py``) the mean input-gradient norm is 0.262 (per example: 0.264; exact: 0.251;
    no penalty: 0.329).
    """
    import math

    import torch

    weights = [p for p in model.parameters() if p.requires_grad]
    x = x.detach().requires_grad_(True)
    with same_random_state(x.device):
        logits = model(x)
    ce = cross_entropy(logits, y)
    G, *clean_grads = torch.autograd.grad(ce, [x, *weights], allow_unused=True)  # a plugin may have unused weights
    norm = G.norm()
    u = G / norm.clamp_min(torch.finfo(G.dtype).tiny)
    step = h * math.sqrt(x.shape[0])
    with frozen_bn_stats(model):
        ce_h = cross_entropy(model(x.detach() + step * u), y)
    d = (ce_h.detach() - ce.detach()) / step
    scale = 0.5 if scaling == "paper" else float(x.shape[0])
    penalty = scale * d * d
    c = lam * 2.0 * scale * d / step  # d(lam * penalty)/d CE(X + s u); minus that for CE(X)
    surrogate = c * ce_h + sum(((1.0 - c) * g * w).sum() for g, w in zip(clean_grads, weights) if g is not None)
    value = ce.detach() + lam * penalty
    return surrogate + (value - surrogate).detach(), logits.detach(), penalty


DIRECTIONS = ("batch", "example")


class GradRegFD(PenaltyParams, LossDefense):
    """The `gradreg` penalty approximated by finite differences (Finlay & Oberman 2019); not in the study.

    Instead of differentiating the input gradient (double backprop), it takes a second forward pass at
    the input moved by ``h`` (L2, input units) along the normalized input gradient, and replaces the
    squared gradient norm by the square of the loss's difference quotient. ``direction=batch`` (the
    default) takes one difference along the whole batch's gradient and reuses the clean weight gradient;
    ``direction=example`` takes one per example along its own gradient (a third backward pass).
    ``lambda`` and ``scaling`` mean what they mean for `gradreg` (default: the paper's MNIST 56,234).

    The error is first order in ``h``; with ReLU and max-pool the weight gradients are noisy, the more
    so the smaller ``h``, hence the default 0.1. On this project's CPU it costs about 2.2 plain
    training steps against `gradreg`'s 2.4 (README "Performance"); benchmarks/fd_effect.py compares
    the input-gradient norms the two reach.
    """

    name = "gradreg-fd"
    summary = "Input-gradient penalty by finite differences (Finlay & Oberman 2019): two forward passes, no double backprop"
    params = (
        lambda_param(),
        Param("h", 0.1, "finite-difference step (L2, input units; with direction=batch the root-mean-square move per "
              "example) along the normalized input gradient; smaller = less bias on smooth nets, noisier weight gradients with ReLU/max-pool",
              type=float, check=positive),
        scaling_param(),
        Param("direction", "batch", "batch: one difference along the whole batch's input gradient, about two plain "
              "steps' cost (the clean weight gradient is reused); example: one per example along its own "
              "gradient, a third backward pass", choices=DIRECTIONS),
    )

    def loss(self, model, x, y, params, trainer):
        lam = resolve_lambda(params)
        if lam == 0:
            return plain_loss(model, x, y)
        if params["direction"] == "batch":
            loss, logits, _ = fd_batch_loss(model, x, y, lam, params["h"], params["scaling"])
            return loss, logits
        ce, penalty, logits = fd_terms(model, x, y, params["h"], params["scaling"])
        return ce + lam * penalty, logits
