"""The undefended baseline."""

from __future__ import annotations

from ..plugin_types import LossDefense
from .common import plain_loss


class NoDefense(LossDefense):
    """The undefended reference model: plain softmax cross-entropy, averaged over the batch.

    The study's "normal" model. Every grid includes it, whatever defenses are named (`run`, `train`,
    `replicate` and `sweep` alike), so each defense is compared with it and, in `run` and `replicate`,
    attacked with the adversarial examples made on it. No parameters.
    """

    name = "none"
    summary = "No defense: softmax cross-entropy, mean over the batch (the paper's 'normal' model)"
    params = ()

    def loss(self, model, x, y, params, trainer):
        return plain_loss(model, x, y)
