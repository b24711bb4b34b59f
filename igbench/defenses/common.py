"""Building blocks shared by the built-in defenses: cross-entropy, the exact input-gradient penalty,
FGSM examples for training, frozen BatchNorm statistics and the common parameter declarations.

Penalty scalings (both offered by ``gradreg``, ``gradreg-fd``, ``advtrain+gradreg`` and
``certainty-insensitivity``):

``paper`` (default)
    The original TensorFlow code: ``CE`` is the batch *mean* cross-entropy, ``G = dCE/dX`` its gradient
    with respect to the whole input batch ``X`` (so row ``i`` is ``g_i / B`` with ``g_i = dCE_i/dx_i``),
    and the penalty is TensorFlow's ``l2_loss(G) = sum(G**2) / 2``. The paper's lambdas (100..100,000;
    56,234 chosen for MNIST) mean the same thing here.
``per-example``
    ``mean_i ||dCE_i/dx_i||_2^2`` (sum over input dimensions, mean over the batch), computed as the rows
    of the gradient of the *summed* cross-entropy.

Relation: ``per-example = 2 * B * paper`` exactly, for the same batch of size ``B``
(``mean_i ||B G_i||^2 = B * sum(G**2) = 2B * l2_loss(G)``). So ``lambda_paper = 2 * B * lambda_per_example``
gives the same training loss: the paper's 56,234 at batch 256 is ``per-example`` lambda 109.8.
The rows equal the examples' own gradients when the model treats examples independently (eval mode,
or no BatchNorm); in train mode BatchNorm couples the batch and, as in the paper's code, the gradient of
the batch loss (including the terms through the batch statistics) is what is penalized.
"""

from __future__ import annotations

import contextlib
from typing import Any

from ..plugin_types import Param, non_negative

SCALINGS = ("paper", "per-example")

#: Default lambda for ``paper`` scaling: the paper's MNIST choice (10^4.75).
PAPER_LAMBDA = 56234.0
#: The paper's batch size, which converts ``PAPER_LAMBDA`` to ``per-example`` scaling.
PAPER_BATCH = 256


def lambda_param() -> Param:
    """The penalty weight; unset means the paper's MNIST choice in the chosen scaling (see :func:`resolve_lambda`)."""
    return Param("lambda", None,
                 "penalty weight (default: the paper's MNIST 56234 with scaling=paper, 56234/(2*256)=109.8 "
                 "with scaling=per-example; the paper swept 100..100000 in paper scaling)",
                 type=float, check=non_negative)


def resolve_lambda(params, paper_lambda: float = PAPER_LAMBDA) -> float:
    """``params['lambda']``, or ``paper_lambda`` (the paper's MNIST value) in ``params['scaling']``'s units."""
    lam = params.get("lambda")
    if lam is not None:
        return float(lam)
    return paper_lambda if params.get("scaling", "paper") == "paper" else paper_lambda / (2 * PAPER_BATCH)


class PenaltyParams:
    """Mixin for defenses with ``lambda`` and ``scaling``: resolved params carry the actual lambda
    (``paper_lambda``, in paper scaling, when none is given)."""

    paper_lambda = PAPER_LAMBDA

    def resolve_params(self, given=None):
        out = super().resolve_params(given)  # type: ignore[misc]
        out["lambda"] = resolve_lambda(out, self.paper_lambda)
        return out


def scaling_param() -> Param:
    """Which penalty convention ``lambda`` refers to (see :mod:`igbench.defenses.common`)."""
    return Param("scaling", "paper", "penalty convention: 'paper' = l2_loss of d(mean CE)/dX (TF code); "
                 "'per-example' = mean_i ||dCE_i/dx_i||^2 = 2*B*paper", choices=SCALINGS)


# --------------------------------------------------------------------------- losses
def cross_entropy(logits, targets, temperature: float = 1.0, reduction: str = "mean"):
    """Softmax cross-entropy of ``logits / temperature`` against hard (int64 class) or soft (float) targets.

    Soft targets are rows of probabilities (defensive distillation's labels).
    """
    import torch
    import torch.nn.functional as F

    z = logits / temperature if temperature != 1.0 else logits
    if targets.dtype.is_floating_point:
        per = -(targets * torch.log_softmax(z, dim=1)).sum(dim=1)
        return per.mean() if reduction == "mean" else per.sum() if reduction == "sum" else per
    return F.cross_entropy(z, targets, reduction=reduction)


def plain_loss(model, x, y):
    """``(mean CE, logits)``: the undefended loss every defense starts from."""
    logits = model(x)
    return cross_entropy(logits, y), logits


# --------------------------------------------------------------------------- exact penalty
def penalty_from_sq_norms(sq_norms, scaling: str):
    """The penalty, in ``scaling``'s units, from the per-example squared norms ``||dCE_i/dx_i||^2``.

    ``per-example``: their mean; ``paper``: ``l2_loss`` of the batch-mean gradient, whose rows are
    ``g_i / B``, i.e. ``sum / (2 B^2)``.
    """
    batch = sq_norms.shape[0]
    if scaling == "paper":
        return sq_norms.sum() / (2.0 * batch * batch)
    if scaling == "per-example":
        return sq_norms.mean()
    raise ValueError(f"unknown scaling {scaling!r}; use one of {', '.join(SCALINGS)}")


