"""Adversarial training with FGSM (Goodfellow et al. 2015), alone and combined with double backprop."""

from __future__ import annotations

import contextlib

from ..plugin_types import LossDefense, Param, non_negative
from .common import (PenaltyParams, cross_entropy, fgsm_from_graph, frozen_bn_stats, gradreg_penalty, lambda_param,
                     resolve_lambda, scaling_param)

LABELS = ("predicted", "true")
BN_STATS = ("clean", "both")


def adversarial_loss(model, x, y, eps: float, label: str, clip_min: float, clip_max: float,
                     lam: float = 0.0, scaling: str = "paper", bn_stats: str = "clean"):
    """``(CE(clean) [+ lam * penalty(clean)] + CE(FGSM)) / 2`` and the clean logits.

    The penalty sits inside the average, as in the study's code (its double-backprop loss, clean CE plus
    lambda times the penalty, averaged with the FGSM loss), so a lambda means what it means there: half the
    weight it has in ``gradreg``, relative to the clean cross-entropy.

    One clean forward pass (train mode: it updates BatchNorm statistics once, like any training step)
    serves the clean loss, the FGSM gradient and, with ``lam > 0``, the exact double-backprop penalty,
    which is taken on the clean batch only. The FGSM examples are made through that same pass (same
    mode, same dropout masks) from the model's own predicted labels (``label='predicted'``, the paper)
    or the true ones, clipped to ``[clip_min, clip_max]`` and detached (constants). With
    ``bn_stats="clean"`` their forward pass leaves BatchNorm running statistics alone, so those keep
    describing clean data (in train mode the modules still normalize with the adversarial batch's own
    statistics); with ``"both"`` it updates them too, as the study's code did (TF-slim BatchNorm with
    in-place updates, run once on the clean and once on the FGSM batch per step).
    """
    xr = x.detach().requires_grad_(True)
    logits = model(xr)
    if lam > 0:
        ce_clean, penalty = gradreg_penalty(xr, logits, y, scaling)
    else:
        ce_clean, penalty = cross_entropy(logits, y), None
    if eps > 0:
        labels = logits.detach().argmax(1) if label == "predicted" else y
        x_adv = fgsm_from_graph(xr, logits, labels, eps, clip_min, clip_max, retain_graph=True)
    else:
        x_adv = x.detach()
    with frozen_bn_stats(model) if bn_stats == "clean" else contextlib.nullcontext():
        ce_adv = cross_entropy(model(x_adv), y)
    if penalty is not None:
        ce_clean = ce_clean + lam * penalty
    return (ce_clean + ce_adv) / 2, logits


def _eps_param() -> Param:
    return Param("eps", 0.3, "FGSM step size of the training examples (the paper: 0.3)", type=float,
                 check=non_negative)


def _bn_stats_param() -> Param:
    return Param("bn_stats", "clean", "forward passes that update BatchNorm's running statistics: clean = the clean "
                 "batch only; both = the clean and the FGSM batch (the study's code)", choices=BN_STATS)


def _label_param() -> Param:
    return Param("label", "predicted", "labels the FGSM examples are made from (the paper: the model's own "
                 "predictions)", choices=LABELS)


class AdvTrain(LossDefense):
    """FGSM adversarial training (Goodfellow et al. 2015), one of the defenses the study compared with.

    Each step averages the cross-entropy on the clean batch and on FGSM examples made from it:
    ``(CE(clean) + CE(FGSM)) / 2``. The examples are one signed-gradient step of ``eps`` (the study: 0.3)
    against the model's own predicted labels (``label=predicted``, the study's; ``true`` uses the
    labels), clipped to the data range and treated as constants. ``bn_stats`` says which forward passes
    update BatchNorm's running statistics: ``clean`` (the default) the clean batch only, ``both`` the
    FGSM batch too, as the study's code did and the paper configurations set.
    """

    name = "advtrain"
    summary = "FGSM adversarial training: (CE(clean) + CE(FGSM from predicted labels)) / 2"
    params = (_eps_param(), _label_param(), _bn_stats_param())

    def loss(self, model, x, y, params, trainer):
        return adversarial_loss(model, x, y, params["eps"], params["label"], trainer.data.clip_min,
                                trainer.data.clip_max, bn_stats=params["bn_stats"])


class AdvTrainGradReg(PenaltyParams, LossDefense):
    """FGSM adversarial training combined with double backprop, the combination the study found most robust.

    Loss: ``(CE(clean) + lambda * penalty + CE(FGSM)) / 2``, the penalty being `gradreg`'s, taken on the
    clean batch only. As in the study's code the penalty sits inside the average, so a given lambda
    weighs half as much against the clean cross-entropy as it does in `gradreg`. The study used
    ``eps`` 0.3 and its MNIST lambda 56,234 in paper scaling (the defaults); ``eps``, ``label`` and
    ``bn_stats`` are `advtrain`'s, ``lambda`` and ``scaling`` `gradreg`'s.
    """

    name = "advtrain+gradreg"
    summary = "FGSM adversarial training plus double backprop on the clean batch: (CE + lambda * penalty + CE(FGSM)) / 2"
    params = (_eps_param(), _label_param(), lambda_param(), scaling_param(), _bn_stats_param())

    def loss(self, model, x, y, params, trainer):
        return adversarial_loss(model, x, y, params["eps"], params["label"], trainer.data.clip_min,
                                trainer.data.clip_max, lam=resolve_lambda(params), scaling=params["scaling"],
                                bn_stats=params["bn_stats"])
