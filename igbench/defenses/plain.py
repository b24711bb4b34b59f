"""The undefended baseline."""

from __future__ import annotations

from ..plugin_types import LossDefense
from .common import plain_loss


class NoDefense(LossDefense):
    name = "none"
    summary = "No defense: softmax cross-entropy, mean over the batch (the paper's 'normal' model)"
    params = ()

    def loss(self, model, x, y, params, trainer):
        return plain_loss(model, x, y)