def uniform_cross_entropy(logits):
    """Per-example cross-entropy against the uniform label, ``-mean_k log p_k``: how certain the model is
    of *any* class (the quantity the study's "certainty insensitivity" penalty differentiates)."""
    import torch

    return -torch.log_softmax(logits, dim=1).mean(dim=1)


def gradreg_penalty(x, logits, y, scaling: str = "paper", create_graph: bool = True, of: str = "label"):
    """``(mean CE, penalty)`` from a forward pass ``logits = model(x)`` whose input ``x`` requires grad.

    The exact double-backprop penalty: ``paper``: ``sum((dL_mean/dX)**2) / 2`` (TF's ``l2_loss``);
    ``per-example``: ``mean_i ||dL_i/dx_i||^2`` (rows of d(sum L)/dX). ``L`` is the cross-entropy at the
    true label (``of="label"``: double backprop) or against the uniform label (``of="uniform"``:
    :func:`uniform_cross_entropy`, certainty insensitivity). With ``create_graph`` it is differentiable
    with respect to the weights (double backprop) and the forward graph is kept; without it, it is a
    constant (for measuring). The first value is always the true-label CE, the loss being trained.
    """
    import torch

    if scaling not in SCALINGS:
        raise ValueError(f"unknown scaling {scaling!r}; use one of {', '.join(SCALINGS)}")
    per = cross_entropy(logits, y, reduction="none")
    ce = per.mean()
    penalized = per if of == "label" else uniform_cross_entropy(logits)
    if scaling == "paper":  # exactly the TF code: l2_loss(d mean L / dX)
        (grad,) = torch.autograd.grad(penalized.mean(), x, create_graph=create_graph)
        penalty = grad.pow(2).sum() / 2.0
    else:  # rows of d(sum L)/dX are the per-example gradients
        (grad,) = torch.autograd.grad(penalized.sum(), x, create_graph=create_graph)
        penalty = penalty_from_sq_norms(grad.pow(2).flatten(1).sum(1), scaling)
    return ce, penalty


def gradreg_terms(model, x, y, scaling: str = "paper", create_graph: bool = True, of: str = "label"):
    """One forward pass of ``model`` on ``x`` and :func:`gradreg_penalty`: ``(mean CE, penalty, logits)``."""
    xr = x.detach().requires_grad_(True)
    logits = model(xr)
    ce, penalty = gradreg_penalty(xr, logits, y, scaling, create_graph, of)
    return ce, penalty, logits


def gradreg_loss(model, x, y, lam: float, scaling: str, of: str = "label"):
    """``(CE + lambda * penalty, logits)`` with the exact penalty (double backprop)."""
    if lam == 0:
        return plain_loss(model, x, y)
    ce, penalty, logits = gradreg_terms(model, x, y, scaling, of=of)
    return ce + lam * penalty, logits


# --------------------------------------------------------------------------- BatchNorm
@contextlib.contextmanager
def frozen_bn_stats(model):
    """Forward passes inside leave every BatchNorm's running statistics unchanged.

    The modules keep their mode (train mode still normalizes with the batch's own statistics);
    only the running-average update is suppressed, by momentum 0 and restoring the batch counter.
    """
    from torch.nn.modules.batchnorm import _BatchNorm

    saved: list[tuple[Any, Any, Any]] = []
    for m in model.modules():
        if isinstance(m, _BatchNorm) and m.track_running_stats and m.training:
            saved.append((m, m.momentum, m.num_batches_tracked.clone()))
            m.momentum = 0.0
    try:
        yield model
    finally:
        for m, momentum, count in saved:
            m.momentum = momentum
            m.num_batches_tracked.copy_(count)


# --------------------------------------------------------------------------- FGSM
def fgsm_from_graph(x, logits, labels, eps: float, clip_min: float, clip_max: float, retain_graph: bool = False):
    """FGSM examples from an existing forward pass ``logits = model(x)`` with ``x.requires_grad``.

    ``x + eps * sign(d CE(logits, labels) / d x)`` clipped to ``[clip_min, clip_max]``, detached
    (constants: no gradient flows through their making). ``retain_graph`` keeps the forward graph for
    a loss that reuses ``logits``.
    """
    import torch

    loss = cross_entropy(logits, labels, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x, retain_graph=retain_graph)
    return (x.detach() + eps * grad.sign()).clamp_(clip_min, clip_max)


def fgsm_for_training(model, x, labels, eps: float, clip_min: float, clip_max: float):
    """FGSM examples against ``model`` in its current mode, without touching BatchNorm running statistics.

    ``labels=None`` uses the model's own predicted labels (the paper's adversarial training).
    """
    with frozen_bn_stats(model):
        xr = x.detach().requires_grad_(True)
        logits = model(xr)
        if labels is None:
            labels = logits.detach().argmax(1)
        return fgsm_from_graph(xr, logits, labels, eps, clip_min, clip_max)


def same_random_state(device):
    """A context after which the random generators are back where they were before it.

    Two forward passes, the first inside it and the second after it, draw the same dropout masks.
    """
    import torch

    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    return torch.random.fork_rng(devices=devices)
